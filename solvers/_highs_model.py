"""Conversion between :class:`~optprune.milp.MILP` and a ``highspy.Highs`` object.

The whole model goes to HiGHS in one ``passModel`` call with CSR arrays.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from optprune.milp import MILP, Sense


def _highs_module():
    try:
        import highspy
    except ImportError as exc:  # highspy is a core dependency; say so if it is missing
        from optprune.errors import SolverNotAvailableError

        raise SolverNotAvailableError(
            "HiGHS (highspy) is a core dependency of optprune but is not installed: pip install highspy"
        ) from exc
    return highspy


_BANNER_SHOWN = False


def new_highs():
    """A fresh ``highspy.Highs`` with output off.

    HiGHS prints a banner on stdout the first time one is created in a process;
    it goes to stderr instead so that ``--json`` output stays one JSON object.
    """
    global _BANNER_SHOWN
    highspy = _highs_module()
    if _BANNER_SHOWN:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_SHOWN = True
    h.setOptionValue("output_flag", False)
    return h


def to_highs(model: MILP, *, verbose: bool = False):
    """A ``highspy.Highs`` holding ``model`` (rows in CSR form)."""
    highspy = _highs_module()
    h = new_highs()
    h.setOptionValue("output_flag", bool(verbose))
    lp = highspy.HighsLp()
    lp.num_col_ = model.n_vars
    lp.num_row_ = model.n_rows
    lp.col_cost_ = model.c
    lp.col_lower_ = model.col_lower
    lp.col_upper_ = model.col_upper
    lp.row_lower_ = model.row_lower
    lp.row_upper_ = model.row_upper
    lp.offset_ = float(model.offset)
    lp.sense_ = highspy.ObjSense.kMaximize if model.sense == Sense.MAXIMIZE else highspy.ObjSense.kMinimize
    A = model.A
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = model.n_vars
    lp.a_matrix_.num_row_ = model.n_rows
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data
    if model.is_mip:
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if flag else highspy.HighsVarType.kContinuous
            for flag in model.integrality
        ]
    if model.names is not None:
        lp.col_names_ = list(model.names)
    h.passModel(lp)
    return h


def from_highs_file(path: Path) -> MILP:
    """Read an MPS/LP file with HiGHS and return its :class:`MILP`."""
    highspy = _highs_module()
    from optprune.errors import SolverError

    h = new_highs()
    status = h.readModel(str(path))
    if status == highspy.HighsStatus.kError:
        raise SolverError(f"HiGHS could not read model file {str(path)!r}: is it valid MPS or LP?")
    lp = h.getLp()
    n, m = lp.num_col_, lp.num_row_
    mat = lp.a_matrix_
    start, index, value = (np.asarray(mat.start_), np.asarray(mat.index_), np.asarray(mat.value_, dtype=float))
    if mat.format_ == highspy.MatrixFormat.kRowwise:
        A = sp.csr_matrix((value, index, start), shape=(m, n))
    else:
        A = sp.csc_matrix((value, index, start), shape=(m, n)).tocsr()
    integrality = np.zeros(n, dtype=bool)
    if len(lp.integrality_):
        integrality = np.array([v != highspy.HighsVarType.kContinuous for v in lp.integrality_], dtype=bool)
    names = tuple(lp.col_names_) if len(lp.col_names_) == n and n else None
    return MILP(
        c=np.asarray(lp.col_cost_), A=A, row_lower=np.asarray(lp.row_lower_), row_upper=np.asarray(lp.row_upper_),
        col_lower=np.asarray(lp.col_lower_), col_upper=np.asarray(lp.col_upper_), integrality=integrality,
        sense=Sense.MAXIMIZE if lp.sense_ == highspy.ObjSense.kMaximize else Sense.MINIMIZE,
        offset=float(lp.offset_), names=names, name=Path(path).stem,
    )
