"""OR-Tools linear-solver backend (``pip install 'optprune[ortools]'``).

The model is filled from the CSR arrays in one call
(``ModelBuilderHelper.fill_model_from_sparse_data``, the array core under
OR-Tools' ``model_builder``), exported as an ``MPModelProto`` and loaded
into a ``pywraplp.Solver`` (MPSolver), which solves it with the chosen
sub-solver: SCIP (default for MIPs), GLOP (default for LPs), CBC, HiGHS,
CLP, PDLP or SAT. Choose one with ``SolveOptions(extra={"ortools_solver":
"CBC"})``; solver-specific parameters go as a string in
``extra["ortools_params"]``.

MPSolver offers no Python callbacks, so ``target`` and ``stop_rule`` are
ignored with a warning; ``cutoff`` is added as the row
``c @ x + offset <= cutoff`` (``>=`` when maximising). Some sub-solvers
report an unbounded model as infeasible (GLOP, HiGHS after presolve); an
INFEASIBLE answer is therefore checked by solving the zero-objective copy,
and a feasible copy means UNBOUNDED.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optprune.errors import CapabilityError, InvalidParameterError
from optprune.milp import MILP, Sense
from optprune.solvers._common import (
    native_stdout_to_stderr,
    solver_boundary,
    warn_unsupported,
    with_cutoff_row,
    zero_objective,
)
from optprune.solvers.base import TOLERANCES, BackendBase, SolveOptions, SolveResult, Status

__all__ = ["OrtoolsBackend", "to_mpmodel_proto", "tolerance_params", "MIP_SOLVERS", "LP_SOLVERS"]

MIP_SOLVERS = ("SCIP", "CBC", "HIGHS", "SAT")
LP_SOLVERS = ("GLOP", "CLP", "PDLP", "HIGHS_LP")


def to_mpmodel_proto(model: MILP):
    """The ``MPModelProto`` of ``model``, filled from its arrays in one call.

    min/max ``c @ x + offset`` s.t. ``row_lower <= A x <= row_upper``,
    ``col_lower <= x <= col_upper``, ``x_j`` integer where ``integrality[j]``.
    """
    from ortools.linear_solver.python import model_builder

    mb = model_builder.Model()
    helper = mb.helper
    helper.fill_model_from_sparse_data(
        np.ascontiguousarray(model.col_lower, dtype=np.float64),
        np.ascontiguousarray(model.col_upper, dtype=np.float64),
        np.ascontiguousarray(model.c, dtype=np.float64),
        np.ascontiguousarray(model.row_lower, dtype=np.float64),
        np.ascontiguousarray(model.row_upper, dtype=np.float64),
        model.A,
    )
    for j in np.flatnonzero(model.integrality).tolist():  # one call per integer column
        helper.set_var_integrality(j, True)
    helper.set_maximize(model.sense == Sense.MAXIMIZE)
    helper.set_objective_offset(float(model.offset))
    helper.set_name(model.name)
    return mb.export_to_proto()


def _fmt(value: float) -> str:
    return repr(float(value))


def tolerance_params(sub: str, options: SolveOptions) -> tuple[list[str], frozenset[str]]:
    """Solver-specific parameter lines carrying the tolerances for sub-solver ``sub``, and which they carry.

    ``mip_gap`` always goes through ``MPSolverParameters.RELATIVE_MIP_GAP``.
    SCIP: ``limits/absgap``, ``numerics/feastol`` (rows, bounds and
    integrality: the smaller of the two tolerances). SAT (CP-SAT parameters):
    ``absolute_gap_limit``. GLOP: ``primal_feasibility_tolerance``. CBC,
    HiGHS, CLP and PDLP take no parameter string through MPSolver: their
    other tolerances are ignored with a warning.
    """
    lines: list[str] = []
    if sub == "SCIP":
        if options.mip_abs_gap is not None:
            lines.append(f"limits/absgap = {_fmt(options.mip_abs_gap)}")
        tols = [t for t in (options.feasibility_tol, options.integrality_tol) if t is not None]
        if tols:
            lines.append(f"numerics/feastol = {_fmt(min(tols))}")
        return lines, frozenset(TOLERANCES)
    if sub == "SAT":
        if options.mip_abs_gap is not None:
            lines.append(f"absolute_gap_limit: {_fmt(options.mip_abs_gap)}")
        return lines, frozenset({"mip_gap", "mip_abs_gap"})
    if sub == "GLOP":
        if options.feasibility_tol is not None:
            lines.append(f"primal_feasibility_tolerance: {_fmt(options.feasibility_tol)}")
        return lines, frozenset({"feasibility_tol"})
    return lines, frozenset({"mip_gap"})


class OrtoolsBackend(BackendBase):
    name = "ortools"
    package = "ortools"
    extra = "ortools"
    supported_tolerances = frozenset(TOLERANCES)  # with the default MIP sub-solver, SCIP

    def tolerances_for(self, model: MILP, options: SolveOptions) -> frozenset[str]:
        return tolerance_params(self._sub_solver(model, options), options)[1]

    def solve(self, model: MILP, options: SolveOptions) -> SolveResult:
        self.require()
        self.check_model(model)
        if model.n_vars == 0:
            return self.solve_empty(model, options)
        sub = self._sub_solver(model, options)
        with solver_boundary(self.name), native_stdout_to_stderr():
            return self._solve(model, options, sub)

    @staticmethod
    def _sub_solver(model: MILP, options: SolveOptions) -> str:
        sub = str(options.extra.get("ortools_solver", "SCIP" if model.is_mip else "GLOP")).upper()
        allowed = MIP_SOLVERS + LP_SOLVERS
        if sub not in allowed:
            raise InvalidParameterError(
                f"extra['ortools_solver'] must be one of {', '.join(allowed)}; got {sub!r}"
            )
        if model.is_mip and sub in LP_SOLVERS:
            raise CapabilityError(
                f"OR-Tools sub-solver {sub} solves LPs only, and this model has {model.n_integer} integer "
                f"variables; choose one of {', '.join(MIP_SOLVERS)}"
            )
        return sub

    def _solve(self, model: MILP, options: SolveOptions, sub: str) -> SolveResult:
        from ortools.linear_solver import pywraplp

        for key in options.extra:
            if key not in ("ortools_solver", "ortools_params"):
                warn_unsupported(self.name, f"extra[{key!r}]", "known keys: 'ortools_solver', 'ortools_params'")
        if options.target is not None:
            warn_unsupported(self.name, "target", "MPSolver has no Python callbacks")
        if options.stop_rule is not None:
            warn_unsupported(self.name, "stop_rule", "MPSolver has no Python callbacks")
        self.warn_unsupported_tolerances(model, options, tolerance_params(sub, options)[1])
        built = model if options.cutoff is None else with_cutoff_row(model, options.cutoff)

        solver, params = self._make_solver(built, options, sub)
        start = time.perf_counter()
        code = solver.Solve(params)
        elapsed = time.perf_counter() - start

        S = pywraplp.Solver
        has_sol = code in (S.OPTIMAL, S.FEASIBLE)
        x = np.array([v.solution_value() for v in solver.variables()], dtype=np.float64) if has_sol else None
        objective = float(solver.Objective().Value()) if has_sol else math.nan
        bound = math.nan
        nodes = 0
        if model.is_mip:
            bound = float(solver.Objective().BestBound())
            nodes = int(solver.nodes())
        if not math.isfinite(bound) or abs(bound) >= 1e30:
            bound = math.nan
        message = f"{sub}: " + {
            S.OPTIMAL: "optimal", S.FEASIBLE: "feasible", S.INFEASIBLE: "infeasible", S.UNBOUNDED: "unbounded",
            S.ABNORMAL: "abnormal", S.MODEL_INVALID: "model invalid", S.NOT_SOLVED: "not solved",
        }.get(code, str(code))
        if code == S.OPTIMAL:
            status = Status.OPTIMAL
        elif code == S.FEASIBLE:
            status = Status.FEASIBLE
        elif code == S.INFEASIBLE:
            status = Status.INFEASIBLE
            if options.cutoff is not None:
                message = f"{sub}: no solution better than the objective cutoff"
            elif np.any(model.c) and self._feasible(model, options, sub):
                status = Status.UNBOUNDED
                message = f"{sub}: unbounded (reported infeasible; the zero-objective copy is feasible)"
        elif code == S.UNBOUNDED:
            status = Status.UNBOUNDED
        elif code == S.NOT_SOLVED and options.time_limit is not None:
            status = Status.TIME_LIMIT
        else:
            status = Status.ERROR
        if status in (Status.INFEASIBLE, Status.UNBOUNDED):
            x, objective, bound = None, math.nan, math.nan
        return self.result(status, model, x=x, objective=objective, bound=bound, time_s=elapsed, nodes=nodes,
                           message=message)

    def _make_solver(self, model: MILP, options: SolveOptions, sub: str):
        from ortools.linear_solver import pywraplp

        solver = pywraplp.Solver.CreateSolver(sub)
        if solver is None:
            raise CapabilityError(f"OR-Tools was built without the {sub} sub-solver")
        error = solver.LoadModelFromProto(to_mpmodel_proto(model))
        if error:
            raise CapabilityError(f"OR-Tools {sub} rejected the model: {error}")
        if options.verbose:
            solver.EnableOutput()
        else:
            solver.SuppressOutput()
        if options.time_limit is not None:
            solver.SetTimeLimit(max(1, int(math.ceil(options.time_limit * 1000))))
        if options.threads is not None and not solver.SetNumThreads(int(options.threads)):
            warn_unsupported(self.name, "threads", f"sub-solver {sub} does not take a thread count")
        # One call: MPSolver keeps only the last parameter string. The user's lines come last and win.
        lines, _ = tolerance_params(sub, options)
        user = options.extra.get("ortools_params")
        text = "\n".join(lines + ([str(user)] if user is not None else []))
        if text and not solver.SetSolverSpecificParametersAsString(text):
            if user is not None:
                raise InvalidParameterError(f"OR-Tools {sub} rejected extra['ortools_params'] = {user!r}")
            from optprune.errors import SolverError

            raise SolverError(f"OR-Tools {sub} rejected the tolerance parameters {lines!r}")
        params = pywraplp.MPSolverParameters()
        if options.mip_gap is not None:
            if model.is_mip:
                params.SetDoubleParam(pywraplp.MPSolverParameters.RELATIVE_MIP_GAP, float(options.mip_gap))
        return solver, params

    def _feasible(self, model: MILP, options: SolveOptions, sub: str) -> bool:
        from ortools.linear_solver import pywraplp

        solver, params = self._make_solver(zero_objective(model), options, sub)
        return solver.Solve(params) in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE)
