"""Activation statistics: mean activation and APoZ."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from optprune.scoring._base import Batches, Scorer
from optprune.scoring._capture import consumer_inputs, unit_columns
from optprune.structure import Group

__all__ = ["ActivationMeanScorer", "APoZScorer"]


def _per_unit_stat(model: nn.Module, groups: list[Group], batches: Batches, stat) -> dict[str, np.ndarray]:
    """Average over the group's consumers of ``stat(X)`` with X of shape (samples, width, factor)."""
    cols = consumer_inputs(model, groups, batches)
    out = {}
    for g in groups:
        ins = [m for m in g.members if m.role == "in"]
        total = torch.zeros(g.width, dtype=torch.float64)
        for m in ins:
            total += stat(unit_columns(cols[m.module], m, g.width))
        out[g.name] = (total / max(len(ins), 1)).numpy()
    return out


class ActivationMeanScorer(Scorer):
    r"""Mean absolute activation a unit passes to the next layer.

    .. math:: s_j = \frac{1}{S f} \sum_{s=1}^{S} \sum_{k=1}^{f} |X_{s,(j,k)}|

    ``X`` is the input of the group's consumer layers over the calibration set
    (every spatial position of a feature map is a sample; ``f`` columns per unit
    after a flatten), averaged over the consumers. Molchanov et al. 2017,
    "Pruning Convolutional Neural Networks for Resource Efficient Inference"
    (ICLR), section 2.2 "Mean activation".
    """

    name = "activation_mean"

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        return _per_unit_stat(model, groups, batches, lambda x: x.abs().mean(dim=(0, 2)))


class APoZScorer(Scorer):
    r"""One minus the Average Percentage of Zeros of a unit's (post-ReLU) output.

    .. math:: \mathrm{APoZ}_j = \frac{1}{S f} \sum_{s,k} [X_{s,(j,k)} = 0], \qquad s_j = 1 - \mathrm{APoZ}_j

    Hu et al. 2016, "Network Trimming: A Data-Driven Neuron Pruning Approach
    towards Efficient Deep Architectures" (arXiv:1607.03250), eq. 1: units that are
    mostly zero are pruned first.
    """

    name = "apoz"

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        return _per_unit_stat(model, groups, batches, lambda x: 1.0 - (x == 0).double().mean(dim=(0, 2)))
