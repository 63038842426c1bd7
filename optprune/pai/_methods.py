"""The threshold-free and at-initialisation methods as named decisions of the pruning engine.

``prune_with_method(name, ...)`` runs ``"bmrs-n"``, ``"bmrs-u"`` (BMRS_U-8) or
``"reconvene"`` (SNIP) on a torch model and returns the physically smaller
model with its :class:`~optprune.pruning.PruningDecision`: what ``optprune prune
--method`` and ``[[pruning]]`` entries of ``optprune bench`` configs call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from optprune.bayes import BMRS, precision_bounds
from optprune.errors import InvalidParameterError
from optprune.pai._reconvene import Reconvene
from optprune.pruning import PruningDecision

__all__ = ["METHODS", "prune_with_method"]

METHODS = ("bmrs-n", "bmrs-u", "reconvene")


def prune_with_method(
    method: str,
    model: nn.Module,
    data: tuple[np.ndarray, np.ndarray],
    input_shape: Sequence[int],
    ratio: float = 0.5,
    epochs: int = 10,
    seed: int = 0,
) -> tuple[nn.Module, PruningDecision, dict]:
    """``(smaller model, decision, info)`` of one of :data:`METHODS`.

    BMRS trains ``model``'s copy ``epochs`` epochs with noise on ``data`` and
    ignores ``ratio`` (no threshold, no target); Reconvene removes ``ratio`` of
    the parameters at initialisation, re-initialises and trains ``epochs``
    epochs (it warns with :class:`~optprune.pai.TrainedModelWarning` when
    ``model`` looks trained).
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    shape = tuple(int(d) for d in input_shape)
    if method.startswith("bmrs"):
        prior = "normal" if method == "bmrs-n" else "uniform"
        est = BMRS(prior=prior, reduced=None if prior == "normal" else precision_bounds(8), epochs=epochs,
                   prune_every=max(1, epochs // 3) if epochs > 1 else 0, seed=seed, input_shape=shape)
        est.fit(model, data)
        info = {"delta_f_nonnegative": int(sum(int((d >= 0).sum()) for d in est.delta_f_.values())),
                "history": est.history_}
        return est.transform(), est.decision_, info
    rec = Reconvene(ratio=ratio, epochs=epochs, seed=seed, input_shape=shape).fit(model, data)
    return rec.transform(), rec.decision_, {"time_s": rec.time_, "sensitivity": rec.sensitivity_}
