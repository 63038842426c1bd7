"""Append-only JSON-lines record files that survive ``kill -9`` and never lose a finished record.

Every record is one line ``{"id": ..., ...}`` written with a single ``write``
call, then flushed and ``fsync``-ed before the next task's result is taken.
Records are keyed by the task's deterministic id; an id already present is
never written again.

:meth:`RecordStore.open` repairs a file left by an interrupted run without
deleting anything a user did not ask to delete:

* a last line that parses as a record but lacks its final newline (the
  process died between the record and its ``\n``, or the file was edited) is
  kept, and the newline is added;
* a last line that does not parse (killed mid-write), and any middle line that
  does not parse as a record (a corrupted or hand-edited file), is moved to a
  side file ``<name>.unreadable`` (appended, so repeated repairs accumulate),
  with a warning on stderr naming the line numbers; the records file is then
  rewritten atomically with the readable lines only.

:func:`lock_dir` takes an exclusive ``flock`` on ``OUT/.lock`` so two runs
cannot append to the same folder at once (the OS drops the lock when the
process dies, even by SIGKILL).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from optprune._files import atomic_file, atomic_write
from optprune.errors import InvalidParameterError

__all__ = ["RecordStore", "atomic_file", "atomic_write", "lock_dir", "read_records", "UNREADABLE_SUFFIX"]

UNREADABLE_SUFFIX = ".unreadable"


def _parse(line: bytes) -> dict | None:
    """The record on ``line``, or None if it is not a JSON object with an ``id``."""
    try:
        rec = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return rec if isinstance(rec, dict) and "id" in rec else None


def _split(data: bytes) -> tuple[list[tuple[int, bytes, dict]], list[tuple[int, bytes]], bool]:
    """``(records, unreadable, tail_complete)``: 1-based line numbers with each line's bytes.

    Blank lines are neither. ``tail_complete`` is False when the data ends in a
    line without ``\n`` that parses as a record (kept; it needs its newline).
    """
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the data ends with a newline
    good, bad = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        rec = _parse(line)
        if rec is not None:
            good.append((number, line, rec))
        else:
            bad.append((number, line))
    tail_complete = True
    if tail.strip():
        rec = _parse(tail)
        if rec is not None:
            good.append((len(lines) + 1, tail, rec))
            tail_complete = False
        else:
            bad.append((len(lines) + 1, tail))
    return good, bad, tail_complete


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every readable record of a JSON-lines file, including a complete last record without its newline.

    Lines that do not parse as a record are left out with a warning on stderr
    naming them; the file is not changed (:meth:`RecordStore.open` repairs it).
    """
    path = Path(path)
    if not path.is_file():
        return []
    good, bad, _ = _split(path.read_bytes())
    if bad:
        print(f"{path}: warning: {len(bad)} unreadable line(s) left out: {_numbers(bad)}", file=sys.stderr)
    return [rec for _, _, rec in good]


def _numbers(lines: list[tuple]) -> str:
    numbers = [str(item[0]) for item in lines]
    return ", ".join(numbers[:20]) + (f" ... ({len(numbers)} in all)" if len(numbers) > 20 else "")


def _fsync_write(path: Path, data: bytes, mode: str) -> None:
    with open(path, mode) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


class RecordStore:
    """One JSON-lines file of records keyed by ``id`` (see module doc).

    After :meth:`open`: ``records`` (id -> record, first occurrence wins),
    ``unreadable_lines`` (1-based line numbers moved to ``side_file``),
    ``repaired_bytes`` (bytes of an unreadable last line moved away) and
    ``skipped_lines`` (how many lines were moved, for compatibility).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.side_file = self.path.with_name(self.path.name + UNREADABLE_SUFFIX)
        self.records: dict[str, dict] = {}
        self.repaired_bytes = 0
        self.skipped_lines = 0
        self.unreadable_lines: list[int] = []
        self._fh = None

    def open(self) -> RecordStore:
        """Load existing records, repair the file (module doc), and open it for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            good, bad, tail_complete = _split(data)
            if bad:
                self._move_unreadable(data, good, bad)
            elif not tail_complete:
                _fsync_write(self.path, b"\n", "ab")
                print(f"{self.path}: the last record (line {good[-1][0]}) lacked its final newline; kept it and "
                      "added the newline", file=sys.stderr)
            for _, _, rec in good:
                self.records.setdefault(rec["id"], rec)
        self._fh = open(self.path, "ab")
        return self

    def _move_unreadable(self, data: bytes, good: list, bad: list) -> None:
        """Append the unreadable lines to the side file, then atomically rewrite the file with the good ones."""
        self.unreadable_lines = [number for number, _ in bad]
        self.skipped_lines = len(bad)
        last_number = data.count(b"\n") + 1
        if bad[-1][0] == last_number and not data.endswith(b"\n"):
            self.repaired_bytes = len(bad[-1][1])
        _fsync_write(self.side_file, b"".join(line + b"\n" for _, line in bad), "ab")
        atomic_write(self.path, b"".join(line + b"\n" for _, line, _ in good))
        print(f"{self.path}: warning: {len(bad)} unreadable line(s) ({_numbers(bad)}"
              f"{'; the last one left by an interrupted run' if self.repaired_bytes else ''}) moved to "
              f"{self.side_file}; {len(good)} record(s) kept", file=sys.stderr)

    def __contains__(self, record_id: str) -> bool:
        return record_id in self.records

    def __len__(self) -> int:
        return len(self.records)

    def append(self, record: dict) -> bool:
        """Write ``record`` durably unless its id is already stored; True when written."""
        if self._fh is None:
            raise InvalidParameterError(f"RecordStore({self.path}): call open() before append()")
        rid = record.get("id")
        if not isinstance(rid, str) or not rid:
            raise InvalidParameterError(f"a record needs a non-empty string 'id'; got {rid!r}")
        if rid in self.records:
            return False
        record = _clean(record)
        line = (json.dumps(record, separators=(",", ":"), allow_nan=False, default=_default) + "\n").encode()
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[rid] = record
        return True

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RecordStore:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()


def _clean(value):
    """Non-finite floats become None (JSON has no inf/nan), recursively."""
    import math

    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _default(value):
    import math

    import numpy as np

    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None
        return value
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def lock_dir(folder: str | os.PathLike):
    """An exclusive lock on ``folder/.lock`` (a file object to keep open), or an error if another run holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / ".lock", "a+")
    try:
        import fcntl

        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # pragma: no cover - not POSIX: no lock
        return fh
    except OSError:
        fh.close()
        raise InvalidParameterError(
            f"output folder {folder} is in use by another 'optprune bench' run; wait for it or choose another --out"
        ) from None
    return fh
