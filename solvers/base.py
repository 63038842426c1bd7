"""The protocol every backend implements, and the one result type they return.

As in cvxpy's solver layer: a backend is one module with a name, an
availability check that imports nothing native, capability flags, a map from
the solver's statuses into :class:`Status`, and one ``solve`` method that
takes a :class:`~optprune.milp.MILP` and returns a :class:`SolveResult`.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from optprune.errors import CapabilityError, InvalidParameterError, SolverNotAvailableError
from optprune.milp import MILP, Sense

__all__ = [
    "Status",
    "Progress",
    "SolveOptions",
    "SolveResult",
    "Backend",
    "BackendBase",
    "compute_gap",
]


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
    verbose: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_limit is not None and not self.time_limit > 0:
            raise InvalidParameterError(f"time_limit must be > 0 seconds, got {self.time_limit}")
        if self.mip_gap is not None and not 0 <= self.mip_gap < 1:
            raise InvalidParameterError(f"mip_gap (relative MIP gap) must be in [0, 1), got {self.mip_gap}")
        if self.mip_abs_gap is not None and not (math.isfinite(self.mip_abs_gap) and self.mip_abs_gap >= 0):
            raise InvalidParameterError(f"mip_abs_gap (absolute MIP gap) must be finite and >= 0, got {self.mip_abs_gap}")
        for option in ("feasibility_tol", "integrality_tol"):
            value = getattr(self, option)
            if value is not None and not (math.isfinite(value) and 0 < value < 1):
                raise InvalidParameterError(f"{option} must be in (0, 1), got {value}")
        if self.threads is not None and self.threads < 1:
            raise InvalidParameterError(f"threads must be >= 1, got {self.threads}")


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
    """Shared plumbing: availability from the import spec, the install hint, checks."""

    name: ClassVar[str]
    package: ClassVar[str]  # importable module name, checked without importing it
    extra: ClassVar[str]  # the pip extra that installs it
    supports_integer: ClassVar[bool] = True
    supports_continuous: ClassVar[bool] = True
    supports_callbacks: ClassVar[bool] = False

    def is_available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

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
        }

    def require(self) -> None:
        if not self.is_available():
            raise SolverNotAvailableError(
                f"solver backend {self.name!r} needs the Python package {self.distribution!r}, "
                f"which is not installed; install it with: {self.install_hint}"
            )

    def check_model(self, model: MILP) -> None:
        if model.is_mip and not self.supports_integer:
            raise CapabilityError(f"backend {self.name!r} solves LPs only; this model has {model.n_integer} integer variables")
        if not self.supports_continuous and not model.integrality.all():
            raise CapabilityError(
                f"backend {self.name!r} needs every variable integer; "
                f"{model.n_vars - model.n_integer} of {model.n_vars} are continuous"
            )

    def result(self, status: Status, model: MILP, x=None, objective=math.nan, bound=math.nan, **kw) -> SolveResult:
        """Build a result in the model's sense, with the gap computed the same way for every backend."""
        if x is not None:
            x = np.asarray(x, dtype=np.float64)
            if not math.isfinite(objective):
                objective = model.objective_value(x)
        if status == Status.OPTIMAL and not model.is_mip and not math.isfinite(bound):
            bound = objective
        return SolveResult(
            status=status, objective=objective, bound=bound, gap=compute_gap(objective, bound), x=x,
            backend=self.name, version=self.version() or "", **kw,
        )


def is_better(value: float, reference: float, sense: Sense) -> bool:
    return value > reference if sense == Sense.MAXIMIZE else value < reference
