"""Importance scorers: model + calibration batches -> one score array per dependency group.

Every scorer follows one protocol (:class:`Scorer`): ``scorer(model, calibration)``
returns ``{group name: scores}`` for the prunable groups in forward order, higher
meaning more important. Normalisers (:func:`normalize`) are kept separate.
Per-weight importances (one tensor per Linear / Conv2d weight) are the second
kind of scorer (:mod:`optprune.scoring._weights`).

The registries (:data:`SCORERS`, :data:`WEIGHT_SCORERS`) and the normaliser
names are importable without torch; every other name loads its module (and
torch) when first asked for, so the CLI and bench config validation list the
scorers at no import cost.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optprune.scoring._normalize import NORMALIZERS, normalize
from optprune.scoring._registry import (
    SCORERS,
    WEIGHT_SCORERS,
    available_scorers,
    normalize_scorer_name,
    register_scorer,
)

if TYPE_CHECKING:
    from optprune.scoring._activation import ActivationMeanScorer, APoZScorer
    from optprune.scoring._base import Scorer, as_batches, get_scorer, mean_loss, score_model
    from optprune.scoring._capture import consumer_inputs, input_means
    from optprune.scoring._flap import FLAP_METRICS, FLAPScorer, WandaSPScorer
    from optprune.scoring._gradient import FisherScorer, TaylorScorer
    from optprune.scoring._magnitude import MagnitudeScorer, RandomScorer
    from optprune.scoring._mip import MIPAwareScorer, expected_unstable, instability_frequency
    from optprune.scoring._perturb import AblationScorer, BonsaiScorer
    from optprune.scoring._weights import weight_layers

#: name -> the private module that defines it (loaded on first access, with torch)
_LAZY = {
    "ActivationMeanScorer": "_activation", "APoZScorer": "_activation",
    "Scorer": "_base", "as_batches": "_base", "get_scorer": "_base", "mean_loss": "_base", "score_model": "_base",
    "consumer_inputs": "_capture", "input_means": "_capture",
    "FLAP_METRICS": "_flap", "FLAPScorer": "_flap", "WandaSPScorer": "_flap",
    "FisherScorer": "_gradient", "TaylorScorer": "_gradient",
    "MagnitudeScorer": "_magnitude", "RandomScorer": "_magnitude",
    "MIPAwareScorer": "_mip", "expected_unstable": "_mip", "instability_frequency": "_mip",
    "AblationScorer": "_perturb", "BonsaiScorer": "_perturb",
    "weight_layers": "_weights",
}


def __getattr__(name: str) -> Any:
    """Torch-side names load their module (and torch) only when asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"optprune.scoring.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'optprune.scoring' has no attribute {name!r}")


__all__ = [
    "FLAP_METRICS",
    "NORMALIZERS",
    "SCORERS",
    "WEIGHT_SCORERS",
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
    "normalize_scorer_name",
    "register_scorer",
    "score_model",
    "weight_layers",
]
