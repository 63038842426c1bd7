r"""Global structure search (per-group kept widths under resource budgets) as an exact MILP.

The problem
-----------
A network has prunable *groups* ``g`` (a hidden layer's neurons, a convolution's
output channels, the channels of a residual stream, ...), each with ``n_g``
units and one importance score per unit ``s_{g,1..n_g}`` (any scorer, after any
normaliser). The decision is how many units each group keeps, ``k_g``, from an
allowed grid ``K_g`` (a minimum width, multiples of ``round_to``, head counts
divisible by the key/value groups, ...).

Every resource below depends on the *counts* ``k`` only, never on which units
are kept, so for a fixed width the best units are the ``k`` highest-scoring
ones and keeping width ``k`` is worth the prefix sum of the sorted scores

.. math::  v_g(k) = \sum_{i \le k} s_{g,(i)},\qquad s_{g,(1)} \ge s_{g,(2)} \ge \dots

A resource ``r`` (parameters, FLOPs, latency, ...) is a sum over *layers*
``l``, each reading an input width and writing an output width, where each end
is a group's width or a fixed width (the network input, the classes):

.. math::  R_r(k) = D_r + \sum_l c_{l,r}\big(k_{\mathrm{in}(l)}, k_{\mathrm{out}(l)}\big)

with ``c`` :class:`Bilinear` for parameters and FLOPs (``(k_in + 1) k_out`` for
``nn.Linear``, ``k_in k_out kh kw + k_out`` for ``nn.Conv2d``, ``k_in k_out kh kw
H' W'`` multiply-accumulates) or a :class:`Table` (measured latency). The
structure search of HALP (Shen et al., NeurIPS 2022, greedy latency knapsack)
and of the global threshold of FLAP (An et al., AAAI 2024) / Torch-Pruning
(Fang et al., CVPR 2023) is, solved exactly:

.. math::

    \max_k \sum_g v_g(k_g)\quad\text{s.t.}\quad R_r(k) \le B_r\ \ \forall r,\qquad
    k_g \in K_g,\qquad k_g = k_h\ \text{for tied groups } (g, h).

The MILP
--------
Tied groups form one *decision class* ``c`` (union-find over the ties) with the
grid ``K_c`` = intersection of its members' grids and the value the sum of
their values: they share one set of selection variables, which is the same as
the equality rows ``y_{g,i} = y_{h,i}`` between their node selections, with the
duplicate columns substituted out. Variables: ``y_{c,i} \in \{0,1\}`` (class
``c`` keeps width ``K_c[i]``); for every pair of distinct classes ``(c, d)``
joined by some layer (parallel layers merged, their costs added),
``x_{cd,ij} \in [0, 1]`` (``c`` keeps ``K_c[i]`` and ``d`` keeps ``K_d[j]``):

.. math::

    \max\ & \sum_c \sum_i v_c(K_c[i])\, y_{c,i} \\
    \text{s.t. } & \textstyle\sum_i y_{c,i} = 1 && \text{(one width per class)} \\
    & \textstyle\sum_j x_{cd,ij} = y_{c,i}\ \ \forall i, \qquad \sum_i x_{cd,ij} = y_{d,j}\ \ \forall j
      && \text{(marginals)} \\
    & \textstyle\sum_c u_{c,r}^\top y_c + \sum_{(c,d)} \langle C_{cd,r}, x_{cd}\rangle \le B_r - D_r
      && \text{(budget rows)}

where ``u_{c,r}`` collects the layers with one class end (the other fixed, or
both ends the same class) and ``C_{cd,r}[i, j]`` is the exact cost of the pair
of widths ``(K_c[i], K_d[j])`` summed over the layers joining ``c`` and ``d``.

Why it is exact (no relaxation of the bilinear terms): for integral ``y`` the
marginal rows force ``x_{cd} = y_c y_d^\top``. Row ``i^*`` (the chosen width of
``c``) of ``x_{cd}`` sums to 1 and every other row to 0, column ``j^*`` sums to
1 and every other column to 0, and ``x \ge 0``, so ``x_{cd,i^*j^*} = 1`` is the
only nonzero. Hence every budget row evaluates the true cost
``c_{l,r}(K_c[i^*], K_d[j^*])`` of the chosen widths, whatever the form of
``c`` (bilinear, table), and ``x`` need not be declared integer. For a chain
(an MLP, a plain CNN) this is the layered graph of the resource-constrained
longest-path problem: nodes (layer, width), arcs between consecutive layers'
widths carrying the pair's cost, the marginal rows are flow conservation for
one unit of flow from the first layer to the last (Adams & Johnson's
linearisation of a pairwise 0-1 program; on a path its constraint matrix without
the budget rows is a network matrix, so the LP relaxation is tight but for the
budget rows).

Exact reduction (optional, on by default)
-----------------------------------------
Dualising the budget rows with multipliers ``\lambda \ge 0`` leaves, when the
class graph is a forest (chains, trees), a pairwise problem max-product belief
propagation solves exactly, together with the *max-marginal* of every node and
arc: the best Lagrangian value of any width vector using that node/arc. For a
feasible ``k`` with value ``V(k)``:
``V(k) \le V(k) + \lambda^\top (B - R(k)) \le \mathrm{maxmarginal}_\lambda(a)``
for each node/arc ``a`` it uses. Given a feasible incumbent of value
``V_{inc}`` (from the Lagrangian primal solutions, a greedy fill, or supplied
by the caller), any node/arc whose bound (the minimum over every multiplier
vector tried) is below ``V_{inc}`` lies in no solution at least as good as the
incumbent, hence in no optimal solution, and is dropped (a relative tolerance of
1e-9 guards against rounding). The incumbent's own nodes and arcs always stay,
so the reduced MILP keeps every optimal solution and the incumbent. This is
reduced-cost fixing in Lagrangian form (Beasley & Christofides, Networks 1989,
for the resource-constrained shortest path).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

import numpy as np
import scipy.sparse as sp

from optprune.errors import InfeasibleBudgetError, InvalidParameterError, ShapeMismatchError
from optprune.milp import MILP, Sense

__all__ = [
    "Bilinear",
    "Table",
    "LayerCost",
    "WidthGroup",
    "SearchProblem",
    "StructureSearchModel",
    "width_grid",
    "linear_costs",
    "conv_costs",
    "cost_from_dict",
    "build_search_milp",
    "brute_force",
    "minimum_resources",
    "lagrangian_reduction",
    "ReductionResult",
    "check_budgets",
]

_REMOVE_TOL = 1e-9


# ----------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Bilinear:
    """``cost(k_in, k_out) = in_out * k_in * k_out + in_ * k_in + out * k_out + const``.

    ``nn.Linear(k_in, k_out)``: parameters ``in_out=1, out=1`` (bias); an input
    flattened from ``k_in`` channels of ``H x W`` pixels has ``in_out=H*W``.
    ``nn.Conv2d`` with a ``kh x kw`` kernel: parameters ``in_out=kh*kw, out=1``,
    multiply-accumulates ``in_out=kh*kw*H'*W'``. ``BatchNorm``: ``out=2``.
    """

    in_out: float = 0.0
    in_: float = 0.0
    out: float = 0.0
    const: float = 0.0

    def __call__(self, k_in, k_out) -> np.ndarray:
        k_in = np.asarray(k_in, dtype=np.float64)
        k_out = np.asarray(k_out, dtype=np.float64)
        return self.in_out * k_in * k_out + self.in_ * k_in + self.out * k_out + self.const

    @property
    def monotone(self) -> bool:
        """Nondecreasing in both widths (all coefficients nonnegative)."""
        return min(self.in_out, self.in_, self.out) >= 0

    def to_dict(self) -> dict:
        return {"type": "bilinear", "in_out": self.in_out, "in": self.in_, "out": self.out, "const": self.const}


def _axis(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or np.any(np.diff(arr) <= 0):
        raise ShapeMismatchError(f"table axis {name} must be non-empty and strictly increasing, got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


def _interp(axis: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``lo, hi`` and weight ``t`` of ``k`` on ``axis`` (clamped to the ends)."""
    if axis.size == 1:
        zero = np.zeros(k.shape, dtype=np.int64)
        return zero, zero, np.zeros(k.shape)
    lo = np.clip(np.searchsorted(axis, k, side="right") - 1, 0, axis.size - 2)
    t = np.clip((k - axis[lo]) / (axis[lo + 1] - axis[lo]), 0.0, 1.0)
    return lo, lo + 1, t


@dataclass(frozen=True, eq=False)
class Table:
    """A cost measured on a grid of (input width, output width), bilinearly interpolated.

    ``values[i, j]`` is the cost at ``(in_widths[i], out_widths[j])``; widths
    between grid points are interpolated, widths outside are clamped to the
    nearest end. A fixed end has a one-point axis.
    """

    in_widths: np.ndarray
    out_widths: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        a_in, a_out = _axis("in_widths", self.in_widths), _axis("out_widths", self.out_widths)
        vals = np.asarray(self.values, dtype=np.float64)
        if vals.shape != (a_in.size, a_out.size):
            raise ShapeMismatchError(f"table values have shape {vals.shape}, axes need {(a_in.size, a_out.size)}")
        if not np.all(np.isfinite(vals)):
            raise ShapeMismatchError("table values must be finite")
        vals.setflags(write=False)
        object.__setattr__(self, "in_widths", a_in)
        object.__setattr__(self, "out_widths", a_out)
        object.__setattr__(self, "values", vals)

    def __call__(self, k_in, k_out) -> np.ndarray:
        k_in, k_out = np.broadcast_arrays(np.asarray(k_in, dtype=np.float64), np.asarray(k_out, dtype=np.float64))
        i0, i1, ti = _interp(self.in_widths, k_in)
        o0, o1, to = _interp(self.out_widths, k_out)
        v = self.values
        return (
            (1 - ti) * (1 - to) * v[i0, o0] + (1 - ti) * to * v[i0, o1] + ti * (1 - to) * v[i1, o0] + ti * to * v[i1, o1]
        )

    @property
    def monotone(self) -> bool:
        return bool(np.all(np.diff(self.values, axis=0) >= 0) and np.all(np.diff(self.values, axis=1) >= 0))

    def to_dict(self) -> dict:
        return {
            "type": "table",
            "in_widths": self.in_widths.tolist(),
            "out_widths": self.out_widths.tolist(),
            "values": self.values.tolist(),
        }


Cost = Bilinear | Table


def cost_from_dict(data: Mapping) -> Cost:
    """The inverse of ``to_dict`` of :class:`Bilinear` / :class:`Table`."""
    kind = data.get("type", "bilinear")
    if kind == "bilinear":
        return Bilinear(
            float(data.get("in_out", 0.0)), float(data.get("in", 0.0)), float(data.get("out", 0.0)),
            float(data.get("const", 0.0)),
        )
    if kind == "table":
        return Table(data["in_widths"], data["out_widths"], data["values"])
    raise InvalidParameterError(f"cost type must be 'bilinear' or 'table', got {kind!r}")


def linear_costs(*, bias: bool = True, spatial_in: int = 1) -> dict[str, Bilinear]:
    """Parameters and multiply-accumulates ("flops") of ``nn.Linear``.

    ``spatial_in`` is the number of input features per input unit (``H*W`` when
    the input was flattened from channels).
    """
    return {
        "params": Bilinear(in_out=float(spatial_in), out=float(bias)),
        "flops": Bilinear(in_out=float(spatial_in)),
    }


def conv_costs(kh: int, kw: int, out_hw: tuple[int, int], *, bias: bool = True, groups: int = 1) -> dict[str, Bilinear]:
    """Parameters and multiply-accumulates of ``nn.Conv2d`` (``groups`` divides the input channels)."""
    per = float(kh * kw) / groups
    return {
        "params": Bilinear(in_out=per, out=float(bias)),
        "flops": Bilinear(in_out=per * out_hw[0] * out_hw[1]),
    }


@dataclass(frozen=True, eq=False)
class LayerCost:
    """One layer's resource costs; ``input`` / ``output`` are a group name or a fixed width."""

    name: str
    input: str | int
    output: str | int
    costs: Mapping[str, Cost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for end in ("input", "output"):
            value = getattr(self, end)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
                raise InvalidParameterError(
                    f"layer {self.name!r}: {end} must be a group name or a fixed width, got {value!r}"
                )
            if not isinstance(value, str):
                if value < 0:
                    raise InvalidParameterError(f"layer {self.name!r}: fixed {end} width must be >= 0, got {value}")
                object.__setattr__(self, end, int(value))
        costs = {}
        for key, cost in dict(self.costs).items():
            if isinstance(cost, Mapping):
                cost = cost_from_dict(cost)
            if not isinstance(cost, (Bilinear, Table)):
                raise InvalidParameterError(
                    f"layer {self.name!r}: cost {key!r} must be Bilinear or Table, got {type(cost).__name__}"
                )
            costs[str(key)] = cost
        object.__setattr__(self, "costs", MappingProxyType(costs))

    def to_dict(self) -> dict:
        return {
            "name": self.name, "input": self.input, "output": self.output,
            "costs": {k: c.to_dict() for k, c in self.costs.items()},
        }


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
    """A prunable group: one score per unit and the allowed kept widths (default 1..n)."""

    name: str
    scores: np.ndarray
    widths: np.ndarray | None = None

    def __post_init__(self) -> None:
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if scores.size == 0:
            raise ShapeMismatchError(f"group {self.name!r} has no scores")
        if not np.all(np.isfinite(scores)):
            raise ShapeMismatchError(f"group {self.name!r}: scores must be finite")
        scores.setflags(write=False)
        object.__setattr__(self, "scores", scores)
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
        """``prefix[k]`` = sum of the ``k`` largest scores (``v_g(k)``)."""
        return np.concatenate([[0.0], np.cumsum(self.scores[self.order])])

    def kept(self, width: int) -> np.ndarray:
        """Indices of the ``width`` highest-scoring units, ascending."""
        return np.sort(self.order[: int(width)])

    def to_dict(self) -> dict:
        return {"name": self.name, "scores": self.scores.tolist(), "widths": self.widths.tolist()}


# ----------------------------------------------------------------------------- problem
@dataclass
class _Compiled:
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
        parent = list(range(len(self.classes)))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for c, d, _ in self.pairs:
            rc, rd = find(c), find(d)
            if rc == rd:
                return False
            parent[rc] = rd
        return True

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
    def compiled(self) -> _Compiled:
        n = len(self.groups)
        index = {g.name: i for i, g in enumerate(self.groups)}
        parent = list(range(n))

        def find(a: int) -> int:
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            return a

        for tie in self.ties:
            for a, b in zip(tie, tie[1:]):
                ra, rb = find(index[a]), find(index[b])
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
        roots = sorted({find(i) for i in range(n)})
        class_id = {r: c for c, r in enumerate(roots)}
        class_of = np.array([class_id[find(i)] for i in range(n)], dtype=np.int64)
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
        return _Compiled(resources, classes, class_of, grids, values, const, unary, pairs)

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


# ----------------------------------------------------------------------------- forest dynamic programming
class _Forest:
    """Max-sum belief propagation on the class graph when it is a forest (exact there)."""

    def __init__(self, comp: _Compiled) -> None:
        n = len(comp.classes)
        adj: list[list[tuple[int, int]]] = [[] for _ in range(n)]
        for e, (c, d, _) in enumerate(comp.pairs):
            adj[c].append((d, e))
            adj[d].append((c, e))
        self.parent = np.full(n, -1)
        self.parent_edge = np.full(n, -1)
        self.order: list[int] = []
        self.roots: list[int] = []
        seen = np.zeros(n, dtype=bool)
        for root in range(n):
            if seen[root]:
                continue
            self.roots.append(root)
            seen[root] = True
            queue = [root]
            while queue:
                node = queue.pop(0)
                self.order.append(node)
                for other, e in adj[node]:
                    if not seen[other]:
                        seen[other] = True
                        self.parent[other] = node
                        self.parent_edge[other] = e
                        queue.append(other)
        self.children: list[list[int]] = [[] for _ in range(n)]
        for node in self.order:
            if self.parent[node] >= 0:
                self.children[self.parent[node]].append(node)
        self.pairs = comp.pairs

    def _psi(self, edge_w: list[np.ndarray], child: int) -> np.ndarray:
        """Edge weight oriented (parent width, child width)."""
        e = self.parent_edge[child]
        c, _d, _ = self.pairs[e]
        mat = edge_w[e]
        return mat if c == self.parent[child] else mat.T

    def solve(self, node_w: list[np.ndarray], edge_w: list[np.ndarray], *, marginals: bool = False):
        """Max of ``sum node_w + sum edge_w``, its argmax, and optionally node/edge max-marginals."""
        n = len(node_w)
        inside = [None] * n
        up = [None] * n  # message child -> parent, over parent's widths
        for node in reversed(self.order):
            acc = node_w[node].copy()
            for ch in self.children[node]:
                acc += up[ch]
            inside[node] = acc
            if self.parent[node] >= 0:
                up[node] = np.max(self._psi(edge_w, node) + acc[None, :], axis=1)
        idx = np.zeros(n, dtype=np.int64)
        total = 0.0
        for node in self.order:
            if self.parent[node] < 0:
                idx[node] = int(np.argmax(inside[node]))
                total += float(inside[node][idx[node]])
            else:
                row = self._psi(edge_w, node)[idx[self.parent[node]]]
                idx[node] = int(np.argmax(row + inside[node]))
        if not marginals:
            return total, idx, None, None
        full = [None] * n  # node max-marginals (within the node's component)
        down = [None] * n  # message parent -> node, over node's widths
        edge_mm = [None] * len(self.pairs)
        comp_total = np.zeros(n)
        for node in self.order:
            if self.parent[node] < 0:
                full[node] = inside[node].copy()
            else:
                p = self.parent[node]
                outside_p = full[p] - up[node]  # everything at p except the subtree of node
                psi = self._psi(edge_w, node)
                down[node] = np.max(outside_p[:, None] + psi, axis=0)
                full[node] = inside[node] + down[node]
                mm = outside_p[:, None] + psi + inside[node][None, :]
                e = self.parent_edge[node]
                edge_mm[e] = mm if self.pairs[e][0] == p else mm.T
        # each component's max-marginals omit the other components' best values: add them
        root_of = np.zeros(n, dtype=np.int64)
        for node in self.order:
            root_of[node] = node if self.parent[node] < 0 else root_of[self.parent[node]]
        best = {r: float(np.max(inside[r])) for r in self.roots}
        for node in range(n):
            comp_total[node] = total - best[root_of[node]]
            full[node] = full[node] + comp_total[node]
        for e, (c, _d, _) in enumerate(self.pairs):
            edge_mm[e] = edge_mm[e] + comp_total[c]
        return total, idx, full, edge_mm


def _forest_min(comp: _Compiled, r: int) -> tuple[float, np.ndarray]:
    forest = _Forest(comp)
    total, idx, _, _ = forest.solve([-u[r] for u in comp.unary], [-m[r] for _, _, m in comp.pairs])
    return comp.const[r] - total, idx


def minimum_resources(problem: SearchProblem) -> dict[str, float]:
    """The smallest achievable use of every resource on its own (over the allowed widths).

    Exact by dynamic programming when the class graph is a forest; otherwise the
    all-minimum-width plan, which is the minimum when every cost is
    nondecreasing in both widths (checked), else by enumeration when small or
    a MILP with HiGHS.
    """
    comp = problem.compiled
    out = {}
    if comp.is_forest:
        for r, key in enumerate(comp.resources):
            out[key] = float(_forest_min(comp, r)[0])
        return out
    monotone = all(c.monotone for layer in problem.layers for c in layer.costs.values())
    if monotone:
        idx = np.zeros(len(comp.classes), dtype=np.int64)
        use = comp.cost(idx)
        return {key: float(use[r]) for r, key in enumerate(comp.resources)}
    for r, key in enumerate(comp.resources):
        model = _cost_milp(comp, r)
        from optprune.solvers import solve

        res = solve(model, "highs")
        out[key] = float(res.objective)
    return out


def _cost_milp(comp: _Compiled, r: int) -> MILP:
    """min R_r over the allowed widths (no budgets), same variables as :func:`build_search_milp`."""
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    parts = _assemble(comp, keep_nodes, keep_arcs, {}, objective="cost", resource=r)
    return parts


# ----------------------------------------------------------------------------- reduction
@dataclass
class ReductionResult:
    """What the Lagrangian reduction proved: bounds, an incumbent, the surviving nodes and arcs."""

    bound: float  # upper bound on the optimum (min over multipliers tried)
    incumbent: np.ndarray | None  # grid indices per class of the best feasible plan found
    incumbent_value: float
    keep_nodes: list[np.ndarray]  # per class, surviving grid indices
    keep_arcs: list[np.ndarray]  # per pair, boolean (n_c, n_d)
    multipliers: dict[str, float]
    evaluations: int
    time_s: float

    def stats(self) -> dict:
        return {
            "lagrangian_bound": self.bound,
            "incumbent": self.incumbent_value if self.incumbent is not None else None,
            "nodes_kept": int(sum(k.size for k in self.keep_nodes)),
            "arcs_kept": int(sum(int(a.sum()) for a in self.keep_arcs)),
            "multipliers": self.multipliers,
            "evaluations": self.evaluations,
            "time_s": round(self.time_s, 6),
        }


def _greedy_fill(comp: _Compiled, idx: np.ndarray, caps: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Raise widths one grid step at a time (best value gain per budget used) while feasible."""
    idx = idx.copy()
    n = len(comp.grids)
    incident: list[list[tuple[int, bool]]] = [[] for _ in range(n)]
    for e, (c, d, _) in enumerate(comp.pairs):
        incident[c].append((e, True))
        incident[d].append((e, False))
    use = comp.cost(idx)[rows]
    scale = np.where(caps > 0, caps, 1.0)
    for _ in range(10_000):
        best, best_score, best_delta = -1, 0.0, None
        for c in range(n):
            i = idx[c]
            if i + 1 >= comp.grids[c].size:
                continue
            gain = comp.values[c][i + 1] - comp.values[c][i]
            if gain <= 0:
                continue
            delta = comp.unary[c][rows, i + 1] - comp.unary[c][rows, i]
            for e, first in incident[c]:
                cc, dd, mat = comp.pairs[e]
                if first:
                    j = idx[dd]
                    delta = delta + mat[rows, i + 1, j] - mat[rows, i, j]
                else:
                    j = idx[cc]
                    delta = delta + mat[rows, j, i + 1] - mat[rows, j, i]
            if np.any(use + delta > caps + 1e-9 * np.abs(caps)):
                continue
            score = gain / max(float(np.max(delta / scale)), 1e-12)
            if score > best_score:
                best, best_score, best_delta = c, score, delta
        if best < 0:
            break
        idx[best] += 1
        use = use + best_delta
    return idx


def _index_of(problem: SearchProblem, widths: Mapping[str, int]) -> np.ndarray | None:
    """Grid index per class of a width plan, or None if it is off the grid or breaks a tie."""
    comp = problem.compiled
    idx = np.zeros(len(comp.classes), dtype=np.int64)
    for c, members in enumerate(comp.classes):
        want = {int(widths[problem.groups[m].name]) for m in members}
        if len(want) != 1:
            return None
        k = want.pop()
        i = int(np.searchsorted(comp.grids[c], k))
        if i >= comp.grids[c].size or comp.grids[c][i] != k:
            return None
        idx[c] = i
    return idx


def lagrangian_reduction(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    *,
    incumbents: Sequence[Mapping[str, int]] = (),
    iterations: int = 40,
) -> ReductionResult:
    """Lagrangian bounds, a feasible incumbent and the nodes/arcs that can be in an optimum.

    Needs a forest class graph (chains and trees); otherwise returns everything
    kept with the best supplied incumbent. ``budgets`` are absolute. See the
    module docstring for why dropping is exact.
    """
    start = time.perf_counter()
    comp = problem.compiled
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    rows = np.array([comp.resources.index(k) for k in budgets], dtype=np.int64)
    caps = np.array([budgets[k] for k in budgets], dtype=np.float64)

    best_idx, best_val = None, -math.inf

    def consider(idx: np.ndarray) -> None:
        nonlocal best_idx, best_val
        if np.all(comp.cost(idx)[rows] <= caps + 1e-9 * np.abs(caps)):
            val = comp.value(idx)
            if val > best_val:
                best_idx, best_val = idx.copy(), val

    for widths in incumbents:
        idx = _index_of(problem, widths)
        if idx is not None:
            consider(idx)
    if not comp.is_forest:
        return ReductionResult(math.inf, best_idx, best_val, keep_nodes, keep_arcs, {}, 0, time.perf_counter() - start)

    forest = _Forest(comp)
    R = rows.size
    node_bound = [np.full(g.size, math.inf) for g in comp.grids]
    arc_bound = [np.full(m.shape[1:], math.inf) for _, _, m in comp.pairs]
    best_bound = math.inf
    evaluations = 0
    # normalise each budgeted resource by its budget so that multipliers are comparable
    scale = np.where(np.abs(caps) > 0, np.abs(caps), 1.0)
    unary_n = [u[rows] / scale[:, None] for u in comp.unary]
    pair_n = [m[rows] / scale[:, None, None] for _, _, m in comp.pairs]
    rhs_n = (caps - comp.const[rows]) / scale

    def evaluate(lam: np.ndarray, marginals: bool) -> tuple[float, np.ndarray]:
        nonlocal best_bound, evaluations
        evaluations += 1
        node_w = [v - lam @ u for v, u in zip(comp.values, unary_n)]
        edge_w = [_weighted(lam, m) for m in pair_n]
        total, idx, full, edge_mm = forest.solve(node_w, edge_w, marginals=marginals)
        shift = float(lam @ rhs_n)
        bound = total + shift
        best_bound = min(best_bound, bound)
        if marginals:
            for c in range(len(node_bound)):
                np.minimum(node_bound[c], full[c] + shift, out=node_bound[c])
            for e in range(len(arc_bound)):
                np.minimum(arc_bound[e], edge_mm[e] + shift, out=arc_bound[e])
        consider(idx)
        return bound, idx

    def slack(idx: np.ndarray) -> np.ndarray:
        return caps - comp.cost(idx)[rows]

    lam = np.zeros(R)
    _, idx0 = evaluate(lam, True)
    if R and np.any(slack(idx0) < -1e-9 * np.abs(caps)):
        vmax = max(float(sum(np.max(np.abs(v)) for v in comp.values)), 1e-12)
        for _cycle in range(3 if R > 1 else 1):
            for r in range(R):
                lo, hi = 0.0, vmax
                probe = lam.copy()
                for _ in range(60):  # find a multiplier making resource r feasible
                    probe[r] = hi
                    _, idx = evaluate(probe, False)
                    if slack(idx)[r] >= -1e-9 * abs(caps[r]):
                        break
                    lo, hi = hi, hi * 4
                for _ in range(iterations):
                    mid = 0.5 * (lo + hi)
                    probe[r] = mid
                    _, idx = evaluate(probe, False)
                    if slack(idx)[r] >= -1e-9 * abs(caps[r]):
                        hi = mid
                    else:
                        lo = mid
                    if hi - lo <= 1e-9 * max(hi, 1e-12):
                        break
                lam[r] = hi
                probe[r] = lo
                evaluate(probe, True)
                probe[r] = hi
                _, idx_hi = evaluate(probe, True)
                consider(_greedy_fill(comp, idx_hi, caps, rows))
        if best_idx is not None:
            consider(_greedy_fill(comp, best_idx, caps, rows))
    if best_idx is not None:
        tol = _REMOVE_TOL * max(1.0, abs(best_val))
        threshold = best_val - tol
        keep_nodes = [np.flatnonzero(b >= threshold) for b in node_bound]
        keep_arcs = [b >= threshold for b in arc_bound]
        for c in range(len(keep_nodes)):  # the incumbent always survives
            if best_idx[c] not in keep_nodes[c]:
                keep_nodes[c] = np.union1d(keep_nodes[c], [best_idx[c]])
        for e, (c, d, _) in enumerate(comp.pairs):
            keep_arcs[e][best_idx[c], best_idx[d]] = True
        keep_nodes, keep_arcs = _prune_consistent(comp, keep_nodes, keep_arcs)
    return ReductionResult(
        best_bound, best_idx, best_val, keep_nodes, keep_arcs,
        {k: float(v) / float(s) for k, v, s in zip(budgets, lam, scale)}, evaluations, time.perf_counter() - start,
    )


def _weighted(lam: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """``-sum_r lam[r] * mats[r]`` without numpy's tensordot copies."""
    out = np.zeros(mats.shape[1:])
    for r in np.flatnonzero(lam):
        out -= lam[r] * mats[r]
    return out


def _prune_consistent(comp: _Compiled, keep_nodes: list[np.ndarray], keep_arcs: list[np.ndarray]):
    """Drop arcs at dropped nodes and nodes without an arc in some incident pair, until stable."""
    masks = []
    for g, keep in zip(comp.grids, keep_nodes):
        m = np.zeros(g.size, dtype=bool)
        m[keep] = True
        masks.append(m)
    arcs = [a.copy() for a in keep_arcs]
    changed = True
    while changed:
        changed = False
        for e, (c, d, _) in enumerate(comp.pairs):
            arcs[e] &= masks[c][:, None] & masks[d][None, :]
            has_c, has_d = arcs[e].any(axis=1), arcs[e].any(axis=0)
            if np.any(masks[c] & ~has_c) or np.any(masks[d] & ~has_d):
                masks[c] &= has_c
                masks[d] &= has_d
                changed = True
    return [np.flatnonzero(m) for m in masks], arcs


# ----------------------------------------------------------------------------- the MILP
@dataclass(frozen=True, eq=False)
class StructureSearchModel:
    """The MILP plus what is needed to read widths back from a solution."""

    model: MILP
    problem: SearchProblem
    budgets: Mapping[str, float]
    node_columns: tuple[np.ndarray, ...]  # per class: MILP column of each surviving node
    node_index: tuple[np.ndarray, ...]  # per class: grid index of each surviving node
    reduction: ReductionResult | None
    rounding: dict | None = None

    def decode(self, x: np.ndarray) -> dict[str, int]:
        """Widths per group from a solution vector."""
        x = np.asarray(x)
        idx = np.array([int(ni[np.argmax(x[cols])]) for cols, ni in zip(self.node_columns, self.node_index)])
        return self.problem.widths_from_index(idx)

    def stats(self) -> dict:
        out = dict(self.model.stats())
        out["arcs_full"] = int(sum(m.shape[1] * m.shape[2] for _, _, m in self.problem.compiled.pairs))
        out["nodes_full"] = int(sum(g.size for g in self.problem.compiled.grids))
        if self.reduction is not None:
            out["reduction"] = self.reduction.stats()
        if self.rounding is not None:
            out["rounding"] = self.rounding
        return out


def _assemble(
    comp: _Compiled,
    keep_nodes: list[np.ndarray],
    keep_arcs: list[np.ndarray],
    budgets: Mapping[str, float],
    *,
    objective: str = "value",
    resource: int = 0,
    value_scale: float | None = None,
    cost_scales: Mapping[str, float] | None = None,
    name: str = "structure_search",
):
    """Build the MILP arrays over the surviving nodes/arcs (vectorised, one CSR at the end)."""
    n_cls = len(comp.grids)
    node_cols, col = [], 0
    for keep in keep_nodes:
        node_cols.append(np.arange(col, col + keep.size))
        col += keep.size
    n_y = col
    # position of each grid index among a class's surviving nodes (-1 when dropped)
    pos = []
    for g, keep in zip(comp.grids, keep_nodes):
        p = np.full(g.size, -1, dtype=np.int64)
        p[keep] = np.arange(keep.size)
        pos.append(p)
    arc_i, arc_j, arc_cols = [], [], []
    for arcs in keep_arcs:
        ii, jj = np.nonzero(arcs)
        arc_i.append(ii)
        arc_j.append(jj)
        arc_cols.append(np.arange(col, col + ii.size))
        col += ii.size
    n = col
    integer = value_scale is not None
    rows_i, rows_j, rows_v, lo, hi = [], [], [], [], []
    row = 0
    # one width per class
    for c in range(n_cls):
        rows_i.append(np.full(keep_nodes[c].size, row))
        rows_j.append(node_cols[c])
        rows_v.append(np.ones(keep_nodes[c].size))
        lo.append([1.0])
        hi.append([1.0])
        row += 1
    # marginals
    for e, (c, d, _) in enumerate(comp.pairs):
        for cls, arc_idx in ((c, arc_i[e]), (d, arc_j[e])):
            k = keep_nodes[cls].size
            rows_i.append(row + pos[cls][arc_idx])
            rows_j.append(arc_cols[e])
            rows_v.append(np.ones(arc_idx.size))
            rows_i.append(row + np.arange(k))
            rows_j.append(node_cols[cls])
            rows_v.append(-np.ones(k))
            lo.append(np.zeros(k))
            hi.append(np.zeros(k))
            row += k
    # budgets
    rounding = None
    keys = list(budgets)
    if integer:
        rounding = {"value_scale": value_scale, "cost_scales": {}, "max_value_error": 0.0, "max_budget_loss": {}}
    for key in keys:
        r = comp.resources.index(key)
        s = 1.0 if cost_scales is None else float(cost_scales[key])
        blocks_j, blocks_v = [], []
        for c in range(n_cls):
            blocks_j.append(node_cols[c])
            blocks_v.append(comp.unary[c][r][keep_nodes[c]])
        for e, (_c, _d, mat) in enumerate(comp.pairs):
            blocks_j.append(arc_cols[e])
            blocks_v.append(mat[r][arc_i[e], arc_j[e]])
        vals = np.concatenate(blocks_v) if blocks_v else np.zeros(0)
        cols = np.concatenate(blocks_j) if blocks_j else np.zeros(0, dtype=np.int64)
        rhs = float(budgets[key]) - float(comp.const[r])
        if integer:
            # coefficients rounded up, the budget down; the most a plan's scaled cost can exceed
            # its true (scaled) cost is one coefficient's rounding per block plus the budget's
            worst = sum(float(np.max(np.ceil(b * s - 1e-9) - b * s, initial=0.0)) for b in blocks_v)
            scaled = np.ceil(vals * s - 1e-9)
            rhs_scaled = math.floor(rhs * s + 1e-9)
            worst += rhs * s - rhs_scaled
            rounding["cost_scales"][key] = s
            rounding["max_budget_loss"][key] = max(worst, 0.0) / s
            vals, rhs = scaled, float(rhs_scaled)
        nz = vals != 0
        rows_i.append(np.full(int(nz.sum()), row))
        rows_j.append(cols[nz])
        rows_v.append(vals[nz])
        lo.append([-np.inf])
        hi.append([rhs])
        row += 1
    A = sp.csr_matrix(
        (np.concatenate(rows_v), (np.concatenate(rows_i).astype(np.int64), np.concatenate(rows_j).astype(np.int64))),
        shape=(row, n),
    )
    c_vec = np.zeros(n)
    if objective == "value":
        for cc in range(n_cls):
            v = comp.values[cc][keep_nodes[cc]]
            if integer:
                scaled = np.round(v * value_scale)
                rounding["max_value_error"] += float(np.max(np.abs(scaled - v * value_scale)) / value_scale)
                v = scaled
            c_vec[node_cols[cc]] = v
        sense = Sense.MAXIMIZE
    else:
        for cc in range(n_cls):
            c_vec[node_cols[cc]] = comp.unary[cc][resource][keep_nodes[cc]]
        for e, (_c, _d, mat) in enumerate(comp.pairs):
            c_vec[arc_cols[e]] = mat[resource][arc_i[e], arc_j[e]]
        sense = Sense.MINIMIZE
    integrality = np.zeros(n, dtype=bool)
    integrality[:n_y] = True
    if integer:
        integrality[:] = True
    groups = {"y": np.arange(n_y), "x": np.arange(n_y, n)}
    model = MILP(
        c=c_vec, A=A, row_lower=np.concatenate([np.asarray(v, float) for v in lo]),
        row_upper=np.concatenate([np.asarray(v, float) for v in hi]), col_lower=np.zeros(n), col_upper=np.ones(n),
        integrality=integrality, sense=sense, offset=float(comp.const[resource]) if objective == "cost" else 0.0,
        groups=groups, name=name,
    )
    if objective == "cost":
        return model
    return model, node_cols, rounding


def _integer_scales(comp: _Compiled, budgets: Mapping[str, float], resolution: float) -> tuple[float, dict]:
    """Scale factors making values and costs integers with about ``resolution`` relative precision."""
    vmax = max(float(max(np.max(np.abs(v)) for v in comp.values)), 1e-12)
    value_scale = 10.0 ** math.floor(math.log10(resolution / vmax))
    cost_scales = {}
    for key in budgets:
        r = comp.resources.index(key)
        arrays = [u[r] for u in comp.unary] + [m[r].ravel() for _, _, m in comp.pairs]
        allv = np.concatenate(arrays + [np.array([budgets[key] - comp.const[r]])])
        if np.all(np.abs(allv - np.round(allv)) < 1e-9) and np.max(np.abs(allv)) < 2**52:
            cost_scales[key] = 1.0
        else:
            cmax = max(float(np.max(np.abs(allv))), 1e-12)
            cost_scales[key] = 10.0 ** math.floor(math.log10(resolution / cmax))
    return value_scale, cost_scales


def build_search_milp(
    problem: SearchProblem,
    budgets: Mapping[str, float],
    *,
    reduce: bool = True,
    incumbents: Sequence[Mapping[str, int]] = (),
    integer: bool = False,
    resolution: float = 1e7,
) -> StructureSearchModel:
    """The MILP of the module docstring for absolute ``budgets``.

    ``reduce`` applies the exact Lagrangian reduction (forest class graphs);
    ``incumbents`` are feasible width plans to start it from. ``integer``
    builds an all-integer model with integer coefficients for CP-SAT: values
    scaled by a power of ten to about ``resolution`` and rounded, costs scaled
    and rounded *up* with the budget rounded *down* (so every plan the scaled
    model accepts meets the true budget); ``rounding`` reports the scales and
    the worst-case objective error and budget loss.

    Raises :class:`InfeasibleBudgetError` (with the smallest feasible budget)
    when a budget is below what the allowed widths can reach.
    """
    comp = problem.compiled
    budgets = {str(k): float(v) for k, v in budgets.items()}
    unknown = [k for k in budgets if k not in comp.resources]
    if unknown:
        raise InvalidParameterError(
            f"budget on unknown resource(s) {unknown}; this problem's resources are {list(comp.resources)}"
        )
    check_budgets(problem, budgets)
    reduction = None
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    if reduce:
        reduction = lagrangian_reduction(problem, budgets, incumbents=incumbents)
        keep_nodes, keep_arcs = reduction.keep_nodes, reduction.keep_arcs
    value_scale = cost_scales = None
    if integer:
        value_scale, cost_scales = _integer_scales(comp, budgets, resolution)
    model, node_cols, rounding = _assemble(
        comp, keep_nodes, keep_arcs, budgets, value_scale=value_scale, cost_scales=cost_scales,
        name=f"structure_search_{problem.name}" if problem.name else "structure_search",
    )
    return StructureSearchModel(
        model, problem, MappingProxyType(budgets), tuple(node_cols), tuple(keep_nodes), reduction, rounding,
    )


def check_budgets(problem: SearchProblem, budgets: Mapping[str, float]) -> None:
    """Raise :class:`InfeasibleBudgetError` if some absolute budget is below its smallest achievable use."""
    if not budgets:
        return
    smallest = minimum_resources(problem)
    full = problem.full_resources()
    for key, value in budgets.items():
        need = smallest[key]
        if value < need - 1e-9 * max(1.0, abs(need)):
            raise InfeasibleBudgetError(
                f"budget {key}={value:.6g} is infeasible: the smallest allowed widths need {key}={need:.6g} "
                f"({need / full[key]:.4f} of the unpruned model's {full[key]:.6g}); "
                f"allowed: a budget >= {need:.6g} (relative >= {need / full[key]:.4f})",
                smallest_feasible=need,
            )


# ----------------------------------------------------------------------------- brute force
def brute_force(problem: SearchProblem, budgets: Mapping[str, float], *, max_plans: int = 2_000_000):
    """Enumerate every width combination; return ``(widths, value)`` of the best feasible one or None.

    For tests: the reference optimum on small instances (absolute budgets).
    """
    comp = problem.compiled
    sizes = [g.size for g in comp.grids]
    total = int(np.prod(sizes, dtype=np.float64))
    if total > max_plans:
        raise InvalidParameterError(f"brute force would enumerate {total} plans; allowed at most {max_plans}")
    grids = np.array(list(itertools.product(*[range(s) for s in sizes])), dtype=np.int64).reshape(total, len(sizes))
    value = np.zeros(total)
    for c, v in enumerate(comp.values):
        value += v[grids[:, c]]
    use = np.tile(comp.const, (total, 1))
    for c, u in enumerate(comp.unary):
        use += u[:, grids[:, c]].T
    for c, d, mat in comp.pairs:
        use += mat[:, grids[:, c], grids[:, d]].T
    feasible = np.ones(total, dtype=bool)
    for key, cap in budgets.items():
        r = comp.resources.index(key)
        feasible &= use[:, r] <= cap + 1e-9 * max(1.0, abs(cap))
    if not feasible.any():
        return None
    value = np.where(feasible, value, -np.inf)
    best = int(np.argmax(value))
    return problem.widths_from_index(grids[best]), float(value[best])
