"""Gurobi backend (gurobipy, ``pip install 'optprune[gurobi]'``).

The columns go in with one ``addMVar`` call (bound, type and cost arrays)
and the rows with at most three ``addMConstr`` calls on the CSR matrix, split
by kind (:func:`optprune.solvers._common.split_rows`: ``A_eq x = b``,
``A_le x <= u``, ``A_ge x >= l``; a ranged row is in both of the last two).

Options: ``time_limit`` -> ``TimeLimit``, ``mip_gap`` -> ``MIPGap``,
``mip_abs_gap`` -> ``MIPGapAbs``, ``feasibility_tol`` -> ``FeasibilityTol``,
``integrality_tol`` -> ``IntFeasTol``, ``threads`` -> ``Threads``, ``cutoff``
-> ``Cutoff`` (native), ``start`` -> the variables' ``Start`` attribute;
a quadratic objective ``1/2 x^T Q x`` goes in with one ``setMObjective(Q / 2, c, offset)`` call (Gurobi's
objective is ``x^T Q x + c x``, without the half);
``extra`` takes Gurobi parameter names. ``stop_rule`` / ``target`` are checked
in the MIP and MIPSOL callbacks (``terminate()``), which also pass improving
solutions to ``on_incumbent``. LP sessions (:class:`GurobiLPSession`) change
only the objective, so the simplex restarts from the previous basis.

The pip wheel carries a size-limited license (at most 2000 variables and
2000 linear constraints); a larger model raises
:class:`GurobiLicenseLimitError` saying so and how to get a full license.
Statuses map through :attr:`GurobiBackend.STATUS_MAP`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optprune.errors import CapabilityError
from optprune.milp import MILP, Sense
from optprune.solvers._common import native_values, row_kinds, split_rows, warn_unsupported
from optprune.solvers._native import native_stdout_to_stderr, solver_boundary, with_cost
from optprune.solvers.base import (
    TOLERANCES,
    BackendBase,
    NativeRun,
    Outcome,
    Progress,
    SolveOptions,
    Status,
    stop_rules,
)

__all__ = ["GurobiBackend", "GurobiLPSession", "GurobiLicenseLimitError", "to_gurobi", "gurobi_params",
           "SIZE_LIMIT"]

SIZE_LIMIT = 2000
"""Variables and linear constraints allowed by the size-limited license of the gurobipy pip wheel."""
_SIZE_LIMIT_ERRNO = 10010  # GRB.Error.SIZE_LIMIT_EXCEEDED


class GurobiLicenseLimitError(CapabilityError):
    """The model is larger than the Gurobi license on this machine allows."""


def _license_error(model: MILP, exc: Exception) -> GurobiLicenseLimitError:
    return GurobiLicenseLimitError(
        f"backend 'gurobi': the model has {model.n_vars} variables and {model.n_rows} constraints, more than the "
        f"size-limited license of the gurobipy pip package allows ({SIZE_LIMIT} variables and {SIZE_LIMIT} linear "
        f"constraints); Gurobi said: {exc}. For larger models install a full license (free academic licenses: "
        "https://www.gurobi.com/academia/academic-program-and-licenses/; commercial or evaluation licenses from "
        "Gurobi) and point GRB_LICENSE_FILE at it, or choose another backend (solver='highs')"
    )


_ENV = None


def _env():
    """One quiet Gurobi environment per process (its license banner goes to stderr)."""
    global _ENV
    if _ENV is None:
        import gurobipy as gp

        with native_stdout_to_stderr():
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
        _ENV = env
    return _ENV


def to_gurobi(model: MILP, *, verbose: bool = False):
    """A ``gurobipy.Model`` holding ``model``, its ``MVar`` of columns and its row blocks ``{kind: MConstr}``.

    min/max ``c @ x + offset`` s.t. ``row_lower <= A x <= row_upper`` (split by
    kind, module doc), ``col_lower <= x <= col_upper``, ``x_j`` integer where
    ``integrality[j]``.
    """
    import gurobipy as gp
    from gurobipy import GRB

    m = gp.Model(model.name, env=_env())
    m.Params.OutputFlag = 1 if verbose else 0
    vtype = np.where(model.integrality, GRB.INTEGER, GRB.CONTINUOUS)
    lb = np.where(np.isfinite(model.col_lower), model.col_lower, -GRB.INFINITY)
    ub = np.where(np.isfinite(model.col_upper), model.col_upper, GRB.INFINITY)
    x = m.addMVar(model.n_vars, lb=lb, ub=ub, vtype=vtype, obj=np.asarray(model.c, dtype=np.float64), name="x")
    sense = GRB.MAXIMIZE if model.sense == Sense.MAXIMIZE else GRB.MINIMIZE
    m.ModelSense = sense
    m.ObjCon = float(model.offset)
    if model.is_quadratic:
        m.setMObjective(0.5 * model.Q, np.asarray(model.c, dtype=np.float64), float(model.offset), xQ_L=x, xQ_R=x, xc=x,
                        sense=sense)
    blocks = {}
    for kind, (A, rhs) in split_rows(model).items():
        if A.shape[0]:
            blocks[kind] = m.addMConstr(A, x, {"eq": GRB.EQUAL, "le": GRB.LESS_EQUAL, "ge": GRB.GREATER_EQUAL}[kind],
                                        np.asarray(rhs, dtype=np.float64), name=kind)
    return m, x, blocks


def gurobi_params(options: SolveOptions) -> dict[str, float | int]:
    """Gurobi parameter names and values for the shared options (module doc)."""
    params: dict[str, float | int] = dict(native_values(options, {
        "time_limit": "TimeLimit", "mip_gap": "MIPGap", "mip_abs_gap": "MIPGapAbs", "feasibility_tol": "FeasibilityTol",
        "integrality_tol": "IntFeasTol", "cutoff": "Cutoff"}))
    if options.threads is not None:
        params["Threads"] = int(options.threads)
    if options.focus == "bound":
        params["MIPFocus"] = 3  # work on the dual bound
    return params


def _row_dual(model: MILP, blocks: dict) -> np.ndarray:
    """One multiplier per row of ``model``: the sum of the ``Pi`` of its pieces (a ranged row has two)."""
    y = np.zeros(model.n_rows)
    for kind, rows in row_kinds(model).items():
        if kind in blocks:
            y[rows] += np.asarray(blocks[kind].Pi, dtype=np.float64)
    return y


class GurobiLPSession:
    """``minimize(cost)`` over one LP with only the objective changed (Gurobi restarts from the last basis)."""

    def __init__(self, model: MILP, options: SolveOptions | None = None) -> None:
        self.model = with_cost(model, np.zeros(model.n_vars), relax=True)
        with solver_boundary("gurobi"):
            self._m, self._x, self._blocks = to_gurobi(self.model)
            for key, value in gurobi_params(options or SolveOptions()).items():
                self._m.setParam(key, value)

    def minimize(self, cost: np.ndarray) -> tuple[Status, float, np.ndarray | None]:
        import gurobipy as gp

        with solver_boundary("gurobi"):
            self._x.Obj = np.asarray(cost, dtype=np.float64)
            try:
                self._m.optimize()
            except gp.GurobiError as exc:
                if exc.errno == _SIZE_LIMIT_ERRNO:
                    raise _license_error(self.model, exc) from None
                raise
            status = GurobiBackend.STATUS_MAP.get(_status_name(self._m.Status), Status.ERROR)
            if status != Status.OPTIMAL:
                return (status if isinstance(status, Status) else Status.ERROR), math.nan, None
            return Status.OPTIMAL, float(self._m.ObjVal), _row_dual(self.model, self._blocks)


def _status_name(code: int) -> str:
    from gurobipy import GRB

    names = {getattr(GRB.Status, n): n for n in dir(GRB.Status) if n.isupper()}
    return names.get(code, str(code))


class GurobiBackend(BackendBase):
    name = "gurobi"
    package = "gurobipy"
    extra = "gurobi"
    supports_callbacks = True
    supports_incumbent_callback = True
    supports_start = True
    supports_focus = True
    native_cutoff = True
    supports_quadratic = True  # setMObjective with Q / 2
    supports_miqp = True
    supported_tolerances = frozenset(TOLERANCES)
    STATUS_MAP = {
        "OPTIMAL": Status.OPTIMAL,
        "INFEASIBLE": Status.INFEASIBLE,
        "UNBOUNDED": Status.UNBOUNDED,
        "INF_OR_UNBD": Outcome.INFEASIBLE_OR_UNBOUNDED,
        "CUTOFF": Outcome.CUTOFF,
        "SUBOPTIMAL": Status.FEASIBLE,
        **{name: Outcome.LIMIT for name in ("ITERATION_LIMIT", "NODE_LIMIT", "TIME_LIMIT", "SOLUTION_LIMIT",
                                            "INTERRUPTED", "USER_OBJ_LIMIT", "WORK_LIMIT", "MEM_LIMIT")},
    }

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        import gurobipy as gp

        try:
            return self._run(model, options)
        except gp.GurobiError as exc:
            if exc.errno == _SIZE_LIMIT_ERRNO:
                raise _license_error(model, exc) from None
            raise

    def _run(self, model: MILP, options: SolveOptions) -> NativeRun:
        import gurobipy as gp
        from gurobipy import GRB

        m, x, blocks = to_gurobi(model, verbose=options.verbose)
        for key, value in gurobi_params(options).items():
            m.setParam(key, value)
        for key, value in options.extra.items():
            try:
                m.setParam(key, value)
            except gp.GurobiError:
                warn_unsupported(self.name, f"extra[{key!r}]", f"Gurobi has no parameter {key!r} taking {value!r}")
        if options.start is not None:
            x.Start = options.start

        rules = stop_rules(options, model.sense) if model.is_mip else []
        on_incumbent = options.on_incumbent if model.is_mip else None
        state: dict = {"stopped": None, "error": None, "best": math.nan}
        better = (lambda a, b: a > b) if model.sense == Sense.MAXIMIZE else (lambda a, b: a < b)

        def callback(cb_model, where) -> None:
            if state["error"] is not None or state["stopped"] is not None:
                return
            try:
                if where == GRB.Callback.MIPSOL:
                    obj = float(cb_model.cbGet(GRB.Callback.MIPSOL_OBJ))
                    progress = Progress(primal=obj, bound=float(cb_model.cbGet(GRB.Callback.MIPSOL_OBJBND)),
                                        time_s=float(cb_model.cbGet(GRB.Callback.RUNTIME)))
                    if on_incumbent is not None and (math.isnan(state["best"]) or better(obj, state["best"])):
                        state["best"] = obj
                        on_incumbent(np.asarray(cb_model.cbGetSolution(x), dtype=np.float64), obj, progress.time_s)
                elif where == GRB.Callback.MIP:
                    primal = float(cb_model.cbGet(GRB.Callback.MIP_OBJBST))
                    progress = Progress(primal=primal if abs(primal) < GRB.INFINITY else math.nan,
                                        bound=float(cb_model.cbGet(GRB.Callback.MIP_OBJBND)),
                                        time_s=float(cb_model.cbGet(GRB.Callback.RUNTIME)))
                else:
                    return
                if any(rule(progress) for rule in rules):
                    state["stopped"] = progress
                    cb_model.terminate()
            except Exception as exc:  # a user callback failed: stop, re-raise after optimize()
                state["error"] = exc
                cb_model.terminate()

        start = time.perf_counter()
        m.optimize(callback if rules or on_incumbent is not None else None)
        elapsed = time.perf_counter() - start
        if state["error"] is not None:
            raise state["error"]
        has_sol = m.SolCount > 0
        bound = math.nan
        if model.is_mip:
            try:
                bound = float(m.ObjBound)
            except (gp.GurobiError, AttributeError):  # no bound after some early terminations
                bound = math.nan
        return NativeRun(
            status=_status_name(m.Status),
            x=np.asarray(x.X, dtype=np.float64) if has_sol else None,
            objective=float(m.ObjVal) if has_sol else math.nan,
            bound=bound,
            time_s=elapsed,
            nodes=int(m.NodeCount) if model.is_mip else 0,
            stopped=state["stopped"],
            row_dual=(_row_dual(model, blocks) if has_sol and not model.is_mip and not model.is_quadratic
                      and not options.cutoff else None),
        )

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        """The zero-objective copy with presolve off (presolve is what returns "infeasible or unbounded")."""
        m, _, _ = to_gurobi(model)
        m.Params.Presolve = 0
        m.Params.DualReductions = 0
        if options.time_limit is not None:
            m.Params.TimeLimit = float(options.time_limit)
        m.optimize()
        name = _status_name(m.Status)
        if name == "INFEASIBLE":
            return Status.INFEASIBLE
        return Status.FEASIBLE if m.SolCount > 0 else Status.ERROR

    def lp_session(self, model: MILP, options: SolveOptions | None = None) -> GurobiLPSession:
        """A warm-started :class:`GurobiLPSession` over ``model``'s rows and bounds (integrality dropped)."""
        self.require()
        return GurobiLPSession(model, options)
