"""Append-only JSON-lines record files that survive ``kill -9``.

Every record is one line ``{"id": ..., ...}`` written with a single ``write``
call, then flushed and ``fsync``-ed before the next task's result is taken.
A run killed mid-write leaves at most one partial last line: :meth:`RecordStore.open`
truncates the file back to the end of the last complete line, so a resumed
run neither loses a finished record nor keeps a broken one. Records are keyed
by the task's deterministic id; an id already present is never written again.

:func:`lock_dir` takes an exclusive ``flock`` on ``OUT/.lock`` so two runs
cannot append to the same folder at once (the OS drops the lock when the
process dies, even by SIGKILL).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from optprune.errors import InvalidParameterError

__all__ = ["RecordStore", "lock_dir", "read_records"]


def read_records(path: str | os.PathLike) -> list[dict]:
    """Every complete record of a JSON-lines file (a partial last line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    data = path.read_bytes()
    end = data.rfind(b"\n")
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "id" in rec:
            out.append(rec)
    return out


class RecordStore:
    """One JSON-lines file of records keyed by ``id`` (see module doc)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.repaired_bytes = 0
        self.skipped_lines = 0
        self._fh = None

    def open(self) -> RecordStore:
        """Load existing records, repair a partial last line, and open the file for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            data = self.path.read_bytes()
            end = data.rfind(b"\n") + 1  # 0 when there is no complete line
            if end < len(data):
                self.repaired_bytes = len(data) - end
                with open(self.path, "r+b") as fh:
                    fh.truncate(end)
                    fh.flush()
                    os.fsync(fh.fileno())
                print(f"{self.path}: dropped a partial last line ({self.repaired_bytes} bytes) left by an "
                      "interrupted run", file=sys.stderr)
            for line in data[:end].splitlines():
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    self.skipped_lines += 1
                    continue
                if isinstance(rec, dict) and "id" in rec:
                    self.records.setdefault(rec["id"], rec)
                else:
                    self.skipped_lines += 1
        self._fh = open(self.path, "ab")
        return self

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
