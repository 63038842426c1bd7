"""Solve a structure search with any backend, or with a baseline, and report one result type."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from optprune.errors import InfeasibleBudgetError, InvalidParameterError, SolverError
from optprune.formulations.structure_search import (
    LayerCost,
    SearchProblem,
    WidthGroup,
    build_search_milp,
    linear_costs,
    width_grid,
)
from optprune.search._baselines import global_threshold_widths, uniform_widths
from optprune.search._minimum import check_budgets, minimum_resources
from optprune.solvers import Status, get_backend, solve

__all__ = ["SearchResult", "solve_search", "search_widths", "chain_layers", "METHODS"]

METHODS = ("exact", "uniform", "global")


@dataclass
class SearchResult:
    """A width plan: kept units per group, retained score, resource use, and how it was found.

    ``resources[r]`` is the plan's use of resource ``r`` in its own units,
    ``budgets[r]`` the absolute budget, ``full_resources[r]`` the unpruned
    model's use. ``status`` is ``optimal`` when the solver proved optimality
    (within ``solver_stats["mip_gap"]``), ``feasible`` for heuristics and
    stopped solves.
    """

    widths: dict[str, int]
    kept: dict[str, np.ndarray]
    objective: float
    resources: dict[str, float]
    budgets: dict[str, float]
    full_resources: dict[str, float]
    status: Status
    time_s: float
    method: str = "exact"
    solver_stats: dict = field(default_factory=dict)

    def to_dict(self, *, include_kept: bool = True) -> dict:
        out = {
            "widths": dict(self.widths),
            "objective": self.objective,
            "resources": {
                k: {
                    "used": v,
                    "budget": self.budgets.get(k),
                    "full": self.full_resources.get(k),
                    "fraction": v / self.full_resources[k] if self.full_resources.get(k) else None,
                }
                for k, v in self.resources.items()
            },
            "status": self.status.value,
            "time_s": round(self.time_s, 6),
            "method": self.method,
            "solver_stats": self.solver_stats,
        }
        if include_kept:
            out["kept"] = {k: v.tolist() for k, v in self.kept.items()}
        return out


def _result(problem, widths, budgets, status, elapsed, method, stats) -> SearchResult:
    return SearchResult(
        widths=dict(widths), kept=problem.kept(widths), objective=problem.value(widths),
        resources=problem.resources(widths), budgets=dict(budgets), full_resources=problem.full_resources(),
        status=status, time_s=elapsed, method=method, solver_stats=stats,
    )


def _meets(problem: SearchProblem, widths: Mapping[str, int], budgets: Mapping[str, float]) -> bool:
    use = problem.resources(widths)
    return all(use[k] <= v + 1e-9 * max(1.0, abs(v)) for k, v in budgets.items())


def solve_search(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    solver: str = "highs",
    *,
    relative: bool = True,
    method: str = "exact",
    time_limit: float | None = None,
    mip_gap: float = 1e-6,
    reduce: bool = True,
    threads: int | None = None,
    verbose: bool = False,
) -> SearchResult:
    """The best width plan of ``problem`` under ``budgets``.

    ``budgets`` maps resource names to fractions of the unpruned model
    (``relative=True``) or to absolute amounts. ``method``: ``exact`` (the MILP
    of :mod:`optprune.formulations.structure_search` on backend ``solver``),
    ``uniform`` or ``global`` (the baselines, same budgets). Backends that take
    integer models only (CP-SAT) get the scaled integer model; the rounding
    scales and error bounds are in ``solver_stats["rounding"]``. The status is
    ``optimal`` when the backend proves the plan optimal within ``mip_gap``, or
    when the plan is within ``mip_gap`` of the Lagrangian bound of the reduction
    although the backend stopped at its limit (``solver_stats["optimality_proof"]``
    then says so and ``solver_stats["solver_status"]`` keeps the backend's own).

    Raises :class:`~optprune.errors.InfeasibleBudgetError` when no plan meets
    the budgets (the message gives the smallest feasible budget).
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")
    start = time.perf_counter()
    absolute = problem.absolute_budgets(budgets, relative=relative)
    check_budgets(problem, absolute)
    if method == "uniform":
        widths = uniform_widths(problem, absolute)
        return _result(problem, widths, absolute, Status.FEASIBLE, time.perf_counter() - start, "uniform", {})
    if method == "global":
        widths = global_threshold_widths(problem, absolute)
        return _result(problem, widths, absolute, Status.FEASIBLE, time.perf_counter() - start, "global", {})

    backend = get_backend(solver)
    backend.require()
    incumbents = []
    for heuristic in (uniform_widths, global_threshold_widths):
        try:
            incumbents.append(heuristic(problem, absolute))
        except InfeasibleBudgetError:
            pass
    integer = not backend.supports_continuous
    # the formulation's builder: the budgets were checked above
    built = build_search_milp(problem, absolute, reduce=reduce, incumbents=incumbents, integer=integer)
    build_s = time.perf_counter() - start
    res = solve(built.model, solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, verbose=verbose)
    stats = {
        "backend": res.backend,
        "version": res.version,
        "solver_status": res.status.value,
        "solver_message": res.message,
        "solve_time_s": round(res.time_s, 6),
        "build_time_s": round(build_s, 6),
        "nodes": res.nodes,
        "mip_gap": mip_gap,
        "model": built.stats(),
    }
    if res.status == Status.ERROR:
        raise SolverError(f"backend {solver!r} failed on the structure search: {res.message}")
    red = built.reduction
    widths, status = None, res.status
    scale = built.rounding["value_scale"] if built.rounding else 1.0
    if res.x is not None:
        widths = built.decode(res.x)
        if not _meets(problem, widths, absolute):  # cannot happen for an exact model; say so loudly if it does
            raise SolverError(f"backend {solver!r} returned a plan that breaks the budgets: {widths}")
    if red is not None and red.incumbent is not None:
        inc = problem.widths_from_index(red.incumbent)
        if widths is None or problem.value(inc) > problem.value(widths) + 1e-12 * max(1.0, abs(problem.value(inc))):
            widths = inc
            if status == Status.TIME_LIMIT:
                status = Status.FEASIBLE
    if widths is None:
        if res.status == Status.INFEASIBLE:
            smallest = minimum_resources(problem)
            raise InfeasibleBudgetError(
                f"the budgets {absolute} cannot be met together; each alone needs at least "
                f"{ {k: smallest[k] for k in absolute} } (relative "
                f"{ {k: round(smallest[k] / problem.full_resources()[k], 4) for k in absolute} })",
                smallest_feasible=None,
            )
        return _result_none(problem, absolute, res, time.perf_counter() - start, stats)
    # Valid upper bounds on the true optimum: the solver's dual bound (not for a scaled integer model,
    # whose tightened budgets make it a bound on a smaller problem) and the Lagrangian bound.
    bound = res.bound if math.isfinite(res.bound) and built.rounding is None else math.inf
    if red is not None and math.isfinite(red.bound):
        bound = min(bound, red.bound)
    value = problem.value(widths)
    stats["bound"] = bound if math.isfinite(bound) else None
    stats["gap"] = max(bound - value, 0.0) / max(1e-10, abs(value)) if math.isfinite(bound) else None
    if status != Status.OPTIMAL and stats["gap"] is not None and stats["gap"] <= mip_gap:
        # the solver stopped early, but the plan is within the gap of a valid bound: proven optimal
        status = Status.OPTIMAL
        stats["optimality_proof"] = "lagrangian bound" if bound == getattr(red, "bound", None) else "solver bound"
    if built.rounding is not None:
        rounding = dict(built.rounding)
        rounding["solver_objective_unscaled"] = res.objective / scale if math.isfinite(res.objective) else None
        rounding["objective_error"] = (
            abs(rounding["solver_objective_unscaled"] - problem.value(built.decode(res.x)))
            if res.x is not None else None
        )
        stats["rounding"] = rounding
    return _result(problem, widths, absolute, status, time.perf_counter() - start, "exact", stats)


def _result_none(problem, absolute, res, elapsed, stats) -> SearchResult:
    return SearchResult(
        widths={}, kept={}, objective=math.nan, resources={}, budgets=dict(absolute),
        full_resources=problem.full_resources(), status=res.status, time_s=elapsed, method="exact", solver_stats=stats,
    )


def chain_layers(names: Sequence[str], input_size: int, output_size: int, *, bias: bool = True) -> list[LayerCost]:
    """The layers of an MLP ``input -> names[0] -> ... -> names[-1] -> output`` (``nn.Linear`` costs)."""
    ends = [int(input_size), *names, int(output_size)]
    return [
        LayerCost(f"layer{i}", a, b, linear_costs(bias=bias)) for i, (a, b) in enumerate(zip(ends, ends[1:]))
    ]


def _per_group(value, name: str, what: str):
    if isinstance(value, Mapping):
        if name not in value:
            raise InvalidParameterError(f"{what} has no entry for group {name!r}; got entries for {sorted(value)}")
        return value[name]
    return value


def search_widths(
    scores: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    layers: Sequence[LayerCost] | Mapping[str, int] | None = None,
    budgets: Mapping[str, float] | None = None,
    solver: str = "highs",
    *,
    resources: Sequence[LayerCost] | Mapping[str, int] | None = None,
    relative: bool = True,
    widths: Mapping[str, Sequence[int]] | None = None,
    round_to: int | Mapping[str, int] = 1,
    min_width: int | float | Mapping[str, int | float] = 1,
    ties: Sequence[Sequence[str]] = (),
    method: str = "exact",
    time_limit: float | None = None,
    mip_gap: float = 1e-6,
    reduce: bool = True,
    threads: int | None = None,
) -> SearchResult:
    """Kept widths per group maximising retained score under ``budgets`` (see :func:`solve_search`).

    ``scores``: one array per prunable group (a dict keyed by group name, or a
    list: groups ``g0, g1, ...``). ``layers``: the layers' costs (a list of
    :class:`LayerCost` whose ends name the groups), or ``{"input": n_in,
    "output": n_out}`` for an MLP chaining the groups in order (``resources=``,
    its former name, still works with a :class:`DeprecationWarning`). ``widths``
    (explicit allowed widths per group) overrides ``round_to`` / ``min_width``
    (an int, a fraction in (0, 1), or a dict per group). ``ties``: groups that
    must keep equal widths.
    """
    if resources is not None:
        if layers is not None:
            raise InvalidParameterError(
                "search_widths: give 'layers' only ('resources' is its deprecated name); got both"
            )
        warnings.warn(
            "search_widths(resources=...) is deprecated; use search_widths(layers=...)", DeprecationWarning,
            stacklevel=2,
        )
        layers = resources
    if layers is None:
        raise InvalidParameterError(
            "search_widths: parameter 'layers' is required: a list of LayerCost or {'input': n_in, 'output': n_out}; "
            "got None"
        )
    if budgets is None:
        raise InvalidParameterError(
            "search_widths: parameter 'budgets' is required: {resource: fraction or amount}; got None"
        )
    if isinstance(scores, Mapping):
        items = [(str(k), v) for k, v in scores.items()]
    else:
        items = [(f"g{i}", v) for i, v in enumerate(scores)]
    groups = []
    for name, sc in items:
        sc = np.asarray(sc, dtype=np.float64).reshape(-1)
        if widths is not None and name in widths:
            grid = np.asarray(widths[name], dtype=np.int64)
        else:
            grid = width_grid(sc.size, int(_per_group(round_to, name, "round_to")),
                              _per_group(min_width, name, "min_width"))
        groups.append(WidthGroup(name, sc, grid))
    if isinstance(layers, Mapping):
        if set(layers) != {"input", "output"}:
            raise InvalidParameterError(
                "search_widths: parameter 'layers' as a mapping must be {'input': n_in, 'output': n_out} "
                f"(an MLP chain); got keys {sorted(layers)}"
            )
        costs = chain_layers([g.name for g in groups], layers["input"], layers["output"])
    else:
        costs = list(layers)
    problem = SearchProblem(tuple(groups), tuple(costs), tuple(tuple(t) for t in ties))
    return solve_search(
        problem, budgets, solver, relative=relative, method=method, time_limit=time_limit, mip_gap=mip_gap,
        reduce=reduce, threads=threads,
    )
