r"""Saliency of every weight at initialisation (SNIP, SynFlow, or any per-weight scorer) and its sum per channel.

The saliencies are the registered per-weight scorers
(:data:`optprune.scoring.WEIGHT_SCORERS`; formulas in :mod:`optprune.scoring._weights`):

* **SNIP** (Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based
  on Connection Sensitivity", ICLR): :math:`s_w = |w\,\partial L/\partial w|` on
  one batch of training data (cross-entropy :math:`L`).
* **SynFlow** (Tanaka et al. 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS), single shot: with every
  weight replaced by its absolute value and an all-ones input,
  :math:`R = \mathbf 1^\top f_{|W|}(\mathbf 1)` and
  :math:`s_w = |w|\,\partial R/\partial |w|` (data-free; BatchNorm in eval mode).
* **iterative SynFlow** (``synflow_iterative``, the paper's Algorithm 1: 100
  rounds of re-scoring the masked network on an exponential schedule to the
  target density; :mod:`optprune.pai._synflow`): the PaI estimators pass their
  target density, so the top of its scores is the algorithm's mask.

:func:`channel_saliency` sums the saliencies of the weights a unit of a
dependency group produces (its rows in every ``out`` member): the channel-level
saliency of Reconvene.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from optprune.pruning import Group
from optprune.scoring import WEIGHT_SCORERS
from optprune.scoring._weights import snip_importance, synflow_importance, weight_layers

__all__ = ["SALIENCIES", "snip_scores", "synflow_scores", "weight_saliency", "channel_saliency", "scored_layers"]

#: the saliency names Reconvene and UnstructuredPaI accept: every per-weight scorer
SALIENCIES = WEIGHT_SCORERS
#: the Linear and Conv2d modules of a model (the weights PaI scores and masks)
scored_layers = weight_layers


def snip_scores(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """SNIP saliency ``|w * dL/dw|`` of every Linear/Conv2d weight on the batch ``(X, y)``."""
    return snip_importance(model, (X, y))


def synflow_scores(model: nn.Module, input_shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """Single-shot SynFlow saliency ``|w| * dR/d|w|`` (all-ones input, absolute weights, float64)."""
    return synflow_importance(model, input_shape=input_shape)


def weight_saliency(model: nn.Module, saliency: str, X: torch.Tensor, y: torch.Tensor,
                    input_shape: Sequence[int], density: float | None = None) -> dict[str, torch.Tensor]:
    """Per-weight saliency of the named per-weight scorer (``"snip"``, ``"synflow"``, ...) on the batch ``(X, y)``.

    ``density`` (fraction of the weights the caller keeps) reaches scorers that
    prune towards a target (``synflow_iterative``: its schedule ends there);
    the others ignore it.
    """
    importance = WEIGHT_SCORERS.get(saliency, "saliency")
    takes_density = density is not None and "density" in inspect.signature(importance).parameters
    extra = {"density": density} if takes_density else {}
    return importance(model, (X, y), input_shape=input_shape, batch_size=max(1, len(X)), **extra)


def channel_saliency(scores: dict[str, torch.Tensor], groups: Sequence[Group]) -> dict[str, np.ndarray]:
    """Per unit of every group: the summed saliency of the weight rows it produces (``out`` members)."""
    out = {}
    for g in groups:
        total = np.zeros(g.width)
        for m in g.members:
            if m.role == "out" and m.module in scores:
                rows = scores[m.module].reshape(scores[m.module].shape[0], -1).sum(1).double().numpy()
                idx = m.indices(list(range(g.width))).numpy().reshape(g.width, m.factor)
                total += rows[idx].sum(1)
        out[g.name] = total
    return out
