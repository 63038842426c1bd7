"""The threshold-free and at-initialisation methods as named decisions of the pruning engine.

``bmrs-n``, ``bmrs-u`` (BMRS_U-8) and ``reconvene`` (SNIP) are
:class:`~optprune.pruning.MethodDecision` instances registered (lazily, in
:mod:`optprune.pruning._registry`) in :data:`optprune.pruning.DECISIONS`: what
``optprune prune --decision`` (or ``--method``) and ``[[pruning]]`` entries of
``optprune bench`` configs call. :func:`prune_with_method` runs one by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from torch import nn

from optprune._validation import Constraint
from optprune.bayes import BMRS, precision_bounds
from optprune.errors import InvalidParameterError
from optprune.pai._reconvene import Reconvene
from optprune.pruning import DECISIONS, MethodDecision, MethodOutcome, PruningDecision

__all__ = ["BMRS_N", "BMRS_U", "RECONVENE", "BMRSDecision", "ReconveneDecision", "prune_with_method"]

class _EstimatorOption:
    """Constraint: what ``estimator`` declares for its parameter ``name`` (read when checked), and at least ``low``."""

    def __init__(self, estimator: type, name: str, low: int) -> None:
        self.estimator, self.name, self.low = estimator, name, low

    def _checks(self) -> list[Constraint]:
        return [c for c in self.estimator._parameter_constraints[self.name] if c is not None]

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self._checks()) and value >= self.low

    def describe(self) -> str:
        return " or ".join(c.describe() for c in self._checks()) + f", at least {self.low}"


def _epochs(estimator: type) -> dict[str, tuple[Any, list[Constraint | None]]]:
    """The ``epochs`` option: the estimator's constraint, at least 1 (a method that trains 0 epochs decides nothing)."""
    return {"epochs": (10, [_EstimatorOption(estimator, "epochs", 1)])}


class BMRSDecision(MethodDecision):
    """BMRS (Bayesian model reduction): trains a copy ``epochs`` epochs with noise, removes units whose Delta F >= 0.

    ``prior="normal"`` is BMRS_N (log-normal), ``"uniform"`` BMRS_U-8 (log-uniform, 8-bit precision bounds);
    the authors' settings (:class:`~optprune.bayes.BMRS` defaults), a pruning step after every epoch as in
    their continuous pruning; no threshold and no target: the ratio is ignored.
    """

    options: ClassVar[dict[str, tuple[Any, list[Constraint | None]]]] = _epochs(BMRS)

    def __init__(self, prior: str) -> None:
        self.prior = prior

    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              **options: Any) -> MethodOutcome:
        epochs = self.check_options(options, f"decision 'bmrs' ({self.prior} prior)")["epochs"]
        est = BMRS(prior=self.prior, reduced=None if self.prior == "normal" else precision_bounds(8), epochs=epochs,
                   prune_every=1, seed=seed,
                   input_shape=tuple(int(d) for d in input_shape))
        est.fit(model, data)
        info = {"delta_f_nonnegative": int(sum(int((d >= 0).sum()) for d in est.delta_f_.values())),
                "history": est.history_}
        return MethodOutcome(est.transform(), est.decision_, info)

    def __repr__(self) -> str:
        return f"BMRSDecision(prior={self.prior!r})"


class ReconveneDecision(MethodDecision):
    """Reconvene: removes ``ratio`` of the parameters at initialisation, re-initialises, trains ``epochs`` epochs.

    Option ``saliency``: the per-weight scorer (default ``snip``; ``synflow_iterative`` is Tanaka et al.'s
    Algorithm 1), e.g. ``optprune prune NET --method reconvene --option saliency=synflow_iterative``.

    Warns with :class:`~optprune.pai.TrainedModelWarning` when the model looks trained.
    """

    options: ClassVar[dict[str, tuple[Any, list[Constraint | None]]]] = {
        **_epochs(Reconvene), "saliency": ("snip", list(Reconvene._parameter_constraints["saliency"]))}

    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              **options: Any) -> MethodOutcome:
        opts = self.check_options(options, "decision 'reconvene'")
        rec = Reconvene(saliency=opts["saliency"], ratio=ratio, epochs=opts["epochs"], seed=seed,
                        input_shape=tuple(int(d) for d in input_shape))
        rec.fit(model, data)
        return MethodOutcome(rec.transform(), rec.decision_, {"time_s": rec.time_, "sensitivity": rec.sensitivity_})


BMRS_N = BMRSDecision("normal")
BMRS_U = BMRSDecision("uniform")
RECONVENE = ReconveneDecision()


def prune_with_method(
    method: str,
    model: nn.Module,
    data: tuple[np.ndarray, np.ndarray],
    input_shape: Sequence[int],
    ratio: float = 0.5,
    epochs: int = 10,
    seed: int = 0,
) -> tuple[nn.Module, PruningDecision | None, dict]:
    """``(smaller model, decision, info)`` of a registered decision that prunes by itself (no scorer).

    BMRS trains ``model``'s copy ``epochs`` epochs with noise on ``data`` and
    ignores ``ratio`` (no threshold, no target); Reconvene removes ``ratio`` of
    the parameters at initialisation, re-initialises and trains ``epochs``
    epochs (it warns with :class:`~optprune.pai.TrainedModelWarning` when
    ``model`` looks trained).
    """
    decision = DECISIONS.get(method, "method")
    if not isinstance(decision, MethodDecision):
        raise InvalidParameterError(
            f"method {method!r} keeps units by a scorer's scores: use optprune.pruning.Pruner(decision={method!r})"
        )
    options = {"epochs": epochs} if "epochs" in decision.options else {}
    outcome = decision.prune(model, data, input_shape, ratio, seed=seed, **options)
    return outcome.model, outcome.decision, outcome.info
