"""Plumbing shared by the backends. Nothing here imports a solver package.

The helpers at the native boundary (``solver_boundary``, ``native_stdout_to_stderr``,
``with_cutoff_row``, ``with_cost``, ``zero_objective``) live in :mod:`optprune.solvers._native`
and ``stop_rules`` in :mod:`optprune.solvers.base`; import them from there.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from optprune.milp import MILP
from optprune.solvers.base import SolveOptions

__all__ = ["warn_unsupported", "native_values", "tightest_feasibility", "split_rows", "row_kinds"]


def warn_unsupported(backend: str, option: str, detail: str = "") -> None:
    """Warn that ``option`` is ignored by ``backend`` (never silently dropped)."""
    tail = f": {detail}" if detail else ""
    warnings.warn(f"solver backend {backend!r} ignores the option {option!r}{tail}", UserWarning, stacklevel=3)


def native_values(options: SolveOptions, names: dict[str, str]) -> dict[str, float]:
    """``{native name: value}`` for every shared option in ``names`` (option -> native name) that is set."""
    return {native: float(getattr(options, option)) for option, native in names.items()
            if getattr(options, option) is not None}


def tightest_feasibility(options: SolveOptions) -> float | None:
    """The smaller of ``feasibility_tol`` and ``integrality_tol`` (None when neither is set).

    For solvers that check rows, bounds and integrality with one number
    (HiGHS' ``mip_feasibility_tolerance``, SCIP's ``numerics/feastol``).
    """
    tols = [t for t in (options.feasibility_tol, options.integrality_tol) if t is not None]
    return float(min(tols)) if tols else None


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


def row_kinds(model: MILP) -> dict[str, np.ndarray]:
    """The row indices of each kind of :func:`split_rows` (to map multipliers of the split rows back)."""
    lo, hi = model.row_lower, model.row_upper
    eq = np.isfinite(lo) & np.isfinite(hi) & (lo == hi)
    return {"eq": np.flatnonzero(eq), "le": np.flatnonzero(np.isfinite(hi) & ~eq),
            "ge": np.flatnonzero(np.isfinite(lo) & ~eq)}
