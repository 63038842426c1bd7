r"""What may prove a verdict: the one place where ``sat`` / ``unsat`` / ``unknown`` are decided.

Every query that can call a network robust (``verify``, ``attack``,
``max_margin``, ``min_distortion``, ``bench`` and its surrogate mode) asks the
same question of a MIP: is ``m* = max_x s(x)`` (a slack: a margin
``y_t - y_label``, or ``min_i C_i y + d_i`` of a VNN-LIB conjunction) at least
0 over the input region? The answers allowed here:

``sat``
    only from a *point*: an input inside the region whose float64 forward pass
    through the reference network satisfies the output condition (and, for
    ONNX models, whose onnxruntime pass in the graph's precision does too). A solver's
    objective value is never evidence.

``unsat``
    only from one of

    (a) sound bounds: a linear / interval upper bound of ``s`` that is
        negative after outward rounding (:mod:`optprune.verification.bounds`);
    (b) a MIP proven INFEASIBLE *under an objective cutoff* ``s >= -delta``,
        after checking that the model without the cutoff accepts the forward
        pass of a point of the region (:func:`check_encoding`): a model that
        rejects it has unsound bounds, and its infeasibility proves nothing;
    (c) a dual bound ``< -delta``.

    ``delta`` (:data:`DECISION_DELTA`, ``1e-5`` in output units) is the margin
    kept between a proof and zero: MIP solvers accept rows violated by their
    primal feasibility tolerance and stop at an absolute gap, so an objective
    or bound within ``[-delta, delta]`` of zero is ``unknown`` unless re-solved
    tighter. The margin is widened per specification row by the solver's
    *resolution* on that network (:func:`solver_resolution`): how far the
    slack of a point the solver accepts (rows within the feasibility
    tolerance, binaries within the integrality tolerance) can be from the
    network's own slack at that input, to first order through the coefficients
    of the CROWN back-substitution. A solver cannot tell apart what lies closer than that, so no proof
    is taken from there: on a network with weights of ``1e4`` and a margin of
    ``1e-9`` (Zombori et al., ICLR 2021) the MIP can only find points, never
    prove ``unsat``. A MIP that says INFEASIBLE without a cutoff (optimisation mode)
    can only be so through unsound bounds or numerical trouble: it is an
    error, never a proof.

``unknown``
    everything else.

Decision MIPs set their tolerances explicitly (:data:`DECISION_TOLERANCES`)
on every backend that has them, instead of inheriting each solver's defaults:
relative gap 0 (a gap relative to an objective near zero means nothing),
absolute gap ``1e-7`` (100 times below ``delta``), primal feasibility ``1e-7``
and integrality ``1e-6``. Loose feasibility or integrality tolerances only
*enlarge* the feasible set, which can raise the dual bound but not lower it;
that direction can only cost a proof, never forge one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# Module-level imports: none of these modules imports optprune.verification.verdicts (only verify.py and tests do), so
# there is no cycle to avoid.
from optprune.errors import OptpruneError
from optprune.formulations.relu_milp import forward_assignment
from optprune.milp import MILP, Sense
from optprune.network import Network
from optprune.solvers import FOCUSES, SolveOptions, Status, get_backend

__all__ = [
    "DECISION_DELTA",
    "DecisionTolerances",
    "DECISION_TOLERANCES",
    "UnsoundBoundsError",
    "decision_options",
    "optimize_options",
    "slack_verdict",
    "proves_nonpositive",
    "check_encoding",
    "check_bounds_contain",
    "solver_resolution",
    "widened",
]

DECISION_DELTA = 1e-5


class UnsoundBoundsError(OptpruneError, RuntimeError):
    """Per-neuron bounds (or the MILP built from them) that exclude a real forward pass."""


@dataclass(frozen=True)
class DecisionTolerances:
    """Tolerances of every MIP whose answer may become a verdict (module doc), and the solver's ``focus``.

    ``focus`` (:attr:`optprune.solvers.SolveOptions.focus`): ``"bound"`` (the default) switches the solver's
    primal heuristics off: in ``verify``'s MIP pipeline the attack has already looked for points, and a
    point that a leaf of the search holds is still found by branching. None leaves the solver's own balance
    (e.g. for :func:`~optprune.verification.adversarial.max_margin` with ``decision=True``, where no attack
    runs first). It changes how fast an answer comes, never what counts as one.
    """

    delta: float = DECISION_DELTA
    mip_gap: float = 0.0
    mip_abs_gap: float = 1e-7
    feasibility_tol: float = 1e-7
    integrality_tol: float = 1e-6
    focus: str | None = "bound"

    def __post_init__(self) -> None:
        if self.focus is not None and self.focus not in FOCUSES:
            raise ValueError(f"focus must be None or one of {', '.join(map(repr, FOCUSES))}; got {self.focus!r}")
        if not (self.delta > 0):  # +inf: the solver cannot resolve anything, so no MIP proof is possible
            raise ValueError(f"delta must be a number > 0, got {self.delta}")
        if self.mip_abs_gap >= self.delta:
            raise ValueError(f"mip_abs_gap ({self.mip_abs_gap}) must be below delta ({self.delta})")


DECISION_TOLERANCES = DecisionTolerances()


def solver_resolution(net: Network, bounds, C: np.ndarray, tol: DecisionTolerances = DECISION_TOLERANCES
                      ) -> np.ndarray:
    r"""Per row of ``C`` (on the output): how much a MIP solver's tolerances can move ``C y``, to first order.

    A point the solver accepts may leave each input's box by ``feasibility_tol``,
    violate each row by ``feasibility_tol`` (the pre-activation row and the
    ReLU's rows), and, at an unstable ReLU (a binary in the big-M encoding),
    sit at ``integrality_tol`` from 0 or 1, which lets the ReLU's output move by
    that fraction of the big-M constant ``max(-l, u)``. Each of these moves a
    neuron's output; the specification moves by that times the neuron's
    coefficient in the CROWN back-substitution of ``C`` (``|mu_j|``, the
    sensitivity the bounds themselves use):

    .. math:: r = \epsilon_f (1 + \|\lambda_0\|_1) + \sum_j |\mu_j|^\top
              (2 \epsilon_f + [l_j < 0 < u_j]\, \epsilon_i \max(-l_j, u_j)).

    On a network with weights of 1e4 whose property hinges on 1e-9 (Zombori et
    al. 2021), ``r`` is orders of magnitude above the margin, so no MIP proof
    is taken; on mnistfc 256x2 it is about 1e-4. A first-order estimate, not a
    worst case: it makes a solver's answer count only where the solver can
    resolve it.
    """
    import torch

    from optprune.verification.crown import TorchNetwork, one_thread, spec_bound, with_linear_output

    feas, integ = tol.feasibility_tol, tol.integrality_tol
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    net, bounds = with_linear_output(net, list(bounds))
    tn = TorchNetwork.from_network(net)
    box = torch.zeros(1, net.input_size, dtype=torch.float64)
    lowers = [torch.as_tensor(lo, dtype=torch.float64).unsqueeze(0) for lo, _ in bounds[:-1]]
    uppers = [torch.as_tensor(hi, dtype=torch.float64).unsqueeze(0) for _, hi in bounds[:-1]]
    with one_thread(), torch.no_grad():
        sb = spec_bound(tn, box, box, lowers, uppers, None, torch.as_tensor(C).unsqueeze(0),
                        torch.zeros(1, C.shape[0], dtype=torch.float64), magnitude=False)
    total = feas * (1.0 + sb.lam0[0].abs().sum(-1).numpy())
    for j, mu in enumerate(sb.mu):
        if mu is None:
            continue
        lo, hi = bounds[j]
        move = np.full(lo.shape, 2.0 * feas)
        if tn.relu[j]:
            move = move + np.where((lo < 0) & (hi > 0), integ * np.maximum(-lo, hi), 0.0)
        total = total + mu[0].abs().numpy() @ move
    return total + feas


def widened(tol: DecisionTolerances, resolution) -> DecisionTolerances:
    """``tol`` with ``delta`` raised by the solver's resolution (the largest of ``resolution``; module doc)."""
    extra = float(np.max(resolution, initial=0.0))
    if not math.isfinite(extra):
        extra = math.inf
    return replace(tol, delta=tol.delta + extra) if extra > 0 else tol


def _solver_options(time_limit: float, threads: int | None, tol: DecisionTolerances, **kw):
    return SolveOptions(
        time_limit=max(float(time_limit), 0.01), threads=threads, mip_gap=tol.mip_gap,
        mip_abs_gap=tol.mip_abs_gap, feasibility_tol=tol.feasibility_tol, integrality_tol=tol.integrality_tol,
        **kw,
    )


def decision_options(time_limit: float, threads: int | None = None, tol: DecisionTolerances = DECISION_TOLERANCES):
    """Options of a decision MIP ``max s``: is ``s >= 0`` reachable?

    The cutoff row ``s >= -delta`` prunes every node that cannot reach the
    target; the solve stops as soon as an incumbent reaches 0 (a candidate
    counterexample) or the dual bound falls below ``-delta`` (rule (c)).
    The solver's effort follows ``tol.focus`` (:class:`DecisionTolerances`).
    """
    delta = tol.delta

    def stop(progress) -> bool:
        return (math.isfinite(progress.primal) and progress.primal >= 0.0) or progress.bound < -delta

    return _solver_options(time_limit, threads, tol, cutoff=-delta, stop_rule=stop, focus=tol.focus)


def optimize_options(time_limit: float, threads: int | None = None, mip_gap: float | None = None,
                     tol: DecisionTolerances = DECISION_TOLERANCES):
    """Options of an optimisation MIP whose bound may still serve as a proof (explicit tolerances, no cutoff)."""
    if mip_gap is not None:
        tol = replace(tol, mip_gap=mip_gap)
    return _solver_options(time_limit, threads, tol)


def slack_verdict(status: str, bound: float | None, *, cutoff: bool, delta: float = DECISION_DELTA) -> str:
    """``unsat`` or ``unknown`` from one MIP solve of ``max s`` (a ``sat`` needs a checked point).

    ``status`` is the shared status word (``optimal``, ``infeasible``, ...),
    ``bound`` the solver's dual bound on ``s`` (None / nan when unknown),
    ``cutoff`` whether the model carried the row ``s >= -delta``.
    Raises :class:`UnsoundBoundsError` for INFEASIBLE without a cutoff.
    """
    if status == "infeasible":
        if not math.isfinite(delta):
            return "unknown"  # no cutoff row could be posed: the solver resolves nothing on this network
        if not cutoff:
            raise UnsoundBoundsError(
                "the MIP is infeasible without an objective cutoff: the per-neuron bounds or the solver's "
                "numerics exclude every input, so its answer proves nothing"
            )
        return "unsat"  # rule (b); the caller has checked the encoding (check_encoding)
    if bound is not None and math.isfinite(bound) and bound < -delta:
        return "unsat"  # rule (c)
    return "unknown"


def proves_nonpositive(entry: dict, *, delta: float = DECISION_DELTA) -> bool:
    """True when a per-target record (``status``, ``bound``) proves its margin below zero.

    ``status == "bounds"`` means rule (a) decided it (the record's ``bound`` is
    the negative linear bound); ``"infeasible"`` is accepted only when the
    record says it was solved under a cutoff (``cutoff: true``).
    """
    status, bound = entry.get("status"), entry.get("bound")
    if status == "bounds":
        return bound is not None and bound < 0
    if status == "infeasible":
        return bool(entry.get("cutoff"))
    return bound is not None and math.isfinite(bound) and bound < -delta


def check_bounds_contain(net: Network, bounds, x: np.ndarray) -> None:
    """Raise :class:`UnsoundBoundsError` naming the layer and neuron if ``x``'s pre-activations leave ``bounds``."""
    pre = net.forward(np.asarray(x, dtype=np.float64).reshape(-1), return_all=True)
    for k, ((lo, hi), z) in enumerate(zip(bounds, pre)):
        z = np.asarray(z, dtype=np.float64).reshape(-1)
        bad = np.flatnonzero((z < lo) | (z > hi))
        if bad.size:
            i = int(bad[0])
            raise UnsoundBoundsError(
                f"unsound bounds: layer {k} ({net.layers[k].name!r}) neuron {i} has pre-activation {z[i]!r} at a "
                f"point of the input region, outside its bounds [{lo[i]!r}, {hi[i]!r}] "
                f"({bad.size} neurons in this layer)"
            )


def check_encoding(net: Network, bounds, model, enc, x: np.ndarray, tol: float = 1e-6) -> None:
    """Check that ``model`` (a big-M encoding of ``net`` under ``bounds``) accepts the forward pass of ``x``.

    Run before an INFEASIBLE answer is trusted (rule (b)). ``model`` must be the
    model *without* the objective cutoff. Raises :class:`UnsoundBoundsError`
    naming the first neuron whose bounds exclude ``x``, or the largest
    violated row when the bounds hold but the model still rejects the point.
    """
    check_bounds_contain(net, bounds, x)
    v = forward_assignment(net, enc, bounds, x, model.n_vars)
    free = np.ones(model.n_vars, dtype=bool)
    free[_encoding_columns(enc)] = False
    violation = _violation_with_free_columns(model, v, free)
    if violation > tol:
        raise UnsoundBoundsError(
            f"the MILP rejects the forward pass of a point of the input region (violation {violation:.3g} > {tol}); "
            "its infeasibility would prove nothing"
        )


def _encoding_columns(enc) -> np.ndarray:
    parts = [enc.input_idx] + [idx[idx >= 0] for idx in enc.neuron_idx] + list(enc.binary_idx)
    return np.concatenate(parts)


def _violation_with_free_columns(model, v: np.ndarray, free: np.ndarray) -> float:
    """Largest violation of ``model`` by ``v``, with the columns flagged ``free`` chosen as well as possible.

    With no free column this is :meth:`MILP.max_violation`; otherwise the free
    columns (a spec's auxiliary slack, an L1 ball's split) are found by one
    small feasibility LP with every other column fixed at ``v``.
    """
    if not free.any():
        return model.max_violation(v)
    fixed = ~free
    col_violation = float(np.max(np.maximum(model.col_lower[fixed] - v[fixed], v[fixed] - model.col_upper[fixed]),
                                 initial=0.0))
    if col_violation > 0:
        return col_violation
    lo, hi = model.col_lower.copy(), model.col_upper.copy()
    lo[fixed] = hi[fixed] = v[fixed]
    probe = MILP(np.zeros(model.n_vars), model.A, model.row_lower, model.row_upper, lo, hi, None, Sense.MINIMIZE)
    sol = get_backend("highs").solve(probe, SolveOptions(time_limit=30.0))
    accepted = sol.status == Status.OPTIMAL and sol.x is not None and probe.max_violation(sol.x) <= 1e-6
    return 0.0 if accepted else math.inf
