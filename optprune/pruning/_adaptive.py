r"""FLAP's adaptive structure as a decision: per-group standardised scores, one global threshold at a parameter budget.

FLAP (An et al., "Fluctuation-based Adaptive Structured Pruning for Large
Language Models", AAAI 2024, section 3.2, eq. 9) standardises its fluctuation
scores within each layer, ``z = (s - mean_g) / std_g``, ranks every unit of
every layer on one list and cuts it where the kept units hold the target
fraction of the parameters (its code weighs each unit by the parameters it
takes away, 512/3 MLP channels per attention head): the widths adapt per layer.

The ``global`` decision compares the same standardised scores but cuts at a
*count* of units (``floor(ratio * U)`` removed), so where units cost different
numbers of parameters (the first hidden layer of an MNIST MLP reads 784
inputs, the others 256) the pruned model keeps another fraction of the
parameters than ``1 - ratio``. This decision is FLAP's cut: the threshold
``tau`` is the lowest at which the plan (every unit with ``z >= tau`` kept,
snapped down to the allowed widths) meets ``params <= (1 - ratio) * P``, with
the parameters counted exactly by the structure search's cost model
(:func:`optprune.search.global_threshold_widths` through
:func:`optprune.search.search_decision` with ``method="global"``). Pair it with
the ``flap`` scorer and ``compensate=True`` (FLAP eq. 8) for FLAP as published;
``search_kwargs={"budgets": {...}}`` cuts at other budgets (FLOPs, latency).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from optprune.pruning._decisions import Kept, ScoredDecision
from optprune.search._torch import search_decision
from optprune.structure import Group

if TYPE_CHECKING:
    from optprune.pruning._pruner import Pruner

__all__ = ["ADAPTIVE", "AdaptiveDecision"]


class AdaptiveDecision(ScoredDecision):
    """FLAP's adaptive structure (module docstring); budget ``params = 1 - ratio`` unless ``search_kwargs`` says."""

    def keep(self, pruner: Pruner, model: nn.Module, groups: list[Group]) -> Kept:
        kwargs = dict(pruner.search_kwargs or {})
        budgets = kwargs.pop("budgets", {"params": 1.0 - pruner.ratio})
        kwargs.setdefault("min_width", pruner.min_keep)
        kwargs["method"] = "global"
        kept, result = search_decision(
            model, pruner.normalized_scores_, budgets, input_shape=pruner.input_shape_, return_result=True, **kwargs
        )
        pruner.search_result_ = result
        return kept


ADAPTIVE = AdaptiveDecision()
