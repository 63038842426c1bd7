"""α-CROWN: CROWN bounds whose lower ReLU slopes are optimised (Xu et al. 2021, "Fast and Complete").

Any ``alpha`` in ``[0, 1]`` gives a valid bound in the back-substitution of
:mod:`optprune.verification.crown`, so the slopes are free parameters
optimised by projected gradient; with split constraints, the β-CROWN
multipliers (Wang et al. 2021) are optimised too. The optimiser may run in any
precision, but every bound that can close a subdomain is evaluated once more,
without gradients, in float64 by :func:`~optprune.verification.crown.spec_bound`
with the final (projected) ``alpha`` and ``beta`` and widened by
:func:`~optprune.verification.crown.pad_bound`.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from optprune.network import Network
from optprune.verification.bounds import BoundMethod, Bounds, linear_bounds
from optprune.verification.crown import (
    DTYPE,
    SpecBound,
    TorchNetwork,
    _intersect_rows,
    _neuron_rows,
    _unstable_rows,
    default_alpha,
    one_thread,
    pad_bound,
    spec_bound,
    with_linear_output,
)

__all__ = [
    "ALPHA_METHOD",
    "optimise_spec",
    "alpha_intermediate_bounds",
    "split_intermediate_bounds",
    "alpha_spec_upper_bound",
]


def _relu_layers(tn: TorchNetwork, K: int) -> list[int]:
    return [j for j in range(K - 1) if tn.relu[j]]


class _Adam:
    """Adam (Kingma & Ba 2015, Algorithm 1: ``beta1 = 0.9``, ``beta2 = 0.999``, ``eps = 1e-8``) on lists of tensors.

    The same update as ``torch.optim.Adam`` with its defaults, written out because constructing a
    ``torch.optim`` optimiser imports ``torch._dynamo`` (about 1 s, more than the whole bound computation of an
    instance the root bounds decide); it only moves the heuristic parameters, never a closing bound.
    """

    def __init__(self, groups: list[tuple[list, float]], b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8) -> None:
        self.params = [p for ps, _ in groups for p in ps]
        self.lrs = [lr for ps, lr in groups for _ in ps]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.b1, self.b2, self.eps, self.t = b1, b2, eps, 0

    def step(self, grads) -> None:
        """One step ``p -= lr m_hat / (sqrt(v_hat) + eps)``; a parameter without a gradient is left as it is."""
        self.t += 1
        c1, c2 = 1.0 - self.b1 ** self.t, 1.0 - self.b2 ** self.t
        with torch.no_grad():
            for p, g, m, v, lr in zip(self.params, grads, self.m, self.v, self.lrs):
                if g is None:
                    continue
                m.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
                v.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
                p.addcdiv_(m, (v / c2).sqrt_().add_(self.eps), value=-lr / c1)


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
    deadline: float | None = None,
) -> tuple[torch.Tensor, list, list, SpecBound]:
    """Projected-Adam minimisation of :func:`spec_bound` over ``alpha in [0,1]`` and ``beta >= 0``.

    Returns ``(sound_upper (B, m), alpha, beta, final SpecBound)``: the best
    parameters seen per subdomain and row, and their bound re-evaluated in
    float64 without gradients and padded (:func:`pad_bound`). ``stop_below``
    ends the loop once every row's bound is below it. The steps run in
    ``opt_dtype`` (float32: about twice as fast on a CPU); only the final
    evaluation, in float64, can close anything. ``deadline`` (``time.perf_counter``) ends the steps early; the
    final evaluation still runs (any slopes in [0, 1] give a sound bound).
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
        opt = _Adam([(list(a_params), lr_alpha), (list(b_params), lr_beta)])
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
            if deadline is not None and time.perf_counter() > deadline:
                break
            opt.step(torch.autograd.grad(sb.upper.sum(), opt.params, allow_unused=True))
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


def alpha_intermediate_bounds(
    tn: TorchNetwork, x_lo: torch.Tensor, x_hi: torch.Tensor, bounds: Bounds, *, iters: int = 20, lr: float = 0.1,
    deadline: float | None = None,
) -> Bounds:
    """Tighten every hidden layer's bounds after the first by α-CROWN (one input box, layer by layer).

    ``bounds`` (sound, e.g. :func:`optprune.verification.bounds.linear_bounds`) are the
    starting point and are intersected with every result; the output layer's
    bounds are kept. Each neuron's upper and lower bound gets its own slopes.
    """
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
                               n_layers=j + 1, use_beta=False, stop_below=None, deadline=deadline)
        lo_new, hi_new = _intersect_rows(lowers[j], uppers[j], idx, ub)
        lowers[j], uppers[j] = lo_new, torch.maximum(hi_new, lo_new)
    return [(lo[0].numpy().copy(), hi[0].numpy().copy()) for lo, hi in zip(lowers, uppers)]


def split_intermediate_bounds(
    tn: TorchNetwork,
    x_lo: torch.Tensor,
    x_hi: torch.Tensor,
    lowers: list[torch.Tensor],
    uppers: list[torch.Tensor],
    splits: list[torch.Tensor],
    *,
    start: int = 1,
    iters: int = 10,
    deadline: float | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """β-CROWN intermediate bounds of a batch of split subdomains (Wang et al. 2021, "Beta-CROWN", Sec. 3.2).

    For hidden layers ``start..K-2`` in order, the rows ``±e_i`` of every neuron unstable (and unsplit) in
    some subdomain of the batch are bounded by :func:`optimise_spec` with slopes ``alpha`` and split
    multipliers ``beta`` optimised per subdomain and row (the splits of the layers below enter through
    ``beta``, which CROWN's recomputation cannot see), and the padded results are intersected with the given
    bounds; each layer uses the layers below as already tightened. Shapes as in
    :func:`optprune.verification.crown.intermediate_bounds`; new tensors are returned (the inputs are kept).
    A subdomain whose lower bound passes its upper bound somewhere is empty (the caller checks).
    """
    lowers, uppers = list(lowers), list(uppers)
    B = x_lo.shape[0]
    for j in range(max(start, 1), tn.n_layers - 1):
        if deadline is not None and time.perf_counter() > deadline:
            break
        if not tn.relu[j]:
            continue
        idx, C, d = _unstable_rows(lowers[j], uppers[j], splits[j], B)
        if idx.numel() == 0:
            continue
        ub, *_ = optimise_spec(tn, x_lo, x_hi, lowers, uppers, splits, C, d, iters=iters, n_layers=j + 1,
                               use_beta=True, stop_below=None, deadline=deadline)
        lowers[j], uppers[j] = _intersect_rows(lowers[j], uppers[j], idx, ub)
    return lowers, uppers


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
    with one_thread():
        return _alpha_spec_upper_bound(net, x_lower, x_upper, c_out, d_out, bounds, iters, intermediate)


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
    with one_thread():
        return alpha_intermediate_bounds(tn, lo, hi, bounds, deadline=deadline.end)


#: The bound method ``alpha`` (:data:`optprune.verification.bounds.BOUND_METHODS`): α-CROWN intermediate bounds.
ALPHA_METHOD = BoundMethod("alpha", _alpha_method, "linear", "α-CROWN intermediate slopes")
