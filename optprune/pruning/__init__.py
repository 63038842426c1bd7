"""Structured pruning: decisions as data, real shrinking, the pruner, recovery, and the unstructured baseline.

The pruner sits above its parts: a model is traced into dependency groups by
:mod:`optprune.structure` (re-exported here: :class:`Group`,
:func:`dependency_groups`, ...), scored by :mod:`optprune.scoring`, and a
decision is taken per group (uniform, global threshold, or the exact search of
:mod:`optprune.search`). A :class:`PruningDecision` lists the units each group
keeps; :func:`apply_decision` builds a smaller model that computes exactly what
the masked original computes; :class:`Pruner` goes from scores to that model;
:func:`finetune` recovers accuracy; :func:`prune_unstructured` is the per-weight
magnitude baseline.

Decisions are chosen by name from :data:`DECISIONS` (:mod:`optprune.pruning._decisions`:
:class:`ScoredDecision` for the Pruner, :class:`MethodDecision` for methods that
prune by themselves). The registry is importable without torch; every other
name loads its module (and torch) when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optprune.pruning._registry import DECISIONS

if TYPE_CHECKING:
    from optprune.pruning._apply import apply_decision, count_parameters, mask_model, parameters_after
    from optprune.pruning._decision import PruningDecision
    from optprune.pruning._decisions import MethodDecision, MethodOutcome, ScoredDecision
    from optprune.pruning._pruner import Pruner, scored_decisions
    from optprune.pruning._reconstruct import reconstruct, refit_consumers
    from optprune.pruning._recovery import distillation_loss, finetune, teacher_outputs
    from optprune.pruning._select import global_keep, keep_count, uniform_keep
    from optprune.pruning._unstructured import (
        MATCHES,
        attach_masks,
        magnitude_masks,
        prune_unstructured,
        remove_masks,
        unstructured_keep_count,
    )
    from optprune.structure import (
        SUPPORTED,
        Group,
        Member,
        MultiHeadSelfAttention,
        dependency_groups,
        infer_input_shape,
        masked,
    )

#: name -> the module that defines it (loaded on first access, with torch)
_LAZY = {
    **dict.fromkeys(("apply_decision", "count_parameters", "mask_model", "parameters_after"),
                    "optprune.pruning._apply"),
    "PruningDecision": "optprune.pruning._decision",
    **dict.fromkeys(("MethodDecision", "MethodOutcome", "ScoredDecision"), "optprune.pruning._decisions"),
    **dict.fromkeys(("Pruner", "scored_decisions"), "optprune.pruning._pruner"),
    **dict.fromkeys(("reconstruct", "refit_consumers"), "optprune.pruning._reconstruct"),
    **dict.fromkeys(("distillation_loss", "finetune", "teacher_outputs"), "optprune.pruning._recovery"),
    **dict.fromkeys(("global_keep", "keep_count", "uniform_keep"), "optprune.pruning._select"),
    **dict.fromkeys(("MATCHES", "attach_masks", "magnitude_masks", "prune_unstructured", "remove_masks",
                     "unstructured_keep_count"), "optprune.pruning._unstructured"),
    **dict.fromkeys(("SUPPORTED", "Group", "Member", "MultiHeadSelfAttention", "dependency_groups",
                     "infer_input_shape", "masked"), "optprune.structure"),
}


def __getattr__(name: str) -> Any:
    """Torch-side names load their module (and torch) only when asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optprune.pruning' has no attribute {name!r}")


__all__ = [
    "DECISIONS",
    "MATCHES",
    "SUPPORTED",
    "Group",
    "Member",
    "MethodDecision",
    "MethodOutcome",
    "MultiHeadSelfAttention",
    "Pruner",
    "PruningDecision",
    "ScoredDecision",
    "apply_decision",
    "attach_masks",
    "count_parameters",
    "dependency_groups",
    "distillation_loss",
    "teacher_outputs",
    "finetune",
    "global_keep",
    "infer_input_shape",
    "keep_count",
    "magnitude_masks",
    "mask_model",
    "masked",
    "parameters_after",
    "prune_unstructured",
    "reconstruct",
    "refit_consumers",
    "remove_masks",
    "scored_decisions",
    "uniform_keep",
    "unstructured_keep_count",
]
