"""The numbers of an MPS or CPLEX LP file, checked before a solver's reader sees them.

HiGHS' MPS reader converts a number with C's ``atof``, so an entry ``abc``
becomes 0 and ``1.5x`` becomes 1.5; both readers turn a literal too large for
a 64-bit float (``1e400``) into infinity. Either way a different model is
solved without a word. :func:`check_numbers` refuses such entries with a
:class:`~optprune.errors.FileFormatError` naming the file, the line and the
entry, as the VNN-LIB parser does (:mod:`optprune.verification.vnnlib`). The explicit
keywords ``inf`` and ``infinity`` (any case, with a sign) stay allowed: where a
format allows an infinite value (a bound, a right-hand side) it is meant;
where it does not (a coefficient), :class:`~optprune.milp.MILP` refuses it
naming the array and index.

MPS numbers are read by section (free format, names without spaces; a line
whose free-format reading fails is read again by the fixed-format columns
5-12, 15-22, 25-36, 40-47, 50-61). In an LP file every numeric literal outside
a ``\\`` comment and not part of a name is checked for overflow; other syntax
is left to the solver's reader, which names the line and column itself.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterator
from pathlib import Path

from optprune.errors import FileFormatError

__all__ = ["check_numbers"]

_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_KEYWORD = re.compile(r"(?i)[+-]?(?:inf|infinity|nan)")  # inf is meant; nan is refused by MILP, naming the line
_ALLOWED = "a decimal number such as 2, -1.5 or 3e-4 (or inf / infinity where the value may be infinite)"

# Characters a CPLEX LP name may contain: a digit after one of them is part of the name, not a number.
_LP_NAME_CHARS = r"A-Za-z0-9_!\"#$%&()/,.;?@`'{}|~"
_LP_BIG_LITERAL = re.compile(rf"(?<![{_LP_NAME_CHARS}])(?:(?:\d+\.?\d*|\.\d+)[eE]\+?\d{{3,}}|\d{{309,}})")

_MPS_SECTIONS = frozenset({
    "NAME", "ROWS", "COLUMNS", "RHS", "RANGES", "BOUNDS", "ENDATA", "OBJSENSE", "OBJSENS", "OBJNAME", "SOS",
    "QUADOBJ", "QMATRIX", "QSECTION", "QCMATRIX", "CSECTION", "INDICATORS", "SETS", "GENCONS", "PWLOBJ",
})
_BOUNDS_WITH_VALUE = frozenset({"UP", "LO", "FX", "LI", "UI"})
_FIXED_FIELDS = {4: (24, 36), 6: (49, 61)}  # 0-based slices of the fixed-format value fields
_FIXED_BLANKS = ((0, 1), (3, 4), (12, 14), (22, 24), (36, 39), (47, 49))


def check_numbers(path: str | Path) -> None:
    """Refuse entries of ``path`` that are not numbers or overflow a float64 (module doc); other files pass."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(".mps"):
        _check_mps(path)
    elif name.endswith(".lp"):
        _check_lp(path)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", errors="replace") as handle:
            yield from enumerate(handle, start=1)
    except (OSError, EOFError) as exc:  # unreadable or truncated: the solver's reader says what is wrong
        if isinstance(exc, FileNotFoundError):
            raise
        return


def _problem(token: str) -> str | None:
    """Why ``token`` is not an acceptable number, or None when it is."""
    if _NUMBER.fullmatch(token):
        # Only an exponent or a very long mantissa can overflow.
        if ("e" in token or "E" in token or len(token) > 308) and math.isinf(float(token)):
            return "overflows a 64-bit float (magnitude above 1.8e308)"
        return None
    return None if _KEYWORD.fullmatch(token) else "is not a number"


def _mps_values(section: str, tokens: list[str]) -> range | tuple[int, ...] | None:
    """Positions of the numbers in the tokens of an MPS data line (free format); None when unreadable so."""
    n = len(tokens)
    if section == "COLUMNS":
        if "'MARKER'" in tokens:
            return ()
        return range(2, n, 2) if n in (3, 5) else None
    if section in ("RHS", "RANGES"):
        return range(2 if n % 2 else 1, n, 2) if 2 <= n <= 5 else None  # an odd count starts with the set name
    kind = tokens[0].upper()
    if kind in _BOUNDS_WITH_VALUE or (kind == "SC" and n == 4):
        return (n - 1,) if n in (3, 4) else None
    return ()


def _mps_entry(section: str, tokens: list[str], k: int) -> str:
    """What the number at position ``k`` is, for a message."""
    if section == "COLUMNS":
        return f"coefficient of column {tokens[0]!r} in row {tokens[k - 1]!r}"
    if section in ("RHS", "RANGES"):
        return f"{'right-hand side' if section == 'RHS' else 'range'} of row {tokens[k - 1]!r}"
    return f"{tokens[0].upper()} bound of column {tokens[k - 1]!r}"


def _refuse(path: Path, number: int, what: str, token: str, why: str) -> FileFormatError:
    return FileFormatError(
        f"model file {str(path)!r} line {number}: the {what} is {token!r}, which {why}; expected {_ALLOWED}"
    )


def _fixed_values(section: str, line: str) -> list[str]:
    """The value fields of a fixed-format MPS line (names there may contain spaces); [] when it is not one.

    A fixed-format line leaves the columns between its fields blank (1-based 1, 4, 13-14, 23-24, 37-39, 48-49).
    """
    body = line.rstrip("\r\n")
    if any(body[a:b].strip() for a, b in _FIXED_BLANKS):
        return []
    fields = (4,) if section == "BOUNDS" else (4, 6)
    return [body[a:b].strip() for k in fields for a, b in [_FIXED_FIELDS[k]] if body[a:b].strip()]


def _check_mps(path: Path) -> None:
    section = ""
    for number, line in _lines(path):
        tokens = line.split()
        if not tokens or line[0] == "*":
            continue
        if not line[0].isspace() and tokens[0].upper() in _MPS_SECTIONS:
            section = tokens[0].upper()
            continue
        if section not in ("COLUMNS", "RHS", "RANGES", "BOUNDS"):
            continue
        positions = _mps_values(section, tokens)
        bad = None
        if positions is not None:
            for k in positions:
                why = _problem(tokens[k])
                if why is not None:
                    bad = (_mps_entry(section, tokens, k), tokens[k], why)
                    break
            if bad is None:
                continue
        fixed = _fixed_values(section, line)
        if fixed and all(_problem(tok) is None for tok in fixed):
            continue  # a fixed-format line whose names hold spaces
        if bad is not None:
            raise _refuse(path, number, *bad)
        # Neither reading finds the numbers: left to the solver's reader, which names the line.


def _check_lp(path: Path) -> None:
    for number, line in _lines(path):
        text = line.split("\\", 1)[0]  # a backslash starts a comment
        for match in _LP_BIG_LITERAL.finditer(text):
            token = match.group(0)
            if math.isinf(float(token)):
                raise FileFormatError(
                    f"model file {str(path)!r} line {number}, column {match.start() + 1}: the number "
                    f"{token!r} overflows a 64-bit float (magnitude above 1.8e308); expected a finite number, "
                    "or inf / infinity for an infinite bound"
                )
