r"""The exact selection: :func:`solve_exact` (the best exact method) and :func:`solve_miqp`.

:func:`solve_exact` is :func:`optprune.reconstruction._bnb.solve_bnb`: branch and bound on the perspective relaxation
(the ``"exact"`` method); :func:`optprune.reconstruction._outer.solve_outer` (``"outer"``) is Bertsimas & Van Parys'
outer approximation with a master MILP on any MILP backend. Both certify ``E_λ(S)``, the objective of
:meth:`ReconstructionProblem.error`.

:func:`solve_miqp` (method ``"miqp"``) keeps ``k_blocks`` blocks minimising ``E(S)`` by one MIQP:

1. a start from :func:`~optprune.reconstruction._search.local_search` (or the caller's ``start``);
2. the MIQP of :func:`optprune.formulations.reconstruction.build_reconstruction_miqp` (binary ``z`` per block,
   continuous ``W'`` with per-entry big-M rows, objective ``||Y - X W'||^2 + λ||W'||^2`` as ``1/2 x^T Q x``), with
   ``C`` first replaced by ``U_r Σ_r`` of its SVD (same ``E`` for every ``S``, ``min(n, m)`` outputs at most),
   handed to a backend with ``supports_miqp`` (``scip`` by default; ``gurobi``, ``cvxpy``) with the start as MIP
   start, relative gap ``rtol`` and the remaining time;
3. the kept blocks of the best solution (the MIQP's incumbent or the start) re-fitted exactly
   (:meth:`ReconstructionProblem.refit`, :meth:`ReconstructionProblem.error`), so ``objective`` is ``E(S)``
   computed the same way for every method;
4. ``lower_bound`` = the larger of the MIQP's dual bound and the closed-form bound of
   :func:`optprune.reconstruction._bound.bound_details` (perspective relaxation, spectral, monotone), never above
   the objective.

``status`` is ``"optimal"`` only when the gap ``(objective - lower_bound) / objective`` is at most ``rtol``
(default ``1e-6``, the MIQP's relative gap tolerance too) or the objective is 0; otherwise ``"time_limit"`` when
the solver stopped on its limit, else ``"feasible"``. ``info`` records the solver, its status, nodes, each
bound and the MIQP's size.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from scipy import linalg

from optprune.errors import InvalidParameterError
from optprune.formulations.reconstruction import build_reconstruction_miqp, compress_cross
from optprune.reconstruction._bnb import solve_bnb
from optprune.reconstruction._bound import bound_details
from optprune.reconstruction._outer import RTOL
from optprune.reconstruction._problem import ReconstructionProblem, ReconstructionResult
from optprune.reconstruction._search import local_search
from optprune.solvers import QuadraticObjectiveError, SolveOptions, get_backend, quadratic_backends

__all__ = ["solve_exact", "solve_miqp", "RTOL"]


def _start_vector(problem: ReconstructionProblem, cross: np.ndarray, keep_blocks: np.ndarray, M: np.ndarray,
                  n_blocks: int) -> np.ndarray:
    """``(vec(W'), z)`` of a selection, ``W'_S = (G_SS + λI)^{-1} C~_S`` (rows of dropped units 0), clipped to M."""
    n, r = cross.shape
    keep = keep_blocks[problem.block_ids]
    idx = np.flatnonzero(keep)
    W = np.zeros((n, r))
    if idx.size:
        A = problem.gram[np.ix_(idx, idx)] + problem.ridge * np.eye(idx.size)
        W[idx] = linalg.solve(A, cross[idx], assume_a="pos", check_finite=False)
    W = np.clip(W, -M, M)
    return np.concatenate([W.reshape(-1, order="F"), keep_blocks.astype(np.float64)])


def solve_exact(problem: ReconstructionProblem, k_blocks: int, time_limit: float = 10.0, start=None, *,
                rtol: float = RTOL, max_rounds: int = 1000) -> ReconstructionResult:
    """Keep ``k_blocks`` blocks by branch and bound, with the certified gap (:func:`solve_bnb`)."""
    return solve_bnb(problem, k_blocks, time_limit, start, rtol=rtol, max_rounds=max_rounds)


def solve_miqp(problem: ReconstructionProblem, k_blocks: int, solver: str = "scip", time_limit: float = 10.0,
               start=None, *, rtol: float = RTOL) -> ReconstructionResult:
    """Keep ``k_blocks`` blocks by the MIQP, with its proven gap (module doc; relative gap tolerance ``rtol``).

    ``start``: a mask over units or blocks, or block ids, passed to the local search that makes the MIP start.
    """
    started = time.perf_counter()
    B = problem.n_blocks
    k = int(k_blocks)
    if not 0 <= k <= B:
        raise InvalidParameterError(f"solve_miqp: k_blocks must be in 0..{B}; got {k_blocks}")
    if not (time_limit > 0 and math.isfinite(time_limit)):
        raise InvalidParameterError(f"solve_miqp: time_limit must be a positive number of seconds; got {time_limit}")
    backend = get_backend(solver)
    backend.require()
    if not backend.supports_miqp:
        raise QuadraticObjectiveError(
            f"solve_miqp: backend {solver!r} solves no MIQP; backends that do: "
            f"{', '.join(quadratic_backends(miqp=True))}"
        )
    heuristic = local_search(problem, k, start, time_limit=max(0.1 * time_limit, 0.5), bound=False)
    keep_blocks = np.zeros(B, dtype=bool)
    keep_blocks[np.unique(problem.block_ids[heuristic.keep])] = True
    best_keep, best_obj = keep_blocks, heuristic.objective
    details = bound_details(problem, k, start=keep_blocks)
    info: dict = {"solver": solver, "start_objective": heuristic.objective, "bound_perspective": details.perspective,
                  "bound_spectral": details.spectral, "bound_closed_form": details.value}
    solver_bound, solver_status = math.nan, "not run"
    if 0 < k < B and best_obj - details.value > rtol * max(best_obj, 1e-300):
        cross = compress_cross(problem.cross)
        model = build_reconstruction_miqp(problem.gram, cross, problem.total, k, ridge=problem.ridge,
                                          blocks=problem.block_ids)
        n, r = cross.shape
        M = model.col_upper[model.groups["weights"]].reshape(n, r, order="F")
        remaining = time_limit - (time.perf_counter() - started)
        if remaining > 0.05:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. cvxpy ignores the MIP start
                result = backend.solve(model, SolveOptions(time_limit=remaining, mip_gap=rtol,
                                                           start=_start_vector(problem, cross, keep_blocks, M, B)))
            solver_status, info["nodes"], info["miqp_seconds"] = result.status.value, result.nodes, result.time_s
            info["miqp_size"] = {"variables": model.n_vars, "rows": model.n_rows, "q_nonzeros": int(model.Q.nnz)}
            if math.isfinite(result.bound):
                solver_bound = float(result.bound)
            elif result.status.value == "optimal" and math.isfinite(result.objective):
                # no dual bound reported (cvxpy), but optimality proven within the relative gap rtol
                solver_bound = float(result.objective) - rtol * abs(float(result.objective))
                info["bound_from"] = "solver status optimal (relative gap rtol)"
            if result.x is not None:
                z = model.group("keep", result.x) > 0.5
                if int(z.sum()) == k:
                    value = problem.error(z[problem.block_ids])
                    if value < best_obj:
                        best_keep, best_obj = z, value
        else:
            solver_status = "time_limit"
    info.update(solver_status=solver_status, bound_solver=solver_bound)
    keep = best_keep[problem.block_ids]
    objective = problem.error(keep)
    lower = max(details.value, solver_bound) if math.isfinite(solver_bound) else details.value
    lower = min(lower, objective)
    if objective - lower <= rtol * max(objective, 1e-300) or objective <= 0.0:
        status = "optimal"
    elif solver_status in ("time_limit", "feasible"):
        status = "time_limit"
    else:
        status = "feasible"
    weights = problem.refit(keep)
    return ReconstructionResult(keep, weights, objective, lower, status, time.perf_counter() - started, "miqp",
                                problem.refit_bias(keep, weights), info)
