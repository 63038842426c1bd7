"""One place where the command line checks its numbers and output paths, before any work starts.

Every check raises :class:`~optprune.errors.InvalidParameterError` whose
message names the option, the allowed range and the value received, so a
command never runs for minutes and then fails (or silently does nothing
sensible) because of a nonsense option. NaN is refused by every number check:
``nan`` compares false with every bound, so it would otherwise slip through
``value < low`` tests.

Output paths are checked the same way: an ``--out`` that is a directory (or,
for folder outputs, a file), a folder that cannot be created or written, or an
existing file that ``--force`` does not allow to overwrite, is an error before
the first network is loaded, so finished results are never lost to a final
write that fails. A command with several output paths checks them together
with :func:`check_output_files`: each one's suffix, no path given twice (as
written or through ``..`` and symbolic links), then each path as above.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from optprune.errors import InvalidParameterError

__all__ = [
    "FORCE_HELP",
    "TRUST_PICKLE_HELP",
    "check_number",
    "check_output_dir",
    "check_output_file",
    "check_output_files",
]

FORCE_HELP = "Overwrite output files that already exist (refused otherwise)."
TRUST_PICKLE_HELP = (
    "Allow .pt/.pth files that hold a whole pickled torch model. Unpickling RUNS CODE stored in the file: "
    "use it only for files you trust. Without it, .pt files are read with torch.load(weights_only=True)."
)


def _bound(value: float) -> str:
    """A bound as written: whole numbers in full (2147483647, not 2.14748e+09), others with ``:g``."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 2**63 else f"{value:g}"


def _range_text(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{_bound(low)}, {_bound(high)}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {_bound(low)}"
    if high is not None:
        return f"{'<' if high_open else '<='} {_bound(high)}"
    return "a finite number"


def check_number(
    option: str,
    value: float | int | None,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> float | int | None:
    """``value`` unchanged if it lies in the range, else an error naming ``option``, the range and the value.

    ``None`` (an option left at its "not given" default) passes. NaN is always
    refused; infinities are refused when ``finite`` (the default).
    """
    if value is None:
        return None
    allowed = _range_text(low, high, low_open, high_open)
    fvalue = float(value)
    bad = (
        math.isnan(fvalue)
        or (finite and math.isinf(fvalue))
        or (low is not None and (fvalue <= low if low_open else fvalue < low))
        or (high is not None and (fvalue >= high if high_open else fvalue > high))
    )
    if bad:
        raise InvalidParameterError(f"{option} must be {allowed}; got {value!r}")
    return value


def _writable_folder(folder: Path, option: str) -> None:
    """Create ``folder`` (and its parents) if needed and prove it is writable by creating a file in it."""
    if folder.exists() and not folder.is_dir():
        raise InvalidParameterError(f"{option}: {folder} is a file, not a folder; give a folder path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".optprune-write-test-"):
            pass
    except OSError as exc:
        raise InvalidParameterError(
            f"{option}: cannot write into folder {folder} ({exc.strerror or exc}); choose a writable location"
        ) from None


def check_output_file(option: str, path: Path | None, *, force: bool = False) -> Path | None:
    """Check that ``path`` can be written as a file: not a folder, its folder writable, not overwriting unasked.

    A missing parent folder is created. An existing file is refused unless
    ``force``: ``--out`` never silently replaces a file the user may want.
    """
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise InvalidParameterError(f"{option}: {path} is a folder; give a file path")
    if path.exists() and not force:
        raise InvalidParameterError(
            f"{option}: {path} already exists; pass --force to overwrite it or choose another path"
        )
    _writable_folder(path.parent if str(path.parent) else Path("."), option)
    if path.exists() and not os.access(path, os.W_OK):
        raise InvalidParameterError(f"{option}: {path} exists and is not writable")
    return path


def _same_file_key(path: Path) -> str:
    """What identifies the file ``path`` names: absolute, ``..`` and symbolic links resolved."""
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))


def check_output_files(
    outputs: Iterable[tuple[str, Path | None, Sequence[str] | None]], *, force: bool = False
) -> list[Path | None]:
    """Check every output path of one command before any work, in this order, and return them as paths.

    ``outputs`` holds ``(option, path, suffixes)``: a ``None`` path (option not
    given) is skipped; ``suffixes`` (lower case, with the dot) are the endings
    the option accepts, ``None`` for any. Refused, each with an
    :class:`InvalidParameterError` naming the option(s): a folder; a path with
    another suffix; the same file named by two options (one write would replace the
    other's result); then every :func:`check_output_file` refusal (a folder, an
    unwritable folder, an existing file without ``force``).
    """
    entries = [(option, None if path is None else Path(path), suffixes) for option, path, suffixes in outputs]
    for option, path, suffixes in entries:
        if path is not None and path.is_dir():
            raise InvalidParameterError(f"{option}: {path} is a folder; give a file path")
        if path is not None and suffixes and path.suffix.lower() not in suffixes:
            raise InvalidParameterError(
                f"{option} must end in {', '.join(suffixes)}; got {path.suffix or '(no suffix)'!r} ({path.name!r})"
            )
    seen: dict[str, str] = {}
    for option, path, _ in entries:
        if path is None:
            continue
        key = _same_file_key(path)
        if key in seen:
            raise InvalidParameterError(
                f"{seen[key]} and {option} both name the file {path}; give each output its own path"
            )
        seen[key] = option
    return [check_output_file(option, path, force=force) for option, path, _ in entries]


def check_output_dir(option: str, path: Path, *, force: bool = False, files: Iterable[str] = ()) -> Path:
    """Check that ``path`` is (or can be created as) a writable folder.

    ``files`` are the names the command will write there: an existing one is
    refused unless ``force``.
    """
    path = Path(path)
    _writable_folder(path, option)
    existing = [name for name in files if (path / name).exists()]
    if existing and not force:
        raise InvalidParameterError(
            f"{option}: {path} already holds {', '.join(existing)}; pass --force to overwrite or choose another folder"
        )
    return path
