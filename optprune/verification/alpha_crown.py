r"""α-CROWN / β-CROWN linear bounds of a ReLU network, batched over many subdomains (torch, CPU).

A *subdomain* is an input box ``[x_lo, x_hi]`` together with split constraints
on some ReLU neurons (``s_j = +1``: ``z_j >= 0``, ``s_j = -1``: ``z_j <= 0``)
and sound pre-activation bounds ``l <= z <= u`` valid on it. For a row ``c``
of a specification, :func:`spec_bound` computes an upper bound of
``c^T z_L + d`` over the subdomain by back-substitution (CROWN, Zhang et al.
2018) through the ReLU relaxation

.. math::

    \alpha_j z_j \le \mathrm{relu}(z_j) \le \frac{u_j}{u_j - l_j}(z_j - l_j), \qquad 0 \le \alpha_j \le 1

for an unstable neuron (``l_j < 0 < u_j``, not split); a neuron split active
is the identity and one split inactive is zero. Any ``alpha`` in ``[0, 1]``
gives a valid bound, so the slopes are free parameters optimised by projected
gradient (α-CROWN, Xu et al. 2021, "Fast and Complete"). Split constraints
enter by Lagrangian relaxation (β-CROWN, Wang et al. 2021): on the subdomain
``s_j z_j >= 0``, so for any ``beta_j >= 0``

.. math::

    c^T z_L + d \;\le\; c^T z_L + d + \sum_j \beta_j s_j z_j ,

and the right-hand side is bounded by the same back-substitution, with
``beta_j s_j`` added to the coefficient of ``z_j``. Maximising the linear
function that remains over the box gives the bound.

Soundness: the optimiser may run in any precision, but every bound that can
close a subdomain is evaluated once more, without gradients, in float64 by
:func:`spec_bound` with the final (projected) ``alpha`` and ``beta``, then
widened by :func:`pad_bound`: the rigorous error term of
:mod:`optprune.verification.rounding` over the magnitude of every term summed, including
the rounding of the back-substituted coefficients themselves (``|lam| @ |W|``
times the largest ``|h|`` the earlier bounds allow, and the relaxation's
elementwise products times the largest ``|z|``). The ReLU chord's intercept is
raised by its own rounding (as in :mod:`optprune.verification.bounds`). Intermediate bounds
are computed the same way (rows ``±e_j`` on an earlier layer) and padded outward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from optprune.network import AffineLayer, Network
from optprune.verification.bounds import BoundMethod, Bounds, linear_bounds
from optprune.verification.rounding import UNIT_ROUNDOFF, gamma

__all__ = [
    "ALPHA_METHOD",
    "TorchNetwork",
    "SpecBound",
    "spec_bound",
    "pad_bound",
    "optimise_spec",
    "intermediate_bounds",
    "alpha_intermediate_bounds",
    "alpha_spec_upper_bound",
    "with_linear_output",
]

DTYPE = torch.float64


@dataclass(frozen=True)
class TorchNetwork:
    """Dense float64 tensors of a :class:`~optprune.network.Network` (weights, biases, ReLU flags)."""

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    relu: tuple[bool, ...]

    weights32: tuple[torch.Tensor, ...] = ()
    biases32: tuple[torch.Tensor, ...] = ()

    @classmethod
    def from_network(cls, net: Network) -> TorchNetwork:
        weights = tuple(torch.as_tensor(layer.dense_weight(), dtype=DTYPE) for layer in net.layers)
        biases = tuple(torch.as_tensor(layer.bias, dtype=DTYPE) for layer in net.layers)
        return cls(weights, biases, tuple(layer.activation == "relu" for layer in net.layers),
                   tuple(w.float() for w in weights), tuple(b.float() for b in biases))

    def params(self, dtype: torch.dtype) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """Weights and biases in ``dtype`` (float32 copies serve the optimiser only, never a closing bound)."""
        if dtype == torch.float32 and self.weights32:
            return self.weights32, self.biases32
        return self.weights, self.biases

    @property
    def n_layers(self) -> int:
        return len(self.weights)

    @property
    def hidden_widths(self) -> list[int]:
        return [int(w.shape[0]) for w in self.weights[:-1]]

    @property
    def chain_length(self) -> int:
        """Operations in sequence in any bound (as :func:`optprune.verification.bounds.chain_length`)."""
        return int(self.weights[0].shape[1]) + sum(int(w.shape[0]) for w in self.weights) + 4 * self.n_layers + 4


@dataclass
class SpecBound:
    """Result of :func:`spec_bound`: ``upper`` (B, m) plus what branching heuristics need.

    ``mu[j]`` (B, m, n_j) is the coefficient of ``relu(z_j)`` met during the
    back-substitution (BaBSR's score uses it); ``lam0`` (B, m, n_in) the final
    coefficient of the input, whose sign gives the maximising vertex of the box;
    ``magnitude`` (B, m) the sum of the magnitudes of the terms (for padding),
    ``n_terms`` the longest chain of operations they were summed in.
    """

    upper: torch.Tensor
    mu: list[torch.Tensor | None]
    lam0: torch.Tensor
    magnitude: torch.Tensor
    n_terms: int = 0


def _relaxation(lower: torch.Tensor, upper: torch.Tensor, split: torch.Tensor | None):
    """Per neuron (B, n): upper slope, upper intercept, fixed lower slope, unstable mask.

    Active (``l >= 0`` or split ``+1``): slope 1; inactive (``u <= 0`` or split
    ``-1``): slope 0; unstable: the upper chord, lower slope left to ``alpha``.
    """
    active = lower >= 0
    inactive = upper <= 0
    if split is not None:
        active = active | (split > 0)
        inactive = (inactive | (split < 0)) & ~active
    unstable = ~active & ~inactive
    denom = torch.where(unstable, upper - lower, torch.ones_like(upper))
    up_slope = torch.where(active, 1.0, torch.where(unstable, upper / denom, 0.0)).to(lower.dtype)
    up_icpt = torch.where(unstable, -lower * upper / denom, 0.0).to(lower.dtype)
    if lower.dtype == torch.float64:  # the chord above the ReLU in exact arithmetic (optprune.verification.bounds)
        span = torch.maximum(lower.abs(), upper.abs())
        slack = 8.0 * UNIT_ROUNDOFF * (up_slope * span + up_icpt + span)
        up_icpt = torch.where(unstable, torch.nextafter(up_icpt + slack, torch.full_like(up_icpt, torch.inf)), 0.0)
    return up_slope, up_icpt, active.to(lower.dtype), unstable


def default_alpha(lower: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """CROWN's adaptive lower slope ``1 if u >= -l else 0`` (B, n)."""
    return (upper >= -lower).to(lower.dtype)


def spec_bound(
    tn: TorchNetwork,
    x_lo: torch.Tensor,
    x_hi: torch.Tensor,
    lowers: list[torch.Tensor],
    uppers: list[torch.Tensor],
    splits: list[torch.Tensor] | None,
    C: torch.Tensor,
    d: torch.Tensor,
    alpha: list[torch.Tensor | None] | None = None,
    beta: list[torch.Tensor | None] | None = None,
    n_layers: int | None = None,
    magnitude: bool = True,
) -> SpecBound:
    """Upper bound of ``C z_{K-1} + d`` per subdomain and row (module doc), differentiable in alpha and beta.

    Shapes: ``x_lo``/``x_hi`` (B, n_in); ``lowers[j]``/``uppers[j]``/``splits[j]``
    (B, n_j) for hidden layer ``j``; ``C`` (B, m, n_{K-1}) on the pre-activation of
    layer ``K-1`` where ``K = n_layers`` (default: every layer, so ``C`` acts on
    the output); ``d`` (B, m); ``alpha[j]``/``beta[j]`` (B, m, n_j) or None
    (CROWN's adaptive slopes; no Lagrangian term). The arithmetic runs in
    ``C``'s dtype; ``magnitude=False`` skips the padding's term sum (optimiser steps).
    """
    K = tn.n_layers if n_layers is None else n_layers
    weights, biases = tn.params(C.dtype)
    dt = C.dtype
    lam, const = C, d
    mag = d.abs() if magnitude else None
    mus: list[torch.Tensor | None] = [None] * (K - 1)
    for k in range(K - 1, -1, -1):
        b = biases[k]
        const = const + lam @ b
        if magnitude:
            # |lam| @ (|b| + |W_k| @ max|h_{k-1}|): the bias terms and the rounding of lam @ W_k (module doc).
            h_prev = (torch.maximum(x_hi.abs(), x_lo.abs()) if k == 0 else
                      uppers[k - 1].clamp(min=0.0) if tn.relu[k - 1] else
                      torch.maximum(lowers[k - 1].abs(), uppers[k - 1].abs()))
            spread = b.abs() + h_prev @ weights[k].abs().T
            mag = mag + (lam.abs() * spread.unsqueeze(1)).sum(-1)
        lam = lam @ weights[k]
        if k == 0:
            break
        j = k - 1
        if not tn.relu[j]:
            continue
        split = None if splits is None else splits[j]
        up_slope, up_icpt, act, unstable = _relaxation(lowers[j], uppers[j], split)
        mus[j] = lam
        pos, neg = lam.clamp(min=0.0), lam.clamp(max=0.0)
        a = alpha[j] if alpha is not None and alpha[j] is not None else default_alpha(lowers[j], uppers[j]).unsqueeze(1)
        low_slope = act.unsqueeze(1) + unstable.unsqueeze(1).to(dt) * a
        icpt = (pos * up_icpt.unsqueeze(1)).sum(-1)
        const = const + icpt
        terms = pos * up_slope.unsqueeze(1) - neg * low_slope  # |pos s| + |neg a|: the products' magnitudes
        lam = pos * up_slope.unsqueeze(1) + neg * low_slope
        if beta is not None and beta[j] is not None and split is not None:
            lam = lam + beta[j] * split.unsqueeze(1).to(dt)
            terms = terms + beta[j].abs()
        if magnitude:
            z_abs = torch.maximum(lowers[j].abs(), uppers[j].abs()).unsqueeze(1)
            mag = mag + icpt.abs() + (terms * z_abs).sum(-1)
    hi, lo = x_hi.unsqueeze(1), x_lo.unsqueeze(1)
    box = (lam.clamp(min=0.0) * hi + lam.clamp(max=0.0) * lo).sum(-1)
    upper = const + box
    if magnitude:
        mag = mag + (lam.abs() * torch.maximum(hi.abs(), lo.abs())).sum(-1) + const.abs()
    return SpecBound(upper, mus, lam, mag if magnitude else torch.zeros_like(box), tn.chain_length)


def pad_bound(sb: SpecBound) -> torch.Tensor:
    """Sound float64 upper bound: ``upper`` plus :func:`optprune.verification.rounding.error_bound` of its magnitude."""
    if sb.upper.dtype != torch.float64:
        raise TypeError("pad_bound needs a float64 SpecBound: only float64 evaluations can close anything")
    n = sb.n_terms + 4
    u = sb.upper.detach()
    pad = 2.0 * gamma(n) * sb.magnitude.detach() + n * 2.0**-1074
    up = u + torch.nextafter(pad, torch.full_like(pad, torch.inf))
    return torch.nextafter(up, torch.full_like(up, torch.inf))


def _relu_layers(tn: TorchNetwork, K: int) -> list[int]:
    return [j for j in range(K - 1) if tn.relu[j]]


def optimise_spec(
    tn: TorchNetwork,
    x_lo: torch.Tensor,
    x_hi: torch.Tensor,
    lowers: list[torch.Tensor],
    uppers: list[torch.Tensor],
    splits: list[torch.Tensor] | None,
    C: torch.Tensor,
    d: torch.Tensor,
    alpha: list[torch.Tensor | None] | None = None,
    beta: list[torch.Tensor | None] | None = None,
    *,
    iters: int = 20,
    lr_alpha: float = 0.1,
    lr_beta: float = 0.05,
    n_layers: int | None = None,
    use_beta: bool = True,
    stop_below: float | None = 0.0,
    opt_dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, list, list, SpecBound]:
    """Projected-Adam minimisation of :func:`spec_bound` over ``alpha in [0,1]`` and ``beta >= 0``.

    Returns ``(sound_upper (B, m), alpha, beta, final SpecBound)``: the best
    parameters seen per subdomain and row, and their bound re-evaluated in
    float64 without gradients and padded (:func:`pad_bound`). ``stop_below``
    ends the loop once every row's bound is below it. The steps run in
    ``opt_dtype`` (float32: about twice as fast on a CPU); only the final
    evaluation, in float64, can close anything.
    """
    K = tn.n_layers if n_layers is None else n_layers
    B, m = C.shape[0], C.shape[1]
    relu_j = _relu_layers(tn, K)
    alpha = list(alpha) if alpha is not None else [None] * (K - 1)
    beta = list(beta) if beta is not None else [None] * (K - 1)
    for j in relu_j:
        if alpha[j] is None:
            alpha[j] = default_alpha(lowers[j], uppers[j]).unsqueeze(1).expand(B, m, -1).clone()
        alpha[j] = alpha[j].to(opt_dtype).clamp(0.0, 1.0).detach().requires_grad_(True)
        if use_beta and splits is not None:
            if beta[j] is None:
                beta[j] = torch.zeros(B, m, lowers[j].shape[1], dtype=opt_dtype)
            beta[j] = beta[j].to(opt_dtype).clamp(min=0.0).detach().requires_grad_(True)
        else:
            beta[j] = None
    init_a = [None if a is None else a.detach().to(DTYPE) for a in alpha]
    init_b = [None if b is None else b.detach().to(DTYPE) for b in beta]
    a_params = [alpha[j] for j in relu_j]
    b_params = [beta[j] for j in relu_j if beta[j] is not None]
    best_u = torch.full((B, m), float("inf"), dtype=opt_dtype)
    cast = (lambda t: t.to(opt_dtype)) if opt_dtype != DTYPE else (lambda t: t)
    o_lo, o_hi, o_C, o_d = cast(x_lo), cast(x_hi), cast(C), cast(d)
    o_lowers, o_uppers = [cast(t) for t in lowers], [cast(t) for t in uppers]
    best_a = [None if a is None else a.detach().clone() for a in alpha]
    best_b = [None if b is None else b.detach().clone() for b in beta]
    if iters > 0 and a_params:
        groups = [{"params": a_params, "lr": lr_alpha}]
        if b_params:
            groups.append({"params": b_params, "lr": lr_beta})
        opt = torch.optim.Adam(groups)
        for _ in range(iters):
            sb = spec_bound(tn, o_lo, o_hi, o_lowers, o_uppers, splits, o_C, o_d, alpha, beta, K, magnitude=False)
            u = sb.upper.detach()
            better = u < best_u
            best_u = torch.where(better, u, best_u)
            for j in relu_j:
                best_a[j] = torch.where(better.unsqueeze(-1), alpha[j].detach(), best_a[j])
                if beta[j] is not None:
                    best_b[j] = torch.where(better.unsqueeze(-1), beta[j].detach(), best_b[j])
            if stop_below is not None and bool((best_u < stop_below).all()):
                break
            opt.zero_grad()
            sb.upper.sum().backward()
            opt.step()
            with torch.no_grad():
                for a in a_params:
                    a.clamp_(0.0, 1.0)
                for b in b_params:
                    b.clamp_(min=0.0)
    # Final sound evaluation: float64, no gradients, projected parameters, padded; the starting
    # parameters are evaluated too, so that float32 selection noise never makes the result looser.
    final_a = [None if a is None else a.detach().to(DTYPE).clamp(0.0, 1.0) for a in best_a]
    final_b = [None if b is None else b.detach().to(DTYPE).clamp(min=0.0) for b in best_b]
    with torch.no_grad():
        sb = spec_bound(tn, x_lo, x_hi, lowers, uppers, splits, C, d, final_a, final_b, K)
        if iters > 0 and a_params:
            sb0 = spec_bound(tn, x_lo, x_hi, lowers, uppers, splits, C, d, init_a, init_b, K)
            worse = pad_bound(sb0) < pad_bound(sb)
            if bool(worse.any()):
                w = worse.unsqueeze(-1)
                final_a = [None if a is None else torch.where(w, a0, a) for a, a0 in zip(final_a, init_a)]
                final_b = [None if b is None else torch.where(w, b0, b) for b, b0 in zip(final_b, init_b)]
                sb = spec_bound(tn, x_lo, x_hi, lowers, uppers, splits, C, d, final_a, final_b, K)
    return pad_bound(sb), final_a, final_b, sb


def _neuron_rows(n: int, idx: torch.Tensor, B: int) -> torch.Tensor:
    """Rows ``[e_idx; -e_idx]`` (B, 2|idx|, n)."""
    eye = torch.zeros(idx.numel(), n, dtype=DTYPE)
    eye[torch.arange(idx.numel()), idx] = 1.0
    return torch.cat([eye, -eye]).unsqueeze(0).expand(B, -1, -1)


def _intersect_rows(lower: torch.Tensor, upper: torch.Tensor, idx: torch.Tensor, ub: torch.Tensor):
    """``(lower, upper)`` (B, n) intersected at neurons ``idx`` with the padded bounds ``ub`` of the rows of
    :func:`_neuron_rows` (B, 2|idx|): ``z <= ub[:, :r]`` and ``z >= -ub[:, r:]``. New tensors; the inputs are kept."""
    r = idx.numel()
    lo_new, hi_new = lower.clone(), upper.clone()
    hi_new[:, idx] = torch.minimum(hi_new[:, idx], ub[:, :r])
    lo_new[:, idx] = torch.maximum(lo_new[:, idx], -ub[:, r:])
    return lo_new, hi_new


def intermediate_bounds(
    tn: TorchNetwork,
    x_lo: torch.Tensor,
    x_hi: torch.Tensor,
    lowers: list[torch.Tensor],
    uppers: list[torch.Tensor],
    splits: list[torch.Tensor] | None,
    start: int = 1,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Recompute (CROWN, batched) the bounds of hidden layers ``start..K-2`` and intersect them with the given ones.

    Layer ``j``'s bounds use the (already updated) bounds and splits of the
    layers before it. Only neurons unstable in some subdomain of the batch are
    recomputed. The result is padded outward; a subdomain whose lower bound
    exceeds its upper bound somewhere is empty.
    """
    lowers, uppers = list(lowers), list(uppers)
    B = x_lo.shape[0]
    with torch.no_grad():
        if start <= 0:
            w, b = tn.weights[0], tn.biases[0]
            wpos, wneg = w.clamp(min=0.0), w.clamp(max=0.0)
            top = x_hi @ wpos.T + x_lo @ wneg.T + b
            bottom = x_lo @ wpos.T + x_hi @ wneg.T + b
            mag = torch.maximum(x_hi.abs(), x_lo.abs()) @ w.abs().T + b.abs()
            pad = 2.0 * gamma(2 * w.shape[1] + 6) * mag + 2.0**-1060
            inf = torch.full_like(top, torch.inf)
            lowers[0] = torch.maximum(lowers[0], torch.nextafter(bottom - pad, -inf))
            uppers[0] = torch.minimum(uppers[0], torch.nextafter(top + pad, inf))
            start = 1
        for j in range(start, tn.n_layers - 1):
            open_ = (lowers[j] < 0) & (uppers[j] > 0)
            if splits is not None:
                open_ &= splits[j] == 0
            idx = torch.nonzero(open_.any(0)).flatten()
            if idx.numel() == 0:
                continue
            n = lowers[j].shape[1]
            C = _neuron_rows(n, idx, B)
            d = torch.zeros(B, C.shape[1], dtype=DTYPE)
            sb = spec_bound(tn, x_lo, x_hi, lowers, uppers, splits, C, d, None, None, n_layers=j + 1)
            lowers[j], uppers[j] = _intersect_rows(lowers[j], uppers[j], idx, pad_bound(sb))
    return lowers, uppers


def alpha_intermediate_bounds(
    tn: TorchNetwork, x_lo: torch.Tensor, x_hi: torch.Tensor, bounds: Bounds, *, iters: int = 20, lr: float = 0.1,
    deadline: float | None = None,
) -> Bounds:
    """Tighten every hidden layer's bounds after the first by α-CROWN (one input box, layer by layer).

    ``bounds`` (sound, e.g. :func:`optprune.verification.bounds.linear_bounds`) are the
    starting point and are intersected with every result; the output layer's
    bounds are kept. Each neuron's upper and lower bound gets its own slopes.
    """
    import time

    lowers = [torch.as_tensor(lo, dtype=DTYPE).unsqueeze(0) for lo, _ in bounds]
    uppers = [torch.as_tensor(hi, dtype=DTYPE).unsqueeze(0) for _, hi in bounds]
    for j in range(1, tn.n_layers - 1):
        if deadline is not None and time.perf_counter() > deadline:
            break
        idx = torch.nonzero((lowers[j][0] < 0) & (uppers[j][0] > 0)).flatten()
        if idx.numel() == 0 or not tn.relu[j]:
            continue
        C = _neuron_rows(lowers[j].shape[1], idx, 1)
        d = torch.zeros(1, C.shape[1], dtype=DTYPE)
        ub, *_ = optimise_spec(tn, x_lo, x_hi, lowers, uppers, None, C, d, iters=iters, lr_alpha=lr,
                               n_layers=j + 1, use_beta=False, stop_below=None)
        lo_new, hi_new = _intersect_rows(lowers[j], uppers[j], idx, ub)
        lowers[j], uppers[j] = lo_new, torch.maximum(hi_new, lo_new)
    return [(lo[0].numpy().copy(), hi[0].numpy().copy()) for lo, hi in zip(lowers, uppers)]


def alpha_spec_upper_bound(
    net: Network, x_lower, x_upper, c_out: np.ndarray, d_out, *, bounds: Bounds | None = None, iters: int = 50,
    intermediate: bool = True,
) -> tuple[np.ndarray, Bounds]:
    """Sound α-CROWN upper bounds of ``c_out @ y + d_out`` (one per row) over a box, and the bounds used.

    Starts from ``bounds`` (default :func:`optprune.verification.bounds.linear_bounds`),
    optionally tightens the intermediate layers by α-CROWN, then optimises the
    slopes of the specification rows. Never looser than CROWN with the same
    intermediate bounds: the optimiser keeps the best slopes seen, starting
    from CROWN's.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small products: one thread, and far faster on a shared, busy machine
    try:
        return _alpha_spec_upper_bound(net, x_lower, x_upper, c_out, d_out, bounds, iters, intermediate)
    finally:
        torch.set_num_threads(threads)


def with_linear_output(net: Network, bounds: Bounds | None) -> tuple[Network, Bounds | None]:
    """``net``, followed by an identity layer ``y = h`` when its last layer ends in a ReLU.

    The spec bounds act on the last layer's pre-activation (``C z + d``); after a
    final ReLU that would bound ``C z`` instead of ``C relu(z)``, unsound for a
    positive coefficient (``relu(z) >= z``). The appended layer's bounds are the
    ReLU of the last layer's, and the former output ReLUs become splittable.
    """
    if net.layers[-1].activation != "relu":
        return net, bounds
    n = net.output_size
    ident = AffineLayer(np.eye(n), np.zeros(n), "identity", name="output")
    out = Network((*net.layers, ident), name=net.name, metadata=net.metadata)
    if bounds is not None:
        lo, hi = bounds[-1]
        bounds = [*bounds, (np.maximum(lo, 0.0), np.maximum(hi, 0.0))]
    return out, bounds


def _alpha_spec_upper_bound(net, x_lower, x_upper, c_out, d_out, bounds, iters, intermediate):
    net, bounds = with_linear_output(net, bounds)
    tn = TorchNetwork.from_network(net)
    lo = torch.as_tensor(np.asarray(x_lower, dtype=np.float64).reshape(1, -1))
    hi = torch.as_tensor(np.asarray(x_upper, dtype=np.float64).reshape(1, -1))
    b = bounds if bounds is not None else linear_bounds(net, x_lower, x_upper)
    if intermediate:
        b = alpha_intermediate_bounds(tn, lo, hi, b, iters=iters)
    c = np.atleast_2d(np.asarray(c_out, dtype=np.float64))
    d = np.broadcast_to(np.asarray(d_out, dtype=np.float64), (c.shape[0],))
    # One subdomain per row (slopes per row); the output layer's own bounds are not needed.
    m = c.shape[0]
    lowers = [torch.as_tensor(lo_, dtype=DTYPE).unsqueeze(0).expand(m, -1) for lo_, _ in b]
    uppers = [torch.as_tensor(hi_, dtype=DTYPE).unsqueeze(0).expand(m, -1) for _, hi_ in b]
    ub, *_ = optimise_spec(tn, lo.expand(m, -1), hi.expand(m, -1), lowers, uppers, None,
                           torch.as_tensor(c).unsqueeze(1), torch.as_tensor(d.copy()).unsqueeze(1),
                           iters=iters, use_beta=False, stop_below=None)
    return ub[:, 0].numpy().copy(), b


def _alpha_method(net: Network, x_lower, x_upper, bounds: Bounds, *, deadline, solver) -> Bounds:
    tn = TorchNetwork.from_network(net)
    lo = torch.as_tensor(np.asarray(x_lower, dtype=np.float64).reshape(1, -1))
    hi = torch.as_tensor(np.asarray(x_upper, dtype=np.float64).reshape(1, -1))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return alpha_intermediate_bounds(tn, lo, hi, bounds, deadline=deadline.end)
    finally:
        torch.set_num_threads(threads)


#: The bound method ``alpha`` (:data:`optprune.verification.bounds.BOUND_METHODS`): α-CROWN intermediate bounds.
ALPHA_METHOD = BoundMethod("alpha", _alpha_method, "linear", "α-CROWN intermediate slopes")
