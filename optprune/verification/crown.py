r"""The one CROWN core: interval and linear (back-substitution) bounds of a ReLU network, in torch, batched.

Every bound of the package is computed here: :mod:`optprune.verification.bounds`
(interval, CROWN) calls it for one box, :mod:`optprune.verification.alpha_crown`
optimises its slopes (α-CROWN), :mod:`optprune.verification.bab` evaluates it on
batches of subdomains, and the stability loss of :mod:`optprune.stability` uses
its interval pass on live weights.

A *subdomain* is an input box ``[x_lo, x_hi]`` together with split constraints
on some ReLU neurons (``s_j = +1``: ``z_j >= 0``, ``s_j = -1``: ``z_j <= 0``)
and sound pre-activation bounds ``l <= z <= u`` valid on it. For a row ``c``
of a specification, :func:`spec_bound` computes an upper bound of
``c^T z_L + d`` over the subdomain by back-substitution (CROWN, Zhang et al.
2018, "Efficient Neural Network Robustness Certification with General
Activation Functions") through the ReLU relaxation

.. math::

    \alpha_j z_j \le \mathrm{relu}(z_j) \le \frac{u_j}{u_j - l_j}(z_j - l_j), \qquad 0 \le \alpha_j \le 1

for an unstable neuron (``l_j < 0 < u_j``, not split); a neuron split active
is the identity and one split inactive is zero. CROWN's adaptive slope is
``alpha = 1 if u >= -l else 0``. Split constraints enter by Lagrangian
relaxation (β-CROWN, Wang et al. 2021): on the subdomain ``s_j z_j >= 0``, so
for any ``beta_j >= 0``, ``c^T z_L + d <= c^T z_L + d + sum_j beta_j s_j z_j``,
and the right-hand side is bounded by the same back-substitution.

Soundness: every bound that can close anything is evaluated in float64 and
widened by :func:`pad_bound`: the rigorous error term of
:mod:`optprune.verification.rounding` over the magnitude of every term summed,
including the rounding of the back-substituted coefficients themselves
(``|lam| @ |W|`` times the largest ``|h|`` the earlier bounds allow, and the
relaxation's elementwise products times the largest ``|z|``). The ReLU chord's
intercept is raised by its own rounding. The interval pass
(:func:`affine_interval`) is padded by the error of its sums the same way.

Convolutions: a layer whose :class:`~optprune.network.ConvSpec` reproduces its
(unrolled, sparse) weight matrix exactly is kept as its kernel
(:class:`ConvMap`): the products ``W h`` run as ``conv2d`` and the
back-substitution ``lam W`` as ``conv_transpose2d`` (its adjoint), batched over
subdomains and specification rows, instead of dense products with the
unrolled matrix (4096x3072 for the first layer of oval21's ``cifar_wide_kw``).
The padding is unchanged: ``|lam| conv_transpose |W|`` and ``conv2d(h, |K|)``
are the same sums of magnitudes as the dense ``|lam| @ |W|`` and
``h @ |W|^T``, and the error bound of :mod:`optprune.verification.rounding`
holds for any order of summation (float64 convolutions on the CPU are
im2col products, no Winograd-style transforms).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from optprune.network import AffineLayer, Network
from optprune.verification.rounding import UNIT_ROUNDOFF, gamma

__all__ = [
    "DTYPE",
    "DenseMap",
    "ConvMap",
    "as_map",
    "TorchNetwork",
    "SpecBound",
    "affine_interval",
    "spec_bound",
    "pad_bound",
    "default_alpha",
    "intermediate_bounds",
    "layer_bounds",
    "with_linear_output",
    "one_thread",
    "torch_threads",
    "SMOOTH",
    "smooth_relaxation",
    "activation_interval",
    "activation_value",
]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` threads inside (the previous count restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def one_thread():
    """Run torch on one thread inside: these products are small, and on a shared, busy machine one thread is
    far faster than torch's default pool (0.5 s against 12 s for CROWN on mnistfc 256x4 at a load of 6)."""
    return torch_threads(1)


DTYPE = torch.float64


class DenseMap:
    """``x -> W x`` for a dense matrix ``W`` (n_out, n_in), applied to the last axis of a batch."""

    def __init__(self, weight: torch.Tensor) -> None:
        self.weight = weight
        self._abs: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weight.shape[0]), int(self.weight.shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.weight.dtype

    def mv(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ W^T`` (..., n_in) -> (..., n_out)."""
        return x @ self.weight.T

    def rmv(self, lam: torch.Tensor) -> torch.Tensor:
        """``lam @ W`` (..., n_out) -> (..., n_in): the back-substitution step."""
        return lam @ self.weight

    def abs_mv(self, x: torch.Tensor) -> torch.Tensor:
        """``x @ |W|^T`` (magnitudes for the padding and interval radii)."""
        if self.weight.requires_grad:  # live weights (stability loss): no cache, the gradient flows
            return x @ self.weight.abs().T
        if self._abs is None:
            self._abs = self.weight.abs()
        return x @ self._abs.T

    def dense(self) -> torch.Tensor:
        return self.weight

    def to(self, dtype: torch.dtype) -> DenseMap:
        return self if dtype == self.weight.dtype else DenseMap(self.weight.to(dtype))


class ConvMap:
    """``x -> W x`` for the unrolled matrix ``W`` of a 2-D convolution, computed as the convolution (module doc).

    ``kernel`` (C', C, kh, kw); inputs and outputs are flattened (C, H, W) in C order, as
    :mod:`optprune.io._conv` unrolls them. ``rmv`` is ``conv_transpose2d`` with the ``output_padding`` that gives
    back the input's height and width (rows and columns that no output reads get 0). Rows of ``lam`` with one
    nonzero (the ``±e_i`` rows of every neuron's bound, :func:`layer_bounds`) are instead ``lam_i W[i, :]``,
    scattered from the kernel (each entry one exact product, as the dense product gives it): a convolution of
    thousands of one-hot rows costs more than the dense product it replaces.
    """

    def __init__(self, kernel: torch.Tensor, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int],
                 stride: tuple[int, int], padding: tuple[int, int]) -> None:
        self.kernel = kernel
        self.in_shape: tuple[int, int, int] = (int(in_shape[0]), int(in_shape[1]), int(in_shape[2]))
        self.out_shape: tuple[int, int, int] = (int(out_shape[0]), int(out_shape[1]), int(out_shape[2]))
        self.stride: tuple[int, int] = (int(stride[0]), int(stride[1]))
        self.padding: tuple[int, int] = (int(padding[0]), int(padding[1]))
        kh, kw = int(kernel.shape[2]), int(kernel.shape[3])
        self.output_padding = (self.in_shape[1] - ((self.out_shape[1] - 1) * self.stride[0] - 2 * self.padding[0] + kh),
                               self.in_shape[2] - ((self.out_shape[2] - 1) * self.stride[1] - 2 * self.padding[1] + kw))
        self._abs = kernel.abs()
        self._rows: tuple[torch.Tensor, torch.Tensor] | None = None

    def _row_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per output neuron its input columns and weights (n_out, P), padded with column 0 and weight 0."""
        if self._rows is None:
            from optprune.io._conv import conv_to_sparse

            matrix, _ = conv_to_sparse(np.ones(self.kernel.shape), self.in_shape, self.stride, self.padding)
            # The pattern from a kernel of ones; the values from a second unrolling of the kernel itself, in the
            # same (row, column) order.
            values, _ = conv_to_sparse(self.kernel.detach().to(DTYPE).numpy(), self.in_shape, self.stride,
                                       self.padding)
            values = sp.csr_matrix((np.asarray(values[matrix.nonzero()]).reshape(-1), matrix.indices,
                                    matrix.indptr), shape=matrix.shape)
            counts = np.diff(matrix.indptr)
            width = int(counts.max()) if counts.size else 0
            cols = np.zeros((matrix.shape[0], width), dtype=np.int64)
            vals = np.zeros((matrix.shape[0], width))
            pos = np.arange(width)[None, :] < counts[:, None]
            cols[pos], vals[pos] = matrix.indices, values.data
            self._rows = torch.as_tensor(cols), torch.as_tensor(vals, dtype=self.kernel.dtype)
        return self._rows

    @property
    def shape(self) -> tuple[int, int]:
        return int(np.prod(self.out_shape)), int(np.prod(self.in_shape))

    @property
    def dtype(self) -> torch.dtype:
        return self.kernel.dtype

    def _conv(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = F.conv2d(x.reshape(-1, *self.in_shape), kernel, stride=self.stride, padding=self.padding)
        return y.reshape(*lead, self.shape[0])

    def mv(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.kernel)

    def abs_mv(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self._abs)

    def rmv(self, lam: torch.Tensor) -> torch.Tensor:
        lead = lam.shape[:-1]
        if not lam.requires_grad and lam.numel() and bool(((lam != 0).sum(-1) <= 1).all()):
            flat = lam.reshape(-1, lam.shape[-1])
            value, neuron = flat.abs().max(dim=-1)
            value = flat.gather(1, neuron.unsqueeze(1))  # the signed entry (0 for an all-zero row)
            cols, vals = self._row_table()
            out = torch.zeros(flat.shape[0], self.shape[1], dtype=lam.dtype)
            out.scatter_add_(1, cols[neuron], value * vals[neuron])
            return out.reshape(*lead, self.shape[1])
        y = F.conv_transpose2d(lam.reshape(-1, *self.out_shape), self.kernel, stride=self.stride,
                               padding=self.padding, output_padding=self.output_padding)
        return y.reshape(*lead, self.shape[1])

    def dense(self) -> torch.Tensor:
        """The unrolled matrix (n_out, n_in), built on demand (BaB's leaf LPs, callers wanting matrices)."""
        return self.rmv(torch.eye(self.shape[0], dtype=self.kernel.dtype))

    def to(self, dtype: torch.dtype) -> ConvMap:
        if dtype == self.kernel.dtype:
            return self
        return ConvMap(self.kernel.to(dtype), self.in_shape, self.out_shape, self.stride, self.padding)


LinearMap = DenseMap | ConvMap


def as_map(weight: torch.Tensor | LinearMap) -> LinearMap:
    """A :class:`DenseMap` of a matrix; a map is returned as it is."""
    return weight if isinstance(weight, (DenseMap, ConvMap)) else DenseMap(weight)


#: Whether :meth:`TorchNetwork.from_network` keeps convolutions as kernels by default (module doc). Measured on
#: oval21 (one thread, a loaded 2-core machine; results/vnncomp_oval21_profile): building the tensors of
#: cifar_wide_kw 8.0 s -> 0.28 s; on cifar_base_kw BaB's α/β bound step (128 subdomains, float32 with gradient)
#: 0.49 s -> 0.27 s, the root α-CROWN intermediate bounds 42 s -> 18 s, CROWN 3.4 s -> 1.8 s, with the same
#: bounds and unstable counts; networks without convolutions are unaffected.
CONV_DEFAULT = True


def _conv_map(layer) -> ConvMap | None:
    """The layer's :class:`ConvMap` if its ConvSpec unrolls to exactly its weight matrix, else None."""
    spec = layer.conv
    if spec is None:
        return None
    from optprune.io._conv import conv_to_sparse

    try:
        matrix, out_shape = conv_to_sparse(spec.kernel, spec.in_shape, spec.stride, spec.padding)
    except Exception:  # a ConvSpec that no longer fits: the matrix is the truth
        return None
    w = layer.weight if sp.issparse(layer.weight) else sp.csr_matrix(layer.weight)
    if tuple(out_shape) != tuple(spec.out_shape) or w.shape != matrix.shape or (w != matrix).nnz:
        return None
    return ConvMap(torch.as_tensor(np.asarray(spec.kernel, dtype=np.float64)), spec.in_shape, spec.out_shape,
                   spec.stride, spec.padding)


def _content_hash(layer) -> bytes:
    """BLAKE2b digest (256 bits) of a layer's weight (values and, when sparse, pattern), bias and ConvSpec."""
    w = layer.weight
    arrays = [w.data, w.indices, w.indptr] if sp.issparse(w) else [w]
    arrays.append(layer.bias)
    digest = hashlib.blake2b(digest_size=32)
    if layer.conv is not None:
        arrays.append(np.asarray(layer.conv.kernel))
        digest.update(repr((layer.conv.in_shape, layer.conv.out_shape, layer.conv.stride,
                            layer.conv.padding)).encode())
    for arr in arrays:
        digest.update(np.ascontiguousarray(arr).view(np.uint8).reshape(-1).data)  # no copy when contiguous
    return digest.digest()


_TN_CACHE: dict = {}
_TN_CACHE_SIZE = 4


@dataclass(frozen=True)
class TorchNetwork:
    """Float64 linear maps (dense or convolutions), biases and ReLU flags of a :class:`~optprune.network.Network`."""

    maps: tuple[LinearMap, ...]
    biases: tuple[torch.Tensor, ...]
    relu: tuple[bool, ...]

    maps32: tuple[LinearMap, ...] = ()
    biases32: tuple[torch.Tensor, ...] = ()
    act: tuple[str, ...] = ()  # every layer's activation name (relu, identity, sigmoid, tanh)

    @classmethod
    def from_network(cls, net: Network, conv: bool | None = None) -> TorchNetwork:
        """``conv`` (default :data:`CONV_DEFAULT`): keep convolutions whose ConvSpec matches as kernels.

        One verification query builds the tensors of the same network a dozen times (bounds, α-CROWN, BaB,
        each conjunction's solver resolution); the last few are kept, keyed by the layers' contents (a hash of
        their bytes, BLAKE2b, so a weight changed in place is never served stale) and ``conv``.
        """
        conv = CONV_DEFAULT if conv is None else conv
        key = (conv, tuple((layer.activation, layer.weight.shape, _content_hash(layer)) for layer in net.layers))
        hit = _TN_CACHE.pop(key, None)
        if hit is None:
            hit = cls._build(net, conv)
        _TN_CACHE[key] = hit  # most recent last
        while len(_TN_CACHE) > _TN_CACHE_SIZE:
            _TN_CACHE.pop(next(iter(_TN_CACHE)))
        return hit

    @classmethod
    def _build(cls, net: Network, conv: bool) -> TorchNetwork:
        maps: list[LinearMap] = []
        for layer in net.layers:
            cm = _conv_map(layer) if conv else None
            maps.append(cm if cm is not None else DenseMap(torch.as_tensor(layer.dense_weight(), dtype=DTYPE)))
        biases = tuple(torch.as_tensor(layer.bias, dtype=DTYPE) for layer in net.layers)
        return cls(tuple(maps), biases, tuple(layer.activation == "relu" for layer in net.layers),
                   tuple(m.to(torch.float32) for m in maps), tuple(b.float() for b in biases),
                   tuple(layer.activation for layer in net.layers))

    @cached_property
    def weights(self) -> tuple[torch.Tensor, ...]:
        """Dense float64 weight matrices (a convolution's unrolled on first use)."""
        return tuple(m.dense() for m in self.maps)

    def smooth(self, j: int) -> str | None:
        """Layer ``j``'s activation if it is smooth (sigmoid, tanh: :data:`SMOOTH`), else None."""
        kind = self.act[j] if j < len(self.act) else ("relu" if self.relu[j] else "identity")
        return kind if kind in SMOOTH else None

    def params(self, dtype: torch.dtype) -> tuple[tuple[LinearMap, ...], tuple[torch.Tensor, ...]]:
        """Linear maps and biases in ``dtype`` (float32 copies serve the optimiser only, never a closing bound)."""
        if dtype == torch.float32 and self.maps32:
            return self.maps32, self.biases32
        return self.maps, self.biases

    @property
    def n_layers(self) -> int:
        return len(self.maps)

    @property
    def hidden_widths(self) -> list[int]:
        return [m.shape[0] for m in self.maps[:-1]]

    @property
    def chain_length(self) -> int:
        """Operations in sequence in any bound (as :func:`optprune.verification.bounds.chain_length`)."""
        return self.maps[0].shape[1] + sum(m.shape[0] for m in self.maps) + 4 * self.n_layers + 4


@dataclass
class SpecBound:
    """Result of :func:`spec_bound`: ``upper`` (B, m) plus what branching heuristics need.

    ``mu[j]`` (B, m, n_j) is the coefficient of layer ``j``'s output (``relu(z_j)``
    or ``z_j``) met during the back-substitution (BaBSR's score uses it; so does
    :func:`optprune.verification.verdicts.solver_resolution`); ``lam0`` (B, m, n_in) the final
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


#: Smooth activations, bounded by :func:`smooth_relaxation` (no MIP encoding, no split): incomplete verification.
SMOOTH = ("sigmoid", "tanh")
_MAX_SLOPE = {"sigmoid": 0.25, "tanh": 1.0}  # the largest derivative, at z = 0


def activation_value(kind: str, z: torch.Tensor) -> torch.Tensor:
    """``sigmoid(z)`` or ``tanh(z)`` (float64 in a sound bound's use; a few ulps of error, see the padding)."""
    return torch.sigmoid(z) if kind == "sigmoid" else torch.tanh(z)


def _derivative(kind: str, z: torch.Tensor) -> torch.Tensor:
    f = activation_value(kind, z)
    return f * (1.0 - f) if kind == "sigmoid" else 1.0 - f * f


def _stationary(kind: str, slope: torch.Tensor) -> torch.Tensor:
    """The ``z >= 0`` where the activation's derivative equals ``slope`` (``+inf`` for a slope of 0); the
    derivative is even and falls with ``|z|``, so ``-z`` is the only other point with that derivative."""
    a = slope.clamp(min=0.0, max=_MAX_SLOPE[kind])
    if kind == "sigmoid":  # s (1 - s) = a  ->  s = (1 + sqrt(1 - 4 a)) / 2,  z = log(s / (1 - s))
        root = torch.sqrt((1.0 - 4.0 * a).clamp(min=0.0))
        return torch.log1p(root) - torch.log1p(-root)
    return torch.atanh(torch.sqrt((1.0 - a).clamp(min=0.0)))  # 1 - t^2 = a


def smooth_relaxation(kind: str, lower: torch.Tensor, upper: torch.Tensor):
    """Linear bounds ``a_l z + b_l <= act(z) <= a_u z + b_u`` on ``[l, u]`` per neuron: ``(a_l, b_l, a_u, b_u)``.

    Slopes as CROWN's (Zhang et al. 2018, "Efficient Neural Network Robustness Certification with General
    Activation Functions", Sec. 3.3): on a convex piece (``u <= 0``) the chord above and the tangent at the
    midpoint below; on a concave piece (``l >= 0``) the tangent above and the chord below; across 0 the chord's
    slope for both, shifted. Whatever the slope ``a``, the intercept is then made sound directly: the
    extremes of ``act(z) - a z`` on ``[l, u]`` lie at ``l``, ``u`` or where ``act'(z) = a``, that is at
    ``±z*`` (:func:`_stationary`), so ``b_u`` is the largest and ``b_l`` the smallest value there, widened by
    ``1e-12 (1 + |a| max(|l|, |u|))``, far above the few ulps of error of the evaluations (the values lie in
    [-1, 1]; an error in ``z*`` moves ``act(z) - a z`` only to second order, its derivative being 0 there).
    A tangent or chord slope computed with rounding error is still a slope, so the lines are sound in real
    arithmetic on ``[l, u]`` for the float64 slopes they carry.
    """
    mid = (lower + upper) / 2
    width = upper - lower
    narrow = width <= 1e-9 * (1.0 + mid.abs())
    tangent = _derivative(kind, mid)
    chord = torch.where(narrow, tangent, (activation_value(kind, upper) - activation_value(kind, lower))
                        / torch.where(narrow, torch.ones_like(width), width))
    up_slope = torch.where(lower >= 0, tangent, chord)
    lo_slope = torch.where(upper <= 0, tangent, chord)

    def extremes(slope: torch.Tensor) -> torch.Tensor:
        z_star = _stationary(kind, slope)
        cand = torch.stack([lower, upper, torch.minimum(torch.maximum(z_star, lower), upper),
                            torch.minimum(torch.maximum(-z_star, lower), upper)])
        return activation_value(kind, cand) - slope * cand

    span = torch.maximum(lower.abs(), upper.abs())
    up_icpt = extremes(up_slope).max(dim=0).values + 1e-12 * (1.0 + up_slope.abs() * span)
    lo_icpt = extremes(lo_slope).min(dim=0).values - 1e-12 * (1.0 + lo_slope.abs() * span)
    return lo_slope, lo_icpt, up_slope, up_icpt


def activation_interval(kind: str, lower: torch.Tensor, upper: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sound bounds of ``act(z)`` for ``l <= z <= u`` (the activations are monotone), widened by 1e-15."""
    if kind == "relu":
        return lower.clamp(min=0.0), upper.clamp(min=0.0)
    if kind not in SMOOTH:
        return lower, upper
    return activation_value(kind, lower) - 1e-15, activation_value(kind, upper) + 1e-15


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
                      torch.ones_like(uppers[k - 1]) if tn.smooth(k - 1) else  # |sigmoid|, |tanh| <= 1
                      torch.maximum(lowers[k - 1].abs(), uppers[k - 1].abs()))
            spread = b.abs() + weights[k].abs_mv(h_prev)
            mag = mag + (lam.abs() * spread.unsqueeze(1)).sum(-1)
        lam = weights[k].rmv(lam)
        if k == 0:
            break
        j = k - 1
        mus[j] = lam
        kind = tn.smooth(j)
        if kind is not None:  # sigmoid / tanh: the linear bounds of smooth_relaxation, no split, no alpha
            lo_slope, lo_icpt, up_slope, up_icpt = smooth_relaxation(kind, lowers[j], uppers[j])
            pos, neg = lam.clamp(min=0.0), lam.clamp(max=0.0)
            icpt = (pos * up_icpt.unsqueeze(1) + neg * lo_icpt.unsqueeze(1)).sum(-1)
            const = const + icpt
            terms = pos * up_slope.unsqueeze(1) - neg * lo_slope.unsqueeze(1)
            lam = pos * up_slope.unsqueeze(1) + neg * lo_slope.unsqueeze(1)
            if magnitude:
                z_abs = torch.maximum(lowers[j].abs(), uppers[j].abs()).unsqueeze(1)
                icpt_mag = (pos * up_icpt.abs().unsqueeze(1) - neg * lo_icpt.abs().unsqueeze(1)).sum(-1)
                mag = mag + icpt_mag + (terms * z_abs).sum(-1)
            continue
        if not tn.relu[j]:
            continue
        split = None if splits is None else splits[j]
        up_slope, up_icpt, act, unstable = _relaxation(lowers[j], uppers[j], split)
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


def affine_interval(lo: torch.Tensor, hi: torch.Tensor, weight: torch.Tensor | LinearMap, bias: torch.Tensor | None,
                    pad: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Interval of ``W x + b`` over ``lo <= x <= hi`` (batched over rows of ``lo``; differentiable in W, b, lo, hi).

    ``W c + b -/+ |W| r`` with ``c = (lo + hi)/2``, ``r = (hi - lo)/2``. With
    ``pad`` (and float64) the result is widened by ``2 gamma_{2n+6}`` times
    ``|W| max(|lo|, |hi|) + |b|``, which covers the rounding of the sums and of
    ``c`` and ``r`` (the box ``[c - r, c + r]`` may miss ``[lo, hi]`` by a few
    ulps of ``max(|lo|, |hi|)``); the padding carries no gradient. ``weight`` is a matrix or a linear map.
    """
    wmap = as_map(weight)
    centre, radius = (lo + hi) / 2, (hi - lo) / 2
    mid = wmap.mv(centre)
    if bias is not None:
        mid = mid + bias
    rad = wmap.abs_mv(radius)
    lower, upper = mid - rad, mid + rad
    if pad and lower.dtype == torch.float64:
        with torch.no_grad():
            mag = wmap.abs_mv(torch.maximum(lo.abs(), hi.abs()))
            if bias is not None:
                mag = mag + bias.abs()
            widen = 2.0 * gamma(2 * wmap.shape[1] + 6) * mag + 2.0**-1060
            inf = torch.full_like(widen, torch.inf)
        lower = torch.nextafter(lower - widen, -inf)
        upper = torch.nextafter(upper + widen, inf)
    return lower, upper


def _neuron_rows(n: int, idx: torch.Tensor, B: int) -> torch.Tensor:
    """Rows ``[e_idx; -e_idx]`` (B, 2|idx|, n)."""
    eye = torch.zeros(idx.numel(), n, dtype=DTYPE)
    eye[torch.arange(idx.numel()), idx] = 1.0
    return torch.cat([eye, -eye]).unsqueeze(0).expand(B, -1, -1)


def _unstable_rows(lower: torch.Tensor, upper: torch.Tensor, split: torch.Tensor | None, B: int):
    """``(idx, C, d)``: the neurons of a layer unstable and unsplit in some subdomain of a batch of ``B``, with
    their rows ``[e_idx; -e_idx]`` (:func:`_neuron_rows`) and zero offsets, ready for a spec bound."""
    open_ = (lower < 0) & (upper > 0)
    if split is not None:
        open_ &= split == 0
    idx = torch.nonzero(open_.any(0)).flatten()
    C = _neuron_rows(lower.shape[1], idx, B)
    return idx, C, torch.zeros(B, C.shape[1], dtype=DTYPE)


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
            bottom, top = affine_interval(x_lo, x_hi, tn.maps[0], tn.biases[0])
            lowers[0] = torch.maximum(lowers[0], bottom)
            uppers[0] = torch.minimum(uppers[0], top)
            start = 1
        for j in range(start, tn.n_layers - 1):
            idx, C, d = _unstable_rows(lowers[j], uppers[j], None if splits is None else splits[j], B)
            if idx.numel() == 0:
                continue
            sb = spec_bound(tn, x_lo, x_hi, lowers, uppers, splits, C, d, None, None, n_layers=j + 1)
            lowers[j], uppers[j] = _intersect_rows(lowers[j], uppers[j], idx, pad_bound(sb))
    return lowers, uppers


def layer_bounds(tn: TorchNetwork, x_lo: torch.Tensor, x_hi: torch.Tensor,
                 start: list[tuple[torch.Tensor, torch.Tensor]] | None = None
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """CROWN bounds of every layer's pre-activation (rows ``±e_i``), for a batch of boxes.

    Layer 0 is the interval pass (exact up to rounding); layer ``k`` back-
    substitutes ``±e_i`` through the bounds of the layers before it; each
    result is intersected with ``start[k]`` (default: the interval pass) and
    with the interval pass through layer ``k`` from the bounds of layer
    ``k-1`` just computed, and padded outward. Shapes (B, n_k).

    A hidden ReLU neuron that this interval already proves stable (``l >= 0`` or
    ``u <= 0`` in every box of the batch) keeps the interval's bounds: CROWN
    could tighten them, but no relaxation, no later bound and no count of
    unstable neurons would change (a stable ReLU is the identity or zero
    whatever its bounds). On oval21's ``cifar_deep_kw`` about a tenth of the
    2048 neurons of a hidden layer are unstable, so the back-substitution
    runs on a tenth of the rows. The output layer and non-ReLU layers get
    every row.
    """
    B = x_lo.shape[0]
    lo, hi = x_lo, x_hi
    interval: list[tuple[torch.Tensor, torch.Tensor]] = []
    kinds = [tn.act[k] if tn.act else ("relu" if tn.relu[k] else "identity") for k in range(tn.n_layers)]
    if start is None:
        for k in range(tn.n_layers):
            zl, zu = affine_interval(lo, hi, tn.maps[k], tn.biases[k])
            interval.append((zl, zu))
            lo, hi = activation_interval(kinds[k], zl, zu)
    else:
        interval = list(start)
    lowers, uppers = [interval[0][0]], [interval[0][1]]
    with torch.no_grad():
        for k in range(1, tn.n_layers):
            n = tn.maps[k].shape[0]
            h_lo, h_hi = activation_interval(kinds[k - 1], lowers[-1], uppers[-1])
            pl, pu = affine_interval(h_lo, h_hi, tn.maps[k], tn.biases[k])
            il = torch.maximum(pl, interval[k][0])
            iu = torch.maximum(torch.minimum(pu, interval[k][1]), il)
            if tn.relu[k] and k < tn.n_layers - 1:
                idx = torch.nonzero(((il < 0) & (iu > 0)).any(0)).flatten()
            else:
                idx = torch.arange(n)
            if idx.numel() == 0:
                lowers.append(il)
                uppers.append(iu)
                continue
            C = _neuron_rows(n, idx, B)
            d = torch.zeros(B, C.shape[1], dtype=DTYPE)
            # spec_bound back-substitutes from the pre-activation of layer k through the bounds of layers < k.
            ub = pad_bound(spec_bound(tn, x_lo, x_hi, lowers + [il], uppers + [iu], None, C, d, n_layers=k + 1))
            lower, upper = _intersect_rows(il, iu, idx, ub)
            lowers.append(lower)
            uppers.append(torch.maximum(upper, lower))
    return list(zip(lowers, uppers))


def with_linear_output(net: Network, bounds: list | None) -> tuple[Network, list | None]:
    """``net``, followed by an identity layer ``y = h`` when its last layer ends in a ReLU (or sigmoid, tanh).

    The spec bounds act on the last layer's pre-activation (``C z + d``); after a
    final ReLU that would bound ``C z`` instead of ``C relu(z)``, unsound for a
    positive coefficient (``relu(z) >= z``). The appended layer's bounds are the
    ReLU of the last layer's, and the former output ReLUs become splittable.
    """
    kind = net.layers[-1].activation
    if kind == "identity":
        return net, bounds
    n = net.output_size
    ident = AffineLayer(np.eye(n), np.zeros(n), "identity", name="output")
    out = Network((*net.layers, ident), name=net.name, metadata=net.metadata)
    if bounds is not None:
        lo, hi = bounds[-1]
        t_lo, t_hi = activation_interval(kind, torch.as_tensor(np.asarray(lo, dtype=np.float64)),
                                         torch.as_tensor(np.asarray(hi, dtype=np.float64)))
        bounds = [*bounds, (t_lo.numpy().copy(), t_hi.numpy().copy())]
    return out, bounds
