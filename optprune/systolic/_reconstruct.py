r"""Block selection with the layer-output reconstruction error as the objective (issue 24): exact allocation vs greedy.

A block is an ``R x C`` tile of a layer's ``K x N`` weight operand; pruning it
zeroes it. With calibration inputs ``X`` of the layer (``n x K``) and the
dense outputs ``Y = X W + b``, the output column-block ``j`` (``C`` columns of
``N``) depends only on the blocks of its own columns, so the layer's error is a
sum over column-blocks of

.. math:: E_j(S_j) = \min_{W'} \|Y_j - \bar y_j - (X_{S_j} - \bar x_{S_j}) W'\|_F^2 + \lambda \|W'\|_F^2

where ``S_j`` are the input rows of the kept blocks of column-block ``j`` and
the bias is re-fitted with the weights (centred statistics; OSSCAR, Meng et
al., ICML 2024, eq. 3, with the row-blocks as the groups;
:class:`optprune.reconstruction.ReconstructionProblem`).

**Why the re-fit** (``refit=True``, the default): the objective scores what is
installed in the model: after a selection the kept weights of every
column-block are replaced by their least-squares values (and the bias by its
intercept), so the error minimised is the error of the pruned layer, and it
accounts for interactions between kept blocks (redundant inputs compensate each
other). ``refit=False`` keeps the dense weights (only the bias moves to its
least-squares value, FLAP's compensation): ``E_j = tr(D_j^T G D_j)`` with
``D_j`` the pruned weights of ``j`` -- the quadratic form of OBD-style
interaction-aware pruning.

**Curves.** Per column-block, backward elimination over its row-blocks
(:func:`optprune.reconstruction.elimination_path`: OBS removal costs with
rank-``R`` downdates of the inverse Gram) gives nested kept sets and the error
``E_j(k)`` for ``k = 0..kb`` kept row-blocks. Every layer's curves are divided
by its output energy ``T_l = sum_j E_j(0)`` (the same normalisation as
:mod:`optprune.search._allocate`: each curve is the fraction of its layer's
output lost, so layers of different scale compare), and the value of option
``(j, k)`` is ``v_{j,k} = (E_j(0) - E_j(k)) / T_l``.

**Exact allocation** (:func:`select_blocks_reconstruction`): the MILP of
:func:`optprune.formulations.systolic.build_curve_selection` (one option per
column-block, cycles of the kept blocks plus the os / is fixed costs, every
layer running) through the solver protocol, started from the greedy selection;
optimal over the nested sets (the allocation of kept blocks to column-blocks
is exact, which blocks inside a column-block follow the elimination order).

**Greedy** (:func:`greedy_reconstruction`): the HALP-style ratio rule on the
same objective, backwards from the dense model: repeatedly take the removal
(the next block of some column-block's elimination order) with the least value
lost per cycle saved, until the cycles meet the budget; then steps are put back
in increasing ratio while they fit. Its selection lies on the same curves, so
the MILP started from it is never below it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import numpy as np

from optprune.errors import InfeasibleBudgetError, ShapeMismatchError, SolverError
from optprune.systolic._cycles import BlockLayout
from optprune.systolic._select import BlockSelection, _with_gap, budget_cycles, row_blocks

__all__ = ["BlockCurves", "block_curves", "greedy_reconstruction", "refit_operands", "select_blocks_reconstruction"]


@dataclass(frozen=True)
class _Layer:
    """Centred statistics of one layer (padded to whole row-blocks): Gram, cross, means, ridge."""

    gram: np.ndarray      # (kb*R, kb*R), zero rows for padding
    cross: np.ndarray     # (kb*R, N) = Gc W
    x_mean: np.ndarray    # (kb*R,)
    y_mean: np.ndarray    # (N,)
    col_energy: np.ndarray  # (N,) ||Y_c - ȳ_c||^2
    weight: np.ndarray    # (kb*R, N) dense operand, zero padded
    ridge: float


@dataclass(frozen=True)
class BlockCurves:
    """Per output column-block (global id of :func:`~optprune.systolic.row_blocks`): elimination order of its
    row-blocks and error ``errors[j][k]`` with ``k`` row-blocks kept; per layer the output energy ``energy``."""

    layout: BlockLayout
    order: tuple[np.ndarray, ...]
    errors: tuple[np.ndarray, ...]
    energy: np.ndarray
    refit: bool
    layers: tuple[_Layer, ...]
    seconds: float

    @property
    def n_columns(self) -> int:
        return len(self.order)

    def column_layer(self) -> np.ndarray:
        """The layer of every column-block."""
        return np.repeat(np.arange(self.layout.n_layers), [g[1] for g in self.layout.grid])

    def values(self, j: int) -> np.ndarray:
        """``v_{j,k} = (E_j(0) - E_j(k)) / T_l`` for ``k = 0..kb``."""
        e = self.errors[j]
        t = self.energy[self.column_layer()[j]]
        return (e[0] - e) / t if t > 0 else np.zeros_like(e)

    def keep_mask(self, kept: np.ndarray) -> np.ndarray:
        """The block keep-mask of the layout for ``kept[j]`` row-blocks kept in column-block ``j`` (nested sets)."""
        lay = self.layout
        keep = np.zeros(lay.n_blocks, dtype=bool)
        offsets = lay.layer_offsets
        col_layer = self.column_layer()
        col_start = np.concatenate([[0], np.cumsum([g[1] for g in lay.grid])])
        for j, k in enumerate(np.asarray(kept, dtype=np.int64)):
            if k <= 0:
                continue
            lo = int(col_layer[j])
            kb, nb = lay.grid[lo]
            rows = self.order[j][kb - int(k):]
            keep[offsets[lo] + rows * nb + (j - col_start[lo])] = True
        return keep

    def kept_counts(self, keep: np.ndarray) -> np.ndarray:
        """Row-blocks kept per column-block of a block keep-mask."""
        return np.bincount(row_blocks(self.layout)[keep], minlength=self.n_columns)

    def objective(self, kept: np.ndarray) -> tuple[float, float]:
        """``(value, error)``: summed ``v_{j,k}`` and summed normalised errors ``E_j(k_j) / T_l``."""
        col_layer = self.column_layer()
        value = err = 0.0
        for j, k in enumerate(np.asarray(kept, dtype=np.int64)):
            t = self.energy[col_layer[j]]
            if t > 0:
                value += (self.errors[j][0] - self.errors[j][k]) / t
                err += self.errors[j][k] / t
        return float(value), float(err)


def _layer_stats(X: np.ndarray, W: np.ndarray, bias: np.ndarray | None, R: int, ridge: float | str) -> _Layer:
    from optprune.reconstruction._problem import _ridge_value

    X = np.asarray(X, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    K, N = W.shape
    if X.ndim != 2 or X.shape[1] != K:
        raise ShapeMismatchError(f"calibration inputs must be (n, K = {K}); got shape {X.shape}")
    b = np.zeros(N) if bias is None else np.asarray(bias, dtype=np.float64).reshape(N)
    x_mean = X.mean(axis=0)
    Xc = X - x_mean
    Y = X @ W + b
    Yc = Y - Y.mean(axis=0)
    kb = -(-K // R)
    P = kb * R
    G = np.zeros((P, P))
    G[:K, :K] = Xc.T @ Xc
    Wp = np.zeros((P, N))
    Wp[:K] = W
    xm = np.zeros(P)
    xm[:K] = x_mean
    return _Layer(gram=G, cross=G @ Wp, x_mean=xm, y_mean=Y.mean(axis=0), col_energy=np.sum(Yc * Yc, axis=0),
                  weight=Wp, ridge=_ridge_value(ridge, G[:K, :K]) if K else 0.0)


def _problem(st: _Layer, cols: slice, R: int):
    from optprune.reconstruction import ReconstructionProblem

    P = st.gram.shape[0]
    return ReconstructionProblem(st.gram, st.cross[:, cols], float(st.col_energy[cols].sum()),
                                 np.arange(P) // R, st.ridge, st.x_mean, st.y_mean[cols])


def _eliminate_no_refit(st: _Layer, cols: slice, R: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy backward elimination of ``E(D) = tr(D^T G D)`` (dense weights kept): order and ``E(k)`` curve."""
    G, W = st.gram, st.weight[:, cols]
    kb = G.shape[0] // R
    Wb = W.reshape(kb, R, -1)
    ar = np.arange(kb)
    Gd = G.reshape(kb, R, kb, R)[ar, :, ar, :]                    # (kb, R, R) diagonal blocks
    self_term = np.einsum("kam,kab,kbm->k", Wb, Gd, Wb)
    Pm = np.zeros_like(W)                                         # G @ D (D: removed rows of W)
    alive = np.ones(kb, dtype=bool)
    order, errs, E = [], [], 0.0
    for _ in range(kb):
        delta = self_term + 2.0 * np.einsum("kam,kam->k", Wb, Pm.reshape(kb, R, -1))
        delta[~alive] = np.inf
        q = int(np.argmin(delta))
        E += float(delta[q])
        alive[q] = False
        order.append(q)
        errs.append(max(E, 0.0))
        rows = slice(q * R, (q + 1) * R)
        Pm += G[:, rows] @ W[rows]
    curve = np.empty(kb + 1)
    curve[kb] = 0.0
    curve[:kb] = np.asarray(errs[::-1])
    return np.asarray(order, dtype=np.int64), curve


def block_curves(layout: BlockLayout, inputs: list[np.ndarray], weights: list[np.ndarray],
                 biases: list[np.ndarray | None] | None = None, *, refit: bool = True,
                 ridge: float | str = "auto") -> BlockCurves:
    """The error curves of every output column-block of ``layout`` (module docstring).

    ``inputs[l]``: layer ``l``'s calibration inputs ``(n, K)`` (the GEMM's input rows); ``weights[l]``: its
    ``K x N`` operand; ``biases[l]``: its bias (or None). ``ridge``: λ of the re-fit ("auto": 1e-6 of the mean
    diagonal of the Gram).
    """
    if not (len(inputs) == len(weights) == layout.n_layers):
        raise ShapeMismatchError(f"{len(inputs)} input arrays and {len(weights)} weights for {layout.n_layers} layers")
    biases = [None] * layout.n_layers if biases is None else list(biases)
    if len(biases) != layout.n_layers:
        raise ShapeMismatchError(f"{len(biases)} biases for {layout.n_layers} layers")
    from optprune.reconstruction import elimination_path

    started = time.perf_counter()
    R, C = layout.spec.rows, layout.spec.cols
    orders, curves, energy, layers = [], [], np.zeros(layout.n_layers), []
    for lo in range(layout.n_layers):
        _, K, N = (int(v) for v in layout.gemms[lo])
        if np.shape(weights[lo]) != (K, N):
            raise ShapeMismatchError(
                f"layer {layout.names[lo]!r}: weight operand has shape {np.shape(weights[lo])}, its GEMM is {K} x {N}")
        st = _layer_stats(inputs[lo], weights[lo], biases[lo], R, ridge)
        layers.append(st)
        energy[lo] = float(st.col_energy.sum())
        kb, nb = layout.grid[lo]
        for jc in range(nb):
            cols = slice(jc * C, min((jc + 1) * C, N))
            if refit:
                path = elimination_path(_problem(st, cols, R))
                orders.append(path.order)
                curves.append(path.errors)
            else:
                order, curve = _eliminate_no_refit(st, cols, R)
                orders.append(order)
                curves.append(curve)
    return BlockCurves(layout=layout, order=tuple(orders), errors=tuple(curves), energy=energy, refit=refit,
                       layers=tuple(layers), seconds=time.perf_counter() - started)


# ----------------------------------------------------------------------------------------------------- options


def _options(curves: BlockCurves):
    """Every option ``(j, k)``: value, cycles (blocks + os fixed), column, layer, keeps a block, is row-block pairs."""
    lay = curves.layout
    col_layer = curves.column_layer()
    col_start = np.concatenate([[0], np.cumsum([g[1] for g in lay.grid])])
    offsets = lay.layer_offsets
    vals, costs, choice, layer, keeps, ks, pairs = [], [], [], [], [], [], []
    base = 0
    for j in range(curves.n_columns):
        lo = int(col_layer[j])
        kb, nb = lay.grid[lo]
        blocks = offsets[lo] + curves.order[j][::-1] * nb + (j - col_start[lo])   # kept first: reverse removal order
        c = np.concatenate([[0], np.cumsum(lay.cost[blocks])])
        if lay.spec.dataflow == "os":
            c[1:] += lay.group_fixed[lay.group[blocks[0]]]
        vals.append(curves.values(j))
        costs.append(c)
        choice.append(np.full(kb + 1, j))
        layer.append(np.full(kb + 1, lo))
        keeps.append(np.arange(kb + 1) > 0)
        ks.append(np.arange(kb + 1))
        if lay.spec.dataflow == "is":
            g = lay.group[blocks]                     # row-block group of the t-th kept block
            opt = np.repeat(np.arange(1, kb + 1), np.arange(1, kb + 1))        # option k uses the first k groups
            idx = np.concatenate([np.arange(k) for k in range(1, kb + 1)]) if kb else np.zeros(0, dtype=np.int64)
            pairs.append(np.stack([base + opt, g[idx]], axis=1))
        base += kb + 1
    og = np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)
    return (np.concatenate(vals), np.concatenate(costs), np.concatenate(choice), np.concatenate(layer),
            np.concatenate(keeps), np.concatenate(ks), og)


def _selection(curves: BlockCurves, kept: np.ndarray, budget: int, method: str, **kw) -> BlockSelection:
    keep = curves.keep_mask(kept)
    value, err = curves.objective(kept)
    extra = {"objective": "reconstruction", "refit": curves.refit, "error": err, **kw.pop("extra", {})}
    return BlockSelection(keep=keep, cycles=curves.layout.cycles(keep), budget=budget, score=value, method=method,
                          extra=extra, **kw)


def greedy_reconstruction(curves: BlockCurves, cycle_budget: float) -> BlockSelection:
    """The ratio greedy on the curves (module docstring); every layer keeps at least one block."""
    started = time.perf_counter()
    lay = curves.layout
    budget = budget_cycles(lay, cycle_budget)
    J = curves.n_columns
    col_layer = curves.column_layer()
    col_start = np.concatenate([[0], np.cumsum([g[1] for g in lay.grid])])
    offsets = lay.layer_offsets
    kbs = np.array([lay.grid[int(col_layer[j])][0] for j in range(J)], dtype=np.int64)
    kmax = int(kbs.max()) if J else 0
    # per column: block id of the t-th kept block (t = 0..kb-1, kept first), value curve v(k), padded to kmax
    blk = np.full((J, kmax), -1, dtype=np.int64)
    val = np.full((J, kmax + 1), np.nan)
    for j in range(J):
        lo = int(col_layer[j])
        kb, nb = lay.grid[lo]
        blk[j, :kb] = offsets[lo] + curves.order[j][::-1] * nb + (j - col_start[lo])
        val[j, :kb + 1] = curves.values(j)
    is_df, os_df = lay.spec.dataflow == "is", lay.spec.dataflow == "os"
    gcount = np.zeros(lay.group_fixed.size, dtype=np.int64)   # is: kept blocks per row-block group
    if is_df:
        np.add.at(gcount, lay.group, 1)
    k = kbs.copy()
    layer_cols = np.bincount(col_layer, weights=(k > 0).astype(float), minlength=lay.n_layers)
    cycles = int(lay.dense_cycles().sum())

    def saved(js: np.ndarray, kk: np.ndarray) -> np.ndarray:
        """Cycles saved by dropping block ``kk - 1`` of columns ``js`` (at ``kk`` kept)."""
        b = blk[js, kk - 1]
        s = lay.cost[b].astype(np.float64)
        if os_df:
            s = s + np.where(kk == 1, lay.group_fixed[lay.group[b]], 0)
        if is_df:
            g = lay.group[b]
            s = s + np.where(gcount[g] == 1, lay.group_fixed[g], 0)
        return s

    removed: list[int] = []
    while cycles > budget:
        js = np.flatnonzero(k > 0)
        last_col = (k[js] == 1) & (layer_cols[col_layer[js]] <= 1)   # the layer's last kept block stays
        js = js[~last_col]
        if js.size == 0:
            raise InfeasibleBudgetError(
                f"greedy: one block per layer already takes {cycles} cycles, above the budget {budget}",
                smallest_feasible=cycles / max(1, int(lay.dense_cycles().sum())))
        kk = k[js]
        loss = val[js, kk] - val[js, kk - 1]
        ratio = loss / np.maximum(saved(js, kk), 1e-12)
        i = int(np.lexsort((js, ratio))[0])
        j = int(js[i])
        cycles -= int(saved(np.array([j]), np.array([k[j]]))[0])
        if is_df:
            gcount[lay.group[blk[j, k[j] - 1]]] -= 1
        k[j] -= 1
        if k[j] == 0:
            layer_cols[col_layer[j]] -= 1
        removed.append(j)
    # put back steps in increasing ratio while they fit (the knapsack greedy's completion)
    while True:
        js = np.flatnonzero(k < kbs)
        if js.size == 0:
            break
        kk = k[js] + 1
        gain = val[js, kk] - val[js, kk - 1]
        b = blk[js, kk - 1]
        add = lay.cost[b].astype(np.float64)
        if os_df:
            add = add + np.where(kk == 1, lay.group_fixed[lay.group[b]], 0)
        if is_df:
            add = add + np.where(gcount[lay.group[b]] == 0, lay.group_fixed[lay.group[b]], 0)
        fits = cycles + add <= budget
        if not fits.any():
            break
        ratio = np.where(fits, gain / np.maximum(add, 1e-12), -np.inf)
        i = int(np.argmax(ratio))
        j = int(js[i])
        if is_df:
            gcount[lay.group[b[i]]] += 1
        if k[j] == 0:
            layer_cols[col_layer[j]] += 1
        k[j] += 1
        cycles += int(add[i])
    sel = _selection(curves, k, budget, "greedy", time_s=time.perf_counter() - started)
    if sel.cycles != cycles or sel.cycles > budget:
        raise SolverError(f"greedy reconstruction: tracked {cycles} cycles, the layout counts {sel.cycles}")
    return sel


def select_blocks_reconstruction(curves: BlockCurves, cycle_budget: float, *, solver: str = "highs",
                                 time_limit: float | None = None, mip_gap: float | None = None) -> BlockSelection:
    """The exact allocation over the curves (module docstring), started from greedy, never below it.

    The result's ``score`` is the summed value ``sum v_{j,k}``, ``bound`` the MILP's proven bound on it,
    ``extra["gap"]`` ``(bound - score) / |score|`` and ``extra["error"]`` the summed normalised error.
    """
    from optprune.formulations.systolic import build_curve_selection
    from optprune.solvers import solve

    lay = curves.layout
    budget = budget_cycles(lay, cycle_budget)
    try:
        greedy = greedy_reconstruction(curves, cycle_budget)
    except InfeasibleBudgetError:
        greedy = None
    vals, costs, choice, layer, keeps, ks, og = _options(curves)
    fixed = lay.group_fixed if lay.spec.dataflow == "is" else np.zeros(0, dtype=np.int64)
    model = build_curve_selection(vals, costs, choice, layer, keeps, budget, option_groups=og, group_fixed=fixed)
    start = None
    if greedy is not None:
        gk = curves.kept_counts(greedy.keep)
        chosen = ks == gk[choice]
        start = model.start_from(chosen, og)
    result = solve(model.model, solver, time_limit=time_limit, mip_gap=mip_gap, start=start)
    if result.status.value == "infeasible":
        raise InfeasibleBudgetError(f"no block selection meets a cycle budget of {cycle_budget} ({budget} cycles) "
                                    "with every layer keeping a block")
    bound = float(result.bound) if math.isfinite(result.bound) else math.nan
    if not result.status.has_solution:
        if greedy is None:
            raise SolverError(f"{solver} found no block selection: status {result.status.value} ({result.message})")
        return _with_gap(replace(greedy, method=f"greedy (mip:{solver} found none)", status=result.status.value,
                                 bound=bound, time_s=float(result.time_s)))
    chosen = model.chosen(result.x)
    kept = np.zeros(curves.n_columns, dtype=np.int64)
    kept[choice[chosen]] = ks[chosen]
    found = _selection(curves, kept, budget, f"mip:{solver}", status=result.status.value, bound=bound,
                       time_s=float(result.time_s))
    if found.cycles > budget:
        raise SolverError(f"{solver} returned a selection of {found.cycles} cycles above the budget {budget}")
    if greedy is not None and greedy.score > found.score:
        found = replace(greedy, method=f"greedy (mip:{solver} incumbent worse)", status=result.status.value,
                        bound=bound, time_s=float(result.time_s))
    return _with_gap(found)


def refit_operands(curves: BlockCurves, keep) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer ``(W', b')``: the ``K x N`` operand with pruned blocks zero and kept weights re-fitted (or, with
    ``refit=False``, the dense ones), and the least-squares bias."""
    lay = curves.layout
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    if keep.size != lay.n_blocks:
        raise ShapeMismatchError(f"keep has {keep.size} entries; the layout has {lay.n_blocks} blocks")
    R, C = lay.spec.rows, lay.spec.cols
    offsets = lay.layer_offsets
    out = []
    for lo, st in enumerate(curves.layers):
        _, K, N = (int(v) for v in lay.gemms[lo])
        kb, nb = lay.grid[lo]
        grid = keep[offsets[lo]:offsets[lo + 1]].reshape(kb, nb)
        W = np.zeros((kb * R, N))
        b = np.zeros(N)
        for jc in range(nb):
            cols = slice(jc * C, min((jc + 1) * C, N))
            problem = _problem(st, cols, R)
            mask = grid[:, jc]
            units = np.repeat(mask, R)
            if curves.refit:
                Wk = problem.refit(mask)
            else:
                Wk = st.weight[units, cols]
            W[units, cols] = Wk
            b[cols] = problem.refit_bias(mask, Wk)
        out.append((W[:K], b))
    return out

