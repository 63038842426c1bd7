"""Adversarial examples by MIP: the max-margin example over an L-inf ball and the minimal distortion.

:func:`max_margin` maximises ``y_t - y_label`` over ``||x - x0||_inf <= eps``
(one big-M MILP per target; with ``decision=True`` it stops at the first
positive margin or at a proof). :func:`min_distortion` is MIPVerify's minimal
adversarial distortion (Tjeng et al. 2019) in L-inf or L1. Both report
proof-grade bounds under the rules of :mod:`optprune.verification.verdicts`,
widened by the solver's resolution on the network, and every point is
measured on the reference network.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from optprune.errors import InvalidParameterError, SolverError
from optprune.formulations.relu_milp import build_min_distortion_milp, build_spec_milp
from optprune.network import Network
from optprune.solvers import Status, get_backend
from optprune.verification.api import no_more_keywords, renamed_keyword
from optprune.verification.bounds import DEFAULT_BOUNDS, Bounds, compute_bounds, count_unstable, linear_upper_bound
from optprune.verification.engines import cutoff_infeasible
from optprune.verification.verdicts import (
    DECISION_TOLERANCES,
    DecisionTolerances,
    check_bounds_contain,
    check_encoding,
    decision_options,
    optimize_options,
    proves_nonpositive,
    solver_resolution,
    widened,
)
from optprune.verification.vnnlib import Conjunction, VNNLibCase, VNNLibProperty

__all__ = ["AdversarialResult", "robustness_property", "max_margin", "min_distortion"]


@dataclass
class AdversarialResult:
    """Max-margin (or minimal-distortion) adversarial example for one input.

    ``bound`` is a proof-grade bound only: for max-margin, an upper bound on
    the best margin (linear bounds, a MIP dual bound, or ``-delta`` for an
    infeasible decision MIP); for min-distortion, a lower bound on the
    distortion taken from dual bounds only, never from an incumbent.
    ``proven_robust`` applies :mod:`optprune.verification.verdicts` to every target and is
    False whenever the result was computed on a surrogate of the reference.
    """

    label: int
    target: int | None  # best target class
    objective: float  # margin y_t - y_label on the reference (or distortion)
    bound: float
    status: str
    x: np.ndarray | None
    output: np.ndarray | None
    per_target: dict = field(default_factory=dict)
    stages: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "mip": 0.0, "build": 0.0})
    n_unstable: int = 0
    n_binaries: int = 0
    time_s: float = 0.0
    targets: list = field(default_factory=list)  # every target class the query covers
    on_reference: bool = True  # False when computed on a surrogate of the reference network
    delta: float = DECISION_TOLERANCES.delta
    message: str = ""

    @property
    def is_adversarial(self) -> bool:
        return self.x is not None and self.output is not None and int(np.argmax(self.output)) != self.label

    @property
    def proven_robust(self) -> bool:
        """Every target's margin is proven below zero by a rule of :mod:`optprune.verification.verdicts`."""
        return (
            self.on_reference and bool(self.targets) and not self.is_adversarial
            and all(t in self.per_target and proves_nonpositive(self.per_target[t], delta=self.delta)
                    for t in self.targets)
        )

    def to_dict(self) -> dict:
        return {
            "label": self.label,
            "target": self.target,
            "objective": self.objective,
            "bound": self.bound,
            "status": self.status,
            "adversarial": self.is_adversarial,
            "proven_robust": self.proven_robust,
            "predicted": None if self.output is None else int(np.argmax(self.output)),
            "per_target": self.per_target,
            "stages": self.stages,
            "unstable_neurons": self.n_unstable,
            "binaries": self.n_binaries,
            "time_s": self.time_s,
            "message": self.message,
        }


def _ball(x0: np.ndarray, eps: float, domain: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if eps < 0:
        raise InvalidParameterError(f"eps must be >= 0, got {eps}")
    return np.clip(x0 - eps, *domain), np.clip(x0 + eps, *domain)


def robustness_property(net: Network, x0, label: int, eps: float, *, target: int | None = None,
                        domain: tuple[float, float] = (0.0, 1.0)) -> VNNLibProperty:
    """The VNN-LIB-style property "some target class scores >= the label" over the eps-ball.

    Deciding it (:func:`verify_property`) answers "is there an adversarial
    example?" with the attack-first, early-stopping pipeline.
    """
    lo, hi = _ball(x0, eps, domain)
    conjs = []
    for t in _targets(net, label, target):
        C = np.zeros((1, net.output_size))
        C[0, t], C[0, label] = 1.0, -1.0
        conjs.append(Conjunction(C, np.zeros(1)))
    case = VNNLibCase(lo, hi, tuple(conjs))
    return VNNLibProperty(net.input_size, net.output_size, (case,), name=f"robust_{label}_{eps}")


def _margin_bound(sol, decision: bool, delta: float, resolution: float) -> float:
    """An upper bound on one target's margin from a solve (``inf`` when none is known).

    Under the decision cutoff (margin >= -delta) an infeasible model proves the
    margin is below ``-delta``; otherwise only the dual bound counts. Either is
    the solver's word on its model, which may differ from the network's margin
    by the solver's ``resolution`` (:func:`optprune.verification.verdicts.solver_resolution`):
    that is added.
    """
    if decision and cutoff_infeasible(sol):
        return -delta + resolution
    return sol.bound + resolution if math.isfinite(sol.bound) else math.inf


def _infeasible_without_cutoff(solver: str, what: str) -> None:
    raise SolverError(
        f"backend {solver!r} reports the {what} MIP infeasible although it accepts the forward pass of the clean "
        "input: numerical trouble, not a proof; try another backend or tighter tolerances"
    )


def _target_rows(net: Network, label: int, t_cls: int) -> np.ndarray:
    C = np.zeros((1, net.output_size))
    C[0, t_cls], C[0, label] = 1.0, -1.0
    return C


def _targets(net: Network, label: int, target: int | None) -> list[int]:
    if not 0 <= label < net.output_size:
        raise InvalidParameterError(f"label must be in [0, {net.output_size - 1}], got {label}")
    if target is not None:
        if not 0 <= target < net.output_size or target == label:
            raise InvalidParameterError(
                f"target must be a class in [0, {net.output_size - 1}] other than {label}, got {target}"
            )
        return [target]
    return [t for t in range(net.output_size) if t != label]


def max_margin(
    net: Network,
    x0,
    label: int,
    eps: float,
    *,
    target: int | None = None,
    solver: str = "highs",
    time_limit: float = 60.0,
    bound_method: str = DEFAULT_BOUNDS,
    domain: tuple[float, float] = (0.0, 1.0),
    decision: bool = False,
    mip_gap: float | None = None,
    threads: int | None = None,
    reference: Network | None = None,
    precomputed_bounds: Bounds | None = None,
    tolerances: DecisionTolerances = DECISION_TOLERANCES,
    **renamed,
) -> AdversarialResult:
    """Maximise ``y_t - y_label`` over ``||x - x0||_inf <= eps`` intersected with ``domain``.

    For every target ``t != label`` when ``target`` is None (one MILP each; the
    best is returned). With ``decision=True`` each MIP stops as soon as a
    positive margin is found or the bound proves the margin below ``-delta``
    (and the loop stops at the first adversarial example). Targets whose linear
    upper bound is negative need no MIP. Every point is clipped to the ball and
    its margin measured on ``reference`` (default ``net``); with a reference
    other than ``net``, no robustness is claimed for it.
    """
    bound_method = renamed_keyword(renamed, "bounds", "bound_method", bound_method)
    no_more_keywords(renamed, "max_margin")
    start = time.perf_counter()
    deadline = start + time_limit
    lo, hi = _ball(x0, eps, domain)
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    on_reference = reference is None or reference is net
    reference = net if reference is None else reference
    res = AdversarialResult(label=label, target=None, objective=-math.inf, bound=-math.inf, status="optimal", x=None,
                            output=None, on_reference=on_reference, delta=tolerances.delta)
    t = time.perf_counter()
    b = precomputed_bounds
    if b is None:
        b = compute_bounds(net, lo, hi, bound_method, time_budget=0.25 * time_limit)
    res.stages["bounds"] = time.perf_counter() - t
    check_bounds_contain(net, b, np.clip(x0, lo, hi))  # every proof below rests on these bounds
    res.n_unstable = count_unstable(net, b)
    backend = get_backend(solver)
    backend.require()
    targets = _targets(net, label, target)
    res.targets = list(targets)
    for n_done, t_cls in enumerate(targets):
        C = _target_rows(net, label, t_cls)
        ub = float(linear_upper_bound(net, b, C, 0.0, lo, hi)[0])
        if decision and ub < 0:
            res.per_target[t_cls] = {"status": "bounds", "objective": None, "bound": ub, "time_s": 0.0, "cutoff": False}
            res.bound = max(res.bound, ub)
            continue
        t = time.perf_counter()
        model, enc = build_spec_milp(net, b, lo, hi, C, 0.0, name=f"max_margin_t{t_cls}")
        res.stages["build"] += time.perf_counter() - t
        res.n_binaries = enc.n_binaries
        t = time.perf_counter()
        share = (deadline - time.perf_counter()) / (len(targets) - n_done)  # fair share of what is left
        resolution = float(solver_resolution(net, b, C, tolerances)[0])
        tol_t = widened(tolerances, resolution)
        if decision:
            options = decision_options(share, threads, tol_t)
        else:
            options = optimize_options(share, threads, mip_gap, tolerances)
        sol = backend.solve(model, options)
        res.stages["mip"] += time.perf_counter() - t
        infeasible = cutoff_infeasible(sol)
        bound = _margin_bound(sol, decision, tol_t.delta, resolution)
        res.per_target[t_cls] = {"status": "infeasible" if infeasible else sol.status.value, "objective": sol.objective,
                                 "bound": bound, "solver_bound": sol.bound, "resolution": resolution,
                                 "time_s": sol.time_s, "cutoff": decision}
        if sol.status == Status.ERROR:
            raise SolverError(f"backend {solver!r} failed: {sol.message}")
        if infeasible:
            check_encoding(net, b, model, enc, x0)  # names the neuron if the bounds are unsound
            if not decision:
                _infeasible_without_cutoff(solver, "max-margin")
        res.bound = max(res.bound, bound)
        found = sol.x is not None and sol.objective >= 0
        if not (sol.status == Status.OPTIMAL or (decision and (found or bound < -tolerances.delta))):
            res.status = "time_limit" if sol.status in (Status.TIME_LIMIT, Status.FEASIBLE) else sol.status.value
        if sol.x is not None:
            x = np.clip(model.group("input", sol.x), lo, hi)
            y = reference.forward(x)
            margin = float(y[t_cls] - y[label])
            if margin > res.objective:
                res.objective, res.target, res.x, res.output = margin, t_cls, x, y
        if decision and res.is_adversarial:
            break
        if time.perf_counter() > deadline:
            res.status = "time_limit"
            break
    if not on_reference:
        res.message = "computed on a surrogate of the reference network: bounds do not apply to the reference"
    res.time_s = time.perf_counter() - start
    return res


def min_distortion(
    net: Network,
    x0,
    label: int,
    *,
    target: int | None = None,
    norm: str = "linf",
    solver: str = "highs",
    time_limit: float = 60.0,
    domain: tuple[float, float] = (0.0, 1.0),
    max_eps: float | None = None,
    margin: float = 1e-4,
    bound_method: str = DEFAULT_BOUNDS,
    threads: int | None = None,
    reference: Network | None = None,
    tolerances: DecisionTolerances = DECISION_TOLERANCES,
    **renamed,
) -> AdversarialResult:
    """MIPVerify's minimal adversarial distortion (L-inf or L1) for each target (best returned).

    ``bound`` is a lower bound on the smallest distortion at which some target
    scores *at least* the label (margin ``>= 0``), from dual bounds only (an
    incumbent is an upper bound, never a lower one): each target's MIP asks
    for a margin ``>= -(delta + resolution)``
    (:func:`optprune.verification.verdicts.solver_resolution`), a relaxation of margin
    ``>= 0`` on the network, so its dual bound is below the true minimum. When
    that MIP's point is not adversarial on ``reference`` (default ``net``), a
    second MIP asks for margin ``>= margin + resolution`` to find one; the
    returned point (``objective``) is always adversarial on ``reference``.

    ``max_eps`` restricts the search to an L-inf ball (much tighter bounds,
    as MIPVerify does): then no adversarial example within the ball means a
    bound of ``max_eps`` (every point outside is farther in either norm), and
    the bound never exceeds ``max_eps``. Without ``max_eps`` the whole domain
    is the box and an infeasible MIP gives ``inf`` (no adversarial example at
    all), trusted only after the model is checked to accept ``x0``'s forward pass.
    """
    bound_method = renamed_keyword(renamed, "bounds", "bound_method", bound_method)
    no_more_keywords(renamed, "min_distortion")
    start = time.perf_counter()
    deadline = start + time_limit
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    if max_eps is not None:
        lo, hi = _ball(x0, max_eps, domain)
    else:
        lo, hi = np.full(x0.size, domain[0]), np.full(x0.size, domain[1])
    cap = math.inf if max_eps is None else float(max_eps)
    on_reference = reference is None or reference is net
    reference = net if reference is None else reference
    res = AdversarialResult(label=label, target=None, objective=math.inf, bound=math.inf, status="optimal", x=None,
                            output=None, on_reference=on_reference, delta=tolerances.delta)
    t = time.perf_counter()
    b = compute_bounds(net, lo, hi, bound_method, time_budget=0.25 * time_limit)
    res.stages["bounds"] = time.perf_counter() - t
    check_bounds_contain(net, b, np.clip(x0, lo, hi))
    res.n_unstable = count_unstable(net, b)
    backend = get_backend(solver)
    backend.require()
    lower_bounds = []
    targets = _targets(net, label, target)
    res.targets = list(targets)

    def solve_at(C, row_margin: float):
        model, enc = build_min_distortion_milp(net, b, x0, lo, hi, C, 0.0, norm=norm, margin=row_margin)
        res.n_binaries = enc.n_binaries
        t = time.perf_counter()
        sol = backend.solve(model, optimize_options(deadline - time.perf_counter(), threads, None, tolerances))
        res.stages["mip"] += time.perf_counter() - t
        if sol.status == Status.ERROR:
            raise SolverError(f"backend {solver!r} failed: {sol.message}")
        return model, sol

    def adversarial_point(model, sol):
        if sol.x is None:
            return None
        x = np.clip(model.group("input", sol.x), lo, hi)
        y = reference.forward(x)
        return (x, y) if int(np.argmax(y)) != label else None

    for t_cls in targets:
        C = _target_rows(net, label, t_cls)
        resolution = float(solver_resolution(net, b, C, tolerances)[0])
        model, sol = solve_at(C, -(tolerances.delta + resolution))
        res.per_target[t_cls] = {"status": sol.status.value, "objective": sol.objective, "bound": sol.bound,
                                 "resolution": resolution, "time_s": sol.time_s}
        if sol.status == Status.INFEASIBLE:
            # The margin row acts as the cutoff; trust it only if the rest of the model accepts x0's forward pass.
            spec, spec_enc = build_spec_milp(net, b, lo, hi, C, 0.0)
            check_encoding(net, b, spec, spec_enc, np.clip(x0, lo, hi))
            lower_bounds.append(cap)  # nothing adversarial inside the ball: the nearest is at least max_eps away
            continue
        lower_bounds.append(min(sol.bound, cap) if math.isfinite(sol.bound) else 0.0)
        if sol.status != Status.OPTIMAL:
            res.status = "time_limit"
        hit = adversarial_point(model, sol)
        if hit is None and sol.x is not None and time.perf_counter() < deadline:
            model, sol2 = solve_at(C, margin + resolution)  # a point with room for the solver's resolution
            res.per_target[t_cls]["point_status"] = sol2.status.value
            hit = adversarial_point(model, sol2)
        if hit is not None:
            x, y = hit
            distortion = float(np.max(np.abs(x - x0)) if norm == "linf" else np.sum(np.abs(x - x0)))
            if distortion < res.objective:
                res.objective, res.target, res.x, res.output = distortion, t_cls, x, y
        elif sol.x is not None:
            res.message = f"target {t_cls}: the MIP's point is not adversarial on the reference network"
        if time.perf_counter() > deadline:
            res.status = "time_limit"
            break
    res.bound = min(lower_bounds) if lower_bounds and len(lower_bounds) == len(targets) else 0.0
    if not on_reference:
        res.bound = 0.0
        res.message = "computed on a surrogate of the reference network: no lower bound applies to the reference"
    res.time_s = time.perf_counter() - start
    return res
