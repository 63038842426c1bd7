r"""Pruned networks as surrogates for the dense one (``optprune bench --surrogate``).

Pham, Ren, Tahir, Tong & Serra (2025), "Optimization over trained (and sparse)
neural networks: a surrogate within a surrogate": when the network is large,
solving the MIP of a pruned copy finds better solutions *for the original*
within a time limit than solving the original's MIP. Here the question is the
max-margin adversarial example of the dense network :math:`f`:

.. math:: \max_{x \in B(x_0, \varepsilon) \cap [0, 1]^n} \; f_t(x) - f_{y}(x)

with :math:`B` an L-inf ball or an L1 ball
(:math:`\sum_i |x_i - x_{0,i}| \le \varepsilon`, written with
:math:`x - x_0 = p - q`, :math:`p, q \ge 0`, :math:`\sum_i p_i + q_i \le \varepsilon`).
A task solves this MIP for one network (the dense one, or a pruned surrogate
:math:`g`) through the solver protocol (``SolveOptions.start``: the MIP start
at the clean image :math:`x_0`, feasible for every network, :func:`start_vector`;
``SolveOptions.on_incumbent``: every improving incumbent in the model's
columns), and records, at that start and at every improving incumbent, the
elapsed wall time since the task started (bounds and model building
included) and the *dense* objective :math:`f_t(x) - f_y(x)` of the
incumbent's input by a float64 forward pass.

Polishing (optional): the best candidate :math:`\hat x` fixes the dense
network's activation pattern :math:`D_k = \mathrm{diag}[z_k(\hat x) > 0]`; on
that linear region the network is affine, :math:`z_k = M_k x + c_k` with
:math:`M_1 = W_1`, :math:`M_{k+1} = W_{k+1} D_k M_k`, and the LP

.. math:: \max_x (e_t - e_y)^\top (M_L x + c_L) \;\; \text{s.t.} \;\;
   (M_k x + c_k)_i \ge 0 \; (i \text{ active}),\;\; (M_k x + c_k)_i \le 0 \; (i \text{ inactive}),\;\;
   x \in B(x_0, \varepsilon) \cap [0, 1]^n

has :math:`\hat x` feasible, so its optimum is at least as good; it is
accepted only if the forward pass confirms the improvement. Polishing runs
within the task's time limit: the MIP stops 10% of the limit (at most 5 s)
early to leave it that time. Any backend with an incumbent callback
(:attr:`~optprune.solvers.BackendBase.supports_incumbent_callback`: HiGHS,
Gurobi, SCIP, CP-SAT) can run it.
"""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.sparse as sp

from optprune.errors import InvalidParameterError
from optprune.formulations.relu_milp import build_spec_milp, forward_assignment
from optprune.milp import MILP, Sense
from optprune.network import Network
from optprune.solvers import SolveOptions, Status, get_backend
from optprune.verification.bounds import compute_bounds, count_unstable

__all__ = ["with_l1_ball", "polish_on_dense", "run_surrogate", "start_vector", "in_l1_ball", "NORMS"]

NORMS = ("linf", "l1")
POLISH_SHARE = 0.1  # of the time limit, kept free for polishing (at most POLISH_MAX_S seconds)
POLISH_MAX_S = 5.0


def with_l1_ball(model: MILP, input_idx: np.ndarray, x0: np.ndarray, eps: float) -> MILP:
    """``model`` with ``||x - x0||_1 <= eps`` added on the columns ``input_idx`` (module doc), as arrays."""
    input_idx = np.asarray(input_idx, dtype=np.int64)
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    k, n, m = input_idx.size, model.n_vars, model.n_rows
    if x0.size != k:
        raise InvalidParameterError(f"with_l1_ball: x0 has {x0.size} entries, the input group has {k}")
    E = sp.csr_matrix((np.ones(k), (np.arange(k), input_idx)), shape=(k, n))
    eye = sp.identity(k, format="csr")
    A = sp.vstack([
        sp.hstack([model.A, sp.csr_matrix((m, 2 * k))]),
        sp.hstack([E, -eye, eye]),  # x - p + q = x0
        sp.hstack([sp.csr_matrix((1, n)), sp.csr_matrix(np.ones((1, 2 * k)))]),  # sum(p + q) <= eps
    ], format="csr")
    return MILP(
        c=np.concatenate([model.c, np.zeros(2 * k)]), A=A,
        row_lower=np.concatenate([model.row_lower, x0, [-np.inf]]),
        row_upper=np.concatenate([model.row_upper, x0, [eps]]),
        col_lower=np.concatenate([model.col_lower, np.zeros(2 * k)]),
        col_upper=np.concatenate([model.col_upper, np.full(2 * k, eps)]),
        integrality=np.concatenate([model.integrality, np.zeros(2 * k, dtype=bool)]),
        sense=model.sense, offset=model.offset, groups=dict(model.groups), name=model.name + "_l1",
    )


def _ball(x0: np.ndarray, eps: float, norm: str) -> tuple[np.ndarray, np.ndarray]:
    if norm not in NORMS:
        raise InvalidParameterError(f"norm must be one of {NORMS}; got {norm!r}")
    return np.clip(x0 - eps, 0.0, 1.0), np.clip(x0 + eps, 0.0, 1.0)


def in_l1_ball(x: np.ndarray, x0: np.ndarray, eps: float) -> bool:
    """``||x - x0||_1 <= eps`` up to float64 rounding of the sum (``1e-12`` relative)."""
    return float(np.abs(np.asarray(x, dtype=np.float64) - x0).sum()) <= eps * (1 + 1e-12)


def _margin(net: Network, x: np.ndarray, label: int, target: int) -> float:
    y = net.forward(x)
    return float(y[target] - y[label])


def polish_on_dense(
    net: Network, x: np.ndarray, x0: np.ndarray, eps: float, norm: str, label: int, target: int,
    time_limit: float = 10.0,
) -> tuple[np.ndarray, float]:
    """The best point of ``x``'s linear region of ``net`` inside the ball (module doc) and its margin.

    Returns ``(x, margin)`` unchanged when the LP does not improve the forward-pass margin.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    base = _margin(net, x, label, target)
    pre = net.forward(x, return_all=True)
    M = net.layers[0].dense_weight()
    c = net.layers[0].bias.copy()
    rows, lower, upper = [], [], []
    for k, layer in enumerate(net.layers):
        if k > 0:
            prev = net.layers[k - 1]
            if prev.activation == "relu":
                on = pre[k - 1] > 0
                W = layer.dense_weight()[:, on]
                M, c = W @ M[on], W @ c[on] + layer.bias
            else:
                W = layer.dense_weight()
                M, c = W @ M, W @ c + layer.bias
        if layer.activation == "relu" and k < len(net.layers) - 1:
            on = pre[k] > 0
            rows.append(M)
            lower.append(np.where(on, -c, -np.inf))
            upper.append(np.where(on, np.inf, -c))
    obj = M[target] - M[label]
    offset = float(c[target] - c[label])
    lo, hi = _ball(x0, eps, norm)
    A = sp.csr_matrix(np.vstack(rows)) if rows else sp.csr_matrix((0, x.size))
    lp = MILP(c=obj, A=A, row_lower=np.concatenate(lower) if lower else [], row_upper=np.concatenate(upper) if upper else [],
              col_lower=lo, col_upper=hi, integrality=None, sense=Sense.MAXIMIZE, offset=offset,
              groups={"input": np.arange(x.size)}, name="polish")
    if norm == "l1":
        lp = with_l1_ball(lp, np.arange(x.size), x0, eps)
    sol = get_backend("highs").solve(lp, SolveOptions(time_limit=time_limit, threads=1))
    if sol.x is None:
        return x, base
    xp = np.clip(sol.x[: x.size], lo, hi)
    if norm == "l1" and not in_l1_ball(xp, x0, eps):
        return x, base
    mp = _margin(net, xp, label, target)
    return (xp, mp) if mp > base else (x, base)


def _status_word(status: Status) -> str:
    """The record's status word: a solution at the limit is ``time_limit`` (the surrogate MIP has no early stop)."""
    return "time_limit" if status == Status.FEASIBLE else status.value


def start_vector(net: Network, enc, bounds, x: np.ndarray, n_cols: int) -> np.ndarray:
    """All columns of the big-M model at input ``x``: :func:`~optprune.formulations.relu_milp.forward_assignment`.

    Columns beyond the encoding (the L1 ball's ``p, q``) are 0, which is right for ``x = x0``.
    """
    return forward_assignment(net, enc, bounds, x, n_cols)


def run_surrogate(task: dict, net: Network, dense: Network | None) -> dict:
    """One surrogate task (module doc): the dense objective of ``net``'s incumbents over time."""
    backend = get_backend(task["backend"])
    if not backend.supports_incumbent_callback:
        raise InvalidParameterError(
            f"surrogate mode needs a backend with an incumbent callback (highs, gurobi, scip, cpsat); "
            f"got backend {task['backend']!r}"
        )
    dense = net if dense is None else dense
    start = time.perf_counter()
    x0 = np.asarray(task["x0"], dtype=np.float64)
    label, target, eps, norm = int(task["label"]), int(task["target"]), float(task["eps"]), task["norm"]
    limit = float(task["time_limit"])
    lo, hi = _ball(x0, eps, norm)
    bounds = compute_bounds(net, lo, hi, task["bounds"], time_budget=0.25 * limit)
    C = np.zeros((1, net.output_size))
    C[0, target], C[0, label] = 1.0, -1.0
    model, enc = build_spec_milp(net, bounds, lo, hi, C, 0.0)
    if norm == "l1":
        model = with_l1_ball(model, model.groups["input"], x0, eps)
    input_idx = np.asarray(model.groups["input"])
    setup_s = time.perf_counter() - start

    trace: list[list] = []  # [seconds since start, dense margin, surrogate objective]
    rejected = {"l1": 0}
    best = {"margin": -math.inf, "x": None}

    def consider(x: np.ndarray, surrogate_obj: float | None) -> None:
        x = np.clip(np.asarray(x, dtype=np.float64), lo, hi)
        if norm == "l1" and not in_l1_ball(x, x0, eps):
            rejected["l1"] += 1  # an incumbent that leaves the ball by more than rounding is no candidate
            return
        m = _margin(dense, x, label, target)
        trace.append([time.perf_counter() - start, m, surrogate_obj])
        if m > best["margin"]:
            best["margin"], best["x"] = m, x

    # Polishing happens inside the same wall-time budget: the MIP leaves it POLISH_SHARE of the limit.
    reserve = min(POLISH_SHARE * limit, POLISH_MAX_S) if task.get("polish") else 0.0
    # Every MIP starts from the clean image x0 (feasible for every variant): the first incumbent.
    start_x = start_vector(net, enc, bounds, x0, model.n_vars)
    feasible_start = model.max_violation(start_x) <= 1e-6
    if feasible_start:
        consider(x0, model.objective_value(start_x))

    seen = {"incumbents": 0}

    def on_incumbent(x: np.ndarray, objective: float, time_s: float) -> None:
        seen["incumbents"] += 1
        consider(x[input_idx], objective)

    options = SolveOptions(time_limit=float(max(limit - setup_s - reserve, 0.01)), threads=int(task.get("threads", 1)),
                           start=start_x if feasible_start else None, on_incumbent=on_incumbent)
    t = time.perf_counter()
    result = backend.solve(model, options)
    mip_s = time.perf_counter() - t
    status = _status_word(result.status)
    objective = float(result.objective) if result.x is not None else None
    bound = float(result.bound) if math.isfinite(result.bound) else None
    if status == "optimal" and objective is not None and (bound is None or bound < objective):
        bound = objective  # an LP (every ReLU stable) has no MIP dual bound: its optimum is the bound
    if result.x is not None and not seen["incumbents"]:  # a solution found without an incumbent event (presolve)
        consider(result.x[input_idx], objective)

    polish = {"applied": False, "gain": 0.0, "time_s": 0.0}
    if task.get("polish") and best["x"] is not None:
        t = time.perf_counter()
        before = best["margin"]
        xp, mp = polish_on_dense(dense, best["x"], x0, eps, norm, label, target,
                                 time_limit=max(0.5, limit - (time.perf_counter() - start)))
        polish = {"applied": True, "gain": mp - before, "time_s": time.perf_counter() - t}
        if mp > before:
            best["margin"], best["x"] = mp, xp
            trace.append([time.perf_counter() - start, mp, None])
    total = time.perf_counter() - start
    return {
        "unstable": count_unstable(net, bounds), "binaries": enc.n_binaries, "variables": model.n_vars,
        "constraints": model.n_rows, "nonzeros": int(model.A.nnz), "bounds_s": None, "build_s": setup_s,
        "mip_s": mip_s, "time_s": total, "status": status,
        "verdict": "sat" if best["margin"] > 0 else "unknown", "decided": False,
        "objective": objective, "bound": bound, "dense_best": best["margin"] if best["x"] is not None else None,
        "adversarial": bool(best["margin"] > 0), "trace": [[round(a, 4), b, c] for a, b, c in trace],
        "polishing": polish, "rejected_outside_l1_ball": rejected["l1"],
    }
