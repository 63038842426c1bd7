"""Torch side of block pruning: per-weight importances summed per block, a block decision applied with its mask.

Per-weight importances are the registered weight scorers
(:data:`optprune.scoring.WEIGHT_SCORERS`: ``magnitude``, ``taylor``, ``fisher``,
``wanda``, ``flap``, ``snip``, ``synflow``; formulas in
:mod:`optprune.scoring._weights`), each layer's taken as its ``K x N`` weight
operand and summed over every ``R x C`` block. ``fisher`` is the per-sample
empirical Fisher ``w^2 E_n[g_n^2] / 2`` of the ``fisher`` unit scorer.

A block decision zeroes the pruned blocks of a copy of the model and returns
the keep-masks (torch weight layout), which :func:`finetune_masked` holds
during fine-tuning (``torch.nn.utils.prune`` through
:func:`optprune.pruning.attach_masks`).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from optprune.errors import ShapeMismatchError
from optprune.scoring import WEIGHT_SCORERS
from optprune.scoring._weights import weight_layers
from optprune.systolic._cycles import BlockLayout, block_sums

__all__ = ["apply_blocks", "apply_refit", "apply_weight_masks", "block_scores", "finetune_masked", "gemm_modules",
           "layer_biases", "layer_inputs", "operand_weights", "save_block_mask", "weight_importance"]

def gemm_modules(model: nn.Module, layers=None) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv2d modules in definition order (the order of :func:`gemms_from_torch` for a chain), or
    those named in ``layers`` in that order (e.g. the prunable layers of a ViT: its patch embedding is no Linear)."""
    found = weight_layers(model)
    if layers is None:
        return found
    by_name = dict(found)
    missing = [n for n in layers if n not in by_name]
    if missing:
        raise ShapeMismatchError(f"layers {missing[:4]} are not Linear/Conv2d modules of the model; it has "
                                 f"{[n for n, _ in found][:8]}...")
    return [(n, by_name[n]) for n in layers]


def _operand(t: torch.Tensor) -> np.ndarray:
    """A torch weight (N, K) or (N, C, kh, kw) as the ``K x N`` weight operand."""
    return t.detach().double().reshape(t.shape[0], -1).t().cpu().numpy()


def operand_weights(model: nn.Module, layers=None) -> list[np.ndarray]:
    """Each layer's weight as its ``K x N`` GEMM operand."""
    return [_operand(m.weight) for _, m in gemm_modules(model, layers)]


def weight_importance(model: nn.Module, scorer: str = "magnitude", calibration=None, batch_size: int = 128,
                      layers=None) -> list[np.ndarray]:
    """Per-weight importance of every Linear/Conv2d layer as a ``K x N`` array (float64).

    ``scorer``: a name of :data:`optprune.scoring.WEIGHT_SCORERS`; ``calibration``:
    ``(X, y)`` arrays (inputs in the model's input shape) for every scorer that is not data-free.
    """
    importance = WEIGHT_SCORERS.get(scorer, "block scorer")
    scores = importance(model, calibration, batch_size=batch_size)
    return [_operand(scores[name]) for name, _ in gemm_modules(model, layers)]


def block_scores(layout: BlockLayout, importances: list[np.ndarray]) -> np.ndarray:
    """Sum of the per-weight importances over every block of ``layout`` (vectorised per layer)."""
    if len(importances) != layout.n_layers:
        raise ShapeMismatchError(f"{len(importances)} importance arrays for {layout.n_layers} layers")
    parts = []
    for i, imp in enumerate(importances):
        M, K, N = layout.gemms[i]
        if np.shape(imp) != (K, N):
            raise ShapeMismatchError(
                f"layer {layout.names[i]!r}: importance has shape {np.shape(imp)}, its GEMM operand is {K} x {N}"
            )
        parts.append(block_sums(imp, layout.spec, layout.names[i]).reshape(-1))
    return np.concatenate(parts)


def _masks(layout: BlockLayout, keep: np.ndarray) -> list[np.ndarray]:
    """Per layer the ``K x N`` keep-mask of the kept blocks."""
    offsets = layout.layer_offsets
    R, C = layout.spec.rows, layout.spec.cols
    out = []
    for i, (kb, nb) in enumerate(layout.grid):
        grid = keep[offsets[i]:offsets[i + 1]].reshape(kb, nb)
        full = np.repeat(np.repeat(grid, R, axis=0), C, axis=1)
        _, K, N = layout.gemms[i]
        out.append(full[:K, :N])
    return out


def apply_blocks(model: nn.Module, layout: BlockLayout, keep, layers=None
                 ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with the pruned blocks zeroed, and its keep-masks by module name (torch layout)."""
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    if keep.size != layout.n_blocks:
        raise ShapeMismatchError(f"keep has {keep.size} entries; the layout has {layout.n_blocks} blocks")
    n_modules = len(gemm_modules(model, layers))
    if n_modules != layout.n_layers:
        raise ShapeMismatchError(f"the model has {n_modules} Linear/Conv2d layers; the layout has {layout.n_layers}")
    return apply_weight_masks(model, _masks(layout, keep), layers)


def apply_weight_masks(model: nn.Module, masks_kn: list[np.ndarray], layers=None
                       ) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with its weights multiplied by per-layer ``K x N`` masks, and the masks (torch layout)."""
    pruned = copy.deepcopy(model)
    modules = gemm_modules(pruned, layers)
    if len(modules) != len(masks_kn):
        raise ShapeMismatchError(
            f"the model has {len(modules)} Linear/Conv2d layers; {len(masks_kn)} K x N masks given (one per layer)"
        )
    masks = {}
    with torch.no_grad():
        for (name, m), mask in zip(modules, masks_kn):
            t = torch.as_tensor(np.asarray(mask).T.copy(), dtype=m.weight.dtype).reshape(m.weight.shape)
            m.weight.mul_(t)
            masks[name] = t
    return pruned, masks


def save_block_mask(path: str | os.PathLike, layout: BlockLayout, keep, masks: dict[str, torch.Tensor]) -> Path:
    """Write the block decision (array, block grid, kept blocks) and the weight masks as one ``.npz``."""
    path = Path(path)
    meta = {"array": [layout.spec.rows, layout.spec.cols], "dataflow": layout.spec.dataflow,
            "layers": list(layout.names), "grid": [list(g) for g in layout.grid]}
    np.savez_compressed(path, keep=np.asarray(keep, dtype=bool), meta=np.array(json.dumps(meta)),
                        **{f"mask:{k}": v.cpu().numpy().astype(bool) for k, v in masks.items()})
    return path


def finetune_masked(model: nn.Module, masks: dict[str, torch.Tensor], data, epochs: int, *, lr: float = 1e-3,
                    seed: int = 0) -> nn.Module:
    """Fine-tune in place with the pruned weights held at zero; the masks are made permanent afterwards."""
    from optprune.pruning import attach_masks, finetune, remove_masks

    attach_masks(model, masks)
    try:
        finetune(model, data, epochs, lr=lr, seed=seed, progress=False)
    finally:
        remove_masks(model)
    return model


def layer_inputs(model: nn.Module, X, batch_size: int = 512, layers=None) -> list[np.ndarray]:
    """Each Linear layer's calibration inputs as ``(rows, K)`` float64 arrays (a forward hook per layer; the rows of
    a token sequence are its tokens, as in the layer's GEMM). Conv2d layers are refused (their GEMM input is the
    im2col matrix, not gathered here)."""
    from optprune.errors import UnsupportedLayerError

    modules = gemm_modules(model, layers)
    for name, m in modules:
        if not isinstance(m, nn.Linear):
            raise UnsupportedLayerError(name, type(m).__name__, ("Linear",))
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _ in modules}

    def hook(name):
        def record(module, inputs, output):
            x = inputs[0].detach()
            parts[name].append(x.reshape(-1, x.shape[-1]).double().cpu().numpy())
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in modules]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dtype = next(model.parameters()).dtype
            X = torch.as_tensor(np.asarray(X), dtype=dtype)
            for start in range(0, len(X), batch_size):
                model(X[start:start + batch_size])
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [np.concatenate(parts[name]) for name, _ in modules]


def layer_biases(model: nn.Module, layers=None) -> list[np.ndarray | None]:
    """Each Linear/Conv2d layer's bias as a float64 array (None where it has none)."""
    return [None if m.bias is None else m.bias.detach().double().cpu().numpy()
            for _, m in gemm_modules(model, layers)]


def apply_refit(model: nn.Module, layout: BlockLayout, keep, operands: list[tuple[np.ndarray, np.ndarray]],
                layers=None) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with re-fitted weights and biases (``K x N`` operands, e.g. from
    :func:`optprune.systolic.refit_operands`), pruned blocks zero, and its keep-masks (torch layout)."""
    pruned, masks = apply_blocks(model, layout, keep, layers)
    modules = gemm_modules(pruned, layers)
    if len(operands) != len(modules):
        raise ShapeMismatchError(f"{len(operands)} re-fitted layers for {len(modules)} Linear/Conv2d layers")
    with torch.no_grad():
        for (name, m), (W, b) in zip(modules, operands):
            t = torch.as_tensor(np.asarray(W).T.copy(), dtype=m.weight.dtype).reshape(m.weight.shape)
            m.weight.copy_(t * masks[name])
            if m.bias is not None:
                m.bias.copy_(torch.as_tensor(np.asarray(b), dtype=m.bias.dtype))
    return pruned, masks
