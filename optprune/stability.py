r"""Verification-friendly fine-tuning: fewer unstable ReLUs and fewer nonzeros, so the MILP gets smaller.

Xiao, Tjeng, Shafiullah & Madry (ICLR 2019), "Training for Faster Adversarial
Robustness Verification via Inducing ReLU Stability": the MILP of a ReLU network
needs one binary per neuron whose sign is not fixed over the input region
(``l < 0 < u``) and one coefficient per nonzero weight. Two regularisers attack
both:

* the **ReLU-stability loss** (their eq. 4), over the L-inf ball of radius
  ``eps`` around each training point,

  .. math:: \mathcal{L}_{RS} = -\sum_i \tanh(1 + l_i u_i),

  which is smallest when ``l_i u_i > 0`` (the neuron's sign is fixed). ``l, u``
  are the project's interval bounds (:func:`optprune.verification.bounds.interval_bounds`),
  computed here in torch so that they are differentiable
  (:func:`interval_preactivation_bounds`; a test checks they equal the NumPy
  ones);
* an **L1 weight penalty**, followed by unstructured magnitude pruning to
  exact zeros (their section 3.1), the mask held while training goes on.

Both combine with a structured decision (prune neurons first, then
:func:`stabilize` the smaller network).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from optprune._validation import validate_params
from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.pruning import distillation_loss, teacher_outputs
from optprune.pruning._recovery import FINETUNE_CONSTRAINTS
from optprune.training import fit_epochs, training_tensors

__all__ = [
    "StabilityOptions",
    "interval_preactivation_bounds",
    "relu_stability_loss",
    "magnitude_masks",
    "stabilize",
]

_SUPPORTED = ("Linear", "ReLU", "Flatten", "Identity")


@dataclass(frozen=True)
class StabilityOptions:
    """What :func:`stabilize` adds to fine-tuning (module doc).

    ``eps``: radius of the L-inf ball the stability loss looks at (the
    verification radius); ``rs_weight``: weight of the stability loss;
    ``l1_weight``: weight of the L1 penalty (summed over weights, divided by
    their count); ``sparsity``: fraction of each Linear layer's weights set to
    exactly zero (smallest magnitudes) after ``prune_after`` of the epochs,
    the mask held from then on; ``domain``: the input range the ball is clipped to.
    """

    eps: float = 0.02
    rs_weight: float = 0.0
    l1_weight: float = 0.0
    sparsity: float = 0.0
    prune_after: float = 0.5
    domain: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        checks = {
            "eps": (self.eps, 0.0, math.inf), "rs_weight": (self.rs_weight, 0.0, math.inf),
            "l1_weight": (self.l1_weight, 0.0, math.inf), "sparsity": (self.sparsity, 0.0, 0.999),
            "prune_after": (self.prune_after, 0.0, 1.0),
        }
        for name, (value, low, high) in checks.items():
            v = float(value)
            if not (math.isfinite(v) or high == math.inf) or math.isnan(v) or not low <= v <= high:
                raise InvalidParameterError(
                    f"StabilityOptions: {name} must be in [{low}, {high}], got {value!r}"
                )
        if not self.domain[0] < self.domain[1]:
            raise InvalidParameterError(
                f"StabilityOptions: domain must be (low, high) with low < high, got {self.domain}"
            )

    @property
    def active(self) -> bool:
        return self.rs_weight > 0 or self.l1_weight > 0 or self.sparsity > 0

    def key(self) -> dict:
        return {"eps": self.eps, "rs_weight": self.rs_weight, "l1_weight": self.l1_weight,
                "sparsity": self.sparsity, "prune_after": self.prune_after}


def _layers(model: nn.Module) -> list[nn.Module]:
    mods = list(model) if isinstance(model, nn.Sequential) else [model]
    flat: list[nn.Module] = []
    for m in mods:
        if isinstance(m, nn.Sequential):
            flat.extend(_layers(m))
        else:
            flat.append(m)
    for m in flat:
        if type(m).__name__ not in _SUPPORTED:
            raise UnsupportedLayerError(type(m).__name__, type(m).__name__, _SUPPORTED)
    return flat


def interval_preactivation_bounds(model: nn.Module, lower: torch.Tensor, upper: torch.Tensor) -> list[tuple]:
    """Interval bounds of every pre-activation that feeds a ReLU, for a batch of boxes (differentiable).

    The interval pass of the bound code itself
    (:func:`optprune.verification.crown.affine_interval`, which
    :func:`optprune.verification.bounds.interval_bounds` runs too):
    ``l' = W (l + u)/2 - |W| (u - l)/2 + b`` and ``u' = ... + |W| (u - l)/2``,
    batched over the first axis, differentiable in the weights (no rounding
    padding here: this is a training objective, not a proof).
    """
    from optprune.verification.crown import affine_interval

    lo, hi = lower.flatten(1), upper.flatten(1)
    out = []
    pending = None
    for m in _layers(model):
        if isinstance(m, nn.Linear):
            lo, hi = affine_interval(lo, hi, m.weight, m.bias, pad=False)
            pending = (lo, hi)
        elif isinstance(m, nn.ReLU):
            if pending is not None:
                out.append(pending)
            lo, hi = torch.relu(lo), torch.relu(hi)
            pending = None
    return out


def relu_stability_loss(
    model: nn.Module, x: torch.Tensor, eps: float, domain: tuple[float, float] = (0.0, 1.0)
) -> torch.Tensor:
    """Xiao et al.'s RS loss (module doc), averaged over the batch ``x``."""
    lower = torch.clamp(x - eps, *domain)
    upper = torch.clamp(x + eps, *domain)
    total = x.new_zeros(())
    for lo, hi in interval_preactivation_bounds(model, lower, upper):
        total = total - torch.tanh(1.0 + lo * hi).sum(dim=1).mean()
    return total


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[nn.Linear, torch.Tensor]:
    """Per Linear layer, the mask keeping the largest-magnitude ``1 - sparsity`` of its weights."""
    masks = {}
    for m in _layers(model):
        if isinstance(m, nn.Linear):
            w = m.weight.detach().abs().reshape(-1)
            k = int(round(sparsity * w.numel()))
            mask = torch.ones_like(w)
            if k > 0:
                mask[torch.argsort(w)[:k]] = 0.0
            masks[m] = mask.reshape(m.weight.shape)
    return masks


def _hold_masks(masks: dict) -> None:
    """Reparametrise each masked layer's weight as ``weight_orig * mask`` (gradients of pruned weights are 0)."""
    from torch.nn.utils import prune

    for m, mask in masks.items():
        prune.custom_from_mask(m, "weight", mask)


def _release_masks(masks: dict) -> None:
    """Make the masks permanent: plain ``weight`` tensors with exact zeros."""
    from torch.nn.utils import prune

    for m in masks:
        prune.remove(m, "weight")


def stabilize(
    model: nn.Module,
    data: str | tuple[np.ndarray, np.ndarray],
    epochs: int,
    options: StabilityOptions,
    *,
    teacher: nn.Module | None = None,
    alpha: float = 0.5,
    temperature: float = 2.0,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> nn.Module:
    """Fine-tune ``model`` in place with the stability loss, L1 penalty and magnitude pruning (module doc).

    The task loss is cross-entropy, or distillation from ``teacher``
    (:func:`optprune.pruning.distillation_loss`). After ``options.prune_after``
    of the epochs the smallest weights are zeroed and kept at zero (held
    by reparametrising the weight as ``weight_orig * mask``), so the returned model has exact zeros.
    """
    params = {"epochs": epochs, "alpha": alpha, "temperature": temperature, "lr": lr, "batch_size": batch_size,
              "seed": seed}
    validate_params("stabilize", params, {name: FINETUNE_CONSTRAINTS[name] for name in params})
    _layers(model)  # unsupported layers fail before any work
    Xt, yt, label = training_tensors(data, data_dir, "stabilize")
    if epochs == 0:
        return model.eval()
    teacher_logits = teacher_outputs(teacher, Xt)
    linears = [m for m in _layers(model) if isinstance(m, nn.Linear)]
    n_weights = sum(m.weight.numel() for m in linears)
    first = max(0, min(epochs, int(round(options.prune_after * epochs)))) if options.sparsity > 0 else epochs
    masks: dict = {}

    def batch_loss(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        teacher_part = None if teacher_logits is None else teacher_logits[idx]
        loss = distillation_loss(out, yt[idx], teacher_part, alpha, temperature)
        if options.rs_weight > 0:
            loss = loss + options.rs_weight * relu_stability_loss(model, Xt[idx], options.eps, options.domain)
        if options.l1_weight > 0:
            loss = loss + options.l1_weight * sum(m.weight.abs().sum() for m in linears) / n_weights
        return loss

    common = dict(lr=lr, batch_size=batch_size, progress=progress, title="stabilize", label=label)
    if first > 0:
        fit_epochs(model, Xt, yt, batch_loss, epochs=first, seed=seed, **common)
    if options.sparsity > 0:
        masks.update(magnitude_masks(model, options.sparsity))
        _hold_masks(masks)
        try:
            if epochs - first > 0:
                fit_epochs(model, Xt, yt, batch_loss, epochs=epochs - first, seed=seed + 1, **common)
        finally:
            _release_masks(masks)
    return model.eval()
