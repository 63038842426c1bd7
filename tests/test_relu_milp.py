"""The big-M encoding against brute force, and the soundness of every bound level.

Brute force: for a tiny ReLU net, the maximum of a linear output objective over
an input box equals the best of the LPs obtained by fixing every activation
pattern (each pattern an LP solved by SciPy's ``linprog``, a path independent
of our formulation). Checked for every installed MIP backend.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from optprune.errors import ShapeMismatchError
from optprune.formulations.relu_milp import build_min_distortion_milp, build_spec_milp
from optprune.network import AffineLayer, Network
from optprune.solvers import backend_names, get_backend, solve
from optprune.verification.bounds import (
    compute_bounds,
    count_unstable,
    interval_bounds,
    linear_bounds,
    linear_upper_bound,
)

MIP_BACKENDS = [name for name in backend_names() if name != "cpsat"]


def tiny_net(seed: int, n_in: int, hidden: list[int], n_out: int = 3) -> Network:
    rng = np.random.default_rng(seed)
    widths = [n_in, *hidden, n_out]
    layers = [
        AffineLayer(rng.normal(size=(b, a)), rng.normal(scale=0.5, size=b), "relu" if i < len(hidden) else "identity")
        for i, (a, b) in enumerate(zip(widths, widths[1:]))
    ]
    return Network(tuple(layers))


def activation_regions(net: Network):
    """Every activation pattern of a tiny net as ``(A_ub, b_ub, Y, y)``.

    On the region ``A_ub x <= b_ub`` the output is the affine map ``Y x + y``.
    """
    n_hidden = [layer.out_features for layer in net.layers[:-1]]
    for pattern in itertools.product([0, 1], repeat=sum(n_hidden)):
        # Along a fixed pattern the network is affine in x: z_k = A_k x + a_k.
        A, a = np.eye(net.input_size), np.zeros(net.input_size)
        rows, rhs = [], []
        pos = 0
        for layer, n in zip(net.layers[:-1], n_hidden):
            W = layer.dense_weight()
            Z, z = W @ A, W @ a + layer.bias
            mask = np.array(pattern[pos:pos + n], dtype=float)
            pos += n
            # active: z >= 0  ->  -Z x <= z ; inactive: z <= 0  ->  Z x <= -z
            sign = np.where(mask > 0, -1.0, 1.0)
            rows.append(sign[:, None] * Z)
            rhs.append(-sign * z)
            A, a = mask[:, None] * Z, mask * z
        W = net.layers[-1].dense_weight()
        yield np.vstack(rows), np.concatenate(rhs), W @ A, W @ a + net.layers[-1].bias


def brute_force_max(net: Network, c_out: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """max c_out @ y over the box, enumerating activation patterns (one LP each over the input)."""
    best = -np.inf
    for A_ub, b_ub, Y, y in activation_regions(net):
        res = linprog(-(c_out @ Y), A_ub=A_ub, b_ub=b_ub, bounds=list(zip(lo, hi)), method="highs")
        if res.status == 0:
            best = max(best, -res.fun + c_out @ y)
    return best


@pytest.mark.parametrize("backend", MIP_BACKENDS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n_in=st.integers(2, 3), hidden=st.lists(st.integers(1, 4), min_size=1, max_size=2))
def test_milp_optimum_equals_activation_pattern_enumeration(backend, seed, n_in, hidden):
    if not get_backend(backend).is_available():
        pytest.skip(f"{backend} not installed: {get_backend(backend).install_hint}")
    net = tiny_net(seed, n_in, hidden)
    lo, hi = -np.ones(n_in), np.ones(n_in)
    c_out = np.array([1.0, -1.0, 0.0])
    expected = brute_force_max(net, c_out, lo, hi)
    bounds = linear_bounds(net, lo, hi)
    model, _ = build_spec_milp(net, bounds, lo, hi, c_out[None, :], 0.0)
    result = solve(model, backend, mip_gap=1e-9)
    assert result.status.value == "optimal"
    assert result.objective == pytest.approx(expected, abs=1e-5)
    # The solution's input, run through the network, reaches the reported objective.
    x = model.group("input", result.x)
    assert c_out @ net.forward(x) == pytest.approx(result.objective, abs=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000), hidden=st.lists(st.integers(2, 12), min_size=1, max_size=3),
    radius=st.floats(0.01, 2.0),
)
def test_every_bound_level_is_sound_and_ordered(seed, hidden, radius):
    net = tiny_net(seed, 4, hidden)
    rng = np.random.default_rng(seed)
    center = rng.normal(size=4)
    lo, hi = center - radius, center + radius
    samples = rng.uniform(lo, hi, size=(4000, 4))
    samples[:16] = np.array(list(itertools.product(*zip(lo, hi))))  # the box's corners
    pre = net.forward(samples, return_all=True)
    widths = {}
    for method in ("interval", "linear", "obbt"):
        bounds = compute_bounds(net, lo, hi, method)
        for (low, up), z in zip(bounds, pre):
            assert np.all(z >= low - 1e-7) and np.all(z <= up + 1e-7), method
        widths[method] = sum(float(np.sum(up - low)) for low, up in bounds)
    assert widths["linear"] <= widths["interval"] + 1e-7
    assert widths["obbt"] <= widths["linear"] + 1e-6


def test_linear_upper_bound_of_a_margin_is_valid_and_beats_logit_bounds():
    net = tiny_net(3, 3, [8, 8])
    lo, hi = -0.5 * np.ones(3), 0.5 * np.ones(3)
    bounds = linear_bounds(net, lo, hi)
    C = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0]])
    ub = linear_upper_bound(net, bounds, C, [0.0, 0.0], lo, hi)
    y = net.forward(np.random.default_rng(0).uniform(lo, hi, size=(5000, 3)))
    assert np.all((y @ C.T).max(axis=0) <= ub + 1e-9)
    out_lo, out_hi = bounds[-1]
    naive = out_hi[0] - out_lo[1]
    assert ub[0] <= naive + 1e-9


def test_stable_neurons_get_no_binary_and_inactive_ones_are_removed():
    W1 = np.array([[1.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    b1 = np.array([5.0, -5.0, 0.0])  # always active, always inactive, unstable on [-1, 1]^2
    net = Network((AffineLayer(W1, b1), AffineLayer(np.ones((2, 3)), np.zeros(2), "identity")))
    lo, hi = -np.ones(2), np.ones(2)
    bounds = interval_bounds(net, lo, hi)
    assert count_unstable(net, bounds) == 1
    model, enc = build_spec_milp(net, bounds, lo, hi, [[1.0, 0.0]], 0.0)
    assert enc.n_binaries == 1 and model.n_integer == 1
    assert model.col_lower[enc.neuron_idx[0][1]] == model.col_upper[enc.neuron_idx[0][1]] == 0.0
    assert enc.n_stable_inactive == 1 and enc.n_stable_active == 1
    assert solve(model).objective == pytest.approx(6.0 + 2.0)  # x0 = 1, x1 = 1: (6) + (0) + (2)


def test_min_distortion_matches_a_one_dimensional_hand_computation():
    # y0 - y1 = 2x - 1 with x in [0, 1]: from x0 = 0.1 the smallest move to y0 >= y1 + margin is to 0.5 + margin/2.
    net = Network((
        AffineLayer(np.array([[1.0], [1.0]]), np.zeros(2)),
        AffineLayer(np.array([[1.0, 0.0], [-1.0, 0.0]]), np.array([0.0, 1.0]), "identity"),
    ))
    lo, hi = np.zeros(1), np.ones(1)
    bounds = linear_bounds(net, lo, hi)
    for norm in ("linf", "l1"):
        model, _ = build_min_distortion_milp(net, bounds, [0.1], lo, hi, [[1.0, -1.0]], 0.0, norm=norm, margin=1e-3)
        res = solve(model)
        assert res.objective == pytest.approx(0.4 + 0.0005, abs=1e-6)


def test_bad_shapes_are_named_errors():
    net = tiny_net(0, 3, [4])
    with pytest.raises(ShapeMismatchError, match="network takes 3 inputs"):
        linear_bounds(net, np.zeros(2), np.ones(2))
    bounds = linear_bounds(net, np.zeros(3), np.ones(3))
    with pytest.raises(ShapeMismatchError, match="3 outputs"):
        build_spec_milp(net, bounds, np.zeros(3), np.ones(3), np.ones((1, 5)), 0.0)
