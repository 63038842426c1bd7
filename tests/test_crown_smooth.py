"""Sigmoid and tanh in the bound propagation (crown.smooth_relaxation), the attack, the engines and the CLI."""

from __future__ import annotations

import json

import mpmath
import numpy as np
import pytest
import torch

from optprune.errors import UnsupportedLayerError
from optprune.network import AffineLayer, Network
from optprune.verification import verify_property
from optprune.verification.bounds import interval_bounds, linear_bounds, linear_upper_bound
from optprune.verification.crown import smooth_relaxation
from optprune.verification.vnnlib import parse_vnnlib

KINDS = ("sigmoid", "tanh")

# (l, u) pairs in every regime: convex (u <= 0), concave (l >= 0), across 0, narrow, wide, saturated, degenerate
INTERVALS = [(-3.0, -0.5), (0.2, 4.0), (-1.0, 2.0), (-6.0, 0.3), (-0.01, 0.02), (1.0, 1.0 + 1e-11),
             (-40.0, 35.0), (-30.0, -20.0), (15.0, 60.0), (0.0, 0.0), (-2.0, 0.0), (0.0, 3.0), (-1e-3, 1e-3)]


def _exact(kind: str, z: float) -> mpmath.mpf:
    with mpmath.workdps(50):
        x = mpmath.mpf(z)
        return 1 / (1 + mpmath.exp(-x)) if kind == "sigmoid" else mpmath.tanh(x)


@pytest.mark.parametrize("kind", KINDS)
def test_relaxation_lines_enclose_the_activation_in_exact_arithmetic(kind):
    lo = torch.tensor([a for a, _ in INTERVALS], dtype=torch.float64)
    hi = torch.tensor([b for _, b in INTERVALS], dtype=torch.float64)
    a_l, b_l, a_u, b_u = (t.numpy() for t in smooth_relaxation(kind, lo, hi))
    rng = np.random.default_rng(0)
    for i, (l, u) in enumerate(INTERVALS):  # noqa: E741
        zs = np.concatenate([[l, u, (l + u) / 2], rng.uniform(l, u, 40), np.linspace(l, u, 41)])
        for z in zs:
            f = _exact(kind, float(z))
            with mpmath.workdps(50):  # the lines evaluated exactly at the float64 point, slopes as stored
                low = mpmath.mpf(float(a_l[i])) * mpmath.mpf(float(z)) + mpmath.mpf(float(b_l[i]))
                up = mpmath.mpf(float(a_u[i])) * mpmath.mpf(float(z)) + mpmath.mpf(float(b_u[i]))
                assert low <= f <= up, (kind, l, u, z)
        # not vacuous: the gap between the lines is small where the interval is small
        if u - l < 1e-2:
            assert (a_u[i] - a_l[i]) * u + b_u[i] - b_l[i] < 1e-4 + 1e-9


def _net(seed: int, kinds: tuple[str, ...], sizes=(4, 10, 8, 3)) -> Network:
    rng = np.random.default_rng(seed)
    layers = []
    for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = kinds[k] if k < len(kinds) else "identity"
        layers.append(AffineLayer(rng.normal(size=(o, i)) * 1.5 / np.sqrt(i), rng.normal(size=o) * 0.3, act))
    return Network(tuple(layers))


NETS = [("sigmoid", "sigmoid"), ("tanh", "tanh"), ("relu", "sigmoid"), ("tanh", "relu"), ("sigmoid", "tanh", "tanh")]


@pytest.mark.parametrize("kinds", NETS, ids="-".join)
def test_bounds_contain_sampled_pre_activations_and_spec_values(kinds):
    net = _net(sum(map(len, kinds)), kinds)
    rng = np.random.default_rng(1)
    x0 = rng.uniform(-1, 1, 4)
    lo, hi = x0 - 0.4, x0 + 0.4
    x = np.vstack([rng.uniform(lo, hi, size=(3000, 4)), lo, hi])
    pre = net.forward(x, return_all=True)
    lin, itv = linear_bounds(net, lo, hi), interval_bounds(net, lo, hi)
    for (l_, u_), (il, iu), z in zip(lin, itv, pre):
        assert np.all(z >= l_) and np.all(z <= u_)
        assert np.all(l_ >= il - 1e-12) and np.all(u_ <= iu + 1e-12)  # CROWN never looser than intervals
    assert sum(float(np.sum(u_ - l_)) for l_, u_ in lin) < sum(float(np.sum(iu - il)) for il, iu in itv)
    C = rng.normal(size=(6, 3))
    d = rng.normal(size=6)
    ub = linear_upper_bound(net, lin, C, d, lo, hi)
    vals = net.forward(x) @ C.T + d
    assert np.all(vals.max(axis=0) <= ub)


def _prop(net: Network, x0: np.ndarray, eps: float, assertion: str):
    lines = [f"(declare-const X_{i} Real)" for i in range(net.input_size)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(net.output_size)]
    lo, hi = (x0 - eps).tolist(), (x0 + eps).tolist()
    lines += [f"(assert (>= X_{i} {lo[i]!r}))\n(assert (<= X_{i} {hi[i]!r}))" for i in range(net.input_size)]
    return parse_vnnlib("\n".join(lines + [assertion]), net.input_size, net.output_size)


def test_engines_decide_or_refuse_by_name_on_a_sigmoid_network():
    net = _net(3, ("sigmoid", "tanh"))
    x0 = np.zeros(4)
    y0 = net.forward(x0)
    far = _prop(net, x0, 0.05, f"(assert (>= Y_0 {float(y0[0]) + 5.0!r}))")  # bounds rule it out
    near = _prop(net, x0, 0.3, f"(assert (>= Y_0 {float(y0[0]) + 1e-3!r}))")  # the attack finds a point
    res = verify_property(net, far, time_limit=20)
    assert res.verdict == "unsat" and res.decided_by == "bounds"
    res = verify_property(net, near, time_limit=20)
    assert res.verdict == "sat" and res.decided_by == "attack"
    assert net.forward(res.counterexample)[0] >= float(y0[0]) + 1e-3
    for method in ("mip", "bab"):
        with pytest.raises(UnsupportedLayerError, match="sigmoid activation"):
            verify_property(net, far, time_limit=20, method=method)


def test_onnx_sigmoid_net_from_torch_verifies_end_to_end(tmp_path, capsys):
    import warnings

    from optprune.cli import main
    from optprune.io import network_from_onnx

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Sigmoid(), torch.nn.Linear(8, 6), torch.nn.Tanh(),
                                torch.nn.Linear(6, 2)).double()
    path = tmp_path / "sig.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.float(), (torch.zeros(1, 3),), str(path), dynamo=False)
    net = network_from_onnx(path)
    assert [layer.activation for layer in net.layers] == ["sigmoid", "tanh", "identity"]
    x = np.random.default_rng(0).uniform(0, 0.1, size=(50, 3))
    with torch.no_grad():
        expect = model.double()(torch.as_tensor(x)).numpy()
    assert np.allclose(net.forward(x), expect, atol=1e-6)
    y0 = net.forward(np.full(3, 0.05))
    cases = {"unsat": f"(assert (>= Y_0 {float(y0[0]) + 1.0!r}))", "sat": f"(assert (>= Y_0 {float(y0[0])!r}))"}
    for verdict, assertion in cases.items():
        prop = tmp_path / f"{verdict}.vnnlib"
        lines = [f"(declare-const X_{i} Real)" for i in range(3)] + [f"(declare-const Y_{j} Real)" for j in range(2)]
        lines += [f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 0.1))" for i in range(3)] + [assertion]
        prop.write_text("\n".join(lines) + "\n")
        main(["verify", str(path), str(prop), "--json", "--timeout", "30"])
        payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert payload["verdict"] == verdict, payload["message"]
