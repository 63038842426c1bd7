"""Structure-search instances as JSON files (format documented in ``instances/search/README.md``).

::

    {"format": "optprune-structure-search", "version": 1, "name": "...",
     "groups": [{"name": "fc1", "scores": [...], "widths": [8, 16, ...], "values": [...]}, ...],
     "layers": [{"name": "fc1", "input": 784, "output": "fc1",
                 "costs": {"params": {"type": "bilinear", "in_out": 1, "in": 0, "out": 1, "const": 0},
                           "latency": {"type": "table", "in_widths": [...], "out_widths": [...],
                                       "values": [[...]]}}}, ...],
     "ties": [["a", "b"]], "budgets": {"params": 0.5}, "relative": true, "source": {...}}

A layer end is a group name or a fixed width (int). ``budgets``, ``relative``
and ``source`` (how the instance was made) are optional; so is a group's
``values`` (its value at every width 0..n, in place of the sum of its kept
scores, which then only rank the units).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from optprune.errors import DataNotFoundError, FileFormatError
from optprune.formulations.structure_search import LayerCost, SearchProblem, WidthGroup

__all__ = ["FORMAT", "load_instance", "save_instance", "problem_from_dict", "problem_to_dict"]

FORMAT = "optprune-structure-search"


def problem_to_dict(problem: SearchProblem, *, budgets: Mapping[str, float] | None = None, relative: bool = True,
                    source: Mapping | None = None) -> dict:
    data = {"format": FORMAT, "version": 1, **problem.to_dict()}
    if budgets is not None:
        data["budgets"] = {k: float(v) for k, v in budgets.items()}
        data["relative"] = bool(relative)
    if source is not None:
        data["source"] = dict(source)
    return data


def problem_from_dict(data: Mapping, *, where: str = "instance") -> tuple[SearchProblem, dict, bool]:
    """``(problem, budgets, relative)`` from the JSON form."""
    if not isinstance(data, Mapping):
        raise FileFormatError(
            f"{where}: a structure-search instance is a JSON object with 'format': {FORMAT!r}; "
            f"got a JSON {type(data).__name__}"
        )
    if data.get("format") != FORMAT:
        raise FileFormatError(f"{where}: 'format' must be {FORMAT!r}, got {data.get('format')!r}")
    try:
        groups = tuple(
            WidthGroup(str(g["name"]), g["scores"], g.get("widths"), g.get("values")) for g in data["groups"]
        )
        layers = tuple(
            LayerCost(str(layer["name"]), layer["input"], layer["output"], layer.get("costs", {}))
            for layer in data["layers"]
        )
    except KeyError as exc:
        raise FileFormatError(f"{where}: missing field {exc.args[0]!r} (see instances/search/README.md)") from None
    except (TypeError, AttributeError) as exc:  # a field of the wrong JSON type (a list where an object belongs)
        raise FileFormatError(
            f"{where}: a field has the wrong JSON type ({exc}); see instances/search/README.md"
        ) from None
    problem = SearchProblem(groups, layers, tuple(tuple(t) for t in data.get("ties", ())), str(data.get("name", "")))
    budgets = data.get("budgets", {})
    if not isinstance(budgets, Mapping):
        raise FileFormatError(f"{where}: 'budgets' must be an object like {{\"params\": 0.5}}; got {budgets!r}")
    try:
        parsed = {str(k): float(v) for k, v in budgets.items()}
    except (TypeError, ValueError):
        raise FileFormatError(f"{where}: 'budgets' values must be numbers; got {budgets!r}") from None
    return problem, parsed, bool(data.get("relative", True))


def save_instance(path: str | os.PathLike, problem: SearchProblem, *, budgets: Mapping[str, float] | None = None,
                  relative: bool = True, source: Mapping | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(problem_to_dict(problem, budgets=budgets, relative=relative, source=source)) + "\n")
    return path


def read_json(path: str | os.PathLike, what: str):
    """The JSON content of ``path``; a missing file or invalid JSON is a named error saying which ``what``."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FileFormatError(f"{path}: {what} is not valid JSON ({exc})") from None


def load_instance(path: str | os.PathLike) -> tuple[SearchProblem, dict, bool]:
    """``(problem, budgets, relative)`` stored in a JSON instance file."""
    return problem_from_dict(read_json(path, "structure-search instance"), where=str(path))
