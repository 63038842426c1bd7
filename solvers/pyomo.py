"""Pyomo backend (``pip install 'optprune[pyomo]'``): any Pyomo solver, default ``appsi_highs``.

:func:`to_pyomo` turns a :class:`~optprune.milp.MILP` into a Pyomo
``ConcreteModel`` (the AML that OMLT builds on) with one indexed variable
``x``, the objective ``objective`` and the indexed constraint ``rows``::

    min/max  sum_j c_j x_j + offset
    s.t.     row_lower_i <= sum_j A_ij x_j <= row_upper_i   (rows with a finite side)
             col_lower_j <= x_j <= col_upper_j, x_j in Integers where integrality[j]

Each row is one ``LinearExpression`` built from the row's CSR slice (Pyomo
has no array constraint type in its AML; ``pyomo.kernel``'s
``matrix_constraint`` takes CSR but kernel models cannot mix with OMLT's
blocks and most solver interfaces). Expect Pyomo to be by far the slowest
backend to build: it is here for interoperability, not speed.

The solver is picked by ``SolveOptions(extra={"pyomo_solver": name})``;
options for it go in ``extra["pyomo_options"]`` (a dict passed as Pyomo's
``options``). ``time_limit``, ``mip_gap`` and ``threads`` are set through the
solver's ``config`` where it has one (APPSI and ``pyomo.contrib.solver``
interfaces), else through the solver's own option names for HiGHS, CBC,
GLPK, SCIP, Gurobi, CPLEX and Xpress; ``mip_abs_gap``, ``feasibility_tol``
and ``integrality_tol`` through the native names (``_NATIVE_OPTIONS``).
Other solvers ignore them with a warning. ``cutoff`` becomes the row ``c @ x + offset <= cutoff`` (``>=``
when maximising); ``target`` and ``stop_rule`` are ignored with a warning.

Pyomo's termination conditions map to :class:`Status`: optimal /
globallyOptimal / locallyOptimal -> OPTIMAL; feasible -> FEASIBLE;
infeasible -> INFEASIBLE; unbounded -> UNBOUNDED; infeasibleOrUnbounded ->
re-solved with a zero objective; maxTimeLimit, maxIterations,
maxEvaluations, userInterrupt and similar limits -> FEASIBLE with a
solution, else TIME_LIMIT; anything else -> ERROR.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optprune.errors import SolverNotAvailableError
from optprune.milp import MILP, Sense
from optprune.solvers._common import warn_unsupported
from optprune.solvers.base import TOLERANCES, BackendBase, NativeRun, Outcome, SolveOptions, SolveResult, Status

__all__ = ["PyomoBackend", "to_pyomo", "DEFAULT_SOLVER"]

DEFAULT_SOLVER = "appsi_highs"

# Native option names of the shared options for solvers without a config object (and for the
# options a config object lacks, such as the tolerances).
_NATIVE_OPTIONS: dict[str, dict[str, str]] = {
    "highs": {"time_limit": "time_limit", "mip_gap": "mip_rel_gap", "threads": "threads",
              "mip_abs_gap": "mip_abs_gap", "feasibility_tol": "primal_feasibility_tolerance",
              "integrality_tol": "mip_feasibility_tolerance"},
    "cbc": {"time_limit": "sec", "mip_gap": "ratioGap", "threads": "threads", "mip_abs_gap": "allowableGap",
            "feasibility_tol": "primalTolerance", "integrality_tol": "integerTolerance"},
    "glpk": {"time_limit": "tmlim", "mip_gap": "mipgap"},
    "scip": {"time_limit": "limits/time", "mip_gap": "limits/gap", "mip_abs_gap": "limits/absgap",
             "feasibility_tol": "numerics/feastol", "integrality_tol": "numerics/feastol"},
    "gurobi": {"time_limit": "TimeLimit", "mip_gap": "MIPGap", "threads": "Threads", "mip_abs_gap": "MIPGapAbs",
               "feasibility_tol": "FeasibilityTol", "integrality_tol": "IntFeasTol"},
    "cplex": {"time_limit": "timelimit", "mip_gap": "mipgap", "threads": "threads",
              "mip_abs_gap": "mip_tolerances_absmipgap", "feasibility_tol": "simplex_tolerances_feasibility",
              "integrality_tol": "mip_tolerances_integrality"},
    "xpress": {"time_limit": "maxtime", "mip_gap": "miprelstop", "threads": "threads", "mip_abs_gap": "mipabsstop",
               "feasibility_tol": "feastol", "integrality_tol": "miptol"},
}
# HiGHS checks a MIP's rows and integrality with mip_feasibility_tolerance: it gets the smaller tolerance.
_ALSO: dict[str, dict[str, str]] = {"highs": {"feasibility_tol": "mip_feasibility_tolerance"}}
_SHARED = ("time_limit", "mip_gap", "threads", "mip_abs_gap", "feasibility_tol", "integrality_tol")
_TOLERANCE_KEYS = frozenset(TOLERANCES)


def _family(solver_name: str) -> str | None:
    """``"appsi_highs"`` -> ``"highs"``: the solver family is one of the name's parts."""
    return next((f for f in (solver_name, *solver_name.split("_")) if f in _NATIVE_OPTIONS), None)


_OPTIMAL = ("optimal", "globallyOptimal", "locallyOptimal")
_LIMITS = (
    "maxTimeLimit", "maxIterations", "maxEvaluations", "userInterrupt", "resourceInterrupt",
    "minFunctionValue", "minStepLength", "licensingProblems", "other", "intermediateNonInteger",
)


def to_pyomo(model: MILP):
    """A Pyomo ``ConcreteModel`` equal to ``model`` (see module doc) and its variable ``x``.

    Returns ``(pyomo_model, x)`` where ``x[j]`` is column ``j``. A row with
    no nonzeros is kept with a zero coefficient on ``x[0]`` so that the
    model stays equivalent (an empty row with ``0`` outside its bounds
    makes the model infeasible).
    """
    import pyomo.environ as pyo
    from pyomo.core.expr import LinearExpression

    n = model.n_vars
    lower = [None if not math.isfinite(v) else float(v) for v in model.col_lower]
    upper = [None if not math.isfinite(v) else float(v) for v in model.col_upper]
    integer = model.integrality.tolist()

    m = pyo.ConcreteModel(name=model.name)
    m.x = pyo.Var(
        range(n),
        domain=lambda _, j: pyo.Integers if integer[j] else pyo.Reals,
        bounds=lambda _, j: (lower[j], upper[j]),
    )
    x = m.x
    xs = [x[j] for j in range(n)]

    nz = np.flatnonzero(model.c)
    objective = LinearExpression(
        constant=float(model.offset), linear_coefs=model.c[nz].tolist(), linear_vars=[xs[j] for j in nz.tolist()]
    )
    m.objective = pyo.Objective(expr=objective, sense=pyo.maximize if model.sense == Sense.MAXIMIZE else pyo.minimize)

    A = model.A
    indptr = A.indptr
    cols = A.indices.tolist()
    vals = A.data.tolist()
    row_lo = [None if not math.isfinite(v) else float(v) for v in model.row_lower]
    row_hi = [None if not math.isfinite(v) else float(v) for v in model.row_upper]
    kept = [i for i in range(model.n_rows) if row_lo[i] is not None or row_hi[i] is not None]

    def row_rule(_, i):
        s, e = int(indptr[i]), int(indptr[i + 1])
        if s == e:
            expr = LinearExpression(constant=0.0, linear_coefs=[0.0], linear_vars=[xs[0]]) if n else 0.0
        else:
            expr = LinearExpression(constant=0.0, linear_coefs=vals[s:e], linear_vars=[xs[j] for j in cols[s:e]])
        return (row_lo[i], expr, row_hi[i])

    m.rows = pyo.Constraint(kept, rule=row_rule)
    return m, x


class PyomoBackend(BackendBase):
    name = "pyomo"
    package = "pyomo"
    extra = "pyomo"
    supported_tolerances = frozenset(TOLERANCES)  # with the default solver, appsi_highs
    STATUS_MAP = {
        **{name: Status.OPTIMAL for name in _OPTIMAL},
        "feasible": Status.FEASIBLE,
        "infeasible": Status.INFEASIBLE,
        "unbounded": Status.UNBOUNDED,
        "infeasibleOrUnbounded": Outcome.INFEASIBLE_OR_UNBOUNDED,
        **{name: Outcome.LIMIT for name in _LIMITS},
    }

    @property
    def distribution(self) -> str:
        return "pyomo"

    def precheck(self, model: MILP, options: SolveOptions) -> SolveResult | None:
        empty = self._violated_empty_row(model)
        if empty is None:
            return None
        solver_name = str(options.extra.get("pyomo_solver", DEFAULT_SOLVER))
        return self.result(Status.INFEASIBLE, model, message=f"{solver_name}: {empty}")

    @staticmethod
    def _violated_empty_row(model: MILP) -> str | None:
        """Solver interfaces reject constant rows; an empty row with 0 outside its bounds is infeasible."""
        empty = np.diff(model.A.indptr) == 0
        bad = np.flatnonzero(empty & ((model.row_lower > 0) | (model.row_upper < 0)))
        if bad.size:
            i = int(bad[0])
            return f"infeasible: row {i} has no nonzeros and bounds [{model.row_lower[i]}, {model.row_upper[i]}]"
        return None

    def _make_solver(self, solver_name: str):
        import pyomo.environ as pyo

        opt = pyo.SolverFactory(solver_name)
        if opt is None or not opt.available(exception_flag=False):
            raise SolverNotAvailableError(
                f"Pyomo solver {solver_name!r} (extra['pyomo_solver']) is not available on this machine; "
                f"the default, {DEFAULT_SOLVER!r}, needs: pip install highspy"
            )
        return opt

    def tolerances_for(self, model: MILP, options: SolveOptions) -> frozenset[str]:
        family = _family(str(options.extra.get("pyomo_solver", DEFAULT_SOLVER)))
        return frozenset(k for k in _NATIVE_OPTIONS.get(family, {}) if k in _TOLERANCE_KEYS)

    def _configure(self, opt, solver_name: str, options: SolveOptions, model: MILP | None = None) -> dict:
        """Set what the solver's ``config`` takes; return the native ``options`` dict for the rest.

        Tolerances go through the native option names (:data:`_NATIVE_OPTIONS`);
        where two map to one native option the smaller value is kept.
        """
        native: dict = {}
        config = getattr(opt, "config", None)
        config_names = {"time_limit": ("time_limit",), "mip_gap": ("mip_gap", "rel_gap"), "threads": ("threads",),
                        "mip_abs_gap": ("abs_gap",)}
        family = _family(solver_name)
        table = _NATIVE_OPTIONS.get(family, {})
        for option in _SHARED:
            value = getattr(options, option)
            if value is None:
                continue
            done = False
            if config is not None:
                for attr in config_names.get(option, ()):
                    if attr in config:
                        setattr(config, attr, value)
                        done = True
                        break
            keys = [table[option]] if not done and option in table else []
            keys += [_ALSO.get(family, {})[option]] if option in _ALSO.get(family, {}) else []
            for key in keys:
                native[key] = min(native[key], value) if key in native and option in _TOLERANCE_KEYS else value
                done = True
            if not done and not (model is not None and not model.is_mip and option in _TOLERANCE_KEYS
                                 and option != "feasibility_tol"):
                warn_unsupported(self.name, option, f"no known way to pass it to Pyomo solver {solver_name!r}")
        native.update(dict(options.extra.get("pyomo_options", {})))  # the user's options win
        for key in options.extra:
            if key not in ("pyomo_solver", "pyomo_options"):
                warn_unsupported(self.name, f"extra[{key!r}]", "known keys: 'pyomo_solver', 'pyomo_options'")
        return native

    def _run(self, model: MILP, options: SolveOptions, solver_name: str):
        """Build, solve; returns (termination name, x or None, bound, elapsed)."""
        pm, x = to_pyomo(model)
        opt = self._make_solver(solver_name)
        native = self._configure(opt, solver_name, options, model)
        start = time.perf_counter()
        results = opt.solve(pm, tee=bool(options.verbose), load_solutions=False, options=native or None)
        elapsed = time.perf_counter() - start
        termination = str(results.solver.termination_condition.name)
        values = None
        try:
            if len(results.solution) > 0:
                pm.solutions.load_from(results)
                # None where the solver never saw the column (in no row, zero objective): the
                # result builder fills those with a value inside the bounds.
                raw = [x[j].value for j in range(model.n_vars)]
                values = np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
        except ValueError:  # Pyomo refuses to load solutions of failed solves
            values = None
        problem = results.problem
        side = problem.upper_bound if model.sense == Sense.MAXIMIZE else problem.lower_bound
        bound = float(side) if side is not None else math.nan
        return termination, values, bound, elapsed

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        solver_name = str(options.extra.get("pyomo_solver", DEFAULT_SOLVER))
        termination, x, bound, elapsed = self._run(built, options, solver_name)
        if x is None:
            bound = math.nan
        return NativeRun(status=termination, x=x, bound=bound, time_s=elapsed,
                         message=f"{solver_name}: {termination}", prefix=f"{solver_name}: ")

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        solver_name = str(options.extra.get("pyomo_solver", DEFAULT_SOLVER))
        quiet = SolveOptions(time_limit=options.time_limit, extra={"pyomo_solver": solver_name})
        termination, x, _, _ = self._run(model, quiet, solver_name)
        if termination == "infeasible":
            return Status.INFEASIBLE
        return Status.FEASIBLE if x is not None else Status.ERROR
