r"""A valid lower bound on ``min_{|S| = k} E(S)``, cheap at scale: the certified gap of every group.

Notation of :mod:`optprune.reconstruction._problem`: ``G`` (n x n), ``C`` (n x m), ``total = ||Y||^2``, ridge
``λ``, ``A = G + λI``, blocks ``b`` with ``k`` of them kept, ``d`` = the number of units in the ``k`` largest
blocks. :func:`lower_bound` returns the largest of three bounds, each valid for every ``S`` with ``k`` blocks:

1. **Monotonicity.** ``E(S) >= E(all units)``: a superset can re-fit with the extra rows at 0.

2. **Spectral (Eckart-Young).** Ridge regression is least squares on the augmented data
   ``X~ = [X; sqrt(λ) I]``, ``Y~ = [Y; 0]`` (``X~^T X~ = A``, ``X~^T Y~ = C``), so the explained energy
   ``total - E(S) = ||P_S Y~||^2`` with ``P_S`` the projection onto the span of the ``|S| <= d`` columns
   ``X~_S``. Since that span lies in the span of ``X~``, ``P_S Y~ = P_S (P_X Y~)`` and by Ky Fan's maximum
   principle ``||P_S P_X Y~||^2 <= sum of the d largest eigenvalues of (P_X Y~)^T (P_X Y~) = C^T A^{-1} C``.
   Hence ``E(S) >= total - sum_{i <= d} μ_i(C^T A^{-1} C)``: informative when the outputs outnumber the kept
   units (``m > d``).

3. **Perspective relaxation** (Frank-Wolfe certificate). Split ``A = (G - δI) + γI`` with
   ``δ = λ_min(G)`` (so ``G - δI`` is PSD) and ``γ = λ + δ``. For ``z in [0, 1]^n`` let

   .. math:: g(z) = \min_{W'} \operatorname{tr}(W'^\top (G - δI) W') - 2\operatorname{tr}(W'^\top C) + total
                    + γ \sum_i \|W'_i\|^2 / z_i

   (``||w||^2 / z`` is the perspective of ``||w||^2``, jointly convex in ``(w, z)``, with ``0/0 = 0`` and a row
   with ``z_i = 0`` forced to 0). At a binary ``z`` (the indicator of ``S``), ``g(z) = E(S)``; ``g`` is convex (a
   partial minimum of a jointly convex function), so ``min_{|S| = k} E(S) >= min_{z in P} g(z)`` with ``P`` the
   blocks' capped simplex ``{0 <= z_b <= 1, sum_b z_b = k}`` (``z_i = z_b(i)``). With ``D = diag(z)``,
   ``V = ((G - δI) D + γI)^{-1} C`` (defined for every ``z >= 0``):

   ``g(z) = total - tr(C^T D V)``, ``∂g/∂z_i = -γ ||V_i||^2``.

   For any ``z`` in ``P``, convexity gives the Frank-Wolfe lower bound
   ``min_P g >= g(z) + min_{z' in P} ∇g^T (z' - z) = g(z) + (sum of the k smallest block gradients) - ∇g^T z``,
   valid however far ``z`` is from the relaxation's minimiser. ``z`` is improved by projected gradient steps
   (Barzilai-Borwein step sizes) and the best certificate is kept. This is the relaxation of the MIQP's
   perspective formulation (Atamtürk & Gómez 2020; Bertsimas & Van Parys 2020, "Sparse high-dimensional
   regression: exact scalable algorithms"); at ``δ = 0`` and ``λ = 0`` it is void (``γ = 0``).

The bound is lowered by ``1e-9 * total`` against rounding in the linear solves. Cost: one ``n x n`` eigen-
decomposition and Cholesky factor, and one LU solve with ``m`` right-hand sides per projected-gradient step
(at most ``iterations``, stopping once the certificate is within ``1e-7 * total`` of ``g``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from optprune.reconstruction._problem import ReconstructionProblem

__all__ = ["lower_bound", "bound_details", "cheap_lower_bound", "BoundDetails"]

_SAFETY = 1e-9  # relative to total: rounding margin taken off every bound
_CONVERGED = 1e-7  # relative to total: stop the projected gradient when g(z) - certificate is below this


@dataclass(frozen=True)
class BoundDetails:
    """Each bound of the module doc (``nan`` where not computed), the best of them and the seconds taken."""

    value: float
    monotone: float
    spectral: float
    perspective: float
    iterations: int
    seconds: float


def lower_bound(problem: ReconstructionProblem, k_blocks: int, *, iterations: int = 100,
                time_limit: float | None = None) -> float:
    """The best valid lower bound on ``min E(S)`` over the ways of keeping ``k_blocks`` blocks (module doc)."""
    return bound_details(problem, k_blocks, iterations=iterations, time_limit=time_limit).value


def bound_details(problem: ReconstructionProblem, k_blocks: int, *, iterations: int = 100,
                  time_limit: float | None = None, start: np.ndarray | None = None) -> BoundDetails:
    """:func:`lower_bound` with each bound reported; ``start``: a mask over blocks to start the relaxation at."""
    started = time.perf_counter()
    n, B = problem.n_units, problem.n_blocks
    k = int(k_blocks)
    if not 0 <= k <= B:
        from optprune.errors import InvalidParameterError

        raise InvalidParameterError(f"lower_bound: k_blocks must be in 0..{B}; got {k_blocks}")
    total = float(problem.total)
    if k == B:
        value = problem.error(np.ones(n, dtype=bool))
        return BoundDetails(value, value, np.nan, np.nan, 0, time.perf_counter() - started)
    if k == 0 or n == 0:
        return BoundDetails(total, total, np.nan, np.nan, 0, time.perf_counter() - started)
    margin = _SAFETY * max(total, 0.0)
    monotone = problem.error(np.ones(n, dtype=bool))
    spectral = _spectral(problem, k)
    others = max(b for b in (monotone, spectral) if np.isfinite(b))
    perspective, steps = _perspective(problem, k, iterations, time_limit, started, start, others)
    candidates = [b for b in (monotone, spectral, perspective) if np.isfinite(b)]
    value = max(0.0, max(candidates) - margin)
    return BoundDetails(value, monotone, spectral, perspective, steps, time.perf_counter() - started)


def cheap_lower_bound(problem: ReconstructionProblem, k_blocks: int, *, full_error: float | None = None,
                      explained: np.ndarray | None = None) -> float:
    """Bounds 1 and 2 of the module doc only (no perspective steps), lowered by the same margin: what a caller
    that already holds ``full_error`` (E with every block kept) and ``explained`` (the eigenvalues of
    ``C^T A^{-1} C``, any order, e.g. from the inverse its greedy elimination starts from) gets for one
    ``eigvalsh`` or nothing. Either may be None (then computed here)."""
    n, B, k = problem.n_units, problem.n_blocks, int(k_blocks)
    total = float(problem.total)
    if k >= B:
        return problem.error(np.ones(n, dtype=bool)) if full_error is None else float(full_error)
    if k <= 0 or n == 0:
        return total
    monotone = problem.error(np.ones(n, dtype=bool)) if full_error is None else float(full_error)
    d = _largest_blocks_units(problem, k)
    if d >= min(n, problem.n_outputs):
        spectral = np.nan
    elif explained is None:
        spectral = _spectral(problem, k)
    else:
        spectral = float(total - np.sum(np.sort(np.clip(explained, 0.0, None))[::-1][:d]))
    best = max(b for b in (monotone, spectral) if np.isfinite(b))
    return max(0.0, best - _SAFETY * max(total, 0.0))


def _largest_blocks_units(problem: ReconstructionProblem, k: int) -> int:
    sizes = np.bincount(problem.block_ids, minlength=problem.n_blocks)
    return int(np.sort(sizes)[::-1][:k].sum())


def _spectral(problem: ReconstructionProblem, k: int) -> float:
    """``total - sum of the d largest eigenvalues of C^T A^{-1} C`` (bound 2); nan when ``A`` is singular."""
    d = _largest_blocks_units(problem, k)
    n, m = problem.n_units, problem.n_outputs
    if d >= min(n, m):
        return np.nan  # the top-d sum is the whole trace: no better than the monotone bound
    A = problem.gram + problem.ridge * np.eye(n)
    try:
        L = linalg.cholesky(A, lower=True, check_finite=False)
    except linalg.LinAlgError:
        return np.nan
    Z = linalg.solve_triangular(L, problem.cross, lower=True, check_finite=False)  # C^T A^{-1} C = Z^T Z
    small = Z.T @ Z if m <= n else Z @ Z.T  # the squared singular values of Z, from the smaller Gram
    eig = linalg.eigvalsh(small, check_finite=False)
    return float(problem.total - np.sum(np.clip(eig, 0.0, None)[::-1][:d]))


def _project_box(y: np.ndarray, k: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{lo <= z <= hi, Σ z = k}``: ``clip(y - τ, lo, hi)`` with ``τ`` where the
    nonincreasing, piecewise-linear ``Σ clip(y - τ, lo, hi)`` meets ``k`` (between two of its kinks ``y - hi``,
    ``y - lo``, all evaluated at once; bisection on ``τ`` above 256 blocks). Certificates stay valid at any ``z`` in
    ``[0, 1]^B``, so rounding here only costs accuracy."""
    if y.size > 256:
        a, b = float(np.min(y - hi)) - 1.0, float(np.max(y - lo)) + 1.0
        for _ in range(60):
            mid = 0.5 * (a + b)
            a, b = (mid, b) if np.clip(y - mid, lo, hi).sum() > k else (a, mid)
        return np.clip(y - 0.5 * (a + b), lo, hi)
    kinks = np.sort(np.concatenate([y - hi, y - lo]))
    sums = np.clip(y[None, :] - kinks[:, None], lo, hi).sum(axis=1)
    j = int(np.argmax(sums <= k))  # the first kink at or below k (sums[-1] = Σ lo <= k)
    if j == 0 or sums[j - 1] == sums[j]:
        tau = float(kinks[j])
    else:
        tau = float(kinks[j - 1] + (sums[j - 1] - k) / (sums[j - 1] - sums[j]) * (kinks[j] - kinks[j - 1]))
    return np.clip(y - tau, lo, hi)


def _project(y: np.ndarray, k: float) -> np.ndarray:
    """Euclidean projection of ``y`` onto ``{0 <= z <= 1, sum z = k}``."""
    return _project_box(y, k, np.zeros(y.size), np.ones(y.size))


def _perspective(problem: ReconstructionProblem, k: int, iterations: int, time_limit: float | None,
                 started: float, start: np.ndarray | None, others: float = -np.inf) -> tuple[float, int]:
    """The best Frank-Wolfe certificate of the perspective relaxation (bound 3) and the steps taken.

    Every certificate is at most ``min_P g <= g(z)`` at any evaluated ``z``: once ``g(z)`` is at or below
    ``others`` (the best of the other bounds) the relaxation cannot improve on them and the steps stop there."""
    G, C, total = problem.gram, problem.cross, float(problem.total)
    n, B = problem.n_units, problem.n_blocks
    eig = linalg.eigvalsh(G, check_finite=False)
    delta = max(0.0, float(eig[0]) - 1e-12 * n * max(float(eig[-1]), 0.0))
    gamma = problem.ridge + delta
    if gamma <= 1e-14 * max(float(eig[-1]), 1e-300):
        return np.nan, 0
    M = G - delta * np.eye(n)
    ids = problem.block_ids

    def evaluate(zb: np.ndarray) -> tuple[float, np.ndarray]:
        z = zb[ids]
        V = linalg.solve(M * z[None, :] + gamma * np.eye(n), C, check_finite=False)
        g = total - float(np.sum(C * (z[:, None] * V)))
        grad_units = -gamma * np.sum(V * V, axis=1)
        return g, np.bincount(ids, weights=grad_units, minlength=B)

    def certificate(g: float, zb: np.ndarray, grad: np.ndarray) -> float:
        return g + float(np.sum(np.sort(grad)[:k])) - float(grad @ zb)

    if start is not None:
        zb = np.asarray(start, dtype=np.float64).reshape(-1)
        zb = _project(0.5 * zb + 0.5 * k / B, k)
    else:
        zb = np.full(B, k / B)
    g, grad = evaluate(zb)
    best = certificate(g, zb, grad)
    step = 1.0 / max(float(np.max(np.abs(grad))), 1e-300)
    steps = 0
    ceiling = g  # the smallest g(z) seen: no certificate exceeds it
    while steps < iterations:
        if g - best <= _CONVERGED * total or ceiling <= others:
            break
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break
        steps += 1
        z_new = _project(zb - step * grad, k)
        g_new, grad_new = evaluate(z_new)
        best = max(best, certificate(g_new, z_new, grad_new))
        ceiling = min(ceiling, g_new)
        s, y = z_new - zb, grad_new - grad
        sy = float(s @ y)
        step = float(s @ s) / sy if sy > 1e-300 else 2.0 * step  # Barzilai-Borwein (g convex: s.y >= 0)
        if g_new > g:  # no monotone descent needed for the certificate, but do not wander off
            step *= 0.5
        zb, g, grad = z_new, g_new, grad_new
    return best, steps
