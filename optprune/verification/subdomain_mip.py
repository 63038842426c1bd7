r"""The decision MIP of one branch-and-bound subdomain: split ReLUs fixed, the subdomain's own bounds as big-M.

A subdomain of :mod:`optprune.verification.bab` is an input box, per-layer
pre-activation bounds valid on it, and the split decisions taken on the way
down (``+1``: ``z >= 0``, ``-1``: ``z <= 0``). Its decision MIP is the big-M
encoding of :func:`optprune.formulations.relu_milp.encode_network` (Tjeng,
Xiao & Tedrake 2019, eq. 5) built on those bounds, so

* a ReLU split active (bound ``l = 0``) is encoded as stably active,
  ``h = z`` with the column ``h >= 0``: the split row ``z >= 0`` itself;
* a ReLU split inactive (``u = 0``) is a column fixed at 0, plus the split row
  ``W h_prev + b <= 0`` added here (the encoding alone would leave ``z`` free);
* a ReLU that the subdomain's bounds make stable needs no binary, and the
  unstable ones get big-M constants from the subdomain's (tighter) bounds;

which is how MIP-based verifiers finish the subdomains that bound propagation
leaves open (Tjeng et al. 2019, Sec. 4; Bunel et al. 2020, "Branch and bound
for piecewise linear neural network verification", Sec. 6). The bounds may be
tightened first by CROWN with the splits (:func:`tighten`), which removes
binaries below a split.

The answer follows the soundness rules of :mod:`optprune.verification.verdicts`:
explicit tolerances and the cutoff ``s >= -delta`` (:func:`~optprune.verification.verdicts.decision_options`),
``delta`` widened by :func:`~optprune.verification.verdicts.solver_resolution`
on this subdomain's bounds; ``closed`` only from INFEASIBLE under the cutoff or
a dual bound below ``-delta`` (rules (b), (c)); a point only after ``confirm``
(float64 forward pass, and onnxruntime for ONNX models). The bounds of a
subdomain are the root bounds (checked to contain the forward pass of the box
centre before any proof rests on them) intersected with CROWN bounds that hold
on the subdomain and with the split half-spaces, so every point of the
subdomain satisfies the model; a subdomain whose bounds cross (a lower above
an upper) is empty, hence closed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
import torch

from optprune.formulations._builder import ModelBuilder
from optprune.formulations.relu_milp import ReluEncoding, encode_network
from optprune.milp import MILP
from optprune.network import Network
from optprune.solvers import Status, get_backend
from optprune.verification.crown import DTYPE, TorchNetwork, intermediate_bounds, one_thread, with_linear_output
from optprune.verification.verdicts import (
    DECISION_TOLERANCES,
    DecisionTolerances,
    decision_options,
    slack_verdict,
    solver_resolution,
    widened,
)

__all__ = ["Subdomain", "SubdomainAnswer", "build_subdomain_milp", "intersect_bounds", "tighten", "solve_subdomain"]

Confirm = Callable[[np.ndarray], tuple[bool, np.ndarray, np.ndarray]]


@dataclass
class Subdomain:
    """One subdomain as plain NumPy arrays (it crosses process boundaries by pickling).

    ``spec``: index of the conjunction; ``lowers`` / ``uppers`` / ``splits``:
    one array per hidden layer of the network with a linear output
    (:func:`optprune.verification.crown.with_linear_output`); ``x_lo`` / ``x_hi``: the input box.
    """

    spec: int
    lowers: list
    uppers: list
    splits: list
    x_lo: np.ndarray
    x_hi: np.ndarray

    @property
    def n_unstable(self) -> int:
        return int(sum(((lo < 0) & (hi > 0) & (s == 0)).sum() for lo, hi, s in zip(self.lowers, self.uppers,
                                                                                  self.splits)))

    @property
    def n_splits(self) -> int:
        return int(sum((s != 0).sum() for s in self.splits))

    def empty(self) -> bool:
        """The bounds cross somewhere, or a split contradicts them: no point lies in the subdomain."""
        for lo, hi, s in zip(self.lowers, self.uppers, self.splits):
            if np.any(lo > hi) or np.any((s > 0) & (hi < 0)) or np.any((s < 0) & (lo > 0)):
                return True
        return bool(np.any(self.x_lo > self.x_hi))


@dataclass
class SubdomainAnswer:
    """What one subdomain MIP found: ``verdict`` ``closed`` (no point of the subdomain meets the conjunction),
    ``sat`` (``x``, ``y``: a confirmed counterexample) or ``open``."""

    verdict: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    status: str = ""
    bound: float | None = None
    delta: float = 0.0
    n_binaries: int = 0
    build_s: float = 0.0
    solve_s: float = 0.0
    message: str = ""


def _full_bounds(net: Network, dom: Subdomain) -> list:
    """Per layer ``(lower, upper)`` of the linear-output network: the subdomain's, and ``(-inf, inf)`` on the
    output (its columns are continuous and carry no big-M)."""
    n_out = net.output_size
    return [(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
            for lo, hi in zip(dom.lowers, dom.uppers)] + [(np.full(n_out, -np.inf), np.full(n_out, np.inf))]


def build_subdomain_milp(net: Network, dom: Subdomain, C, d) -> tuple[MILP, ReluEncoding, list]:
    """``max min_i (C_i y + d_i)`` over subdomain ``dom`` of ``net`` (a network with a linear output).

    Returns the model (groups ``input``, ``output``), its encoding and the bounds it was built on.
    """
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    bounds = _full_bounds(net, dom)
    builder = ModelBuilder()
    enc = encode_network(builder, net, bounds, dom.x_lo, dom.x_hi)
    for j, s in enumerate(dom.splits):  # z_j <= 0 on the neurons split inactive (module doc)
        idx = np.flatnonzero(np.asarray(s) < 0)
        if idx.size == 0:
            continue
        layer = net.layers[j]
        prev = enc.input_idx if j == 0 else enc.neuron_idx[j - 1]
        sub = sp.csr_matrix(layer.weight)[idx].tocoo()
        builder.add_coo_rows(sub.row, np.asarray(prev)[sub.col], sub.data, -np.inf, -np.asarray(layer.bias)[idx])
    out = enc.output_idx
    builder.add_group("input", enc.input_idx)
    builder.add_group("output", out)
    if C.shape[0] == 1:
        builder.set_objective(C[0], out, "max", offset=float(d[0]))
    else:
        t = builder.add_vars(1, -np.inf, np.inf, name="spec")
        builder.add_rows(np.hstack([np.ones((C.shape[0], 1)), -C]), np.concatenate([t, out]), upper=d)  # t <= C y + d
        builder.set_objective([1.0], t, "max")
    return builder.build(name="subdomain"), enc, bounds


def intersect_bounds(dom: Subdomain, bounds) -> Subdomain:
    """``dom`` with each hidden layer's bounds intersected with ``bounds`` (per layer ``(lower, upper)`` valid on
    the whole box, hence on the subdomain); crossing bounds then mean an empty subdomain."""
    lowers = [np.maximum(lo, np.asarray(bounds[j][0], dtype=np.float64)) for j, lo in enumerate(dom.lowers)]
    uppers = [np.minimum(hi, np.asarray(bounds[j][1], dtype=np.float64)) for j, hi in enumerate(dom.uppers)]
    return replace(dom, lowers=lowers, uppers=uppers)


def tighten(net: Network, dom: Subdomain) -> Subdomain:
    """The subdomain's bounds recomputed by CROWN with its splits (layers 1..K-2) and intersected with its own.

    Sound on the subdomain: every point of it satisfies the split half-spaces,
    and CROWN with fixed split neurons bounds exactly those points
    (:func:`optprune.verification.crown.intermediate_bounds`).
    """
    tn = TorchNetwork.from_network(net)
    t = lambda a, dt=DTYPE: torch.as_tensor(np.asarray(a)).to(dt).unsqueeze(0)
    with one_thread():
        lowers, uppers = intermediate_bounds(tn, t(dom.x_lo), t(dom.x_hi), [t(v) for v in dom.lowers],
                                             [t(v) for v in dom.uppers], [t(v, torch.int8) for v in dom.splits],
                                             start=1)
    return replace(dom, lowers=[v[0].numpy().copy() for v in lowers], uppers=[v[0].numpy().copy() for v in uppers])


def solve_subdomain(
    net: Network,
    dom: Subdomain,
    C,
    d,
    *,
    confirm: Confirm,
    time_limit: float,
    threads: int | None = 1,
    solver: str = "highs",
    tol: DecisionTolerances = DECISION_TOLERANCES,
    stop: Callable[[], bool] | None = None,
    tighten_bounds: bool = True,
) -> SubdomainAnswer:
    """Decide subdomain ``dom`` of ``net`` for the conjunction ``C y + d >= 0`` by one MIP (module doc).

    ``net`` may end in a ReLU (a linear output layer is appended as in BaB);
    ``stop()`` returning True interrupts the solve (the answer is then ``open``).
    """
    net, _ = with_linear_output(net, None)
    t0 = time.perf_counter()
    if dom.empty():
        return SubdomainAnswer("closed", message="empty subdomain (crossing bounds)")
    if tighten_bounds:
        dom = tighten(net, dom)
        if dom.empty():
            return SubdomainAnswer("closed", message="empty subdomain (crossing bounds after CROWN)",
                                   build_s=time.perf_counter() - t0)
    model, enc, bounds = build_subdomain_milp(net, dom, C, d)
    tol_i = widened(tol, solver_resolution(net, bounds, np.atleast_2d(C), tol))
    options = decision_options(max(time_limit - (time.perf_counter() - t0), 0.01), threads, tol_i)
    external = {"hit": False}  # interrupted by ``stop``: an early dual bound of -inf then proves nothing
    if stop is not None:
        rule = options.stop_rule

        def stop_rule(progress) -> bool:
            if rule is not None and rule(progress):
                return True
            external["hit"] = external["hit"] or bool(stop())
            return external["hit"]

        options = replace(options, stop_rule=stop_rule)
    ans = SubdomainAnswer("open", delta=tol_i.delta, n_binaries=enc.n_binaries, build_s=time.perf_counter() - t0)
    if not math.isfinite(tol_i.delta):
        ans.message = "the solver cannot resolve this network (infinite resolution)"
        return ans
    t1 = time.perf_counter()
    sol = get_backend(solver).solve(model, options)
    ans.solve_s = time.perf_counter() - t1
    ans.status, ans.bound = sol.status.value, sol.bound
    if sol.x is not None and sol.objective is not None and sol.objective >= 0:
        ok, x, y = confirm(model.group("input", sol.x))
        if ok:
            ans.verdict, ans.x, ans.y = "sat", x, y
            return ans
        ans.message = "the MIP point failed the forward-pass check"
        return ans
    pruned = sol.status == Status.INFEASIBLE or (sol.bound == -np.inf and not external["hit"])
    status = "infeasible" if pruned else sol.status.value  # every node pruned by the cutoff (rule (b))
    if slack_verdict(status, sol.bound, cutoff=True, delta=tol_i.delta) == "unsat":
        ans.verdict = "closed"
    return ans
