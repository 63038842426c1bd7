"""Choosing which weight blocks to keep under a cycle budget: the exact MIP on any backend, and the greedy baseline.

:func:`select_blocks` builds :func:`optprune.formulations.systolic.build_block_selection`
for a :class:`~optprune.systolic.BlockLayout` and solves it with
:func:`optprune.solvers.solve`; :func:`greedy_blocks` is the HALP-style
baseline (Shen et al., "Structural pruning via latency-saliency knapsack",
NeurIPS 2022): blocks in decreasing score per cycle, each taken while the
budget allows; :func:`unstructured_at_cycles` is per-weight magnitude pruning
made as sparse as it must be for its all-zero blocks to meet the same budget.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from optprune.errors import InfeasibleBudgetError, InvalidParameterError, ShapeMismatchError, SolverError
from optprune.systolic._cycles import BlockLayout

__all__ = ["BlockSelection", "budget_cycles", "greedy_blocks", "guarded_solve", "row_blocks", "select_blocks",
           "unstructured_at_cycles"]


@dataclass(frozen=True)
class BlockSelection:
    """Kept blocks (bool per block of ``layout``), their cycles and score, and how they were found."""

    keep: np.ndarray
    cycles: int
    budget: int
    score: float
    method: str
    status: str = "feasible"
    bound: float = math.nan
    time_s: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "method": self.method, "status": self.status, "cycles": self.cycles, "budget": self.budget,
            "score": self.score, "bound": None if not math.isfinite(self.bound) else self.bound,
            "blocks_kept": int(self.keep.sum()), "blocks": int(self.keep.size), "time_s": round(self.time_s, 4),
            **self.extra,
        }


def budget_cycles(layout: BlockLayout, cycle_budget: float) -> int:
    """``floor(cycle_budget x dense cycles)``; ``cycle_budget`` must lie in (0, 1]."""
    if isinstance(cycle_budget, bool) or not isinstance(cycle_budget, (int, float, np.floating, np.integer)) \
            or not math.isfinite(float(cycle_budget)) or not 0.0 < float(cycle_budget) <= 1.0:
        raise InvalidParameterError(
            f"cycle budget must be a fraction of the dense cycles in (0, 1]; got {cycle_budget!r}"
        )
    return int(math.floor(float(cycle_budget) * int(layout.dense_cycles().sum()) + 1e-9))


def row_blocks(layout: BlockLayout) -> np.ndarray:
    """The output block-row (layer, column-block of ``N``) of every block, as one global id."""
    nb = np.array([g[1] for g in layout.grid], dtype=np.int64)
    start = np.concatenate([[0], np.cumsum(nb)])[:-1]
    return start[layout.layer] + layout.ncol


def _min_keep(layout: BlockLayout, min_keep_ratio: float) -> np.ndarray:
    if not 0.0 <= min_keep_ratio <= 1.0:
        raise InvalidParameterError(f"min_keep_ratio must be in [0, 1]; got {min_keep_ratio!r}")
    counts = np.bincount(layout.layer, minlength=layout.n_layers)
    return np.maximum(1, np.ceil(min_keep_ratio * counts - 1e-9)).astype(np.int64)


def _check_scores(layout: BlockLayout, scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size != layout.n_blocks:
        raise ShapeMismatchError(f"{s.size} block scores for {layout.n_blocks} blocks")
    if not np.all(np.isfinite(s)):
        raise InvalidParameterError("block scores must be finite (no NaN or inf)")
    return s


def select_blocks(
    layout: BlockLayout,
    scores,
    cycle_budget: float,
    *,
    solver: str = "highs",
    min_keep_ratio: float = 0.0,
    keep_each_row: bool = False,
    whole_rows: bool = False,
    time_limit: float | None = None,
    mip_gap: float | None = None,
    warm_start: bool = True,
) -> BlockSelection:
    """The exact block selection: the MIP of :mod:`optprune.formulations.systolic` solved by ``solver``.

    With ``warm_start`` (the default) the MIP starts from the greedy selection
    (:func:`greedy_blocks`, passed as the protocol's MIP start), so at a time
    limit the answer is the incumbent, never worse than greedy, with its proven
    bound and ``gap`` (``(bound - score) / |score|``) in the result; a backend
    that returns no incumbent at the limit gets greedy's selection back, marked
    ``method = "greedy (mip:<solver> found none)"``. The LP relaxation's bound
    is computed first: when greedy is within ``mip_gap`` of it, greedy's
    selection is returned with that bound and no MIP is solved; it also stands
    in for the MIP's bound when the solver reports none. ``time_limit`` is a
    wall-clock deadline for the whole call (greedy, the LP bound and the MIP):
    with a greedy start the MIP of a large model (``GUARD_MIN_COLUMNS``) runs
    under :func:`guarded_solve`, and a solver
    still running at the deadline is stopped and greedy's selection returned
    with the LP bound and its gap (``status = "time_limit"``). Raises
    :class:`~optprune.errors.InfeasibleBudgetError` when no selection meets the
    budget (with the structure constraints asked for).
    """
    from optprune.formulations.systolic import build_block_selection
    from optprune.solvers import solve

    deadline = None if time_limit is None else time.monotonic() + float(time_limit)
    s = _check_scores(layout, scores)
    budget = budget_cycles(layout, cycle_budget)
    sel = build_block_selection(
        s, layout.cost, layout.layer, budget, group=layout.group, group_fixed=layout.group_fixed,
        min_keep=_min_keep(layout, min_keep_ratio), row_block=row_blocks(layout),
        keep_each_row=keep_each_row, whole_rows=whole_rows,
    )
    greedy = None
    if warm_start and not keep_each_row:  # greedy knows every constraint but keep_each_row
        try:
            greedy = greedy_blocks(layout, s, cycle_budget, min_keep_ratio=min_keep_ratio, whole_rows=whole_rows)
        except InfeasibleBudgetError:
            greedy = None
    start = None if greedy is None else sel.start_from(greedy.keep, layout.group)
    relaxed_bound = math.nan
    if greedy is not None:
        # The LP relaxation's bound (seconds even at 80,000 blocks): when greedy is already within mip_gap of it,
        # greedy's selection is proven good enough and the MIP is not needed.
        lp = solve(sel.model.replace(integrality=None), "highs", time_limit=_remaining(deadline))
        if lp.status.value == "optimal":
            relaxed_bound = float(lp.objective)
            if min_keep_ratio == 0 and not whole_rows:  # the LP's integral part, completed greedily
                rounded = _lp_rounding(layout, s, np.asarray(lp.x)[sel.keep], budget)
                if rounded is not None and rounded.score > greedy.score + 1e-12 * max(abs(greedy.score), 1.0):
                    greedy = rounded
                    start = sel.start_from(greedy.keep, layout.group)
            if relaxed_bound - greedy.score <= (mip_gap or 0.0) * max(abs(greedy.score), 1e-12):
                return _with_gap(replace(greedy, method=f"{greedy.method} (within mip_gap of the LP bound)",
                                         status="optimal" if relaxed_bound - greedy.score <= 1e-9 else "feasible",
                                         bound=relaxed_bound, time_s=float(lp.time_s)))
    if deadline is not None and greedy is not None and sel.model.n_vars >= GUARD_MIN_COLUMNS:
        result = guarded_solve(sel.model, solver, deadline, mip_gap=mip_gap, start=start)
    else:
        result = solve(sel.model, solver, time_limit=_remaining(deadline), mip_gap=mip_gap, start=start)
    if result is None:  # the solver passed the deadline and was stopped: greedy with the LP relaxation's bound
        assert greedy is not None
        return _with_gap(replace(greedy, method=f"{greedy.method} (mip:{solver} stopped at the time limit)",
                                 status="time_limit", bound=relaxed_bound,
                                 time_s=float(time_limit or 0.0)))
    if result.status.value == "infeasible":
        smallest = _smallest_fraction(layout)
        raise InfeasibleBudgetError(
            f"no block selection meets a cycle budget of {cycle_budget} ({budget} of "
            f"{int(layout.dense_cycles().sum())} cycles) with every layer keeping a block"
            f"{', each block-row keeping one' if keep_each_row else ''}"
            f"{', whole block-rows' if whole_rows else ''}"
            f"{f', at least {min_keep_ratio:g} of each layer' if min_keep_ratio > 0 else ''}; "
            f"one block per layer alone needs a budget of at least {smallest:.4g}",
            smallest_feasible=smallest,
        )
    bound = float(result.bound) if math.isfinite(result.bound) else relaxed_bound
    if not result.status.has_solution:
        if greedy is None:
            raise SolverError(f"{solver} found no block selection: status {result.status.value} ({result.message})")
        return _with_gap(replace(greedy, method=f"{greedy.method} (mip:{solver} found none)",
                                 status=result.status.value, bound=bound, time_s=float(result.time_s)))
    keep = sel.kept(result.x)
    cycles = layout.cycles(keep)
    if cycles > budget:  # the model's answer must meet the budget exactly; tolerance slips are errors
        raise SolverError(f"{solver} returned a selection of {cycles} cycles above the budget {budget}")
    found = BlockSelection(keep=keep, cycles=cycles, budget=budget, score=float(s[keep].sum()), method=f"mip:{solver}",
                           status=result.status.value, bound=bound, time_s=float(result.time_s))
    if greedy is not None and greedy.score > found.score:  # a backend that ignored the start: never below greedy
        found = replace(greedy, method=f"{greedy.method} (mip:{solver} incumbent worse)", status=result.status.value,
                        bound=bound, time_s=float(result.time_s))
    return _with_gap(found)


#: models with at least this many columns are solved under :func:`guarded_solve` when a time limit is given
#: (starting the child costs about a second; smaller models finish well within their limits)
GUARD_MIN_COLUMNS = 10_000


def _remaining(deadline: float | None) -> float | None:
    """Seconds left before ``deadline`` (``time.monotonic`` clock), at least 1 ms; None without a deadline."""
    return None if deadline is None else max(deadline - time.monotonic(), 1e-3)


def _model_fields(model) -> dict:
    """The MILP's fields as picklable values (its ``groups`` mapping is read-only, a type pickle refuses)."""
    from dataclasses import fields

    out = {f.name: getattr(model, f.name) for f in fields(model)}
    out["groups"] = dict(out["groups"])
    return out


def _child_main(task_path: str, result_path: str) -> None:  # pragma: no cover - runs in the child process
    """Entry of :func:`guarded_solve`'s child: read ``(model fields, solver, options)``, solve, write the answer."""
    import pickle

    from optprune.milp import MILP
    from optprune.solvers import solve

    with open(task_path, "rb") as f:
        model_fields, solver, kwargs = pickle.load(f)
    try:
        answer = ("ok", solve(MILP(**model_fields), solver, **kwargs))
    except Exception as exc:  # sent back and re-raised in the parent
        answer = ("error", exc)
    with open(result_path + ".part", "wb") as f:
        pickle.dump(answer, f)
    os.replace(result_path + ".part", result_path)


def guarded_solve(model, solver: str, deadline: float, **kwargs):
    """``solve(model, solver, time_limit=<seconds left>, **kwargs)`` that returns by ``deadline`` whatever the solver
    does: the solve runs in a child Python process, killed at the deadline (then None is returned).

    Why: a solver's own time limit is checked only in some of its phases. HiGHS 1.16, given the 82,944-block
    ViT-Base os selection with a MIP start and ``mip_gap=0``, ran 314 s under a 50 s limit. The solver is also given
    the time left (less a margin), so it normally stops itself and returns its incumbent and bound. The child is a
    fresh interpreter (``sys.executable -c``), never a fork of this process (a fork after HiGHS has started its
    worker threads can deadlock) and never a re-import of the caller's script (as multiprocessing's spawn does).
    The backend is looked up by name in the child, so it must be one registered on import; a backend registered at
    run time is solved in this process, without the guard.
    """
    import pickle
    import subprocess
    import sys
    import tempfile

    from optprune.solvers import get_backend, solve

    left = deadline - time.monotonic()
    kwargs = {**kwargs, "time_limit": max(left - max(1.0, 0.05 * left), 1e-3)}  # stops itself before the kill
    if not type(get_backend(solver)).__module__.startswith("optprune.solvers."):
        return solve(model, solver, **kwargs)
    with tempfile.TemporaryDirectory(prefix="optprune-guard-") as tmp:
        task, answer = os.path.join(tmp, "task.pkl"), os.path.join(tmp, "answer.pkl")
        with open(task, "wb") as f:
            pickle.dump((_model_fields(model), solver, kwargs), f)
        code = f"from optprune.systolic._select import _child_main; _child_main({task!r}, {answer!r})"
        child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        try:
            # answer by the deadline: stop waiting a little before it (killing and reaping the child takes time)
            _, err = child.communicate(timeout=max(deadline - min(1.0, 0.02 * max(left, 0.0)) - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            return None
        if not os.path.exists(answer):
            raise SolverError(f"{solver} stopped with exit code {child.returncode} before the time limit: "
                              f"{err.decode(errors='replace').strip()[-300:]}")
        with open(answer, "rb") as f:
            kind, value = pickle.load(f)
    if kind == "error":
        raise value
    return value


def _lp_rounding(layout: BlockLayout, s: np.ndarray, x: np.ndarray, budget: int) -> BlockSelection | None:
    """The blocks the LP relaxation keeps whole (``x_b = 1``), completed in decreasing score per cycle while they
    fit (a block's marginal cycles include its group's fixed cost when the group is not yet open); None when that
    misses a layer or the budget. A second start for the MIP beside greedy (on knapsacks the LP optimum has few
    fractional blocks, so its rounding is close to the bound)."""
    keep = np.asarray(x) >= 1.0 - 1e-6
    if np.bincount(layout.layer[keep], minlength=layout.n_layers).min() == 0:
        return None
    cycles = layout.cycles(keep)
    if cycles > budget:
        return None
    has_group = layout.group_fixed.size > 0
    opened = np.zeros(layout.group_fixed.size, dtype=bool)
    if has_group:
        opened[layout.group[keep]] = True
    fixed = layout.group_fixed[np.maximum(layout.group, 0)] if has_group else np.zeros(layout.n_blocks, np.int64)
    cand = np.flatnonzero(~keep & (layout.cost <= budget - cycles))
    cand = cand[np.argsort(-s[cand] / np.maximum(layout.cost[cand], 1), kind="stable")]
    for b in cand:
        extra = int(layout.cost[b]) + (int(fixed[b]) if has_group and not opened[layout.group[b]] else 0)
        if cycles + extra <= budget:
            keep[b] = True
            cycles += extra
            if has_group:
                opened[layout.group[b]] = True
    if layout.cycles(keep) > budget:  # the tracked count must agree with the cycle model
        return None
    return BlockSelection(keep=keep, cycles=layout.cycles(keep), budget=budget, score=float(s[keep].sum()),
                          method="lp-rounding")


def _with_gap(sel: BlockSelection) -> BlockSelection:
    """``sel`` with ``gap = (bound - score) / max(|score|, 1e-12)`` in its extras (the bound is the solver's)."""
    gap = (sel.bound - sel.score) / max(abs(sel.score), 1e-12) if math.isfinite(sel.bound) else math.nan
    return replace(sel, extra={**sel.extra, "gap": None if not math.isfinite(gap) else max(gap, 0.0)})


def _smallest_fraction(layout: BlockLayout) -> float:
    """Cycles of the cheapest one-block-per-layer selection, as a fraction of the dense cycles (a lower bound)."""
    fixed = np.where(layout.group >= 0, layout.group_fixed[np.maximum(layout.group, 0)] if layout.group_fixed.size
                     else 0, 0)
    each = layout.cost + fixed
    cheapest = np.full(layout.n_layers, np.inf)
    np.minimum.at(cheapest, layout.layer, each)
    return float((cheapest - 1).sum() / max(1, int(layout.dense_cycles().sum())))


def greedy_blocks(
    layout: BlockLayout,
    scores,
    cycle_budget: float,
    *,
    min_keep_ratio: float = 0.0,
    whole_rows: bool = False,
) -> BlockSelection:
    """HALP-style greedy: units by score per cycle (a group's fixed cost shared among its blocks), taken while they fit.

    First each layer's best-ratio unit (every layer must run) and the units
    needed for ``min_keep_ratio``; then the rest in decreasing ratio, each kept
    when its marginal cycles (its blocks plus the fixed cost of groups not yet
    opened) fit the budget. A unit is a block, or a whole output block-row with
    ``whole_rows``. Sequential by nature; a few thousand units take milliseconds.
    """
    s = _check_scores(layout, scores)
    budget = budget_cycles(layout, cycle_budget)
    B = layout.n_blocks
    unit = row_blocks(layout) if whole_rows else np.arange(B)
    _, unit = np.unique(unit, return_inverse=True)
    n_units = int(unit.max()) + 1
    order_blocks = np.argsort(unit, kind="stable")
    bounds = np.searchsorted(unit[order_blocks], np.arange(n_units + 1))
    members = [order_blocks[bounds[u]:bounds[u + 1]] for u in range(n_units)]
    has_group = layout.group_fixed.size > 0
    gsize = (np.bincount(layout.group[layout.group >= 0], minlength=layout.group_fixed.size) if has_group
             else np.zeros(0, dtype=np.int64))
    share = (layout.group_fixed[np.maximum(layout.group, 0)] / np.maximum(gsize[np.maximum(layout.group, 0)], 1)
             if has_group else np.zeros(B))
    ucost = np.bincount(unit, weights=layout.cost + share, minlength=n_units)
    uscore = np.bincount(unit, weights=s, minlength=n_units)
    ulayer = np.zeros(n_units, dtype=np.int64)
    ulayer[unit] = layout.layer
    ratio = uscore / np.maximum(ucost, 1e-12)
    order = np.lexsort((np.arange(n_units), -ratio))
    keep = np.zeros(B, dtype=bool)
    opened = np.zeros(layout.group_fixed.size, dtype=bool)
    used = float(layout.n_layers and -layout.n_layers)  # each running layer's "-1"
    need = _min_keep(layout, min_keep_ratio)
    have = np.zeros(layout.n_layers, dtype=np.int64)

    def marginal(u: int) -> float:
        blocks = members[u]
        extra = float(layout.cost[blocks].sum())
        if has_group:
            gs = np.unique(layout.group[blocks])
            extra += float(layout.group_fixed[gs[~opened[gs]]].sum())
        return extra

    def take(u: int, extra: float) -> None:
        nonlocal used
        blocks = members[u]
        keep[blocks] = True
        if has_group:
            opened[layout.group[blocks]] = True
        have[ulayer[u]] += blocks.size
        used += extra

    # mandatory units: per layer in ratio order until its minimum keep is met
    for u in order:
        if have[ulayer[u]] < need[ulayer[u]]:
            take(int(u), marginal(int(u)))
    if used > budget:
        raise InfeasibleBudgetError(
            f"greedy: the blocks every layer must keep already take {int(used)} cycles, above the budget "
            f"{budget} ({cycle_budget} of {int(layout.dense_cycles().sum())})",
            smallest_feasible=_smallest_fraction(layout),
        )
    for u in order:
        if keep[members[u][0]]:
            continue
        extra = marginal(int(u))
        if used + extra <= budget:
            take(int(u), extra)
    cycles = layout.cycles(keep)
    return BlockSelection(keep=keep, cycles=cycles, budget=budget, score=float(s[keep].sum()), method="greedy")


def unstructured_at_cycles(layout: BlockLayout, weights: list[np.ndarray], cycle_budget: float
                           ) -> tuple[list[np.ndarray], BlockSelection]:
    """Global per-weight magnitude masks (``K x N`` per layer) with the most weights whose zero blocks meet the budget.

    Bisection on the number of kept weights: a block runs if any of its weights
    is kept. Returns the masks and the blocks that run.
    """
    budget = budget_cycles(layout, cycle_budget)
    flat = np.concatenate([np.abs(np.asarray(w, dtype=np.float64)).reshape(-1) for w in weights])
    order = np.argsort(-flat, kind="stable")
    sizes = [int(np.size(w)) for w in weights]
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    def masks_for(k: int) -> list[np.ndarray]:
        m = np.zeros(flat.size, dtype=bool)
        m[order[:k]] = True
        return [m[offsets[i]:offsets[i + 1]].reshape(np.shape(w)) for i, w in enumerate(weights)]

    def fits(k: int) -> bool:
        masks = masks_for(k)
        keep = layout.keep_from_weights(masks)
        return layout.cycles(keep) <= budget and np.bincount(layout.layer[keep], minlength=layout.n_layers).min() > 0

    lo, hi = 0, flat.size  # fits(lo) may be False (a layer empty); find the largest k that fits
    if fits(hi):
        lo = hi
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
    masks = masks_for(lo)
    keep = layout.keep_from_weights(masks)
    return masks, BlockSelection(keep=keep, cycles=layout.cycles(keep), budget=budget, score=math.nan,
                                 method="unstructured", extra={"weights_kept": int(lo),
                                                               "weights": int(flat.size)})
