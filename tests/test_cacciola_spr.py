"""benchmarks/cacciola_mnist.py's Structured Perspective Regularization is the perspective relaxation it claims to be.

For a neuron's weight row ``w`` with big-M ``M``, SPR is
``min over z in [||w||_inf / M, 1] of alpha ||w||^2 / z + (1 - alpha) z`` (the perspective reformulation of
``alpha ||w||^2 + (1 - alpha) z`` with ``||w||_inf <= M z``, z relaxed to [0, 1], projected onto w). The closed form
in the script (three cases) is checked against that minimum taken by brute force over z.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "cacciola_mnist.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_cacciola_mnist", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _brute(w: np.ndarray, m: float, alpha: float) -> float:
    """Per row: min over a fine grid of z in [max|w|/M, 1] of the perspective function, times the row length."""
    total = 0.0
    for row in w:
        lo = np.abs(row).max() / m
        z = np.linspace(lo, 1.0, 200001) if lo < 1 else np.array([1.0])
        n2 = float((row ** 2).sum())
        total += float((alpha * n2 / z + (1 - alpha) * z).min()) * row.size
    return total


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9])
def test_spr_closed_form_is_the_perspective_relaxation(alpha):
    bench = _load_bench()
    rng = np.random.default_rng(0)
    # rows in all three regimes: tiny (z at the big-M bound), moderate (interior optimum), large (z = 1)
    w1 = np.concatenate([rng.normal(0, s, size=(4, 6)) for s in (1e-3, 0.05, 0.3, 2.0)])
    w2 = rng.normal(0, 0.1, size=(3, 5))
    m1, m2 = float(np.abs(w1).max()), 0.5
    got = float(bench.spr_penalty([torch.tensor(w1), torch.tensor(w2)], [m1, m2], alpha))
    expected = (_brute(w1, m1, alpha) + _brute(w2, m2, alpha)) / (w1.size + w2.size)
    assert got == pytest.approx(expected, rel=1e-6)


def test_spr_pushes_small_rows_to_zero_faster_than_weight_decay():
    """The gradient of a tiny row does not vanish with the row (unlike L2): it stays O(1) per unit norm."""
    bench = _load_bench()
    for scale in (1e-2, 1e-4):
        w = torch.full((1, 8), scale, dtype=torch.float64, requires_grad=True)
        bench.spr_penalty([w], [1.0], 0.9).backward()
        assert float(w.grad.norm()) > 0.1  # L2 (alpha ||w||^2) would give 2 alpha ||w|| / 8 -> 0
