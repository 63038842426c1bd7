"""Conversion between :class:`~optprune.milp.MILP` and a ``highspy.Highs`` object.

The whole model goes to HiGHS in one ``passModel`` call with CSR arrays (integrality in one
``changeColsIntegrality`` call); a quadratic objective ``1/2 x^T Q x`` in one ``passHessian`` call with the lower
triangle of ``Q`` in compressed-column form (HiGHS' ``HessianFormat.kTriangular``; its objective is
``c^T x + 1/2 x^T Q x`` too).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from optprune.milp import MILP, Sense
from optprune.solvers._native import native_stdout_to_stderr


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
        with native_stdout_to_stderr():
            h = highspy.Highs()
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
    if model.names is not None:
        lp.col_names_ = list(model.names)
    h.passModel(lp)
    if model.is_quadratic:
        lower = sp.csc_matrix(sp.tril(model.Q, format="csc"))
        lower.sort_indices()
        status = h.passHessian(model.n_vars, int(lower.nnz), int(highspy.HessianFormat.kTriangular),
                               lower.indptr.astype(np.int32), lower.indices.astype(np.int32),
                               lower.data.astype(np.float64))
        if status == highspy.HighsStatus.kError:
            from optprune.errors import SolverError

            raise SolverError("HiGHS refused the Hessian of the quadratic objective (passHessian)")
    if model.is_mip:  # one array call (HighsLp.integrality_ takes only a list of HighsVarType)
        cols = np.flatnonzero(model.integrality).astype(np.int32)
        kinds = np.full(cols.size, int(highspy.HighsVarType.kInteger), dtype=np.uint8)
        h.changeColsIntegrality(int(cols.size), cols, kinds)
    return h


def _hessian(hessian, n: int) -> sp.csr_matrix | None:
    """The symmetric ``Q`` of a HiGHS Hessian (triangular or square, compressed columns), or None when empty."""
    import highspy

    if hessian.dim_ == 0 or not len(hessian.value_):
        return None
    start, index = np.asarray(hessian.start_), np.asarray(hessian.index_)
    H = sp.csc_matrix((np.asarray(hessian.value_, dtype=float), index, start), shape=(n, n))
    if hessian.format_ == highspy.HessianFormat.kTriangular:
        H = H + sp.tril(H, k=-1).T
    return sp.csr_matrix(H)


def _read_log(h, path: Path):
    """Read ``path`` into ``h`` with HiGHS' log going to a temporary file; returns (status, log text)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "read.log"
        h.setOptionValue("log_to_console", False)
        h.setOptionValue("log_file", str(log))
        h.setOptionValue("output_flag", True)
        status = h.readModel(str(path))
        h.setOptionValue("output_flag", False)
        h.setOptionValue("log_file", "")
        text = log.read_text(errors="replace") if log.exists() else ""
    return status, text


def _mps_entry_line(path: Path, log: str) -> int | None:
    """The line of the entry HiGHS' MPS reader quotes (``Entry "..." in ... section``), if it quotes one."""
    match = re.search(r'Entry "([^"]*)"', log)
    if not match:
        return None
    wanted = match.group(1).split()
    try:
        with open(path, errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if line.split() == wanted:
                    return number
    except OSError:
        return None
    return None


def _nonfinite_line(path: Path, word: str) -> int | None:
    """The first line of ``path`` with the token ``word`` (nan or inf, any case)."""
    pattern = re.compile(rf"(?i)(?<![\w.]){'nan' if word == 'nan' else 'inf(?:inity)?'}(?![\w.])")
    try:
        with open(path, errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                if pattern.search(line):
                    return number
    except OSError:
        return None
    return None


def from_highs_file(path: Path) -> MILP:
    """Read an MPS/LP file with HiGHS and return its :class:`MILP`.

    A file HiGHS cannot read raises :class:`~optprune.errors.FileFormatError`
    with what HiGHS said (which, for LP files, includes the line and column;
    for MPS files the line is looked up from the entry HiGHS quotes). NaN or
    infinite coefficients raise :class:`~optprune.errors.InvalidParameterError`
    naming the array, the index and the line of the file.
    """
    highspy = _highs_module()
    from optprune.errors import FileFormatError, InvalidParameterError

    h = new_highs()
    status, log = _read_log(h, path)
    if status == highspy.HighsStatus.kError:
        said = " ".join(line.strip() for line in log.splitlines() if line.strip()) or "no message"
        found = re.search(r"--> .*:(\d+):(\d+)", log)  # the LP reader names line and column
        line = _mps_entry_line(path, log)
        where = (f" (line {found.group(1)}, column {found.group(2)})" if found
                 else f" (line {line})" if line is not None else "")
        raise FileFormatError(
            f"HiGHS could not read model file {str(path)!r}{where}; expected a valid MPS or CPLEX LP file. "
            f"HiGHS said: {said}"
        )
    lp = h.getLp()
    n, m = lp.num_col_, lp.num_row_
    mat = lp.a_matrix_
    start, index, value = (np.asarray(mat.start_), np.asarray(mat.index_), np.asarray(mat.value_, dtype=float))
    if mat.format_ == highspy.MatrixFormat.kRowwise:
        A = sp.csr_matrix((value, index, start), shape=(m, n))
    else:
        A = sp.csc_matrix((value, index, start), shape=(m, n)).tocsr()
    integrality = np.zeros(n, dtype=bool)
    if len(lp.integrality_):  # any HighsVarType but kContinuous counts as integer
        integrality = np.asarray(lp.integrality_, dtype=np.int64) != int(highspy.HighsVarType.kContinuous)
    names = tuple(lp.col_names_) if len(lp.col_names_) == n and n else None
    Q = _hessian(h.getModel().hessian_, n)
    try:
        return MILP(
            c=np.asarray(lp.col_cost_), A=A, row_lower=np.asarray(lp.row_lower_),
            row_upper=np.asarray(lp.row_upper_), col_lower=np.asarray(lp.col_lower_),
            col_upper=np.asarray(lp.col_upper_), integrality=integrality,
            sense=Sense.MAXIMIZE if lp.sense_ == highspy.ObjSense.kMaximize else Sense.MINIMIZE,
            offset=float(lp.offset_), names=names, name=Path(path).stem, Q=Q,
        )
    except InvalidParameterError as exc:
        line = _nonfinite_line(path, "nan" if " nan " in f" {exc} " or "is nan" in str(exc) else "inf")
        where = f" (line {line})" if line is not None else ""
        raise InvalidParameterError(f"model file {str(path)!r}{where}: {exc}") from None
