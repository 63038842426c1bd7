"""benchmarks/vnncomp_oval21.py: the harness's own counterexample re-check and its summary sentence."""

from __future__ import annotations

import numpy as np
import pytest

from optprune.io import network_to_onnx
from optprune.network import AffineLayer, Network
from optprune.verification.counterexample import OnnxChecker
from optprune.verification.vnnlib import parse_vnnlib


@pytest.fixture(scope="module")
def oval21(benchmark_script):
    return benchmark_script("vnncomp_oval21")


def test_recheck_runs_the_float64_pass_and_onnxruntime(oval21, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime (dev extra) runs the ONNX re-check")
    net = Network((AffineLayer(np.array([[1.0, -1.0], [0.5, 1.0]]), np.zeros(2), "relu", name="h"),
                   AffineLayer(np.eye(2), np.zeros(2), "identity", name="out")))
    network_to_onnx(net, tmp_path / "net.onnx")
    text = ("(declare-const X_0 Real)\n(declare-const X_1 Real)\n(declare-const Y_0 Real)\n(declare-const Y_1 Real)\n"
            "(assert (>= X_0 0.0))\n(assert (<= X_0 1.0))\n(assert (>= X_1 0.0))\n(assert (<= X_1 1.0))\n"
            "(assert (>= Y_0 Y_1))\n")
    prop = parse_vnnlib(text, 2, 2)
    check = OnnxChecker(tmp_path / "net.onnx")
    assert oval21.recheck(net, check, prop, np.array([1.0, 0.0])) == (True, True)  # y = (1, 0.5)
    assert oval21.recheck(net, check, prop, np.array([0.0, 1.0])) == (False, False)  # y = (0, 1)
    assert oval21.recheck(net, check, prop, np.array([1.5, 0.0])) == (False, False)  # outside the box


def test_checked_summary_counts_sat_rechecks_and_load(oval21):
    records = [{"verdict": "sat", "cex_float64": True, "cex_onnxruntime": True, "load_1m": 2.0},
               {"verdict": "sat", "cex_float64": True, "cex_onnxruntime": False, "load_1m": 4.0},
               {"verdict": "unsat"}]
    text = oval21.checked_summary(records)
    assert "1 of 2 sat verdicts pass both" in text
    assert "median 3.0, max 4.0 (2 of 3 records)" in text
