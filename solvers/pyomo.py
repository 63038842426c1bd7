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
GLPK, SCIP, Gurobi, CPLEX and Xpress; other solvers ignore them with a
warning. ``cutoff`` becomes the row ``c @ x + offset <= cutoff`` (``>=``
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
from optprune.solvers._common import (
    native_stdout_to_stderr,
    resolve_infeasible_or_unbounded,
    solver_boundary,
    warn_unsupported,
    with_cutoff_row,
)
from optprune.solvers.base import BackendBase, SolveOptions, SolveResult, Status

__all__ = ["PyomoBackend", "to_pyomo", "DEFAULT_SOLVER"]

DEFAULT_SOLVER = "appsi_highs"

# Native option names (time limit, relative MIP gap, threads) for solvers without a config object.
_NATIVE_OPTIONS: dict[str, tuple[str | None, str | None, str | None]] = {
    "highs": ("time_limit", "mip_rel_gap", "threads"),
    "cbc": ("sec", "ratioGap", "threads"),
    "glpk": ("tmlim", "mipgap", None),
    "scip": ("limits/time", "limits/gap", None),
    "gurobi": ("TimeLimit", "MIPGap", "Threads"),
    "cplex": ("timelimit", "mipgap", "threads"),
    "xpress": ("maxtime", "miprelstop", "threads"),
}

_OPTIMAL = {"optimal", "globallyOptimal", "locallyOptimal"}
_LIMITS = {
    "maxTimeLimit", "maxIterations", "maxEvaluations", "userInterrupt", "resourceInterrupt",
    "minFunctionValue", "minStepLength", "licensingProblems", "other", "intermediateNonInteger",
}


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

    @property
    def distribution(self) -> str:
        return "pyomo"

    def solve(self, model: MILP, options: SolveOptions) -> SolveResult:
        self.require()
        self.check_model(model)
        solver_name = str(options.extra.get("pyomo_solver", DEFAULT_SOLVER))
        empty = self._violated_empty_row(model)
        if empty is not None:
            return self.result(Status.INFEASIBLE, model, message=f"{solver_name}: {empty}")
        with solver_boundary(self.name), native_stdout_to_stderr():
            return self._solve(model, options, solver_name)

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

    def _configure(self, opt, solver_name: str, options: SolveOptions) -> dict:
        """Set what the solver's ``config`` takes; return the native ``options`` dict for the rest."""
        native = dict(options.extra.get("pyomo_options", {}))
        config = getattr(opt, "config", None)
        wanted = {"time_limit": options.time_limit, "mip_gap": options.mip_gap, "threads": options.threads}
        config_names = {"time_limit": ("time_limit",), "mip_gap": ("mip_gap", "rel_gap"), "threads": ("threads",)}
        # "gurobi_direct", "appsi_highs": the solver family is one of the name's parts
        families = [solver_name, *solver_name.split("_")]
        table = next((_NATIVE_OPTIONS[f] for f in families if f in _NATIVE_OPTIONS), None)
        for option, value in wanted.items():
            if value is None:
                continue
            done = False
            if config is not None:
                for attr in config_names[option]:
                    if attr in config:
                        setattr(config, attr, value)
                        done = True
                        break
            if not done and table is not None:
                key = table[("time_limit", "mip_gap", "threads").index(option)]
                if key is not None:
                    native.setdefault(key, value)
                    done = True
            if not done:
                warn_unsupported(self.name, option, f"no known way to pass it to Pyomo solver {solver_name!r}")
        for option in ("target", "stop_rule"):
            if getattr(options, option) is not None:
                warn_unsupported(self.name, option, "Pyomo has no solver-neutral way to pass it")
        for key in options.extra:
            if key not in ("pyomo_solver", "pyomo_options"):
                warn_unsupported(self.name, f"extra[{key!r}]", "known keys: 'pyomo_solver', 'pyomo_options'")
        return native

    def _run(self, model: MILP, options: SolveOptions, solver_name: str):
        """Build, solve; returns (termination name, x or None, bound, elapsed)."""
        pm, x = to_pyomo(model)
        opt = self._make_solver(solver_name)
        native = self._configure(opt, solver_name, options)
        start = time.perf_counter()
        results = opt.solve(pm, tee=bool(options.verbose), load_solutions=False, options=native or None)
        elapsed = time.perf_counter() - start
        termination = str(results.solver.termination_condition.name)
        values = None
        try:
            if len(results.solution) > 0:
                pm.solutions.load_from(results)
                raw = [x[j].value for j in range(model.n_vars)]
                if all(v is not None for v in raw):
                    values = np.asarray(raw, dtype=np.float64)
        except ValueError:  # Pyomo refuses to load solutions of failed solves
            values = None
        problem = results.problem
        side = problem.upper_bound if model.sense == Sense.MAXIMIZE else problem.lower_bound
        bound = float(side) if side is not None else math.nan
        return termination, values, bound, elapsed

    def _solve(self, model: MILP, options: SolveOptions, solver_name: str) -> SolveResult:
        built = model if options.cutoff is None else with_cutoff_row(model, options.cutoff)
        termination, x, bound, elapsed = self._run(built, options, solver_name)
        if not math.isfinite(bound):
            bound = math.nan
        message = f"{solver_name}: {termination}"
        if termination in _OPTIMAL:
            status = Status.OPTIMAL
        elif termination == "feasible":
            status = Status.FEASIBLE if x is not None else Status.ERROR
        elif termination == "infeasible":
            status = Status.INFEASIBLE
            if options.cutoff is not None:
                message = f"{solver_name}: no solution better than the objective cutoff"
        elif termination == "unbounded":
            status = Status.UNBOUNDED
        elif termination == "infeasibleOrUnbounded":
            quiet = SolveOptions(time_limit=options.time_limit, extra={"pyomo_solver": solver_name})
            status = resolve_infeasible_or_unbounded(lambda probe: self._probe(probe, quiet, solver_name), model)
        elif termination in _LIMITS:
            status = Status.FEASIBLE if x is not None else Status.TIME_LIMIT
        else:
            status = Status.ERROR
        if status == Status.OPTIMAL and x is None:
            status, message = Status.ERROR, f"{solver_name}: reported optimal but returned no solution"
        if not status.has_solution:
            x, bound = None, math.nan
        return self.result(status, model, x=x, bound=bound, time_s=elapsed, message=message)

    def _probe(self, probe: MILP, options: SolveOptions, solver_name: str) -> Status:
        termination, x, _, _ = self._run(probe, options, solver_name)
        if termination == "infeasible":
            return Status.INFEASIBLE
        return Status.FEASIBLE if x is not None else Status.ERROR
