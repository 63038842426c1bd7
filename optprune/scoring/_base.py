"""The scorer protocol, the lookup by name and the calibration-data plumbing every scorer shares.

A scorer maps ``(model, calibration batches)`` to one array of importances per
prunable dependency group (higher = more important = kept first), keyed by group
name in forward order. Scorers never change the model.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.scoring._registry import SCORERS, available_scorers, normalize_scorer_name, register_scorer
from optprune.structure import Group, dependency_groups

__all__ = [
    "Batches",
    "Calibration",
    "Scorer",
    "as_batches",
    "available_scorers",
    "get_scorer",
    "register_scorer",
    "resolve_groups",
    "score_model",
    "mean_loss",
]

Batches = list[tuple[torch.Tensor, torch.Tensor | None]]
Calibration = Any  # (X, y) arrays/tensors, X alone, a list of (X, y) batches, or a DataLoader
LossFn = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


def _tensor(a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(dtype) if dtype is not None else t


def as_batches(calibration: Calibration, batch_size: int = 256) -> Batches:
    """Normalise calibration data to a list of ``(X, y or None)`` tensor batches.

    Accepts ``None`` (empty list), an ``(X, y)`` pair of arrays or tensors (split
    into batches of ``batch_size``), a single array ``X``, or any iterable of
    ``(X, y)`` / ``X`` batches (e.g. a ``DataLoader``).
    """
    if calibration is None:
        return []
    if isinstance(calibration, (np.ndarray, torch.Tensor)):
        calibration = (calibration, None)
    if isinstance(calibration, tuple) and len(calibration) == 2 and not isinstance(calibration[0], tuple):
        X = _tensor(calibration[0], torch.float32)
        y = None if calibration[1] is None else _tensor(calibration[1])
        if y is not None and y.shape[0] != X.shape[0]:
            raise ShapeMismatchError(f"calibration has {X.shape[0]} inputs but {y.shape[0]} labels")
        if X.shape[0] == 0:
            raise ShapeMismatchError("calibration data is empty: 0 samples")
        return [
            (X[i : i + batch_size], None if y is None else y[i : i + batch_size])
            for i in range(0, X.shape[0], batch_size)
        ]
    if isinstance(calibration, Iterable):
        out: Batches = []
        for batch in calibration:
            if isinstance(batch, (tuple, list)) and len(batch) == 2:
                out.append((_tensor(batch[0], torch.float32), None if batch[1] is None else _tensor(batch[1])))
            else:
                out.append((_tensor(batch, torch.float32), None))
        return out
    raise InvalidParameterError(
        f"calibration must be None, (X, y), X, or an iterable of batches; got {type(calibration).__name__}"
    )


def default_loss(output: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
    """Mean cross-entropy of logits against integer labels."""
    if target is None:
        raise InvalidParameterError(
            "this scorer needs labels: pass calibration=(X, y), or a loss_fn that takes (output, None)"
        )
    return nn.functional.cross_entropy(output, target.long())


def mean_loss(model: nn.Module, batches: Batches, loss_fn: LossFn | None = None) -> float:
    """Sample-weighted mean of ``loss_fn(model(X), y)`` over the batches, without gradients."""
    loss_fn = loss_fn or default_loss
    total, count = 0.0, 0
    with torch.no_grad():
        for X, y in batches:
            total += float(loss_fn(model(X), y)) * X.shape[0]
            count += X.shape[0]
    return total / count


def resolve_groups(
    model: nn.Module, groups: Sequence[Group] | None, input_shape: Sequence[int] | None, batches: Batches
) -> list[Group]:
    """Prunable groups, traced with ``input_shape`` (default: the model's attribute or the calibration shape)."""
    if groups is None:
        if input_shape is None:
            input_shape = getattr(model, "input_shape", None)
        if input_shape is None and batches:
            input_shape = tuple(batches[0][0].shape[1:])
        groups, _ = dependency_groups(model, input_shape)
    return [g for g in groups if g.prunable]


class Scorer(BaseEstimator, abc.ABC):
    """Base class: ``scorer(model, calibration) -> {group name: scores}``.

    Subclasses set ``name``, ``needs_data`` (calibration inputs), ``needs_labels``
    and implement :meth:`_score`. Constructor keyword arguments are the scorer's
    hyper-parameters, stored as attributes of the same names; their constraints
    are data (``_parameter_constraints``, see :mod:`optprune._validation`),
    checked before every scoring (the constructor only stores them; the
    estimator contract of :class:`optprune._estimator.BaseEstimator`).
    """

    name: ClassVar[str]
    needs_data: ClassVar[bool] = True
    needs_labels: ClassVar[bool] = False

    def __call__(
        self,
        model: nn.Module,
        calibration: Calibration = None,
        *,
        groups: Sequence[Group] | None = None,
        input_shape: Sequence[int] | None = None,
        batch_size: int = 256,
    ) -> dict[str, np.ndarray]:
        self._validate_params()
        batches = as_batches(calibration, batch_size)
        if self.needs_data and not batches:
            raise InvalidParameterError(f"scorer {self.name!r} needs calibration data; got none")
        if self.needs_labels and any(y is None for _, y in batches) and getattr(self, "loss_fn", None) is None:
            raise InvalidParameterError(
                f"scorer {self.name!r} needs labels: pass calibration=(X, y) or a loss_fn(output, None)"
            )
        prunable = resolve_groups(model, groups, input_shape, batches)
        was_training = model.training
        model.eval()
        try:
            scores = self._score(model, prunable, batches)
        finally:
            model.train(was_training)
        out = {}
        for g in prunable:
            s = np.asarray(scores[g.name], dtype=np.float64).reshape(-1)
            if s.shape != (g.width,):
                raise ShapeMismatchError(
                    f"scorer {self.name!r} gave {s.size} scores for group {g.name!r} of width {g.width}"
                )
            out[g.name] = s
        return out

    score = __call__

    @abc.abstractmethod
    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        """Scores of every group in ``groups`` (model in eval mode, batches validated)."""


def get_scorer(name: str | Scorer, **kwargs: Any) -> Scorer:
    """A scorer instance by registered name (``kwargs`` go to its constructor); instances pass through.

    Names are read from :data:`optprune.scoring.SCORERS` (lower-case, ``-`` as ``_``); an alias with
    ``alias_defaults`` on its class starts from those constructor arguments.
    """
    if isinstance(name, Scorer):
        if kwargs:
            raise InvalidParameterError(f"get_scorer: keyword arguments {sorted(kwargs)} given with a scorer instance")
        return name
    key = normalize_scorer_name(name)
    if key not in SCORERS:
        raise InvalidParameterError(f"unknown scorer {name!r}; available: {', '.join(SCORERS.names())}")
    cls = SCORERS.get(key)
    defaults = getattr(cls, "alias_defaults", {}).get(key, {})
    return cls(**{**defaults, **kwargs})


def score_model(
    model: nn.Module,
    scorer: str | Scorer,
    calibration: Calibration = None,
    *,
    groups: Sequence[Group] | None = None,
    input_shape: Sequence[int] | None = None,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """``{group name: scores}`` of every prunable group of ``model``, in forward order."""
    return get_scorer(scorer, **kwargs)(model, calibration, groups=groups, input_shape=input_shape)
