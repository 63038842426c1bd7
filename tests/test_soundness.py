"""The rules of :mod:`optprune.verification.verdicts`, each against an independent answer.

Brute force (activation-pattern enumeration, each pattern an LP solved by
SciPy) decides the tiny cases; fake backends return exactly the solver answers
that must not become proofs; the shared mnistfc networks check bound soundness
by sampling and gradient ascent.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog
from test_relu_milp import activation_regions, brute_force_max, tiny_net

from optprune.milp import MILP, Sense
from optprune.network import AffineLayer, Network
from optprune.solvers import backend_names, registry
from optprune.solvers.base import BackendBase, SolveOptions, SolveResult, Status
from optprune.verification import max_margin, min_distortion, verify_property
from optprune.verification.attack import pgd_attack
from optprune.verification.bounds import compute_bounds, linear_upper_bound
from optprune.verification.obbt import safe_lp_lower_bound
from optprune.verification.verdicts import (
    DECISION_DELTA,
    UnsoundBoundsError,
    check_bounds_contain,
    slack_verdict,
    solver_resolution,
)
from optprune.verification.vnnlib import Conjunction, VNNLibCase, VNNLibProperty, parse_vnnlib

# The MIP pipeline is what these tests check (the library default is the auto portfolio).
verify_mip = functools.partial(verify_property, method="mip")

MIP_BACKENDS = [name for name in backend_names() if name != "cpsat"]


def brute_force_max_min(net: Network, C: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                        signs: np.ndarray | None = None) -> float:
    """max over the box of ``min_i (C_i y + d_i)``, enumerating activation patterns (an LP in (x, t) each).

    ``signs`` (one entry per hidden ReLU, +1 on / -1 off / 0 free; branch and bound's split decisions) keeps only
    the patterns that agree with it; ``activation_regions`` yields them in ``itertools.product([0, 1], ...)`` order.
    """
    n = net.input_size
    best = -np.inf
    regions = activation_regions(net)
    if signs is not None:
        n_hidden = sum(layer.out_features for layer in net.layers[:-1])
        split = np.flatnonzero(signs)
        agree = (np.array(p, dtype=bool)[split] == (signs[split] > 0) for p in itertools.product([0, 1], repeat=n_hidden))
        regions = (region for ok, region in zip(agree, regions, strict=True) if ok.all())
    for A_ub, b_ub, Y, y in regions:
        # t <= C_i (Y x + y) + d_i   ->   t - C_i Y x <= C_i y + d_i
        rows = np.vstack([np.hstack([A_ub, np.zeros((A_ub.shape[0], 1))]), np.hstack([-(C @ Y), np.ones((C.shape[0], 1))])])
        cost = np.zeros(n + 1)
        cost[-1] = -1.0
        res = linprog(cost, A_ub=rows, b_ub=np.concatenate([b_ub, C @ y + d]),
                      bounds=list(zip(lo, hi)) + [(None, None)], method="highs")
        if res.status == 0:
            best = max(best, -res.fun)
    return best


def box_property(net: Network, lo, hi, C, d) -> VNNLibProperty:
    conj = Conjunction(np.atleast_2d(np.asarray(C, dtype=float)), np.atleast_1d(np.asarray(d, dtype=float)))
    case = VNNLibCase(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float), (conj,))
    return VNNLibProperty(net.input_size, net.output_size, (case,), "test")


# ---------------------------------------------------------------------------- the MIP itself proves unsat


def test_the_mip_proves_unsat_where_the_bounds_cannot():
    """Search tiny nets for a conjunction the linear bounds leave open but brute force shows impossible."""
    found = 0
    for seed in range(60):
        net = tiny_net(seed, 3, [4, 3], n_out=2)
        lo, hi = np.full(3, -1.0), np.full(3, 1.0)
        C = np.array([[1.0, -1.0]])
        truth = brute_force_max(net, C[0], lo, hi)
        bounds = compute_bounds(net, lo, hi, "linear")
        linear = float(linear_upper_bound(net, bounds, C, 0.0, lo, hi)[0])
        if not (truth < -1e-3 and linear > 0):
            continue
        result = verify_mip(net, box_property(net, lo, hi, C, 0.0), bound_method="linear", time_limit=30)
        assert result.verdict == "unsat", (seed, truth, result.to_dict())
        assert result.decided_by == "mip" and result.mips_solved == 1
        found += 1
        if found == 3:
            break
    assert found == 3, "expected tiny nets where only the MIP decides"


@pytest.mark.parametrize("backend", MIP_BACKENDS)
def test_multi_row_conjunctions_match_brute_force(backend):
    decided = 0
    for seed in range(12):
        net = tiny_net(100 + seed, 2, [5], n_out=3)
        lo, hi = np.full(2, -1.0), np.full(2, 1.0)
        C = np.array([[1.0, -1.0, 0.0], [0.0, -1.0, 1.0]])  # y0 >= y1 and y2 >= y1
        d = np.zeros(2)
        truth = brute_force_max_min(net, C, d, lo, hi)
        if abs(truth) < 1e-3:
            continue
        result = verify_mip(net, box_property(net, lo, hi, C, d), solver=backend, bound_method="linear",
                                 attack=False, time_limit=30)
        expected = "sat" if truth > 0 else "unsat"
        assert result.verdict == expected, (seed, truth, result.to_dict())
        if expected == "sat":
            y = net.forward(result.counterexample)
            assert np.min(C @ y + d) >= 0 and np.all(result.counterexample >= lo) and np.all(result.counterexample <= hi)
        decided += 1
    assert decided >= 8


def test_the_attack_finds_a_counterexample_that_exists_and_none_that_does_not():
    net = tiny_net(7, 3, [6], n_out=2)
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    both = [Conjunction(np.array([[1.0, -1.0]]), np.zeros(1)), Conjunction(np.array([[-1.0, 1.0]]), np.zeros(1))]
    maxima = [brute_force_max(net, c.C[0], lo, hi) for c in both]
    easy = both[int(np.argmax(maxima))]
    assert max(maxima) > 0.1
    att = pgd_attack(net, lo, hi, [easy])
    assert att.found and easy.holds(net.forward(att.x)) and np.all((att.x >= lo) & (att.x <= hi))
    # Shift the output so that the conjunction is impossible: the attack must not claim a point.
    impossible = Conjunction(easy.C, np.array([-(max(maxima) + 0.5)]))
    att = pgd_attack(net, lo, hi, [impossible])
    assert not att.found and att.best_slacks[0] <= -0.5 + 1e-9


# ---------------------------------------------------------------------------- answers that are not proofs


def test_a_tiny_positive_margin_is_never_unsat():
    """y0 - y1 = relu(x) - 1 + 1e-7 on x in [0, 1]: the true maximum is +1e-7."""
    net = Network((
        AffineLayer(np.array([[1.0]]), np.array([0.0])),
        AffineLayer(np.array([[1.0], [0.0]]), np.array([-1.0 + 1e-7, 0.0]), "identity"),
    ))
    prop = box_property(net, [0.0], [1.0], [[1.0, -1.0]], 0.0)
    for backend in MIP_BACKENDS:
        for attack in (True, False):
            result = verify_mip(net, prop, solver=backend, attack=attack, bound_method="linear", time_limit=20)
            assert result.verdict != "unsat", (backend, attack, result.to_dict())
    res = max_margin(net, np.array([0.9]), 1, 0.1, target=0, bound_method="linear", decision=True)
    assert not res.proven_robust


class _Scripted(BackendBase):
    """A backend that answers what the test tells it to, whatever the model."""

    name = "scripted"
    package = "numpy"
    extra = "none"
    supports_callbacks = True

    def __init__(self, status: Status, objective: float, bound: float, x_fn=None) -> None:
        self.status, self.objective, self.bound, self.x_fn = status, objective, bound, x_fn

    def solve(self, model: MILP, options: SolveOptions) -> SolveResult:
        x = None if self.x_fn is None else self.x_fn(model)
        return SolveResult(self.status, objective=self.objective, bound=self.bound, x=x, backend=self.name)


@pytest.fixture
def scripted(monkeypatch):
    def install(*args, **kwargs) -> str:
        monkeypatch.setitem(registry._BACKENDS, "scripted", _Scripted(*args, **kwargs))
        return "scripted"

    return install


def _open_property():
    """A robust toy property (brute force) whose linear bound is positive, so a MIP has to decide."""
    C = np.array([[1.0, -1.0]])
    lo, hi = np.full(3, -1.0), np.full(3, 1.0)
    for seed in range(60):
        net = tiny_net(seed, 3, [4, 3], n_out=2)
        bounds = compute_bounds(net, lo, hi, "linear")
        if linear_upper_bound(net, bounds, C, 0.0, lo, hi)[0] > 0 and brute_force_max(net, C[0], lo, hi) < -1e-3:
            return net, box_property(net, lo, hi, C, 0.0)
    raise AssertionError("no open robust toy property among 60 seeds")


@pytest.mark.parametrize("objective, bound", [(-1e-7, -1e-7), (-0.5 * DECISION_DELTA, math.nan), (-0.1, math.nan)])
def test_an_optimum_near_zero_or_without_a_dual_bound_is_unknown(scripted, objective, bound):
    net, prop = _open_property()
    name = scripted(Status.OPTIMAL, objective, bound)
    result = verify_mip(net, prop, solver=name, attack=False, bound_method="linear", time_limit=10)
    assert result.verdict == "unknown", result.to_dict()


def test_a_dual_bound_below_minus_delta_proves_unsat(scripted):
    net, prop = _open_property()
    case = prop.cases[0]
    resolution = float(solver_resolution(net, compute_bounds(net, case.lower, case.upper, "linear"),
                                         case.disjuncts[0].C)[0])
    assert 0 < resolution < 1e-3
    name = scripted(Status.FEASIBLE, -0.3, -2 * (DECISION_DELTA + resolution))
    assert verify_mip(net, prop, solver=name, attack=False, bound_method="linear", time_limit=10).verdict == "unsat"
    # Below -delta but within the solver's resolution of it: not a proof.
    name = scripted(Status.FEASIBLE, -0.3, -DECISION_DELTA - 0.5 * resolution)
    assert verify_mip(net, prop, solver=name, attack=False, bound_method="linear", time_limit=10).verdict == "unknown"


def test_infeasible_without_a_cutoff_is_an_error_not_a_proof():
    with pytest.raises(UnsoundBoundsError, match="without an objective cutoff"):
        slack_verdict("infeasible", None, cutoff=False)
    assert slack_verdict("infeasible", None, cutoff=True) == "unsat"
    assert slack_verdict("optimal", -0.5 * DECISION_DELTA, cutoff=True) == "unknown"


def test_unsound_bounds_are_reported_with_layer_and_neuron_instead_of_proving_robustness():
    rng = np.random.default_rng(0)
    net = Network((AffineLayer(rng.normal(size=(6, 4)), rng.normal(size=6)),
                   AffineLayer(rng.normal(size=(3, 6)), rng.normal(size=3), "identity")))
    x0 = np.full(4, 0.5)
    label = int(net.predict(x0))
    lo, hi = np.clip(x0 - 0.1, 0, 1), np.clip(x0 + 0.1, 0, 1)
    good = compute_bounds(net, lo, hi, "linear")
    z = net.forward(x0, return_all=True)[0]
    # Bounds of layer 0 that exclude x0's pre-activation of neuron 2 (shifted above it).
    bad_lo, bad_hi = good[0][0].copy(), good[0][1].copy()
    bad_lo[2] = bad_hi[2] = z[2] + 5.0
    bad = [(bad_lo, bad_hi), good[1]]
    with pytest.raises(UnsoundBoundsError, match=r"layer 0 .*neuron 2"):
        check_bounds_contain(net, bad, x0)
    for decision in (True, False):
        with pytest.raises(UnsoundBoundsError, match=r"layer 0 .*neuron 2"):
            max_margin(net, x0, label, 0.1, bound_method="linear", decision=decision, precomputed_bounds=bad)


def test_a_verdict_on_a_surrogate_is_unknown_for_the_reference():
    net, prop = _open_property()
    own = verify_mip(net, prop, bound_method="linear", time_limit=20)
    assert own.verdict == "unsat"
    copy = Network(net.layers, net.input_shape, "copy")
    on_copy = verify_mip(net, prop, bound_method="linear", time_limit=20, reference=copy)
    assert on_copy.verdict == "unknown" and "reference" in on_copy.message
    x0 = np.zeros(3)
    label = int(net.predict(x0))
    res = max_margin(net, x0, label, 0.05, bound_method="linear", reference=copy)
    assert not res.proven_robust and max_margin(net, x0, label, 0.05, bound_method="linear").proven_robust


# ---------------------------------------------------------------------------- min_distortion


def _brute_min_linf_distortion(net, x0, label, target, margin) -> float:
    """Bisection on eps of the brute-force max margin over the L-inf ball (inside [0, 1])."""
    c = np.zeros(net.output_size)
    c[target], c[label] = 1.0, -1.0
    lo_eps, hi_eps = 0.0, 1.0
    if brute_force_max(net, c, np.clip(x0 - 1, 0, 1), np.clip(x0 + 1, 0, 1)) < margin:
        return math.inf
    for _ in range(30):
        mid = (lo_eps + hi_eps) / 2
        if brute_force_max(net, c, np.clip(x0 - mid, 0, 1), np.clip(x0 + mid, 0, 1)) >= margin:
            hi_eps = mid
        else:
            lo_eps = mid
    return hi_eps


def test_min_distortion_bounds_bracket_brute_force_and_its_point_is_adversarial():
    x0 = np.array([0.4, 0.6])
    for seed in range(11, 40):  # a net where some target class is reachable inside [0, 1]^2
        net = tiny_net(seed, 2, [5], n_out=3)
        label = int(net.predict(x0))
        truths = {t: _brute_min_linf_distortion(net, x0, label, t, 1e-4) for t in range(3) if t != label}
        target = min(truths, key=truths.get)
        truth = truths[target]
        if math.isfinite(truth):
            break
    assert math.isfinite(truth)
    res = min_distortion(net, x0, label, target=target, bound_method="linear", time_limit=30)
    assert res.bound <= truth + 1e-6 <= res.objective + 2e-6
    assert res.objective == pytest.approx(truth, abs=1e-5)
    assert int(np.argmax(net.forward(res.x))) != label
    assert np.max(np.abs(res.x - x0)) == pytest.approx(res.objective, abs=1e-9)


def test_min_distortion_never_reports_an_incumbent_as_its_lower_bound(scripted):
    net = tiny_net(11, 2, [5], n_out=3)
    x0 = np.array([0.4, 0.6])
    label = int(net.predict(x0))
    name = scripted(Status.FEASIBLE, 0.3, math.nan, x_fn=lambda m: np.zeros(m.n_vars))
    res = min_distortion(net, x0, label, target=(label + 1) % 3, bound_method="linear", solver=name, time_limit=5)
    assert res.bound == 0.0  # no dual bound: the trivial lower bound, not the incumbent's 0.3


# ---------------------------------------------------------------------------- counterexample checks


def test_a_point_that_float32_onnx_rejects_is_not_sat(tmp_path):
    """y0 = x + 1e-9, y1 = x, property y0 > y1 (strict): true in float64, false in float32 (x + 1e-9 == x)."""
    from optprune.io import network_to_onnx

    net = Network((
        AffineLayer(np.array([[1.0]]), np.array([0.0])),
        AffineLayer(np.array([[1.0], [1.0]]), np.array([1e-9, 0.0]), "identity"),
    ))
    path = tmp_path / "tiny.onnx"
    network_to_onnx(net, path)
    text = """(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)
(assert (>= X_0 0.5))(assert (<= X_0 0.75))(assert (> Y_0 Y_1))"""
    prop = parse_vnnlib(text, 1, 2)
    assert verify_mip(net, prop, bound_method="linear", time_limit=20).verdict == "sat"  # float64 alone
    checked = verify_mip(net, prop, bound_method="linear", time_limit=20, onnx_model=path)
    assert checked.verdict == "unknown" and "float32" in checked.message


def test_counterexamples_lie_inside_the_box_exactly():
    net = Network((AffineLayer(np.eye(2), np.zeros(2)),
                   AffineLayer(np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([0.0, 1.0]), "identity")))
    prop = box_property(net, [0.0, 0.0], [0.75, 0.75], [[1.0, -1.0]], 0.0)
    for attack in (True, False):
        result = verify_mip(net, prop, bound_method="linear", attack=attack, time_limit=20)
        assert result.verdict == "sat"
        assert np.all(result.counterexample >= 0.0) and np.all(result.counterexample <= 0.75)


# ---------------------------------------------------------------------------- safe bounds


def test_safe_lp_bound_holds_for_any_multipliers():
    rng = np.random.default_rng(5)
    for _ in range(20):
        m, n = 6, 4
        A = rng.normal(size=(m, n))
        x_feasible = rng.uniform(-1, 1, size=n)
        ax = A @ x_feasible
        model = MILP(np.zeros(n), A, ax - rng.uniform(0.1, 1, m), ax + rng.uniform(0.1, 1, m),
                     np.full(n, -2.0), np.full(n, 2.0), None, Sense.MINIMIZE)
        cost = rng.normal(size=n)
        lp = linprog(cost, A_ub=np.vstack([A, -A]), b_ub=np.concatenate([model.row_upper, -model.row_lower]),
                     bounds=[(-2, 2)] * n, method="highs")
        assert lp.status == 0
        duals = lp.ineqlin.marginals[:m] - lp.ineqlin.marginals[m:]
        tight = safe_lp_lower_bound(model, cost, duals)
        assert tight <= lp.fun + 1e-9 and tight == pytest.approx(lp.fun, abs=1e-7)
        for _ in range(5):  # arbitrary multipliers: looser, never above the optimum
            assert safe_lp_lower_bound(model, cost, rng.normal(size=m)) <= lp.fun + 1e-9


def _ascent_extremes(net: Network, lo: np.ndarray, hi: np.ndarray, steps: int = 60) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the smallest and largest pre-activation reached by projected gradient steps, one per neuron and sign."""
    layers = [(torch.as_tensor(layer.dense_weight()), torch.as_tensor(layer.bias), layer.activation == "relu")
              for layer in net.layers]
    lo_t, hi_t = torch.as_tensor(lo), torch.as_tensor(hi)
    out = []
    for k, (W, _, _) in enumerate(layers):
        n = W.shape[0]
        sign = torch.cat([torch.ones(n), -torch.ones(n)]).double()
        idx = torch.arange(n).repeat(2)
        x = ((lo_t + hi_t) / 2).repeat(2 * n, 1)
        for step in range(steps):
            x.requires_grad_(True)
            h = x
            for j in range(k + 1):
                Wj, bj, relu = layers[j]
                z = h @ Wj.T + bj
                h = torch.relu(z) if (relu and j < k) else z
            obj = (sign * z[torch.arange(2 * n), idx]).sum()
            (g,) = torch.autograd.grad(obj, x)
            with torch.no_grad():
                x = torch.minimum(torch.maximum(x + 0.1 * (1 - step / steps) * (hi_t - lo_t) * g.sign(), lo_t), hi_t)
        pre = net.forward(x.detach().numpy(), return_all=True)[k]
        values = pre[np.arange(2 * n), idx.numpy()]
        out.append((values[n:], values[:n]))  # (reached by minimising, reached by maximising)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist-net_256x2.onnx", "mnist-net_256x4.onnx"])
def test_every_bound_level_contains_samples_and_gradient_extremes_on_mnistfc(mnistfc, name):
    from optprune.io import network_from_onnx
    from optprune.verification.vnnlib import read_vnnlib

    net = network_from_onnx(mnistfc / name)
    case = read_vnnlib(mnistfc / "prop_1_0.05.vnnlib", 784, 10).cases[0]
    lo, hi = case.lower, case.upper
    rng = np.random.default_rng(0)
    X = rng.uniform(lo, hi, size=(10_000, 784))
    X[: 784 // 2] = np.where(rng.random((784 // 2, 784)) < 0.5, lo, hi)  # corners too
    samples = net.forward(X, return_all=True)
    extremes = _ascent_extremes(net, lo, hi)
    for method in ("interval", "linear", "obbt"):
        bounds = compute_bounds(net, lo, hi, method, time_budget=10.0)
        for k, ((bl, bu), z, (zmin, zmax)) in enumerate(zip(bounds, samples, extremes)):
            assert np.all(z >= bl) and np.all(z <= bu), (method, k)
            assert np.all(zmin >= bl) and np.all(zmax <= bu), (method, k, float(np.min(zmin - bl)), float(np.min(bu - zmax)))
