"""A pruning decision as plain data: which units each dependency group keeps."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.structure import Group

__all__ = ["PruningDecision"]

FORMAT = "optprune.pruning-decision/1"


@dataclass(frozen=True)
class PruningDecision:
    """Kept unit indices per dependency group, plus what is needed to replay them.

    ``kept[g]`` lists the indices (sorted, unique, within ``range(widths[g])``) that
    group ``g`` keeps; groups absent from ``kept`` are left whole. ``widths`` records
    the original width of every group the decision was made for, so applying it to a
    model of another architecture fails with a clear message. ``input_shape`` is the
    shape (without batch axis) the dependency groups were traced with.
    """

    kept: Mapping[str, Sequence[int]]
    widths: Mapping[str, int]
    input_shape: tuple[int, ...]
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        kept: dict[str, tuple[int, ...]] = {}
        widths = {str(k): int(v) for k, v in self.widths.items()}
        for name, idx in self.kept.items():
            name = str(name)
            if name not in widths:
                raise InvalidParameterError(
                    f"PruningDecision: group {name!r} has kept indices but no recorded width; "
                    f"groups with widths: {sorted(widths)}"
                )
            arr = np.asarray(list(idx), dtype=np.int64).reshape(-1)
            uniq = np.unique(arr)
            if uniq.size != arr.size:
                raise InvalidParameterError(f"PruningDecision: group {name!r} lists an index more than once")
            if uniq.size == 0:
                raise InvalidParameterError(
                    f"PruningDecision: group {name!r} keeps no unit; at least 1 of {widths[name]} must stay"
                )
            if uniq[0] < 0 or uniq[-1] >= widths[name]:
                raise InvalidParameterError(
                    f"PruningDecision: group {name!r} keeps index {int(uniq[0] if uniq[0] < 0 else uniq[-1])}; "
                    f"allowed range is 0..{widths[name] - 1}"
                )
            kept[name] = tuple(int(i) for i in uniq)
        object.__setattr__(self, "kept", kept)
        object.__setattr__(self, "widths", widths)
        object.__setattr__(self, "input_shape", tuple(int(d) for d in self.input_shape))

    # ------------------------------------------------------------------ views
    def kept_width(self, name: str) -> int:
        return len(self.kept[name]) if name in self.kept else self.widths[name]

    @property
    def new_widths(self) -> dict[str, int]:
        """Width of every recorded group after the decision."""
        return {name: self.kept_width(name) for name in self.widths}

    def removed(self, name: str) -> list[int]:
        keep = set(self.kept.get(name, range(self.widths[name])))
        return [i for i in range(self.widths[name]) if i not in keep]

    def masks(self) -> dict[str, np.ndarray]:
        """Boolean keep-mask of every recorded group."""
        out = {}
        for name, width in self.widths.items():
            mask = np.ones(width, dtype=bool)
            if name in self.kept:
                mask[:] = False
                mask[list(self.kept[name])] = True
            out[name] = mask
        return out

    @classmethod
    def from_masks(
        cls, masks: Mapping[str, np.ndarray], input_shape: Sequence[int], groups: Sequence[Group] | None = None,
        metadata: dict | None = None,
    ) -> PruningDecision:
        """Decision from boolean keep-masks (e.g. a solver's binary variables)."""
        widths = {g.name: g.width for g in groups if g.prunable} if groups is not None else {}
        kept = {}
        for name, mask in masks.items():
            mask = np.asarray(mask).astype(bool).reshape(-1)
            widths.setdefault(name, mask.size)
            if widths[name] != mask.size:
                raise ShapeMismatchError(f"mask of group {name!r} has {mask.size} entries, group has {widths[name]}")
            kept[name] = np.flatnonzero(mask).tolist()
        return cls(kept, widths, tuple(input_shape), dict(metadata or {}))

    def check(self, groups: Sequence[Group]) -> None:
        """Raise unless every group named here exists in ``groups`` with the same width and is prunable."""
        by_name = {g.name: g for g in groups}
        for name, width in self.widths.items():
            if name not in by_name:
                raise ShapeMismatchError(
                    f"decision names group {name!r}, which the model does not have; "
                    f"its groups: {[g.name for g in groups]}"
                )
            if by_name[name].width != width:
                raise ShapeMismatchError(
                    f"group {name!r} has width {by_name[name].width} in the model, {width} in the decision"
                )
        for name in self.kept:
            group = by_name[name]
            if not group.prunable and len(self.kept[name]) != group.width:
                raise InvalidParameterError(
                    f"decision removes units of group {name!r}, which cannot be pruned: {group.reason}"
                )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "input_shape": list(self.input_shape),
            "widths": dict(self.widths),
            "kept": {k: list(v) for k, v in self.kept.items()},
            "metadata": self.metadata,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> PruningDecision:
        if data.get("format") != FORMAT:
            raise InvalidParameterError(
                f"not a pruning decision: format must be {FORMAT!r}, got {data.get('format')!r}"
            )
        return cls(data["kept"], data["widths"], tuple(data["input_shape"]), dict(data.get("metadata", {})))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json() + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PruningDecision:
        return cls.from_dict(json.loads(Path(path).read_text()))
