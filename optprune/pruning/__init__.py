"""Structured pruning: dependency groups, decisions as data, real shrinking, the pruner and recovery.

A model is traced into :class:`Group` objects (structures removed together); a
:class:`PruningDecision` lists the units each group keeps; :func:`apply_decision`
builds a smaller model that computes exactly what the masked original computes;
:class:`Pruner` goes from scores to that model; :func:`finetune` recovers accuracy.
"""

from optprune.pruning._apply import apply_decision, count_parameters, mask_model, masked
from optprune.pruning._attention import MultiHeadSelfAttention
from optprune.pruning._decision import PruningDecision
from optprune.pruning._graph import SUPPORTED, Group, Member, dependency_groups, infer_input_shape
from optprune.pruning._pruner import DECISION_MODES, Pruner
from optprune.pruning._recovery import distillation_loss, finetune
from optprune.pruning._select import global_keep, uniform_keep

__all__ = [
    "DECISION_MODES",
    "SUPPORTED",
    "Group",
    "Member",
    "MultiHeadSelfAttention",
    "Pruner",
    "PruningDecision",
    "apply_decision",
    "count_parameters",
    "dependency_groups",
    "distillation_loss",
    "finetune",
    "global_keep",
    "infer_input_shape",
    "mask_model",
    "masked",
    "uniform_keep",
]
