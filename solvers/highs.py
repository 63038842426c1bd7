"""HiGHS backend (highspy): the embedded default.

The model goes in through one ``passModel`` call with CSR arrays. Early stop
for decision queries uses HiGHS' MIP interrupt callback, which sees the
incumbent (primal) and dual bound after every node batch.
"""

from __future__ import annotations

import math
import time

import numpy as np

from optprune.milp import MILP, Sense
from optprune.solvers._common import warn_unsupported, with_cutoff_row
from optprune.solvers._highs_model import to_highs
from optprune.solvers.base import TOLERANCES, BackendBase, Progress, SolveOptions, SolveResult, Status

__all__ = ["HighsBackend", "configure", "highs_option_values", "stop_for_target"]


def stop_for_target(progress: Progress, target: float, sense: Sense) -> bool:
    """True when the incumbent reaches ``target`` or the bound proves it unreachable."""
    if sense == Sense.MAXIMIZE:
        return (math.isfinite(progress.primal) and progress.primal >= target) or progress.bound < target
    return (math.isfinite(progress.primal) and progress.primal <= target) or progress.bound > target


def highs_option_values(options: SolveOptions) -> dict[str, float | int]:
    """HiGHS option names and values for the shared options (``extra`` not included).

    ``mip_gap`` -> ``mip_rel_gap``, ``mip_abs_gap`` -> ``mip_abs_gap``,
    ``feasibility_tol`` -> ``primal_feasibility_tolerance``; HiGHS checks both
    integrality and the rows of a MIP with ``mip_feasibility_tolerance``, which
    gets the smaller of ``integrality_tol`` and ``feasibility_tol``.
    """
    values: dict[str, float | int] = {}
    if options.time_limit is not None:
        values["time_limit"] = float(options.time_limit)
    if options.mip_gap is not None:
        values["mip_rel_gap"] = float(options.mip_gap)
    if options.mip_abs_gap is not None:
        values["mip_abs_gap"] = float(options.mip_abs_gap)
    if options.feasibility_tol is not None:
        values["primal_feasibility_tolerance"] = float(options.feasibility_tol)
    mip_tols = [t for t in (options.integrality_tol, options.feasibility_tol) if t is not None]
    if mip_tols:
        values["mip_feasibility_tolerance"] = float(min(mip_tols))
    if options.threads is not None:
        values["threads"] = int(options.threads)
    return values


def configure(h, options: SolveOptions, backend: str = "highs") -> None:
    """Set the shared options and ``options.extra`` (HiGHS option names) on the ``highspy.Highs`` ``h``."""
    import highspy

    for key, value in highs_option_values(options).items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
            from optprune.errors import SolverError

            raise SolverError(f"HiGHS refused option {key!r} = {value!r}")
    for key, value in options.extra.items():
        if h.setOptionValue(key, value) == highspy.HighsStatus.kError:
            warn_unsupported(backend, f"extra[{key!r}]", f"HiGHS has no option {key!r} taking {value!r}")


class HighsBackend(BackendBase):
    name = "highs"
    package = "highspy"
    extra = "highs"
    supports_callbacks = True
    supported_tolerances = frozenset(TOLERANCES)

    @property
    def install_hint(self) -> str:
        return "pip install highspy  (a core dependency of optprune)"

    def solve(self, model: MILP, options: SolveOptions) -> SolveResult:
        self.require()
        import highspy

        self.check_model(model)
        if model.n_vars == 0:
            return self.solve_empty(model, options)
        built = model
        if options.cutoff is not None:
            # HiGHS' objective_bound option did not exclude worse solutions on small MIPs; a row does.
            built = with_cutoff_row(model, options.cutoff)
        h = to_highs(built, verbose=options.verbose)
        configure(h, options, self.name)

        stopped: dict = {"flag": False, "progress": None}
        rules = []
        if options.stop_rule is not None:
            rules.append(options.stop_rule)
        if options.target is not None:
            target = float(options.target)
            rules.append(lambda p: stop_for_target(p, target, model.sense))
        if rules and model.is_mip:

            def on_interrupt(event) -> None:
                out = event.data_out
                progress = Progress(
                    primal=float(out.mip_primal_bound) if abs(out.mip_primal_bound) < 1e30 else math.nan,
                    bound=float(out.mip_dual_bound),
                    time_s=float(out.running_time),
                )
                if any(rule(progress) for rule in rules):
                    stopped["flag"], stopped["progress"] = True, progress
                    event.interrupt()

            h.cbMipInterrupt.subscribe(on_interrupt)
            h.cbMipImprovingSolution.subscribe(on_interrupt)

        if options.threads is not None:
            # HiGHS keeps one global thread scheduler per process: a solve that asks for another thread count
            # than the first solve of the process fails ("scheduler already initialized") unless it is reset.
            highspy.Highs.resetGlobalScheduler(True)
        start = time.perf_counter()
        run_status = h.run()
        elapsed = time.perf_counter() - start
        if run_status == highspy.HighsStatus.kError:
            return self.result(Status.ERROR, model, time_s=elapsed, message="HiGHS returned an error status")
        ms = h.getModelStatus()
        info = h.getInfo()
        MS = highspy.HighsModelStatus
        has_sol = info.primal_solution_status == 2  # kSolutionStatusFeasible
        x = np.asarray(h.getSolution().col_value, dtype=np.float64) if has_sol else None
        nodes = max(0, int(getattr(info, "mip_node_count", 0) or 0))  # HiGHS reports -1 for an LP
        objective = float(info.objective_function_value) if has_sol else math.nan
        bound = float(info.mip_dual_bound) if model.is_mip else math.nan
        if not math.isfinite(bound) or abs(bound) >= 1e30:
            bound = math.nan
        message = h.modelStatusToString(ms)
        if ms == MS.kOptimal:
            status = Status.OPTIMAL
        elif ms == MS.kInfeasible:
            status = Status.INFEASIBLE
            if options.cutoff is not None:
                message = "no solution better than the objective cutoff"
        elif ms in (MS.kUnbounded, MS.kUnboundedOrInfeasible):
            status = Status.UNBOUNDED if ms == MS.kUnbounded or not model.is_mip else Status.INFEASIBLE
            if ms == MS.kUnboundedOrInfeasible:
                status = self._resolve_unbounded_or_infeasible(model, options)
        elif ms == MS.kObjectiveBound:
            # No solution better than the cutoff exists.
            status = Status.FEASIBLE if has_sol else Status.INFEASIBLE
            message = "no solution better than the objective cutoff"
        elif ms in (MS.kTimeLimit, MS.kIterationLimit, MS.kSolutionLimit, MS.kInterrupt, MS.kObjectiveTarget):
            status = Status.FEASIBLE if has_sol else Status.TIME_LIMIT
            if stopped["flag"]:
                message = "stopped early by the stop rule"
                # The bound that triggered the stop is the proof a decision query needs; HiGHS'
                # final info may not carry it after an interrupt (it can be +/-inf: no open node).
                if math.isnan(bound):
                    bound = stopped["progress"].bound
        else:
            status = Status.ERROR
        if not status.has_solution:  # e.g. the feasible point HiGHS keeps for an unbounded LP
            x, objective = None, math.nan
        return self.result(status, model, x=x, objective=objective, bound=bound, time_s=elapsed, nodes=nodes, message=message)

    @staticmethod
    def _resolve_unbounded_or_infeasible(model: MILP, options: SolveOptions) -> Status:
        """HiGHS' presolve may not tell unbounded from infeasible; a zero objective tells feasibility."""
        probe = MILP(
            np.zeros(model.n_vars), model.A, model.row_lower, model.row_upper, model.col_lower,
            model.col_upper, model.integrality, model.sense,
        )
        h = to_highs(probe)
        h.setOptionValue("presolve", "off")  # presolve is what could not tell the two apart
        if options.time_limit is not None:
            h.setOptionValue("time_limit", float(options.time_limit))
        h.run()
        import highspy

        return Status.INFEASIBLE if h.getModelStatus() == highspy.HighsModelStatus.kInfeasible else Status.UNBOUNDED
