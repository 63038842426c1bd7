"""Writing files so that a kill or a failure mid-write never leaves a truncated file.

:func:`atomic_file` gives a temporary path in the destination's folder and
moves it over the destination with :func:`os.replace` once the writer has
finished; the same folder keeps the move on one file system, where it is
atomic. Used by every command that writes results, models, caches and plots.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_file", "atomic_write"]


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that look at it still work) to write to.

    When the block ends normally the file is fsynced and moved over ``path`` with
    :func:`os.replace` (atomic on one file system): a reader, a kill or a failure
    mid-write sees the old file or the new one, never a truncated one. On any
    exception (``KeyboardInterrupt`` too) the temporary file is removed and
    ``path`` is left as it was.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes | str) -> None:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
