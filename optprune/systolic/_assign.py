"""Assigning layer tiles to several systolic arrays to minimise the makespan: exact MIP / CP-SAT and the LPT baseline.

Each layer's GEMM ``M x K x N`` is cut into column tiles of ``N`` (``tile``
outputs each; by default the widest array's column count, so a tile fills one
column fold of it); tile ``t`` takes ``d_{t,a}`` = :func:`compute_cycles` of
``M x K x n_t`` on array ``a``. Layers run in order (layer ``l+1`` needs all
of layer ``l``'s outputs), so the makespan is ``sum_l max_a load_{l,a}``; the
MIP is :func:`optprune.formulations.systolic.build_assignment`. LPT list
scheduling (Graham 1969), per layer: tiles by decreasing fastest duration,
each on the array where it would finish first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optprune.errors import InvalidParameterError, SolverError
from optprune.systolic._cycles import MAX_BLOCKS, MAX_DIM, ArraySpec, _as_gemms, compute_cycles

__all__ = ["Assignment", "assign_tiles", "lpt_assign", "makespan", "tile_durations"]


@dataclass(frozen=True)
class Assignment:
    """Array index of each tile, the makespan, a proven lower bound, and how it was found."""

    array: np.ndarray
    makespan: int
    bound: float
    method: str
    status: str = "feasible"
    time_s: float = 0.0

    def to_dict(self) -> dict:
        return {"method": self.method, "status": self.status, "makespan": self.makespan,
                "bound": None if not math.isfinite(self.bound) else self.bound, "time_s": round(self.time_s, 4)}


def tile_durations(gemms, arrays: list[ArraySpec], tile: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(durations (tiles, arrays), layer of each tile, tile widths)`` for GEMMs ``[M, K, N]``."""
    if not arrays:
        raise InvalidParameterError("at least one array is needed to assign tiles")
    g = _as_gemms(gemms)
    width = int(tile) if tile is not None else max(a.cols for a in arrays)
    if not 1 <= width <= MAX_DIM:
        raise InvalidParameterError(f"tile width must be an integer in [1, {MAX_DIM}]; got {tile!r}")
    ntiles = -(-g[:, 2] // width)
    total = sum(int(n) for n in ntiles.tolist())
    if total > MAX_BLOCKS:
        raise InvalidParameterError(
            f"tile_durations: {total} tiles of {width} columns; at most MAX_BLOCKS = {MAX_BLOCKS} are built "
            "(choose a wider tile)"
        )
    layer = np.repeat(np.arange(g.shape[0]), ntiles)
    start = np.concatenate([[0], np.cumsum(ntiles)])[:-1]
    local = np.arange(layer.size) - start[layer]
    widths = np.minimum(width, g[layer, 2] - local * width)
    shapes = np.stack([g[layer, 0], g[layer, 1], widths], axis=1)
    d = np.stack([compute_cycles(shapes, a) for a in arrays], axis=1)
    return d, layer, widths


def makespan(durations, layer, array) -> int:
    """``sum_l max_a load_{l,a}`` of an assignment."""
    d = np.asarray(durations)
    T, A = d.shape
    loads = np.zeros((int(np.max(layer)) + 1, A))
    np.add.at(loads, (np.asarray(layer), np.asarray(array)), d[np.arange(T), np.asarray(array)])
    return int(loads.max(axis=1).sum())


def lpt_assign(durations, layer) -> Assignment:
    """LPT list scheduling per layer (module docstring)."""
    d = np.asarray(durations, dtype=np.int64)
    layer = np.asarray(layer)
    array = np.zeros(d.shape[0], dtype=np.int64)
    for lay in np.unique(layer):
        tiles = np.flatnonzero(layer == lay)
        load = np.zeros(d.shape[1], dtype=np.int64)
        for t in tiles[np.argsort(-d[tiles].min(axis=1), kind="stable")]:
            a = int(np.argmin(load + d[t]))
            array[t] = a
            load[a] += d[t, a]
    return Assignment(array=array, makespan=makespan(d, layer, array), bound=math.nan, method="lpt")


def assign_tiles(durations, layer, solver: str = "highs", time_limit: float | None = None) -> Assignment:
    """The exact assignment: the MIP of :mod:`optprune.formulations.systolic` solved by ``solver`` (``cpsat`` too)."""
    from optprune.formulations.systolic import build_assignment
    from optprune.solvers import solve

    built = build_assignment(durations, layer)
    result = solve(built.model, solver, time_limit=time_limit)
    if not result.status.has_solution:
        raise SolverError(f"{solver} found no assignment: status {result.status.value} ({result.message})")
    array = built.arrays(result.x)
    return Assignment(array=array, makespan=makespan(durations, layer, array), bound=float(result.bound),
                      method=f"mip:{solver}", status=result.status.value, time_s=float(result.time_s))
