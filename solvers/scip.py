"""SCIP backend (PySCIPOpt, ``pip install 'optprune[scip]'``).

The columns go in through ``addMatrixVar`` with the bound, type and cost
arrays. PySCIPOpt's matrix constraints multiply a *dense* array by the
variables, so rows are built one per row instead: each row's linear
expression is made from its CSR slice in a single ``Expr`` constructor call
(no per-coefficient Python arithmetic), and all rows are added in one
``addConss`` call.

A quadratic objective ``1/2 x^T Q x`` (convex, checked by the lifecycle) goes in through epigraph
variables with objective coefficient 1, one per connected block of ``Q`` (a separable objective gets one
per block), each with one quadratic constraint ``1/2 x_b^T Q_b x_b - t_b <= 0`` (``>= 0`` when
maximising) made in one ``Expr`` constructor call from the upper triangle of ``Q``; SCIP's nonlinear
handler recognises them as convex and separates gradient cuts. A MIP start sets each ``t_b`` to its
block's value.

Early stop (``target``, ``stop_rule``) uses an event handler on
BESTSOLFOUND and DUALBOUNDIMPROVED that calls ``interruptSolve``; the same
handler passes incumbents to ``on_incumbent``. A MIP start goes in with
``addSol``; the objective cutoff uses ``setObjlimit``. SCIP's statuses map
(:attr:`ScipBackend.STATUS_MAP`) as follows:
optimal and gaplimit -> OPTIMAL; infeasible -> INFEASIBLE; unbounded ->
UNBOUNDED; inforunbd -> re-solved with a zero objective to tell the two
apart; every limit and user interrupt -> FEASIBLE with a solution, else
TIME_LIMIT.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optprune.milp import MILP, Sense
from optprune.solvers._common import native_values, tightest_feasibility, warn_unsupported
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

__all__ = ["ScipBackend", "to_scip", "scip_params"]

_LIMIT_STATUSES = (
    "timelimit", "nodelimit", "totalnodelimit", "stallnodelimit", "sollimit", "bestsollimit",
    "userinterrupt", "memlimit", "restartlimit", "primallimit", "duallimit",
)


def to_scip(model: MILP, *, verbose: bool = False):
    """A ``pyscipopt.Model`` holding ``model`` and its variables (a 1-d object array).

    min/max ``c @ x + offset`` s.t. ``row_lower <= A x <= row_upper``,
    ``col_lower <= x <= col_upper``, ``x_j`` integer where ``integrality[j]``.
    Infinite bounds become SCIP's infinity (1e20).
    """
    import pyscipopt
    from pyscipopt.scip import Expr, ExprCons, Term

    scip = pyscipopt.Model(model.name)
    if not verbose:
        scip.hideOutput()
    inf = scip.infinity()
    n = model.n_vars
    shape = (n,)
    vtype = np.where(model.integrality, "I", "C")
    lb = np.clip(model.col_lower, -inf, inf).astype(object)
    ub = np.clip(model.col_upper, -inf, inf).astype(object)
    lb[model.col_lower <= -inf] = None
    ub[model.col_upper >= inf] = None
    x = scip.addMatrixVar(shape, name="x", vtype=vtype, lb=lb, ub=ub, obj=np.asarray(model.c, dtype=float)) if n else np.empty(0, dtype=object)
    if model.sense == Sense.MAXIMIZE:
        scip.setMaximize()
    else:
        scip.setMinimize()
    if model.offset:
        scip.addObjoffset(float(model.offset))

    variables = list(np.asarray(x).reshape(-1))
    terms = [Term(v) for v in variables]
    A = model.A
    indptr = A.indptr
    cols = A.indices.tolist()
    vals = A.data.tolist()
    row_lo = [None if v <= -inf else float(v) for v in model.row_lower]
    row_hi = [None if v >= inf else float(v) for v in model.row_upper]
    conss = []
    for i in range(model.n_rows):
        lo, hi = row_lo[i], row_hi[i]
        if lo is None and hi is None:
            continue  # a free row constrains nothing
        s, e = int(indptr[i]), int(indptr[i + 1])
        expr = Expr(dict(zip([terms[j] for j in cols[s:e]], vals[s:e], strict=True)))
        conss.append(ExprCons(expr, lo, hi))
    if conss:
        scip.addConss(conss)
    scip.data = {"epigraph": _add_quadratic_objective(scip, model, variables) if model.is_quadratic else []}
    return scip, np.asarray(variables, dtype=object)


def _add_quadratic_objective(scip, model: MILP, variables: list) -> list:
    """Epigraph variables (objective coefficient 1) of ``1/2 x^T Q x``, one per connected block of ``Q``.

    A separable objective gets one epigraph per block (``Q = kron(I_m, A)`` gets ``m``), so each of SCIP's
    gradient cuts tightens one block instead of the whole sum.
    """
    import scipy.sparse as sp
    from pyscipopt.scip import Expr, ExprCons, Term
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(model.Q, directed=False)
    upper = sp.coo_matrix(sp.triu(model.Q))
    coef = np.where(upper.row == upper.col, 0.5, 1.0) * upper.data  # 1/2 Q_ii x_i^2 + Q_ij x_i x_j (i < j)
    block = labels[upper.row]
    order = np.argsort(block, kind="stable")
    rows, cols, coef, block = upper.row[order].tolist(), upper.col[order].tolist(), coef[order].tolist(), block[order]
    edges = np.flatnonzero(np.diff(block)) + 1
    starts, ends = [0, *edges.tolist()], [*edges.tolist(), len(rows)]
    epigraphs, conss = [], []
    maximise = model.sense == Sense.MAXIMIZE
    for number, (s, e) in enumerate(zip(starts, ends, strict=True)):
        t = scip.addVar(name=f"quadratic_objective_{number}", vtype="C", lb=None, ub=None, obj=1.0)
        terms = dict(zip([Term(variables[i], variables[j]) for i, j in zip(rows[s:e], cols[s:e], strict=True)],
                         coef[s:e], strict=True))
        terms[Term(t)] = -1.0
        expr = Expr(terms)
        conss.append(ExprCons(expr, 0.0, None) if maximise else ExprCons(expr, None, 0.0))
        epigraphs.append(t)
    scip.addConss(conss)
    return epigraphs


def scip_params(options: SolveOptions) -> dict[str, float]:
    """SCIP parameters for the shared options.

    ``time_limit`` -> ``limits/time``, ``mip_gap`` -> ``limits/gap``,
    ``mip_abs_gap`` -> ``limits/absgap``; SCIP checks rows, bounds and
    integrality with one ``numerics/feastol``, which gets the smaller of
    ``feasibility_tol`` and ``integrality_tol``.
    """
    params = native_values(options, {"time_limit": "limits/time", "mip_gap": "limits/gap",
                                     "mip_abs_gap": "limits/absgap"})
    feastol = tightest_feasibility(options)
    if feastol is not None:
        params["numerics/feastol"] = feastol
    return params


class ScipBackend(BackendBase):
    name = "scip"
    package = "pyscipopt"
    extra = "scip"
    supports_callbacks = True
    supports_incumbent_callback = True
    supports_start = True
    supports_focus = True
    native_cutoff = True  # setObjlimit
    supports_quadratic = True  # an epigraph variable and one quadratic constraint
    supports_miqp = True
    supported_tolerances = frozenset(TOLERANCES)
    STATUS_MAP = {
        "optimal": Status.OPTIMAL,
        "gaplimit": Status.OPTIMAL,
        "infeasible": Status.INFEASIBLE,
        "unbounded": Status.UNBOUNDED,
        "inforunbd": Outcome.INFEASIBLE_OR_UNBOUNDED,
        **{name: Outcome.LIMIT for name in _LIMIT_STATUSES},
    }

    @property
    def distribution(self) -> str:
        return "PySCIPOpt"

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        scip, variables = to_scip(model, verbose=options.verbose)
        for key, value in scip_params(options).items():
            scip.setParam(key, value)
        if options.threads is not None and options.threads > 1:
            warn_unsupported(self.name, "threads", "SCIP's optimize() runs on one thread")
        if options.cutoff is not None:
            scip.setObjlimit(float(options.cutoff))
        if options.focus == "bound":
            from pyscipopt import SCIP_PARAMSETTING

            scip.setHeuristics(SCIP_PARAMSETTING.OFF)
        for key, value in options.extra.items():
            if "/" in key:
                scip.setParam(key, value)
            else:
                warn_unsupported(self.name, f"extra[{key!r}]", "SCIP parameters look like 'limits/nodes'")
        if options.start is not None:
            sol = scip.createSol()
            for var, value in zip(variables.tolist(), options.start.tolist(), strict=True):
                scip.setSolVal(sol, var, value)
            if scip.data["epigraph"]:
                _set_epigraph_start(scip, sol, model, options.start)
            scip.addSol(sol, free=True)  # SCIP checks it; an infeasible start is dropped

        rules = stop_rules(options, model.sense)
        handler = None
        if rules or options.on_incumbent is not None:
            handler = _make_stop_handler_class()(rules, model.sense, options.on_incumbent, variables)
            scip.includeEventhdlr(handler, "optprune_stop", "early stop for target / stop_rule, incumbents")

        start = time.perf_counter()
        scip.optimize()
        elapsed = time.perf_counter() - start
        if handler is not None and handler.error is not None:
            raise handler.error

        x, objective = None, math.nan
        if scip.getNSols() > 0:
            best = scip.getBestSol()
            x = np.array([scip.getSolVal(best, v) for v in variables], dtype=np.float64)
            objective = float(scip.getSolObjVal(best))
            if model.is_quadratic:  # SCIP's value is the epigraph's, which may sit below 1/2 x^T Q x by feastol
                objective = model.objective_value(x)
        # SCIP's "solution" of an unbounded model sits at its infinity (1e20): the lifecycle drops it.
        stopped = handler.progress if handler is not None and handler.stopped else None
        bound = float(scip.getDualbound())
        if abs(bound) >= scip.infinity():
            bound = math.nan
        return NativeRun(status=scip.getStatus(), x=x, objective=objective, bound=bound,
                         time_s=elapsed, nodes=int(scip.getNTotalNodes()), stopped=stopped)

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        scip, _ = to_scip(model)
        if options.time_limit is not None:
            scip.setParam("limits/time", float(options.time_limit))
        scip.setPresolving(_presolve_off())
        scip.optimize()
        if scip.getStatus() == "infeasible":
            return Status.INFEASIBLE
        return Status.FEASIBLE if scip.getNSols() > 0 else Status.ERROR


def _set_epigraph_start(scip, sol, model: MILP, start: np.ndarray) -> None:
    """Each epigraph variable of a MIP start at its block's ``1/2 s^T Q_block s``."""
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(model.Q, directed=False)
    per_column = start * (model.Q @ start) * 0.5
    used = np.unique(labels[np.flatnonzero(np.diff(model.Q.indptr) > 0)])
    values = np.bincount(labels, weights=per_column)[used]  # components in the order epigraphs were made
    for t, value in zip(scip.data["epigraph"], values.tolist(), strict=True):
        scip.setSolVal(sol, t, value)


def _presolve_off():
    from pyscipopt import SCIP_PARAMSETTING

    return SCIP_PARAMSETTING.OFF


def _make_stop_handler_class():
    from pyscipopt import SCIP_EVENTTYPE, Eventhdlr

    class StopHandler(Eventhdlr):
        """Interrupts SCIP when any rule holds for (incumbent, dual bound, time); passes incumbents on."""

        def __init__(self, rules, sense: Sense, on_incumbent=None, variables=None) -> None:
            self.rules = rules
            self.sense = sense
            self.on_incumbent = on_incumbent
            self.variables = variables
            self.stopped = False
            self.progress: Progress | None = None
            self.error: BaseException | None = None
            self._events = SCIP_EVENTTYPE.BESTSOLFOUND | SCIP_EVENTTYPE.DUALBOUNDIMPROVED

        def eventinit(self) -> None:
            self.model.catchEvent(self._events, self)

        def eventexit(self) -> None:
            self.model.dropEvent(self._events, self)

        def eventexec(self, event) -> None:
            scip = self.model
            inf = scip.infinity()
            primal = scip.getPrimalbound() if scip.getNSols() > 0 else math.nan
            dual = scip.getDualbound()
            if abs(dual) >= inf:
                dual = math.copysign(math.inf, dual)
            progress = Progress(primal=float(primal), bound=float(dual), time_s=float(scip.getSolvingTime()))
            try:
                if self.on_incumbent is not None and event.getType() == SCIP_EVENTTYPE.BESTSOLFOUND:
                    best = scip.getBestSol()
                    x = np.array([scip.getSolVal(best, v) for v in self.variables], dtype=np.float64)
                    self.on_incumbent(x, float(scip.getSolObjVal(best)), progress.time_s)
                hit = any(rule(progress) for rule in self.rules)
            except Exception as exc:  # a user rule failed: stop and re-raise after optimize()
                self.error = exc
                hit = True
            if hit and not self.stopped:
                self.stopped = True
                self.progress = progress
                scip.interruptSolve()

    return StopHandler
