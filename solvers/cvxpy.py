"""cvxpy backend (``pip install 'optprune[cvxpy]'``): any MIP/LP solver installed under cvxpy.

The model becomes one vector variable ``x = cp.Variable(n, integer=idx,
bounds=[col_lower, col_upper])`` and at most three sparse matrix
constraints, split by row kind (see :func:`optprune.solvers._common.split_rows`)::

    A_eq x == b        (rows with row_lower == row_upper)
    A_le x <= u        (other rows with a finite upper side)
    A_ge x >= l        (other rows with a finite lower side)

with objective ``min/max c @ x + offset`` (plus ``1/2 quad_form(x, Q)`` for a quadratic objective, ``Q``
wrapped in ``psd_wrap`` once the lifecycle has checked it is convex). The cvxpy solver is chosen by
``SolveOptions(extra={"cvxpy_solver": "SCIP"})``; by default the first
installed of :data:`MIP_SOLVERS` for a MIP and of :data:`LP_SOLVERS` for an
LP (:data:`MIQP_SOLVERS` and :data:`QP_SOLVERS` for a quadratic objective; with no
MIQP-capable solver installed a MIQP raises
:class:`~optprune.solvers.base.QuadraticObjectiveError`). ``extra["cvxpy_options"]`` (a dict) goes to ``Problem.solve`` unchanged.
``time_limit``, ``mip_gap``, ``threads`` and the tolerances (``mip_abs_gap``,
``feasibility_tol``, ``integrality_tol``) are translated for HiGHS, SCIP,
CBC, SciPy and Gurobi where they have a native option (:func:`solver_kwargs`)
and ignored with a warning otherwise;
``cutoff`` becomes the row ``c @ x + offset <= cutoff`` (``>=`` when
maximising); ``target`` and ``stop_rule`` are ignored with a warning.

cvxpy's statuses map to :class:`Status`: optimal (and optimal_inaccurate)
-> OPTIMAL; infeasible* -> INFEASIBLE; unbounded* -> UNBOUNDED;
infeasible_or_unbounded -> re-solved with a zero objective; user_limit ->
FEASIBLE with a solution, else TIME_LIMIT; solver_error -> ERROR. cvxpy does
not report a MIP's dual bound, so ``bound`` is NaN for MIPs.
"""

from __future__ import annotations

import time

import numpy as np

from optprune.errors import CapabilityError, SolverNotAvailableError
from optprune.milp import MILP, Sense
from optprune.solvers._common import split_rows, warn_unsupported
from optprune.solvers.base import (
    TOLERANCES,
    BackendBase,
    NativeRun,
    Outcome,
    QuadraticObjectiveError,
    SolveOptions,
    Status,
)

__all__ = ["CvxpyBackend", "to_cvxpy", "solver_kwargs", "MIP_SOLVERS", "LP_SOLVERS", "QP_SOLVERS", "MIQP_SOLVERS"]

MIP_SOLVERS = ("HIGHS", "SCIP", "CBC", "GLPK_MI", "GUROBI", "CPLEX", "MOSEK", "XPRESS", "COPT", "SCIPY")
QP_SOLVERS = ("HIGHS", "CLARABEL", "OSQP", "SCIP", "GUROBI", "CPLEX", "MOSEK", "XPRESS", "COPT", "SCS")
MIQP_SOLVERS = ("SCIP", "GUROBI", "CPLEX", "MOSEK", "XPRESS", "COPT")
LP_SOLVERS = ("HIGHS", "CLARABEL", "SCIPY", "SCIP", "CBC", "GLPK", "GUROBI", "CPLEX", "MOSEK", "ECOS", "SCS")


# Native names of the shared options per cvxpy solver; "scip_params" / "scipy_options" nest them.
_NATIVE: dict[str, dict[str, str]] = {
    "HIGHS": {"time_limit": "time_limit", "mip_gap": "mip_rel_gap", "threads": "threads",
              "mip_abs_gap": "mip_abs_gap", "feasibility_tol": "primal_feasibility_tolerance",
              "integrality_tol": "mip_feasibility_tolerance"},
    "SCIP": {"time_limit": "limits/time", "mip_gap": "limits/gap", "mip_abs_gap": "limits/absgap",
             "feasibility_tol": "numerics/feastol", "integrality_tol": "numerics/feastol"},
    "CBC": {"time_limit": "maximumSeconds", "mip_gap": "allowableFractionGap", "threads": "numberThreads",
            "mip_abs_gap": "allowableGap", "integrality_tol": "integerTolerance"},
    "SCIPY": {"time_limit": "time_limit", "mip_gap": "mip_rel_gap"},
    "GUROBI": {"time_limit": "TimeLimit", "mip_gap": "MIPGap", "threads": "Threads", "mip_abs_gap": "MIPGapAbs",
               "feasibility_tol": "FeasibilityTol", "integrality_tol": "IntFeasTol"},
}
# HiGHS checks a MIP's rows and integrality with mip_feasibility_tolerance: it gets the smaller tolerance.
_ALSO: dict[str, dict[str, str]] = {"HIGHS": {"feasibility_tol": "mip_feasibility_tolerance"}}
_NESTED = {"SCIP": "scip_params", "SCIPY": "scipy_options"}
_SHARED = ("time_limit", "mip_gap", "threads", "mip_abs_gap", "feasibility_tol", "integrality_tol")


def solver_kwargs(solver: str, options: SolveOptions) -> tuple[dict, list[str]]:
    """``Problem.solve`` keyword arguments for the shared options, and the options it cannot pass.

    Where two tolerances map to one native option, the smaller value is kept.
    """
    table = _NATIVE.get(solver, {})
    also = _ALSO.get(solver, {})
    native: dict = {}
    missing: list[str] = []
    for option in _SHARED:
        value = getattr(options, option)
        if value is None:
            continue
        keys = ([table[option]] if option in table else []) + ([also[option]] if option in also else [])
        if not keys:
            missing.append(option)
        for key in keys:
            native[key] = min(native[key], value) if key in native and option in TOLERANCES else value
    if solver in _NESTED and native:
        return {_NESTED[solver]: native}, missing
    return native, missing


def to_cvxpy(model: MILP):
    """A ``cvxpy.Problem`` equal to ``model`` and its variable ``x`` (see module doc)."""
    import cvxpy as cp

    n = model.n_vars
    integer_idx = np.flatnonzero(model.integrality)
    x = cp.Variable(
        n,
        name="x",
        integer=(integer_idx,) if integer_idx.size else False,
        bounds=[np.asarray(model.col_lower, dtype=float), np.asarray(model.col_upper, dtype=float)],
    )
    constraints = []
    parts = split_rows(model)
    for kind, (A, rhs) in parts.items():
        if A.shape[0] == 0:
            continue
        if kind == "eq":
            constraints.append(A @ x == rhs)
        elif kind == "le":
            constraints.append(A @ x <= rhs)
        else:
            constraints.append(A @ x >= rhs)
    expr = np.asarray(model.c, dtype=float) @ x + float(model.offset)
    if model.is_quadratic:  # convex in the model's sense (checked by the lifecycle before this is built)
        if model.sense == Sense.MAXIMIZE:
            expr = expr - 0.5 * cp.quad_form(x, cp.psd_wrap(-model.Q))
        else:
            expr = expr + 0.5 * cp.quad_form(x, cp.psd_wrap(model.Q))
    objective = cp.Maximize(expr) if model.sense == Sense.MAXIMIZE else cp.Minimize(expr)
    return cp.Problem(objective, constraints), x


class CvxpyBackend(BackendBase):
    name = "cvxpy"
    package = "cvxpy"
    extra = "cvxpy"
    supports_quadratic = True  # quad_form; a MIQP needs a MIQP-capable cvxpy solver (MIQP_SOLVERS)
    supports_miqp = True
    supported_tolerances = frozenset(TOLERANCES)  # with HiGHS, the first choice when installed
    STATUS_MAP = {
        "optimal": Status.OPTIMAL,
        "optimal_inaccurate": Status.OPTIMAL,
        "infeasible": Status.INFEASIBLE,
        "infeasible_inaccurate": Status.INFEASIBLE,
        "unbounded": Status.UNBOUNDED,
        "unbounded_inaccurate": Status.UNBOUNDED,
        "infeasible_or_unbounded": Outcome.INFEASIBLE_OR_UNBOUNDED,
        "user_limit": Outcome.LIMIT,
    }

    def tolerances_for(self, model: MILP, options: SolveOptions) -> frozenset[str]:
        solver = self._pick_solver(model, options)
        return frozenset(k for k in _NATIVE.get(solver, {}) if k in TOLERANCES)

    @staticmethod
    def _pick_solver(model: MILP, options: SolveOptions) -> str:
        import cvxpy as cp

        installed = cp.installed_solvers()
        if "cvxpy_solver" in options.extra:
            solver = str(options.extra["cvxpy_solver"]).upper()
            if solver not in installed:
                raise SolverNotAvailableError(
                    f"cvxpy solver {solver!r} (extra['cvxpy_solver']) is not installed; installed: {', '.join(installed)}"
                )
            if model.is_quadratic and solver not in (MIQP_SOLVERS if model.is_mip else QP_SOLVERS):
                raise QuadraticObjectiveError(
                    f"cvxpy solver {solver} (extra['cvxpy_solver']) does not take a quadratic objective"
                    f"{' with integer variables' if model.is_mip else ''}; cvxpy solvers that do: "
                    f"{', '.join(MIQP_SOLVERS if model.is_mip else QP_SOLVERS)}"
                )
            if model.is_mip and solver not in MIP_SOLVERS:
                raise CapabilityError(
                    f"cvxpy solver {solver} does not take integer variables and this model has {model.n_integer}; "
                    f"MIP solvers: {', '.join(MIP_SOLVERS)}"
                )
            return solver
        if model.is_quadratic:
            preferred = MIQP_SOLVERS if model.is_mip else QP_SOLVERS
        else:
            preferred = MIP_SOLVERS if model.is_mip else LP_SOLVERS
        for solver in preferred:
            if solver in installed:
                return solver
        if model.is_quadratic and model.is_mip:
            raise QuadraticObjectiveError(
                f"backend 'cvxpy' has no MIQP-capable solver installed (looked for {', '.join(preferred)}; installed: "
                f"{', '.join(installed)}); install one, e.g.: pip install 'optprune[scip]', or use solver='scip'"
            )
        raise SolverNotAvailableError(
            f"no {'MIP' if model.is_mip else 'LP'} solver is installed for cvxpy (looked for {', '.join(preferred)}; "
            f"installed: {', '.join(installed)}); install one, e.g.: pip install highspy"
        )

    def _run(self, model: MILP, options: SolveOptions, solver: str, *, warn: bool = True):
        problem, x = to_cvxpy(model)
        kw, missing = solver_kwargs(solver, options)
        kw.update(dict(options.extra.get("cvxpy_options", {})))
        if warn:
            for option in missing:
                if option in TOLERANCES and option != "feasibility_tol" and not model.is_mip:
                    continue  # gaps and integrality mean nothing for an LP
                warn_unsupported(self.name, option, f"no known way to pass it to cvxpy solver {solver}")
            for key in options.extra:
                if key not in ("cvxpy_solver", "cvxpy_options"):
                    warn_unsupported(self.name, f"extra[{key!r}]", "known keys: 'cvxpy_solver', 'cvxpy_options'")
        start = time.perf_counter()
        problem.solve(solver=solver, verbose=bool(options.verbose), **kw)
        elapsed = time.perf_counter() - start
        values = None if x.value is None else np.asarray(x.value, dtype=np.float64).reshape(-1)
        if values is not None and not np.all(np.isfinite(values)):
            values = None
        return str(problem.status), values, elapsed

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        solver = self._pick_solver(model, options)
        raw, x, elapsed = self._run(built, options, solver)
        return NativeRun(status=raw, x=x, time_s=elapsed, message=f"{solver}: {raw}", prefix=f"{solver}: ")

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        solver = self._pick_solver(model, options)
        raw, x, _ = self._run(model, SolveOptions(time_limit=options.time_limit), solver, warn=False)
        if raw.startswith("infeasible") and raw != "infeasible_or_unbounded":
            return Status.INFEASIBLE
        return Status.FEASIBLE if x is not None else Status.ERROR
