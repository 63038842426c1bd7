"""LoRA adapters on chosen linear layers, merged into the weights after training.

Hu et al. 2022, "LoRA: Low-Rank Adaptation of Large Language Models" (ICLR):
a frozen ``W`` gains a trainable low-rank update,

    y = x W^T + b + (alpha / r) x A^T B^T,    A in R^{r x in},  B in R^{out x r},  B = 0 at the start,

and :func:`merge_lora` folds ``W <- W + (alpha / r) B A`` so the adapted model
has the original architecture. Written here (about 100 lines) rather than
taken from ``peft``: ``peft`` is not installed, the project adds no
dependencies, and ``peft`` wraps layers in new module names, which would break
the dependency groups (named after ``q_proj``, ``fc1``, ...). :class:`LoRALinear`
subclasses ``nn.Linear`` and keeps its name, so the engine's slicing of
``weight``/``bias`` still applies; :func:`prune_lora` cuts the LoRA factors
with their base rows (``B``) and columns (``A``): LoRAShear's minimally
removable structures over base + LoRA modules.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.structure import Group

__all__ = ["LORA_TARGETS", "LoRALinear", "add_lora", "lora_parameters", "merge_lora", "prune_lora"]

#: Layer names LoRA may adapt (the last component of the module name).
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoRALinear(nn.Linear):
    """``nn.Linear`` with a trainable low-rank update ``(alpha / r) B A`` (``weight``/``bias`` frozen)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None)
        self.weight = nn.Parameter(base.weight.detach().clone(), requires_grad=False)
        if base.bias is not None:
            self.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=False)
        self.rank = int(rank)
        self.scaling = float(alpha) / float(rank)
        self.lora_A = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scaling

    def merged_weight(self) -> torch.Tensor:
        """``W + (alpha / r) B A``."""
        return self.weight + self.scaling * self.lora_B @ self.lora_A

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rank={self.rank}, scaling={self.scaling:g}"


def add_lora(
    model: nn.Module, rank: int = 4, alpha: float = 8.0, targets: Sequence[str] = LORA_TARGETS
) -> list[nn.Parameter]:
    """Replace every ``nn.Linear`` named in ``targets`` by a :class:`LoRALinear`, in place; freeze all else.

    Returns the LoRA parameters (the only ones left trainable). A rank larger
    than ``min(in, out)`` of a layer, an unknown target or a model without any
    target layer is a named error.
    """
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise InvalidParameterError(f"add_lora: targets must be a non-empty subset of {LORA_TARGETS}; got {targets!r}")
    if not isinstance(rank, int) or rank < 1:
        raise InvalidParameterError(f"add_lora: rank must be an integer >= 1; got {rank!r}")
    found = [(n, m) for n, m in model.named_modules()
             if n.rsplit(".", 1)[-1] in targets and type(m) is nn.Linear]
    if not found:
        raise UnsupportedLayerError(type(model).__name__, "model without LoRA target layers", list(targets))
    for name, module in found:
        most = min(module.in_features, module.out_features)
        if rank > most:
            raise InvalidParameterError(
                f"add_lora: rank {rank} is larger than layer {name!r} "
                f"({module.out_features} x {module.in_features}); allowed 1..{most}"
            )
    for p in model.parameters():
        p.requires_grad_(False)
    for name, module in found:
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, LoRALinear(module, rank, alpha))
    return lora_parameters(model)


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The ``lora_A``/``lora_B`` parameters of every :class:`LoRALinear`."""
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy whose :class:`LoRALinear` layers are plain ``nn.Linear`` with ``W + (alpha/r) B A``; all trainable."""
    new = copy.deepcopy(model)
    for name, module in list(new.named_modules()):
        if not isinstance(module, LoRALinear):
            continue
        plain = nn.Linear(module.in_features, module.out_features, bias=module.bias is not None)
        with torch.no_grad():
            plain.weight.copy_(module.merged_weight())
            if module.bias is not None:
                plain.bias.copy_(module.bias)
        parent_name, _, attr = name.rpartition(".")
        setattr(new.get_submodule(parent_name) if parent_name else new, attr, plain)
    for p in new.parameters():
        p.requires_grad_(True)
    return new


def prune_lora(model: nn.Module, removed: dict[str, Sequence[int]], groups: Sequence[Group]) -> None:
    """Cut the LoRA factors of ``model`` in place with the units their base layers lost.

    For each group and its removed units: ``out`` members lose rows of ``B``,
    ``in`` members lose columns of ``A`` (the base rows/columns are cut by
    :func:`optprune.pruning.apply_decision`, which treats a :class:`LoRALinear`
    as the ``nn.Linear`` it is).
    """
    by_name = {g.name: g for g in groups}
    for gname, units in removed.items():
        if not units:
            continue
        group = by_name[gname]
        for member in group.members:
            module = model.get_submodule(member.module)
            if not isinstance(module, LoRALinear):
                continue
            idx = member.indices(list(units))
            name, axis = ("lora_B", 0) if member.role == "out" else ("lora_A", 1)
            t = getattr(module, name)
            keep = torch.ones(t.shape[axis], dtype=torch.bool)
            keep[idx] = False
            sliced = t.detach().index_select(axis, torch.nonzero(keep).reshape(-1)).clone()
            setattr(module, name, nn.Parameter(sliced, requires_grad=t.requires_grad))
