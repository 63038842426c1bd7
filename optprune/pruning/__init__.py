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
"""

from optprune.pruning._apply import apply_decision, count_parameters, mask_model, parameters_after
from optprune.pruning._decision import PruningDecision
from optprune.pruning._pruner import DECISION_MODES, Pruner
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

__all__ = [
    "DECISION_MODES",
    "MATCHES",
    "SUPPORTED",
    "Group",
    "Member",
    "MultiHeadSelfAttention",
    "Pruner",
    "PruningDecision",
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
    "remove_masks",
    "uniform_keep",
    "unstructured_keep_count",
]
