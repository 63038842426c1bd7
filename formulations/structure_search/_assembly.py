"""The MILP of the structure search from a compiled problem, through the public :class:`ModelBuilder`.

Variables ``y`` (one binary per surviving width of each decision class) and
``x`` (one per surviving pair of widths of two joined classes); rows: one width
per class, the marginal rows, one budget row per budgeted resource (see the
package docstring for the formulation and why it is exact).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from optprune.formulations._builder import ModelBuilder
from optprune.formulations.structure_search._problem import CompiledProblem, SearchProblem
from optprune.formulations.structure_search._reduction import ReductionResult
from optprune.milp import MILP, Sense

__all__ = ["Assembly", "StructureSearchModel", "assemble", "cost_milp", "integer_scales"]


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


@dataclass(frozen=True, eq=False)
class Assembly:
    """What :func:`assemble` returns: the MILP, the column of every surviving node per class, the rounding report."""

    model: MILP
    node_columns: tuple[np.ndarray, ...]
    rounding: dict | None


def assemble(
    comp: CompiledProblem,
    keep_nodes: Sequence[np.ndarray],
    keep_arcs: Sequence[np.ndarray],
    budgets: Mapping[str, float],
    *,
    objective: str = "value",
    resource: int = 0,
    value_scale: float | None = None,
    cost_scales: Mapping[str, float] | None = None,
    name: str = "structure_search",
) -> Assembly:
    """The MILP over the surviving nodes/arcs, built with :class:`ModelBuilder` (whole arrays, one CSR).

    ``objective="value"`` maximises the retained score under ``budgets``;
    ``"cost"`` minimises resource ``resource`` (row ``resource`` of the compiled
    costs) without budgets. ``value_scale`` / ``cost_scales`` make an all-integer
    model (see :func:`build_search_milp`).
    """
    integer = value_scale is not None
    b = ModelBuilder()
    node_cols = [b.add_columns(np.zeros(keep.size), 1.0, integer=True) for keep in keep_nodes]
    n_y = b.n_cols
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
        arc_cols.append(b.add_columns(np.zeros(ii.size), 1.0, integer=integer))
    # one width per class: sum_i y_{c,i} = 1
    for cols in node_cols:
        b.add_coo_rows(np.zeros(cols.size, dtype=np.int64), cols, np.ones(cols.size), 1.0, 1.0)
    # marginals: sum_j x_{cd,ij} - y_{c,i} = 0 and sum_i x_{cd,ij} - y_{d,j} = 0
    for e, (c, d, _) in enumerate(comp.pairs):
        for cls, arc_idx in ((c, arc_i[e]), (d, arc_j[e])):
            k = keep_nodes[cls].size
            rows = np.concatenate([pos[cls][arc_idx], np.arange(k)])
            cols = np.concatenate([arc_cols[e], node_cols[cls]])
            vals = np.concatenate([np.ones(arc_idx.size), -np.ones(k)])
            b.add_coo_rows(rows, cols, vals, np.zeros(k), np.zeros(k))
    # budgets
    rounding = None
    if integer:
        rounding = {"value_scale": value_scale, "cost_scales": {}, "max_value_error": 0.0, "max_budget_loss": {}}
    for key in budgets:
        r = comp.resources.index(key)
        s = 1.0 if cost_scales is None else float(cost_scales[key])
        blocks_j = [node_cols[c] for c in range(len(comp.grids))] + arc_cols
        blocks_v = [comp.unary[c][r][keep_nodes[c]] for c in range(len(comp.grids))]
        blocks_v += [mat[r][arc_i[e], arc_j[e]] for e, (_c, _d, mat) in enumerate(comp.pairs)]
        vals = np.concatenate(blocks_v) if blocks_v else np.zeros(0)
        cols = np.concatenate(blocks_j) if blocks_j else np.zeros(0, dtype=np.int64)
        rhs = float(budgets[key]) - float(comp.const[r])
        if rounding is not None:
            # coefficients rounded up, the budget down; the most a plan's scaled cost can exceed
            # its true (scaled) cost is one coefficient's rounding per block plus the budget's
            worst = sum(float(np.max(np.ceil(v * s - 1e-9) - v * s, initial=0.0)) for v in blocks_v)
            scaled = np.ceil(vals * s - 1e-9)
            rhs_scaled = math.floor(rhs * s + 1e-9)
            worst += rhs * s - rhs_scaled
            rounding["cost_scales"][key] = s
            rounding["max_budget_loss"][key] = max(worst, 0.0) / s
            vals, rhs = scaled, float(rhs_scaled)
        nz = vals != 0
        b.add_coo_rows(np.zeros(int(nz.sum()), dtype=np.int64), cols[nz], vals[nz], -np.inf, rhs)
    c_vec = np.zeros(b.n_cols)
    if objective == "value":
        for cc, cols in enumerate(node_cols):
            v = comp.values[cc][keep_nodes[cc]]
            if rounding is not None and value_scale is not None:
                scaled = np.round(v * value_scale)
                rounding["max_value_error"] += float(np.max(np.abs(scaled - v * value_scale)) / value_scale)
                v = scaled
            c_vec[cols] = v
        sense, offset = Sense.MAXIMIZE, 0.0
    else:
        for cc, cols in enumerate(node_cols):
            c_vec[cols] = comp.unary[cc][resource][keep_nodes[cc]]
        for e, (_c, _d, mat) in enumerate(comp.pairs):
            c_vec[arc_cols[e]] = mat[resource][arc_i[e], arc_j[e]]
        sense, offset = Sense.MINIMIZE, float(comp.const[resource])
    groups = {"y": np.arange(n_y), "x": np.arange(n_y, b.n_cols)}
    model = b.build(c_vec, sense, offset, groups, name)
    return Assembly(model, tuple(np.asarray(cols) for cols in node_cols), rounding)


def cost_milp(comp: CompiledProblem, r: int) -> MILP:
    """min R_r over the allowed widths (no budgets), same variables as :func:`build_search_milp`."""
    keep_nodes = [np.arange(g.size) for g in comp.grids]
    keep_arcs = [np.ones(m.shape[1:], dtype=bool) for _, _, m in comp.pairs]
    return assemble(comp, keep_nodes, keep_arcs, {}, objective="cost", resource=r).model


def integer_scales(comp: CompiledProblem, budgets: Mapping[str, float], resolution: float) -> tuple[float, dict]:
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
