r"""Saliency of every weight at initialisation (SNIP, SynFlow) and its aggregation per channel.

* **SNIP** (Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based
  on Connection Sensitivity", ICLR): :math:`s_w = |w\,\partial L/\partial w|` on
  one batch of training data (cross-entropy :math:`L`).
* **SynFlow** (Tanaka et al. 2020, "Pruning neural networks without any data by
  iteratively conserving synaptic flow", NeurIPS), single shot: with every
  weight replaced by its absolute value and an all-ones input,
  :math:`R = \mathbf 1^\top f_{|W|}(\mathbf 1)` and
  :math:`s_w = |w|\,\partial R/\partial |w|` (data-free; BatchNorm in eval mode).

:func:`channel_saliency` sums the saliencies of the weights a unit of a
dependency group produces (its rows in every ``out`` member): the channel-level
saliency of Reconvene.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.pruning import Group

__all__ = ["SALIENCIES", "snip_scores", "synflow_scores", "weight_saliency", "channel_saliency", "scored_layers"]

SALIENCIES = ("snip", "synflow")


def scored_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d modules of ``model`` (the weights PaI scores and masks)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def snip_scores(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """SNIP saliency ``|w * dL/dw|`` of every Linear/Conv2d weight on the batch ``(X, y)``."""
    net = copy.deepcopy(model).train()
    net.zero_grad()
    nn.functional.cross_entropy(net(X), y).backward()
    return {n: (m.weight.detach() * m.weight.grad).abs() for n, m in scored_layers(net)}


def synflow_scores(model: nn.Module, input_shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """Single-shot SynFlow saliency ``|w| * dR/d|w|`` (all-ones input, absolute weights, float64)."""
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=torch.float64)).sum().backward()
    return {n: (m.weight.detach() * m.weight.grad).abs().float() for n, m in scored_layers(net)}


def weight_saliency(model: nn.Module, saliency: str, X: torch.Tensor, y: torch.Tensor,
                    input_shape: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-weight saliency of the named kind (``"snip"`` or ``"synflow"``)."""
    if saliency == "snip":
        return snip_scores(model, X, y)
    if saliency == "synflow":
        return synflow_scores(model, input_shape)
    raise InvalidParameterError(f"saliency must be one of {SALIENCIES}; got {saliency!r}")


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
