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
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from optprune.errors import ShapeMismatchError, UnsupportedLayerError
from optprune.pruning._decision import PruningDecision
from optprune.structure import Group, MultiHeadSelfAttention, dependency_groups, param_axes

__all__ = ["apply_decision", "mask_model", "count_parameters", "parameters_after"]

Compensation = Mapping[str, np.ndarray | torch.Tensor]


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (weights and biases) of a torch model."""
    return int(sum(p.numel() for p in model.parameters()))


def parameters_after(
    model: nn.Module,
    groups: Sequence[Group],
    widths: Mapping[str, int],
    compensation: Compensation | None = None,
) -> int:
    """Parameter count of the model :func:`apply_decision` would build, from the kept widths alone.

    Each parameter's size along an axis a group member owns shrinks by
    ``(width - kept) * factor``; nothing is copied or sliced. With
    ``compensation`` a consumer without bias that loses inputs gains one (FLAP),
    as :func:`apply_decision` does. ``widths`` maps group names to kept widths
    (groups not named keep everything).
    """
    by_name = {g.name: g for g in groups}
    shrink: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    losing_inputs: set[str] = set()
    for name, kept in widths.items():
        if name not in by_name:
            raise ShapeMismatchError(
                f"widths name group {name!r}, which the model does not have; groups: {sorted(by_name)}"
            )
        group = by_name[name]
        drop = group.width - int(kept)
        if not 0 <= drop < group.width:
            raise ShapeMismatchError(
                f"group {name!r} of width {group.width} cannot keep {kept} units; allowed 1..{group.width}"
            )
        if drop == 0:
            continue
        for member in group.members:
            module = model.get_submodule(member.module)
            for pname, axis in param_axes(module, member.role, member.module).items():
                if isinstance(getattr(module, pname), nn.Parameter):
                    shrink[(member.module, pname)][axis] += drop * member.factor
            if member.role == "in":
                losing_inputs.add(member.module)
    total, seen = 0, set()
    shapes: dict[tuple[str, str], list[int]] = {}
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            shape = list(param.shape)
            for axis, removed in shrink.get((module_name, pname), {}).items():
                shape[axis] -= removed
            shapes[(module_name, pname)] = shape
            total += math.prod(shape)
    if compensation is not None:
        for module_name in losing_inputs & set(compensation):
            if getattr(model.get_submodule(module_name), "bias", None) is None:
                total += shapes[(module_name, "weight")][0]  # the bias compensation creates
    return int(total)


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
