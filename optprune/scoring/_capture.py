"""What scorers read from a model: consumer inputs, gradients, and parameters unit by unit."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from optprune.errors import UnsupportedLayerError
from optprune.scoring._base import Batches, Calibration, LossFn, as_batches, default_loss, resolve_groups
from optprune.structure import Group, Member, member_tensors, unit_view

__all__ = [
    "consumer_inputs",
    "unit_columns",
    "column_weights",
    "input_means",
    "unit_sum",
    "loss_gradients",
    "mean_squared_sample_gradients",
    "ROLES",
]

ROLES = ("out", "in", "channel")


def _consumers(groups: Sequence[Group]) -> list[str]:
    seen: dict[str, None] = {}
    for g in groups:
        for m in g.members:
            if m.role == "in":
                seen.setdefault(m.module)
    return list(seen)


def _as_columns(module: nn.Module, x: torch.Tensor, name: str) -> torch.Tensor:
    """Layer input as (samples, input columns): every position of a convolution is a sample."""
    if isinstance(module, nn.Conv2d):
        return x.movedim(1, -1).reshape(-1, x.shape[1])
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    raise UnsupportedLayerError(name, type(module).__name__, ["Linear", "Conv2d"])


def consumer_inputs(model: nn.Module, groups: Sequence[Group], batches: Batches) -> dict[str, torch.Tensor]:
    """Input of every consumer (``in`` member) over the calibration set, as (samples, columns).

    For a Linear on (batch, tokens, features) every token is a sample; for a Conv2d
    every spatial position is. Everything is kept in memory (calibration sets are
    meant to be a few hundred inputs).
    """
    names = _consumers(groups)
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    handles = []
    for n in names:
        module = model.get_submodule(n)

        def hook(mod: nn.Module, args: tuple, n: str = n) -> None:
            store[n].append(_as_columns(mod, args[0].detach(), n))

        handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for X, _ in batches:
                model(X)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(parts).double() for n, parts in store.items()}


def unit_columns(cols: torch.Tensor, member: Member, width: int) -> torch.Tensor:
    """The member's columns of a (samples, columns) matrix as (samples, width, factor)."""
    part = cols[:, member.offset : member.offset + width * member.factor]
    return part.reshape(cols.shape[0], width, member.factor)


def column_weights(module: nn.Module, name: str = "") -> torch.Tensor:
    """Weight arranged as (input column, everything that column feeds): W^T for Linear, C x (O*kh*kw) for Conv2d."""
    w = module.weight.detach().double()
    if isinstance(module, nn.Linear):
        return w.t()
    if isinstance(module, nn.Conv2d) and module.groups == 1:
        return w.movedim(1, 0).reshape(w.shape[1], -1)
    raise UnsupportedLayerError(name or type(module).__name__, type(module).__name__, ["Linear", "Conv2d"])


def input_means(
    model: nn.Module,
    calibration: Calibration,
    groups: Sequence[Group] | None = None,
    input_shape: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Calibration mean of each input column of every consumer layer (FLAP's baseline ``X̄``).

    The result is what :func:`optprune.pruning.apply_decision` takes as
    ``compensation``.
    """
    batches = as_batches(calibration)
    prunable = resolve_groups(model, groups, input_shape, batches)
    was_training = model.training
    model.eval()
    try:
        cols = consumer_inputs(model, prunable, batches)
    finally:
        model.train(was_training)
    return {n: c.mean(dim=0).numpy() for n, c in cols.items()}


def unit_sum(
    model: nn.Module,
    group: Group,
    values: Callable[[str, torch.Tensor], torch.Tensor],
    roles: Sequence[str] = ROLES,
) -> torch.Tensor:
    """``Σ_members Σ_{entries of unit j}`` of ``values(param name, param)``, one number per unit.

    ``values`` maps each parameter the group's members slice (by qualified name) to
    an array of the parameter's shape, e.g. ``|w|`` or ``w * g``.
    """
    total = torch.zeros(group.width, dtype=torch.float64)
    for member in group.members:
        if member.role not in roles:
            continue
        for qname, tensor, axis in member_tensors(model, member, group.width):
            v = values(qname, tensor.detach()).double()
            total += unit_view(v, axis, member, group.width).sum(dim=1)
    return total


def _weighted_batches(batches: Batches) -> tuple[int, list[float]]:
    n = sum(X.shape[0] for X, _ in batches)
    return n, [X.shape[0] / n for X, _ in batches]


def loss_gradients(model: nn.Module, batches: Batches, loss_fn: LossFn | None = None) -> dict[str, torch.Tensor]:
    """Gradient of the calibration-mean loss with respect to every parameter."""
    loss_fn = loss_fn or default_loss
    _, weights = _weighted_batches(batches)
    params = dict(model.named_parameters())
    grads = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
    for (X, y), w in zip(batches, weights):
        model.zero_grad(set_to_none=True)
        (loss_fn(model(X), y) * w).backward()
        for k, p in params.items():
            if p.grad is not None:
                grads[k] += p.grad.double()
    model.zero_grad(set_to_none=True)
    return grads


def mean_squared_sample_gradients(
    model: nn.Module, batches: Batches, loss_fn: LossFn | None = None
) -> dict[str, torch.Tensor]:
    """Empirical Fisher diagonal ``E_n[g_n^2]``: per-sample gradients (``torch.func.vmap``), squared, averaged."""
    loss_fn = loss_fn or default_loss
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def sample_loss(p: dict, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return loss_fn(out, None if y is None else y.unsqueeze(0))

    total = {k: torch.zeros_like(p, dtype=torch.float64) for k, p in params.items()}
    n = 0
    for X, y in batches:
        if y is None:
            g = vmap(grad(lambda p, x: sample_loss(p, x, None)), in_dims=(None, 0))(params, X)
        else:
            g = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, X, y)
        for k in total:
            total[k] += (g[k].double() ** 2).sum(dim=0)
        n += X.shape[0]
    return {k: v / n for k, v in total.items()}
