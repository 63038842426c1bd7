"""The protocol every backend implements, and the one result type they return.

As in cvxpy's solver layer: a backend is one module with a name, an
availability check that imports nothing native, capability flags, a map from
the solver's statuses into :class:`Status`, and one ``solve`` method that
takes a :class:`~optprune.milp.MILP` and returns a :class:`SolveResult`.

Lifecycle
---------
:meth:`BackendBase.solve` is written once, here: it checks that the package
imports (:meth:`~BackendBase.require`, with the install hint), that the
backend can take the model (:meth:`~BackendBase.check_model`) and the
options (:meth:`~BackendBase.check_options`: the MIP start's length), answers
a model with no columns itself (:meth:`~BackendBase.solve_empty`), warns for
every option the backend cannot apply, adds the cutoff row
``c @ x + offset <= cutoff`` where the solver has no native cutoff, runs the
backend inside the native boundary (solver output to stderr, solver
exceptions as :class:`~optprune.errors.SolverError`), maps the solver's
status through the backend's table :attr:`BackendBase.STATUS_MAP`, fills the
values of unused columns and builds the result. A backend fills in one step,
:meth:`BackendBase.run_native` (build the native model, set the options,
run, read the solution and the native status into a :class:`NativeRun`), and
optionally :meth:`~BackendBase.probe` (a zero-objective feasibility solve that
tells "infeasible or unbounded" apart).

What callers get besides solving: a MIP start (``SolveOptions.start``), an
incumbent callback (``SolveOptions.on_incumbent``), early stops
(``stop_rule``, ``target``), explicit tolerances, and LP re-solve sessions
(:meth:`BackendBase.lp_session`: ``minimize(cost)`` again and again over the
same rows, warm-started where the solver can, as OBBT needs).

Tolerances
----------
A MIP solver's "optimal" is optimal *within tolerances*, and every solver
picks its own defaults (HiGHS: absolute gap 1e-6, relative gap 1e-4, primal
feasibility 1e-7, integrality 1e-6; SCIP: absolute gap 0, relative gap 0,
feasibility 1e-6). :class:`SolveOptions` names the four that decide whether
a reported optimum can be trusted, so a caller states them instead of
inheriting whichever backend's defaults:

``mip_gap``
    relative gap ``|primal - dual| / max(1e-10, |primal|)`` at which the
    search stops and reports OPTIMAL.
``mip_abs_gap``
    absolute gap ``|primal - dual|`` at which the search stops. A decision
    query ("is the maximum margin below 0?") needs this one: with an optimum
    near 0 a relative gap means nothing, and a default absolute gap of 1e-6
    lets "optimal, objective -1e-7" come back while the dual bound is still
    above 0. Verdict code therefore sets ``mip_abs_gap`` (and ``mip_gap=0``)
    below its decision margin ``delta`` explicitly.
``feasibility_tol``
    how far a returned point may violate a row or a bound (primal
    feasibility). A point accepted within this tolerance is re-checked by
    the caller, so it must be small against the margins the caller reads.
``integrality_tol``
    how far an integer variable may be from an integer (a ReLU indicator at
    1e-5 lets the big-M rows leak ``1e-5 * M``).

Each backend maps them to its native options where it has them and
reports which it honours in :attr:`BackendBase.supported_tolerances`
(:meth:`BackendBase.tolerances_for` where it depends on the sub-solver).
A tolerance a backend cannot apply is never dropped silently: it warns
(:class:`UserWarning`) naming the backend and the option. Solvers that check
row feasibility and integrality with one number (HiGHS' MIP feasibility
tolerance, SCIP's ``numerics/feastol``) get the smaller of the two.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from optprune._validation import InstanceOf, Interval, IsCallable, Options, validate_params
from optprune.errors import CapabilityError, InvalidParameterError, SolverNotAvailableError
from optprune.milp import MILP, Sense
from optprune.solvers._native import (
    native_stdout_to_stderr,
    solver_boundary,
    with_cost,
    with_cutoff_row,
    zero_objective,
)

__all__ = [
    "Status",
    "Progress",
    "SolveOptions",
    "SolveResult",
    "Backend",
    "BackendBase",
    "Outcome",
    "NativeRun",
    "LPSession",
    "ResolveLPSession",
    "stop_for_target",
    "compute_gap",
    "fill_unused_columns",
    "TOLERANCES",
    "FOCUSES",
    "QuadraticObjectiveError",
    "NonConvexObjectiveError",
    "check_convex",
    "quadratic_backends",
]

class QuadraticObjectiveError(CapabilityError):
    """A model with a quadratic objective (``MILP.Q``) given to a backend that cannot take it (or not with integers)."""


class NonConvexObjectiveError(CapabilityError):
    """A quadratic objective that is not convex (``Q`` not PSD when minimising, not NSD when maximising)."""


TOLERANCES = ("mip_gap", "mip_abs_gap", "feasibility_tol", "integrality_tol")
"""The :class:`SolveOptions` fields that are solver tolerances (see the module doc)."""

FOCUSES = ("bound",)
"""The values of :attr:`SolveOptions.focus` besides None (the solver's own balance)."""


class Status(str, Enum):
    """The shared status every backend maps its own statuses into."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"  # a solution, optimality not proven (limit or early stop)
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"  # limit reached without any solution
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        return self in (Status.OPTIMAL, Status.FEASIBLE)


@dataclass(frozen=True)
class Progress:
    """What a stop rule sees during a MIP solve (in the model's own sense)."""

    primal: float  # best objective found so far (nan when none)
    bound: float  # best dual bound
    time_s: float


@dataclass(frozen=True)
class SolveOptions:
    """Options understood by every backend (ignored with a warning where unsupported).

    ``cutoff``: only solutions strictly better than this objective are of
    interest (a maximisation with cutoff 0 looks for objective > 0).
    ``stop_rule``: called on new incumbents / bound changes where the solver
    offers callbacks; returning True interrupts the solve. ``target``: stop as
    soon as an incumbent at least this good is found, or as soon as the dual
    bound proves none exists (a decision query).

    ``start``: a MIP start, one value per column (a complete assignment; the
    solver checks it and may repair or reject it). ``on_incumbent(x, objective,
    time_s)``: called with every improving solution the solver finds (``x`` in
    the model's columns, ``objective`` in the model's sense, ``time_s`` since
    the solve began), where the backend offers it
    (:attr:`BackendBase.supports_incumbent_callback`); an exception it raises
    stops the solve and is re-raised. Both are ignored with a warning elsewhere.

    ``focus="bound"``: the solve is run to move the dual bound (a proof that no
    solution beats the cutoff), not to find good solutions, so the solver's
    primal heuristics are switched off where it lets us (HiGHS: RINS, RENS,
    feasibility jump, root reduced-cost fixing, heuristic effort 0; Gurobi:
    ``MIPFocus=3``; SCIP: heuristics off). Branching still finds any integer
    point a leaf holds. On the decision MIPs of VNN-COMP 2021 mnistfc HiGHS
    spent about half its time in sub-MIP heuristics that found nothing; with
    ``"bound"`` the MIPs run 2.45x faster (``benchmarks/mip_focus.py``,
    results/mip_focus). Ignored with a warning by backends without such a switch.
    """

    time_limit: float | None = None
    mip_gap: float | None = None
    mip_abs_gap: float | None = None
    feasibility_tol: float | None = None
    integrality_tol: float | None = None
    threads: int | None = None
    cutoff: float | None = None
    target: float | None = None
    stop_rule: Callable[[Progress], bool] | None = None
    start: np.ndarray | None = None
    on_incumbent: Callable[[np.ndarray, float, float], None] | None = None
    verbose: bool = False
    focus: str | None = None
    extra: dict = field(default_factory=dict)

    _parameter_constraints: ClassVar[dict] = {
        "time_limit": [Interval(float, 0, None, closed="neither"), None],  # seconds
        "mip_gap": [Interval(float, 0, 1, closed="left"), None],  # relative MIP gap
        "mip_abs_gap": [Interval(float, 0, None, closed="left", finite=True), None],  # absolute MIP gap
        "feasibility_tol": [Interval(float, 0, 1, closed="neither"), None],
        "integrality_tol": [Interval(float, 0, 1, closed="neither"), None],
        "threads": [Interval(int, 1, None), None],
        "cutoff": [Interval(float, None, None), None],
        "target": [Interval(float, None, None), None],
        "stop_rule": [IsCallable(), None],
        "verbose": [InstanceOf((bool, np.bool_))],
        "focus": [Options(FOCUSES), None],
        "extra": [InstanceOf((dict,))],
    }

    def __post_init__(self) -> None:
        validate_params(
            "SolveOptions", {name: getattr(self, name) for name in self._parameter_constraints},
            self._parameter_constraints,
        )
        if self.start is not None:
            start = np.asarray(self.start, dtype=np.float64)
            if start.ndim != 1 or np.isnan(start).any():
                raise InvalidParameterError(
                    f"start (a MIP start) must be a 1-d array of numbers, one per column; got shape {start.shape}"
                    + (f" with NaN at {int(np.flatnonzero(np.isnan(start))[0])}" if start.ndim == 1 else "")
                )
            object.__setattr__(self, "start", start)
        if self.on_incumbent is not None and not callable(self.on_incumbent):
            raise InvalidParameterError(f"on_incumbent must be callable (x, objective, time_s); got {self.on_incumbent!r}")


@dataclass
class SolveResult:
    """What every backend returns. ``x`` is None when no solution is known."""

    status: Status
    objective: float = math.nan
    bound: float = math.nan
    gap: float = math.nan
    x: np.ndarray | None = None
    time_s: float = 0.0
    nodes: int = 0
    backend: str = ""
    version: str = ""
    message: str = ""
    row_dual: np.ndarray | None = None  # an LP's row multipliers (y with c - A^T y the reduced costs), where given

    def to_dict(self) -> dict:
        def num(v: float) -> float | None:
            return None if v is None or not math.isfinite(v) else float(v)

        return {
            "status": self.status.value,
            "objective": num(self.objective),
            "bound": num(self.bound),
            "gap": num(self.gap),
            "time_s": round(self.time_s, 6),
            "nodes": int(self.nodes),
            "backend": self.backend,
            "version": self.version,
            "message": self.message,
        }


def compute_gap(objective: float, bound: float) -> float:
    """Relative gap |bound - objective| / max(1e-10, |objective|), as HiGHS and SCIP report it."""
    if not (math.isfinite(objective) and math.isfinite(bound)):
        return math.inf if math.isfinite(objective) or math.isfinite(bound) else math.nan
    return abs(bound - objective) / max(1e-10, abs(objective))


def stop_for_target(progress: Progress, target: float, sense: Sense) -> bool:
    """True when the incumbent reaches ``target`` or the bound proves it unreachable."""
    if sense == Sense.MAXIMIZE:
        return (math.isfinite(progress.primal) and progress.primal >= target) or progress.bound < target
    return (math.isfinite(progress.primal) and progress.primal <= target) or progress.bound > target


def stop_rules(options: SolveOptions, sense: Sense) -> list[Callable[[Progress], bool]]:
    """The early-stop predicates from ``options.stop_rule`` and ``options.target``."""
    rules: list[Callable[[Progress], bool]] = []
    if options.stop_rule is not None:
        rules.append(options.stop_rule)
    if options.target is not None:
        target = float(options.target)
        rules.append(lambda p: stop_for_target(p, target, sense))
    return rules


class Outcome(str, Enum):
    """Native statuses whose shared status depends on what else the solve returned (see :attr:`BackendBase.STATUS_MAP`)."""

    LIMIT = "limit"  # a limit or an interrupt: FEASIBLE with a solution, else TIME_LIMIT
    CUTOFF = "cutoff"  # nothing better than the cutoff: FEASIBLE with a solution, else INFEASIBLE
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"  # told apart by the zero-objective probe


@dataclass
class NativeRun:
    """What a backend's :meth:`BackendBase.run_native` read back, before the shared status mapping.

    ``status`` is a key of the backend's ``STATUS_MAP`` (or a :class:`Status`
    when the backend decided itself; then ``message`` is kept as it is).
    ``x`` may carry NaN for columns the solver never saw (filled by
    :func:`fill_unused_columns`). ``prefix`` goes in front of the shared
    messages (e.g. ``"SCIP: "`` for a sub-solver). ``stopped`` is the progress
    at which a stop rule fired.
    """

    status: object
    x: np.ndarray | None = None
    objective: float = math.nan
    bound: float = math.nan
    time_s: float = 0.0
    nodes: int = 0
    message: str = ""
    prefix: str = ""
    stopped: Progress | None = None
    row_dual: np.ndarray | None = None


@runtime_checkable
class LPSession(Protocol):
    """Repeated LP solves over fixed rows and bounds with a changing objective (OBBT)."""

    def minimize(self, cost: np.ndarray) -> tuple[Status, float, np.ndarray | None]:
        """``min cost @ x``: the status, the optimum and the row multipliers (None if the solver gives none)."""
        ...


class ResolveLPSession:
    """The generic :class:`LPSession`: each ``minimize`` solves the relaxation anew through ``backend.solve``.

    Row multipliers come from :attr:`SolveResult.row_dual` (None where the
    backend does not report them).
    """

    def __init__(self, backend: BackendBase, model: MILP, options: SolveOptions | None = None) -> None:
        self.backend, self.model = backend, model
        self.options = SolveOptions() if options is None else options

    def minimize(self, cost: np.ndarray) -> tuple[Status, float, np.ndarray | None]:
        result = self.backend.solve(with_cost(self.model, cost, relax=True), self.options)
        return result.status, result.objective, result.row_dual


@runtime_checkable
class Backend(Protocol):
    name: str
    package: str
    extra: str
    supports_integer: bool
    supports_continuous: bool

    def is_available(self) -> bool: ...

    def version(self) -> str | None: ...

    def solve(self, model: MILP, options: SolveOptions) -> SolveResult: ...


class BackendBase:
    """The solve lifecycle, once (module doc); a backend implements :meth:`run_native` and its ``STATUS_MAP``."""

    name: ClassVar[str]
    package: ClassVar[str]  # importable module name, checked without importing it
    extra: ClassVar[str]  # the pip extra that installs it
    supports_integer: ClassVar[bool] = True
    supports_continuous: ClassVar[bool] = True
    supports_callbacks: ClassVar[bool] = False
    """``stop_rule`` and ``target`` are honoured (an interrupting callback)."""
    supports_incumbent_callback: ClassVar[bool] = False
    supports_start: ClassVar[bool] = False
    supports_focus: ClassVar[bool] = False
    """``focus`` is honoured (:class:`SolveOptions`)."""
    native_cutoff: ClassVar[bool] = False
    supports_quadratic: ClassVar[bool] = False
    """A convex quadratic objective ``1/2 x^T Q x`` (``MILP.Q``) on continuous variables (a QP)."""
    supports_miqp: ClassVar[bool] = False
    """A convex quadratic objective together with integer variables (a MIQP)."""
    """The backend applies ``cutoff`` itself; otherwise :meth:`cutoff_model` adds the cutoff row."""
    redirect_native_stdout: ClassVar[bool] = True
    supported_tolerances: ClassVar[frozenset[str]] = frozenset()
    """The :data:`TOLERANCES` this backend applies natively (with its default sub-solver)."""
    STATUS_MAP: ClassVar[dict] = {}
    """Native status -> :class:`Status` or :class:`Outcome`; a status missing here maps to ERROR."""

    def is_available(self) -> bool:
        """Whether the package is installed (found without importing it: cheap, may miss a broken install)."""
        return importlib.util.find_spec(self.package) is not None

    def import_error(self) -> str | None:
        """None if the package really imports; else what went wrong, with the install hint.

        Catches every exception, not only ImportError: a broken install can
        raise anything (a missing shared library, an AttributeError between
        mismatched versions).
        """
        if not self.is_available():
            return (
                f"solver backend {self.name!r} needs the Python package {self.distribution!r}, "
                f"which is not installed; install it with: {self.install_hint}"
            )
        try:
            importlib.import_module(self.package)
        except Exception as exc:  # any failure of a broken install
            return (
                f"solver backend {self.name!r}: the package {self.package!r} is installed but fails to import "
                f"({type(exc).__name__}: {exc}); reinstall it with: {self.install_hint}"
            )
        return None

    def tolerances_for(self, model: MILP, options: SolveOptions) -> frozenset[str]:
        """The tolerances honoured for this model and options (the sub-solver may matter)."""
        return self.supported_tolerances

    def warn_unsupported_tolerances(self, model: MILP, options: SolveOptions, honoured=None) -> None:
        """Warn for every tolerance set in ``options`` that this solve cannot apply.

        Gaps and the integrality tolerance mean nothing for an LP (no branch
        and bound), so they are not warned about there.
        """
        honoured = self.tolerances_for(model, options) if honoured is None else honoured
        for option in TOLERANCES:
            if getattr(options, option) is None or option in honoured:
                continue
            if not model.is_mip and option != "feasibility_tol":
                continue
            warnings.warn(
                f"solver backend {self.name!r} ignores the option {option!r}: no native equivalent "
                f"in this configuration (it honours: {', '.join(sorted(honoured)) or 'none'})",
                UserWarning, stacklevel=3,
            )

    def version(self) -> str | None:
        if not self.is_available():
            return None
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version(self.distribution)
        except PackageNotFoundError:
            return None

    @property
    def distribution(self) -> str:
        return self.package

    @property
    def install_hint(self) -> str:
        return f"pip install 'optprune[{self.extra}]'  (or: pip install {self.distribution})"

    def capabilities(self) -> dict:
        return {
            "integer": self.supports_integer,
            "continuous": self.supports_continuous,
            "callbacks": self.supports_callbacks,
            "quadratic": self.supports_quadratic,
            "miqp": self.supports_miqp,
            "focus": self.supports_focus,
            "tolerances": sorted(self.supported_tolerances),
        }

    # ---------------------------------------------------------------- lifecycle

    def solve(self, model: MILP, options: SolveOptions | None = None) -> SolveResult:
        """Solve ``model``: the shared lifecycle of the module doc around :meth:`run_native`."""
        options = SolveOptions() if options is None else options
        self.require()
        self.check_model(model)
        self.check_options(model, options)
        if model.n_vars == 0:
            return self.solve_empty(model, options)
        early = self.precheck(model, options)
        if early is not None:
            return early
        with solver_boundary(self.name):
            self.warn_unsupported_options(model, options)
            built = model if options.cutoff is None or self.native_cutoff else self.cutoff_model(model, options.cutoff)
            with self._output_boundary():
                run = self.run_native(model, built, options)
                status, message = self.map_status(model, options, run)
        return self.finish(model, options, run, status, message)

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        """Build the native model of ``built`` (``model`` plus any cutoff row), set the options, run, read back.

        Solution values are in ``model``'s columns (the cutoff row adds none).
        """
        raise NotImplementedError(f"backend {self.name!r} implements neither run_native nor solve")

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        """Solve the zero-objective copy ``model`` (feasibility only); used for "infeasible or unbounded"."""
        return self.solve(model, SolveOptions(time_limit=options.time_limit)).status

    def precheck(self, model: MILP, options: SolveOptions) -> SolveResult | None:
        """An answer found before the solver is asked (e.g. a constant row that cannot hold), else None."""
        return None

    def cutoff_model(self, model: MILP, cutoff: float) -> MILP:
        """``model`` with the cutoff as a row, for solvers without a native cutoff (a linear objective only)."""
        if model.is_quadratic:
            raise QuadraticObjectiveError(
                f"backend {self.name!r} has no native objective cutoff, and a quadratic objective cannot be written "
                "as a linear cutoff row; solve without 'cutoff', or with a backend that has a native cutoff: "
                f"{', '.join(b for b in quadratic_backends(miqp=model.is_mip) if _has_native_cutoff(b))}"
            )
        return with_cutoff_row(model, cutoff)

    def check_options(self, model: MILP, options: SolveOptions) -> None:
        """Options that depend on the model: the MIP start has one value per column."""
        if options.start is not None and options.start.shape[0] != model.n_vars:
            raise InvalidParameterError(
                f"start (a MIP start) has {options.start.shape[0]} values; the model has {model.n_vars} columns"
            )

    def warn_unsupported_options(self, model: MILP, options: SolveOptions) -> None:
        """Warn (never drop silently) for the callbacks and the MIP start this backend cannot apply."""
        if not self.supports_callbacks:
            for option in ("target", "stop_rule"):
                if getattr(options, option) is not None:
                    warnings.warn(f"solver backend {self.name!r} ignores the option {option!r}: it offers no "
                                  "interrupting callback", UserWarning, stacklevel=4)
        if options.on_incumbent is not None and not self.supports_incumbent_callback:
            warnings.warn(f"solver backend {self.name!r} ignores the option 'on_incumbent': it offers no incumbent "
                          "callback", UserWarning, stacklevel=4)
        if options.start is not None and not self.supports_start:
            warnings.warn(f"solver backend {self.name!r} ignores the option 'start': it takes no MIP start",
                          UserWarning, stacklevel=4)
        if options.focus is not None and model.is_mip and not self.supports_focus:
            warnings.warn(f"solver backend {self.name!r} ignores the option 'focus': it has no switch for its "
                          "primal heuristics", UserWarning, stacklevel=4)

    def _output_boundary(self):
        if self.redirect_native_stdout:
            return native_stdout_to_stderr()
        from contextlib import nullcontext

        return nullcontext()

    def map_status(self, model: MILP, options: SolveOptions, run: NativeRun) -> tuple[Status, str]:
        """The shared status of ``run`` through :attr:`STATUS_MAP`, and the message to report."""
        message = run.message or f"{run.prefix}{run.status}"
        if isinstance(run.status, Status):
            status = run.status
        else:
            mapped = self.STATUS_MAP.get(run.status, Status.ERROR)
            if mapped is Outcome.LIMIT:
                status = Status.FEASIBLE if run.x is not None else Status.TIME_LIMIT
            elif mapped is Outcome.CUTOFF:
                status = Status.FEASIBLE if run.x is not None else Status.INFEASIBLE
                message = f"{run.prefix}no solution better than the objective cutoff"
            elif mapped is Outcome.INFEASIBLE_OR_UNBOUNDED:
                status = self.resolve_infeasible_or_unbounded(model, options)
            else:
                status = mapped
            if status == Status.INFEASIBLE and options.cutoff is not None:
                message = f"{run.prefix}no solution better than the objective cutoff"
        status, message = self.refine_status(model, options, run, status, message)
        if run.stopped is not None and status not in (Status.OPTIMAL, Status.INFEASIBLE, Status.UNBOUNDED):
            message = "stopped early by the stop rule"
        if status.has_solution and run.x is None:
            status, message = Status.ERROR, f"{run.prefix}reported {status.value} but returned no solution"
        return status, message

    def refine_status(self, model: MILP, options: SolveOptions, run: NativeRun, status: Status,
                      message: str) -> tuple[Status, str]:
        """A backend's last word on the mapped status (e.g. re-checking an INFEASIBLE that may be UNBOUNDED)."""
        return status, message

    def resolve_infeasible_or_unbounded(self, model: MILP, options: SolveOptions) -> Status:
        """INFEASIBLE or UNBOUNDED for a model reported as "infeasible or unbounded" (the probe decides)."""
        status = self.probe(zero_objective(model), options)
        if status == Status.INFEASIBLE:
            return Status.INFEASIBLE
        return Status.UNBOUNDED if status.has_solution else Status.ERROR

    def finish(self, model: MILP, options: SolveOptions, run: NativeRun, status: Status, message: str) -> SolveResult:
        """The result: no point for INFEASIBLE/UNBOUNDED/limits, bounds at the solver's infinity dropped."""
        x, objective, bound = run.x, run.objective, run.bound
        if not math.isfinite(bound) or abs(bound) >= 1e30:
            bound = math.nan
        if run.stopped is not None and math.isnan(bound):
            bound = run.stopped.bound  # the bound that triggered the stop is the proof a decision query needs
        if status in (Status.INFEASIBLE, Status.UNBOUNDED):
            x, objective, bound = None, math.nan, math.nan
        elif not status.has_solution:
            x, objective = None, math.nan
        return self.result(status, model, x=x, objective=objective, bound=bound, time_s=run.time_s,
                           nodes=run.nodes, message=message, row_dual=run.row_dual if status.has_solution else None)

    def lp_session(self, model: MILP, options: SolveOptions | None = None) -> LPSession:
        """A session that minimises changing objectives over ``model``'s rows and bounds (integrality dropped).

        The generic session re-solves from scratch; backends with a warm start
        (HiGHS, Gurobi) override this.
        """
        self.require()
        return ResolveLPSession(self, model, options)

    def require(self) -> None:
        """Raise :class:`SolverNotAvailableError` (with the install hint) unless the package imports."""
        problem = self.import_error()
        if problem is not None:
            raise SolverNotAvailableError(problem)

    def check_model(self, model: MILP) -> None:
        if model.is_quadratic:
            self.check_quadratic(model)
        if model.is_mip and not self.supports_integer:
            raise CapabilityError(f"backend {self.name!r} solves LPs only; this model has {model.n_integer} integer variables")
        if not self.supports_continuous and not model.integrality.all():
            raise CapabilityError(
                f"backend {self.name!r} needs every variable integer; "
                f"{model.n_vars - model.n_integer} of {model.n_vars} are continuous"
            )

    def check_quadratic(self, model: MILP) -> None:
        """Raise unless this backend takes ``model``'s quadratic objective: capability first, then convexity."""
        if not self.supports_quadratic or (model.is_mip and not self.supports_miqp):
            kind = "a mixed-integer quadratic program (MIQP)" if model.is_mip else "a quadratic program (QP)"
            able = quadratic_backends(miqp=model.is_mip)
            what = "continuous QPs only" if self.supports_quadratic else "linear objectives only"
            raise QuadraticObjectiveError(
                f"backend {self.name!r} solves {what}; this model is {kind} ({model.Q.nnz} nonzeros in Q"
                f"{f', {model.n_integer} integer variables' if model.is_mip else ''}). Backends that take it: "
                f"{', '.join(able) or 'none registered'} (e.g. solver='scip'; install it with: "
                "pip install 'optprune[scip]')"
            )
        check_convex(model)

    def solve_empty(self, model: MILP, options: SolveOptions) -> SolveResult:
        """The answer every backend gives a model with no columns (solvers disagree, so none is asked).

        With no columns every row is ``row_lower <= 0 <= row_upper``: all hold
        -> OPTIMAL with ``objective = bound = offset`` and ``x`` an empty
        array (what HiGHS' and SCIP's own conventions give); one fails ->
        INFEASIBLE. An objective cutoff the offset does not meet -> INFEASIBLE.
        """
        bad = np.flatnonzero((model.row_lower > 0) | (model.row_upper < 0))
        if bad.size:
            i = int(bad[0])
            return self.result(Status.INFEASIBLE, model, message=(
                f"infeasible: the model has no columns and row {i} needs 0 in [{model.row_lower[i]}, "
                f"{model.row_upper[i]}]"
            ))
        value = float(model.offset)
        if options.cutoff is not None and not (
            value >= options.cutoff if model.sense == Sense.MAXIMIZE else value <= options.cutoff
        ):
            return self.result(Status.INFEASIBLE, model, message="no solution better than the objective cutoff")
        return self.result(Status.OPTIMAL, model, x=np.zeros(0), objective=value, bound=value,
                           message="optimal: the model has no columns")

    def result(self, status: Status, model: MILP, x=None, objective=math.nan, bound=math.nan, **kw) -> SolveResult:
        """Build a result in the model's sense, with the gap computed the same way for every backend.

        Missing entries of ``x`` (NaN) are filled by :func:`fill_unused_columns`;
        a solution still missing a value becomes an ERROR naming the column.
        """
        if x is not None:
            x = np.asarray(x, dtype=np.float64).reshape(-1)
            if x.shape[0] != model.n_vars:
                return self.result(Status.ERROR, model, message=(
                    f"{kw.get('message', '')}: the solver returned {x.shape[0]} values for {model.n_vars} columns"
                ), **{k: v for k, v in kw.items() if k != "message"})
            x = fill_unused_columns(model, x)
            missing = np.flatnonzero(np.isnan(x))
            if missing.size:
                rest = {k: v for k, v in kw.items() if k != "message"}
                message = (f"{kw.get('message', '')}: reported a solution without a value for {missing.size} "
                           f"columns (first: column {int(missing[0])})")
                return self.result(Status.ERROR, model, message=message, **rest)
            if not math.isfinite(objective):
                objective = model.objective_value(x)
        if status == Status.OPTIMAL and not model.is_mip and not math.isfinite(bound):
            bound = objective
        return SolveResult(
            status=status, objective=objective, bound=bound, gap=compute_gap(objective, bound), x=x,
            backend=self.name, version=self.version() or "", **kw,
        )


def quadratic_backends(*, miqp: bool = False) -> list[str]:
    """Names of the backend classes that take a quadratic objective (with integer variables when ``miqp``)."""
    names: list[str] = []
    for cls in _all_backend_classes():
        name = getattr(cls, "name", None)
        if isinstance(name, str) and cls.supports_quadratic and (cls.supports_miqp or not miqp) and name not in names:
            names.append(name)
    return names


def _has_native_cutoff(name: str) -> bool:
    return any(getattr(cls, "name", None) == name and cls.native_cutoff for cls in _all_backend_classes())


def _all_backend_classes() -> list[type[BackendBase]]:
    out, stack = [], list(BackendBase.__subclasses__())
    while stack:
        cls = stack.pop(0)
        out.append(cls)
        stack.extend(cls.__subclasses__())
    return out


_CONVEX_TOL = 1e-9


def check_convex(model: MILP) -> None:
    """Raise :class:`NonConvexObjectiveError` unless ``1/2 x^T Q x`` is convex in the model's sense.

    Minimising needs ``Q`` positive semidefinite, maximising negative semidefinite. ``Q`` is split into the
    blocks of its sparsity graph's connected components (a Kronecker product ``I_m (x) A`` has ``m`` blocks), and
    each block's smallest eigenvalue must be ``>= -1e-9 * max(1, largest |eigenvalue|)``. The answer is cached on
    the (frozen) model.
    """
    cached = model.__dict__.get("_convexity")
    if cached is None:
        cached = _convexity(model)
        object.__setattr__(model, "_convexity", cached)
    if cached:
        want = "negative semidefinite (a concave objective to maximise)" if model.sense == Sense.MAXIMIZE else \
            "positive semidefinite (a convex objective to minimise)"
        raise NonConvexObjectiveError(
            f"the quadratic objective 1/2 x^T Q x must be convex: Q {want}; {cached}. Backends solve convex "
            "QPs and MIQPs only"
        )


def _convexity(model: MILP) -> str:
    """'' when convex, else what is wrong (the offending eigenvalue and its block of columns)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    Q = model.Q if model.sense == Sense.MINIMIZE else -model.Q
    used = np.flatnonzero(np.diff(Q.indptr) > 0)
    sub = sp.csr_matrix(Q[used][:, used])
    count, labels = connected_components(sub, directed=False)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    for b in range(count):
        cols = order[bounds[b]:bounds[b + 1]]
        block = sub[cols][:, cols].toarray()
        eig = np.linalg.eigvalsh(block)
        scale = max(1.0, float(np.max(np.abs(eig))))
        if eig[0] < -_CONVEX_TOL * scale:
            first = used[cols[:5]].tolist()
            return (f"its block of {cols.size} columns {first}{'...' if cols.size > 5 else ''} has eigenvalue "
                    f"{eig[0]:.6g} of {'-Q' if model.sense == Sense.MAXIMIZE else 'Q'}")
    return ""


def fill_unused_columns(model: MILP, x: np.ndarray) -> np.ndarray:
    """``x`` with every NaN entry of a column in no row and with zero objective set inside its bounds.

    Such a column constrains nothing and costs nothing, so some interfaces
    (Pyomo's) never pass it to the solver and return no value for it. It
    gets 0 clipped to its bounds (rounded into them for an integer column).
    Other NaN entries are left for the caller to report.
    """
    gaps = np.isnan(x)
    if not gaps.any():
        return x
    in_rows = np.zeros(model.n_vars, dtype=bool)
    in_rows[model.A.indices[model.A.data != 0]] = True
    free = gaps & ~in_rows & (model.c == 0)
    if not free.any():
        return x
    lo, hi = model.col_lower, model.col_upper
    lo = np.where(model.integrality, np.ceil(lo), lo)
    hi = np.where(model.integrality, np.floor(hi), hi)
    x = x.copy()
    x[free] = np.clip(0.0, lo[free], hi[free])
    return x


def is_better(value: float, reference: float, sense: Sense) -> bool:
    return value > reference if sense == Sense.MAXIMIZE else value < reference
