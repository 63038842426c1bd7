r"""The exact selection by branch and bound on the perspective relaxation (method ``"exact"``).

Same convex ``f`` as :mod:`optprune.reconstruction._outer` (the ridge-perspective error with a split
``A = M + diag(γ)``, equal to ``E_λ(S)`` = :meth:`ReconstructionProblem.error` at every binary ``z``), but the
relaxation is re-solved at every node instead of being approximated by cuts: the approach of Hazimeh, Mazumder &
Saab, "Sparse regression at scale: branch-and-bound rooted in first-order optimization" (Math. Program. 2022), for
the cardinality-constrained ridge problem of Bertsimas & Van Parys (Ann. Statist. 2020).

* A node fixes some blocks in (``lo_b = 1``) and some out (``hi_b = 0``); its relaxation is
  ``min f(z)`` over ``P_node = {lo <= z <= hi, Σ_b z_b = k}``, solved by projected gradient (Barzilai-Borwein steps,
  warm-started at the parent's point). Its bound is the Frank-Wolfe certificate
  ``f(z) + min_{z' in P_node} ∇f^T (z' - z) = f(z) + Σ_{b fixed in} ∇f_b + (the k - |in| smallest free ∇f_b)
  - ∇f^T z``, valid at any ``z`` in ``P_node`` by convexity, whatever the accuracy of the projected gradient.
  Every binary completion of the node lies in ``P_node``, where ``f = E``; so a node whose bound reaches the
  incumbent holds no better selection.
* Best-first: the node with the lowest bound is expanded, on the free block whose relaxed ``z_b`` is nearest 1/2;
  a child with ``k`` blocks in (or all free blocks needed) is a leaf, evaluated exactly. Every node's relaxed point
  rounded to the ``k`` largest (fixings kept) is evaluated too (a new incumbent when better).
* Before the search: the incumbent from :func:`~optprune.reconstruction._search.local_search`, the max-trace split
  :func:`~optprune.reconstruction._outer.perspective_split` refined towards the SDP bound
  (:func:`~optprune.reconstruction._outer._refine_split`, at most 30% of the time left).

The lower bound is the smallest bound of the open nodes (the incumbent when none is left), lowered by
``1e-9 * E(start)`` against rounding; ``status`` is ``"optimal"`` when ``(objective - lower_bound) / objective <=
rtol`` or the objective is 0, else ``"time_limit"``. NumPy/SciPy only (no solver), on one BLAS thread.
"""

from __future__ import annotations

import heapq
import math
import time

import numpy as np
from scipy import linalg

from optprune.reconstruction._bound import _project_box
from optprune.reconstruction._outer import (
    RTOL,
    PerspectiveOracle,
    _one_blas_thread,
    _refine_split,
    certified_result,
    check_exact_arguments,
    checked_split,
)
from optprune.reconstruction._problem import ReconstructionProblem, ReconstructionResult
from optprune.reconstruction._search import local_search

__all__ = ["solve_bnb"]

_SAFETY = 1e-9  # relative to the start's objective: taken off the lower bound against rounding
_SPLIT_SHARE = 0.3  # of the time left after the local search: at most this much refining the split
_ROOT_STEPS = 80  # projected-gradient steps at the root
_NODE_STEPS = 30  # and at every other node (warm-started)
_SHIFT_MARGIN = 1e-9  # kept back from a node's (diagonally scaled) split shift against rounding


def _node_split(A: np.ndarray, gamma: np.ndarray, lo: np.ndarray, hi: np.ndarray, slack: float) -> np.ndarray:
    """The root split raised on the node's free units by ``t A_ii``, ``t = λ_min(S^{-1} M S^{-1})`` (less
    ``slack``; ``lo``, ``hi``: the node's fixings per unit) with ``S = diag(A)^{1/2}`` and ``M`` = ``A`` on the
    units not fixed out, the split taken off the free units only; then ``M - t diag(A_ii on free, 0 on fixed in)``
    stays PSD.

    Why valid: at the node, units fixed out have ``w_i = 0`` and leave the problem; units fixed in have
    ``z_i = 1``, where the perspective term ``γ_i ||w_i||^2 / z_i`` is the quadratic itself, so their ``γ_i``
    changes neither ``f`` nor its convexity, which needs only ``M - diag(γ'_free)`` PSD over the live units. A
    larger ``γ`` on the free units gives a larger (tighter) relaxation. The shift is relative to ``A_ii`` (the
    split is scale-invariant, :func:`~optprune.reconstruction._outer.perspective_split`): on 32-48-unit groups it
    closed more of the gap per node than a uniform ``λ_min`` shift.
    """
    live = np.flatnonzero(hi > 0)
    free = (hi > lo)[live]
    M = A[np.ix_(live, live)] - np.diag(np.where(free, gamma[live], 0.0))
    s = np.sqrt(np.maximum(np.diag(A)[live], 1e-300))
    t = float(linalg.eigvalsh(M / np.outer(s, s), subset_by_index=[0, 0], check_finite=False)[0]) - slack
    if t <= 0:
        return gamma
    out = gamma.copy()
    out[live[free]] += t * s[free] ** 2
    return out


def _node_bound(oracle: PerspectiveOracle, k: int, lo: np.ndarray, hi: np.ndarray, z: np.ndarray, steps: int,
                cutoff: float = math.inf) -> tuple[float, np.ndarray]:
    """The node's certificate (module doc) after at most ``steps`` projected-gradient steps from ``z``, stopping
    early once it reaches ``cutoff`` (the node is pruned)."""
    fixed_in, free = lo > 0, hi > lo
    need = k - int(fixed_in.sum())

    def certificate(value: float, point: np.ndarray, grad: np.ndarray) -> float:
        return value + float(grad[fixed_in].sum()) + float(np.sort(grad[free])[:need].sum()) - float(grad @ point)

    z = _project_box(z, k, lo, hi)
    value, grad = oracle.fractional(z)
    best = certificate(value, z, grad)
    step = 1.0 / max(float(np.max(np.abs(grad))), 1e-300)
    for _ in range(steps):
        if value - best <= 1e-7 * max(abs(value), 1e-300) or best >= cutoff:
            break
        z_new = _project_box(z - step * grad, k, lo, hi)
        v_new, g_new = oracle.fractional(z_new)
        best = max(best, certificate(v_new, z_new, g_new))
        s, y = z_new - z, g_new - grad
        sy = float(s @ y)
        step = float(s @ s) / sy if sy > 1e-300 else 2.0 * step
        if v_new > value:
            step *= 0.5
        z, value, grad = z_new, v_new, g_new
    return best, z


def solve_bnb(problem: ReconstructionProblem, k_blocks: int, time_limit: float = 10.0, start=None, *,
              rtol: float = RTOL, max_rounds: int = 1000, solver: str | None = None) -> ReconstructionResult:
    """Keep ``k_blocks`` blocks by branch and bound on the perspective relaxation, with the certified gap
    (module doc). ``start``: a mask over units or blocks, or block ids, for the local search that makes the first
    incumbent (at most ``max_rounds`` swaps). ``solver`` is accepted for the exact methods' common signature and
    unused (no MILP is solved)."""
    started = time.perf_counter()
    k = check_exact_arguments("solve_bnb", problem, k_blocks, time_limit, rtol)
    with _one_blas_thread():
        return _solve(problem, k, started, started + time_limit, start, rtol, max_rounds)


def _solve(problem: ReconstructionProblem, k: int, started: float, deadline: float, start, rtol: float,
           max_rounds: int) -> ReconstructionResult:
    B = problem.n_blocks
    heuristic = local_search(problem, k, start, time_limit=max(0.1 * (deadline - started), 0.2), bound=False,
                             max_rounds=max_rounds)
    best_keep = np.zeros(B, dtype=bool)
    best_keep[np.unique(problem.block_ids[heuristic.keep])] = True
    upper = heuristic.objective
    lower = upper
    info: dict = {"start_objective": upper, "nodes": 0}
    if 0 < k < B and upper > 0:
        A, gamma = checked_split(problem, "solve_bnb")
        margin = _SAFETY * upper
        z = _project_box(0.5 * best_keep + 0.5 * k / B, k, np.zeros(B), np.ones(B))
        now = time.perf_counter()
        gamma, _, z = _refine_split(problem, A, gamma, k, z, upper, now + _SPLIT_SHARE * (deadline - now), info)
        oracle = PerspectiveOracle(problem, gamma)
        slack = _SHIFT_MARGIN
        lo, hi = np.zeros(B), np.ones(B)
        root, z = _node_bound(oracle, k, lo, hi, z, _ROOT_STEPS)
        info["bound_root"] = root
        heap: list = [(root, 0, lo, hi, z)]
        count = 1

        def evaluate(keep: np.ndarray) -> None:
            nonlocal upper, best_keep
            value = problem.error(keep[problem.block_ids])
            if value < upper:
                upper, best_keep = value, keep.copy()

        while heap and time.perf_counter() < deadline:
            bound, _, lo, hi, z = heap[0]
            if bound - margin >= upper - rtol * upper:
                break
            heapq.heappop(heap)
            info["nodes"] += 1
            free = np.flatnonzero(hi > lo)
            pick = int(free[np.argmin(np.abs(z[free] - 0.5))])
            for value in (1.0, 0.0):
                child_lo, child_hi = lo.copy(), hi.copy()
                child_lo[pick] = child_hi[pick] = value
                kept, open_ = int(child_lo.sum()), int((child_hi > child_lo).sum())
                if kept > k or kept + open_ < k:
                    continue
                if kept == k or kept + open_ == k:  # a leaf: the completion is forced
                    evaluate((child_lo if kept == k else child_hi) > 0)
                    continue
                ids = problem.block_ids  # the split is over units, the fixings over blocks
                child_oracle = PerspectiveOracle(problem, _node_split(A, gamma, child_lo[ids], child_hi[ids], slack))
                child_bound, child_z = _node_bound(child_oracle, k, child_lo, child_hi, z, _NODE_STEPS,
                                                   upper - rtol * upper + margin)
                order = np.argsort(-(child_z + 2.0 * child_lo), kind="stable")  # fixed-in first, then largest z
                rounded = np.zeros(B, dtype=bool)
                rounded[order[:k]] = True
                evaluate(rounded)
                if child_bound - margin < upper - rtol * upper:
                    heapq.heappush(heap, (child_bound, count, child_lo, child_hi, child_z))
                    count += 1
        lower = (min(heap[0][0], upper) if heap else upper) - margin
        info["open_nodes"] = len(heap)
    return certified_result(problem, best_keep, lower, rtol, started, "exact", info)
