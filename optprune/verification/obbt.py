"""Optimisation-based bound tightening (OBBT) with safe LP bounds.

Each neuron still unstable after linear bounds is minimised and maximised over
the LP relaxation of the big-M formulation of the layers before it (layer by
layer, one warm-started LP session of the solver protocol per layer), within a
deadline; every new bound is a Neumaier–Shcherbina safe bound computed from
the LP's row multipliers (:func:`safe_lp_lower_bound`), so it holds whatever
the simplex's tolerances. Registered as the bound method ``obbt``
(:data:`optprune.verification.bounds.BOUND_METHODS`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optprune.formulations._builder import ModelBuilder
from optprune.formulations.relu_milp import encode_network
from optprune.milp import MILP, Sense
from optprune.network import Network
from optprune.solvers import Status, get_backend
from optprune.verification.bounds import BoundMethod, Bounds, linear_bounds
from optprune.verification.deadline import Deadline
from optprune.verification.rounding import error_bound, round_down, round_up

__all__ = ["OBBT_METHOD", "obbt_bounds", "safe_lp_lower_bound"]


def safe_lp_lower_bound(model: MILP, cost: np.ndarray, row_dual: np.ndarray) -> float:
    r"""A rigorous lower bound of ``min cost @ x`` over the LP ``model`` from *any* row multipliers.

    Neumaier & Shcherbina (2004), "Safe bounds in linear and mixed-integer
    linear programming", Math. Program. 99: for every ``y``,
    ``cost @ x = y @ (A x) + r @ x`` with ``r = cost - A^T y``, so over
    ``row_lower <= A x <= row_upper`` and ``col_lower <= x <= col_upper``

    .. math:: c^\top x \ge \sum_i \min(y_i \ell_i, y_i u_i) + \sum_j \min(r_j l_j, r_j u_j).

    Multipliers whose side is infinite are set to 0 first, so the bound holds
    whatever the LP solver's accuracy: an inexact dual only loosens it. The
    float64 evaluation is padded by :func:`optprune.verification.rounding.error_bound` of
    the magnitudes summed, and the rounding of the reduced costs ``r`` (at
    most ``gamma_n (|c| + |A|^T |y|)`` entrywise) is paid for over the
    columns' box. Returns ``-inf`` when a column with a non-zero (or
    uncertain) reduced cost is unbounded in the direction that matters.
    """
    y = np.asarray(row_dual, dtype=np.float64).copy()
    y[(y > 0) & ~np.isfinite(model.row_lower)] = 0.0
    y[(y < 0) & ~np.isfinite(model.row_upper)] = 0.0
    row_side = np.where(y > 0, model.row_lower, np.where(y < 0, model.row_upper, 0.0))
    row_terms = np.where(y != 0, y * row_side, 0.0)
    cost = np.asarray(cost, dtype=np.float64)
    r = cost - model.A.T @ y
    col_side = np.where(r > 0, model.col_lower, np.where(r < 0, model.col_upper, 0.0))
    r_error = np.abs(cost) + abs(model.A).T @ np.abs(y)  # times gamma_n: how far r may be from exact
    col_abs = np.maximum(np.abs(model.col_lower), np.abs(model.col_upper))
    uncertain = r_error > 0
    if not np.all(np.isfinite(col_side[r != 0])) or not np.all(np.isfinite(col_abs[uncertain])):
        return -np.inf
    col_terms = np.where(r != 0, r * col_side, 0.0)
    total = float(row_terms.sum() + col_terms.sum())
    magnitude = float(np.abs(row_terms).sum() + np.abs(col_terms).sum()
                      + r_error[uncertain] @ col_abs[uncertain])
    n_terms = model.n_rows + model.n_vars + int(model.A.getnnz(axis=0).max(initial=0)) + 2
    return float(round_down(total - error_bound(magnitude, n_terms)))


def obbt_bounds(
    net: Network,
    x_lower,
    x_upper,
    bounds: Bounds,
    *,
    deadline: Deadline | None = None,
    layers: list[int] | None = None,
    solver: str = "highs",
    time_budget: float | None = None,
) -> Bounds:
    """Optimisation-based bound tightening of the neurons that are still unstable.

    Layer by layer (so tightened bounds of layer ``k`` strengthen the LP of
    layer ``k+1``), each unstable neuron's pre-activation ``w^T h_prev + b`` is
    minimised and maximised over the LP relaxation of the big-M encoding of the
    layers before it. One LP session of the solver protocol per layer
    (:meth:`optprune.solvers.BackendBase.lp_session`) is re-solved with only
    the objective changed; HiGHS' session warm-starts the simplex from the
    previous basis, other backends re-solve. When the ``deadline`` (or
    ``time_budget`` seconds) has passed the remaining neurons keep their input
    bounds (still valid, only looser).

    The LP's optimum is never trusted as it comes: each new bound is the
    Neumaier–Shcherbina safe bound of :func:`safe_lp_lower_bound` computed from
    the session's row multipliers, which is valid whatever the simplex's
    feasibility and optimality tolerances, then stepped one ulp outward after adding the
    bias. A backend that reports no multipliers tightens nothing.
    """
    backend = get_backend(solver)
    if deadline is None:
        deadline = Deadline(time_budget if time_budget is not None else float("inf"))
    out: Bounds = [(np.array(lo, dtype=float), np.array(hi, dtype=float)) for lo, hi in bounds]
    todo = range(1, len(net.layers)) if layers is None else layers
    for k in todo:
        if k == 0:
            continue  # the first layer's interval bounds are already exact
        layer = net.layers[k]
        if layer.activation != "relu":
            continue
        lo, hi = out[k]
        unstable = np.flatnonzero((lo < 0) & (hi > 0))
        if unstable.size == 0:
            continue
        if deadline.expired():
            break
        builder = ModelBuilder()
        enc = encode_network(builder, net, out, x_lower, x_upper, relax=True, n_layers=k)
        prev = enc.neuron_idx[k - 1]
        kept = np.flatnonzero(prev >= 0)
        model = builder.build(np.zeros(builder.n_cols), Sense.MINIMIZE, name=f"obbt_layer_{k}")
        session = backend.lp_session(model)
        W = sp.csr_matrix(layer.weight)[:, kept]
        cols = prev[kept]
        cost = np.zeros(model.n_vars)
        for i in unstable:
            if deadline.expired():
                break
            w = np.asarray(W[i].todense()).reshape(-1)
            for sign, which in ((1.0, 0), (-1.0, 1)):
                cost[cols] = sign * w
                status, _, row_dual = session.minimize(cost)
                if status != Status.OPTIMAL or row_dual is None:
                    continue
                safe = safe_lp_lower_bound(model, cost, row_dual)
                if not np.isfinite(safe):
                    continue
                # One rounded addition each: a step of one ulp outward keeps the bound safe.
                if which == 0:
                    lo[i] = max(lo[i], float(round_down(safe + layer.bias[i])))
                else:
                    hi[i] = min(hi[i], float(round_up(-safe + layer.bias[i])))
            if hi[i] < lo[i]:
                hi[i] = lo[i]
        out[k] = (lo, hi)
        # Tighter bounds here tighten every later layer: re-run the cheap linear pass on top.
        out = linear_bounds(net, x_lower, x_upper, start=out)
    return out


def _obbt_method(net, x_lower, x_upper, bounds, *, deadline, solver) -> Bounds:
    return obbt_bounds(net, x_lower, x_upper, bounds, deadline=deadline, solver=solver)


OBBT_METHOD = BoundMethod("obbt", _obbt_method, "linear", "LP bound tightening (safe duals)")
