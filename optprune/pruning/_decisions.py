"""Pruning decisions by name: what :data:`optprune.pruning.DECISIONS` lists, in two kinds.

* :class:`ScoredDecision` (``takes_scorer = True``): the
  :class:`~optprune.pruning.Pruner` scores every unit with a scorer, normalises
  the scores, and the decision returns the kept units per group
  (:meth:`ScoredDecision.keep`). Built-ins: ``uniform``, ``global``, ``search``.
* :class:`MethodDecision` (``takes_scorer = False``): prunes a model by itself
  (:meth:`MethodDecision.prune` returns a :class:`MethodOutcome`). Built-ins:
  ``unstructured``, ``none`` here; ``bmrs-n``, ``bmrs-u``, ``reconvene`` in
  :mod:`optprune.pai._methods`. Its options (``optprune prune --train-epochs``,
  a bench entry's ``scorer_options``) are declared with their constraints in
  :attr:`MethodDecision.options`.

A new decision is one module with a subclass instance and one registration
line (:mod:`optprune.pruning._registry`)::

    class KeepFirst(ScoredDecision):
        def keep(self, pruner, model, groups):
            return {g.name: list(range(keep_count(g.width, pruner.ratio, pruner.min_keep))) for g in groups}

    DECISIONS.register("keep_first", KeepFirst())
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from optprune._validation import Constraint, Options, validate_params
from optprune.errors import InvalidParameterError
from optprune.pruning._decision import PruningDecision
from optprune.pruning._select import global_keep, uniform_keep
from optprune.pruning._unstructured import MATCHES, prune_unstructured
from optprune.structure import Group

if TYPE_CHECKING:
    from optprune.pruning._pruner import Pruner

__all__ = [
    "GLOBAL",
    "NO_PRUNING",
    "SEARCH",
    "UNIFORM",
    "UNSTRUCTURED",
    "MethodDecision",
    "MethodOutcome",
    "ScoredDecision",
]

Kept = Mapping[str, Sequence[int]] | PruningDecision


class ScoredDecision(abc.ABC):
    """Kept units per group from the scores a :class:`~optprune.pruning.Pruner` computed.

    ``auto_normalizer`` is what the Pruner's ``normalizer="auto"`` means for this decision.
    """

    takes_scorer: ClassVar[bool] = True
    auto_normalizer: ClassVar[str] = "zscore"

    @abc.abstractmethod
    def keep(self, pruner: Pruner, model: nn.Module, groups: list[Group]) -> Kept:
        """Kept indices per prunable group (or a :class:`PruningDecision`).

        ``pruner`` carries the scores (``scores_``, ``normalized_scores_``),
        ``ratio``, ``min_keep``, ``search_kwargs`` and ``input_shape_``; a
        decision may record a result on it (``search_result_``).
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UniformDecision(ScoredDecision):
    """Every group drops its ``ratio`` lowest-scoring units (raw scores: ranking within a group needs no normaliser)."""

    def keep(self, pruner: Pruner, model: nn.Module, groups: list[Group]) -> Kept:
        return uniform_keep(pruner.scores_, groups, pruner.ratio, pruner.min_keep)


class GlobalDecision(ScoredDecision):
    """One threshold on the normalised scores of all groups (:func:`optprune.pruning.global_keep`)."""

    def keep(self, pruner: Pruner, model: nn.Module, groups: list[Group]) -> Kept:
        return global_keep(pruner.normalized_scores_, groups, pruner.ratio, pruner.min_keep)


class SearchDecision(ScoredDecision):
    """The exact structure search (:func:`optprune.search.search_decision`); budget ``params = 1 - ratio``.

    ``normalizer="auto"`` is ``mean`` here: the search maximises the sum of kept
    scores, so negative z-scores would be dropped even when the budget allows keeping them.
    """

    auto_normalizer = "mean"

    def keep(self, pruner: Pruner, model: nn.Module, groups: list[Group]) -> Kept:
        from optprune.search._torch import search_decision  # the torch-facing part of the search

        kwargs = dict(pruner.search_kwargs or {})
        budgets = kwargs.pop("budgets", {"params": 1.0 - pruner.ratio})
        kwargs.setdefault("min_width", pruner.min_keep)
        kept, result = search_decision(
            model, pruner.normalized_scores_, budgets, input_shape=pruner.input_shape_, return_result=True, **kwargs
        )
        pruner.search_result_ = result
        return kept


@dataclass
class MethodOutcome:
    """What a :class:`MethodDecision` produced.

    ``model``: the pruned copy; ``decision``: its :class:`PruningDecision` when
    it removed whole units (None otherwise); ``info``: what it reports (JSON-able);
    ``masks``: keep-masks by module name when it zeroed individual weights, for
    fine-tuning to hold (:func:`optprune.pruning.attach_masks`).
    """

    model: nn.Module
    decision: PruningDecision | None = None
    info: dict = field(default_factory=dict)
    masks: dict[str, torch.Tensor] | None = None


class MethodDecision(abc.ABC):
    """A decision that prunes a model by itself, with no scorer.

    ``options``: the keyword options :meth:`prune` takes, ``{name: (default, constraints)}``;
    :meth:`check_options` validates a mapping of them. ``removes_units``: whether
    :meth:`prune` removes whole units (and returns a :class:`PruningDecision`).
    ``fixed_scorer``: the scorer it ranks by itself, the only one a bench entry may name with it (None: none).
    """

    takes_scorer: ClassVar[bool] = False
    removes_units: ClassVar[bool] = True
    fixed_scorer: ClassVar[str | None] = None
    options: ClassVar[dict[str, tuple[Any, list[Constraint | None]]]] = {}

    @abc.abstractmethod
    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              **options: Any) -> MethodOutcome:
        """Prune a copy of ``model`` (left unchanged) using ``data`` (``(X, y)`` arrays) at ``ratio``."""

    def check_options(self, options: Mapping[str, Any], owner: str = "decision") -> dict[str, Any]:
        """``options`` with defaults filled in; an unknown key or a value outside its constraints is named."""
        unknown = sorted(str(k) for k in options if k not in self.options)
        if unknown:
            raise InvalidParameterError(
                f"{owner}: unknown option {unknown[0]!r}; allowed: {', '.join(self.options) or '(none)'}"
            )
        validate_params(owner, dict(options), {k: self.options[k][1] for k in options})
        return {**{k: default for k, (default, _) in self.options.items()}, **options}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UnstructuredDecision(MethodDecision):
    """Global magnitude pruning of individual weights (:func:`optprune.pruning.prune_unstructured`).

    ``match``: ``none`` (``ratio`` of the weights removed) or ``uniform`` (as many
    parameters kept as uniform structured pruning keeps at ``ratio``).
    """

    options: ClassVar[dict[str, tuple[Any, list[Constraint | None]]]] = {"match": ("none", [Options(MATCHES)])}
    removes_units = False
    fixed_scorer = "magnitude"

    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              **options: Any) -> MethodOutcome:
        match = self.check_options(options, "decision 'unstructured'")["match"]
        pruned, masks, keep = prune_unstructured(model, ratio, match, input_shape=input_shape)
        return MethodOutcome(pruned, None, {"kept_weights": keep, "match": match}, masks)


class NoPruning(MethodDecision):
    """The dense network unchanged (a copy): for a variant made only by (verification-friendly) fine-tuning."""

    removes_units = False

    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              **options: Any) -> MethodOutcome:
        self.check_options(options, "decision 'none'")
        return MethodOutcome(copy.deepcopy(model))


UNIFORM = UniformDecision()
GLOBAL = GlobalDecision()
SEARCH = SearchDecision()
UNSTRUCTURED = UnstructuredDecision()
NO_PRUNING = NoPruning()
