"""Systolic-array co-design problems as solver-neutral MILPs: block selection under a cycle budget, multi-array assignment.

Both take plain arrays (costs from :mod:`optprune.systolic`'s cycle model) and
return one :class:`~optprune.milp.MILP` built with :class:`ModelBuilder`; no
solver is called here.

**Block selection** (co-design of systolic arrays and structured pruning,
Palacios et al.; a knapsack with per-fold costs). Binary ``x_b`` keeps weight
block ``b`` (score ``s_b``, cycle cost ``c_b``); binary ``z_g`` opens group
``g`` (the os column-block / is row-block that pays ``f_g`` once)::

    max   sum_b s_b x_b
    s.t.  sum_b c_b x_b + sum_g f_g z_g <= budget + n_layers   (each layer's "-1")
          x_b - z_g(b) <= 0                                      (block kept => group paid)
          sum_{b in layer l} x_b >= max(1, k_l)                  (every layer runs; minimum keep)
          sum_{b in row-block r} x_b >= 1          [optional]    (each output block-row keeps a block)
          x_b = x_{first(r)}  for b in row-block r [optional]    (whole block-rows: neuron pruning)

Every layer keeps a block, so the cycle model's ``-1`` per layer is a
constant moved into the budget, and the cycles of a feasible ``x`` are
exactly ``<= budget``.

**Curve selection** (block selection with a non-additive objective, e.g. the
layer-output reconstruction error of the kept blocks with a least-squares
re-fit, :mod:`optprune.systolic._reconstruct`). The blocks of one output
column-block ``j`` are kept along a nested order, so its choices are options
``o`` (keep the first ``k`` of the order) with value ``v_o``, cycles ``c_o``
(its blocks, plus the os column-block's fixed cost when ``k >= 1``) and the
is row-blocks ``g`` it uses (fixed cost ``f_g`` paid once). Binary ``y_o``,
``z_g``::

    max   sum_o v_o y_o
    s.t.  sum_{o in j} y_o = 1                                   (one option per column-block)
          sum_o c_o y_o + sum_g f_g z_g <= budget + n_layers
          sum_{o in j, o uses g} y_o - z_g <= 0                  (for every (j, g) pair: row-block paid)
          sum_{o in layer l, o keeps a block} y_o >= 1           (every layer runs)

It is exact over the options given (the allocation of kept blocks to
column-blocks is optimal; which blocks within a column-block is fixed by the
order, as in the width allocation of :mod:`optprune.search._allocate`).

**Multi-array assignment** (unrelated parallel machines with layer barriers):
tile ``t`` of layer ``l(t)`` takes ``d_{t,a}`` cycles on array ``a``; a layer
starts when the previous one has finished on every array (layer order as
precedence), so the makespan is ``sum_l max_a load_{l,a}``::

    min   sum_l T_l
    s.t.  sum_a y_{t,a} = 1                                  (each tile on one array)
          sum_{t in l} d_{t,a} y_{t,a} - T_l <= 0            (for every layer l, array a)
          y binary, T_l integer >= 0                         (integral durations: CP-SAT accepts it)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations._builder import ModelBuilder
from optprune.milp import MILP

__all__ = ["AssignmentModel", "CurveSelectionModel", "SelectionModel", "build_assignment", "build_block_selection",
           "build_curve_selection"]


@dataclass(frozen=True)
class SelectionModel:
    """The block-selection MILP and where its columns are: ``keep`` (one per block) and ``open`` (one per group)."""

    model: MILP
    keep: np.ndarray
    open: np.ndarray
    budget: int

    def kept(self, x: np.ndarray) -> np.ndarray:
        """The kept blocks (bool per block) of a solution ``x``."""
        return np.asarray(x)[self.keep] > 0.5

    def start_from(self, keep: np.ndarray, group) -> np.ndarray:
        """A full column vector (a MIP start) for the kept blocks ``keep``: a group is open when it keeps a block.

        ``group``: the group of every block (-1 for none), as given to :func:`build_block_selection`.
        """
        keep = np.asarray(keep, dtype=bool).reshape(-1)
        if keep.size != self.keep.size:
            raise ShapeMismatchError(f"start_from: keep has {keep.size} entries; the model has {self.keep.size} blocks")
        x = np.zeros(self.model.n_vars)
        x[self.keep] = keep
        if self.open.size:
            grp = np.asarray(group, dtype=np.int64).reshape(-1)
            opened = np.zeros(self.open.size, dtype=bool)
            opened[grp[keep & (grp >= 0)]] = True
            x[self.open] = opened
        return x


@dataclass(frozen=True)
class AssignmentModel:
    """The assignment MILP; ``assign`` is the ``(tiles, arrays)`` grid of columns, ``span`` one per layer."""

    model: MILP
    assign: np.ndarray
    span: np.ndarray

    def arrays(self, x: np.ndarray) -> np.ndarray:
        """The array index of every tile in a solution ``x``."""
        return np.argmax(np.asarray(x)[self.assign], axis=1)


def _int_array(name: str, values, n: int | None = None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (n is not None and arr.size != n):
        raise ShapeMismatchError(f"{name} must be a 1-D array{f' of length {n}' if n is not None else ''}; got shape {arr.shape}")
    return arr.astype(np.int64)


def _difference_rows(b: ModelBuilder, plus: np.ndarray, minus: np.ndarray, lower: float) -> None:
    """One row ``lower <= plus[i] - minus[i] <= 0`` per pair of columns (none for empty arrays)."""
    m = len(plus)
    if m:
        rows = np.tile(np.arange(m), 2)
        vals = np.concatenate([np.ones(m), -np.ones(m)])
        b.add_coo_rows(rows, np.concatenate([plus, minus]), vals, np.full(m, lower), np.zeros(m))


def build_block_selection(
    scores,
    cost,
    layer,
    budget: int,
    *,
    group=None,
    group_fixed=None,
    min_keep=None,
    row_block=None,
    keep_each_row: bool = False,
    whole_rows: bool = False,
) -> SelectionModel:
    """The block-selection MILP (module docstring).

    ``scores``, ``cost``, ``layer``: one entry per block. ``group`` (-1 for
    none) and ``group_fixed``: the fixed costs. ``min_keep``: blocks each layer
    keeps at least (one per layer). ``row_block``: the output block-row of each
    block (a global id), used by ``keep_each_row`` and ``whole_rows``.
    ``budget``: the cycle budget (an integer).
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    B = s.size
    c = _int_array("cost", cost, B)
    lay = _int_array("layer", layer, B)
    if not np.all(np.isfinite(s)):
        raise InvalidParameterError("block scores must be finite")
    n_layers = int(lay.max()) + 1 if B else 0
    b = ModelBuilder()
    x = b.add_vars(B, 0.0, 1.0, integer=True, name="keep")
    grp = np.full(B, -1, dtype=np.int64) if group is None else _int_array("group", group, B)
    fixed = np.zeros(0, dtype=np.int64) if group_fixed is None else _int_array("group_fixed", group_fixed)
    z = b.add_vars(fixed.size, 0.0, 1.0, integer=True, name="open")
    cols = np.concatenate([x, z])
    # the budget row
    b.add_rows(sp.csr_matrix(np.concatenate([c, fixed]).astype(float)[None, :]), cols, upper=float(budget) + n_layers)
    # x_b - z_g <= 0
    linked = np.flatnonzero(grp >= 0)
    _difference_rows(b, x[linked], z[grp[linked]], -np.inf)
    # every layer keeps max(1, k_l) blocks
    k = np.ones(n_layers) if min_keep is None else np.maximum(1, _int_array("min_keep", min_keep, n_layers))
    b.add_coo_rows(lay, x, np.ones(B), k, np.full(n_layers, np.inf))
    if keep_each_row or whole_rows:
        if row_block is None:
            raise InvalidParameterError("keep_each_row / whole_rows need row_block (the output block-row of each block)")
        rb = _int_array("row_block", row_block, B)
        _, rid = np.unique(rb, return_inverse=True)
        n_rows = int(rid.max()) + 1 if B else 0
        if keep_each_row:
            b.add_coo_rows(rid, x, np.ones(B), np.ones(n_rows), np.full(n_rows, np.inf))
        if whole_rows:
            first = np.full(n_rows, B, dtype=np.int64)
            np.minimum.at(first, rid, np.arange(B))  # smallest block index of each row
            others = np.flatnonzero(first[rid] != np.arange(B))
            _difference_rows(b, x[others], x[first[rid[others]]], 0.0)
    b.set_objective(s, x, sense="max")
    return SelectionModel(model=b.build(name="systolic_block_selection"), keep=np.asarray(x), open=np.asarray(z),
                          budget=int(budget))


@dataclass(frozen=True)
class CurveSelectionModel:
    """The curve-selection MILP; ``choose`` (one column per option) and ``open`` (one per row-block group)."""

    model: MILP
    choose: np.ndarray
    open: np.ndarray
    budget: int

    def chosen(self, x: np.ndarray) -> np.ndarray:
        """The chosen options (bool per option) of a solution ``x``."""
        return np.asarray(x)[self.choose] > 0.5

    def start_from(self, chosen, option_groups) -> np.ndarray:
        """A full column vector (a MIP start) for the options ``chosen``; a group is open when a chosen option uses it.

        ``option_groups``: ``(option, group)`` pairs as given to :func:`build_curve_selection`.
        """
        chosen = np.asarray(chosen, dtype=bool).reshape(-1)
        if chosen.size != self.choose.size:
            raise ShapeMismatchError(f"start_from: {chosen.size} options given; the model has {self.choose.size}")
        x = np.zeros(self.model.n_vars)
        x[self.choose] = chosen
        if self.open.size:
            og = np.asarray(option_groups, dtype=np.int64).reshape(-1, 2)
            opened = np.zeros(self.open.size, dtype=bool)
            opened[og[chosen[og[:, 0]], 1]] = True
            x[self.open] = opened
        return x


def build_curve_selection(
    values,
    cost,
    choice,
    layer,
    keeps_block,
    budget: int,
    *,
    option_groups=None,
    group_fixed=None,
) -> CurveSelectionModel:
    """The curve-selection MILP (module docstring).

    One entry per option: ``values`` (to maximise), ``cost`` (integer cycles),
    ``choice`` (its column-block, ids ``0..J-1``), ``layer`` (ids
    ``0..L-1``), ``keeps_block`` (whether it keeps at least one block).
    ``option_groups``: ``(option, group)`` pairs (the row-blocks an option
    uses), ``group_fixed``: the fixed cost of every group. ``budget``: cycles.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    n_opt = v.size
    if not np.all(np.isfinite(v)):
        raise InvalidParameterError("option values must be finite")
    c = _int_array("cost", cost, n_opt)
    ch = _int_array("choice", choice, n_opt)
    lay = _int_array("layer", layer, n_opt)
    keeps = np.asarray(keeps_block, dtype=bool).reshape(-1)
    if keeps.size != n_opt:
        raise ShapeMismatchError(f"keeps_block must have one entry per option ({n_opt}); got {keeps.size}")
    fixed = np.zeros(0, dtype=np.int64) if group_fixed is None else _int_array("group_fixed", group_fixed)
    og = np.zeros((0, 2), dtype=np.int64) if option_groups is None else np.asarray(option_groups, dtype=np.int64)
    if og.ndim != 2 or og.shape[1] != 2:
        raise ShapeMismatchError(f"option_groups must be (pairs, 2) of (option, group); got shape {og.shape}")
    if og.size and (og[:, 0].min() < 0 or og[:, 0].max() >= n_opt or og[:, 1].min() < 0 or og[:, 1].max() >= fixed.size):
        raise InvalidParameterError("option_groups: option or group index out of range")
    n_choices = int(ch.max()) + 1 if n_opt else 0
    n_layers = int(lay.max()) + 1 if n_opt else 0
    b = ModelBuilder()
    y = b.add_vars(n_opt, 0.0, 1.0, integer=True, name="choose")
    z = b.add_vars(fixed.size, 0.0, 1.0, integer=True, name="open")
    # one option per column-block
    b.add_coo_rows(ch, y, np.ones(n_opt), np.ones(n_choices), np.ones(n_choices))
    # the budget row (each running layer's "-1" moved into it)
    b.add_rows(sp.csr_matrix(np.concatenate([c, fixed]).astype(float)[None, :]), np.concatenate([y, z]),
               upper=float(budget) + n_layers)
    # sum_{o in j uses g} y_o - z_g <= 0, one row per (column-block, group) pair
    if og.size:
        pair = ch[og[:, 0]] * max(fixed.size, 1) + og[:, 1]
        uniq, rid = np.unique(pair, return_inverse=True)
        n_rows = uniq.size
        rows = np.concatenate([rid, np.arange(n_rows)])
        cols = np.concatenate([y[og[:, 0]], z[uniq % max(fixed.size, 1)]])
        vals = np.concatenate([np.ones(og.shape[0]), -np.ones(n_rows)])
        b.add_coo_rows(rows, cols, vals, np.full(n_rows, -np.inf), np.zeros(n_rows))
    # every layer keeps a block
    kept = np.flatnonzero(keeps)
    b.add_coo_rows(lay[kept], y[kept], np.ones(kept.size), np.ones(n_layers), np.full(n_layers, np.inf))
    b.set_objective(v, y, sense="max")
    return CurveSelectionModel(model=b.build(name="systolic_curve_selection"), choose=np.asarray(y),
                               open=np.asarray(z), budget=int(budget))


def build_assignment(durations, tile_layer) -> AssignmentModel:
    """The multi-array assignment MILP (module docstring); ``durations``: ``(tiles, arrays)`` integer cycles."""
    d = np.asarray(durations)
    if d.ndim != 2 or d.shape[1] < 1:
        raise ShapeMismatchError(f"durations must be a (tiles, arrays) array; got shape {d.shape}")
    if d.size and (d.min() < 0 or not np.all(np.equal(np.mod(d, 1), 0))):
        raise InvalidParameterError("durations must be integers >= 0 (cycles)")
    d = d.astype(np.int64)
    T, A = d.shape
    tl = _int_array("tile_layer", tile_layer, T)
    n_layers = int(tl.max()) + 1 if T else 0
    b = ModelBuilder()
    y = b.add_vars(T * A, 0.0, 1.0, integer=True, name="assign").reshape(T, A)
    horizon = np.zeros(n_layers)
    np.add.at(horizon, tl, d.max(axis=1))
    span = b.add_vars(n_layers, 0.0, horizon, integer=True, name="span")
    # each tile on exactly one array
    b.add_coo_rows(np.repeat(np.arange(T), A), y.reshape(-1), np.ones(T * A), np.ones(T), np.ones(T))
    # load of (layer, array) <= T_l ; row id = layer * A + array
    rid = (tl[:, None] * A + np.arange(A)[None, :]).reshape(-1)
    rows = np.concatenate([rid, np.arange(n_layers * A)])
    cols = np.concatenate([y.reshape(-1), np.repeat(span, A)])
    vals = np.concatenate([d.reshape(-1).astype(float), -np.ones(n_layers * A)])
    b.add_coo_rows(rows, cols, vals, np.full(n_layers * A, -np.inf), np.zeros(n_layers * A))
    b.set_objective(np.ones(n_layers), span, sense="min")
    return AssignmentModel(model=b.build(name="systolic_assignment"), assign=np.asarray(y), span=np.asarray(span))
