"""Unrolling a 2-D convolution into a sparse affine map (torch-free, vectorised).

For an input ``x`` of shape (C, H, W) flattened in C order, a convolution with
kernel ``K`` (C', C, kh, kw), stride (sh, sw) and zero padding (ph, pw) gives

    y[o, i, j] = b[o] + sum_{c, p, q} K[o, c, p, q] * x[c, i*sh - ph + p, j*sw - pw + q]

where terms whose input position falls in the padding are dropped. Output
position ``(o, i, j)`` is row ``o*H'*W' + i*W' + j`` of a CSR matrix ``A`` and
input position ``(c, r, s)`` is column ``c*H*W + r*W + s``, so ``y = A x + b``
with ``H' = floor((H + 2 ph - kh) / sh) + 1`` (likewise ``W'``). The index
arrays are built once by broadcasting (an im2col index computation), never one
Python call per coefficient.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optprune.errors import ShapeMismatchError
from optprune.network import AffineLayer, ConvSpec

__all__ = ["conv_output_shape", "conv_to_sparse", "conv_spec_matrix", "conv_spec_matches"]


def conv_output_shape(
    in_shape: tuple[int, int, int], kernel_shape: tuple[int, int, int, int], stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[int, int, int]:
    """(C', H', W') of a convolution; raises :class:`ShapeMismatchError` on channel or size mismatch."""
    c, h, w = in_shape
    co, ci, kh, kw = kernel_shape
    if ci != c:
        raise ShapeMismatchError(f"convolution kernel takes {ci} input channels, input has shape {in_shape}")
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    if ho < 1 or wo < 1:
        raise ShapeMismatchError(
            f"convolution with kernel {kh}x{kw}, stride {stride}, padding {padding} does not fit input {in_shape}"
        )
    return co, int(ho), int(wo)


def conv_to_sparse(
    kernel: np.ndarray, in_shape: tuple[int, int, int], stride: tuple[int, int] = (1, 1),
    padding: tuple[int, int] = (0, 0),
) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """The CSR matrix ``A`` of the module docstring and the output shape (C', H', W')."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 4:
        raise ShapeMismatchError(f"convolution kernel must be 4-D (C', C, kh, kw), got shape {kernel.shape}")
    in_shape = tuple(int(v) for v in in_shape)
    co, ho, wo = conv_output_shape(in_shape, kernel.shape, stride, padding)
    c, h, w = in_shape
    _, _, kh, kw = kernel.shape
    # Broadcast axes: (o, i, j, c, p, q).
    o = np.arange(co).reshape(-1, 1, 1, 1, 1, 1)
    i = np.arange(ho).reshape(1, -1, 1, 1, 1, 1)
    j = np.arange(wo).reshape(1, 1, -1, 1, 1, 1)
    ch = np.arange(c).reshape(1, 1, 1, -1, 1, 1)
    p = np.arange(kh).reshape(1, 1, 1, 1, -1, 1)
    q = np.arange(kw).reshape(1, 1, 1, 1, 1, -1)
    r = i * stride[0] - padding[0] + p
    s = j * stride[1] - padding[1] + q
    full = (co, ho, wo, c, kh, kw)
    valid = np.broadcast_to((r >= 0) & (r < h) & (s >= 0) & (s < w), full)
    rows = np.broadcast_to(o * (ho * wo) + i * wo + j, full)[valid]
    cols = np.broadcast_to(ch * (h * w) + r * w + s, full)[valid]
    vals = np.broadcast_to(kernel[:, None, None, :, :, :], full)[valid]
    matrix = sp.csr_matrix((vals, (rows, cols)), shape=(co * ho * wo, c * h * w))
    matrix.sum_duplicates()
    return matrix, (co, ho, wo)


def conv_spec_matrix(spec: ConvSpec) -> tuple[sp.csr_matrix, np.ndarray]:
    """``(A, b)`` of the affine map a :class:`ConvSpec` describes (bias repeated over positions)."""
    matrix, out_shape = conv_to_sparse(spec.kernel, spec.in_shape, spec.stride, spec.padding)
    if tuple(out_shape) != tuple(spec.out_shape):
        raise ShapeMismatchError(f"ConvSpec out_shape {spec.out_shape} does not match the geometry ({out_shape})")
    bias = np.repeat(np.asarray(spec.bias, dtype=np.float64), out_shape[1] * out_shape[2])
    return matrix, bias


def conv_spec_matches(layer: AffineLayer, tol: float = 1e-9) -> bool:
    """Whether ``layer.conv`` still describes ``layer.weight`` and ``layer.bias`` (relative tolerance ``tol``)."""
    if layer.conv is None:
        return False
    matrix, bias = conv_spec_matrix(layer.conv)
    w = layer.weight if sp.issparse(layer.weight) else sp.csr_matrix(layer.weight)
    if w.shape != matrix.shape:
        return False
    scale = max(1.0, float(abs(matrix).max()) if matrix.nnz else 1.0)
    diff = abs(w - matrix)
    worst = float(diff.max()) if diff.nnz else 0.0
    return worst <= tol * scale and bool(np.allclose(bias, layer.bias, rtol=0.0, atol=tol * scale))
