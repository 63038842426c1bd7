"""Exact Lagrangian reduction: bounds, an incumbent, and the widths/arcs that can be in an optimum.

See the package docstring ("Exact reduction") for why dropping is exact.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optprune.formulations.structure_search._forest import Forest
from optprune.formulations.structure_search._problem import CompiledProblem, SearchProblem

__all__ = ["ReductionResult", "lagrangian_reduction"]

_REMOVE_TOL = 1e-9


# ----------------------------------------------------------------------------- reduction
@dataclass
class ReductionResult:
    """What the Lagrangian reduction proved: bounds, an incumbent, the surviving nodes and arcs."""

    bound: float  # upper bound on the optimum (min over multipliers tried)
    incumbent: np.ndarray | None  # grid indices per class of the best feasible plan found
    incumbent_value: float
    keep_nodes: list[np.ndarray]  # per class, surviving grid indices
    keep_arcs: list[np.ndarray]  # per pair, boolean (n_c, n_d)
    multipliers: dict[str, float]
    evaluations: int
    time_s: float

    def stats(self) -> dict:
        return {
            "lagrangian_bound": self.bound,
            "incumbent": self.incumbent_value if self.incumbent is not None else None,
            "nodes_kept": int(sum(k.size for k in self.keep_nodes)),
            "arcs_kept": int(sum(int(a.sum()) for a in self.keep_arcs)),
            "multipliers": self.multipliers,
            "evaluations": self.evaluations,
            "time_s": round(self.time_s, 6),
        }


def _greedy_fill(comp: CompiledProblem, idx: np.ndarray, caps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Raise widths one grid step at a time (best value gain per budget used) while feasible."""
    idx = idx.copy()
    n = len(comp.grids)
    incident: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
    for e, (c, d, _) in enumerate(comp.pairs):
        incident[c].append((e, True))
        incident[d].append((e, False))
    use = comp.cost(idx)[rows]
    scale = np.where(caps > 0, caps, 1.0)
    for _ in range(10_000):
        best, best_score, best_delta = -1, 0.0, None
        for c in range(n):
            i = idx[c]
            if i + 1 >= comp.grids[c].size:
                continue
            gain = comp.values[c][i + 1] - comp.values[c][i]
            if gain <= 0:
                continue
            delta = comp.unary[c][rows, i + 1] - comp.unary[c][rows, i]
            for e, first in incident[c]:
                cc, dd, mat = comp.pairs[e]
                if first:
                    j = idx[dd]
                    delta = delta + mat[rows, i + 1, j] - mat[rows, i, j]
                else:
                    j = idx[cc]
                    delta = delta + mat[rows, j, i + 1] - mat[rows, j, i]
            if np.any(use + delta > caps + 1e-9 * np.abs(caps)):
                continue
            score = gain / max(float(np.max(delta / scale)), 1e-12)
            if score > best_score:
                best, best_score, best_delta = c, score, delta
        if best < 0:
            break
        idx[best] += 1
        use = use + best_delta
    return idx


def _index_of(problem: SearchProblem, widths: Mapping[str, int]) -> np.ndarray | None:
    """Grid index per class of a width plan, or None if it is off the grid or breaks a tie."""
    comp = problem.compiled
    idx = np.zeros(len(comp.classes), dtype=np.int64)
    for c, members in enumerate(comp.classes):
        want = {int(widths[problem.groups[m].name]) for m in members}
        if len(want) != 1:
            return None
        k = want.pop()
        i = int(np.searchsorted(comp.grids[c], k))
        if i >= comp.grids[c].size or comp.grids[c][i] != k:
            return None
        idx[c] = i
    return idx


def lagrangian_reduction(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    *,
    incumbents: Sequence[Mapping[str, int]] = (),
    iterations: int = 40,
) -> ReductionResult:
    """Lagrangian bounds, a feasible incumbent and the nodes/arcs that can be in an optimum.

    Needs a forest class graph (chains and trees); otherwise returns everything
    kept with the best supplied incumbent. ``budgets`` are absolute. See the
    module docstring for why dropping is exact.
    """
    start = time.perf_counter()
    comp = problem.compiled
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    rows = np.array([comp.resources.index(k) for k in budgets], dtype=np.int64)
    caps = np.array([budgets[k] for k in budgets], dtype=np.float64)

    best_idx, best_val = None, -math.inf

    def consider(idx: np.ndarray) -> None:
        nonlocal best_idx, best_val
        if np.all(comp.cost(idx)[rows] <= caps + 1e-9 * np.abs(caps)):
            val = comp.value(idx)
            if val > best_val:
                best_idx, best_val = idx.copy(), val

    for widths in incumbents:
        idx = _index_of(problem, widths)
        if idx is not None:
            consider(idx)
    if not comp.is_forest:
        return ReductionResult(math.inf, best_idx, best_val, keep_nodes, keep_arcs, {}, 0, time.perf_counter() - start)

    forest = Forest(comp)
    R = rows.size
    node_bound = [np.full(g.size, math.inf) for g in comp.grids]
    arc_bound = [np.full(m.shape[1:], math.inf) for _, _, m in comp.pairs]
    best_bound = math.inf
    evaluations = 0
    # normalise each budgeted resource by its budget so that multipliers are comparable
    scale = np.where(np.abs(caps) > 0, np.abs(caps), 1.0)
    unary_n = [u[rows] / scale[:, None] for u in comp.unary]
    pair_n = [m[rows] / scale[:, None, None] for _, _, m in comp.pairs]
    rhs_n = (caps - comp.const[rows]) / scale

    def evaluate(lam: np.ndarray, marginals: bool) -> tuple[float, np.ndarray]:
        nonlocal best_bound, evaluations
        evaluations += 1
        node_w = [v - lam @ u for v, u in zip(comp.values, unary_n)]
        edge_w = [_weighted(lam, m) for m in pair_n]
        total, idx, full, edge_mm = forest.solve(node_w, edge_w, marginals=marginals)
        shift = float(lam @ rhs_n)
        bound = total + shift
        best_bound = min(best_bound, bound)
        if marginals:
            for c in range(len(node_bound)):
                np.minimum(node_bound[c], full[c] + shift, out=node_bound[c])
            for e in range(len(arc_bound)):
                np.minimum(arc_bound[e], edge_mm[e] + shift, out=arc_bound[e])
        consider(idx)
        return bound, idx

    def slack(idx: np.ndarray) -> np.ndarray:
        return caps - comp.cost(idx)[rows]

    lam = np.zeros(R)
    _, idx0 = evaluate(lam, True)
    if R and np.any(slack(idx0) < -1e-9 * np.abs(caps)):
        vmax = max(float(sum(np.max(np.abs(v)) for v in comp.values)), 1e-12)
        for _cycle in range(3 if R > 1 else 1):
            for r in range(R):
                lo, hi = 0.0, vmax
                probe = lam.copy()
                for _ in range(60):  # find a multiplier making resource r feasible
                    probe[r] = hi
                    _, idx = evaluate(probe, False)
                    if slack(idx)[r] >= -1e-9 * abs(caps[r]):
                        break
                    lo, hi = hi, hi * 4
                for _ in range(iterations):
                    mid = 0.5 * (lo + hi)
                    probe[r] = mid
                    _, idx = evaluate(probe, False)
                    if slack(idx)[r] >= -1e-9 * abs(caps[r]):
                        hi = mid
                    else:
                        lo = mid
                    if hi - lo <= 1e-9 * max(hi, 1e-12):
                        break
                lam[r] = hi
                probe[r] = lo
                evaluate(probe, True)
                probe[r] = hi
                _, idx_hi = evaluate(probe, True)
                consider(_greedy_fill(comp, idx_hi, caps, rows))
        if best_idx is not None:
            consider(_greedy_fill(comp, best_idx, caps, rows))
    if best_idx is not None:
        tol = _REMOVE_TOL * max(1.0, abs(best_val))
        threshold = best_val - tol
        keep_nodes = [np.flatnonzero(b >= threshold) for b in node_bound]
        keep_arcs = [b >= threshold for b in arc_bound]
        for c in range(len(keep_nodes)):  # the incumbent always survives
            if best_idx[c] not in keep_nodes[c]:
                keep_nodes[c] = np.union1d(keep_nodes[c], [best_idx[c]])
        for e, (c, d, _) in enumerate(comp.pairs):
            keep_arcs[e][best_idx[c], best_idx[d]] = True
        keep_nodes, keep_arcs = _prune_consistent(comp, keep_nodes, keep_arcs)
    return ReductionResult(
        best_bound, best_idx, best_val, keep_nodes, keep_arcs,
        {k: float(v) / float(s) for k, v, s in zip(budgets, lam, scale)}, evaluations, time.perf_counter() - start,
    )


def _weighted(lam: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """``-sum_r lam[r] * mats[r]`` without numpy's tensordot copies."""
    out = np.zeros(mats.shape[1:])
    for r in np.flatnonzero(lam):
        out -= lam[r] * mats[r]
    return out


def _prune_consistent(comp: CompiledProblem, keep_nodes: list[np.ndarray], keep_arcs: list[np.ndarray]):
    """Drop arcs at dropped nodes and nodes without an arc in some incident pair, until stable."""
    masks = []
    for g, keep in zip(comp.grids, keep_nodes):
        m = np.zeros(g.size, dtype=bool)
        m[keep] = True
        masks.append(m)
    arcs = [a.copy() for a in keep_arcs]
    changed = True
    while changed:
        changed = False
        for e, (c, d, _) in enumerate(comp.pairs):
            arcs[e] &= masks[c][:, None] & masks[d][None, :]
            has_c, has_d = arcs[e].any(axis=1), arcs[e].any(axis=0)
            if np.any(masks[c] & ~has_c) or np.any(masks[d] & ~has_d):
                masks[c] &= has_c
                masks[d] &= has_d
                changed = True
    return [np.flatnonzero(m) for m in masks], arcs
