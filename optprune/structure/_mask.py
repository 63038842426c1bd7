"""Running a model with units masked at their consumers' inputs, without copying it.

Scorers that perturb units (ablation, Bonsai) and the pruner's checks both need
``x -> x * m + (1 - m) * fill`` on the columns a group's units feed; a 0/1 mask is
the same as removing the units (what :func:`optprune.pruning.apply_decision` does
physically).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from optprune.errors import ShapeMismatchError
from optprune.structure._graph import Group

__all__ = ["masked"]


@contextmanager
def masked(
    model: nn.Module,
    groups: list[Group],
    masks: Mapping[str, np.ndarray | torch.Tensor],
    fill: Mapping[str, np.ndarray | torch.Tensor] | None = None,
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
