"""OR-Tools CP-SAT backend for pure-integer models (``pip install 'optprune[ortools]'``).

CP-SAT accepts only integer variables with finite bounds and linear rows
with integer coefficients. A model outside that class raises
:class:`~optprune.errors.CapabilityError` naming what is wrong (how many
continuous variables, which coefficient is fractional, how many infinite
bounds). Since every row activity ``A_i x`` is then an integer, fractional
row and column bounds are rounded inward exactly:
``ceil(row_lower) <= A_i x <= floor(row_upper)``. A fractional objective is
allowed (CP-SAT's floating-point objective).

The model is written straight into the ``CpModelProto`` (one ``extend`` per
row for variables, coefficients and domain). ``time_limit`` ->
``max_time_in_seconds``, ``mip_gap`` -> ``relative_gap_limit``, ``mip_abs_gap`` ->
``absolute_gap_limit`` (``feasibility_tol`` / ``integrality_tol`` hold exactly:
integer arithmetic),
``threads`` -> ``num_workers``; ``target`` / ``stop_rule`` are checked in a
solution callback and in the best-bound callback, which call
``StopSearch``; ``cutoff`` becomes the row ``c @ x + offset < cutoff``
(written ``c @ x <= ceil(cutoff - offset) - 1`` for an integer objective).
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np

from optprune.errors import CapabilityError, SolverError
from optprune.milp import MILP, Sense
from optprune.solvers._common import native_values, warn_unsupported
from optprune.solvers._native import with_cutoff_row
from optprune.solvers.base import TOLERANCES, BackendBase, NativeRun, Progress, SolveOptions, Status, stop_rules

__all__ = ["CpsatBackend", "check_pure_integer", "to_cp_model", "set_parameters"]

_INT64_MAX = 2**63 - 1
_INT64_MIN = -(2**63)
_LIMIT = 2**53  # larger integers are not exact in float64
_TOL = 1e-9


def _is_integral(values: np.ndarray) -> np.ndarray:
    return np.abs(values - np.round(values)) <= _TOL


def check_pure_integer(model: MILP) -> None:
    """Raise :class:`CapabilityError` unless CP-SAT can take ``model`` exactly."""
    problems = []
    n_cont = model.n_vars - model.n_integer
    if n_cont:
        first = int(np.flatnonzero(~model.integrality)[0])
        problems.append(f"{n_cont} of {model.n_vars} variables are continuous (first: column {first})")
    data = model.A.data
    bad = np.flatnonzero(~_is_integral(data) | (np.abs(data) >= _LIMIT))
    if bad.size:
        k = int(bad[0])
        row = int(np.searchsorted(model.A.indptr, k, side="right") - 1)
        problems.append(
            f"{bad.size} constraint coefficients are not integers (e.g. A[{row}, {int(model.A.indices[k])}] = {float(data[k])!r})"
        )
    inf_lo = int(np.sum(~np.isfinite(model.col_lower)))
    inf_hi = int(np.sum(~np.isfinite(model.col_upper)))
    if inf_lo or inf_hi:
        problems.append(f"{inf_lo} infinite lower and {inf_hi} infinite upper variable bounds (CP-SAT needs finite ones)")
    big = int(np.sum((np.abs(model.col_lower) >= _LIMIT) & np.isfinite(model.col_lower))
              + np.sum((np.abs(model.col_upper) >= _LIMIT) & np.isfinite(model.col_upper)))
    if big:
        problems.append(f"{big} variable bounds have magnitude >= 2**53")
    if problems:
        raise CapabilityError(
            "backend 'cpsat' needs a pure-integer model with integer coefficients and finite bounds; "
            + "; ".join(problems)
        )


def _row_domains(model: MILP) -> tuple[np.ndarray, np.ndarray]:
    lo = np.where(np.isfinite(model.row_lower), np.ceil(model.row_lower - _TOL), -np.inf)
    hi = np.where(np.isfinite(model.row_upper), np.floor(model.row_upper + _TOL), np.inf)
    return lo, hi


def _int(value: float, default: int) -> int:
    if not math.isfinite(value):
        return default
    return int(max(_INT64_MIN, min(_INT64_MAX, value)))


def to_cp_model(model: MILP):
    """A ``CpModel`` holding ``model`` (checked with :func:`check_pure_integer` first).

    Returns ``(cp_model, empty)`` where ``empty`` names a variable or row
    whose rounded domain is empty (then the model is infeasible), else None.
    """
    from ortools.sat.python import cp_model

    check_pure_integer(model)
    cp = cp_model.CpModel()
    proto = cp.proto
    proto.name = model.name
    col_lo = np.ceil(model.col_lower - _TOL).astype(np.int64)
    col_hi = np.floor(model.col_upper + _TOL).astype(np.int64)
    empty_cols = np.flatnonzero(col_lo > col_hi)
    if empty_cols.size:
        j = int(empty_cols[0])
        return cp, f"column {j} has no integer in [{model.col_lower[j]}, {model.col_upper[j]}]"
    for lo, hi in zip(col_lo.tolist(), col_hi.tolist(), strict=True):
        proto.variables.add().domain.extend([lo, hi])

    row_lo, row_hi = _row_domains(model)
    empty_rows = np.flatnonzero(row_lo > row_hi)
    if empty_rows.size:
        i = int(empty_rows[0])
        return cp, f"row {i} has no integer in [{model.row_lower[i]}, {model.row_upper[i]}]"
    A = model.A
    indptr = A.indptr
    cols = A.indices.tolist()
    coefs = np.round(A.data).astype(np.int64).tolist()
    los = [_int(v, _INT64_MIN) for v in row_lo.tolist()]
    his = [_int(v, _INT64_MAX) for v in row_hi.tolist()]
    for i in range(model.n_rows):
        if los[i] == _INT64_MIN and his[i] == _INT64_MAX:
            continue
        s, e = int(indptr[i]), int(indptr[i + 1])
        linear = proto.constraints.add().linear
        linear.vars.extend(cols[s:e])
        linear.coeffs.extend(coefs[s:e])
        linear.domain.extend([los[i], his[i]])

    nz = np.flatnonzero(model.c)
    c = model.c[nz]
    maximize = model.sense == Sense.MAXIMIZE
    if np.all(_is_integral(c)) and np.all(np.abs(c) < _LIMIT):
        sign = -1 if maximize else 1  # CP-SAT minimises scaling_factor * (coeffs @ x + offset)
        objective = proto.objective
        objective.vars.extend(nz.tolist())
        objective.coeffs.extend((sign * np.round(c).astype(np.int64)).tolist())
        objective.offset = sign * float(model.offset)
        objective.scaling_factor = float(sign)
    else:
        objective = proto.floating_point_objective
        objective.vars.extend(nz.tolist())
        objective.coeffs.extend(c.tolist())
        objective.offset = float(model.offset)
        objective.maximize = maximize
    return cp, None


def set_parameters(params, options: SolveOptions) -> None:
    """Write the shared options into CP-SAT's ``SatParameters`` ``params``.

    ``time_limit`` -> ``max_time_in_seconds``, ``mip_gap`` ->
    ``relative_gap_limit``, ``mip_abs_gap`` -> ``absolute_gap_limit``,
    ``threads`` -> ``num_workers``.
    """
    names = {"time_limit": "max_time_in_seconds", "mip_gap": "relative_gap_limit", "mip_abs_gap": "absolute_gap_limit"}
    for name, value in native_values(options, names).items():
        setattr(params, name, value)
    if options.threads is not None:
        params.num_workers = int(options.threads)


class CpsatBackend(BackendBase):
    name = "cpsat"
    package = "ortools"
    extra = "ortools"
    supports_continuous = False
    supports_callbacks = True
    # Gaps map to relative_gap_limit / absolute_gap_limit. CP-SAT solves pure-integer models in exact
    # integer arithmetic: its solutions satisfy every row and integrality exactly, so any
    # feasibility_tol and integrality_tol > 0 is met (there is nothing to set).
    supported_tolerances = frozenset(TOLERANCES)
    supports_incumbent_callback = True
    supports_start = True  # a solution hint
    STATUS_MAP = {"OPTIMAL": Status.OPTIMAL, "FEASIBLE": Status.FEASIBLE, "INFEASIBLE": Status.INFEASIBLE,
                  "UNKNOWN": Status.TIME_LIMIT}

    def check_model(self, model: MILP) -> None:
        if model.is_quadratic:
            self.check_quadratic(model)  # CP-SAT takes linear objectives only: the named capability error
        check_pure_integer(model)

    def cutoff_model(self, model: MILP, cutoff: float) -> MILP:
        """The cutoff as the exact strict row for an integer objective; ignored with a warning otherwise."""
        if np.all(_is_integral(model.c)):
            return with_cutoff_row(model, cutoff, integral_objective=True)
        warn_unsupported(self.name, "cutoff", "the objective has fractional coefficients")
        return model

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        from ortools.sat.python import cp_model

        cp, empty = to_cp_model(built)
        if empty is not None:
            message = f"infeasible: {empty}"
            if built is not model and empty.startswith(f"row {model.n_rows} "):
                message = "no solution better than the objective cutoff"
            return NativeRun(Status.INFEASIBLE, message=message)
        if options.start is not None:
            hint = cp.proto.solution_hint
            hint.vars.extend(range(model.n_vars))
            hint.values.extend(np.round(options.start).astype(np.int64).tolist())

        solver = cp_model.CpSolver()
        params = solver.parameters
        set_parameters(params, options)
        params.log_to_stdout = False
        if options.verbose:
            params.log_search_progress = True
            solver.log_callback = lambda line: print(line, file=sys.stderr)
        for key, value in options.extra.items():
            if key == "cpsat_params":
                for pname, pvalue in dict(value).items():
                    setattr(params, pname, pvalue)
            else:
                warn_unsupported(self.name, f"extra[{key!r}]", "known key: 'cpsat_params' (a dict of SatParameters)")

        rules = stop_rules(options, model.sense)
        on_incumbent = options.on_incumbent
        state = {"stopped": None, "error": None, "primal": math.nan}
        callback = None
        start = time.perf_counter()
        if rules or on_incumbent is not None:
            def check(progress: Progress) -> None:
                if state["stopped"] is not None or state["error"] is not None:
                    return
                try:
                    hit = any(rule(progress) for rule in rules)
                except Exception as exc:  # re-raised after the solve
                    state["error"], hit = exc, True
                if hit:
                    state["stopped"] = progress
                    solver.stop_search()

            class _Callback(cp_model.CpSolverSolutionCallback):
                def on_solution_callback(self) -> None:
                    state["primal"] = float(self.objective_value)
                    progress = Progress(primal=state["primal"], bound=float(self.best_objective_bound),
                                        time_s=float(self.wall_time))
                    if on_incumbent is not None and state["error"] is None:
                        try:
                            x = np.asarray(list(self.response_proto.solution), dtype=np.float64)
                            on_incumbent(x, state["primal"], progress.time_s)
                        except Exception as exc:  # re-raised after the solve
                            state["error"] = exc
                            solver.stop_search()
                            return
                    check(progress)

            def on_bound(bound: float) -> None:
                check(Progress(primal=state["primal"], bound=float(bound), time_s=time.perf_counter() - start))

            callback = _Callback()
            solver.best_bound_callback = on_bound

        code = solver.solve(cp, callback)
        elapsed = time.perf_counter() - start
        if state["error"] is not None:
            raise state["error"]

        if code == cp_model.MODEL_INVALID:
            raise SolverError(f"CP-SAT rejected the model ({solver.status_name(code)}): {cp.validate()}")
        has_sol = code in (cp_model.OPTIMAL, cp_model.FEASIBLE)
        return NativeRun(
            status=solver.status_name(code),
            x=np.asarray(list(solver.response_proto.solution), dtype=np.float64) if has_sol else None,
            objective=float(solver.objective_value) if has_sol else math.nan,
            bound=float(solver.best_objective_bound), time_s=elapsed, nodes=int(solver.num_branches),
            stopped=state["stopped"],
        )
