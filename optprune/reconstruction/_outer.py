r"""The exact selection by outer approximation (Bertsimas & Van Parys, "Sparse high-dimensional regression: exact
scalable algorithms and phase transitions", Ann. Statist. 48(1), 2020): a cutting-plane method over the block
indicators ``z`` only, its master MILP solved through the solver protocol (HiGHS by default).

Notation of :mod:`optprune.reconstruction._problem`: ``G`` (n x n), ``C`` (n x m), ``total = ||Y||^2``, ridge
``λ``, ``A = G + λI`` (positive definite), ``k`` of the ``B`` blocks kept, ``z_i = z_b(i)`` for unit ``i``.

**The convex function of z.** Split ``A = M + Γ`` with ``Γ = diag(γ)``, ``γ >= 0`` and ``M = A - Γ`` positive
semidefinite (:func:`perspective_split`). For ``z in [0, 1]^n``

.. math:: f(z) = \min_{W'} \operatorname{tr}(W'^\top M W') - 2 \operatorname{tr}(W'^\top C) + total
                 + \sum_i γ_i \|W'_i\|^2 / z_i

(``||w||^2 / z`` is the perspective of ``||w||^2``, jointly convex in ``(w, z)``, with ``0/0 = 0`` and a row with
``z_i = 0`` forced to 0). ``f`` is convex, a partial minimum of a jointly convex function.

*At binary z it is the package's objective.* With ``z`` the indicator of the kept units ``S``, the rows outside
``S`` are 0 and the rows in ``S`` see ``M_SS + Γ_S = G_SS + λI``, so
``f(z) = min_{W'_S} ||Y - X_S W'_S||^2 + λ||W'_S||^2 = E_λ(S)``, exactly :meth:`ReconstructionProblem.error`
of ``S`` with the problem's ridge (that is the value certified; the split only changes ``f`` between the binary
points). With ``Γ = λI`` this is Bertsimas & Van Parys' ridge-regularised subset selection
``min_{W'} ||XW - XW'||^2 + λ Σ_i ||W'_i||^2 / z_i``; a larger ``Γ`` (Dong, Chen & Linderoth 2015, "Regularization
vs. relaxation: a conic optimization perspective of statistical variable selection") makes the same binary values
with a tighter relaxation and tighter cuts.

*Value and gradient.* Stationarity in ``W'`` gives ``M W' + Γ Z^{-1} W' = C``; with ``V = Γ Z^{-1} W'``,

.. math:: V = (M Z Γ^{-1} + I)^{-1} C, \qquad f(z) = total - \operatorname{tr}(C^\top Z Γ^{-1} V), \qquad
          \partial f / \partial z_i = -γ_i \|W'_i\|^2 / z_i^2 = -\|V_i\|^2 / γ_i

(envelope theorem), defined for every ``z >= 0``. At a binary ``z`` in closed form, with
``W'_S = (G_SS + λI)^{-1} C_S`` the re-fit (one Cholesky factor of size ``|S|``): a kept unit has
``V_i = γ_i W'_i``, a dropped unit ``V_i = C_i - G_iS W'_S = R_i`` (the correlation of its column with the
residual ``Y - X_S W'_S``), so

.. math:: \partial f / \partial z_i = -γ_i \|W'_i\|^2 \ (i \in S), \qquad
          \partial f / \partial z_i = -\|R_i\|^2 / γ_i \ (i \notin S),

and a block's derivative is the sum over its units (``z_units = P z_blocks`` is linear, so ``f`` stays convex in
the block indicators). Every binary point ``z_t`` gives the cut ``θ >= f(z_t) + ∇f(z_t)^T (z - z_t)``, valid on
all of ``[0, 1]^B`` by convexity and tight at ``z_t``.

**The loop** (:func:`solve_outer`):

1. ``Γ`` from :func:`perspective_split`; a start from :func:`~optprune.reconstruction._search.local_search`
   (upper bound ``UB = E(S_0)``);
2. the continuous relaxation ``min f`` over ``{0 <= z <= 1, Σ z_b = k}`` by projected gradient steps: a cut at
   every iterate, and the Frank-Wolfe certificate ``f(z) + Σ_{k smallest} ∇f_b - ∇f^T z`` as a lower bound;
3. repeat: the master MILP (:func:`optprune.formulations.reconstruction.build_outer_master`, every cut so far) goes
   to the backend with the best selection as MIP start; every incumbent the solver reports
   (``SolveOptions.on_incumbent``) and its final point get a cut; ``UB`` = the best ``E`` evaluated, the lower
   bound = the largest of the master's dual bound, the certificate and the closed-form bounds of
   :mod:`optprune.reconstruction._bound` (monotone, spectral); stop when ``UB - LB <= rtol * UB`` or at the time
   limit.

The master solve stops early (``SolveOptions.target``) as soon as it finds a point with ``θ`` below
``UB (1 - rtol/2)``, which has no cut yet (a cut point has ``θ >= f(z_t) >= UB``), or when its bound proves
none exists, which ends the loop: lazy constraints with a restart per cut, through the protocol's stop rule.

``status`` is ``"optimal"`` when the certified gap ``(objective - lower_bound) / objective <= rtol`` (or the
objective is 0), else ``"time_limit"``. The bound is lowered by ``1e-9 * UB_0`` against rounding in the cuts.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time

import numpy as np
from scipy import linalg

from optprune.errors import InvalidParameterError
from optprune.formulations.reconstruction import build_outer_master
from optprune.reconstruction._bound import _project, _spectral
from optprune.reconstruction._problem import ReconstructionProblem, ReconstructionResult
from optprune.reconstruction._search import local_search
from optprune.solvers import SolveOptions, get_backend

__all__ = ["solve_outer", "perspective_split", "PerspectiveOracle", "RTOL"]

RTOL = 1e-6
"""Relative gap at which a selection counts as proven optimal."""

_SAFETY = 1e-9  # relative to the start's objective: taken off every lower bound against rounding in the cuts
_ROOT_STEPS = 40  # projected-gradient steps on the continuous relaxation (one cut each)
_PHASE1_SHARE = 0.15  # of the time left: master solves with the max-trace split before it is refined
_SPLIT_SHARE = 0.4  # of the time left after phase 1: at most this much refining the split


def perspective_split(A: np.ndarray, weights: np.ndarray | None = None, *, start: np.ndarray | None = None,
                      max_newton: int = 200, tol: float = 1e-7) -> np.ndarray:
    r"""``γ >= 0`` with ``A - diag(γ)`` positive semidefinite and ``Σ w_i γ_i / A_ii`` nearly maximal (log barrier).

    On the unit-diagonal ``Â = D^{-1/2} A D^{-1/2}`` (``D = diag(A)``; the split is scale-invariant), with
    ``x = γ / diag(A)`` and weights ``w`` (all ones by default):
    ``max w^T x + μ (log det(Â - diag(x)) + Σ log x_i)`` for ``μ -> 0`` (until the barrier's duality gap
    ``2 n μ`` is below ``tol * w^T x``), Newton steps with backtracking that keep ``Â - diag(x)`` positive definite
    (a Cholesky factor each), started at ``start`` (a feasible split, interior) or ``x = λ_min(Â) / 2``. Every
    iterate is feasible, so stopping early (``max_newton``) only weakens the relaxation. ``γ = 0`` where
    ``A_ii = 0``; all of ``γ = 0`` when ``A`` is singular on the other units. The result is shrunk by
    ``2 |λ_min(A - diag(γ))|`` when rounding left that (slightly) negative.
    """
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[0]
    gamma = np.zeros(n)
    live = np.flatnonzero(np.diag(A) > 0)
    if live.size == 0:
        return gamma
    s = np.sqrt(np.diag(A)[live])
    S0 = A[np.ix_(live, live)] / np.outer(s, s)
    w = np.ones(live.size) if weights is None else np.asarray(weights, dtype=np.float64)[live]
    lmin = float(linalg.eigvalsh(S0, subset_by_index=[0, 0], check_finite=False)[0])
    if lmin <= 1e-12:
        return gamma
    x = np.full(live.size, 0.5 * lmin)
    if start is not None:
        x0 = np.asarray(start, dtype=np.float64)[live] / (s * s)
        if (x0 > 0).all() and _interior(S0, x0):
            x = x0
    mu = 0.1 * float(w @ x) / live.size
    steps = 0

    def barrier(v: np.ndarray) -> float | None:
        if (v <= 0).any():
            return None
        try:
            L = linalg.cholesky(S0 - np.diag(v), lower=True, check_finite=False)
        except linalg.LinAlgError:
            return None
        return float(w @ v + mu * (2.0 * np.sum(np.log(np.diag(L))) + np.sum(np.log(v))))

    while steps < max_newton:
        for _ in range(50):
            steps += 1
            Sinv = np.linalg.inv(S0 - np.diag(x))  # numpy: no LinAlgWarning near the barrier's boundary
            grad = w - mu * np.diag(Sinv) + mu / x
            hess = mu * (Sinv * Sinv) + np.diag(mu / x**2)  # minus the Hessian (positive definite)
            hess[np.diag_indices_from(hess)] += 1e-14 * float(np.trace(hess)) / live.size  # near the boundary
            try:
                step = linalg.cho_solve(linalg.cho_factor(hess, lower=True, check_finite=False), grad,
                                        check_finite=False)
            except linalg.LinAlgError:
                break
            decrement = float(grad @ step)
            current = barrier(x)
            t = 1.0
            while t > 1e-12 and current is not None:
                value = barrier(x + t * step)
                if value is not None and value >= current + 0.25 * t * decrement:
                    break
                t *= 0.5
            if t <= 1e-12 or current is None:
                break
            x = x + t * step
            if decrement < 1e-3 * mu * live.size or steps >= max_newton:
                break
        if 2.0 * live.size * mu < tol * float(w @ x):
            break
        mu *= 0.1
    gamma[live] = x * s * s
    low = float(linalg.eigvalsh(A - np.diag(gamma), subset_by_index=[0, 0], check_finite=False)[0])
    if low < 0:
        gamma = np.maximum(gamma - 2.0 * abs(low), 0.0)
    return gamma


def _interior(S0: np.ndarray, x: np.ndarray) -> bool:
    try:
        linalg.cholesky(S0 - np.diag(x), lower=True, check_finite=False)
    except linalg.LinAlgError:
        return False
    return True


class PerspectiveOracle:
    """``f(z)`` of the module doc and its gradient over the blocks, for a problem and a split ``γ``."""

    def __init__(self, problem: ReconstructionProblem, gamma: np.ndarray) -> None:
        self.problem = problem
        self.gamma = np.asarray(gamma, dtype=np.float64)
        self.M = problem.gram + problem.ridge * np.eye(problem.n_units) - np.diag(self.gamma)
        self._eye = np.eye(problem.n_units)
        self.ids = problem.block_ids
        self.n_blocks = problem.n_blocks
        # a unit with γ_i = 0 (only a dead unit: zero row of G with λ = 0) contributes no gradient
        self._inv_gamma = np.divide(1.0, self.gamma, out=np.zeros_like(self.gamma), where=self.gamma > 0)

    def _blocks(self, per_unit: np.ndarray) -> np.ndarray:
        return np.bincount(self.ids, weights=per_unit, minlength=self.n_blocks)

    def binary(self, keep_blocks: np.ndarray) -> tuple[float, np.ndarray]:
        """``(E(S), ∇f)`` at the indicator of the kept blocks, in closed form (one Cholesky factor of size |S|)."""
        value, kept, residual = self.binary_parts(keep_blocks)
        return value, self.gradient(kept, residual)

    def binary_parts(self, keep_blocks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(E(S), ||W'_i||^2 on S, ||R_i||^2 off S)`` (per unit, 0 elsewhere): what the gradient at a binary point
        is made of, for any split (:meth:`gradient`)."""
        P = self.problem
        keep = np.asarray(keep_blocks, dtype=bool)[self.ids]
        S, T = np.flatnonzero(keep), np.flatnonzero(~keep)
        kept, residual = np.zeros(P.n_units), np.zeros(P.n_units)
        if S.size == 0:
            residual[T] = np.sum(P.cross[T] ** 2, axis=1)
            return max(P.total, 0.0), kept, residual
        L = linalg.cholesky(P.gram[np.ix_(S, S)] + P.ridge * np.eye(S.size), lower=True, check_finite=False)
        Z = linalg.solve_triangular(L, P.cross[S], lower=True, check_finite=False)
        value = max(P.total - float(np.sum(Z * Z)), 0.0)  # as ReconstructionProblem.error computes it
        W = linalg.solve_triangular(L, Z, lower=True, trans="T", check_finite=False)
        R = P.cross[T] - P.gram[np.ix_(T, S)] @ W
        kept[S] = np.sum(W * W, axis=1)
        residual[T] = np.sum(R * R, axis=1)
        return value, kept, residual

    def gradient(self, kept: np.ndarray, residual: np.ndarray, gamma: np.ndarray | None = None) -> np.ndarray:
        """``∇f`` over the blocks at a binary point from :meth:`binary_parts`, for this oracle's split or ``gamma``
        (any valid split: ``-γ_i ||W'_i||^2`` on S, ``-||R_i||^2 / γ_i`` off S)."""
        g = self.gamma if gamma is None else gamma
        inv = self._inv_gamma if gamma is None else np.divide(1.0, g, out=np.zeros_like(g), where=g > 0)
        return self._blocks(-g * kept - residual * inv)

    def fractional(self, z_blocks: np.ndarray) -> tuple[float, np.ndarray]:
        """``(f(z), ∇f)`` at any ``z`` in ``[0, 1]^B`` (one LU solve with ``m`` right-hand sides)."""
        value, grad, _ = self.fractional_with_split(z_blocks)
        return value, grad

    def fractional_with_split(self, z_blocks: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """``(f(z), ∇_z f, ∂f/∂γ)``; ``∂f/∂γ_i = ||W'_i||^2 (1/z_i - 1) = z_i (1 - z_i) ||V_i||^2 / γ_i^2 >= 0``
        (the split's supergradient, :func:`_refine_split`)."""
        P = self.problem
        z = np.asarray(z_blocks, dtype=np.float64)[self.ids]
        scaled = z * self._inv_gamma  # z_i / γ_i
        V = np.linalg.solve(self.M * scaled[None, :] + self._eye, P.cross)  # LU; lighter than scipy's per call
        value = P.total - float(np.sum(P.cross * (scaled[:, None] * V)))
        norms = np.sum(V * V, axis=1)
        return value, self._blocks(-norms * self._inv_gamma), z * (1.0 - z) * norms * self._inv_gamma**2


def _certificate(value: float, z: np.ndarray, grad: np.ndarray, k: int) -> float:
    """The Frank-Wolfe lower bound ``f(z) + min_{z' in P} ∇f^T (z' - z)`` over the capped simplex."""
    return value + float(np.sum(np.sort(grad)[:k])) - float(grad @ z)


def _relax(oracle: PerspectiveOracle, k: int, z: np.ndarray, steps: int, deadline: float,
           cuts: list | None = None) -> tuple[float, np.ndarray, np.ndarray]:
    """Projected gradient (Barzilai-Borwein steps) on ``min f`` over the capped simplex from ``z``: the best
    Frank-Wolfe certificate, the last iterate and the split's supergradient there; ``cuts`` collects every iterate's
    ``(z, f, ∇f)``."""
    value, grad, split_grad = oracle.fractional_with_split(z)
    best = _certificate(value, z, grad, k)
    if cuts is not None:
        cuts.append((z, value, grad))
    step = 1.0 / max(float(np.max(np.abs(grad))), 1e-300)
    for _ in range(steps):
        if time.perf_counter() > deadline or value - best <= 1e-7 * max(abs(value), 1e-300):
            break
        z_new = _project(z - step * grad, k)
        v_new, g_new, sg_new = oracle.fractional_with_split(z_new)
        if cuts is not None:
            cuts.append((z_new, v_new, g_new))
        best = max(best, _certificate(v_new, z_new, g_new, k))
        s, y = z_new - z, g_new - grad
        sy = float(s @ y)
        step = float(s @ s) / sy if sy > 1e-300 else 2.0 * step
        if v_new > value:
            step *= 0.5
        z, value, grad, split_grad = z_new, v_new, g_new, sg_new
    return best, z, split_grad


def _refine_split(problem: ReconstructionProblem, A: np.ndarray, gamma: np.ndarray, k: int, z: np.ndarray,
                  upper: float, deadline: float, info: dict) -> tuple[np.ndarray, float, np.ndarray]:
    r"""A split that raises the relaxation's bound ``L(γ) = min_{z in P} f_γ(z)`` (towards its maximum).

    ``L`` is concave in ``γ`` (for each ``z``, ``f_γ(z)`` is a minimum of functions affine in ``γ``) with the
    supergradient ``∂f_γ/∂γ_i = ||W'_i||^2 (1/z_i - 1)`` at the relaxation's minimiser (Danskin); its maximum over
    ``{γ >= 0, A - diag(γ) PSD}`` is the bound of the Shor SDP relaxation (Dong, Chen & Linderoth 2015).
    Frank-Wolfe steps with a backtracking line search: ``γ_lin`` is the log-barrier maximiser of the linearisation
    (:func:`perspective_split` with those weights) and ``γ <- (1 - η) γ + η γ_lin`` for the first ``η`` in
    ``1/2, 1/4, ..., 1/64`` whose certificate (:func:`_relax`) is higher; every iterate is a valid split. Stops at
    the deadline, when no step improves, or when four steps gained under 1% of the remaining gap. Returns the
    best split, its certificate and the relaxation's point for it.
    """
    diag = np.diag(A)
    certificate, z, split_grad = _relax(PerspectiveOracle(problem, gamma), k, z, 60, deadline)
    history = [certificate]
    while time.perf_counter() < deadline:
        weights = split_grad * diag
        if not np.any(weights > 0):
            break
        linear = perspective_split(A, weights / np.mean(weights) + 1e-3, start=gamma, tol=1e-3, max_newton=100)
        eta, improved = 0.5, None
        while eta >= 1.0 / 64 and time.perf_counter() < deadline:
            trial = (1.0 - eta) * gamma + eta * linear
            result = _relax(PerspectiveOracle(problem, trial), k, z, 60, deadline)
            if result[0] > certificate:
                improved = (trial, *result)
                break
            eta *= 0.5
        if improved is None:
            break
        gamma, certificate, z, split_grad = improved
        history.append(certificate)
        if len(history) > 4 and history[-1] - history[-5] < 0.01 * (upper - history[-1]):
            break
    info["split_steps"] = len(history) - 1
    return gamma, certificate, z


def checked_split(problem: ReconstructionProblem, owner: str) -> tuple[np.ndarray, np.ndarray]:
    """``(G + ridge I, its perspective split)``; an error when the split leaves a live unit without curvature."""
    A = problem.gram + problem.ridge * np.eye(problem.n_units)
    dead = (np.diag(problem.gram) <= 0) & ~np.any(problem.cross != 0, axis=1)
    gamma = perspective_split(A)
    if np.any((gamma <= 0) & ~dead):
        raise InvalidParameterError(
            f"{owner}: G + ridge*I must be positive definite on the live units for the perspective split; "
            f"with ridge = {problem.ridge} it is singular; use ridge > 0 (e.g. ridge='auto')"
        )
    return A, gamma


def certified_result(problem: ReconstructionProblem, best_keep: np.ndarray, lower: float, rtol: float,
                     started: float, method: str, info: dict) -> ReconstructionResult:
    """The exact methods' result: the kept blocks re-fitted, their objective, the certified bound (never above
    the objective) and ``optimal`` only when the relative gap is within ``rtol``."""
    keep = best_keep[problem.block_ids]
    objective = problem.error(keep)
    lower = min(lower, objective)
    status = "optimal" if objective - lower <= rtol * max(objective, 1e-300) or objective <= 0.0 else "time_limit"
    weights = problem.refit(keep)
    return ReconstructionResult(keep, weights, objective, lower, status, time.perf_counter() - started, method,
                                problem.refit_bias(keep, weights), info)


def check_exact_arguments(owner: str, problem: ReconstructionProblem, k_blocks, time_limit: float, rtol: float
                          ) -> int:
    """The exact methods' common checks; returns ``k_blocks`` as an int (named errors for what is out of range)."""
    B = problem.n_blocks
    k = int(k_blocks)
    if k != k_blocks or not 0 <= k <= B:
        raise InvalidParameterError(f"{owner}: k_blocks must be an integer in 0..{B}; got {k_blocks!r}")
    if not (time_limit > 0 and math.isfinite(time_limit)):
        raise InvalidParameterError(f"{owner}: time_limit must be a positive number of seconds; got {time_limit}")
    if not (0 < rtol < 1):
        raise InvalidParameterError(f"{owner}: rtol must be in (0, 1); got {rtol}")
    return k


def solve_outer(problem: ReconstructionProblem, k_blocks: int, solver: str = "highs", time_limit: float = 10.0,
                start=None, *, rtol: float = RTOL, lazy: bool = True, max_rounds: int = 1000) -> ReconstructionResult:
    """Keep ``k_blocks`` blocks by outer approximation, with the certified gap (module doc).

    ``solver``: any backend that solves MILPs (``highs`` by default). ``start``: a mask over units or blocks, or
    block ids, for the local search that makes the first incumbent (at most ``max_rounds`` swaps). ``lazy``: stop
    each master solve at its first point below the incumbent (``False``: solve every master to optimality). The
    dense linear algebra runs on one BLAS thread (threadpoolctl; the matrices are small, and threads only contend).
    """
    started = time.perf_counter()
    k = check_exact_arguments("solve_outer", problem, k_blocks, time_limit, rtol)
    backend = get_backend(solver)
    backend.require()
    if not backend.supports_integer:
        raise InvalidParameterError(f"solve_outer: backend {solver!r} solves no MILP; use 'highs', 'scip' or 'gurobi'")
    with _one_blas_thread():
        return _solve(problem, k, backend, started, started + time_limit, start, rtol, lazy, max_rounds)


def _one_blas_thread() -> contextlib.AbstractContextManager:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _solve(problem: ReconstructionProblem, k: int, backend, started: float, deadline: float, start, rtol: float,
           lazy: bool, max_rounds: int) -> ReconstructionResult:
    B = problem.n_blocks
    heuristic = local_search(problem, k, start, time_limit=max(0.1 * (deadline - started), 0.2), bound=False,
                             max_rounds=max_rounds)
    best_keep = np.zeros(B, dtype=bool)
    best_keep[np.unique(problem.block_ids[heuristic.keep])] = True
    info: dict = {"solver": backend.name, "start_objective": heuristic.objective, "master_solves": 0}
    lower = heuristic.objective
    if 0 < k < B and heuristic.objective > 0:
        A, gamma = checked_split(problem, "solve_outer")
        cuts = _CutPool(problem, k, best_keep, heuristic.objective, rtol)
        monotone = problem.error(np.ones(problem.n_units, dtype=bool))
        spectral = _spectral(problem, k)
        cuts.raise_lower(max(b for b in (monotone, spectral) if np.isfinite(b)))
        info.update(bound_spectral=spectral, bound_monotone=monotone)
        # phase 1: the max-trace split; phase 2 (when phase 1 did not close the gap): the refined split
        z = _project(0.5 * best_keep + 0.5 * k / B, k)
        oracle = PerspectiveOracle(problem, gamma)
        certificate = cuts.root(oracle, z, deadline)
        now = time.perf_counter()
        cuts.run(oracle, backend, min(deadline, now + _PHASE1_SHARE * (deadline - now)), lazy, info)
        if not cuts.done():
            now = time.perf_counter()
            gamma, refined, z = _refine_split(problem, A, gamma, k, z, cuts.upper,
                                              now + _SPLIT_SHARE * (deadline - now), info)
            oracle = PerspectiveOracle(problem, gamma)
            certificate = max(certificate, refined, cuts.root(oracle, z, deadline))
            cuts.run(oracle, backend, deadline, lazy, info)
        info.update(bound_certificate=certificate, cuts=len(cuts.values),
                    split_mean=float(np.mean(gamma / np.maximum(np.diag(A), 1e-300))))
        best_keep, lower = cuts.best_keep, cuts.lower
    return certified_result(problem, best_keep, lower, rtol, started, "outer", info)


def _collect(found: list, n_blocks: int, x: np.ndarray, objective: float, seconds: float) -> None:
    """The master's incumbent callback: keep the block indicators of every improving point."""
    found.append(np.asarray(x[:n_blocks]) > 0.5)


class _CutPool:
    """The cuts so far (valid for every split: each underestimates E at the binary points), the incumbent and the
    lower bound; :meth:`run` is step 3 of the module doc."""

    def __init__(self, problem: ReconstructionProblem, k: int, best_keep: np.ndarray, upper: float,
                 rtol: float) -> None:
        self.problem, self.k, self.rtol = problem, k, rtol
        self.best_keep, self.upper = best_keep.copy(), upper
        self.scale = upper  # θ in the master is divided by the start's objective (> 0)
        self.margin = _SAFETY * upper
        self.lower = -math.inf
        self.points: list[np.ndarray] = []
        self.values: list[float] = []
        self.grads: list[np.ndarray] = []

    def done(self) -> bool:
        return self.upper - self.lower <= self.rtol * max(self.upper, 1e-300)

    def raise_lower(self, bound: float) -> None:
        self.lower = max(self.lower, bound - self.margin)

    def add(self, point: np.ndarray, value: float, grad: np.ndarray) -> None:
        self.points.append(np.asarray(point, dtype=np.float64))
        self.values.append(float(value))
        self.grads.append(grad)

    def root(self, oracle: PerspectiveOracle, z: np.ndarray, deadline: float) -> float:
        """Cuts at the incumbent and along the relaxation's projected gradient from ``z``; its certificate."""
        self.add(self.best_keep, *oracle.binary(self.best_keep))
        found: list = []
        certificate = _relax(oracle, self.k, z, _ROOT_STEPS, deadline, found)[0]
        for point, value, grad in found:
            self.add(point, value, grad)
        self.raise_lower(certificate)
        return certificate

    def run(self, oracle: PerspectiveOracle, backend, deadline: float, lazy: bool, info: dict) -> None:
        """Master solves until the gap closes, the deadline passes or the master returns no new point."""
        B, k = self.problem.n_blocks, self.k
        seen = {self.best_keep.tobytes()}  # the points cut with this oracle
        while not self.done():
            remaining = deadline - time.perf_counter()
            if remaining < 0.02:
                break
            points, values, grads = np.array(self.points), np.array(self.values), np.array(self.grads)
            master = build_outer_master(B, k, points, values, grads, theta_lower=self.lower, scale=self.scale)
            at_best = float(np.max(values + grads @ self.best_keep - np.sum(grads * points, axis=1)))
            found: list[np.ndarray] = []
            target = (self.upper * (1.0 - 0.5 * self.rtol)) / self.scale if lazy else None
            result = backend.solve(master, SolveOptions(
                time_limit=remaining, mip_gap=0.25 * self.rtol, feasibility_tol=1e-9, target=target,
                start=np.concatenate([self.best_keep.astype(np.float64), [max(at_best, self.lower) / self.scale]]),
                on_incumbent=functools.partial(_collect, found, B) if backend.supports_incumbent_callback else None,
            ))
            info["master_solves"] += 1
            if math.isfinite(result.bound):
                self.raise_lower(float(result.bound) * self.scale)
            if result.x is not None:
                found.append(master.group("keep", result.x) > 0.5)
            new = 0
            for keep in found:
                if int(keep.sum()) != k or keep.tobytes() in seen:
                    continue
                seen.add(keep.tobytes())
                value, grad = oracle.binary(keep)
                self.add(keep, value, grad)
                new += 1
                if value < self.upper:
                    self.upper, self.best_keep = value, keep.copy()
            if new == 0:  # no point below the incumbent is left uncut, or the master stopped on its limit
                break
