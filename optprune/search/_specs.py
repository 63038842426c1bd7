"""Which group widths each parameterised module of a torch model reads and writes, and its geometry.

Shared by the cost model of :mod:`optprune.search._torch` and the latency
tables of :mod:`optprune.search._latency`: every module with parameters gets a
:class:`ModuleSpec` listing the prunable groups' segments on its input, output
and per-channel axes (``(group, features per unit)``), the features no prunable
group owns, and its input/output shapes from one forward pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from optprune.errors import ShapeMismatchError, UnsupportedLayerError
from optprune.structure import PARAM_AXES, Group, MultiHeadSelfAttention, dependency_groups, infer_input_shape

__all__ = ["SUPPORTED_COST_MODULES", "ModuleSpec", "module_specs"]

#: modules whose parameters the cost model counts: those whose tensors a group member slices, and attention
SUPPORTED_COST_MODULES: tuple[str, ...] = (*(kind.__name__ for kind in PARAM_AXES), MultiHeadSelfAttention.__name__)


@dataclass
class ModuleSpec:
    """A parameterised module's width segments (group, factor) and fixed features, with its geometry."""

    name: str
    module: nn.Module
    in_segments: list[tuple[str, int]] = field(default_factory=list)
    out_segments: list[tuple[str, int]] = field(default_factory=list)
    channel_segments: list[tuple[str, int]] = field(default_factory=list)
    fixed_in: int = 0
    fixed_out: int = 0
    fixed_channels: int = 0
    in_shape: tuple[int, ...] = ()  # one sample's input shape
    out_shape: tuple[int, ...] = ()

    @property
    def positions(self) -> int:
        """Output positions per sample (tokens, H'*W'): output entries / output channels."""
        if isinstance(self.module, nn.Linear):
            return int(np.prod(self.out_shape[:-1])) if len(self.out_shape) > 1 else 1
        if isinstance(self.module, nn.Conv2d):
            return int(np.prod(self.out_shape[1:]))
        return 1


def _shapes(model: nn.Module, input_shape: Sequence[int]) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """Input and output shape (without batch) of every module, from one forward pass on zeros."""
    shapes, hooks = {}, []
    for name, module in model.named_modules():
        if name:
            def hook(mod, args, out, name=name):
                if args and isinstance(args[0], torch.Tensor) and isinstance(out, torch.Tensor):
                    shapes[name] = (tuple(args[0].shape[1:]), tuple(out.shape[1:]))
            hooks.append(module.register_forward_hook(hook))
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape)))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    return shapes


def module_specs(
    model: nn.Module, input_shape: Sequence[int] | None = None, groups: Sequence[Group] | None = None
) -> tuple[list[Group], list[ModuleSpec]]:
    """``(prunable groups, specs of every module with parameters)`` of ``model``."""
    if input_shape is None:
        input_shape = getattr(model, "input_shape", None) or infer_input_shape(model)
    input_shape = tuple(int(v) for v in input_shape)
    if groups is None:
        groups, _ = dependency_groups(model, input_shape)
    shapes = _shapes(model, input_shape)
    prunable = [g for g in groups if g.prunable]
    prunable_names = {g.name for g in prunable}
    members = defaultdict(list)
    for g in groups:
        for m in g.members:
            members[m.module].append((g, m))
    specs = []
    for name, module in model.named_modules():
        if not any(True for _ in module.parameters(recurse=False)):
            continue
        spec = ModuleSpec(name, module)
        spec.in_shape, spec.out_shape = shapes.get(name, ((), ()))
        for g, m in members.get(name, []):
            if g.name in prunable_names:
                seg = (g.name, int(m.factor))
                {"in": spec.in_segments, "out": spec.out_segments, "channel": spec.channel_segments}[m.role].append(seg)
        if isinstance(module, nn.Linear):
            full_in, full_out = module.in_features, module.out_features
        elif isinstance(module, nn.Conv2d):
            full_in, full_out = module.in_channels, module.out_channels
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            full_in = full_out = module.num_features
        else:
            if spec.in_segments or spec.out_segments or spec.channel_segments:
                raise UnsupportedLayerError(name, type(module).__name__, SUPPORTED_COST_MODULES)
            full_in = full_out = 0
        width = {g.name: g.width for g in prunable}
        spec.fixed_in = full_in - sum(width[s] * f for s, f in spec.in_segments)
        spec.fixed_out = full_out - sum(width[s] * f for s, f in spec.out_segments)
        spec.fixed_channels = full_out - sum(width[s] * f for s, f in spec.channel_segments)
        if min(spec.fixed_in, spec.fixed_out, spec.fixed_channels) < 0:
            raise ShapeMismatchError(f"module {name!r}: its group segments cover more features than it has")
        specs.append(spec)
    return prunable, specs
