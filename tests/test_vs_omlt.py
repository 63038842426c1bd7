"""benchmarks/vs_omlt.py compares like with like: given the same bounds, OMLT's and optprune's MIPs have the same optimum.

A tiny digits MLP and two test images; skipped (saying why) when OMLT is not installed.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from optprune.data import load_dataset
from optprune.verification.bounds import compute_bounds

pytest.importorskip("omlt", reason="OMLT is not installed (pip install -c constraints.txt omlt)")
pytest.importorskip("pyomo.contrib.appsi.solvers", reason="Pyomo's appsi HiGHS interface is not available")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "vs_omlt.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_vs_omlt", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load_bench()


@pytest.fixture(scope="module")
def cases():
    from optprune.io import network_from_torch
    from optprune.training import digits_mlp

    net = network_from_torch(digits_mlp([10, 10], seed=0, epochs=20), name="digits-10x2")
    X, y = load_dataset("digits", "test")
    flat = X.reshape(len(X), -1).astype(np.float64)
    ok = np.flatnonzero(net.predict(flat) == y)[:2]
    out = []
    for i in ok:
        logits = net.forward(flat[i]).copy()
        logits[y[i]] = -np.inf
        out.append((net, flat[i], int(y[i]), int(np.argmax(logits))))
    return out


@pytest.mark.parametrize("eps", [0.05, 0.15])
def test_same_bounds_same_optimum(bench, cases, eps):
    for net, x0, label, target in cases:
        lo, hi = np.clip(x0 - eps, 0, 1), np.clip(x0 + eps, 0, 1)
        bounds = compute_bounds(net, lo, hi, "linear")
        ours = bench.optprune_max_margin(net, lo, hi, target, label, 20.0, bounds)
        theirs = bench.omlt_max_margin(net, lo, hi, target, label, 20.0, bounds)
        assert ours["optimal"] and theirs["optimal"], (ours["status"], theirs["status"])
        assert math.isclose(ours["objective"], theirs["objective"], rel_tol=1e-6, abs_tol=1e-6)
        # OMLT's ReLU builder saw exactly our bounds, layer by layer (not its own interval bounds).
        for (lo_ours, hi_ours), (lo_seen, hi_seen) in zip(bounds, theirs["omlt_bounds"]):
            np.testing.assert_array_equal(lo_seen, lo_ours)
            np.testing.assert_array_equal(hi_seen, hi_ours)
        for side in (ours, theirs):
            assert all(side[k] >= 0 for k in bench.STAGES)


def test_interval_row_same_optimum_and_nearly_the_same_bounds(bench, cases):
    net, x0, label, target = cases[0]
    lo, hi = np.clip(x0 - 0.1, 0, 1), np.clip(x0 + 0.1, 0, 1)
    ours = bench.optprune_max_margin(net, lo, hi, target, label, 20.0)  # interval bounds inside the build
    theirs = bench.omlt_max_margin(net, lo, hi, target, label, 20.0)  # OMLT's own interval bounds
    assert ours["optimal"] and theirs["optimal"]
    assert math.isclose(ours["objective"], theirs["objective"], rel_tol=1e-6, abs_tol=1e-6)
    for (a, b), (c, d) in zip(ours["bounds"], theirs["omlt_bounds"]):
        assert np.max(np.abs(a - c)) < 1e-5 and np.max(np.abs(b - d)) < 1e-5


def test_ratio_statistics_are_named_and_differ(bench):
    # OMLT/optprune ratios 2, 2, 500: median of ratios 2, ratio of medians 8 / 2 = 4, geometric mean 2000**(1/3)
    stats = bench.ratio_stats([(1.0, 2.0), (4.0, 8.0), (2.0, 1000.0)])
    assert stats["n"] == 3
    assert stats["median_of_ratios"] == pytest.approx(2.0)
    assert stats["ratio_of_medians"] == pytest.approx(4.0)
    assert stats["geometric_mean"] == pytest.approx(2000 ** (1 / 3))
    assert bench.ratio_stats([]) == {"n": 0}
