r"""Heuristic solvers of the reconstruction problem: greedy backward elimination, its whole path, swap local search.

All of them keep, for the current kept set ``S`` (blocks stored contiguously), the inverse
``H = (G_SS + λI)^{-1}`` and the re-fit ``W' = H C_S``, and move by low-rank updates (Optimal Brain Surgeon,
Hassibi & Stork 1993; the swap search of OSSCAR, Meng et al., ICML 2024, section 4):

* *removing* block ``I`` raises the objective by :math:`\Delta^-_I = \operatorname{tr}(W_I'^\top H_{II}^{-1} W'_I)`
  and downdates :math:`H \leftarrow H_{-I,-I} - H_{-I,I} H_{II}^{-1} H_{I,-I}`,
  :math:`W' \leftarrow W'_{-I} - H_{-I,I} H_{II}^{-1} W'_I`;
* *adding* block ``J`` with :math:`g = G_{SJ}`, :math:`u = H g`, Schur complement
  :math:`s_J = G_{JJ} + λI - g^\top u` and residual :math:`R_J = C_J - g^\top W'` lowers it by
  :math:`\Delta^+_J = \operatorname{tr}(R_J^\top s_J^{-1} R_J)` (bordered update of ``H``);
* a *swap* (``I`` out, ``J`` in) is the two at once. With :math:`U = H G_{S,T}` over the dropped blocks ``T``,
  the state after removing ``I`` gives :math:`s_{IJ} = s_J + U_{IJ}^\top H_{II}^{-1} U_{IJ}` and
  :math:`r_{IJ} = R_J + U_{IJ}^\top H_{II}^{-1} W'_I`, so every pair is scored at once:
  :math:`E_{IJ} = E + \Delta^-_I - \operatorname{tr}(s_{IJ}^{-1} r_{IJ} r_{IJ}^\top)`
  (``r r^T`` expanded in ``R R^T``, ``W'_I R_J^T`` and ``W'_I W_I'^T``, so nothing of size pairs x m is formed).

Blocks must all have the same number of units (heads of one layer, channels of one convolution). The state is
recomputed from a Cholesky factor every ``refresh`` moves against drift; every reported objective is
:meth:`ReconstructionProblem.error` of the returned set, recomputed exactly. The greedy elimination downdates ``H``
and ``W'`` in place at their size (BLAS ``ger`` for one-unit blocks: ``O(n^2 + nm)`` per removal, no copies) and
compacts them once half the blocks are gone; the local search starts from its final state.

Every result may carry a certified lower bound (``bound``, :data:`BOUNDS`): ``full`` runs
:func:`optprune.reconstruction._bound.lower_bound` (monotone, spectral, perspective relaxation), ``cheap`` only the
monotone and spectral bounds, taken from the inverse the elimination starts from (one ``eigvalsh``).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.linalg.blas import dger as _ger

from optprune.errors import InvalidParameterError, SolverNotAvailableError
from optprune.reconstruction._problem import ReconstructionProblem, ReconstructionResult
from optprune.registry import Registry

__all__ = [
    "BOUNDS",
    "METHODS",
    "RECONSTRUCTION_METHODS",
    "EliminationPath",
    "elimination_path",
    "greedy_backward",
    "local_search",
    "solve_reconstruction",
]

#: the methods :func:`solve_reconstruction` dispatches to
METHODS = ("local", "greedy", "exact", "auto")
#: lower bounds a heuristic result may carry: ``full`` (monotone, spectral and the perspective relaxation's
#: projected-gradient certificate, :func:`optprune.reconstruction._bound.lower_bound`), ``cheap`` (monotone and
#: spectral only, from the inverse the greedy elimination starts from: one ``eigvalsh``), ``none``
BOUNDS = ("full", "cheap", "none")
#: ``method="auto"`` uses the exact method up to this many blocks (when it is installed), local search above
AUTO_EXACT_BLOCKS = 16
_REFRESH = 50
_CHUNK_ENTRIES = 1 << 21


def _search_ridge(problem: ReconstructionProblem) -> float:
    """The ridge the updates run with: λ, or a 1e-12 relative one when λ = 0 (objectives are recomputed exactly)."""
    if problem.ridge > 0:
        return problem.ridge
    scale = float(np.trace(problem.gram)) / max(problem.n_units, 1)
    return 1e-12 * scale if scale > 0 else 1e-300


def _block_units(problem: ReconstructionProblem) -> np.ndarray:
    bu = problem.block_units()
    if bu is None:
        counts = np.bincount(problem.block_ids)
        raise InvalidParameterError(
            f"reconstruction search: every block must have the same number of units; got sizes "
            f"{sorted(set(counts.tolist()))[:6]}"
        )
    return bu


def _check_k(problem: ReconstructionProblem, k_blocks: int) -> int:
    k = int(k_blocks)
    if k != k_blocks or not 0 <= k <= problem.n_blocks:
        raise InvalidParameterError(
            f"k_blocks must be an integer in 0..{problem.n_blocks} (the number of blocks); got {k_blocks!r}"
        )
    return k


class _Active:
    """``H = (G_SS + λI)^{-1}`` and ``W' = H C_S`` for the active blocks, stored block after block."""

    def __init__(self, problem: ReconstructionProblem, bu: np.ndarray, blocks: Sequence[int]) -> None:
        self.P, self.bu, self.b = problem, bu, bu.shape[1]
        self.lam = _search_ridge(problem)
        self.blocks = [int(i) for i in blocks]
        self.refresh()

    def units(self) -> np.ndarray:
        return self.bu[self.blocks].reshape(-1)

    def refresh(self) -> None:
        idx = self.units()
        n = idx.size
        if n == 0:
            self.H = np.zeros((0, 0))
            self.Wp = np.zeros((0, self.P.n_outputs))
            return
        A = self.P.gram[np.ix_(idx, idx)]
        lam = self.lam
        for _ in range(8):
            try:
                factor = linalg.cho_factor(A + lam * np.eye(n), lower=True, check_finite=False)
                break
            except linalg.LinAlgError:
                lam = max(lam * 100.0, 1e-12 * (abs(np.trace(A)) / n + 1e-300))
        else:
            raise InvalidParameterError(
                f"reconstruction search: G_SS + λI is not positive definite even with λ = {lam:g}; pass a larger ridge"
            )
        self.lam = lam
        self.H = linalg.cho_solve(factor, np.eye(n), check_finite=False)
        self.H = 0.5 * (self.H + self.H.T)
        self.Wp = self.H @ self.P.cross[idx]

    def objective(self) -> float:
        if not self.blocks:
            return self.P.total
        return float(self.P.total - np.sum(self.P.cross[self.units()] * self.Wp))

    def diag_inverses(self) -> np.ndarray:
        """``H_II^{-1}`` for every active block, (k, b, b)."""
        k, b = len(self.blocks), self.b
        ar = np.arange(k)
        Hd = self.H.reshape(k, b, k, b)[ar, :, ar, :]
        return np.linalg.inv(Hd)

    def removal_costs(self) -> np.ndarray:
        """``Δ^-_I = tr(W_I'^T H_II^{-1} W'_I)`` for every active block."""
        k, b = len(self.blocks), self.b
        if b == 1:
            return np.sum(self.Wp * self.Wp, axis=1) / np.diag(self.H)
        Wb = self.Wp.reshape(k, b, -1)
        return np.einsum("kac,kcm,kam->k", self.diag_inverses(), Wb, Wb)

    def remove(self, pos: int) -> None:
        """Downdate: drop the block at position ``pos`` of :attr:`blocks`."""
        b = self.b
        rows = np.arange(pos * b, (pos + 1) * b)
        keep = np.ones(self.H.shape[0], dtype=bool)
        keep[rows] = False
        rest = np.flatnonzero(keep)
        H_rB = self.H[np.ix_(rest, rows)]
        F = np.linalg.solve(self.H[np.ix_(rows, rows)], np.hstack([H_rB.T, self.Wp[rows]]))
        self.H = self.H[np.ix_(rest, rest)] - H_rB @ F[:, : rest.size]
        self.H = 0.5 * (self.H + self.H.T)
        self.Wp = self.Wp[rest] - H_rB @ F[:, rest.size :]
        del self.blocks[pos]

    def add(self, block: int) -> None:
        """Bordered update: append ``block``."""
        P, lam = self.P, self.lam
        new = self.bu[block]
        idx = self.units()
        g = P.gram[np.ix_(idx, new)]
        u = self.H @ g
        s = P.gram[np.ix_(new, new)] + lam * np.eye(new.size) - g.T @ u
        s_inv = np.linalg.inv(0.5 * (s + s.T))
        w_new = s_inv @ (P.cross[new] - g.T @ self.Wp)
        us = u @ s_inv
        self.H = np.block([[self.H + us @ u.T, -us], [-us.T, s_inv]])
        self.Wp = np.vstack([self.Wp - u @ w_new, w_new])
        self.blocks.append(int(block))

    def best_swap(self, first: bool = False) -> tuple[float, int, int]:
        """``(E after, position of I in blocks, J)`` of the best swap (``first``: of the first removal block, in
        order of increasing removal cost, that has an improving swap)."""
        P, b, lam = self.P, self.b, self.lam
        k = len(self.blocks)
        dropped = np.ones(self.bu.shape[0], dtype=bool)
        dropped[self.blocks] = False
        out = np.flatnonzero(dropped)
        p, m = out.size, P.n_outputs
        E = self.objective()
        idx_S, idx_T = self.units(), self.bu[out].reshape(-1)
        G_ST = P.gram[np.ix_(idx_S, idx_T)]
        U = self.H @ G_ST                                   # (kb, pb)
        R = P.cross[idx_T] - G_ST.T @ self.Wp               # (pb, m)
        Gt = P.gram[self.bu[out][:, :, None], self.bu[out][:, None, :]]  # (p, b, b)
        s_T = Gt + lam * np.eye(b) - np.einsum("kpa,kpc->pac", G_ST.reshape(k * b, p, b), U.reshape(k * b, p, b))
        R3 = R.reshape(p, b, m)
        RR = R3 @ R3.transpose(0, 2, 1)                     # (p, b, b)
        Hinv = self.diag_inverses()                         # (k, b, b)
        Wb = self.Wp.reshape(k, b, m)
        WW = Wb @ Wb.transpose(0, 2, 1)                     # (k, b, b)
        cost = np.einsum("kac,kca->k", Hinv, WW)
        U4 = U.reshape(k, b, p, b)
        order = np.argsort(cost, kind="stable") if first else np.arange(k)
        step = 1 if first else max(1, _CHUNK_ENTRIES // max(p * b * max(b, m // 8 + 1), 1))
        best = (np.inf, -1, -1)
        for start in range(0, k, step):
            ch = order[start : start + step]
            A = np.einsum("kab,kbpc->kpac", Hinv[ch], U4[ch])            # H_II^{-1} U_IJ   (c, p, bI, bJ)
            S_f = s_T[None] + np.einsum("kbpa,kpbc->kpac", U4[ch], A)      # s_J + U^T H^{-1} U
            Pm = (Wb[ch].reshape(-1, m) @ R.T).reshape(ch.size, b, p, b).transpose(0, 2, 1, 3)  # W_I R_J^T
            AtP = np.einsum("kpba,kpbc->kpac", A, Pm)
            M = RR[None] + AtP + AtP.transpose(0, 1, 3, 2) + np.einsum("kpba,kbc,kpcd->kpad", A, WW[ch], A)
            if b == 1:
                gain = M[..., 0, 0] / S_f[..., 0, 0]
            else:
                gain = np.trace(np.linalg.solve(S_f, M), axis1=2, axis2=3)
            newE = E + cost[ch][:, None] - gain
            i, j = np.unravel_index(int(np.argmin(newE)), newE.shape)
            if newE[i, j] < best[0]:
                best = (float(newE[i, j]), int(ch[i]), int(out[j]))
            if first and best[0] < E - _tolerance(P):
                break
        return best


def _tolerance(problem: ReconstructionProblem) -> float:
    """Smallest improvement a move must bring (relative 1e-10 of ||Y||^2): no cycling on rounding."""
    return 1e-10 * max(problem.total, 1e-300)


def _bound_kind(bound: bool | str) -> str:
    """``bound`` as one of :data:`BOUNDS` (True is ``full``, False ``none``)."""
    if bound is True:
        return "full"
    if bound is False or bound is None:
        return "none"
    if bound not in BOUNDS:
        raise InvalidParameterError(f"reconstruction: bound must be one of {', '.join(BOUNDS)} (or True/False); "
                                    f"got {bound!r}")
    return str(bound)


def _result(problem: ReconstructionProblem, blocks: Sequence[int], status: str, started: float, method: str,
            bound: bool | str, k_blocks: int, info: dict | None = None,
            path: _Elimination | None = None) -> ReconstructionResult:
    keep_blocks = np.zeros(problem.n_blocks, dtype=bool)
    keep_blocks[list(blocks)] = True
    keep = keep_blocks[problem.block_ids]
    weights = problem.refit(keep)
    objective = problem.error(keep)
    kind = _bound_kind(bound)
    if kind == "full":
        lb = _lower_bound(problem, k_blocks)
    elif kind == "cheap":
        from optprune.reconstruction._bound import cheap_lower_bound

        exact = path is not None and path.exact_ridge
        lb = cheap_lower_bound(problem, k_blocks, full_error=path.full if exact else None,  # type: ignore[union-attr]
                               explained=path.explained if exact else None)  # type: ignore[union-attr]
    else:
        lb = None
    return ReconstructionResult(keep, weights, objective, lb, status, time.perf_counter() - started, method,
                                problem.refit_bias(keep, weights), dict(info or {}))


def _lower_bound(problem: ReconstructionProblem, k_blocks: int) -> float | None:
    """The relaxation's bound from :mod:`optprune.reconstruction._bound` when that module exists, else None."""
    try:  # an optional module (issue 24), looked up by name like every optional method
        lower_bound = importlib.import_module("optprune.reconstruction._bound").lower_bound
    except ModuleNotFoundError as exc:
        if exc.name != "optprune.reconstruction._bound":
            raise
        return None
    value = lower_bound(problem, k_blocks)
    value = getattr(value, "lower_bound", getattr(value, "value", value))
    return None if value is None else float(value)


@dataclass
class _Elimination:
    """What one greedy pass gives: removal ``order``, ``errors`` (E after each removal; empty unless asked),
    ``first_costs`` (every block's removal cost from the full set: the one-step OBS heuristic), ``full`` (E with
    every block kept) and ``state`` (the kept blocks' inverse and re-fit, recomputed exactly); ``explained``: the
    eigenvalues of ``C^T (G + λI)^{-1} C`` when asked (the spectral bound), ``exact_ridge``: the updates ran with
    the problem's own ridge (so ``full`` and ``explained`` are the problem's, not a regularised one's)."""

    order: list[int]
    errors: list[float]
    first_costs: np.ndarray
    full: float
    state: _Active
    exact_ridge: bool = False
    explained: np.ndarray | None = None


def _eliminate(problem: ReconstructionProblem, stop_at: int, refresh: int = _REFRESH, *,
               track: bool = False, spectrum: bool = False) -> _Elimination:
    """Greedy backward elimination down to ``stop_at`` blocks, O(n^2 + nm) per removed block of one unit.

    ``H`` and ``W'`` stay at their size while blocks are removed: the removed block's rows and columns are zeroed
    (the downdate already makes them zero in exact arithmetic) and masked out of the costs, so a step is one
    in-place rank-``b`` update (BLAS ``ger`` for one unit), no copy. After ``max(refresh, half the blocks)``
    removals the state is compacted to the remaining blocks and recomputed from a Cholesky factor (no drift),
    and once more at the end. ``track``: record E after every removal (the path's curve); ``spectrum``: the
    eigenvalues of ``C^T H C`` from the full inverse (the spectral bound, when ``m <= n``)."""
    bu = _block_units(problem)
    B, b = bu.shape
    state = _Active(problem, bu, range(B))
    full = state.objective() if B else problem.total
    order: list[int] = []
    errors: list[float] = []
    first_costs = state.removal_costs() if B else np.zeros(0)
    exact_ridge = bool(B) and state.lam == problem.ridge
    explained = None
    if spectrum and exact_ridge and problem.n_outputs <= problem.n_units:
        M = problem.cross[state.units()].T @ state.Wp
        explained = linalg.eigvalsh(0.5 * (M + M.T), check_finite=False)
    while len(state.blocks) > stop_at:
        blocks = np.asarray(state.blocks)
        H, Wp = state.H, state.Wp
        C = problem.cross[state.units()].reshape(-1) if track else None
        alive = np.ones(blocks.size, dtype=bool)
        n = H.shape[0]
        diag = H.reshape(-1)[:: n + 1]  # a view of H's diagonal
        eye = np.eye(b)
        for _ in range(min(max(refresh, blocks.size // 2), blocks.size - stop_at)):
            if b == 1:
                costs = np.einsum("ij,ij->i", Wp, Wp) / diag
            else:
                K = blocks.size
                ar = np.arange(K)
                Hd = H.reshape(K, b, K, b)[ar, :, ar, :]
                Wb = Wp.reshape(K, b, -1)
                costs = np.einsum("kac,kcm,kam->k", np.linalg.inv(Hd), Wb, Wb)
            costs[~alive] = np.inf
            pos = int(np.argmin(costs))
            alive[pos] = False
            order.append(int(blocks[pos]))
            rows = slice(pos * b, (pos + 1) * b)
            if b == 1:  # BLAS rank-one updates in place (H is symmetric; .T views are Fortran-ordered)
                hc = H[:, pos].copy()
                h = hc / hc[pos]
                w = Wp[pos].copy()
                _ger(-1.0, hc, h, a=H.T, overwrite_a=1)
                _ger(-1.0, w, h, a=Wp.T, overwrite_a=1)
                H[pos, :] = 0.0
                H[:, pos] = 0.0
                H[pos, pos] = 1.0  # keeps the masked unit's cost finite (its W' row is 0)
                Wp[pos] = 0.0
            else:
                Hc = H[:, rows].copy()
                F = np.linalg.solve(Hc[rows], np.hstack([Hc.T, Wp[rows]]))
                H -= Hc @ F[:, :n]
                Wp -= Hc @ F[:, n:]
                H[rows, :] = 0.0
                H[:, rows] = 0.0
                H[rows, rows] = eye
                Wp[rows] = 0.0
            if C is not None:
                errors.append(float(problem.total - np.dot(C, Wp.reshape(-1))))
        state.blocks = [int(i) for i in blocks[alive]]
        state.refresh()
        if errors:
            errors[-1] = state.objective()
    return _Elimination(order, errors, first_costs, full, state, exact_ridge, explained)


def greedy_backward(problem: ReconstructionProblem, k_blocks: int, *, bound: bool | str = True) -> ReconstructionResult:
    """Backward elimination: from all blocks, repeatedly remove the block whose removal raises E least (OBS).
    ``bound``: which lower bound the result carries (:data:`BOUNDS`; True is ``full``)."""
    started = time.perf_counter()
    k = _check_k(problem, k_blocks)
    path = _eliminate(problem, k, spectrum=_bound_kind(bound) == "cheap")
    kept = sorted(set(range(problem.n_blocks)) - set(path.order))
    return _result(problem, kept, "greedy", started, "greedy", bound, k, path=path)


@dataclass(frozen=True)
class EliminationPath:
    """The greedy elimination of every block: ``order[t]`` is the block removed at step ``t``; ``errors[k]`` is
    E of the greedy set with ``k`` blocks kept (``errors[B]`` = all kept, ``errors[0]`` = ``||Y||^2``)."""

    order: np.ndarray
    errors: np.ndarray
    seconds: float

    @property
    def n_blocks(self) -> int:
        return int(self.order.size)

    def keep(self, k_blocks: int) -> np.ndarray:
        """Boolean mask over blocks of the greedy set with ``k_blocks`` kept."""
        if not 0 <= k_blocks <= self.n_blocks:
            raise InvalidParameterError(f"k_blocks must be in 0..{self.n_blocks}; got {k_blocks!r}")
        mask = np.ones(self.n_blocks, dtype=bool)
        mask[self.order[: self.n_blocks - k_blocks]] = False
        return mask


def elimination_path(problem: ReconstructionProblem) -> EliminationPath:
    """The whole greedy curve in one pass (what a width allocation reads as cost per (group, width))."""
    started = time.perf_counter()
    path = _eliminate(problem, 0, track=True)
    order, errors = path.order, path.errors
    B = problem.n_blocks
    curve = np.empty(B + 1)
    curve[B] = path.full
    curve[:B] = np.asarray(errors[::-1]) if B else []
    curve[0] = problem.total
    return EliminationPath(np.asarray(order, dtype=np.int64), np.maximum(curve, 0.0), time.perf_counter() - started)


def _start_blocks(problem: ReconstructionProblem, start: np.ndarray | Sequence[bool] | Sequence[int]) -> list[int]:
    arr = np.asarray(start)
    if arr.dtype == bool:
        mask = problem.unit_mask(arr)
        return sorted(int(i) for i in np.unique(problem.block_ids[mask]))
    return sorted(int(i) for i in np.unique(arr.reshape(-1)))


def local_search(
    problem: ReconstructionProblem, k_blocks: int, start: np.ndarray | Sequence[bool] | Sequence[int] | None = None,
    *, time_limit: float = 10.0, max_rounds: int = 1000, strategy: str = "best", bound: bool | str = True,
) -> ReconstructionResult:
    """Swap local search (one kept block out, one dropped block in) from the best of greedy, a heuristic start and
    ``start`` (a mask over units/blocks, or block ids). ``strategy``: ``best`` (best swap of all pairs each round)
    or ``first`` (the best swap of the first removal block, cheapest first, that improves). Every accepted swap
    lowers E by more than 1e-10 ||Y||^2, so the objective never increases; stops at a local optimum
    (``local_optimum``), after ``max_rounds`` swaps or ``time_limit`` seconds. ``bound``: which lower bound the
    result carries (:data:`BOUNDS`; True is ``full``)."""
    started = time.perf_counter()
    k = _check_k(problem, k_blocks)
    if strategy not in ("best", "first"):
        raise InvalidParameterError(f"local_search: strategy must be 'best' or 'first'; got {strategy!r}")
    bu = _block_units(problem)
    path = _eliminate(problem, k, spectrum=_bound_kind(bound) == "cheap")
    candidates = {"greedy": sorted(set(range(problem.n_blocks)) - set(path.order)),
                  "heuristic": sorted(int(i) for i in np.argsort(-path.first_costs, kind="stable")[:k])}
    if start is not None:
        given = _start_blocks(problem, start)
        if len(given) != k:
            raise InvalidParameterError(f"local_search: start keeps {len(given)} blocks; k_blocks is {k}")
        candidates["start"] = given
    scores = {name: (path.state.objective() if name == "greedy" else
                     problem.error(np.isin(np.arange(problem.n_blocks), blocks)))
              for name, blocks in candidates.items()}
    origin = min(scores, key=lambda name: scores[name])
    state = path.state if origin == "greedy" else _Active(problem, bu, candidates[origin])
    tol = _tolerance(problem)
    E = state.objective()
    status, swaps = "local_optimum", 0
    while 0 < k < problem.n_blocks:
        if swaps >= max_rounds:
            status = "max_rounds"
            break
        if time.perf_counter() - started > time_limit:
            status = "time_limit"
            break
        predicted, pos, j = state.best_swap(first=strategy == "first")
        if not predicted < E - tol:
            break
        previous = list(state.blocks)
        state.remove(pos)
        state.add(j)
        swaps += 1
        if swaps % _REFRESH == 0:
            state.refresh()
        new_E = state.objective()
        if not new_E < E - tol:  # drift: recompute exactly before judging the move
            state.refresh()
            new_E = state.objective()
            if not new_E < E - tol:
                state = _Active(problem, bu, previous)
                break
        E = new_E
    info = {"start": origin, "start_objective": scores[origin], "swaps": swaps}
    return _result(problem, sorted(state.blocks), status, started, "local", bound, k, info, path)


def _solver(method: str) -> Callable[..., ReconstructionResult]:
    """The registered solver ``method``; a missing optional module (``exact``) is a named error."""
    try:
        return RECONSTRUCTION_METHODS.get(method, "solve_reconstruction: method")
    except ModuleNotFoundError as exc:
        raise SolverNotAvailableError(
            f"solve_reconstruction: method {method!r} needs {exc.name}, which this installation does not have; "
            "use method 'local' or 'greedy'"
        ) from None


def solve_reconstruction(
    problem: ReconstructionProblem, k_blocks: int, method: str = "local", **options: object
) -> ReconstructionResult:
    """Keep ``k_blocks`` blocks minimising E: ``local`` (:func:`local_search`), ``greedy``
    (:func:`greedy_backward`), ``exact`` (branch and bound, :mod:`optprune.reconstruction._bnb`), ``outer`` (outer
    approximation, :mod:`optprune.reconstruction._outer`), ``miqp`` (the MIQP of
    :mod:`optprune.reconstruction._exact`) or ``auto`` (exact up
    to ``AUTO_EXACT_BLOCKS`` blocks when installed, else local). ``options`` go to the chosen solver."""
    if method != "auto":
        return _solver(RECONSTRUCTION_METHODS.check(method, "solve_reconstruction: method"))(problem, k_blocks,
                                                                                          **options)
    if problem.n_blocks <= AUTO_EXACT_BLOCKS:
        try:  # the exact method certifies its own bound: a heuristic's ``bound`` option is not for it
            return _solver("exact")(problem, k_blocks, **{k: v for k, v in options.items() if k != "bound"})
        except SolverNotAvailableError:
            pass
    return local_search(problem, k_blocks, **options)  # type: ignore[arg-type]


#: solvers by name (``exact`` loads lazily: it is an optional module that itself starts from :func:`local_search`)
RECONSTRUCTION_METHODS: Registry[Callable[..., ReconstructionResult]] = Registry("reconstruction method")
RECONSTRUCTION_METHODS.register("local", local_search, "swap local search from the best of greedy and a heuristic")
RECONSTRUCTION_METHODS.register("greedy", greedy_backward, "greedy backward elimination (OBS)")
RECONSTRUCTION_METHODS.register("exact", "optprune.reconstruction._bnb:solve_bnb",
                                "branch and bound on the perspective relaxation, with its certified gap")
RECONSTRUCTION_METHODS.register("outer", "optprune.reconstruction._outer:solve_outer",
                                "outer approximation (Bertsimas & Van Parys) on a MILP backend, with its certified gap")
RECONSTRUCTION_METHODS.register("miqp", "optprune.reconstruction._exact:solve_miqp",
                                "the big-M MIQP on a MIQP backend (SCIP, Gurobi), with its proven gap")
