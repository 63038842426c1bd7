"""Helpers at the boundary with native solver code: nothing here imports a solver package or the protocol.

Used by :class:`~optprune.solvers.base.BackendBase` (the lifecycle) and by the backends.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp

from optprune.errors import OptpruneError, SolverError
from optprune.milp import MILP, Sense

__all__ = ["solver_boundary", "native_stdout_to_stderr", "with_cutoff_row", "zero_objective", "with_cost"]


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

    Solver banners and logs (HiGHS, SCIP, CBC, Gurobi) write to the process's
    stdout directly; the CLI's ``--json`` promises exactly one JSON object
    there, so solver output goes to stderr like every other log.
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


def with_cost(model: MILP, cost: np.ndarray, *, relax: bool = False) -> MILP:
    """``min cost @ x`` over ``model``'s rows and bounds (its own objective, sense and offset dropped)."""
    integrality = np.zeros(model.n_vars, dtype=bool) if relax else model.integrality
    return MILP(
        np.asarray(cost, dtype=np.float64), model.A, model.row_lower, model.row_upper, model.col_lower,
        model.col_upper, integrality, Sense.MINIMIZE, 0.0, None, {}, model.name,
    )


def zero_objective(model: MILP) -> MILP:
    """The feasibility problem of ``model`` (objective 0): tells infeasible from unbounded."""
    return MILP(
        np.zeros(model.n_vars), model.A, model.row_lower, model.row_upper, model.col_lower, model.col_upper,
        model.integrality, model.sense, 0.0, None, {}, model.name,
    )
