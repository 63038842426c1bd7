"""Verification edge cases (issue 22): float64 ONNX models, and outputs behind a ReLU that is always 0 on the box.

Every verdict is checked independently of the method that produced it: a ``sat``
point by a float64 forward pass, an ``unsat`` one against the exact maximum of the
property's margin (activation-pattern enumeration, :func:`test_relu_milp.brute_force_max`)
and against random samples of the box.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from test_relu_milp import brute_force_max

from optprune.cli import main
from optprune.io import load_network, network_from_onnx
from optprune.network import AffineLayer, Network
from optprune.verification import verify_property, verify_vnnlib
from optprune.verification.counterexample import OnnxChecker
from optprune.verification.vnnlib import parse_vnnlib

pytest.importorskip("onnxruntime", reason="onnxruntime (dev extra) runs the ONNX side of the counterexample check")

METHODS = ("mip", "bab", "auto")
LO, HI = -np.ones(2), np.ones(2)


def vnnlib_text(n_out: int, condition: str) -> str:
    """A property over the box [-1, 1]^2 whose unsafe set is ``condition``."""
    lines = [f"(declare-const X_{i} Real)" for i in range(2)] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    lines += [f"(assert (>= X_{i} -1.0))\n(assert (<= X_{i} 1.0))" for i in range(2)]
    return "\n".join([*lines, f"(assert {condition})"]) + "\n"


def samples(net: Network, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(0).uniform(LO, HI, size=(n, 2))
    return x, np.asarray(net.forward(x), dtype=np.float64)


def check_verdict(net: Network, verdict: str, counterexample, condition, exact_max: float) -> None:
    """``sat``: the point lies in the box and its float64 forward pass meets ``condition``;
    ``unsat``: the exact maximum of the margin is negative and no sample meets ``condition``."""
    if verdict == "sat":
        x = np.asarray(counterexample, dtype=np.float64)
        assert np.all(x >= LO - 1e-9) and np.all(x <= HI + 1e-9)
        assert condition(np.asarray(net.forward(x), dtype=np.float64)[None, :]).all()
    else:
        assert verdict == "unsat"
        assert exact_max < 0
        _, y = samples(net)
        assert not condition(y).any()


# --- 1. float64 ONNX models ----------------------------------------------------------------------------------------

W1 = np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.3]])
B1 = np.array([0.1, -0.2, 0.0])
W2 = np.array([[1.0, 0.5, -1.0], [-0.5, 1.0, 0.2]])
B2 = np.array([0.0, 0.1])


def float64_onnx(path) -> onnx.ModelProto:
    """Gemm, Relu, Gemm with float64 weights, input and output (three unstable ReLUs on [-1, 1]^2)."""
    nodes = [
        helper.make_node("Gemm", ["x", "W1", "b1"], ["h"], name="fc1", transB=1),
        helper.make_node("Relu", ["h"], ["r"], name="relu1"),
        helper.make_node("Gemm", ["r", "W2", "b2"], ["y"], name="fc2", transB=1),
    ]
    inits = [numpy_helper.from_array(np.asarray(a, dtype=np.float64), n)
             for n, a in (("W1", W1), ("b1", B1), ("W2", W2), ("b2", B2))]
    graph = helper.make_graph(
        nodes, "g64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])], initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return proto


@pytest.fixture(scope="module")
def f64(tmp_path_factory):
    """The float64 model on disk with a sat and an unsat property: ``(onnx path, {kind: (vnnlib path, condition)})``."""
    folder = tmp_path_factory.mktemp("f64")
    proto = float64_onnx(folder / "net64.onnx")
    net = network_from_onnx(proto)
    top = brute_force_max(net, np.array([-1.0, 1.0]), LO, HI)  # max of y1 - y0 over the box
    c = top + 0.05
    props = {
        "sat": ("(>= Y_0 Y_1)", lambda y: y[:, 0] >= y[:, 1], brute_force_max(net, np.array([1.0, -1.0]), LO, HI)),
        "unsat": (f"(>= (- Y_1 Y_0) {float(c)!r})", lambda y: y[:, 1] - y[:, 0] >= c, top - c),
    }
    out = {}
    for kind, (text, condition, exact_max) in props.items():
        path = folder / f"{kind}.vnnlib"
        path.write_text(vnnlib_text(2, text))
        out[kind] = (path, condition, exact_max)
    return folder / "net64.onnx", out


def test_float64_onnx_loads_in_float64_and_is_checked_by_onnxruntime_in_float64(f64):
    path, _ = f64
    net = load_network(path)
    assert [layer.out_features for layer in net.layers] == [3, 2] and net.input_size == 2
    assert np.array_equal(net.layers[0].dense_weight(), W1) and np.array_equal(net.layers[1].bias, B2)
    checker = OnnxChecker(path)
    assert checker.dtype == np.float64 and checker.precision == "float64"
    x = np.random.default_rng(1).uniform(LO, HI, size=(20, 2))
    for xi in x:
        # the model's own precision: agreement to float64 rounding, far below float32's ~1e-7
        assert np.allclose(checker(xi), net.forward(xi), rtol=0, atol=1e-13)


def test_a_margin_below_float32_rounding_is_sat_on_a_float64_onnx(tmp_path):
    """y0 = x + 1e-9, y1 = x, property y0 > y1 (strict): float32 rounds the margin away, float64 keeps it;
    the float64 model is checked in float64, so the point stands (its float32 twin: tests/test_soundness.py)."""
    nodes = [helper.make_node("Gemm", ["x", "W", "b"], ["y"], name="fc", transB=1)]
    inits = [numpy_helper.from_array(np.array([[1.0], [1.0]]), "W"),
             numpy_helper.from_array(np.array([1e-9, 0.0]), "b")]
    graph = helper.make_graph(
        nodes, "margin64", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", 2])], initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(proto)
    path = tmp_path / "margin64.onnx"
    onnx.save(proto, str(path))
    prop = tmp_path / "p.vnnlib"
    prop.write_text("(declare-const X_0 Real)(declare-const Y_0 Real)(declare-const Y_1 Real)\n"
                    "(assert (>= X_0 0.5))(assert (<= X_0 0.75))(assert (> Y_0 Y_1))\n")
    for method in METHODS:
        result = verify_vnnlib(path, prop, method=method, time_limit=30)
        assert result.verdict == "sat", (method, result.message)
        assert result.output[0] - result.output[1] == pytest.approx(1e-9, rel=1e-6)


def test_float32_onnx_is_still_checked_in_float32(tmp_path):
    from optprune.io import network_to_onnx

    net = network_from_onnx(float64_onnx(tmp_path / "n64.onnx"))
    checker = OnnxChecker(network_to_onnx(net))
    assert checker.dtype == np.float32 and checker.precision == "float32"


def test_info_cli_reads_a_float64_onnx(f64, capsys):
    path, _ = f64
    code = main(["info", str(path), "--json"])
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code in (0, None) and payload["input_shape"] == [2] and payload["widths"] == [2, 3, 2]


@pytest.mark.parametrize("kind", ["sat", "unsat"])
@pytest.mark.parametrize("method", METHODS)
def test_verify_cli_on_float64_onnx(f64, capsys, method, kind):
    path, props = f64
    prop, condition, exact_max = props[kind]
    extra = ["--no-attack"] if method == "mip" else []  # the MIP's own point goes through the check
    code = main(["verify", str(path), str(prop), "--method", method, "--timeout", "60", "--json", *extra])
    captured = capsys.readouterr()
    payload = json.loads(captured.out.strip().splitlines()[-1])
    assert code in (0, None) and "Traceback" not in captured.err
    assert payload["verdict"] == kind, payload
    check_verdict(load_network(path), payload["verdict"], payload.get("counterexample"), condition, exact_max)
    if method == "mip" and kind == "sat":
        assert payload["decided_by"] == "mip"


@pytest.mark.parametrize("attack", [True, False])
@pytest.mark.parametrize("kind", ["sat", "unsat"])
@pytest.mark.parametrize("method", METHODS)
def test_verify_vnnlib_on_float64_onnx(f64, method, kind, attack):
    path, props = f64
    prop, condition, exact_max = props[kind]
    result = verify_vnnlib(path, prop, method=method, attack=attack, time_limit=60)
    assert result.verdict == kind, (result.verdict, result.message)
    check_verdict(load_network(path), result.verdict, result.counterexample, condition, exact_max)


# --- 2. outputs behind a ReLU that is always 0 on the box -------------------------------------------------------------

def dead_output_net(all_dead: bool) -> Network:
    """2 -> 4 (ReLU) -> 3 (ReLU). Outputs 0 and 2 have pre-activation upper bound < 0 on [-1, 1]^2 (identically 0);
    output 1 too when ``all_dead``, else it is unstable."""
    W1 = np.array([[1.0, -1.0], [0.5, 1.0], [-1.0, 0.3], [0.7, 0.7]])
    b1 = np.array([0.1, -0.2, 0.0, -0.3])
    W2 = np.array([[1.0, 0.5, -1.0, 0.2], [-0.5, 1.0, 0.8, -1.0], [0.3, 0.3, 0.3, 0.3]])
    b2 = np.array([-10.0, -20.0 if all_dead else 0.05, -20.0])
    return Network((AffineLayer(W1, b1), AffineLayer(W2, b2, "relu")))


def exact_max(net: Network, c: np.ndarray) -> float:
    """max c @ y over the box, by enumeration: the final ReLU followed by an identity layer keeps the net's function."""
    n = net.output_size
    return brute_force_max(Network((*net.layers, AffineLayer(np.eye(n), np.zeros(n), "identity"))), c, LO, HI)


def dead_cases(all_dead: bool):
    """``(id, vnnlib condition, condition on y, exact max of the margin)`` for sat and unsat properties.

    The ``sat-zero`` ones hold at every point because a dead output is 0, not its negative pre-activation:
    a bound of ``C z`` in place of ``C relu(z)`` (BaB before its identity output layer) calls them unsat.
    """
    net = dead_output_net(all_dead)
    always = [
        ("sat-zero-one-row", "(>= Y_0 0.0)", lambda y: y[:, 0] >= 0, 0.0),
        ("sat-zero-and", "(and (>= Y_2 Y_0) (>= Y_0 -0.5))", lambda y: (y[:, 2] >= y[:, 0]) & (y[:, 0] >= -0.5), 0.0),
    ]
    if all_dead:
        return always + [
            ("sat-one-row", "(>= Y_0 Y_1)", lambda y: y[:, 0] >= y[:, 1], 0.0),
            ("sat-and", "(and (>= Y_2 Y_1) (<= Y_0 0.0))", lambda y: (y[:, 2] >= y[:, 1]) & (y[:, 0] <= 0), 0.0),
            ("unsat-one-row", "(>= (- Y_1 Y_0) 0.01)", lambda y: y[:, 1] - y[:, 0] >= 0.01, -0.01),
            ("unsat-and", "(and (>= Y_2 0.01) (>= Y_0 Y_1))", lambda y: (y[:, 2] >= 0.01) & (y[:, 0] >= y[:, 1]),
             -0.01),
        ]
    top = exact_max(net, np.array([-1.0, 1.0, 0.0]))  # max y1 - y0 (y0 identically 0)
    assert top > 0.2  # output 1 is alive
    half, over = 0.5 * top, top + 0.02
    return always + [
        ("sat-one-row", f"(>= (- Y_1 Y_0) {float(half)!r})", lambda y: y[:, 1] - y[:, 0] >= half, top - half),
        ("sat-and", f"(and (>= Y_1 {float(half)!r}) (<= Y_2 Y_0))",
         lambda y: (y[:, 1] >= half) & (y[:, 2] <= y[:, 0]), top - half),
        ("unsat-one-row", f"(>= (- Y_1 Y_0) {float(over)!r})", lambda y: y[:, 1] - y[:, 0] >= over, top - over),
        ("unsat-and", f"(and (>= Y_1 {float(over)!r}) (<= Y_2 Y_0))",
         lambda y: (y[:, 1] >= over) & (y[:, 2] <= y[:, 0]), top - over),
    ]


def test_dead_outputs_are_identically_zero_on_the_box():
    for all_dead in (True, False):
        _, y = samples(dead_output_net(all_dead))
        assert np.all(y[:, [0, 2]] == 0)
        assert np.all(y[:, 1] == 0) == all_dead


@pytest.mark.parametrize("attack", [False, True])
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("all_dead", [True, False], ids=["all-dead", "some-dead"])
def test_dead_output_relus_on_every_method(all_dead, method, attack):
    net = dead_output_net(all_dead)
    for name, text, condition, margin_max in dead_cases(all_dead):
        result = verify_property(net, parse_vnnlib(vnnlib_text(3, text)), method=method, attack=attack,
                                 time_limit=30)
        expected = name.split("-")[0]
        assert result.verdict == expected, (name, result.verdict, result.decided_by, result.message)
        check_verdict(net, result.verdict, result.counterexample, condition, margin_max)
        if method == "mip" and not attack and expected == "sat":
            assert result.decided_by == "mip", name  # the decision MIP itself was built over the dead outputs


def test_spec_milp_and_min_distortion_have_one_column_per_output_with_dead_ones_fixed_at_zero():
    from optprune.formulations.relu_milp import build_min_distortion_milp, build_spec_milp
    from optprune.solvers import solve
    from optprune.verification.bounds import linear_bounds

    net = dead_output_net(all_dead=False)
    bounds = linear_bounds(net, LO, HI)
    assert np.all(bounds[-1][1][[0, 2]] < 0)
    c = np.array([[-1.0, 1.0, 0.0]])
    model, enc = build_spec_milp(net, bounds, LO, HI, c, 0.0)
    out = enc.output_idx
    assert out.shape == (3,) and len(set(out.tolist())) == 3 and np.all(out >= 0)
    assert np.all(model.col_lower[out[[0, 2]]] == 0) and np.all(model.col_upper[out[[0, 2]]] == 0)
    res = solve(model)
    assert res.objective == pytest.approx(exact_max(net, c[0]), abs=1e-6)
    y = model.group("output", res.x)
    assert np.allclose(y, net.forward(model.group("input", res.x)), atol=1e-6)
    # smallest L-inf move from x0 = 0 that lifts y1 - y0 to 0.5 * its maximum
    target = 0.5 * exact_max(net, c[0])
    model, enc = build_min_distortion_milp(net, bounds, np.zeros(2), LO, HI, c, -target, margin=0.0)
    res = solve(model)
    x = model.group("input", res.x)
    assert np.all(enc.output_idx >= 0) and net.forward(x)[1] >= target - 1e-6
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 201), np.linspace(-1, 1, 201)), -1).reshape(-1, 2)
    reach = grid[net.forward(grid)[:, 1] >= target]
    assert res.objective <= np.abs(reach).max(axis=1).min() + 1e-6  # no grid point closer than the MIP's optimum
