"""The search problem: groups with scores and allowed widths, layers with costs, ties; compiled on decision classes."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from optprune._unionfind import UnionFind, is_forest
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations.structure_search._costs import LayerCost

__all__ = ["width_grid", "WidthGroup", "CompiledProblem", "SearchProblem"]


# ----------------------------------------------------------------------------- groups
def width_grid(size: int, round_to: int = 1, min_width: int | float = 1, *, include_full: bool = True) -> np.ndarray:
    """Allowed widths of a group of ``size`` units: multiples of ``round_to`` in ``[min_width, size]``.

    ``min_width`` in (0, 1) is a fraction of ``size`` (rounded up). The full
    width is always allowed (``include_full``) so that "keep everything" stays
    feasible; a group smaller than ``round_to`` can only keep all its units.
    """
    if size < 1:
        raise InvalidParameterError(f"group size must be >= 1, got {size}")
    if round_to < 1:
        raise InvalidParameterError(f"round_to must be >= 1, got {round_to}")
    if isinstance(min_width, float) and 0 < min_width < 1:
        min_width = math.ceil(min_width * size)
    min_width = int(min_width)
    if min_width < 0 or min_width > size:
        raise InvalidParameterError(f"min_width must be in [0, {size}] for a group of {size} units, got {min_width}")
    start = -(-min_width // round_to) * round_to
    widths = np.arange(start, size + 1, round_to, dtype=np.int64)
    if include_full and (widths.size == 0 or widths[-1] != size):
        widths = np.append(widths, size)
    return widths


@dataclass(frozen=True, eq=False)
class WidthGroup:
    """A prunable group: one score per unit, the allowed kept widths (default 1..n), optionally a value curve.

    By default keeping width ``k`` is worth the sum of the ``k`` largest scores
    (``v_g(k)`` of the package docstring). With ``values`` (length ``n + 1``)
    keeping width ``k`` is worth ``values[k]`` instead, given directly: any
    per-width objective, e.g. minus a reconstruction error curve
    (:func:`optprune.search.allocate_widths`); the scores then only rank the
    units (the ``k`` kept are still the ``k`` highest-scoring ones, see
    :meth:`from_curve`). Interactions between kept units that no sum of
    per-unit scores expresses are in the curve, and the MILP is unchanged: it
    only ever reads ``v_g`` at the allowed widths.
    """

    name: str
    scores: np.ndarray
    widths: np.ndarray | None = None
    values: np.ndarray | None = None

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.size == 0:
            raise ShapeMismatchError(f"group {self.name!r} has no scores")
        if not np.all(np.isfinite(scores)):
            raise ShapeMismatchError(f"group {self.name!r}: scores must be finite")
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)
        if self.values is not None:
            values = np.array(self.values, dtype=np.float64).reshape(-1)
            if values.size != scores.size + 1:
                raise ShapeMismatchError(
                    f"group {self.name!r}: values must give one value per width 0..{scores.size} "
                    f"({scores.size + 1} entries), got {values.size}"
                )
            if not np.all(np.isfinite(values)):
                raise ShapeMismatchError(f"group {self.name!r}: values must be finite")
            values.setflags(write=False)
            object.__setattr__(self, "values", values)
        widths = width_grid(scores.size) if self.widths is None else np.asarray(self.widths, dtype=np.int64).reshape(-1)
        widths = np.unique(widths)
        if widths.size == 0 or widths[0] < 0 or widths[-1] > scores.size:
            raise InvalidParameterError(
                f"group {self.name!r}: allowed widths must be non-empty and within [0, {scores.size}], "
                f"got {widths.tolist()}"
            )
        widths.setflags(write=False)
        object.__setattr__(self, "widths", widths)

    @property
    def size(self) -> int:
        return int(self.scores.size)

    @cached_property
    def order(self) -> np.ndarray:
        """Unit indices by decreasing score (stable: equal scores keep their index order)."""
        return np.argsort(-self.scores, kind="stable")

    @cached_property
    def prefix(self) -> np.ndarray:
        """``prefix[k]`` = ``v_g(k)``: the sum of the ``k`` largest scores, or ``values[k]`` when given."""
        if self.values is not None:
            return self.values
        return np.concatenate([[0.0], np.cumsum(self.scores[self.order])])

    @property
    def unit_scores(self) -> np.ndarray:
        """Per-unit scores a threshold can compare: the scores, or for a value curve its marginal gains.

        For a group given by ``values``, the unit at rank ``i`` (0-based, by
        decreasing score) is credited ``values[i + 1] - values[i]``, what adding
        it to the ``i`` better-ranked units gains along the curve.
        """
        if self.values is None:
            return self.scores
        gains = np.empty(self.size)
        gains[self.order] = np.diff(self.values)
        return gains

    def kept(self, width: int) -> np.ndarray:
        """Indices of the ``width`` highest-scoring units, ascending."""
        return np.sort(self.order[: int(width)])

    @classmethod
    def from_curve(
        cls, name: str, values: np.ndarray, order: np.ndarray | None = None, widths: np.ndarray | None = None
    ) -> WidthGroup:
        """A group worth ``values[k]`` at width ``k`` that keeps ``order[:k]`` (default: units ``0..k-1``).

        ``order`` is a permutation of the units, the one kept longest first
        (the reverse of a backward-elimination order), so the kept sets are
        nested; the scores are the ranks it implies (``n - position``).
        """
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        n = values.size - 1
        if n < 1:
            raise ShapeMismatchError(f"group {name!r}: a value curve needs widths 0..n with n >= 1, got {values.size}")
        order = np.arange(n) if order is None else np.asarray(order, dtype=np.int64).reshape(-1)
        if order.size != n or not np.array_equal(np.sort(order), np.arange(n)):
            raise ShapeMismatchError(
                f"group {name!r}: order must be a permutation of its {n} units (the value curve has {n + 1} entries); "
                f"got {order.size} entries"
            )
        scores = np.empty(n)
        scores[order] = np.arange(n, 0, -1, dtype=np.float64)
        return cls(name, scores, widths, values)

    def to_dict(self) -> dict:
        out = {"name": self.name, "scores": self.scores.tolist(), "widths": self.widths.tolist()}
        if self.values is not None:
            out["values"] = self.values.tolist()
        return out


@dataclass
class CompiledProblem:
    """The problem on decision classes: grids, values, unary/pair/constant costs per resource."""

    resources: tuple[str, ...]
    classes: list[list[int]]
    class_of: np.ndarray
    grids: list[np.ndarray]
    values: list[np.ndarray]
    const: np.ndarray  # (R,)
    unary: list[np.ndarray]  # per class (R, n_c)
    pairs: list[tuple[int, int, np.ndarray]]  # (c, d, (R, n_c, n_d)), c < d

    @cached_property
    def is_forest(self) -> bool:
        """Whether the class graph (classes joined by pairwise costs) has no cycle."""
        return is_forest(len(self.classes), ((c, d) for c, d, _ in self.pairs))

    def cost(self, idx: np.ndarray) -> np.ndarray:
        """Resource use (R,) of grid-index vector ``idx`` (one index per class)."""
        total = self.const.copy()
        for c, u in enumerate(self.unary):
            total += u[:, idx[c]]
        for c, d, mat in self.pairs:
            total += mat[:, idx[c], idx[d]]
        return total

    def value(self, idx: np.ndarray) -> float:
        return float(sum(v[i] for v, i in zip(self.values, idx)))


@dataclass(frozen=True, eq=False)
class SearchProblem:
    """Groups with scores and grids, layers with costs, and tied groups (see the module docstring)."""

    groups: tuple[WidthGroup, ...]
    layers: tuple[LayerCost, ...]
    ties: tuple[tuple[str, ...], ...] = ()
    name: str = ""

    def __post_init__(self) -> None:
        groups = tuple(self.groups)
        if not groups:
            raise InvalidParameterError("a search problem needs at least one group")
        names = [g.name for g in groups]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InvalidParameterError(f"group names must be unique; repeated: {dup}")
        known = set(names)
        for layer in self.layers:
            for end in (layer.input, layer.output):
                if isinstance(end, str) and end not in known:
                    raise InvalidParameterError(
                        f"layer {layer.name!r} refers to group {end!r}, which is not one of the groups {names}"
                    )
        ties = tuple(tuple(str(n) for n in tie) for tie in self.ties)
        for tie in ties:
            unknown = [n for n in tie if n not in known]
            if unknown:
                raise InvalidParameterError(f"tied groups {unknown} are not among the groups {names}")
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "ties", ties)

    # -- plain evaluation (any widths, not only grid points)
    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups]

    def group(self, name: str) -> WidthGroup:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(f"no group {name!r}; groups: {self.group_names}")

    @property
    def resource_names(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for layer in self.layers:
            for key in layer.costs:
                seen.setdefault(key, None)
        return tuple(seen)

    @property
    def full_widths(self) -> dict[str, int]:
        return {g.name: g.size for g in self.groups}

    def _width(self, end: str | int, widths: Mapping[str, int]) -> int:
        return int(widths[end]) if isinstance(end, str) else int(end)

    def resources(self, widths: Mapping[str, int]) -> dict[str, float]:
        """``R_r(k)`` for every resource, evaluated layer by layer."""
        missing = [n for n in self.group_names if n not in widths]
        if missing:
            raise InvalidParameterError(f"widths are missing groups {missing}")
        totals = dict.fromkeys(self.resource_names, 0.0)
        for layer in self.layers:
            k_in, k_out = self._width(layer.input, widths), self._width(layer.output, widths)
            for key, cost in layer.costs.items():
                totals[key] += float(cost(k_in, k_out))
        return totals

    def full_resources(self) -> dict[str, float]:
        return self.resources(self.full_widths)

    def value(self, widths: Mapping[str, int]) -> float:
        """Retained score ``sum_g v_g(k_g)``."""
        return float(sum(g.prefix[int(widths[g.name])] for g in self.groups))

    def kept(self, widths: Mapping[str, int]) -> dict[str, np.ndarray]:
        return {g.name: g.kept(int(widths[g.name])) for g in self.groups}

    def absolute_budgets(self, budgets: Mapping[str, float], *, relative: bool = True) -> dict[str, float]:
        """Budgets in the resources' own units; ``relative`` ones are fractions of the unpruned model."""
        names = self.resource_names
        unknown = [k for k in budgets if k not in names]
        if unknown:
            raise InvalidParameterError(
                f"budget on unknown resource(s) {unknown}; this problem's resources are {list(names)}"
            )
        if not relative:
            return {k: float(v) for k, v in budgets.items()}
        full = self.full_resources()
        out = {}
        for key, frac in budgets.items():
            if not 0 < float(frac):
                raise InvalidParameterError(f"relative budget {key}={frac} must be > 0 (a fraction of the full model)")
            out[key] = float(frac) * full[key]
        return out

    # -- the problem on decision classes
    @cached_property
    def compiled(self) -> CompiledProblem:
        n = len(self.groups)
        index = {g.name: i for i, g in enumerate(self.groups)}
        sets = UnionFind(n)
        for tie in self.ties:
            for a, b in zip(tie, tie[1:]):
                sets.union(index[a], index[b])
        roots = sets.roots()
        class_id = {r: c for c, r in enumerate(roots)}
        class_of = np.array([class_id[sets.find(i)] for i in range(n)], dtype=np.int64)
        classes = [[i for i in range(n) if class_of[i] == c] for c in range(len(roots))]
        grids, values = [], []
        for members in classes:
            grid = self.groups[members[0]].widths
            for m in members[1:]:
                grid = np.intersect1d(grid, self.groups[m].widths)
            if grid.size == 0:
                detail = "; ".join(f"{self.groups[m].name}: {self.groups[m].widths.tolist()}" for m in members)
                raise InvalidParameterError(f"tied groups have no allowed width in common ({detail})")
            grids.append(grid.astype(np.int64))
            values.append(sum(self.groups[m].prefix[grid] for m in members))
        resources = self.resource_names
        R = len(resources)
        const = np.zeros(R)
        unary = [np.zeros((R, g.size)) for g in grids]
        pair_map: dict[tuple[int, int], np.ndarray] = {}
        for layer in self.layers:
            ends = []
            for end in (layer.input, layer.output):
                if isinstance(end, str):
                    c = int(class_of[index[end]])
                    ends.append((c, grids[c].astype(np.float64)))
                else:
                    ends.append((None, np.array([float(end)])))
            (ci, gi), (co, go) = ends
            for r, key in enumerate(resources):
                cost = layer.costs.get(key)
                if cost is None:
                    continue
                if ci is None and co is None:
                    const[r] += float(cost(gi[0], go[0]))
                elif ci is None:
                    unary[co][r] += cost(gi[0], go)
                elif co is None:
                    unary[ci][r] += cost(gi, go[0])
                elif ci == co:
                    unary[ci][r] += cost(gi, gi)
                else:
                    mat = cost(gi[:, None], go[None, :])
                    key2 = (ci, co) if ci < co else (co, ci)
                    if ci > co:
                        mat = mat.T
                    if key2 not in pair_map:
                        pair_map[key2] = np.zeros((R, grids[key2[0]].size, grids[key2[1]].size))
                    pair_map[key2][r] += mat
            if ci is not None and co is not None and ci != co:  # the pair exists even without costs
                key2 = (min(ci, co), max(ci, co))
                pair_map.setdefault(key2, np.zeros((R, grids[key2[0]].size, grids[key2[1]].size)))
        pairs = [(c, d, pair_map[(c, d)]) for (c, d) in sorted(pair_map)]
        return CompiledProblem(resources, classes, class_of, grids, values, const, unary, pairs)

    def widths_from_index(self, idx: Sequence[int]) -> dict[str, int]:
        comp = self.compiled
        return {g.name: int(comp.grids[comp.class_of[i]][idx[comp.class_of[i]]]) for i, g in enumerate(self.groups)}

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "groups": [g.to_dict() for g in self.groups],
            "layers": [layer.to_dict() for layer in self.layers],
            "ties": [list(t) for t in self.ties],
        }
