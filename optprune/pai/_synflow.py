r"""Iterative SynFlow (Tanaka et al. 2020, NeurIPS, Algorithm 1) as a per-weight scorer.

"Pruning neural networks without any data by iteratively conserving synaptic
flow": with every parameter replaced by its absolute value, an all-ones input
and the mask :math:`\mu` applied to the weights,

.. math:: R(\theta \odot \mu) = \mathbf 1^\top f_{|\theta \odot \mu|}(\mathbf 1), \qquad
          S(\theta) = \Big|\frac{\partial R}{\partial \theta} \odot \theta\Big| ,

and Algorithm 1 repeats, for :math:`k = 1, \dots, n` (``iterations``, 100 in
the paper), "score with the current mask, then keep the top
:math:`\rho^{k/n}` fraction of the weights globally" (exponential compression
schedule towards the final density :math:`\rho`). Scoring single-shot at a high
compression prunes whole layers (layer collapse); pruning a little at a time
and re-scoring conserves the flow through every layer (the paper's Theorem 3).
Computed in float64 (the paper's remark for deep networks), BatchNorm in eval
mode.

The returned scores encode the final mask exactly: the top
:math:`\operatorname{round}(\rho N)` of them (``N`` the number of Linear /
Conv2d weights) are the weights Algorithm 1 keeps, so
:class:`~optprune.pai.UnstructuredPaI` and :class:`~optprune.pai.Reconvene`
reproduce its mask by their global top-k. Kept weights score their SynFlow
score in the final masked network (what a channel sum of Reconvene adds up:
the flow through the channel after pruning); removed weights score below every
kept one, later removals higher (ties within one iteration by their score
then). Scores are divided by the largest, float64.

Without ``density`` (e.g. a caller of the registry that ranks weights without a
target), the ranking is the removal order of a schedule down to
:data:`DEFAULT_DENSITY`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.scoring._weights import weight_layers

__all__ = ["DEFAULT_DENSITY", "SynFlowPruning", "iterative_synflow_importance", "synflow_masks"]

#: final density of the schedule when the caller gives none (the removal order then ranks the weights)
DEFAULT_DENSITY = 0.01


def _input_shape(model: nn.Module, calibration: Any, input_shape: Sequence[int] | None) -> tuple[int, ...]:
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None and calibration is not None:
        input_shape = tuple(np.shape(calibration[0])[1:])
    if input_shape is None:
        from optprune.structure import infer_input_shape

        input_shape = infer_input_shape(model)
    return tuple(int(d) for d in input_shape)


def _check(density: float, iterations: int) -> None:
    if not (isinstance(density, (float, int)) and 0.0 < float(density) <= 1.0):
        raise InvalidParameterError(f"iterative SynFlow: density must be in (0, 1]; got {density!r}")
    if not (isinstance(iterations, int) and not isinstance(iterations, bool) and iterations >= 1):
        raise InvalidParameterError(f"iterative SynFlow: iterations must be an integer >= 1; got {iterations!r}")


class SynFlowPruning(NamedTuple):
    """What Algorithm 1 leaves per Linear/Conv2d weight (module name -> tensor of the weight's shape)."""

    #: 0/1 (float64): exactly round(density N) ones
    masks: dict[str, torch.Tensor]
    #: the iteration (1..iterations) that removed a weight, 0 if kept
    removed_at: dict[str, torch.Tensor]
    #: a removed weight's score in the iteration that removed it (0 if kept)
    removed_score: dict[str, torch.Tensor]
    #: |theta dR/dtheta| in the final masked network (0 for removed weights)
    final_score: dict[str, torch.Tensor]


def synflow_masks(model: nn.Module, density: float, *, iterations: int = 100,
                  input_shape: Sequence[int] | None = None) -> SynFlowPruning:
    r"""Algorithm 1 of Tanaka et al. at final ``density`` (fraction of Linear/Conv2d weights kept).

    Iteration :math:`k` scores the masked absolute-valued network (float64,
    all-ones input) and keeps the top :math:`\operatorname{round}(N\rho^{k/n})`
    of the still-kept weights (exact count, ties by position); biases and other
    parameters are never masked (as in the paper's code).
    """
    _check(density, iterations)
    shape = _input_shape(model, None, input_shape)
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for v in net.state_dict().values():  # Tanaka's linearize(): every parameter and buffer made nonnegative
            if torch.is_floating_point(v):
                v.abs_()
    layers = weight_layers(net)
    if not layers:
        raise InvalidParameterError("iterative SynFlow: the model has no Linear or Conv2d layer to score")
    names = [name for name, _ in layers]
    w0 = [m.weight.detach().clone() for _, m in layers]
    sizes = [w.numel() for w in w0]
    n = sum(sizes)
    mask = torch.ones(n, dtype=torch.float64)
    removed_at = torch.zeros(n, dtype=torch.long)
    removed_score = torch.zeros(n, dtype=torch.float64)
    x = torch.ones((1, *shape), dtype=torch.float64)

    def scores() -> torch.Tensor:
        with torch.no_grad():
            for (_, m), w, mk in zip(layers, w0, torch.split(mask, sizes)):
                m.weight.copy_(w * mk.reshape(w.shape))
        net.zero_grad()
        net(x).sum().backward()
        return torch.cat([(m.weight.grad * m.weight.detach()).abs().reshape(-1) for _, m in layers])

    for k in range(1, iterations + 1):
        keep = max(1, round(n * float(density) ** (k / iterations)))
        s = scores()
        ranked = torch.where(mask > 0, s, torch.full_like(s, -1.0))  # removed weights never come back
        new = torch.zeros_like(mask)
        new[torch.topk(ranked, keep, sorted=False).indices] = 1.0
        dropped = (mask > 0) & (new == 0)
        removed_at[dropped] = k
        removed_score[dropped] = s[dropped]
        mask = new
    final = scores() * mask

    def split(t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: v.reshape(w.shape) for name, v, w in zip(names, torch.split(t, sizes), w0)}

    return SynFlowPruning(split(mask), split(removed_at), split(removed_score), split(final))


def iterative_synflow_importance(model: nn.Module, calibration: Any = None, *,
                                 input_shape: Sequence[int] | None = None, batch_size: int = 128,
                                 density: float | None = None, iterations: int = 100) -> dict[str, torch.Tensor]:
    r"""Iterative SynFlow scores whose top :math:`\operatorname{round}(\rho N)` are Algorithm 1's mask at ``density``.

    Data-free (``calibration`` only supplies the input shape when
    ``input_shape`` and ``model.input_shape`` are absent; ``batch_size`` is
    unused). Kept weights: their SynFlow score in the final masked network
    divided by the largest; removed weights: below every kept one, ordered by
    the iteration that removed them, then by their score at that iteration.
    """
    rho = DEFAULT_DENSITY if density is None else density
    shape = _input_shape(model, calibration, input_shape)
    res = synflow_masks(model, rho, iterations=iterations, input_shape=shape)
    masks = res.masks

    def flat(d: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([v.reshape(-1) for v in d.values()])

    kept = flat(masks) > 0
    s = flat(res.final_score)
    at_removal = flat(res.removed_score)
    top = float(s.max()) if float(s.max()) > 0 else 1.0
    s = s / top
    positive = s[kept & (s > 0)]
    floor = float(positive.min()) if positive.numel() else 1.0
    t = flat(res.removed_at).double()
    out = torch.empty_like(s)
    out[kept] = torch.clamp(s[kept], min=floor * (iterations + 1) / (iterations + 2))  # disconnected kept weights
    # removed at iteration t: floor (t + r) / (n + 2) with r in [0, 1/2] by the score they had when removed
    r = torch.zeros_like(s)
    for k in torch.unique(t[~kept]).tolist():
        sel = (~kept) & (t == k)
        v = at_removal[sel]
        span = float(v.max() - v.min())
        r[sel] = 0.5 * (v - v.min()) / span if span > 0 else 0.0
    out[~kept] = floor * (t[~kept] + r[~kept]) / (iterations + 2)
    sizes = [m.numel() for m in masks.values()]
    return {nm: v.reshape(m.shape) for nm, v, m in zip(masks, torch.split(out, sizes), masks.values())}
