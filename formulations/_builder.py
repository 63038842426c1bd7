"""Accumulate columns and COO row blocks with whole arrays, then freeze into a MILP."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optprune.milp import MILP, Sense


class ModelBuilder:
    """Columns and row blocks added as arrays; :meth:`build` makes one CSR matrix."""

    def __init__(self) -> None:
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

    def add_columns(self, lower, upper, integer: bool = False) -> np.ndarray:
        """Add ``len(lower)`` columns; returns their indices."""
        lower = np.asarray(lower, dtype=np.float64).reshape(-1)
        upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), lower.shape).copy()
        idx = np.arange(self.n_cols, self.n_cols + lower.size)
        self._col_lower.append(lower)
        self._col_upper.append(upper)
        self._integer.append(np.full(lower.size, integer, dtype=bool))
        self.n_cols += lower.size
        return idx

    def add_rows(self, rows, cols, vals, lower, upper) -> np.ndarray:
        """Add a block of rows given local row numbers (0..m-1), global columns and values."""
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

    def build(self, c, sense: Sense = Sense.MINIMIZE, offset: float = 0.0, groups=None, name: str = "optprune") -> MILP:
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)  # noqa: E731
        A = sp.csr_matrix(
            (cat(self._vals, float), (cat(self._rows, np.int64), cat(self._cols, np.int64))),
            shape=(self.n_rows, self.n_cols),
        )
        return MILP(
            c=c, A=A, row_lower=cat(self._row_lower, float), row_upper=cat(self._row_upper, float),
            col_lower=cat(self._col_lower, float), col_upper=cat(self._col_upper, float),
            integrality=cat(self._integer, bool), sense=sense, offset=offset, groups=groups or {}, name=name,
        )
