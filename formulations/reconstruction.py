r"""The MIQP of reconstruction-optimal structured pruning: which ``k`` blocks of units to keep (solver-neutral).

For a group of ``n`` units with Gram matrix ``G = X^T X`` (n x n), cross term ``C = X^T Y`` (n x m; ``C = G W``
for the target ``Y = X W``), ``total = ||Y||_F^2``, ridge ``λ >= 0`` and a block id per unit (units kept or
removed together), keeping the blocks ``S`` costs
``E(S) = min_{W'} ||Y - X_S W'||^2 + λ ||W'||^2`` (Meng et al., "OSSCAR", ICML 2024, eq. 3). As one MIQP
(:func:`build_reconstruction_miqp`), with ``z_b`` binary (block ``b`` kept) and ``W'`` continuous::

    min   tr(W'^T (G + λI) W') - 2 tr(W'^T C) + total          (= ||Y - X W'||^2 + λ ||W'||^2)
    s.t.  -M_ij z_b(i) <= W'_ij <= M_ij z_b(i)                  (a dropped unit's row of W' is 0)
          sum_b z_b = k,   z in {0, 1}^B.

In the vector ``x = (vec(W'), z)`` (``vec`` stacks the ``m`` columns of W') the objective is
``1/2 x^T Q x + c^T x + total`` with ``Q = 2 kron(I_m, G + λI)`` (a block diagonal, built by one sparse Kronecker
product), ``c = -2 vec(C)``.

Big-M (valid, per entry). Let ``A = G + λI`` be positive definite. For a kept set ``S`` containing unit ``i``, the
optimal re-fit of output ``j`` is ``w = A_SS^{-1} c_S`` (``c = C[:, j]``), and by Cauchy-Schwarz in the inner
product of ``A_SS^{-1}``:

    |w_i| = |e_i^T A_SS^{-1} c_S| <= sqrt([A_SS^{-1}]_ii) * sqrt(c_S^T A_SS^{-1} c_S)
          <= sqrt([A^{-1}]_ii) * sqrt(c^T A^{-1} c) =: M_ij.

Both factors only grow with ``S``: ``1 / [A_SS^{-1}]_ii`` is the Schur complement of ``A_ii`` in ``A_SS``, which
shrinks as units are added, and ``c_S^T A_SS^{-1} c_S = max_{w supported on S} 2 w^T c - w^T A w`` grows with the
support. So every optimal ``W'`` satisfies the rows above with ``M_ij`` from the full set, whatever ``S`` is: the
MIQP's optimum is ``min_{|S| = k} E(S)`` exactly. With ``λ = 0`` and a singular ``G`` no such bound exists (a
dependent unit's re-fit is not unique); :func:`big_m` then raises, asking for ``ridge > 0``.

Fewer outputs. ``E(S) = total - tr(A_SS^{-1} C_S C_S^T)`` depends on ``C`` only through ``C C^T``, so any
``C~`` (n x r) with ``C~ C~^T = C C^T`` gives the same ``E`` for every ``S``; :func:`compress_cross` returns
``U_r Σ_r`` from the SVD ``C = U Σ V^T`` (``r = rank C <= min(n, m)``), which shrinks the MIQP when ``m > n``.
The continuous part of a solution is then ``W' V_r`` (rotated outputs); the kept blocks are what a caller reads
(group ``"keep"``) and re-fits exactly.

Perspective formulation. Its rows ``s_i z_i >= ||W'_i||^2`` are quadratic constraints, which the solver protocol
does not carry (only the objective is quadratic), so the MIQP uses the big-M rows; the perspective relaxation's
bound is computed in closed form by :func:`optprune.reconstruction.lower_bound`.

Formulations never solve: the model goes to a backend with ``supports_miqp`` (SCIP, Gurobi, cvxpy with a MIQP
solver); its continuous relaxation (``model.relaxed()``) is a convex QP that HiGHS solves.

Outer approximation. :func:`build_outer_master` is the master MILP of Bertsimas & Van Parys' cutting-plane
method (Ann. Statist. 2020) over the block indicators only: for a convex ``f`` on ``[0, 1]^B`` with cuts
``(z_t, f_t, g_t)`` (a point, ``f(z_t)`` and a (sub)gradient there)::

    min   θ
    s.t.  θ >= (f_t + g_t^T (z - z_t)) / scale      for every cut t
          sum_b z_b = k,   z in {0, 1}^B,   θ >= θ_lower / scale,

whose optimum is a lower bound on ``min f`` over the binary points with ``k`` ones (each cut underestimates
``f``). :mod:`optprune.reconstruction._outer` supplies ``f`` (the ridge-perspective reconstruction error).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy import linalg

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations._builder import ModelBuilder
from optprune.milp import MILP

__all__ = ["build_reconstruction_miqp", "build_outer_master", "big_m", "compress_cross", "block_index"]

_M_SLACK = 1e-7  # relative widening of every M_ij against rounding in A^{-1}


def block_index(blocks, n: int) -> tuple[np.ndarray, int]:
    """Block number ``0..B-1`` of every unit (sorted ids; ``None`` = one block per unit) and ``B``."""
    if blocks is None:
        return np.arange(n, dtype=np.int64), n
    ids = np.asarray(blocks).reshape(-1)
    if ids.size != n:
        raise ShapeMismatchError(f"blocks has {ids.size} entries; expected one block id per unit ({n})")
    uniq, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.int64), int(uniq.size)


def compress_cross(cross: np.ndarray) -> np.ndarray:
    """``C~ = U_r Σ_r`` (n x r, ``r`` the numerical rank) with ``C~ C~^T = C C^T`` (module doc: fewer outputs)."""
    C = np.asarray(cross, dtype=np.float64)
    if C.ndim == 1:
        C = C[:, None]
    if C.shape[1] <= C.shape[0] or C.size == 0:
        return C
    U, s, _ = linalg.svd(C, full_matrices=False, check_finite=False)
    r = int(np.sum(s > s[0] * max(C.shape) * np.finfo(float).eps)) if s.size and s[0] > 0 else 0
    return U[:, :r] * s[:r]


def big_m(gram: np.ndarray, cross: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """``M_ij = sqrt([A^{-1}]_ii * c_j^T A^{-1} c_j)``, ``A = G + λI`` (n x m; the bound of the module doc).

    Raises :class:`InvalidParameterError` when ``A`` is not positive definite (``ridge = 0`` with dependent or
    dead units): no finite bound holds then.
    """
    G = np.asarray(gram, dtype=np.float64)
    C = np.asarray(cross, dtype=np.float64)
    A = G + float(ridge) * np.eye(G.shape[0])
    try:
        factor = linalg.cho_factor(A, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise InvalidParameterError(
            f"the reconstruction MIQP needs G + ridge*I positive definite for its big-M bounds; with ridge = {ridge} "
            "it is singular (dead or linearly dependent units); use ridge > 0 (e.g. ridge='auto', 1e-6 of the mean "
            "diagonal of G)"
        ) from None
    L = factor[0]
    Linv = linalg.solve_triangular(L, np.eye(G.shape[0]), lower=True, check_finite=False)
    inv_diag = np.sum(Linv * Linv, axis=0)  # diag(A^{-1}) = column norms of L^{-1}
    Z = linalg.solve_triangular(L, C, lower=True, check_finite=False)
    explained = np.sum(Z * Z, axis=0)  # c_j^T A^{-1} c_j
    return np.sqrt(np.outer(inv_diag, explained)) * (1.0 + _M_SLACK)


def build_reconstruction_miqp(
    gram: np.ndarray, cross: np.ndarray, total: float, k: int, *, ridge: float = 0.0, blocks=None,
    M: np.ndarray | None = None, name: str = "reconstruction",
) -> MILP:
    """The MIQP of the module doc: keep exactly ``k`` blocks; groups ``"keep"`` (z, one per block) and ``"weights"``.

    ``"weights"`` holds ``vec(W')`` (column-major: entry ``(i, j)`` at position ``j * n + i``). ``M`` overrides
    the big-M bounds of :func:`big_m` (n x m). ``cross`` may be compressed first (:func:`compress_cross`).
    """
    G = np.asarray(gram, dtype=np.float64)
    C = np.asarray(cross, dtype=np.float64)
    if C.ndim == 1:
        C = C[:, None]
    n, m = C.shape
    if G.shape != (n, n):
        raise ShapeMismatchError(f"gram has shape {G.shape}; cross has {n} rows, so gram must be ({n}, {n})")
    unit_block, B = block_index(blocks, n)
    if not 0 <= int(k) <= B:
        raise InvalidParameterError(f"k (blocks kept) must be in 0..{B}; got {k}")
    M = big_m(G, C, ridge) if M is None else np.asarray(M, dtype=np.float64)
    if M.shape != (n, m):
        raise ShapeMismatchError(f"M has shape {M.shape}; expected ({n}, {m})")

    b = ModelBuilder()
    bound = M.reshape(-1, order="F")
    w = b.add_vars(n * m, lower=-bound, upper=bound, name="weights")
    z = b.add_vars(B, lower=0.0, upper=1.0, integer=True, name="keep")
    # W'_ij - M_ij z_b(i) <= 0 and -W'_ij - M_ij z_b(i) <= 0: two rows per entry, two nonzeros each
    rows = np.arange(n * m)
    zcol = np.asarray(z)[np.tile(unit_block, m)]
    live = bound > 0  # an entry bounded by 0 is fixed by its column bounds already
    r, wl, zl, ml = rows[live], np.asarray(w)[live], zcol[live], bound[live]
    count = r.size
    local = np.arange(count)
    b.add_coo_rows(np.concatenate([local, local, local + count, local + count]),
                   np.concatenate([wl, zl, wl, zl]),
                   np.concatenate([np.ones(count), -ml, -np.ones(count), -ml]),
                   np.full(2 * count, -np.inf), np.zeros(2 * count))
    b.add_rows(np.ones((1, B)), z, lower=float(k), upper=float(k))
    A = G + float(ridge) * np.eye(n)
    b.set_objective(np.concatenate([-2.0 * C.reshape(-1, order="F"), np.zeros(B)]), np.concatenate([w, z]),
                    offset=float(total))
    b.set_quadratic_objective(sp.kron(sp.eye(m, format="csr"), sp.csr_matrix(2.0 * A), format="csr"), w)
    return b.build(name=name)


def build_outer_master(
    n_blocks: int, k: int, points: np.ndarray, values: np.ndarray, gradients: np.ndarray, *,
    theta_lower: float = 0.0, scale: float = 1.0, name: str = "reconstruction_master",
) -> MILP:
    """The outer-approximation master MILP of the module doc; groups ``"keep"`` (z, B binaries) and ``"theta"``.

    ``points`` (T x B), ``values`` (T), ``gradients`` (T x B): the cuts, all rows added in one call. ``θ`` is
    stored divided by ``scale`` (> 0) so that the solver's tolerances act relative to it; the objective is the
    scaled ``θ`` (multiply a solver's objective and bound by ``scale``).
    """
    B, k = int(n_blocks), int(k)
    if not 0 <= k <= B:
        raise InvalidParameterError(f"k (blocks kept) must be in 0..{B}; got {k}")
    if not (np.isfinite(scale) and scale > 0):
        raise InvalidParameterError(f"scale must be a finite number > 0; got {scale}")
    Z = np.atleast_2d(np.asarray(points, dtype=np.float64))
    f = np.atleast_1d(np.asarray(values, dtype=np.float64))
    g = np.atleast_2d(np.asarray(gradients, dtype=np.float64))
    if Z.shape != g.shape or Z.shape[1] != B or f.shape != (Z.shape[0],):
        raise ShapeMismatchError(
            f"cuts need points and gradients of shape (T, {B}) and values of shape (T,); got {Z.shape}, "
            f"{g.shape} and {f.shape}"
        )
    b = ModelBuilder()
    z = b.add_vars(B, lower=0.0, upper=1.0, integer=True, name="keep")
    theta = b.add_vars(1, lower=float(theta_lower) / scale, upper=np.inf, name="theta")
    b.add_rows(np.ones((1, B)), z, lower=float(k), upper=float(k))
    if f.size:  # θ - g_t^T z / scale >= (f_t - g_t^T z_t) / scale
        rhs = (f - np.sum(g * Z, axis=1)) / scale
        b.add_rows(np.hstack([-g / scale, np.ones((f.size, 1))]), np.concatenate([z, theta]), lower=rhs)
    b.set_objective(np.ones(1), theta)
    return b.build(name=name)
