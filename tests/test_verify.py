"""VNN-LIB parsing, the verification pipeline and its CLI, on tiny nets and on the shared mnistfc instances."""

from __future__ import annotations

import csv
import functools
import json
import subprocess
import sys

import numpy as np
import pytest
from test_relu_milp import brute_force_max

from optprune.errors import VNNLibError
from optprune.network import AffineLayer, Network
from optprune.verification import (
    check_counterexample,
    format_vnncomp_result,
    max_margin,
    min_distortion,
    verify_property,
    verify_vnnlib,
)
from optprune.verification.vnnlib import parse_vnnlib, read_vnnlib

# The MIP pipeline is what these tests check (the library default is the auto portfolio).
verify_mip = functools.partial(verify_property, method="mip")

TOY = """
; y0 = x0 + x1, y1 = 1
(declare-const X_0 Real)
(declare-const X_1 Real)
(declare-const Y_0 Real)
(declare-const Y_1 Real)
(assert (>= X_0 0.0))
(assert (<= X_0 {hi}))
(assert (>= X_1 0.0))
(assert (<= X_1 {hi}))
(assert (or (and (>= Y_0 Y_1)) (and (<= (+ Y_0 (* 2 Y_1)) -5) (>= Y_1 0))))
"""


def toy_net() -> Network:
    # y0 = relu(x0) + relu(x1), y1 = 1
    return Network((
        AffineLayer(np.eye(2), np.zeros(2)),
        AffineLayer(np.array([[1.0, 1.0], [0.0, 0.0]]), np.array([0.0, 1.0]), "identity"),
    ))


def test_parser_builds_box_and_dnf():
    prop = parse_vnnlib(TOY.format(hi=0.75))
    (case,) = prop.cases
    assert np.allclose(case.lower, 0) and np.allclose(case.upper, 0.75)
    first, second = case.disjuncts
    assert np.allclose(first.C, [[1, -1]]) and np.allclose(first.d, [0])
    # y0 + 2 y1 <= -5  ->  -y0 - 2 y1 - 5 >= 0
    assert np.allclose(second.C, [[-1, -2], [0, 1]]) and np.allclose(second.d, [-5, 0])


@pytest.mark.parametrize(
    "text, message",
    [
        ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0)", "unclosed"),
        ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0))", "no lower or upper bound"),
        ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_3 0))", "X_3 used"),
        ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (exp X_0))", "unsupported operator 'exp'"),
        ("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= (* X_0 Y_0) 0))", "non-linear"),
        ("(define-fun f () Real 0)", "unsupported command 'define-fun'"),
    ],
)
def test_malformed_vnnlib_is_a_named_error(text, message):
    with pytest.raises(VNNLibError, match=message):
        parse_vnnlib(text)


def test_declared_sizes_must_match_the_network():
    with pytest.raises(VNNLibError, match="declares 2 inputs, the network has 3"):
        parse_vnnlib(TOY.format(hi=1), n_inputs=3)


def test_toy_property_verdicts_and_vnncomp_format():
    net = toy_net()
    sat = verify_mip(net, parse_vnnlib(TOY.format(hi=0.75)), attack=False)
    assert sat.verdict == "sat" and sat.decided_by == "mip"
    x = sat.counterexample
    assert np.all(x >= 0) and np.all(x <= 0.75) and x.sum() >= 1 - 1e-6
    text = format_vnncomp_result(sat)
    assert text.startswith("sat\n((X_0 ") and "(Y_1 1.0)" in text
    unsat = verify_mip(net, parse_vnnlib(TOY.format(hi=0.4)))
    assert unsat.verdict == "unsat" and format_vnncomp_result(unsat) == "unsat\n"


def test_counterexample_check_rejects_points_outside_the_box_or_the_unsafe_set():
    case = parse_vnnlib(TOY.format(hi=0.75)).cases[0]
    net = toy_net()
    assert check_counterexample(net, case, np.array([0.6, 0.6]))[0]
    assert not check_counterexample(net, case, np.array([0.2, 0.2]))[0]  # y0 < y1
    assert not check_counterexample(net, case, np.array([0.9, 0.9]))[0]  # outside the box


def test_a_reference_model_that_disagrees_blocks_a_sat_verdict():
    net = toy_net()
    prop = parse_vnnlib(TOY.format(hi=0.75))
    result = verify_mip(net, prop, attack=False, reference=lambda x: np.array([0.0, 1.0]))
    assert result.verdict == "unknown" and "failed the float64 forward pass" in result.message


def test_max_margin_and_min_distortion_on_a_tiny_classifier():
    rng = np.random.default_rng(1)
    net = Network((
        AffineLayer(rng.normal(size=(6, 4)), rng.normal(size=6)),
        AffineLayer(rng.normal(size=(3, 6)), rng.normal(size=3), "identity"),
    ))
    x0 = rng.uniform(0.3, 0.7, size=4)
    label = int(net.predict(x0))
    res = max_margin(net, x0, label, 0.2)
    assert res.status == "optimal"
    # Brute-force check on samples: no sampled point beats the optimal margin.
    X = np.clip(x0 + rng.uniform(-0.2, 0.2, size=(20000, 4)), 0, 1)
    Y = net.forward(X)
    sampled = max((Y[:, t] - Y[:, label]).max() for t in range(3) if t != label)
    assert res.objective >= sampled - 1e-6
    assert np.all(np.abs(res.x - x0) <= 0.2 + 1e-7)
    def truth(lo, hi):  # exact best margin by activation-pattern enumeration (an LP per pattern)
        best = -np.inf
        for t in range(3):
            if t != label:
                c = np.zeros(3)
                c[t], c[label] = 1.0, -1.0
                best = max(best, brute_force_max(net, c, lo, hi))
        return best

    for eps in (0.02, 0.2, 0.5):
        exact = truth(np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1))
        decided = max_margin(net, x0, label, eps, decision=True)
        assert abs(exact) > 1e-3  # far from the tolerance zone: the verdict is forced
        assert decided.is_adversarial == (exact > 0)
        assert decided.proven_robust == (exact < 0)
    dist = min_distortion(net, x0, label, norm="linf")
    reachable = truth(np.zeros(4), np.ones(4)) > 1e-4
    assert (dist.x is not None) == reachable
    if reachable:
        assert np.max(np.abs(dist.x - x0)) == pytest.approx(dist.objective, abs=1e-5)
        assert int(np.argmax(net.forward(dist.x))) != label
        assert dist.bound <= dist.objective + 1e-6
        if res.is_adversarial:  # an adversarial example within 0.2 exists, so the minimal distortion is <= 0.2
            assert dist.objective <= 0.2 + 1e-6
    else:
        assert dist.bound == np.inf


# ----------------------------------------------------------------------------- shared mnistfc instances


def test_every_shared_property_parses(mnistfc):
    files = sorted(mnistfc.glob("prop_*.vnnlib"))
    assert len(files) == 30
    for path in files:
        prop = read_vnnlib(path, 784, 10)
        (case,) = prop.cases
        assert len(case.disjuncts) == 9 and np.all(case.lower >= 0) and np.all(case.upper <= 1)
        eps = float(path.stem.split("_")[-1])
        assert np.all(case.upper - case.lower <= 2 * eps + 1e-6)


FAST = ["prop_7_0.03.vnnlib", "prop_2_0.03.vnnlib", "prop_1_0.05.vnnlib", "prop_9_0.03.vnnlib"]


@pytest.mark.parametrize("prop", FAST)
def test_fast_256x2_instances_match_the_competition(mnistfc, prop):
    with open(mnistfc / "verdicts_256x2.csv") as fh:
        truth = {r["property"]: r["verdict"] for r in csv.DictReader(fh)}
    result = verify_vnnlib(mnistfc / "mnist-net_256x2.onnx", mnistfc / prop, time_limit=60)
    assert result.verdict == truth[prop]
    if result.verdict == "sat":
        from optprune.io import network_from_onnx

        net = network_from_onnx(mnistfc / "mnist-net_256x2.onnx")
        case = read_vnnlib(mnistfc / prop, 784, 10).cases[0]
        assert check_counterexample(net, case, result.counterexample)[0]


def test_verify_cli_json_and_result_file(mnistfc, tmp_path):
    out = tmp_path / "result.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "optprune", "verify", str(mnistfc / "mnist-net_256x2.onnx"),
         str(mnistfc / "prop_7_0.03.vnnlib"), "--timeout", "60", "--json", "--out", str(out)],
        capture_output=True, text=True, check=True,
    )
    payload = json.loads(proc.stdout)
    assert payload["verdict"] == "sat" and len(payload["counterexample"]) == 784
    assert set(payload["stages"]) >= {"bounds", "attack", "mip"}
    lines = out.read_text().splitlines()
    assert lines[0] == "sat" and lines[1].startswith("((X_0 ") and lines[-1].startswith("(Y_9 ")


def test_verify_cli_names_bad_input(mnistfc, tmp_path):
    bad = tmp_path / "bad.vnnlib"
    bad.write_text("(declare-const X_0 Real)(declare-const Y_0 Real)(assert (>= X_0 0) (>= X_0 1))")
    proc = subprocess.run(
        [sys.executable, "-m", "optprune", "verify", str(mnistfc / "mnist-net_256x2.onnx"), str(bad), "--json"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error_type"] == "VNNLibError"


def test_attack_cli_writes_npz_png_and_summary(tmp_path):
    from optprune.io import save_torch_model
    from optprune.training import digits_mlp

    model = digits_mlp([16], seed=0)
    path = tmp_path / "digits.pt"
    save_torch_model(model, path)
    out = tmp_path / "attack"
    proc = subprocess.run(
        [sys.executable, "-m", "optprune", "attack", str(path), "--data", "digits", "--eps", "0.1", "--count", "3",
         "--time-limit", "20", "--out", str(out), "--json"],
        capture_output=True, text=True, check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["count"] == 3
    data = np.load(out / "adversarial.npz")
    assert data["adversarials"].shape == (3, 64)
    assert np.all(np.abs(data["adversarials"] - data["originals"]) <= 0.1 + 1e-7)
    assert (out / "adversarial.png").stat().st_size > 0
    for rec, pred, label in zip(summary["records"], data["predicted"], data["labels"]):
        assert rec["adversarial"] == (pred != label)


def test_spec_milp_exports_to_mps_and_pyomo_with_the_same_optimum(tmp_path):
    pytest.importorskip("pyomo", reason="pyomo extra not installed: pip install 'optprune[pyomo]'")
    import pyomo.environ as pyo

    from optprune.formulations.relu_milp import build_spec_milp
    from optprune.solvers import read_model, solve, to_pyomo, write_model
    from optprune.verification.bounds import linear_bounds

    rng = np.random.default_rng(5)
    net = Network((
        AffineLayer(rng.normal(size=(6, 3)), rng.normal(size=6)),
        AffineLayer(rng.normal(size=(2, 6)), rng.normal(size=2), "identity"),
    ))
    lo, hi = np.zeros(3), np.ones(3)
    model, _ = build_spec_milp(net, linear_bounds(net, lo, hi), lo, hi, [[1.0, -1.0]], 0.0)
    expected = solve(model).objective
    write_model(model, tmp_path / "m.mps")
    assert solve(read_model(tmp_path / "m.mps")).objective == pytest.approx(expected, abs=1e-6)
    pyomo_model, _ = to_pyomo(model)
    from pyomo.contrib.appsi.solvers import Highs

    Highs().solve(pyomo_model)
    objective = next(pyomo_model.component_data_objects(pyo.Objective, active=True))
    assert pyo.value(objective) == pytest.approx(expected, abs=1e-6)
