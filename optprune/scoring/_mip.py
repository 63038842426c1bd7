"""MIP-aware scoring: prefer removing the ReLUs that would be binaries in a verification MIP."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from optprune._validation import InstanceOf, Interval, Options, Predicate
from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.io import network_from_torch
from optprune.scoring._base import Batches, Scorer, get_scorer
from optprune.scoring._normalize import NORMALIZERS, normalize
from optprune.structure import Group
from optprune.verification.bounds import interval_bounds, linear_bounds, unstable_masks

__all__ = ["MIPAwareScorer", "instability_frequency", "expected_unstable"]

MODES = ("unstable", "tradeoff")
BOUND_KINDS = ("interval", "linear")


def _is_range(value: object) -> bool:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        return False
    lo, hi = value
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (lo, hi))
    return ok and lo <= hi


def instability_frequency(
    model: nn.Module,
    groups: Sequence[Group],
    inputs: torch.Tensor | np.ndarray,
    eps: float,
    bound_method: str = "linear",
    input_range: tuple[float, float] | None = (0.0, 1.0),
    input_shape: Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    r"""Expected number of unstable ReLUs each unit contributes over L∞ balls around ``inputs``.

    For every input ``x_n`` the box ``[x_n - ε, x_n + ε]`` (clipped to
    ``input_range``) is pushed through the network with
    :func:`optprune.verification.bounds.linear_bounds` (the default: the back-substitution the
    verifier's MIPs start from) or :func:`optprune.verification.bounds.interval_bounds`;
    a ReLU neuron is unstable when its pre-activation bounds satisfy
    ``l < 0 < u`` (it needs a binary variable in the big-M encoding). Then

    .. math:: f_j = \frac1N \sum_{n=1}^{N} \sum_{i \in \mathcal N_j} [\,l_i(x_n) < 0 < u_i(x_n)\,]

    where ``N_j`` are the neurons unit ``j`` owns (one per Linear neuron, every
    spatial position of a convolution channel). The model must be a chain that
    :func:`optprune.io.network_from_torch` reads.
    """
    if bound_method not in BOUND_KINDS:
        raise InvalidParameterError(
            f"instability_frequency: bound_method must be one of {BOUND_KINDS}, got {bound_method!r}"
        )
    if not eps > 0:
        raise InvalidParameterError(f"instability_frequency: eps must be > 0, got {eps!r}")
    shape = input_shape if input_shape is not None else getattr(model, "input_shape", None)
    net = network_from_torch(model, tuple(shape) if shape is not None else None)
    layer_index = {layer.name: i for i, layer in enumerate(net.layers)}
    X = np.asarray(inputs.detach().cpu() if isinstance(inputs, torch.Tensor) else inputs, dtype=np.float64)
    X = X.reshape(X.shape[0], -1)
    counts = [np.zeros(layer.out_features) for layer in net.layers]
    fn = interval_bounds if bound_method == "interval" else linear_bounds
    for x in X:
        lo, hi = x - eps, x + eps
        if input_range is not None:
            lo = np.clip(lo, input_range[0], input_range[1])
            hi = np.clip(hi, input_range[0], input_range[1])
        for c, m in zip(counts, unstable_masks(net, fn(net, lo, hi))):
            c += m
    out = {}
    for g in groups:
        producers = [m.module for m in g.members if m.role == "out" and m.module in layer_index]
        if not producers:
            raise UnsupportedLayerError(
                g.name, f"{g.kind} group with no layer in the network definition",
                ["groups of Linear neurons or Conv2d channels in a chain network_from_torch reads"],
            )
        f = np.zeros(g.width)
        for p in producers:
            c = counts[layer_index[p]] / X.shape[0]
            f += c.reshape(g.width, -1).sum(axis=1)
        out[g.name] = f
    return out


def expected_unstable(frequencies: Mapping[str, np.ndarray], kept: Mapping[str, Sequence[int]]) -> float:
    """``Σ_g Σ_{j kept} f_j``: first-order estimate of the unstable ReLUs left after pruning.

    Removing units also tightens later layers' bounds, so the true count is
    usually lower; measure it with :func:`optprune.verification.bounds.count_unstable`.
    """
    return float(sum(np.asarray(f)[list(kept[g])].sum() if g in kept else np.sum(f) for g, f in frequencies.items()))


class MIPAwareScorer(Scorer):
    r"""Scores that make the pruned network easy for a MIP verifier.

    With :math:`f_j` from :func:`instability_frequency` (expected unstable ReLUs
    that unit ``j`` brings over ε-balls around the calibration inputs):

    * ``mode="unstable"``: :math:`s_j = -f_j`, so pruning removes the units that
      most often need a binary variable; units stable on every ball tie at 0.
    * ``mode="tradeoff"``: :math:`s_j = \tilde a_j - \lambda \tilde f_j` where
      :math:`\tilde a` are the scores of an accuracy scorer ``base`` (default
      Taylor) and :math:`\tilde f` the frequencies, both normalised per group with
      ``normalizer``; ``weight`` λ ≥ 0 trades accuracy (λ = 0: the base scorer)
      against the expected number of unstable neurons left (λ → ∞: ``unstable``).
      With z-scores, λ around 0.1-0.3 removes a third of the unstable ReLUs of
      the MNIST 256x2 net at 50% pruning for a few tenths of a point of accuracy
      (``benchmarks/prune_vs_torch_pruning.py``).

    The motivation is Xiao et al. 2019, "Training for Faster Adversarial Robustness
    Verification via Inducing ReLU Stability" (ICLR), whose RS loss penalises the
    same indicator ``[l < 0 < u]`` at training time; here it ranks units for
    structured pruning. After fitting, ``frequencies_`` holds :math:`f`.
    """

    name = "mip"
    _parameter_constraints = {
        "eps": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "mode": [Options(MODES)],
        "weight": [Interval(float, 0.0, None, finite=True)],
        "base": [InstanceOf((str, Scorer))],
        "base_kwargs": [InstanceOf((dict,)), None],
        "bound_method": [Options(BOUND_KINDS)],
        "normalizer": [Options(NORMALIZERS)],
        "input_range": [Predicate(_is_range, "a pair (low, high) of finite floats with low <= high"), None],
        "max_samples": [Interval(int, 1, None)],
    }

    def __init__(
        self,
        eps: float = 0.02,
        mode: str = "tradeoff",
        weight: float = 0.2,
        base: str = "taylor",
        base_kwargs: dict | None = None,
        bound_method: str = "linear",
        normalizer: str = "zscore",
        input_range: tuple[float, float] | None = (0.0, 1.0),
        max_samples: int = 64,
    ) -> None:
        self.eps = eps
        self.mode = mode
        self.weight = weight
        self.base = base
        self.base_kwargs = base_kwargs
        self.bound_method = bound_method
        self.normalizer = normalizer
        self.input_range = input_range
        self.max_samples = max_samples

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        X = torch.cat([x for x, _ in batches])[: self.max_samples]
        shape = getattr(model, "input_shape", None) or tuple(X.shape[1:])
        freq = instability_frequency(model, groups, X, self.eps, self.bound_method, self.input_range, shape)
        self.frequencies_ = freq
        if self.mode == "unstable":
            return {name: -f for name, f in freq.items()}
        base = get_scorer(self.base, **(self.base_kwargs or {}))(model, batches, groups=groups)
        a = normalize(base, self.normalizer)
        f = normalize(freq, self.normalizer)
        return {g.name: a[g.name] - self.weight * f[g.name] for g in groups}

