r"""Reconvene: structured pruning at initialisation, and the unstructured PaI baseline.

After Eccles, Wong & Varghese ("Reconvene"; see also their DNNShifter, 2023):
unstructured pruning-at-initialisation masks concentrate their sparsity in a
few layers, and those layers tolerate *structured* pruning. At
initialisation, before any training:

1. score every weight (:mod:`optprune.pai._saliency`: SNIP, single-shot or
   iterative SynFlow) and take the unstructured PaI mask that keeps the top
   :math:`(1-r)` fraction of the weights globally (:class:`UnstructuredPaI`
   trains exactly this mask; iterative SynFlow is told that fraction, its
   schedule's end);
2. the layer sensitivity of group :math:`g` is the density :math:`d_g` that
   mask leaves in its producing layer(s) (low density = insensitive);
3. group :math:`g` keeps :math:`k_g(c) = \min(w_g, \max(k_{min}, \lceil c\, d_g
   w_g\rceil))` channels, those with the highest channel saliency (summed
   saliency of their weights); the scale :math:`c` is the largest for which the
   physically pruned network has at most :math:`(1-r)` of the dense parameters
   (bisection on the exact count of :func:`optprune.pruning.parameters_after`);
4. the channels are removed through the dependency groups
   (:func:`optprune.pruning.apply_decision`) and the smaller network is
   re-initialised (``reset_parameters`` of every layer, seeded), then trained.

A model whose weights already exceed the range of torch's default
initialisation (:math:`|w| \le 1/\sqrt{\text{fan-in}}`) looks trained:
:class:`TrainedModelWarning`.
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import InstanceOf, Interval, Options, ShapeLike
from optprune.errors import InfeasibleBudgetError, InvalidParameterError
from optprune.pai._saliency import SALIENCIES, channel_saliency, scored_layers, weight_saliency
from optprune.pruning import (
    PruningDecision,
    apply_decision,
    attach_masks,
    count_parameters,
    dependency_groups,
    parameters_after,
)
from optprune.training import train_classifier, training_tensors

__all__ = ["Reconvene", "UnstructuredPaI", "TrainedModelWarning", "init_bound_ratio", "LAYER_CHOICES"]

LAYER_CHOICES = ("all", "conv")


class TrainedModelWarning(UserWarning):
    """Pruning at initialisation was given a model whose weights look trained."""


def init_bound_ratio(model: nn.Module) -> float:
    r"""Largest :math:`\max|w|\sqrt{\text{fan-in}}` over Linear/Conv2d layers (at most 1 at torch's default init)."""
    worst = 0.0
    for _, m in scored_layers(model):
        fan_in = m.weight[0].numel()
        worst = max(worst, float(m.weight.detach().abs().max()) * math.sqrt(fan_in))
    return worst


def _reinit(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


class _PaIBase(BaseEstimator):
    """What both PaI estimators share: saliency scores at initialisation, the global mask, training."""

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "saliency": [SALIENCIES.constraint()],
        "ratio": [Interval(float, 0.0, 1.0, closed="left")],
        "n_calibration": [Interval(int, 1, None)],
        "epochs": [Interval(int, 0, None)],
        "lr": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "batch_size": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "check_init": [InstanceOf((bool,))],
        "input_shape": [ShapeLike(), None],
    }

    def _prepare(self, model: nn.Module, data, data_dir, keep: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(X, y, scores)``; ``keep`` weights survive the mask (its fraction reaches scorers with a target)."""
        self._validate_params()
        if self.check_init:
            ratio = init_bound_ratio(model)
            if ratio > 1.0 + 1e-6:
                warnings.warn(
                    f"{type(self).__name__}: pruning at initialisation expects an untrained model, but a weight is "
                    f"{ratio:.2f} times the bound 1/sqrt(fan_in) of torch's default initialisation (at most 1.00); "
                    "the model looks trained. Pass check_init=False for a model with another initialisation.",
                    TrainedModelWarning, stacklevel=3,
                )
        Xt, yt, _ = training_tensors(data, data_dir, f"{type(self).__name__}.fit")
        shape = self.input_shape or getattr(model, "input_shape", None) or tuple(Xt.shape[1:])
        self.input_shape_ = tuple(int(d) for d in shape)
        if int(np.prod(self.input_shape_)) != int(np.prod(Xt.shape[1:])):
            raise InvalidParameterError(
                f"{type(self).__name__}.fit: input_shape {self.input_shape_} does not match the data's samples "
                f"{tuple(Xt.shape[1:])}"
            )
        Xt = Xt.reshape(Xt.shape[0], *self.input_shape_)
        gen = torch.Generator().manual_seed(int(self.seed))
        calib = torch.randperm(Xt.shape[0], generator=gen)[: int(self.n_calibration)]
        n_weights = sum(m.weight.numel() for _, m in scored_layers(model))
        scores = weight_saliency(model, self.saliency, Xt[calib], yt[calib], self.input_shape_,
                                 density=min(1.0, max(1, keep) / max(1, n_weights)))
        if not scores:
            raise InvalidParameterError(
                f"{type(self).__name__}: the model has no Linear or Conv2d layer to score (supported: Linear, Conv2d)"
            )
        return Xt, yt, scores

    def _unstructured_masks(self, scores: dict[str, torch.Tensor], keep: int) -> dict[str, torch.Tensor]:
        flat = torch.cat([s.reshape(-1) for s in scores.values()])
        keep = max(1, min(int(keep), flat.numel()))
        threshold = torch.topk(flat, keep, sorted=True).values[-1]
        masks, budget = {}, keep
        for name, s in scores.items():  # ties at the threshold are broken in layer order, to keep exactly `keep`
            above = s > threshold
            masks[name] = above.float()
            budget -= int(above.sum())
        for name, s in scores.items():
            if budget <= 0:
                break
            tie = torch.nonzero((s == threshold).reshape(-1)).reshape(-1)[:budget]
            masks[name].view(-1)[tie] = 1.0
            budget -= tie.numel()
        return masks

    def _train(self, model: nn.Module, Xt: torch.Tensor, yt: torch.Tensor) -> None:
        if self.epochs > 0:
            train_classifier(model, (Xt.numpy(), yt.numpy()), epochs=int(self.epochs), seed=int(self.seed),
                             lr=float(self.lr), batch_size=int(self.batch_size), progress=False)

    def transform(self) -> nn.Module:
        """The produced model (re-initialised and, with ``epochs > 0``, trained)."""
        self._check_fitted()
        return self.model_

    def fit_transform(self, model: nn.Module, data, data_dir: str | os.PathLike | None = None) -> nn.Module:
        return self.fit(model, data, data_dir).transform()


class UnstructuredPaI(_PaIBase):
    """Unstructured pruning at initialisation: keep the globally most salient weights, train with the mask.

    ``ratio`` is the fraction of Linear/Conv2d weights removed, or give
    ``n_params``: the number of parameters (nonzero weights plus all biases) to
    keep, e.g. a :class:`Reconvene` model's count. Attributes after :meth:`fit`:
    ``masks_``, ``n_params_after_`` (nonzero weights + other parameters),
    ``time_`` (seconds to produce the masked model, training excluded),
    ``model_`` (same size, masked weights held at zero by ``torch.nn.utils.prune``).
    """

    _parameter_constraints = {**_PaIBase._parameter_constraints, "n_params": [Interval(int, 1, None), None]}

    def __init__(self, saliency: str = "snip", ratio: float = 0.5, n_params: int | None = None,
                 n_calibration: int = 256, epochs: int = 0, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                 check_init: bool = True, input_shape: Sequence[int] | None = None) -> None:
        self.saliency = saliency
        self.ratio = ratio
        self.n_params = n_params
        self.n_calibration = n_calibration
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.check_init = check_init
        self.input_shape = input_shape

    def fit(self, model: nn.Module, data, data_dir: str | os.PathLike | None = None) -> UnstructuredPaI:
        start = time.perf_counter()
        self._validate_params()
        n_weights = sum(m.weight.numel() for _, m in scored_layers(model))
        other = count_parameters(model) - n_weights
        if self.n_params is not None:
            keep = int(self.n_params) - other
            if keep < 1 or int(self.n_params) > count_parameters(model):
                raise InfeasibleBudgetError(
                    f"UnstructuredPaI: n_params must lie in [{other + 1}, {count_parameters(model)}] (the biases and "
                    f"other parameters, {other}, are always kept); got {self.n_params}",
                    smallest_feasible=other + 1,
                )
        else:
            keep = round((1.0 - float(self.ratio)) * n_weights)
        Xt, yt, scores = self._prepare(model, data, data_dir, keep)
        self.masks_ = self._unstructured_masks(scores, keep)
        model_ = copy.deepcopy(model)  # PaI keeps the initial weights under the mask
        attach_masks(model_, self.masks_)
        self.time_ = time.perf_counter() - start
        self.n_params_after_ = other + int(sum(int(m.sum()) for m in self.masks_.values()))
        self.n_params_before_ = count_parameters(model)
        self._train(model_, Xt, yt)
        self.model_ = model_
        return self


class Reconvene(_PaIBase):
    """Structured pruning at initialisation guided by the unstructured PaI mask's layer densities.

    Parameters: ``saliency`` (a per-weight scorer of :data:`optprune.scoring.WEIGHT_SCORERS`:
    "snip", "synflow", ...), ``ratio`` (fraction of the
    parameters to remove, in [0, 1)), ``layers`` ("all" prunable groups or only
    groups produced by convolutions, "conv"), ``min_keep`` (fewest channels a
    group keeps), ``n_calibration`` (training samples SNIP scores on),
    ``epochs``/``lr``/``batch_size``/``seed`` (training of the pruned model;
    ``epochs=0`` returns it untrained), ``check_init`` (warn on a trained
    model), ``input_shape``.

    Attributes after :meth:`fit`: ``groups_``, ``scores_`` (per weight),
    ``channel_saliency_``, ``sensitivity_`` (unstructured mask density per group,
    low = insensitive), ``kept_``, ``decision_``, ``widths_``,
    ``n_params_before_``, ``n_params_after_``, ``time_`` (seconds to produce the
    pruned, re-initialised model; training excluded), ``model_``.
    """

    _parameter_constraints = {
        **_PaIBase._parameter_constraints,
        "layers": [Options(LAYER_CHOICES)],
        "min_keep": [Interval(int, 1, None)],
    }

    def __init__(self, saliency: str = "snip", ratio: float = 0.5, layers: str = "all", min_keep: int = 1,
                 n_calibration: int = 256, epochs: int = 0, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                 check_init: bool = True, input_shape: Sequence[int] | None = None) -> None:
        self.saliency = saliency
        self.ratio = ratio
        self.layers = layers
        self.min_keep = min_keep
        self.n_calibration = n_calibration
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.check_init = check_init
        self.input_shape = input_shape

    def _eligible(self, model: nn.Module, group) -> bool:
        outs = [m.module for m in group.members if m.role == "out"]
        kinds = (nn.Conv2d,) if self.layers == "conv" else (nn.Linear, nn.Conv2d)
        return group.prunable and bool(outs) and all(isinstance(model.get_submodule(n), kinds) for n in outs)

    def fit(self, model: nn.Module, data, data_dir: str | os.PathLike | None = None) -> Reconvene:
        start = time.perf_counter()
        self._validate_params()
        n_weights = sum(m.weight.numel() for _, m in scored_layers(model))
        keep = round((1.0 - float(self.ratio)) * n_weights)
        Xt, yt, scores = self._prepare(model, data, data_dir, keep)
        self.scores_ = scores
        self.groups_, _ = dependency_groups(model, self.input_shape_)
        eligible = [g for g in self.groups_ if self._eligible(model, g)]
        if not eligible:
            raise InvalidParameterError(
                f"Reconvene: no prunable group produced by {'Conv2d' if self.layers == 'conv' else 'Linear/Conv2d'} "
                f"layers (layers={self.layers!r}); groups: "
                + ("; ".join(f"{g.name} ({g.kind}, prunable={g.prunable})" for g in self.groups_) or "none")
            )
        n_dense = count_parameters(model)
        masks = self._unstructured_masks(scores, keep)
        self.sensitivity_ = {}
        for g in eligible:
            outs = [m.module for m in g.members if m.role == "out"]
            self.sensitivity_[g.name] = float(sum(masks[n].sum() for n in outs) / sum(masks[n].numel() for n in outs))
        self.channel_saliency_ = channel_saliency(scores, eligible)
        target = math.floor((1.0 - float(self.ratio)) * n_dense)
        widths = self._search_widths(model, eligible, target)
        self.kept_ = {}
        for g in eligible:
            order = np.argsort(-self.channel_saliency_[g.name], kind="stable")[: widths[g.name]]
            self.kept_[g.name] = tuple(int(i) for i in np.sort(order))
        self.decision_ = PruningDecision(self.kept_, {g.name: g.width for g in eligible}, self.input_shape_,
                                         {"method": "reconvene", "saliency": self.saliency, "ratio": self.ratio})
        self.widths_ = self.decision_.new_widths
        self.model_ = _reinit(apply_decision(model, self.decision_, groups=self.groups_), int(self.seed))
        self.model_.input_shape = self.input_shape_
        self.time_ = time.perf_counter() - start
        self.n_params_before_ = n_dense
        self.n_params_after_ = count_parameters(self.model_)
        self._train(self.model_, Xt, yt)
        return self

    def _search_widths(self, model: nn.Module, eligible: list, target: int) -> dict[str, int]:
        dens = np.array([self.sensitivity_[g.name] for g in eligible])
        full = np.array([g.width for g in eligible])
        low = np.minimum(full, self.min_keep)

        def widths(c: float) -> dict[str, int]:
            k = np.clip(np.ceil(c * dens * full - 1e-9), low, full).astype(int)
            return {g.name: int(v) for g, v in zip(eligible, k)}

        def params(c: float) -> int:
            return parameters_after(model, self.groups_, widths(c))

        smallest = params(0.0)
        if smallest > target:
            raise InfeasibleBudgetError(
                f"Reconvene: ratio {self.ratio} asks for at most {target} of {count_parameters(model)} parameters, "
                f"but keeping min_keep={self.min_keep} channels in every group (layers={self.layers!r}) already "
                f"needs {smallest}; the largest reachable ratio is {1 - smallest / count_parameters(model):.4f}",
                smallest_feasible=smallest,
            )
        hi = float(np.max(1.0 / np.maximum(dens, 1e-12)))
        if params(hi) <= target:
            return widths(hi)
        lo = 0.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if params(mid) <= target:
                lo = mid
            else:
                hi = mid
        return widths(lo)
