"""The public modelling layer: variables and rows added as whole arrays, frozen into one :class:`~optprune.milp.MILP`.

A :class:`ModelBuilder` is how every formulation in optprune builds its model,
and how a user builds their own around an embedded network (constraint
learning, as with OMLT or gurobi-machinelearning)::

    b = ModelBuilder()
    x = b.add_vars(784, lower=0.0, upper=1.0, name="x")   # column indices
    y = embed_network(b, net, x)                         # the network's outputs
    b.add_rows(np.ones((1, 784)), x, upper=30.0)         # sum(x) <= 30
    b.set_objective([1.0, -1.0], y[[3, 5]], sense="max")
    model = b.build()

Columns are identified by integer index arrays (:class:`Columns`, a NumPy
array that remembers its builder, so indices from another builder are a named
error). Every call takes whole arrays — one call per block of rows, never one
per coefficient — like highspy's ``addRows`` with CSR arrays.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from optprune._validation import InstanceOf, Interval, validate_params
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.milp import MILP, Sense

__all__ = ["ModelBuilder", "Columns"]

_BUILDER_IDS = itertools.count(1)


class Columns(np.ndarray):
    """Column indices of one :class:`ModelBuilder` (an ``int64`` array; slicing keeps the owner)."""

    owner: int | None

    def __new__(cls, indices, owner: int | None) -> Columns:
        obj = np.asarray(indices, dtype=np.int64).view(cls)
        obj.owner = owner
        return obj

    def __array_finalize__(self, obj) -> None:
        self.owner = getattr(obj, "owner", None)

    def __reduce__(self):  # pickles as a plain array
        return (np.asarray, (np.asarray(self),))


def _sense(sense: str | Sense) -> Sense:
    if isinstance(sense, Sense):
        return sense
    key = str(sense).lower()
    aliases = {"min": Sense.MINIMIZE, "minimize": Sense.MINIMIZE, "max": Sense.MAXIMIZE, "maximize": Sense.MAXIMIZE}
    if key not in aliases:
        raise InvalidParameterError(f"sense must be one of 'min', 'max' (or 'minimize', 'maximize'), got {sense!r}")
    return aliases[key]


def _is_numeric(values) -> bool:
    """A real number, or an array-like (list, NumPy array) of real numbers: never a string, bool or object."""
    if isinstance(values, (str, bytes)):
        return False
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):  # ragged nested lists
        return False
    return arr.dtype.kind in "iuf"


_NUMBERS = "a number or an array of numbers (int or float, not str or bool)"


def _described(values) -> str:
    """What was received, short enough for a message: the value, or an array's shape and dtype."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError):  # ragged nested lists
        return f"a ragged {type(values).__name__}"
    if isinstance(values, (str, bytes)) or arr.ndim == 0:
        return repr(values)
    return f"an array of shape {arr.shape} (dtype {arr.dtype})"


def _bound_vector(owner: str, name: str, values, n: int, what: str) -> np.ndarray:
    """``values`` (a scalar or ``n`` numbers, never NaN) as a read-only length-``n`` float array.

    Messages follow :func:`optprune._validation.validate_params` (owner, parameter, what is allowed, what
    was received), with an array described by its shape rather than its entries.

    ``what`` names one of the ``n`` things in the message (``"column (n)"``, ``"row of coefficients"``).
    """
    arr = _finite_array(f"{owner}: {name}", values, allow_inf=True)
    if not (arr.ndim == 0 or (arr.ndim == 1 and arr.size in (1, n))):
        raise ShapeMismatchError(
            f"{owner}: parameter {name!r} must be a scalar or a 1-D array of {n} numbers, one per {what}; "
            f"got {_described(values)}"
        )
    return np.broadcast_to(arr.reshape(-1), (n,))


def _finite_array(name: str, values, *, allow_inf: bool) -> np.ndarray:
    if not _is_numeric(values):
        owner, _, param = name.rpartition(": ")
        raise InvalidParameterError(f"{owner}: parameter {param!r} must be {_NUMBERS}; "
                                    f"got {_described(values)}")
    arr = np.asarray(values, dtype=np.float64)
    bad = np.isnan(arr) if allow_inf else ~np.isfinite(arr)
    if bad.any():
        where = np.unravel_index(int(np.flatnonzero(bad.reshape(-1))[0]), arr.shape) if arr.ndim else ()
        raise InvalidParameterError(
            f"{name} must be {'a number (not NaN)' if allow_inf else 'finite'} everywhere; "
            f"entry {tuple(int(i) for i in where)} is {arr[where] if arr.ndim else float(arr)}"
        )
    return arr


class ModelBuilder:
    """Columns and row blocks added as arrays; :meth:`build` makes one CSR matrix (module doc)."""

    def __init__(self) -> None:
        self.id = next(_BUILDER_IDS)
        self._col_lower: list[np.ndarray] = []
        self._col_upper: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self.n_cols = 0
        self._rows: list[np.ndarray] = []
        self._cols: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._row_lower: list[np.ndarray] = []
        self._row_upper: list[np.ndarray] = []
        self.n_rows = 0
        self._objective: list[tuple[np.ndarray, np.ndarray]] = []
        self._offset = 0.0
        self._quadratic: sp.coo_matrix | None = None  # 1/2 x^T Q x in global columns
        self._sense: Sense | None = None
        self.groups: dict[str, np.ndarray] = {}
        self.encodings: dict = {}  # name -> ReluEncoding, filled by embed_network

    # ------------------------------------------------------------------ columns

    def add_vars(self, n: int, lower=0.0, upper=math.inf, *, integer: bool = False, name: str | None = None) -> Columns:
        """Add ``n`` columns with the given bounds (scalars or length-``n`` arrays); returns their indices.

        ``name`` records them as a group, readable from a solution with
        :meth:`~optprune.milp.MILP.group`.
        """
        validate_params(
            "add_vars", {"n": n, "integer": integer, "name": name},
            {"n": [Interval(int, 0, None)], "integer": [InstanceOf((bool, np.bool_))],
             "name": [InstanceOf((str,)), None]},
        )
        lower = _bound_vector("add_vars", "lower", lower, int(n), "column (n)")
        upper = _bound_vector("add_vars", "upper", upper, int(n), "column (n)")
        if np.any(lower > upper):
            j = int(np.flatnonzero(lower > upper)[0])
            raise InvalidParameterError(f"add_vars: lower bound {lower[j]} above upper bound {upper[j]} at column {j}")
        idx = self.add_columns(lower, upper, integer=integer)
        if name is not None:
            self.add_group(name, idx)
        return idx

    def add_columns(self, lower, upper, integer: bool = False) -> Columns:
        """Add ``len(lower)`` columns (no checks; the formulations' fast path); returns their indices."""
        lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), lower.shape).copy()
        idx = Columns(np.arange(self.n_cols, self.n_cols + lower.size), self.id)
        self._col_lower.append(lower.copy())
        self._col_upper.append(upper)
        self._integer.append(np.full(lower.size, integer, dtype=bool))
        self.n_cols += lower.size
        return idx

    def column_bounds(self, columns) -> tuple[np.ndarray, np.ndarray]:
        """Current ``(lower, upper)`` bounds of ``columns``."""
        cols = self.check_columns("columns", columns)
        lower = np.concatenate(self._col_lower) if self._col_lower else np.zeros(0)
        upper = np.concatenate(self._col_upper) if self._col_upper else np.zeros(0)
        return lower[cols], upper[cols]

    def check_columns(self, argument: str, columns) -> np.ndarray:
        """``columns`` as an index array of this builder, or a named error saying why not."""
        owner = getattr(columns, "owner", None)
        if owner is not None and owner != self.id:
            raise InvalidParameterError(
                f"{argument}: these column indices were made by another ModelBuilder; "
                "use the indices this builder returned"
            )
        cols = np.asarray(columns)
        if cols.dtype.kind not in "iu":
            raise InvalidParameterError(f"{argument}: column indices must be integers, got dtype {cols.dtype}")
        cols = cols.astype(np.int64).reshape(-1)
        if cols.size and (cols.min() < 0 or cols.max() >= self.n_cols):
            raise InvalidParameterError(
                f"{argument}: column index {int(cols.max() if cols.max() >= self.n_cols else cols.min())} is outside "
                f"0..{self.n_cols - 1} (this builder has {self.n_cols} columns)"
            )
        return cols

    def add_group(self, name: str, columns) -> None:
        """Name a set of columns, so that ``model.group(name, x)`` reads them from a solution."""
        if name in self.groups:
            raise InvalidParameterError(f"a group named {name!r} already exists in this model; choose another name")
        self.groups[name] = self.check_columns(f"group {name!r}", columns)

    # ------------------------------------------------------------------ rows

    def add_rows(self, coefficients, columns, lower=-math.inf, upper=math.inf) -> np.ndarray:
        """Add ``lower <= coefficients @ x[columns] <= upper``; returns the new rows' indices.

        ``coefficients``: an ``m x len(columns)`` dense array or SciPy sparse
        matrix (a 1-D array is one row); ``lower``/``upper``: scalars or
        length-``m`` arrays.
        """
        cols = self.check_columns("add_rows: columns", columns)
        if sp.issparse(coefficients):
            block = sp.coo_matrix(coefficients)
            _finite_array("add_rows: coefficients", block.data, allow_inf=False)
        else:
            dense = _finite_array("add_rows: coefficients", coefficients, allow_inf=False)
            block = sp.coo_matrix(np.atleast_2d(dense))
        if block.shape[1] != cols.size:
            raise ShapeMismatchError(
                f"add_rows: coefficients have {block.shape[1]} columns but {cols.size} column indices were given"
            )
        m = block.shape[0]
        lower = _bound_vector("add_rows", "lower", lower, m, "row of coefficients")
        upper = _bound_vector("add_rows", "upper", upper, m, "row of coefficients")
        if np.any(lower > upper):
            i = int(np.flatnonzero(lower > upper)[0])
            raise InvalidParameterError(f"add_rows: lower bound {lower[i]} above upper bound {upper[i]} at row {i}")
        return self.add_coo_rows(block.row, cols[block.col], block.data, lower, upper)

    def add_coo_rows(self, rows, cols, vals, lower, upper) -> np.ndarray:
        """Add a block of rows from COO triplets: local row numbers ``0..m-1``, global columns, values.

        The formulations' fast path (no validation beyond shapes); ``m`` is the length of ``lower``/``upper``.
        """
        lower, upper = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (lower, upper))
        shape = np.broadcast_shapes(lower.shape, upper.shape)
        lower, upper = np.broadcast_to(lower, shape).copy(), np.broadcast_to(upper, shape).copy()
        m = lower.size
        self._rows.append(np.asarray(rows, dtype=np.int64) + self.n_rows)
        self._cols.append(np.asarray(cols, dtype=np.int64))
        self._vals.append(np.asarray(vals, dtype=np.float64))
        self._row_lower.append(lower)
        self._row_upper.append(upper)
        idx = np.arange(self.n_rows, self.n_rows + m)
        self.n_rows += m
        return idx

    # ------------------------------------------------------------------ objective

    def set_objective(self, coefficients, columns, sense: str | Sense = "min", offset: float = 0.0) -> None:
        """Set the objective ``sense coefficients @ x[columns] + offset`` (replacing any earlier one)."""
        cols = self.check_columns("set_objective: columns", columns)
        coef = _finite_array("set_objective: coefficients", coefficients, allow_inf=False).reshape(-1)
        if coef.size != cols.size:
            raise ShapeMismatchError(f"set_objective: {coef.size} coefficients for {cols.size} columns")
        if not math.isfinite(float(offset)):
            raise InvalidParameterError(f"set_objective: offset must be finite, got {offset}")
        self._objective = [(cols, coef)]
        self._offset = float(offset)
        self._sense = _sense(sense)

    def set_quadratic_objective(self, matrix, columns) -> None:
        """Add ``1/2 x[columns]^T Q x[columns]`` to the objective (replacing any earlier quadratic term).

        ``matrix``: a ``len(columns) x len(columns)`` dense array or SciPy sparse matrix (its symmetric part is
        what counts); the linear part and the sense stay those of :meth:`set_objective`. Which backends solve the
        result, and that it must be convex (``Q`` PSD to minimise), is checked when solving
        (:attr:`~optprune.solvers.BackendBase.supports_quadratic`).
        """
        cols = self.check_columns("set_quadratic_objective: columns", columns)
        if sp.issparse(matrix):
            block = sp.coo_matrix(matrix)
            _finite_array("set_quadratic_objective: matrix", block.data, allow_inf=False)
        else:
            block = sp.coo_matrix(_finite_array("set_quadratic_objective: matrix", matrix, allow_inf=False))
        if block.shape != (cols.size, cols.size):
            raise ShapeMismatchError(
                f"set_quadratic_objective: matrix has shape {block.shape} but {cols.size} column indices were given; "
                f"expected ({cols.size}, {cols.size})"
            )
        self._quadratic = sp.coo_matrix((block.data, (cols[block.row], cols[block.col])))

    def objective_vector(self) -> np.ndarray:
        c = np.zeros(self.n_cols)
        for cols, coef in self._objective:
            np.add.at(c, cols, coef)
        return c

    # ------------------------------------------------------------------ freeze

    def build(self, c=None, sense: Sense | str | None = None, offset: float | None = None,
              groups: Mapping[str, np.ndarray] | None = None, name: str = "optprune") -> MILP:
        """Freeze into a :class:`MILP`: the objective set by :meth:`set_objective` unless ``c`` is given."""
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # noqa: E731
        A = sp.csr_matrix(
            (cat(self._vals, float), (cat(self._rows, np.int64), cat(self._cols, np.int64))),
            shape=(self.n_rows, self.n_cols),
        )
        if c is None:
            c = self.objective_vector()
        chosen_sense = _sense(sense) if sense is not None else (self._sense or Sense.MINIMIZE)
        all_groups = {k: np.asarray(v) for k, v in self.groups.items()}
        all_groups.update({k: np.asarray(v) for k, v in (groups or {}).items()})
        Q = None
        if self._quadratic is not None:
            q = self._quadratic
            Q = sp.csr_matrix((q.data, (q.row, q.col)), shape=(self.n_cols, self.n_cols))
        return MILP(
            c=c, A=A, row_lower=cat(self._row_lower, float), row_upper=cat(self._row_upper, float),
            col_lower=cat(self._col_lower, float), col_upper=cat(self._col_upper, float),
            integrality=cat(self._integer, bool), sense=chosen_sense,
            offset=self._offset if offset is None else offset, groups=all_groups, name=name, Q=Q,
        )
