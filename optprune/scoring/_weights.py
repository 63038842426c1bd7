r"""Per-weight importances: one tensor of the weight's shape per Linear / Conv2d layer, higher = more important.

Every function here is registered in :data:`optprune.scoring.WEIGHT_SCORERS` and
has one signature, ``importance(model, calibration=None, *, input_shape=None,
batch_size=128) -> {module name: tensor}`` over :func:`weight_layers` (torch
weight layout; ``calibration`` is ``(X, y)`` arrays or tensors in the model's
input shape). They are the weight-level forms of the per-unit scorers:

* ``magnitude``: :math:`|w|`;
* ``taylor``: :math:`|w\,g|`, ``g`` the gradient of the calibration-mean
  cross-entropy (Molchanov et al. 2019, "Importance Estimation for Neural
  Network Pruning", CVPR, first order);
* ``fisher``: :math:`\tfrac12 w^2\,\mathbb{E}_n[g_n^2]` with per-sample
  gradients ``g_n`` (Optimal Brain Damage with the empirical Fisher, LeCun et
  al. 1990): exactly the per-weight term that the per-unit ``fisher`` scorer
  (:class:`~optprune.scoring.FisherScorer`) sums over a unit's parameters;
* ``wanda``: :math:`|w_{ij}|\,\|x_j\|_2` over the calibration inputs of the
  layer (Sun et al. 2024, "A Simple and Effective Pruning Approach for Large
  Language Models", ICLR);
* ``flap``: :math:`w_{ij}^2\,\mathrm{Var}(x_j)` (population variance), the
  per-weight fluctuation of FLAP (An et al. 2024, AAAI);
* ``snip``: :math:`|w\,\partial L/\partial w|` on the calibration set as one
  batch (Lee, Ajanthan & Torr 2019, "SNIP: Single-shot Network Pruning based
  on Connection Sensitivity", ICLR), in the weights' dtype;
* ``synflow``: single-shot SynFlow (Tanaka et al. 2020, NeurIPS): with every
  weight replaced by its absolute value and an all-ones input,
  :math:`R = \mathbf 1^\top f_{|W|}(\mathbf 1)` and
  :math:`s_w = |w|\,\partial R/\partial |w|` (data-free; float64).

For a convolution the inputs ``x_j`` are the im2col columns (every spatial
position a sample), ``j`` indexing (channel, kernel row, kernel column).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.scoring._base import as_batches
from optprune.scoring._capture import mean_squared_sample_gradients

__all__ = [
    "fisher_importance",
    "flap_importance",
    "magnitude_importance",
    "snip_importance",
    "synflow_importance",
    "taylor_importance",
    "wanda_importance",
    "weight_layers",
]

WeightScores = dict[str, torch.Tensor]


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d modules of ``model`` in definition order: the weights every per-weight scorer scores."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _calibration(name: str, model: nn.Module, calibration: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(X, y)`` as tensors (X in the model's dtype, y as labels), or a named error when missing."""
    if calibration is None:
        raise InvalidParameterError(
            f"scorer {name!r} needs calibration data (X, y); the data-free weight scorers are magnitude and synflow"
        )
    X, y = calibration
    dtype = next(model.parameters()).dtype
    Xt = X.to(dtype) if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X), dtype=dtype)
    yt = y.long() if isinstance(y, torch.Tensor) else torch.as_tensor(np.asarray(y), dtype=torch.long)
    return Xt, yt


def magnitude_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                         batch_size: int = 128) -> WeightScores:
    """``|w|`` (data-free)."""
    return {n: m.weight.detach().abs() for n, m in weight_layers(model)}


def _gradient_sum(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    """Gradient of the summed cross-entropy, batch by batch, accumulated in float64 (a copy of the model)."""
    work = copy.deepcopy(model).eval()
    mods = weight_layers(work)
    grad_sum = {n: torch.zeros_like(m.weight, dtype=torch.float64) for n, m in mods}
    for start in range(0, len(X), batch_size):
        work.zero_grad()
        loss = nn.functional.cross_entropy(work(X[start:start + batch_size]), y[start:start + batch_size],
                                           reduction="sum")
        loss.backward()
        for n, m in mods:
            grad_sum[n] += m.weight.grad.detach().double()
    return grad_sum


def taylor_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                      batch_size: int = 128) -> WeightScores:
    """``|w g|``, ``g`` the gradient of the calibration-mean cross-entropy (float64)."""
    X, y = _calibration("taylor", model, calibration)
    grad_sum = _gradient_sum(model, X, y, batch_size)
    n = max(1, len(X))
    return {name: (m.weight.detach().double() * (grad_sum[name] / n)).abs() for name, m in weight_layers(model)}


def fisher_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                      batch_size: int = 128) -> WeightScores:
    """``w^2 E_n[g_n^2] / 2`` with per-sample gradients: the term the per-unit ``fisher`` scorer sums (float64)."""
    X, y = _calibration("fisher", model, calibration)
    work = copy.deepcopy(model).eval()
    fisher = mean_squared_sample_gradients(work, as_batches((X, y), batch_size))
    return {n: 0.5 * m.weight.detach().double() ** 2 * fisher[f"{n}.weight"] for n, m in weight_layers(work)}


def _layer_inputs(model: nn.Module, X: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per layer: its input columns over the calibration set as (samples, K), float64 (im2col for convolutions)."""
    modules = weight_layers(model)
    store: dict[str, list[torch.Tensor]] = {n: [] for n, _ in modules}
    handles = []
    for name, m in modules:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, name: str = name) -> None:
            x = inputs[0].detach()
            if isinstance(module, nn.Conv2d):
                cols = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
                store[name].append(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
            else:
                store[name].append(x.reshape(-1, x.shape[-1]))
        handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(X)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {n: torch.cat(v).double() for n, v in store.items()}


def _input_weighted(name: str, model: nn.Module, calibration: Any, per_weight) -> WeightScores:
    X, _ = _calibration(name, model, calibration)
    inputs = _layer_inputs(model, X)
    out = {}
    for n, m in weight_layers(model):
        w = m.weight.detach().double().reshape(m.weight.shape[0], -1)
        out[n] = per_weight(w, inputs[n]).reshape(m.weight.shape)
    return out


def wanda_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                     batch_size: int = 128) -> WeightScores:
    """``|w_ij| ||x_j||_2`` (float64)."""
    return _input_weighted("wanda", model, calibration,
                           lambda w, cols: w.abs() * torch.linalg.vector_norm(cols, dim=0)[None, :])


def flap_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                    batch_size: int = 128) -> WeightScores:
    """``w_ij^2 Var(x_j)`` (population variance, float64)."""
    return _input_weighted("flap", model, calibration,
                           lambda w, cols: w ** 2 * cols.var(dim=0, unbiased=False)[None, :])


def snip_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                    batch_size: int = 128) -> WeightScores:
    """SNIP ``|w dL/dw|`` with ``L`` the mean cross-entropy of the whole calibration set as one batch."""
    X, y = _calibration("snip", model, calibration)
    net = copy.deepcopy(model).train()
    net.zero_grad()
    nn.functional.cross_entropy(net(X), y).backward()
    return {n: (m.weight.detach() * m.weight.grad).abs() for n, m in weight_layers(net)}


def synflow_importance(model: nn.Module, calibration: Any = None, *, input_shape: Sequence[int] | None = None,
                       batch_size: int = 128) -> WeightScores:
    """Single-shot SynFlow ``|w| dR/d|w|`` (all-ones input of ``input_shape``, absolute weights, float64)."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None)
    if input_shape is None and calibration is not None:
        input_shape = tuple(np.shape(calibration[0])[1:])
    if input_shape is None:
        from optprune.structure import infer_input_shape

        input_shape = infer_input_shape(model)
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad()
    net(torch.ones((1, *input_shape), dtype=torch.float64)).sum().backward()
    return {n: (m.weight.detach() * m.weight.grad).abs().float() for n, m in weight_layers(net)}
