"""Block selection on the reconstruction objective: exact allocation vs brute force, greedy, re-fit, torch install."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optprune.errors import ShapeMismatchError
from optprune.systolic import (
    BLOCK_OBJECTIVES,
    ArraySpec,
    block_curves,
    block_layout,
    budget_cycles,
    greedy_reconstruction,
    refit_operands,
    select_blocks_reconstruction,
)

SHAPES = [(3, 10, 6), (3, 6, 5)]


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(60, 10)), np.maximum(rng.normal(size=(60, 6)), 0.0)]
    W = [rng.normal(size=(10, 6)), rng.normal(size=(6, 5))]
    b = [rng.normal(size=6), None]
    return X, W, b


def _brute(curves, layout, cycle_budget):
    """Best summed value over every combination of curve options that meets the budget, every layer running."""
    budget = budget_cycles(layout, cycle_budget)
    best = -np.inf
    for ks in itertools.product(*[range(len(o) + 1) for o in curves.order]):
        kept = np.array(ks)
        keep = curves.keep_mask(kept)
        if np.bincount(layout.layer[keep], minlength=layout.n_layers).min() == 0 or layout.cycles(keep) > budget:
            continue
        best = max(best, curves.objective(kept)[0])
    return best


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
@pytest.mark.parametrize("refit", [True, False])
def test_exact_allocation_is_the_brute_force_optimum_and_never_below_greedy(dataflow, refit):
    layout = block_layout(SHAPES, ArraySpec(4, 4, dataflow))
    X, W, b = _data()
    curves = block_curves(layout, X, W, b, refit=refit)
    for cycle_budget in (0.9, 0.7, 0.5):
        exact = select_blocks_reconstruction(curves, cycle_budget)
        greedy = greedy_reconstruction(curves, cycle_budget)
        best = _brute(curves, layout, cycle_budget)
        assert exact.score == pytest.approx(best, abs=1e-7)
        assert exact.score >= greedy.score - 1e-9
        assert exact.cycles <= exact.budget and greedy.cycles <= greedy.budget
        assert exact.extra["gap"] is not None and exact.extra["gap"] >= 0
        assert exact.bound >= best - 1e-7          # the MILP bound is a valid bound on the brute-force optimum
        # the reported error is the summed normalised error of the kept blocks
        assert exact.extra["error"] == pytest.approx(float(len(SHAPES)) - exact.score, abs=1e-9)


def test_greedy_can_lose_and_exact_recovers():
    """On the is dataflow (shared row-block costs) the ratio greedy is strictly below the optimum somewhere."""
    layout = block_layout(SHAPES, ArraySpec(4, 4, "is"))
    X, W, b = _data()
    curves = block_curves(layout, X, W, b)
    gaps = [select_blocks_reconstruction(curves, c).score - greedy_reconstruction(curves, c).score
            for c in (0.95, 0.85, 0.75, 0.65, 0.55)]
    assert max(gaps) > 1e-6


def test_installed_weights_reproduce_the_curve_error_and_are_the_least_squares_refit():
    layout = block_layout(SHAPES, ArraySpec(4, 4, "ws"))
    X, W, b = _data(1)
    curves = block_curves(layout, X, W, b, ridge=0.0)
    sel = select_blocks_reconstruction(curves, 0.6)
    ops = refit_operands(curves, sel.keep)
    total = 0.0
    for lo in range(2):
        Y = X[lo] @ W[lo] + (0.0 if b[lo] is None else b[lo])
        Wp, bp = ops[lo]
        total += float(np.sum((Y - X[lo] @ Wp - bp) ** 2)) / curves.energy[lo]
    assert total == pytest.approx(sel.extra["error"], rel=1e-6, abs=1e-9)
    # column-block 0 of layer 0: the kept rows are the least-squares fit with an intercept
    K, R, C = 10, 4, 4
    grid = sel.keep[: layout.layer_offsets[1]].reshape(layout.grid[0])
    rows = np.repeat(grid[:, 0], R)[:K]
    A = np.hstack([X[0][:, rows], np.ones((60, 1))])
    sol, *_ = np.linalg.lstsq(A, (X[0] @ W[0] + b[0])[:, :C], rcond=None)
    np.testing.assert_allclose(ops[0][0][rows, :C], sol[:-1], rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ops[0][1][:C], sol[-1], rtol=1e-6, atol=1e-8)
    assert np.all(ops[0][0][~rows, :C] == 0)


def test_curves_refuse_mismatched_inputs():
    layout = block_layout(SHAPES, ArraySpec(4, 4, "ws"))
    X, W, b = _data()
    with pytest.raises(ShapeMismatchError):
        block_curves(layout, X[:1], W, b)
    with pytest.raises(ShapeMismatchError):
        block_curves(layout, [X[0][:, :9], X[1]], W, b)


def test_objective_registry_installs_the_refitted_model():
    torch = pytest.importorskip("torch")
    from torch import nn

    from optprune.systolic import gemms_from_torch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 5)).double()
    X = np.random.default_rng(2).normal(size=(80, 10))
    gemms = gemms_from_torch(model)
    layout = block_layout([g.shape for g in gemms], ArraySpec(4, 4, "os"))
    assert set(BLOCK_OBJECTIVES.names()) >= {"score", "reconstruction"}
    obj = BLOCK_OBJECTIVES.get("reconstruction")(model, layout, (X, np.zeros(80, dtype=int)))
    sel = obj.exact(0.6)
    assert sel.score >= obj.greedy(0.6).score - 1e-9
    pruned, masks = obj.apply(sel)
    ops = refit_operands(obj.curves, sel.keep)
    first = pruned[0]
    np.testing.assert_allclose(first.weight.detach().numpy(), ops[0][0].T, atol=1e-12)
    np.testing.assert_allclose(first.bias.detach().numpy(), ops[0][1], atol=1e-12)
    assert torch.all(first.weight[masks["0"] == 0] == 0)
    # the first layer's outputs are the re-fitted linear map of the inputs
    with torch.no_grad():
        out = first(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(out, X @ ops[0][0] + ops[0][1], atol=1e-10)
