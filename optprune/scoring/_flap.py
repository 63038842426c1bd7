"""Input-weighted scorers on the consumer side: Wanda-sp and FLAP's fluctuation metrics."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from optprune._validation import Options
from optprune.scoring._base import Batches, Scorer
from optprune.scoring._capture import column_weights, consumer_inputs, unit_columns
from optprune.structure import Group

__all__ = ["WandaSPScorer", "FLAPScorer", "FLAP_METRICS"]

FLAP_METRICS = ("wifv", "ifv", "wifn")


def _consumer_sum(model: nn.Module, groups: list[Group], batches: Batches, per_column) -> dict[str, np.ndarray]:
    """``Σ_consumers Σ_k per_column(X_cols, W_cols)`` per unit, k over the unit's f columns.

    ``per_column`` receives the unit's input columns (samples, width, f) and the
    matching weights (width, f, rows) and returns (width, f).
    """
    cols = consumer_inputs(model, groups, batches)
    out = {}
    for g in groups:
        total = torch.zeros(g.width, dtype=torch.float64)
        for m in g.members:
            if m.role != "in":
                continue
            x = unit_columns(cols[m.module], m, g.width)
            w = column_weights(model.get_submodule(m.module), m.module)
            w = w[m.offset : m.offset + g.width * m.factor].reshape(g.width, m.factor, -1)
            total += per_column(x, w).sum(dim=1)
        out[g.name] = total.numpy()
    return out


class WandaSPScorer(Scorer):
    r"""Wanda-sp: structured Wanda, weight magnitude times input norm over a unit's consumer columns.

    .. math:: s_j = \sum_{c} \sum_{k} \frac{1}{R_c} \sum_{i=1}^{R_c} |W^{(c)}_{i,(j,k)}| \; \|X^{(c)}_{:,(j,k)}\|_2

    over consumers ``c`` (``R_c`` rows: output neurons, or output channels times
    kernel positions), calibration samples in the norm. Sun et al. 2024, "A Simple
    and Effective Pruning Approach for Large Language Models" (ICLR), eq. 1, in
    its structured form of An et al. 2024 (FLAP, AAAI), section 4.1.
    """

    name = "wanda_sp"

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        return _consumer_sum(
            model, groups, batches, lambda x, w: w.abs().mean(dim=2) * torch.linalg.vector_norm(x, dim=0)
        )


class FLAPScorer(Scorer):
    r"""FLAP fluctuation metrics on a unit's consumer columns.

    With ``X̄_j`` the calibration mean and ``Var_n(X_j) = (1/(N-1)) Σ_n (X_{n,j} - X̄_j)^2``:

    * ``wifv`` (weighted input feature variance, FLAP eq. 7):
      :math:`s_j = \sum_k \mathrm{Var}_n(X_{n,(j,k)}) \, \|W_{:,(j,k)}\|_2^2`
    * ``ifv``  (input feature variance): :math:`s_j = \sum_k \mathrm{Var}_n(X_{n,(j,k)})`
    * ``wifn`` (weighted input feature norm):
      :math:`s_j = \sum_k \frac{1}{R}\sum_i |W_{i,(j,k)}| \sqrt{\tfrac1N \sum_n X_{n,(j,k)}^2}`

    summed over the group's consumers. A unit whose input barely fluctuates can
    be replaced by its mean: pair this scorer with the bias compensation
    ``b <- b + W((1-M) ⊙ X̄)`` of :func:`optprune.pruning.apply_decision` (FLAP
    eq. 8) and the per-layer z-score normaliser (FLAP eq. 9). An et al. 2024,
    "Fluctuation-based Adaptive Structured Pruning for Large Language Models" (AAAI).
    """

    name = "flap"
    alias_defaults = {"wifv": {"metric": "wifv"}, "ifv": {"metric": "ifv"}, "wifn": {"metric": "wifn"}}

    _parameter_constraints = {"metric": [Options(FLAP_METRICS)]}

    def __init__(self, metric: str = "wifv") -> None:
        self.metric = metric

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        def per_column(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
            if self.metric == "wifn":
                return w.abs().mean(dim=2) * x.pow(2).mean(dim=0).sqrt()
            var = x.var(dim=0, unbiased=True) if x.shape[0] > 1 else torch.zeros(x.shape[1:], dtype=x.dtype)
            return var * (w.pow(2).sum(dim=2) if self.metric == "wifv" else 1.0)

        return _consumer_sum(model, groups, batches, per_column)
