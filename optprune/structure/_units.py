"""Which tensor axes a group member owns, and views of parameters unit by unit.

A member ``(module, role, offset, factor)`` owns, for unit ``j``, indices
``offset + j*factor .. offset + (j+1)*factor - 1`` along one axis of each of the
module's parameters and buffers listed in :data:`PARAM_AXES`.
"""

from __future__ import annotations

import torch
from torch import nn

from optprune.errors import UnsupportedLayerError
from optprune.structure._graph import Member

__all__ = ["PARAM_AXES", "param_axes", "unit_view", "member_tensors"]

_LINEAR_LIKE = {"out": {"weight": 0, "bias": 0}, "in": {"weight": 1}}
_BATCHNORM = {"channel": {"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0}}

#: module type -> role -> {parameter or buffer name: axis}
PARAM_AXES: dict[type[nn.Module], dict[str, dict[str, int]]] = {
    nn.Linear: _LINEAR_LIKE,
    nn.Conv2d: {**_LINEAR_LIKE, "channel": {"weight": 0, "bias": 0}},
    nn.BatchNorm1d: _BATCHNORM,
    nn.BatchNorm2d: _BATCHNORM,
}


def param_axes(module: nn.Module, role: str, name: str = "") -> dict[str, int]:
    """``{tensor name: axis}`` that ``role`` owns in ``module`` (only tensors that exist)."""
    for kind, roles in PARAM_AXES.items():
        if type(module) is kind or isinstance(module, kind):
            if role not in roles:
                break
            return {p: a for p, a in roles[role].items() if getattr(module, p, None) is not None}
    raise UnsupportedLayerError(
        name or type(module).__name__, f"{type(module).__name__} as a {role!r} member",
        [f"{k.__name__}: {', '.join(r)}" for k, r in PARAM_AXES.items()],
    )


def unit_view(tensor: torch.Tensor, axis: int, member: Member, width: int) -> torch.Tensor:
    """``tensor`` restricted to the member's slice, as (width, everything a unit owns)."""
    part = tensor.narrow(axis, member.offset, width * member.factor).movedim(axis, 0)
    return part.reshape(width, -1)


def member_tensors(
    model: nn.Module, member: Member, width: int, params_only: bool = True
) -> list[tuple[str, torch.Tensor, int]]:
    """``(qualified tensor name, tensor, axis)`` for every tensor the member slices."""
    module = model.get_submodule(member.module)
    out = []
    for pname, axis in param_axes(module, member.role, member.module).items():
        tensor = getattr(module, pname)
        if params_only and not isinstance(tensor, nn.Parameter):
            continue
        out.append((f"{member.module}.{pname}", tensor, axis))
    return out
