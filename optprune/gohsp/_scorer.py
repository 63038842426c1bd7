"""The graph head ranking as a scorer of the pruning engine, and the budgets from the exact structure search.

:class:`GraphHeadScorer` (registered lazily in :data:`optprune.scoring.SCORERS` as ``"gohsp"`` and
``"graph_heads"``, so ``optprune prune --scorer gohsp`` and ``Pruner(scorer="gohsp")`` use it) scores
every attention-head group with the stationary distribution of
:mod:`optprune.gohsp._graph` and every other prunable group (MLP neurons) with
the group magnitude (L2 norm of a unit's rows and columns, Torch-Pruning's
group norm).

:func:`search_keep` turns scores of any scorer into per-layer budgets with the
exact structure search (:func:`optprune.search.search_decision`) under a
parameter budget. Scores are made comparable across groups first: each kind
(heads, neurons) is divided by its mean over *all* groups of that kind (so a
layer whose heads the graph ranks high keeps more), then multiplied by the
unit's parameter count, so that at equal importance every parameter is worth
the same and the search trades a head (thousands of parameters) against MLP
neurons (a hundred each) by importance per parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from optprune._validation import Interval, Options
from optprune.gohsp._graph import SIMILARITIES, head_importance
from optprune.scoring import MagnitudeScorer, Scorer
from optprune.structure import Group, member_tensors

__all__ = ["GraphHeadScorer", "comparable_scores", "search_keep", "unit_parameters"]


class GraphHeadScorer(Scorer):
    """Head importance = stationary distribution of the head-similarity graph (GOHSP); neurons by magnitude.

    Head scores are ``pi_h * H`` (``H`` heads in the model, so their mean is 1
    and blocks compare); neuron scores are group L2 magnitudes.
    """

    name = "gohsp"
    needs_data = True
    _parameter_constraints = {
        "similarity": [Options(SIMILARITIES)],
        "damping": [Interval(float, 0.0, 1.0)],
        "calibration_size": [Interval(int, 1, None)],
    }

    def __init__(self, similarity: str = "correlation", damping: float = 0.85, calibration_size: int = 256) -> None:
        self.similarity = similarity
        self.damping = damping
        self.calibration_size = calibration_size

    def _score(self, model: nn.Module, groups: list[Group], batches) -> dict[str, np.ndarray]:
        import torch

        X = torch.cat([b[0] for b in batches])[: self.calibration_size]
        pi = head_importance(model, X, self.similarity, self.damping)
        total = sum(p.size for p in pi.values())
        out = {g.name: pi[g.name] * total for g in groups if g.kind == "heads" and g.name in pi}
        rest = [g for g in groups if g.name not in out]
        if rest:
            out.update(MagnitudeScorer(members="all")(model, None, groups=rest))
        return out



def unit_parameters(model: nn.Module, group: Group) -> int:
    """Parameters one unit of ``group`` owns (rows of producers, columns of consumers, per-channel entries)."""
    total = 0
    for m in group.members:
        for _, tensor, axis in member_tensors(model, m, group.width):
            total += tensor.numel() // tensor.shape[axis] * m.factor
    return int(total)


def comparable_scores(
    model: nn.Module, scores: Mapping[str, np.ndarray], groups: Sequence[Group]
) -> dict[str, np.ndarray]:
    """Scores divided by their kind's mean over all groups of that kind, times the unit's parameter count."""
    by_name = {g.name: g for g in groups}
    out = {}
    for kind in sorted({by_name[n].kind for n in scores}):
        names = [n for n in scores if by_name[n].kind == kind]
        values = np.concatenate([np.abs(np.asarray(scores[n], dtype=np.float64)) for n in names])
        mean = values.mean() if values.size and values.mean() > 0 else 1.0
        for n in names:
            out[n] = np.abs(np.asarray(scores[n], dtype=np.float64)) / mean * unit_parameters(model, by_name[n])
    return out


def search_keep(
    model: nn.Module,
    scores: Mapping[str, np.ndarray],
    groups: Sequence[Group],
    budget: float,
    input_shape: Sequence[int],
    *,
    min_width: int = 1,
    solver: str = "highs",
    resource: str = "params",
) -> tuple[dict[str, list[int]], object]:
    """Kept indices per group and the search result: maximise comparable kept score s.t. resource <= budget.

    ``resource`` is ``"params"`` or ``"flops"`` (multiply-accumulates), ``budget`` a fraction of the unpruned model.
    """
    from optprune.search import search_decision

    values = comparable_scores(model, scores, groups)
    return search_decision(model, values, {resource: float(budget)}, input_shape=tuple(input_shape),
                           min_width=min_width, solver=solver, return_result=True)
