"""The one solver-neutral model type passed from formulations to backends.

A :class:`MILP` is the array form every backend accepts::

    min/max  c @ x + offset  [+ 1/2 x^T Q x]
    s.t.     row_lower <= A @ x <= row_upper       (A: scipy.sparse CSR)
             col_lower <= x <= col_upper
             x[j] integer where integrality[j]

It is frozen and built from whole arrays (never one Python call per
coefficient), like highspy's ``passModel``. Named index ``groups`` let a
formulation read its own variables back from a solution (e.g. ``"input"``).

An optional sparse ``Q`` (n x n, stored as its symmetric part ``(Q + Q^T) / 2``,
which has the same ``x^T Q x``) adds the quadratic term ``1/2 x^T Q x`` to the
objective, as in HiGHS and OSQP; ``Q=None`` (the default) leaves every MILP as it
was. Which backends take it, and that it must be convex (``Q`` positive semidefinite
when minimising, negative semidefinite when maximising), is the solver layer's
business (:attr:`~optprune.solvers.BackendBase.supports_quadratic`).

Files belong to the solver layer, built on this module: :func:`optprune.solvers.write_model`
writes a MILP as MPS or CPLEX LP and :func:`optprune.solvers.read_model` reads one back.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from dataclasses import replace as dataclass_replace
from enum import Enum
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from optprune.errors import InvalidParameterError, ShapeMismatchError

__all__ = ["Sense", "MILP"]

INF = np.inf


class Sense(str, Enum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"


def _refuse_nonfinite(name: str, values: np.ndarray, *, allow_inf: bool, allowed: str) -> None:
    """Raise :class:`InvalidParameterError` naming ``name``, the first bad index and the count."""
    bad = np.isnan(values) if allow_inf else ~np.isfinite(values)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise InvalidParameterError(
            f"MILP {name}[{int(idx[0])}] is {float(values[idx[0]])} ({idx.size} such entries); {allowed}"
        )


def _check_finite(M: sp.csr_matrix, label: str) -> None:
    """Sum duplicate entries of ``M`` in place; a NaN/inf entry is an error naming its row and column."""
    M.sum_duplicates()
    bad = ~np.isfinite(M.data)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(M.indptr, k, side="right") - 1)
        name, _, symbol = label.rpartition(" ")
        raise InvalidParameterError(
            f"MILP {name} {symbol}[{row}, {int(M.indices[k])}] is {float(M.data[k])} ({int(bad.sum())} such "
            "entries); coefficients must be finite numbers"
        )

def _quadratic(Q, n: int) -> sp.csr_matrix | None:
    """``Q`` as a finite, symmetric n x n CSR matrix (its symmetric part), or None."""
    if Q is None:
        return None
    Q = sp.csr_matrix(Q, dtype=np.float64)
    if Q.shape != (n, n):
        raise ShapeMismatchError(f"quadratic objective Q has shape {Q.shape}, expected ({n}, {n}) (one row and "
                                 "one column per variable)")
    _check_finite(Q, "quadratic objective Q")
    Q = sp.csr_matrix((Q + Q.T) * 0.5)
    Q.eliminate_zeros()
    Q.sort_indices()
    return Q


def _vector(name: str, values, n: int, default: float) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=np.float64)
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 1 and n != 1:
        arr = np.full(n, float(arr[0]))
    if arr.shape[0] != n:
        raise ShapeMismatchError(f"{name} has {arr.shape[0]} entries, expected {n}")
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class MILP:
    """A linear or mixed-integer linear program in array form (see module doc)."""

    c: np.ndarray
    A: sp.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    sense: Sense = Sense.MINIMIZE
    offset: float = 0.0
    names: tuple[str, ...] | None = None
    groups: Mapping[str, np.ndarray] = field(default_factory=dict)
    name: str = "optprune"
    Q: sp.csr_matrix | None = None

    def __post_init__(self) -> None:
        c = np.asarray(self.c, dtype=np.float64).reshape(-1)
        n = c.shape[0]
        A = sp.csr_matrix(self.A, dtype=np.float64) if self.A is not None else sp.csr_matrix((0, n))
        if A.shape[1] != n:
            raise ShapeMismatchError(f"constraint matrix has {A.shape[1]} columns, objective has {n} entries")
        m = A.shape[0]
        _check_finite(A, "constraint matrix A")
        set_ = lambda k, v: object.__setattr__(self, k, v)
        set_("c", _vector("c", c, n, 0.0))
        set_("A", A)
        set_("row_lower", _vector("row_lower", self.row_lower, m, -INF))
        set_("row_upper", _vector("row_upper", self.row_upper, m, INF))
        set_("col_lower", _vector("col_lower", self.col_lower, n, 0.0))
        set_("col_upper", _vector("col_upper", self.col_upper, n, INF))
        integ = (
            np.zeros(n, dtype=bool)
            if self.integrality is None
            else np.asarray(self.integrality, dtype=bool).reshape(-1)
        )
        if integ.shape[0] != n:
            raise ShapeMismatchError(f"integrality has {integ.shape[0]} entries, expected {n}")
        set_("integrality", integ)
        _refuse_nonfinite("c", self.c, allow_inf=False, allowed="objective coefficients must be finite numbers")
        for key in ("row_lower", "row_upper", "col_lower", "col_upper"):
            _refuse_nonfinite(key, getattr(self, key), allow_inf=True,
                              allowed="bounds are numbers or +-inf (no bound), never NaN")
        wrong_infinities = (
            ("row_lower", np.inf), ("col_lower", np.inf), ("row_upper", -np.inf), ("col_upper", -np.inf),
        )
        for key, wrong in wrong_infinities:
            hit = np.flatnonzero(getattr(self, key) == wrong)
            if hit.size:
                raise InvalidParameterError(
                    f"MILP {key}[{int(hit[0])}] is {wrong} ({hit.size} such entries); a lower bound cannot be +inf "
                    "and an upper bound cannot be -inf"
                )
        offset = float(self.offset)
        if not np.isfinite(offset):
            raise InvalidParameterError(f"MILP objective offset is {offset}; it must be a finite number")
        set_("offset", offset)
        set_("sense", Sense(self.sense))
        if self.names is not None and len(self.names) != n:
            raise ShapeMismatchError(f"{len(self.names)} variable names for {n} variables")
        groups = {}
        for key, idx in dict(self.groups).items():
            idx = np.asarray(idx, dtype=np.int64)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ShapeMismatchError(f"group {key!r} indexes outside 0..{n - 1}")
            groups[key] = idx
        set_("groups", MappingProxyType(groups))
        set_("Q", _quadratic(self.Q, n))
        for label, lo, hi in (("row", self.row_lower, self.row_upper), ("column", self.col_lower, self.col_upper)):
            bad = np.flatnonzero(lo > hi)
            if bad.size:
                j = int(bad[0])
                raise ShapeMismatchError(
                    f"{label} {j} has lower bound {lo[j]} above upper bound {hi[j]} ({bad.size} such {label}s)"
                )

    @property
    def n_vars(self) -> int:
        return int(self.c.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_integer(self) -> int:
        return int(self.integrality.sum())

    @property
    def is_mip(self) -> bool:
        return bool(self.integrality.any())

    @property
    def is_quadratic(self) -> bool:
        """True when the objective has a quadratic term ``1/2 x^T Q x`` (a nonzero ``Q``)."""
        return self.Q is not None and self.Q.nnz > 0

    def group(self, key: str, x: np.ndarray) -> np.ndarray:
        """The entries of solution ``x`` that belong to group ``key``."""
        if key not in self.groups:
            raise KeyError(f"no variable group {key!r}; groups: {sorted(self.groups)}")
        return np.asarray(x)[self.groups[key]]

    def objective_value(self, x: np.ndarray) -> float:
        """``c @ x + offset``, plus ``1/2 x^T Q x`` for a quadratic objective."""
        value = float(self.c @ x + self.offset)
        if self.is_quadratic:
            x = np.asarray(x, dtype=np.float64)
            value += 0.5 * float(x @ (self.Q @ x))
        return value

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of rows, bounds and integrality by ``x`` (0 when feasible)."""
        x = np.asarray(x, dtype=np.float64)
        ax = self.A @ x
        viol = [
            np.max(self.row_lower - ax, initial=0.0),
            np.max(ax - self.row_upper, initial=0.0),
            np.max(self.col_lower - x, initial=0.0),
            np.max(x - self.col_upper, initial=0.0),
        ]
        if self.is_mip:
            xi = x[self.integrality]
            viol.append(np.max(np.abs(xi - np.round(xi)), initial=0.0))
        return float(max(viol))

    def stats(self) -> dict:
        return {
            "variables": self.n_vars,
            "constraints": self.n_rows,
            "nonzeros": int(self.A.nnz),
            "integers": self.n_integer,
            **({"quadratic_nonzeros": int(self.Q.nnz)} if self.is_quadratic else {}),
        }

    def relaxed(self) -> MILP:
        """The LP relaxation (integrality dropped)."""
        return self.replace(integrality=np.zeros(self.n_vars, dtype=bool))

    def replace(self, **changes) -> MILP:
        """A new model with the given fields changed (``dataclasses.replace``; the model itself is frozen)."""
        return dataclass_replace(self, **changes)

    def with_rows(self, A_rows, lower=-INF, upper=INF) -> MILP:
        """A new model with the rows ``lower <= A_rows @ x <= upper`` appended (``A_rows``: m x n_vars)."""
        block = sp.csr_matrix(A_rows, dtype=np.float64)
        if block.shape[1] != self.n_vars:
            raise ShapeMismatchError(f"with_rows: the new rows have {block.shape[1]} columns, the model {self.n_vars}")
        m = block.shape[0]
        return self.replace(
            A=sp.vstack([self.A, block], format="csr"),
            row_lower=np.concatenate([self.row_lower, _vector("lower", lower, m, -INF)]),
            row_upper=np.concatenate([self.row_upper, _vector("upper", upper, m, INF)]),
        )

    def with_columns(self, lower, upper, *, integer: bool = False, c=0.0) -> tuple[MILP, np.ndarray]:
        """A new model with columns appended (in no row yet) and their indices; ``c`` is their objective."""
        lo = np.asarray(lower, dtype=np.float64).reshape(-1)
        k = lo.size
        Q = None if self.Q is None else sp.block_diag([self.Q, sp.csr_matrix((k, k))], format="csr")
        new = self.replace(
            Q=Q,
            c=np.concatenate([self.c, _vector("c", c, k, 0.0)]),
            A=sp.hstack([self.A, sp.csr_matrix((self.n_rows, k))], format="csr"),
            col_lower=np.concatenate([self.col_lower, lo]),
            col_upper=np.concatenate([self.col_upper, _vector("upper", upper, k, INF)]),
            integrality=np.concatenate([self.integrality, np.full(k, bool(integer))]),
            names=None if self.names is None else (*self.names, *(f"x{self.n_vars + j}" for j in range(k))),
        )
        return new, np.arange(self.n_vars, self.n_vars + k)

