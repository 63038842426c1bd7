"""Turning a decision into a physically smaller model, and masking units in place.

Removing unit ``j`` of a group deletes row ``j`` of every ``out`` member (weight
and bias), column block ``j`` of every ``in`` member and entry ``j`` of every
``channel`` member (BatchNorm scale, shift and running statistics). The result
computes exactly what the original computes when the removed units' contribution
to their consumers is zero, i.e. the consumers' columns are masked:

    W_{l+1} h  ->  W_{l+1}[:, K] h[K]        (K = kept units)

With FLAP's bias compensation (An et al. 2024, "Fluctuation-based Adaptive
Structured Pruning for Large Language Models", AAAI, eq. 8) the removed inputs are
replaced by their calibration mean ``X̄`` instead of zero:

    b_{l+1}  <-  b_{l+1} + W_{l+1} ((1 - M) ⊙ X̄)

(for a convolution the kernel is summed over its spatial positions, which is exact
for zero padding only away from the border).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from optprune.errors import ShapeMismatchError, UnsupportedLayerError
from optprune.pruning._attention import MultiHeadSelfAttention
from optprune.pruning._decision import PruningDecision
from optprune.pruning._graph import Group, dependency_groups
from optprune.pruning._units import param_axes

__all__ = ["apply_decision", "mask_model", "masked", "count_parameters"]

Compensation = Mapping[str, np.ndarray | torch.Tensor]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of a torch model."""
    return int(sum(p.numel() for p in model.parameters()))


def _removed_indices(
    decision: PruningDecision, groups: list[Group]
) -> dict[tuple[str, str], torch.Tensor]:
    """``(module, role) -> indices to delete`` along the axes that role owns."""
    by_name = {g.name: g for g in groups}
    drops: dict[tuple[str, str], list[torch.Tensor]] = defaultdict(list)
    for name in decision.kept:
        removed = decision.removed(name)
        if not removed:
            continue
        for member in by_name[name].members:
            drops[(member.module, member.role)].append(member.indices(removed))
    return {key: torch.unique(torch.cat(parts)) for key, parts in drops.items()}


def _as_tensor(values: np.ndarray | torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values) if not isinstance(values, torch.Tensor) else values).to(like)


def _compensate(module: nn.Module, name: str, cols: torch.Tensor, mean: np.ndarray | torch.Tensor) -> None:
    """``b <- b + W[:, cols] X̄[cols]`` (kernel summed over space for a convolution)."""
    weight = module.weight.detach()
    mean_t = _as_tensor(mean, weight).reshape(-1)
    if mean_t.numel() != weight.shape[1] * (module.groups if isinstance(module, nn.Conv2d) else 1):
        raise ShapeMismatchError(
            f"compensation for {name!r} has {mean_t.numel()} input means, the layer takes {weight.shape[1]} inputs"
        )
    w = weight[:, cols]
    if isinstance(module, nn.Conv2d):
        w = w.sum(dim=(2, 3))
    elif not isinstance(module, nn.Linear):
        raise UnsupportedLayerError(name, type(module).__name__, ["Linear", "Conv2d"])
    delta = w @ mean_t[cols]
    with torch.no_grad():
        if module.bias is None:
            module.bias = nn.Parameter(delta.clone())
        else:
            module.bias.add_(delta)


def _sync_attributes(module: nn.Module, depthwise: bool) -> None:
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = (int(d) for d in module.weight.shape)
    elif isinstance(module, nn.Conv2d):
        module.out_channels = int(module.weight.shape[0])
        if depthwise:
            module.groups = module.in_channels = module.out_channels
        else:
            module.in_channels = int(module.weight.shape[1]) * module.groups
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        ref = module.weight if module.weight is not None else module.running_mean
        module.num_features = int(ref.shape[0])


def _resolve_groups(model: nn.Module, decision: PruningDecision, groups: list[Group] | None) -> list[Group]:
    if groups is None:
        groups, _ = dependency_groups(model, decision.input_shape)
    decision.check(groups)
    return groups


def apply_decision(
    model: nn.Module,
    decision: PruningDecision,
    compensation: Compensation | None = None,
    groups: list[Group] | None = None,
) -> nn.Module:
    """A new, physically smaller copy of ``model`` keeping ``decision.kept`` in every group.

    ``compensation`` maps consumer module names to the calibration mean of each of
    their input columns (see :func:`optprune.scoring.input_means`); when given, the
    consumers' biases absorb the removed inputs' means (FLAP). The original model
    is not modified.
    """
    groups = _resolve_groups(model, decision, groups)
    drops = _removed_indices(decision, groups)
    new = copy.deepcopy(model)
    if compensation is not None:
        for (module_name, role), cols in drops.items():
            if role == "in" and module_name in compensation:
                _compensate(new.get_submodule(module_name), module_name, cols, compensation[module_name])
    touched: dict[str, bool] = {}
    for (module_name, role), idx in drops.items():
        module = new.get_submodule(module_name)
        touched.setdefault(
            module_name,
            isinstance(module, nn.Conv2d) and 1 < module.groups == module.in_channels == module.out_channels,
        )
        for pname, axis in param_axes(module, role, module_name).items():
            tensor = getattr(module, pname)
            keep = torch.ones(tensor.shape[axis], dtype=torch.bool)
            keep[idx] = False
            sliced = tensor.detach().index_select(axis, torch.nonzero(keep).reshape(-1)).clone()
            if isinstance(tensor, nn.Parameter):
                setattr(module, pname, nn.Parameter(sliced, requires_grad=tensor.requires_grad))
            else:
                setattr(module, pname, sliced)
    for module_name, depthwise in touched.items():
        _sync_attributes(new.get_submodule(module_name), depthwise)
    for module in new.modules():
        if isinstance(module, MultiHeadSelfAttention):
            module.num_heads = module.q_proj.out_features // module.head_dim
            module.embed_dim = module.q_proj.in_features
    return new


def mask_model(
    model: nn.Module,
    decision: PruningDecision,
    compensation: Compensation | None = None,
    groups: list[Group] | None = None,
) -> nn.Module:
    """A same-size copy of ``model`` whose consumers ignore the removed units (columns set to zero).

    This is the reference :func:`apply_decision` must reproduce exactly.
    """
    groups = _resolve_groups(model, decision, groups)
    drops = _removed_indices(decision, groups)
    new = copy.deepcopy(model)
    for (module_name, role), cols in drops.items():
        if role != "in":
            continue
        module = new.get_submodule(module_name)
        if compensation is not None and module_name in compensation:
            _compensate(module, module_name, cols, compensation[module_name])
        with torch.no_grad():
            module.weight[:, cols] = 0.0
    return new


@contextmanager
def masked(
    model: nn.Module,
    groups: list[Group],
    masks: Mapping[str, np.ndarray | torch.Tensor],
    fill: Compensation | None = None,
) -> Iterator[nn.Module]:
    """Run ``model`` with units scaled by ``masks[group]`` at their consumers' inputs.

    Inside the context, every consumer (``in`` member) of a masked group sees
    ``x * m + (1 - m) * fill`` on the group's columns (``fill`` defaults to zero):
    a 0/1 mask is the same as removing the units, without copying the model.
    """
    by_name = {g.name: g for g in groups}
    scale: dict[str, torch.Tensor] = {}
    shift: dict[str, torch.Tensor] = {}
    for name, mask in masks.items():
        if name not in by_name:
            raise ShapeMismatchError(f"mask for unknown group {name!r}; groups: {sorted(by_name)}")
        group = by_name[name]
        m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask, dtype=torch.float32)
        m = m.reshape(-1)
        if m.numel() != group.width:
            raise ShapeMismatchError(f"mask of group {name!r} has {m.numel()} entries, group width is {group.width}")
        for member in group.members:
            if member.role != "in":
                continue
            module = model.get_submodule(member.module)
            n_in = module.weight.shape[1] * (module.groups if isinstance(module, nn.Conv2d) else 1)
            vec = scale.setdefault(member.module, torch.ones(n_in))
            cols = member.indices(torch.arange(group.width))
            vec[cols] = m.repeat_interleave(member.factor)
            if fill is not None and member.module in fill:
                mean = torch.as_tensor(np.asarray(fill[member.module]), dtype=torch.float32).reshape(-1)
                sh = shift.setdefault(member.module, torch.zeros(n_in))
                sh[cols] = (1.0 - vec[cols]) * mean[cols]

    handles = []

    def make_hook(module_name: str, conv: bool):
        def hook(module: nn.Module, args: tuple) -> tuple:
            x = args[0]
            shape = (1, -1, 1, 1) if conv else (-1,)
            out = x * scale[module_name].to(x).view(shape)
            if module_name in shift:
                out = out + shift[module_name].to(x).view(shape)
            return (out, *args[1:])

        return hook

    try:
        for module_name in scale:
            module = model.get_submodule(module_name)
            handles.append(module.register_forward_pre_hook(make_hook(module_name, isinstance(module, nn.Conv2d))))
        yield model
    finally:
        for h in handles:
            h.remove()
