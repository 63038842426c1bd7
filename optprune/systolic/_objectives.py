"""What a block selection maximises, by name: summed per-weight scores, or the layer-output reconstruction error.

:data:`BLOCK_OBJECTIVES` maps a name to a class built from a model, its
:class:`~optprune.systolic.BlockLayout` and calibration data, with the same
three methods (``layers``: the names of the prunable Linear modules, in the
layout's order; default every Linear/Conv2d): :meth:`exact` (the MIP through the solver protocol, started
from greedy), :meth:`greedy` (the HALP-style baseline on the same objective)
and :meth:`apply` (the pruned copy of the model and its keep-masks). The CLI's
``systolic prune --objective`` and ``benchmarks/systolic_codesign.py
--objective`` read the names from here; adding an objective is one class and
one registration line.

* ``score``: sums of per-weight importances per block (a registered weight
  scorer), a knapsack (:func:`~optprune.systolic.select_blocks`,
  :func:`~optprune.systolic.greedy_blocks`); the pruned blocks are zeroed.
* ``reconstruction``: per output column-block error curves with a least-squares
  re-fit (:mod:`optprune.systolic._reconstruct`); the kept weights and biases
  are replaced by their re-fitted values.
"""

from __future__ import annotations

import numpy as np

from optprune.registry import Registry
from optprune.systolic._cycles import BlockLayout
from optprune.systolic._select import BlockSelection, greedy_blocks, select_blocks

__all__ = ["BLOCK_OBJECTIVES", "ReconstructionObjective", "ScoreObjective"]


class ScoreObjective:
    """Summed per-weight importances per block (``scorer``: a name of :data:`optprune.scoring.WEIGHT_SCORERS`;
    ``normalize="mean"`` divides each layer's importances by their mean first)."""

    def __init__(self, model, layout: BlockLayout, calibration, *, scorer: str = "taylor", normalize: str = "none",
                 layers=None, **_: object) -> None:
        from optprune.systolic._blocks import block_scores, weight_importance

        imp = weight_importance(model, scorer, calibration, layers=layers)
        self.layers = layers
        if normalize == "mean":
            imp = [i / max(float(i.mean()), 1e-300) for i in imp]
        self.model, self.layout = model, layout
        self.scores = block_scores(layout, imp)

    def exact(self, cycle_budget: float, solver: str = "highs", time_limit: float | None = None,
              **kw) -> BlockSelection:
        return select_blocks(self.layout, self.scores, cycle_budget, solver=solver, time_limit=time_limit, **kw)

    def greedy(self, cycle_budget: float, **kw) -> BlockSelection:
        return greedy_blocks(self.layout, self.scores, cycle_budget, **kw)

    def apply(self, sel: BlockSelection):
        from optprune.systolic._blocks import apply_blocks

        return apply_blocks(self.model, self.layout, sel.keep, self.layers)


class ReconstructionObjective:
    """Layer-output reconstruction error of the kept blocks (``refit``: least-squares re-fit of the kept weights;
    the calibration inputs ``calibration[0]`` run through the dense model to give each layer's inputs)."""

    def __init__(self, model, layout: BlockLayout, calibration, *, refit: bool = True, ridge: float | str = "auto",
                 layers=None, **_: object) -> None:
        from optprune.systolic._blocks import layer_biases, layer_inputs, operand_weights
        from optprune.systolic._reconstruct import block_curves

        X = np.asarray(calibration[0])
        self.model, self.layout, self.layers = model, layout, layers
        self.curves = block_curves(layout, layer_inputs(model, X, layers=layers), operand_weights(model, layers),
                                   layer_biases(model, layers), refit=refit, ridge=ridge)

    def exact(self, cycle_budget: float, solver: str = "highs", time_limit: float | None = None,
              **kw) -> BlockSelection:
        from optprune.systolic._reconstruct import select_blocks_reconstruction

        return select_blocks_reconstruction(self.curves, cycle_budget, solver=solver, time_limit=time_limit, **kw)

    def greedy(self, cycle_budget: float, **_: object) -> BlockSelection:
        from optprune.systolic._reconstruct import greedy_reconstruction

        return greedy_reconstruction(self.curves, cycle_budget)

    def apply(self, sel: BlockSelection):
        from optprune.systolic._blocks import apply_refit
        from optprune.systolic._reconstruct import refit_operands

        return apply_refit(self.model, self.layout, sel.keep, refit_operands(self.curves, sel.keep), self.layers)


#: block-selection objectives by name (the CLI's and the benchmark's ``--objective``)
BLOCK_OBJECTIVES: Registry = Registry("block objective")
BLOCK_OBJECTIVES.register("score", ScoreObjective, "sums of per-weight scores per block (knapsack)")
BLOCK_OBJECTIVES.register("reconstruction", ReconstructionObjective,
                          "layer-output reconstruction error with least-squares re-fit (OSSCAR-style curves)")
