"""The pruner: a scikit-learn-style estimator from scores to a smaller model."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import InstanceOf, Interval, IsCallable, Options, ShapeLike
from optprune.errors import InvalidParameterError
from optprune.pruning._apply import apply_decision, count_parameters, parameters_after
from optprune.pruning._decision import PruningDecision
from optprune.pruning._decisions import ScoredDecision
from optprune.pruning._registry import DECISIONS
from optprune.scoring import NORMALIZERS, SCORERS, Scorer, as_batches, get_scorer, input_means, normalize
from optprune.scoring._registry import normalize_scorer_name
from optprune.structure import Group, dependency_groups, infer_input_shape

__all__ = ["Pruner"]

DecisionFn = Callable[[Mapping[str, np.ndarray], Sequence[Group], float], Mapping[str, Sequence[int]] | PruningDecision]


class _ScorerLike:
    """A registered scorer name or a :class:`optprune.scoring.Scorer` instance (the registry read when checked)."""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, Scorer):
            return True
        return isinstance(value, str) and normalize_scorer_name(value) in SCORERS

    def describe(self) -> str:
        return f"one of {', '.join(SCORERS.names())} or a Scorer instance"


def scored_decisions() -> tuple[str, ...]:
    """The registered decisions a :class:`Pruner` takes (those that keep units by their scores)."""
    return tuple(n for n in DECISIONS.names() if getattr(DECISIONS.get(n), "takes_scorer", False))


class _ScoredDecisionName:
    """A registered decision that keeps units by their scores (a :class:`ScoredDecision`), read when checked."""

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in DECISIONS and isinstance(DECISIONS.get(value), ScoredDecision)

    def describe(self) -> str:
        return "one of " + ", ".join(repr(n) for n in scored_decisions())


class Pruner(BaseEstimator):
    """Score the units of every dependency group, decide which to keep, build the smaller model.

    Parameters (stored as given, validated by :meth:`fit`):

    scorer : str or :class:`optprune.scoring.Scorer`
        Registered scorer name (see :func:`optprune.scoring.available_scorers`) or instance.
    ratio : float in [0, 1)
        Fraction of units to remove: per group (``uniform``), over all groups
        (``global``), or of the parameters (``search``: the budget keeps
        ``1 - ratio`` of the parameters unless ``search_kwargs`` gives ``budgets``).
    decision : str or callable
        A registered decision that keeps units by their scores
        (:data:`optprune.pruning.DECISIONS`, a :class:`ScoredDecision`):
        ``uniform``: every group drops its ``ratio`` lowest-scoring units;
        ``global``: one threshold on the normalised scores of all groups;
        ``search``: the exact structure search of :func:`optprune.search.search_decision`;
        ``adaptive``: FLAP's adaptive structure, one threshold on the per-group
        z-scores cut at ``1 - ratio`` of the parameters (:mod:`optprune.pruning._adaptive`);
        or a callable ``f(normalised scores, groups, ratio)`` returns kept indices per
        group (or a :class:`PruningDecision`).
    normalizer : "auto", "zscore", "lamp", "mean" or "none"
        Applied to the scores before ``global``/``search``/callable decisions
        (``uniform`` ranks within a group, where all of them keep the order).
        ``auto``: the decision's ``auto_normalizer``: ``zscore`` (FLAP) for ``global`` and callables, ``mean`` for
        ``search`` (the search maximises the sum of kept scores, so negative
        z-scores would be dropped even when the budget allows keeping them).
    min_keep : int >= 1
        Fewest units any group keeps.
    scorer_kwargs, search_kwargs : dict or None
        Passed to the scorer's constructor / to ``search_decision``.
    compensate : bool
        FLAP bias compensation: consumers' biases absorb the calibration mean of
        the removed inputs (needs calibration data).
    input_shape : tuple of ints or None
        One input without batch axis; default: ``model.input_shape``, the
        calibration data's shape, or inferred from a first Linear.

    Attributes after :meth:`fit`: ``groups_``, ``graph_``, ``scores_``,
    ``normalizer_``, ``normalized_scores_``, ``decision_`` (:class:`PruningDecision`), ``widths_``
    (kept width per group), ``compensation_``, ``n_params_before_``,
    ``n_params_after_``, ``input_shape_``, ``model_`` (the fitted model, unchanged)
    and ``search_result_`` (``decision="search"`` and ``"adaptive"`` only).
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "scorer": [_ScorerLike()],
        "ratio": [Interval(float, 0.0, 1.0, closed="left")],
        "decision": [_ScoredDecisionName(), IsCallable()],
        "normalizer": [Options(("auto", *NORMALIZERS))],
        "min_keep": [Interval(int, 1, None)],
        "scorer_kwargs": [InstanceOf((dict,)), None],
        "search_kwargs": [InstanceOf((dict,)), None],
        "compensate": [InstanceOf((bool,))],
        "input_shape": [ShapeLike(), None],
    }

    def __init__(
        self,
        scorer: Any = "magnitude",
        ratio: float = 0.5,
        decision: str | DecisionFn = "uniform",
        normalizer: str = "auto",
        min_keep: int = 1,
        scorer_kwargs: dict | None = None,
        compensate: bool = False,
        input_shape: Sequence[int] | None = None,
        search_kwargs: dict | None = None,
    ) -> None:
        self.scorer = scorer
        self.ratio = ratio
        self.decision = decision
        self.normalizer = normalizer
        self.min_keep = min_keep
        self.scorer_kwargs = scorer_kwargs
        self.compensate = compensate
        self.input_shape = input_shape
        self.search_kwargs = search_kwargs

    def _validate_params(self) -> None:
        super()._validate_params()
        if isinstance(self.scorer, Scorer) and self.scorer_kwargs:  # a rule across two parameters
            raise InvalidParameterError(
                f"Pruner: parameter 'scorer_kwargs' must be None when 'scorer' is an instance; "
                f"got {self.scorer_kwargs!r}"
            )

    def fit(self, model: nn.Module, calibration: Any = None) -> Pruner:
        """Score ``model`` on ``calibration`` (``(X, y)``, ``X`` or batches) and decide what to keep."""
        self._validate_params()
        batches = as_batches(calibration)
        shape = self.input_shape or getattr(model, "input_shape", None)
        if shape is None and batches:
            shape = tuple(batches[0][0].shape[1:])
        if shape is None:
            shape = infer_input_shape(model)
        self.input_shape_ = tuple(int(d) for d in shape)
        self.groups_, self.graph_ = dependency_groups(model, self.input_shape_)
        prunable = [g for g in self.groups_ if g.prunable]
        if not prunable:
            raise InvalidParameterError(
                "Pruner: the model has no prunable group; groups: "
                + "; ".join(f"{g.name} ({g.reason})" for g in self.groups_)
            )
        scorer = get_scorer(self.scorer, **(self.scorer_kwargs or {}))
        self.scores_ = scorer(model, batches, groups=self.groups_)
        decision_rule = DECISIONS.get(self.decision) if isinstance(self.decision, str) else None
        self.normalizer_ = self.normalizer
        if self.normalizer == "auto":
            self.normalizer_ = decision_rule.auto_normalizer if decision_rule is not None else "zscore"
        self.normalized_scores_ = normalize(self.scores_, self.normalizer_)
        self.search_result_ = None
        if decision_rule is None:
            kept = self.decision(self.normalized_scores_, prunable, self.ratio)
        else:
            kept = decision_rule.keep(self, model, prunable)
        decision_name = self.decision if isinstance(self.decision, str) else getattr(self.decision, "__name__", "")
        meta = {
            "scorer": scorer.name if not isinstance(self.scorer, str) else self.scorer,
            "ratio": self.ratio,
            "decision": decision_name or "callable",
            "normalizer": self.normalizer_,
        }
        if isinstance(kept, PruningDecision):
            decision = PruningDecision(kept.kept, kept.widths, self.input_shape_, {**meta, **kept.metadata})
        else:
            decision = PruningDecision(kept, {g.name: g.width for g in prunable}, self.input_shape_, meta)
        decision.check(self.groups_)
        self.decision_ = decision
        self.widths_ = decision.new_widths
        if self.compensate:
            if not batches:
                raise InvalidParameterError("Pruner: compensate=True needs calibration data; got none")
            self.compensation_ = input_means(model, batches, groups=self.groups_)
        else:
            self.compensation_ = None
        self.model_ = model
        self.n_params_before_ = count_parameters(model)
        self.n_params_after_ = parameters_after(model, self.groups_, self.widths_, self.compensation_)
        return self

    def transform(self, model: nn.Module | None = None) -> nn.Module:
        """The physically smaller model (the fitted model, or another one of the same architecture)."""
        self._check_fitted()
        target = self.model_ if model is None else model
        groups = self.groups_ if target is self.model_ else None
        return apply_decision(target, self.decision_, self.compensation_, groups=groups)

    def fit_transform(self, model: nn.Module, calibration: Any = None) -> nn.Module:
        return self.fit(model, calibration).transform()
