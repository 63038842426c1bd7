"""Plumbing shared by the optional backends (SCIP, OR-Tools, CP-SAT, Pyomo, cvxpy).

Nothing here imports a solver package.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from optprune.errors import OptpruneError, SolverError
from optprune.milp import MILP, Sense
from optprune.solvers.base import Progress, SolveOptions, Status

__all__ = [
    "warn_unsupported",
    "solver_boundary",
    "native_stdout_to_stderr",
    "stop_rules",
    "with_cutoff_row",
    "zero_objective",
    "resolve_infeasible_or_unbounded",
    "split_rows",
]


def warn_unsupported(backend: str, option: str, detail: str = "") -> None:
    """Warn that ``option`` is ignored by ``backend`` (never silently dropped)."""
    tail = f": {detail}" if detail else ""
    warnings.warn(f"solver backend {backend!r} ignores the option {option!r}{tail}", UserWarning, stacklevel=3)


@contextmanager
def solver_boundary(backend: str) -> Iterator[None]:
    """Re-raise any exception from inside a solver package as :class:`SolverError` naming the backend."""
    try:
        yield
    except OptpruneError:
        raise
    except Exception as exc:  # the solver's own exception types differ per package
        raise SolverError(f"solver backend {backend!r} failed: {type(exc).__name__}: {exc}") from exc


@contextmanager
def native_stdout_to_stderr() -> Iterator[None]:
    """Send what native solver code prints on file descriptor 1 to stderr instead.

    Solver banners and logs (HiGHS inside OR-Tools, SCIP, CBC) write to the
    process's stdout directly; the CLI's ``--json`` promises exactly one JSON
    object there, so solver output goes to stderr like every other log.
    """
    try:
        fd_out, fd_err = sys.__stdout__.fileno(), sys.__stderr__.fileno()
    except (AttributeError, OSError, ValueError):  # no real descriptors (embedded interpreter)
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd_out)
    try:
        os.dup2(fd_err, fd_out)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd_out)
        os.close(saved)


def _target_rule(target: float, sense: Sense) -> Callable[[Progress], bool]:
    from optprune.solvers.highs import stop_for_target

    return lambda p: stop_for_target(p, target, sense)


def stop_rules(options: SolveOptions, sense: Sense) -> list[Callable[[Progress], bool]]:
    """The early-stop predicates from ``options.stop_rule`` and ``options.target``."""
    rules: list[Callable[[Progress], bool]] = []
    if options.stop_rule is not None:
        rules.append(options.stop_rule)
    if options.target is not None:
        rules.append(_target_rule(float(options.target), sense))
    return rules


def with_cutoff_row(model: MILP, cutoff: float, *, integral_objective: bool = False) -> MILP:
    """``model`` plus the row ``c @ x + offset <= cutoff`` (``>=`` when maximising).

    Used by backends without a native objective cutoff. With
    ``integral_objective`` (integer ``c`` and integer variables) the strict
    form ``c @ x + offset < cutoff`` is written exactly:
    ``c @ x <= ceil(cutoff - offset) - 1`` (minimise) or
    ``c @ x >= floor(cutoff - offset) + 1`` (maximise).
    """
    rhs = float(cutoff) - float(model.offset)
    if model.sense == Sense.MAXIMIZE:
        lo, hi = (math.floor(rhs) + 1 if integral_objective else rhs), math.inf
    else:
        lo, hi = -math.inf, (math.ceil(rhs) - 1 if integral_objective else rhs)
    A = sp.vstack([model.A, sp.csr_matrix(model.c.reshape(1, -1))], format="csr")
    return MILP(
        model.c, A, np.append(model.row_lower, lo), np.append(model.row_upper, hi), model.col_lower,
        model.col_upper, model.integrality, model.sense, model.offset, model.names, dict(model.groups), model.name,
    )


def zero_objective(model: MILP) -> MILP:
    """The feasibility problem of ``model`` (objective 0): tells infeasible from unbounded."""
    return MILP(
        np.zeros(model.n_vars), model.A, model.row_lower, model.row_upper, model.col_lower, model.col_upper,
        model.integrality, model.sense, 0.0, None, {}, model.name,
    )


def resolve_infeasible_or_unbounded(solve_probe: Callable[[MILP], Status], model: MILP) -> Status:
    """INFEASIBLE or UNBOUNDED for a model a solver reported as "infeasible or unbounded".

    ``solve_probe`` solves the zero-objective copy: if that has a solution the
    original is feasible, hence unbounded.
    """
    status = solve_probe(zero_objective(model))
    if status == Status.INFEASIBLE:
        return Status.INFEASIBLE
    if status.has_solution:
        return Status.UNBOUNDED
    return Status.ERROR


def split_rows(model: MILP) -> dict[str, tuple[sp.csr_matrix, np.ndarray]]:
    """Rows by kind, for APIs that take ``A x == b``, ``A x <= u`` and ``A x >= l`` separately.

    Returns ``{"eq": (A_eq, b), "le": (A_le, u), "ge": (A_ge, l)}``; a ranged
    row ``l < A_i x < u`` appears in both "le" and "ge"; a row with both sides
    infinite appears nowhere.
    """
    lo, hi = model.row_lower, model.row_upper
    eq = np.isfinite(lo) & np.isfinite(hi) & (lo == hi)
    le = np.isfinite(hi) & ~eq
    ge = np.isfinite(lo) & ~eq
    A = model.A
    return {"eq": (A[eq], hi[eq]), "le": (A[le], hi[le]), "ge": (A[ge], lo[ge])}
