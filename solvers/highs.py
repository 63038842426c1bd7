"""HiGHS backend (highspy): the embedded default.

The model goes in through one ``passModel`` call with CSR arrays. Early stop
for decision queries uses HiGHS' MIP interrupt callback, which sees the
incumbent (primal) and dual bound after every node batch; the same
improving-solution callback feeds ``on_incumbent``. A MIP start goes in with
``setSolution``. The objective cutoff is a row (HiGHS' ``objective_bound``
option did not exclude worse solutions on small MIPs). LP sessions
(:class:`HighsLPSession`) keep one ``Highs`` object with presolve off and
change only the objective between solves, so the simplex warm-starts from
the previous basis.

HiGHS' model statuses map through :attr:`HighsBackend.STATUS_MAP`.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np

from optprune.milp import MILP
from optprune.solvers._common import native_values, tightest_feasibility, warn_unsupported
from optprune.solvers._highs_model import from_highs_file, new_highs, to_highs
from optprune.solvers._model_file import check_numbers
from optprune.solvers._native import with_cost
from optprune.solvers.base import (
    TOLERANCES,
    BackendBase,
    NativeRun,
    Outcome,
    Progress,
    SolveOptions,
    Status,
    stop_for_target,
    stop_rules,
)

__all__ = [
    "HighsBackend",
    "HighsLPSession",
    "configure",
    "highs_option_values",
    "stop_for_target",
    "new_highs",
    "write_model",
    "read_model",
]


_HIGHS_NAMES = {"time_limit": "time_limit", "mip_gap": "mip_rel_gap", "mip_abs_gap": "mip_abs_gap",
                "feasibility_tol": "primal_feasibility_tolerance"}


_BOUND_FOCUS = {"mip_heuristic_effort": 0.0, "mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False,
                "mip_heuristic_run_root_reduced_cost": False, "mip_heuristic_run_feasibility_jump": False}
"""``focus="bound"``: every primal heuristic HiGHS lets us switch off (:class:`SolveOptions`)."""


def highs_option_values(options: SolveOptions) -> dict[str, float | int | bool]:
    """HiGHS option names and values for the shared options (``extra`` not included).

    ``mip_gap`` -> ``mip_rel_gap``, ``mip_abs_gap`` -> ``mip_abs_gap``,
    ``feasibility_tol`` -> ``primal_feasibility_tolerance``; HiGHS checks both
    integrality and the rows of a MIP with ``mip_feasibility_tolerance``, which
    gets the smaller of ``integrality_tol`` and ``feasibility_tol``;
    ``focus="bound"`` switches the primal heuristics off.
    """
    values: dict[str, float | int | bool] = dict(native_values(options, _HIGHS_NAMES))
    mip_tol = tightest_feasibility(options)
    if mip_tol is not None:
        values["mip_feasibility_tolerance"] = mip_tol
    if options.threads is not None:
        values["threads"] = int(options.threads)
    if options.focus == "bound":
        values.update(_BOUND_FOCUS)
    return values


def configure(h, options: SolveOptions, backend: str = "highs") -> None:
    """Set the shared options and ``options.extra`` (HiGHS option names) on the ``highspy.Highs`` ``h``."""
    import highspy

    from optprune.errors import SolverError

    for key, value in highs_option_values(options).items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS refused option {key!r} = {value!r}")
    for key, value in options.extra.items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
            warn_unsupported(backend, f"extra[{key!r}]", f"HiGHS has no option {key!r} taking {value!r}")
    if options.threads is not None:
        # HiGHS keeps one global thread scheduler per process: a solve that asks for another thread count
        # than the first solve of the process fails ("scheduler already initialized") unless it is reset.
        highspy.Highs.resetGlobalScheduler(True)


def write_model(model: MILP, path: str | os.PathLike) -> Path:
    """Write ``model`` as MPS (``.mps``) or CPLEX LP (``.lp``) through HiGHS' writer."""
    from optprune.errors import InvalidParameterError

    path = Path(path)
    if path.suffix.lower() not in (".mps", ".lp"):
        raise InvalidParameterError(f"model files must end in .mps or .lp, got {path.name!r}")
    h = to_highs(model)
    status = h.writeModel(str(path))
    if not path.exists():
        raise OSError(f"HiGHS could not write {path} (status {status})")
    return path


def read_model(path: str | os.PathLike) -> MILP:
    """Read an MPS or CPLEX LP file through HiGHS' reader (errors name the line; see ``from_highs_file``).

    Entries that are not numbers, and numbers that overflow a float64, are refused first
    (:func:`optprune.solvers._model_file.check_numbers`).
    """
    from optprune.errors import DataNotFoundError

    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"model file {str(path)!r} does not exist")
    check_numbers(path)  # HiGHS reads 'abc' as 0 and 1e400 as infinity without a word
    return from_highs_file(path)


class HighsLPSession:
    """``minimize(cost)`` over one LP, changing only the objective: the simplex restarts from the last basis."""

    def __init__(self, model: MILP, options: SolveOptions | None = None) -> None:
        self.model = with_cost(model, np.zeros(model.n_vars), relax=True)
        self._h = to_highs(self.model)
        self._h.setOptionValue("presolve", "off")  # keep the basis between solves
        if options is not None:
            configure(self._h, options)
        self._cost = np.zeros(model.n_vars)

    def minimize(self, cost: np.ndarray) -> tuple[Status, float, np.ndarray | None]:
        import highspy

        cost = np.asarray(cost, dtype=np.float64)
        changed = np.flatnonzero(cost != self._cost)
        if changed.size:
            self._h.changeColsCost(int(changed.size), changed.astype(np.int32), cost[changed])
            self._cost = cost.copy()
        if self._h.run() == highspy.HighsStatus.kError:
            return Status.ERROR, math.nan, None
        name = self._h.getModelStatus().name
        status = HighsBackend.STATUS_MAP.get(name, Status.ERROR)
        if status != Status.OPTIMAL:
            return (status if isinstance(status, Status) else Status.ERROR), math.nan, None
        info = self._h.getInfo()
        return Status.OPTIMAL, float(info.objective_function_value), np.asarray(
            self._h.getSolution().row_dual, dtype=np.float64)


class HighsBackend(BackendBase):
    name = "highs"
    package = "highspy"
    extra = "highs"
    supports_callbacks = True
    supports_incumbent_callback = True
    supports_start = True
    supports_focus = True
    supports_quadratic = True  # continuous QPs (passHessian); HiGHS' MIP solver takes no Hessian
    supported_tolerances = frozenset(TOLERANCES)
    STATUS_MAP = {
        "kOptimal": Status.OPTIMAL,
        "kInfeasible": Status.INFEASIBLE,
        "kUnbounded": Status.UNBOUNDED,
        "kUnboundedOrInfeasible": Outcome.INFEASIBLE_OR_UNBOUNDED,
        "kObjectiveBound": Outcome.CUTOFF,
        "kTimeLimit": Outcome.LIMIT,
        "kIterationLimit": Outcome.LIMIT,
        "kSolutionLimit": Outcome.LIMIT,
        "kInterrupt": Outcome.LIMIT,
        "kObjectiveTarget": Outcome.LIMIT,
    }

    @property
    def install_hint(self) -> str:
        return "pip install highspy  (a core dependency of optprune)"

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        import highspy

        h = to_highs(built, verbose=options.verbose)
        configure(h, options, self.name)
        if options.start is not None:
            h.setSolution(model.n_vars, np.arange(model.n_vars, dtype=np.int32), options.start)

        state: dict = {"stopped": None, "error": None}
        rules = stop_rules(options, model.sense) if model.is_mip else []
        on_incumbent = options.on_incumbent if model.is_mip else None
        if rules or on_incumbent is not None:

            def progress_of(out) -> Progress:
                return Progress(
                    primal=float(out.mip_primal_bound) if abs(out.mip_primal_bound) < 1e30 else math.nan,
                    bound=float(out.mip_dual_bound), time_s=float(out.running_time),
                )

            def check(event) -> None:
                if state["stopped"] is not None or state["error"] is not None:
                    event.interrupt()
                    return
                try:
                    progress = progress_of(event.data_out)
                    hit = any(rule(progress) for rule in rules)
                except Exception as exc:  # a user rule failed: stop, re-raise after the run
                    state["error"], hit, progress = exc, True, None
                if hit:
                    if state["error"] is None:
                        state["stopped"] = progress
                    event.interrupt()

            def on_improving(event) -> None:
                out = event.data_out
                if on_incumbent is not None and state["error"] is None:
                    sol = np.asarray(out.mip_solution, dtype=np.float64)
                    if sol.size >= model.n_vars:
                        try:
                            on_incumbent(sol[: model.n_vars], float(out.objective_function_value),
                                         float(out.running_time))
                        except Exception as exc:  # re-raised after the run
                            state["error"] = exc
                            event.interrupt()
                            return
                check(event)

            if rules:
                h.cbMipInterrupt.subscribe(check)
            h.cbMipImprovingSolution.subscribe(on_improving)

        start = time.perf_counter()
        run_status = h.run()
        elapsed = time.perf_counter() - start
        if state["error"] is not None:
            raise state["error"]
        if run_status == highspy.HighsStatus.kError:
            return NativeRun(Status.ERROR, time_s=elapsed, message="HiGHS returned an error status")
        ms = h.getModelStatus()
        info = h.getInfo()
        has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
        solution = h.getSolution() if has_sol else None
        return NativeRun(
            status=ms.name,
            x=np.asarray(solution.col_value, dtype=np.float64) if has_sol else None,
            objective=float(info.objective_function_value) if has_sol else math.nan,
            bound=float(info.mip_dual_bound) if model.is_mip else math.nan,
            time_s=elapsed,
            nodes=max(0, int(getattr(info, "mip_node_count", 0) or 0)),  # HiGHS reports -1 for an LP
            message=h.modelStatusToString(ms),
            stopped=state["stopped"],
            row_dual=(np.asarray(solution.row_dual, dtype=np.float64)[: model.n_rows]
                      if has_sol and not model.is_mip and solution.dual_valid else None),
        )

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        """HiGHS' presolve may not tell unbounded from infeasible; the zero-objective copy, presolve off, does."""
        import highspy

        h = to_highs(model)
        h.setOptionValue("presolve", "off")  # presolve is what could not tell the two apart
        if options.time_limit is not None:
            h.setOptionValue("time_limit", float(options.time_limit))
        h.run()
        if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible:
            return Status.INFEASIBLE
        return Status.FEASIBLE

    def lp_session(self, model: MILP, options: SolveOptions | None = None) -> HighsLPSession:
        """A warm-started :class:`HighsLPSession` over ``model``'s rows and bounds (integrality dropped)."""
        self.require()
        return HighsLPSession(model, options)
