"""The fast width heuristics the exact search is compared against, at the same budget.

* **Uniform ratio** (the default of most pruning libraries): every group keeps
  the same fraction ``rho`` of its units, snapped down to its allowed grid;
  ``rho`` is the largest ratio whose plan meets every budget (bisection over the
  finitely many ratios at which some width changes).
* **Global standardised-score threshold** (FLAP, An et al. AAAI 2024, eq. 6;
  Torch-Pruning's ``global_pruning``, Fang et al. CVPR 2023): scores are
  standardised within each group, ``z = (s - mean_g) / std_g``, every unit
  with ``z >= tau`` is kept (the count snapped down to the group's grid), and
  ``tau`` is the lowest threshold whose plan meets every budget (bisection over
  the sorted standardised scores). A group given by a value curve
  (:meth:`~optprune.search.WidthGroup.from_curve`) takes part with its
  marginal gains as unit scores (:attr:`~optprune.search.WidthGroup.unit_scores`).

Both return plans on the allowed grid that respect ties (a tie class keeps the
smallest of its members' counts). They assume the resources grow with the
widths (true for parameters and FLOPs; measured latency tables are close to
it), and their answer is checked against the budgets either way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from optprune.errors import InfeasibleBudgetError, InvalidParameterError
from optprune.formulations.structure_search import SearchProblem
from optprune.search._minimum import check_budgets

__all__ = ["uniform_widths", "global_threshold_widths", "standardize"]


def standardize(scores: np.ndarray) -> np.ndarray:
    """``(s - mean) / std`` within one group (all zeros when the scores are constant)."""
    scores = np.asarray(scores, dtype=np.float64)
    std = float(scores.std())
    return np.zeros_like(scores) if std == 0 else (scores - scores.mean()) / std


def _snap(problem: SearchProblem, counts: np.ndarray) -> np.ndarray:
    """Grid index per class: the largest allowed width <= the class's count (the smallest width if none)."""
    comp = problem.compiled
    idx = np.empty(len(comp.classes), dtype=np.int64)
    for c, grid in enumerate(comp.grids):
        idx[c] = max(int(np.searchsorted(grid, counts[c], side="right")) - 1, 0)
    return idx


def _fits(problem: SearchProblem, idx: np.ndarray, budgets: Mapping[str, float]) -> bool:
    comp = problem.compiled
    use = comp.cost(idx)
    return all(use[comp.resources.index(k)] <= v + 1e-9 * max(1.0, abs(v)) for k, v in budgets.items())


def _largest_feasible(
    problem: SearchProblem, candidates: np.ndarray, plan: Callable[[float], np.ndarray], budgets: Mapping[str, float],
    what: str,
) -> np.ndarray:
    """Bisection over increasing ``candidates`` for the last one whose plan fits (plans grow with the candidate)."""
    lo, hi = -1, candidates.size - 1  # plan(candidates[lo]) fits (lo = -1: none known), find the largest
    if _fits(problem, plan(candidates[hi]), budgets):
        return plan(candidates[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _fits(problem, plan(candidates[mid]), budgets):
            lo = mid
        else:
            hi = mid
    if lo < 0:
        raise InfeasibleBudgetError(
            f"no {what} plan meets the budgets {dict(budgets)}: even its smallest plan exceeds them "
            "(the resources are not monotone in the widths here; use the exact search)"
        )
    return plan(candidates[lo])


def uniform_widths(problem: SearchProblem, budgets: Mapping[str, float]) -> dict[str, int]:
    """The uniform-ratio plan at absolute ``budgets`` (see the module docstring)."""
    check_budgets(problem, budgets)
    comp = problem.compiled
    sizes = np.array([max(problem.groups[m].size for m in members) for members in comp.classes], dtype=np.float64)
    # ratios at which some class's snapped width changes, plus the extremes
    breaks = np.unique(np.concatenate([[0.0, 1.0]] + [g / s for g, s in zip(comp.grids, sizes)]))
    breaks = breaks[(breaks >= 0) & (breaks <= 1)]

    def plan(rho: float) -> np.ndarray:
        return _snap(problem, np.floor(rho * sizes + 1e-9))

    idx = _largest_feasible(problem, breaks, plan, budgets, "uniform-ratio")
    return problem.widths_from_index(idx)


def global_threshold_widths(
    problem: SearchProblem, budgets: Mapping[str, float], *, normalize: str = "zscore"
) -> dict[str, int]:
    """The global-threshold plan at absolute ``budgets``; ``normalize``: "zscore" (FLAP) or "none"."""
    if normalize not in ("zscore", "none"):
        raise InvalidParameterError(f"normalize must be 'zscore' or 'none', got {normalize!r}")
    check_budgets(problem, budgets)
    comp = problem.compiled
    unit = [g.unit_scores for g in problem.groups]
    z = [standardize(s) if normalize == "zscore" else s.astype(np.float64) for s in unit]
    z_sorted = [np.sort(v) for v in z]
    # thresholds from high (keep little) to low (keep a lot): the plan grows along the candidates
    candidates = np.concatenate([[np.inf], np.unique(np.concatenate(z))[::-1]])

    def plan(tau: float) -> np.ndarray:
        kept = [v.size - int(np.searchsorted(v, tau, side="left")) for v in z_sorted]  # units with z >= tau
        counts = np.array([min(kept[m] for m in members) for members in comp.classes], dtype=np.float64)
        return _snap(problem, counts)

    idx = _largest_feasible(problem, candidates, plan, budgets, "global-threshold")
    return problem.widths_from_index(idx)
