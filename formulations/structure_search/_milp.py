"""The structure search as one MILP: reduction (optional), integer scaling (optional), assembly."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

import numpy as np

from optprune.formulations.structure_search._assembly import StructureSearchModel, assemble, integer_scales
from optprune.formulations.structure_search._problem import SearchProblem
from optprune.formulations.structure_search._reduction import lagrangian_reduction

__all__ = ["build_search_milp"]


def build_search_milp(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    *,
    reduce: bool = True,
    incumbents: Sequence[Mapping[str, int]] = (),
    integer: bool = False,
    resolution: float = 1e7,
) -> StructureSearchModel:
    """The MILP of the module docstring for absolute ``budgets``.

    ``reduce`` applies the exact Lagrangian reduction (forest class graphs);
    ``incumbents`` are feasible width plans to start it from. ``integer``
    builds an all-integer model with integer coefficients for CP-SAT: values
    scaled by a power of ten to about ``resolution`` and rounded, costs scaled
    and rounded *up* with the budget rounded *down* (so every plan the scaled
    model accepts meets the true budget); ``rounding`` reports the scales and
    the worst-case objective error and budget loss.

    Budgets below what the allowed widths can reach are not checked here (that
    takes a solve in general): :func:`optprune.search.build_search_milp` checks
    them first and raises :class:`~optprune.errors.InfeasibleBudgetError`.
    """
    comp = problem.compiled
    budgets = problem.absolute_budgets(budgets, relative=False)  # unknown resources are named errors
    reduction = None
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    if reduce:
        reduction = lagrangian_reduction(problem, budgets, incumbents=incumbents)
        keep_nodes, keep_arcs = reduction.keep_nodes, reduction.keep_arcs
    value_scale = cost_scales = None
    if integer:
        value_scale, cost_scales = integer_scales(comp, budgets, resolution)
    assembly = assemble(
        comp, keep_nodes, keep_arcs, budgets, value_scale=value_scale, cost_scales=cost_scales,
        name=f"structure_search_{problem.name}" if problem.name else "structure_search",
    )
    return StructureSearchModel(
        assembly.model, problem, MappingProxyType(budgets), assembly.node_columns, tuple(keep_nodes), reduction,
        assembly.rounding,
    )
