"""Torch side of block pruning: per-weight importances summed per block, a block decision applied with its mask.

Per-weight importances (the weight-level forms of the pruning engine's
scorers, :func:`optprune.scoring.available_scorers`), summed over each
``R x C`` block of the ``K x N`` weight operand:

* ``magnitude``: ``|w|``;
* ``taylor``: ``|w g|`` with ``g`` the loss gradient over the calibration set
  (Molchanov et al., CVPR 2019, first order);
* ``fisher``: ``sum over batches of (w g_batch)^2`` (empirical Fisher);
* ``wanda``: ``|w_ij| ||x_j||_2`` (Sun et al., ICLR 2024);
* ``flap``: ``w_ij^2 Var(x_j)``, the per-weight fluctuation of FLAP (An et al., AAAI 2024).

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

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.systolic._cycles import BlockLayout, block_sums

__all__ = ["BLOCK_SCORERS", "apply_blocks", "apply_weight_masks", "block_scores", "finetune_masked", "gemm_modules",
           "operand_weights", "save_block_mask", "weight_importance"]

#: per-weight importances that block scores sum
BLOCK_SCORERS = ("magnitude", "taylor", "fisher", "wanda", "flap")


def gemm_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear / Conv2d modules in definition order (the order of :func:`gemms_from_torch` for a chain)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def _operand(t: torch.Tensor) -> np.ndarray:
    """A torch weight (N, K) or (N, C, kh, kw) as the ``K x N`` weight operand."""
    return t.detach().double().reshape(t.shape[0], -1).t().cpu().numpy()


def operand_weights(model: nn.Module) -> list[np.ndarray]:
    """Each layer's weight as its ``K x N`` GEMM operand."""
    return [_operand(m.weight) for _, m in gemm_modules(model)]


def _layer_inputs(model, modules, X):
    """Per module: the input columns over the calibration set as (samples, K) (im2col for convolutions)."""
    store: dict[str, list[torch.Tensor]] = {n: [] for n, _ in modules}
    handles = []
    for name, m in modules:
        def hook(module, inputs, output, name=name):
            x = inputs[0].detach()
            if isinstance(module, nn.Conv2d):
                cols = nn.functional.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)
                store[name].append(cols.transpose(1, 2).reshape(-1, cols.shape[1]))
            else:
                store[name].append(x.reshape(-1, x.shape[-1]))
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(X)
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v).double() for n, v in store.items()}


def weight_importance(model: nn.Module, scorer: str = "magnitude", calibration=None, batch_size: int = 128
                      ) -> list[np.ndarray]:
    """Per-weight importance of every Linear/Conv2d layer as a ``K x N`` array (module docstring).

    ``calibration``: ``(X, y)`` arrays (inputs in the model's input shape) for
    every scorer but ``magnitude``.
    """
    if scorer not in BLOCK_SCORERS:
        raise InvalidParameterError(f"block scorer must be one of {', '.join(BLOCK_SCORERS)}; got {scorer!r}")
    modules = gemm_modules(model)
    if scorer == "magnitude":
        return [np.abs(_operand(m.weight)) for _, m in modules]
    if calibration is None:
        raise InvalidParameterError(f"scorer {scorer!r} needs calibration data (X, y); only 'magnitude' does not")
    X, y = calibration
    dtype = next(model.parameters()).dtype
    Xt = torch.as_tensor(np.asarray(X), dtype=dtype)
    yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
    if scorer in ("wanda", "flap"):
        model.eval()
        inputs = _layer_inputs(model, modules, Xt)
        out = []
        for name, m in modules:
            cols = inputs[name]
            w = _operand(m.weight)
            if scorer == "wanda":
                stat = torch.linalg.vector_norm(cols, dim=0).numpy()
                out.append(np.abs(w) * stat[:, None])
            else:
                stat = cols.var(dim=0, unbiased=False).numpy()
                out.append(w ** 2 * stat[:, None])
        return out
    work = copy.deepcopy(model).eval()
    mods = gemm_modules(work)
    grad_sum = [torch.zeros_like(m.weight, dtype=torch.float64) for _, m in mods]
    fisher = [torch.zeros_like(m.weight, dtype=torch.float64) for _, m in mods]
    for start in range(0, len(Xt), batch_size):
        work.zero_grad()
        xb, yb = Xt[start:start + batch_size], yt[start:start + batch_size]
        loss = nn.functional.cross_entropy(work(xb), yb, reduction="sum")
        loss.backward()
        for i, (_, m) in enumerate(mods):
            g = m.weight.grad.detach().double()
            grad_sum[i] += g
            fisher[i] += (m.weight.detach().double() * g) ** 2
    n = max(1, len(Xt))
    if scorer == "taylor":
        return [np.abs(_operand(m.weight.detach().double() * (gs / n))) for (_, m), gs in zip(mods, grad_sum)]
    return [_operand(f / n) for f in fisher]


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


def apply_blocks(model: nn.Module, layout: BlockLayout, keep) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with the pruned blocks zeroed, and its keep-masks by module name (torch layout)."""
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    if keep.size != layout.n_blocks:
        raise ShapeMismatchError(f"keep has {keep.size} entries; the layout has {layout.n_blocks} blocks")
    n_modules = len(gemm_modules(model))
    if n_modules != layout.n_layers:
        raise ShapeMismatchError(f"the model has {n_modules} Linear/Conv2d layers; the layout has {layout.n_layers}")
    return apply_weight_masks(model, _masks(layout, keep))


def apply_weight_masks(model: nn.Module, masks_kn: list[np.ndarray]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """A copy of ``model`` with its weights multiplied by per-layer ``K x N`` masks, and the masks (torch layout)."""
    pruned = copy.deepcopy(model)
    modules = gemm_modules(pruned)
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
