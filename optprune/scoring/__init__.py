"""Importance scorers: model + calibration batches -> one score array per dependency group.

Every scorer follows one protocol (:class:`Scorer`): ``scorer(model, calibration)``
returns ``{group name: scores}`` for the prunable groups in forward order, higher
meaning more important. Normalisers (:func:`normalize`) are kept separate.
"""

from optprune.scoring._activation import ActivationMeanScorer, APoZScorer
from optprune.scoring._base import (
    Scorer,
    as_batches,
    available_scorers,
    get_scorer,
    mean_loss,
    register_scorer,
    score_model,
)
from optprune.scoring._capture import consumer_inputs, input_means
from optprune.scoring._flap import FLAP_METRICS, FLAPScorer, WandaSPScorer
from optprune.scoring._gradient import FisherScorer, TaylorScorer
from optprune.scoring._magnitude import MagnitudeScorer, RandomScorer
from optprune.scoring._mip import MIPAwareScorer, expected_unstable, instability_frequency
from optprune.scoring._normalize import NORMALIZERS, normalize
from optprune.scoring._perturb import AblationScorer, BonsaiScorer

__all__ = [
    "FLAP_METRICS",
    "NORMALIZERS",
    "APoZScorer",
    "AblationScorer",
    "ActivationMeanScorer",
    "BonsaiScorer",
    "FLAPScorer",
    "FisherScorer",
    "MIPAwareScorer",
    "MagnitudeScorer",
    "RandomScorer",
    "Scorer",
    "TaylorScorer",
    "WandaSPScorer",
    "as_batches",
    "available_scorers",
    "consumer_inputs",
    "expected_unstable",
    "get_scorer",
    "input_means",
    "instability_frequency",
    "mean_loss",
    "normalize",
    "register_scorer",
    "score_model",
]
