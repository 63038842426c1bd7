"""Brute-force oracle for the structure search (tests only): enumerate every width combination."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np

from optprune.errors import InvalidParameterError
from optprune.formulations.structure_search import SearchProblem


# ----------------------------------------------------------------------------- brute force
def brute_force(
    problem: SearchProblem, budgets: Mapping[str, float], *, max_plans: int = 2_000_000
) -> tuple[dict[str, int], float] | None:
    """Enumerate every width combination; return ``(widths, value)`` of the best feasible one or None.

    For tests: the reference optimum on small instances (absolute budgets).
    """
    comp = problem.compiled
    sizes = [g.size for g in comp.grids]
    total = int(np.prod(sizes, dtype=np.float64))
    if total > max_plans:
        raise InvalidParameterError(f"brute force would enumerate {total} plans; allowed at most {max_plans}")
    grids = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.int64).reshape(total, len(sizes))
    value = np.zeros(total)
    for c, v in enumerate(comp.values):
        value += v[grids[:, c]]
    use = np.tile(comp.const, (total, 1))
    for c, u in enumerate(comp.unary):
        use += u[:, grids[:, c]].T
    for c, d, mat in comp.pairs:
        use += mat[:, grids[:, c], grids[:, d]].T
    feasible = np.ones(total, dtype=bool)
    for key, cap in budgets.items():
        r = comp.resources.index(key)
        feasible &= use[:, r] <= cap + 1e-9 * max(1.0, abs(cap))
    if not feasible.any():
        return None
    value = np.where(feasible, value, -np.inf)
    best = int(np.argmax(value))
    return problem.widths_from_index(grids[best]), float(value[best])
