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
from optprune.solvers._common import tightest_feasibility, warn_unsupported
from optprune.solvers._native import zero_objective
from optprune.solvers.base import TOLERANCES, BackendBase, NativeRun, SolveOptions, Status

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
        feastol = tightest_feasibility(options)
        if feastol is not None:
            lines.append(f"numerics/feastol = {_fmt(feastol)}")
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


_CODE_NAMES = {0: "optimal", 1: "feasible", 2: "infeasible", 3: "unbounded", 4: "abnormal", 5: "model invalid",
               6: "not solved"}  # pywraplp.Solver's result codes


class OrtoolsBackend(BackendBase):
    name = "ortools"
    package = "ortools"
    extra = "ortools"
    supported_tolerances = frozenset(TOLERANCES)  # with the default MIP sub-solver, SCIP
    STATUS_MAP = {
        "optimal": Status.OPTIMAL,
        "feasible": Status.FEASIBLE,
        "infeasible": Status.INFEASIBLE,
        "unbounded": Status.UNBOUNDED,
        "not solved": Status.TIME_LIMIT,  # with a time limit; without one it is an ERROR
    }

    def tolerances_for(self, model: MILP, options: SolveOptions) -> frozenset[str]:
        return tolerance_params(self._sub_solver(model, options), options)[1]

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

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        from ortools.linear_solver import pywraplp

        sub = self._sub_solver(model, options)
        for key in options.extra:
            if key not in ("ortools_solver", "ortools_params"):
                warn_unsupported(self.name, f"extra[{key!r}]", "known keys: 'ortools_solver', 'ortools_params'")
        self.warn_unsupported_tolerances(model, options, tolerance_params(sub, options)[1])
        solver, params = self._make_solver(built, options, sub)
        start = time.perf_counter()
        code = solver.Solve(params)
        elapsed = time.perf_counter() - start

        S = pywraplp.Solver
        has_sol = code in (S.OPTIMAL, S.FEASIBLE)
        name = _CODE_NAMES.get(code, str(code))
        if code == S.NOT_SOLVED and options.time_limit is None:
            name = "not solved (no time limit)"
        return NativeRun(
            status=name,
            x=np.array([v.solution_value() for v in solver.variables()], dtype=np.float64)[: model.n_vars]
            if has_sol else None,
            objective=float(solver.Objective().Value()) if has_sol else math.nan,
            bound=float(solver.Objective().BestBound()) if model.is_mip else math.nan,
            nodes=int(solver.nodes()) if model.is_mip else 0,
            time_s=elapsed, message=f"{sub}: {name}", prefix=f"{sub}: ",
        )

    def refine_status(self, model: MILP, options: SolveOptions, run: NativeRun, status: Status,
                      message: str) -> tuple[Status, str]:
        """Some sub-solvers report an unbounded model as infeasible: a feasible zero-objective copy means UNBOUNDED."""
        if status == Status.INFEASIBLE and options.cutoff is None and np.any(model.c) and \
                self.probe(zero_objective(model), options) == Status.FEASIBLE:
            return Status.UNBOUNDED, f"{run.prefix}unbounded (reported infeasible; the zero-objective copy is feasible)"
        return status, message

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

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        from ortools.linear_solver import pywraplp

        solver, params = self._make_solver(model, options, self._sub_solver(model, options))
        code = solver.Solve(params)
        if code in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
            return Status.FEASIBLE
        return Status.INFEASIBLE if code == pywraplp.Solver.INFEASIBLE else Status.ERROR
