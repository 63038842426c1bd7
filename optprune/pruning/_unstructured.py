"""Unstructured (per-weight) magnitude pruning: the baseline structured pruning is compared against.

One global threshold over the absolute values of all ``Linear`` / ``Conv2d``
weights keeps the ``keep`` largest (Han et al. 2015, "Learning both Weights and
Connections for Efficient Neural Networks", NeurIPS, with a global rather than
per-layer threshold); biases are all kept. The pruned weights are set to zero,
the shapes stay, and :func:`attach_masks` keeps them at zero during fine-tuning
(``torch.nn.utils.prune``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.utils import prune as tprune

from optprune._validation import Interval, Options, ShapeLike, validate_params
from optprune.pruning._apply import parameters_after
from optprune.pruning._select import keep_count
from optprune.scoring._weights import magnitude_importance, weight_layers
from optprune.structure import dependency_groups, infer_input_shape

__all__ = [
    "MATCHES", "attach_masks", "magnitude_masks", "prune_unstructured", "remove_masks", "unstructured_keep_count",
]

#: how the number of kept weights is chosen: ``none`` from the ratio, ``uniform`` to match uniform structured pruning
MATCHES = ("none", "uniform")

_PRUNABLE = (nn.Linear, nn.Conv2d)


def unstructured_keep_count(
    model: nn.Module,
    ratio: float,
    match: str = "none",
    *,
    input_shape: Sequence[int] | None = None,
    min_keep: int = 1,
) -> int:
    """Weights that unstructured pruning keeps at ``ratio`` (biases are all kept).

    ``match="none"``: ``round((1 - ratio) W)`` of the ``W`` weights. ``"uniform"``:
    the parameter count of uniform structured pruning at the same ``ratio`` (every
    prunable group keeps ``max(min_keep, floor((1 - ratio) n_g))`` units), minus
    the biases of the unpruned model, so both prunings keep the same number of
    parameters; counted from the widths, no model is built.
    """
    validate_params(
        "unstructured_keep_count",
        {"ratio": ratio, "match": match, "input_shape": input_shape, "min_keep": min_keep},
        {"ratio": [Interval(float, 0.0, 1.0, closed="left")], "match": [Options(MATCHES)],
         "input_shape": [ShapeLike(), None], "min_keep": [Interval(int, 1, None)]},
    )
    layers = weight_layers(model)
    n_weights = sum(int(m.weight.numel()) for _, m in layers)
    if match == "none":
        return int(round((1.0 - ratio) * n_weights))
    n_bias = sum(int(m.bias.numel()) for _, m in layers if m.bias is not None)
    shape = tuple(input_shape) if input_shape is not None else infer_input_shape(model)
    groups, _ = dependency_groups(model, shape)
    widths = {g.name: keep_count(g.width, ratio, min_keep) for g in groups if g.prunable}
    return int(max(1, min(n_weights, parameters_after(model, groups, widths) - n_bias)))


def magnitude_masks(model: nn.Module, keep: int) -> dict[str, torch.Tensor]:
    """Keep-masks (1.0 kept, 0.0 pruned) of the ``keep`` largest-magnitude weights over all Linear/Conv2d layers.

    One global threshold; ties are broken by position (stable sort), so the masks are deterministic.
    """
    layers = weight_layers(model)
    flat = torch.cat([s.reshape(-1) for s in magnitude_importance(model).values()])  # the magnitude weight scorer
    validate_params("magnitude_masks", {"keep": keep}, {"keep": [Interval(int, 0, flat.numel())]})
    order = torch.argsort(flat, descending=True, stable=True)
    mask = torch.zeros_like(flat)
    mask[order[:keep]] = 1.0
    out, start = {}, 0
    for name, m in layers:
        n = m.weight.numel()
        out[name] = mask[start : start + n].reshape(m.weight.shape)
        start += n
    return out


def prune_unstructured(
    model: nn.Module, ratio: float, match: str = "none", *, input_shape: Sequence[int] | None = None
) -> tuple[nn.Module, dict[str, torch.Tensor], int]:
    """A copy of ``model`` with all but the largest-magnitude weights set to zero.

    Returns ``(pruned copy, keep-masks by module name, number of weights kept)``
    (see :func:`unstructured_keep_count` for ``match``). ``model`` is unchanged.
    """
    keep = unstructured_keep_count(model, ratio, match, input_shape=input_shape)
    pruned = copy.deepcopy(model)
    masks = magnitude_masks(pruned, keep)
    with torch.no_grad():
        for name, mask in masks.items():
            pruned.get_submodule(name).weight.mul_(mask)
    return pruned, masks, keep


def attach_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """``torch.nn.utils.prune`` masks on the named modules, so fine-tuning keeps the pruned weights at zero."""
    for name, mask in masks.items():
        tprune.custom_from_mask(model.get_submodule(name), "weight", mask)


def remove_masks(model: nn.Module) -> None:
    """Make the masks of :func:`attach_masks` permanent (plain ``weight`` parameters again)."""
    for m in model.modules():
        if isinstance(m, _PRUNABLE) and tprune.is_pruned(m):
            tprune.remove(m, "weight")
