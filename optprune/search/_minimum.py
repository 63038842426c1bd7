"""The smallest achievable use of each resource, and the check that budgets are not below it.

Here rather than in :mod:`optprune.formulations.structure_search` because the
general case solves a side MILP, and formulations only build models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from optprune.errors import InfeasibleBudgetError
from optprune.formulations.structure_search import SearchProblem, StructureSearchModel
from optprune.formulations.structure_search import build_search_milp as _build_search_milp
from optprune.formulations.structure_search._assembly import cost_milp
from optprune.formulations.structure_search._forest import forest_min
from optprune.solvers import solve

__all__ = ["build_search_milp", "check_budgets", "minimum_resources"]


def minimum_resources(problem: SearchProblem) -> dict[str, float]:
    """The smallest achievable use of every resource on its own (over the allowed widths).

    Exact by dynamic programming when the class graph is a forest; otherwise the
    all-minimum-width plan, which is the minimum when every cost is
    nondecreasing in both widths (checked), else a MILP (:func:`cost_milp`)
    solved with HiGHS, a side problem that sizes the message of an infeasible budget.
    """
    comp = problem.compiled
    out = {}
    if comp.is_forest:
        for r, key in enumerate(comp.resources):
            out[key] = float(forest_min(comp, r)[0])
        return out
    monotone = all(c.monotone for layer in problem.layers for c in layer.costs.values())
    if monotone:
        idx = np.zeros(len(comp.classes), dtype=np.int64)
        use = comp.cost(idx)
        return {key: float(use[r]) for r, key in enumerate(comp.resources)}
    for r, key in enumerate(comp.resources):
        res = solve(cost_milp(comp, r), "highs")
        out[key] = float(res.objective)
    return out


def check_budgets(problem: SearchProblem, budgets: Mapping[str, float]) -> None:
    """Raise :class:`InfeasibleBudgetError` if some absolute budget is below its smallest achievable use."""
    if not budgets:
        return
    smallest = minimum_resources(problem)
    full = problem.full_resources()
    for key, value in budgets.items():
        need = smallest[key]
        if value < need - 1e-9 * max(1.0, abs(need)):
            raise InfeasibleBudgetError(
                f"budget {key}={value:.6g} is infeasible: the smallest allowed widths need {key}={need:.6g} "
                f"({need / full[key]:.4f} of the unpruned model's {full[key]:.6g}); "
                f"allowed: a budget >= {need:.6g} (relative >= {need / full[key]:.4f})",
                smallest_feasible=need,
            )


def build_search_milp(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    *,
    reduce: bool = True,
    incumbents: Sequence[Mapping[str, int]] = (),
    integer: bool = False,
    resolution: float = 1e7,
) -> StructureSearchModel:
    """:func:`optprune.formulations.structure_search.build_search_milp` for absolute ``budgets``, checked first.

    Raises :class:`InfeasibleBudgetError` (with the smallest feasible budget)
    when a budget is below what the allowed widths can reach.
    """
    absolute = problem.absolute_budgets(budgets, relative=False)
    check_budgets(problem, absolute)
    return _build_search_milp(problem, absolute, reduce=reduce, incumbents=incumbents, integer=integer,
                              resolution=resolution)
