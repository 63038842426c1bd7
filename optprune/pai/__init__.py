"""Pruning at initialisation: structured (Reconvene) and unstructured (SNIP/SynFlow masks).

:class:`Reconvene` decides before any training which layers tolerate structured
pruning (the density an unstructured SNIP/SynFlow mask leaves them), removes
their least salient channels through the dependency groups, re-initialises and
trains the smaller network; :class:`UnstructuredPaI` is the same-budget
unstructured baseline. Saliencies are the per-weight scorers
(:data:`optprune.scoring.WEIGHT_SCORERS`, :mod:`optprune.pai._saliency`).
``reconvene`` and BMRS's ``bmrs-n`` / ``bmrs-u`` are pruning decisions
(:data:`optprune.pruning.DECISIONS`, :mod:`optprune.pai._methods`).
"""

from optprune.pai._methods import BMRSDecision, ReconveneDecision, prune_with_method
from optprune.pai._reconvene import LAYER_CHOICES, Reconvene, TrainedModelWarning, UnstructuredPaI, init_bound_ratio
from optprune.pai._saliency import SALIENCIES, channel_saliency, snip_scores, synflow_scores, weight_saliency

__all__ = [
    "LAYER_CHOICES",
    "SALIENCIES",
    "BMRSDecision",
    "Reconvene",
    "ReconveneDecision",
    "TrainedModelWarning",
    "UnstructuredPaI",
    "channel_saliency",
    "init_bound_ratio",
    "prune_with_method",
    "snip_scores",
    "synflow_scores",
    "weight_saliency",
]
