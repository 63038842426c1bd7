"""Output helpers: one JSON object on stdout with ``--json``; logs and progress on stderr."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import numpy as np
from rich.console import Console

JSON_HELP = "Print exactly one JSON object on stdout."  # the help of every command's --json flag

__all__ = ["JSON_HELP", "emit", "emitted", "log_group_progress", "reset_emitted", "stderr_console", "to_jsonable"]

stderr_console = Console(stderr=True)

_state = {"emitted": False}  # whether this command already printed its one JSON object


def emitted() -> bool:
    """True once :func:`emit` has written the command's JSON object: nothing more may go to stdout."""
    return _state["emitted"]


def reset_emitted() -> None:
    """Forget an earlier command's output (:func:`optprune.cli.main` calls it before each command)."""
    _state["emitted"] = False


def to_jsonable(value: Any) -> Any:
    """Plain JSON types from numpy scalars/arrays, enums, paths; non-finite floats become null."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "value") and hasattr(value, "name"):  # Enum
        return value.value
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def emit(payload: dict, as_json: bool, human: str | None = None) -> None:
    """Print ``payload`` as one JSON object (``as_json``) or ``human`` text / a key: value list."""
    if as_json:
        text = json.dumps(to_jsonable(payload)) + "\n"
        _state["emitted"] = True  # before writing: an interruption mid-write must not add a second object
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    if human is not None:
        print(human)
        return
    for key, value in to_jsonable(payload).items():
        print(f"{key}: {value}")


def log_group_progress(report: dict) -> None:
    """Per-group progress of a decision that reports it (layer, budget, objective, gap, seconds) on stderr."""
    gap = "n/a" if report.get("gap") is None else f"{report['gap']:.2%}"
    stderr_console.log(
        f"group {report['group']}: keep {report['kept']}/{report['width']}, objective {report['objective']:.6g} "
        f"({report['relative']:.2%} of the output energy), gap {gap}, {report['status']}, {report['seconds']:.2f} s"
    )
