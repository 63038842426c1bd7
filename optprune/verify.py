"""Adversarial MIP verification of ReLU networks: VNN-LIB properties and adversarial examples.

The pipeline for a decision query (is the unsafe region of a property empty?):

1. bounds over the input box (``optprune.bounds``: interval, linear, obbt);
2. attack first: a projected-gradient attack (``optprune.attack``); a point
   it finds is a ``sat`` verdict once re-checked;
3. each output conjunction whose linear upper bound is already negative is
   ruled out without a MIP;
4. the others are solved as max-slack MILPs (``formulations.relu_milp``) that
   stop as soon as an incumbent reaches slack 0 (a counterexample) or the dual
   bound falls below 0 (no counterexample for that conjunction).

Every ``sat`` is re-checked by a float64 forward pass of the *reference*
network (the original model; for a pruned surrogate, the dense one): the point
must lie in the input box and satisfy the output condition. A point that fails
the check is never reported as ``sat``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optprune.attack import pgd_attack
from optprune.bounds import BOUND_METHODS, DEFAULT_BOUNDS, Bounds, compute_bounds, count_unstable, linear_upper_bound
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations.relu_milp import build_min_distortion_milp, build_spec_milp, obbt_bounds
from optprune.network import Network
from optprune.solvers import SolveOptions, Status, get_backend
from optprune.vnnlib import Conjunction, VNNLibCase, VNNLibProperty, read_vnnlib

__all__ = [
    "DEFAULT_BOUNDS",
    "VerificationResult",
    "AdversarialResult",
    "verify_property",
    "verify_vnnlib",
    "max_margin",
    "min_distortion",
    "check_counterexample",
    "format_vnncomp_result",
    "robustness_property",
]

CHECK_TOL = 1e-6  # box tolerance of the counterexample check (inputs)


@dataclass
class VerificationResult:
    """Verdict ``sat`` (counterexample found and checked), ``unsat`` (proven robust) or ``unknown``."""

    verdict: str
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    time_s: float = 0.0
    stages: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "mip": 0.0})
    n_unstable: int = 0
    n_binaries: int = 0
    decided_by: str = ""  # attack, bounds, mip
    mips_solved: int = 0
    message: str = ""
    conjunctions: list = field(default_factory=list)  # per output conjunction: how it was decided

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "time_s": round(self.time_s, 4),
            "counterexample": None if self.counterexample is None else self.counterexample.tolist(),
            "output": None if self.output is None else self.output.tolist(),
            "stages": {k: round(v, 4) for k, v in self.stages.items()},
            "unstable_neurons": self.n_unstable,
            "binaries": self.n_binaries,
            "decided_by": self.decided_by,
            "mips_solved": self.mips_solved,
            "message": self.message,
            "conjunctions": self.conjunctions,
        }


def check_counterexample(reference: Network | Callable, case: VNNLibCase, x: np.ndarray) -> tuple[bool, np.ndarray]:
    """Float64 forward pass of ``reference``: is ``x`` in the box and its output in the unsafe set?"""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    forward = reference.forward if isinstance(reference, Network) else reference
    y = np.asarray(forward(x), dtype=np.float64).reshape(-1)
    return case.violated_by(x, y, tol=CHECK_TOL), y


def _options(time_left: float, threads: int | None, target: float | None, mip_gap: float | None) -> SolveOptions:
    """Decision queries (``target`` set) also get an objective cutoff just below the target, so the
    solver prunes every node whose bound cannot reach it instead of only stopping on the global bound."""
    cutoff = None if target is None else target - 1e-9
    return SolveOptions(time_limit=max(time_left, 0.01), threads=threads, target=target, cutoff=cutoff, mip_gap=mip_gap)


def _verify_case(
    net: Network,
    case: VNNLibCase,
    reference,
    solver: str,
    deadline: float,
    bounds_method: str,
    attack: bool,
    threads: int | None,
    result: VerificationResult,
    obbt_budget: float | None,
) -> str:
    # Cheap bounds first: OBBT is paid for only when the bounds and the attack leave MIPs to solve.
    t = time.perf_counter()
    bounds = compute_bounds(net, case.lower, case.upper, "interval" if bounds_method == "interval" else "linear")
    result.stages["bounds"] += time.perf_counter() - t

    def conjunction_upper_bounds(bounds) -> list[float]:
        """Conjunctions whose back-substituted upper bound is negative cannot hold."""
        return [float(np.min(linear_upper_bound(net, bounds, c.C, c.d, case.lower, case.upper))) for c in case.disjuncts]

    upper = conjunction_upper_bounds(bounds)
    open_idx = [i for i, u in enumerate(upper) if u >= 0]
    if not open_idx:
        result.n_unstable = max(result.n_unstable, count_unstable(bounds, net))
        result.decided_by = result.decided_by or "bounds"
        return "unsat"

    order = open_idx
    if attack:
        t = time.perf_counter()
        start = np.clip((case.lower + case.upper) / 2, case.lower, case.upper)
        att = pgd_attack(net, case.lower, case.upper, [case.disjuncts[i] for i in open_idx], start=start,
                         time_limit=max(1.0, 0.1 * (deadline - time.perf_counter())))
        result.stages["attack"] += time.perf_counter() - t
        if att.found:
            ok, y = check_counterexample(reference, case, att.x)
            if ok:
                result.counterexample, result.output, result.decided_by = att.x, y, "attack"
                return "sat"
        # Most promising conjunction first: the MIP that is likeliest to find a counterexample fast.
        order = [open_idx[j] for j in np.argsort(-att.best_slacks)]

    if bounds_method == "obbt":
        t = time.perf_counter()
        bounds = obbt_bounds(net, case.lower, case.upper, bounds, time_budget=obbt_budget)
        result.stages["bounds"] += time.perf_counter() - t
        upper = conjunction_upper_bounds(bounds)
        order = [i for i in order if upper[i] >= 0]
    result.n_unstable = max(result.n_unstable, count_unstable(bounds, net))

    verdict = "unsat"
    for i in order:
        time_left = deadline - time.perf_counter()
        if time_left <= 0:
            return "unknown"
        conj = case.disjuncts[i]
        t = time.perf_counter()
        model, enc = build_spec_milp(net, bounds, case.lower, case.upper, conj.C, conj.d, spec_upper=upper[i])
        result.n_binaries = max(result.n_binaries, enc.n_binaries)
        sol = get_backend(solver).solve(model, _options(time_left, threads, 0.0, None))
        result.stages["mip"] += time.perf_counter() - t
        result.mips_solved += 1
        result.conjunctions.append(
            {"index": i, "linear_upper_bound": upper[i], "status": sol.status.value, "objective": sol.objective,
             "bound": sol.bound, "time_s": round(sol.time_s, 4), "message": sol.message}
        )
        if sol.status == Status.ERROR:
            _raise_solver_error(solver, sol.message)
        if sol.x is not None and sol.objective >= 0:
            x = model.group("input", sol.x)
            ok, y = check_counterexample(reference, case, x)
            if not ok and attack:
                # Numerical slack of the MIP: polish locally with the attack from its point.
                polish = pgd_attack(net, case.lower, case.upper, [conj], start=x, restarts=1, steps=50)
                if polish.found:
                    x = polish.x
                    ok, y = check_counterexample(reference, case, x)
            if ok:
                result.counterexample, result.output, result.decided_by = x, y, "mip"
                return "sat"
            result.message = f"conjunction {i}: MIP point failed the forward-pass check (slack {conj.slack(y):.2e})"
            verdict = "unknown"
            continue
        if sol.status == Status.INFEASIBLE or (not math.isnan(sol.bound) and sol.bound < 0):
            continue  # proven: this conjunction cannot hold
        if sol.status == Status.OPTIMAL and sol.objective < 0:
            continue
        verdict = "unknown"
    if verdict == "unsat":
        result.decided_by = "mip" if result.mips_solved else "bounds"
    return verdict


def _raise_solver_error(solver: str, message: str) -> None:
    from optprune.errors import SolverError

    raise SolverError(f"backend {solver!r} failed: {message}")


def verify_property(
    net: Network,
    prop: VNNLibProperty,
    *,
    solver: str = "highs",
    timeout: float = 60.0,
    bounds: str = DEFAULT_BOUNDS,
    attack: bool = True,
    reference: Network | Callable | None = None,
    threads: int | None = None,
    obbt_budget: float | None = None,
) -> VerificationResult:
    """Decide a parsed VNN-LIB property on ``net`` (see module doc).

    ``reference`` is the model counterexamples are checked on (default: ``net``).
    """
    if bounds not in BOUND_METHODS:
        raise InvalidParameterError(f"bounds must be one of {BOUND_METHODS}, got {bounds!r}")
    if prop.n_inputs != net.input_size or prop.n_outputs != net.output_size:
        raise ShapeMismatchError(
            f"property has {prop.n_inputs} inputs / {prop.n_outputs} outputs; "
            f"network {net.name!r} has {net.input_size} / {net.output_size}"
        )
    get_backend(solver).require()
    start = time.perf_counter()
    deadline = start + timeout
    budget = obbt_budget if obbt_budget is not None else 0.25 * timeout
    result = VerificationResult(verdict="unsat")
    reference = net if reference is None else reference
    verdicts = []
    for case in prop.cases:
        v = _verify_case(net, case, reference, solver, deadline, bounds, attack, threads, result, budget)
        verdicts.append(v)
        if v == "sat":
            break
    result.verdict = "sat" if "sat" in verdicts else ("unknown" if "unknown" in verdicts else "unsat")
    result.time_s = time.perf_counter() - start
    return result


def verify_vnnlib(
    network: Network | str | os.PathLike,
    vnnlib_path: str | os.PathLike,
    **kwargs,
) -> VerificationResult:
    """Verify the property in ``vnnlib_path`` on ``network`` (a Network or an .onnx / .pt path)."""
    if not isinstance(network, Network):
        from optprune.io import load_network

        network = load_network(Path(network))
    prop = read_vnnlib(vnnlib_path, network.input_size, network.output_size)
    return verify_property(network, prop, **kwargs)


def format_vnncomp_result(result: VerificationResult) -> str:
    """The VNN-COMP result file: ``sat``/``unsat``/``unknown`` then ``((X_i v) ... (Y_j v))``."""
    if result.verdict != "sat" or result.counterexample is None:
        return result.verdict + "\n"
    parts = [f"(X_{i} {v!r})" for i, v in enumerate(map(float, result.counterexample))]
    parts += [f"(Y_{j} {v!r})" for j, v in enumerate(map(float, result.output))]
    return "sat\n(" + "\n".join(parts) + ")\n"


# ---------------------------------------------------------------------------- adversarial examples


@dataclass
class AdversarialResult:
    """Max-margin (or minimal-distortion) adversarial example for one input."""

    label: int
    target: int | None  # best target class
    objective: float  # margin y_t - y_label (or distortion)
    bound: float
    status: str
    x: np.ndarray | None
    output: np.ndarray | None
    per_target: dict = field(default_factory=dict)
    stages: dict = field(default_factory=lambda: {"bounds": 0.0, "attack": 0.0, "mip": 0.0, "build": 0.0})
    n_unstable: int = 0
    n_binaries: int = 0
    time_s: float = 0.0

    @property
    def is_adversarial(self) -> bool:
        return self.x is not None and self.output is not None and int(np.argmax(self.output)) != self.label

    @property
    def proven_robust(self) -> bool:
        """Every target's margin is bounded below zero (for max-margin results)."""
        return math.isfinite(self.bound) and self.bound < 0

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
    return VNNLibProperty(net.input_size, net.output_size, (VNNLibCase(lo, hi, tuple(conjs)),), name=f"robust_{label}_{eps}")


def _margin_bound(sol, decision: bool) -> float:
    """A valid upper bound on one target's margin from a solve (``inf`` when none is known).

    Under the decision cutoff (objective >= -1e-9) an infeasible model proves
    every margin is below the cutoff.
    """
    if decision and sol.status == Status.INFEASIBLE:
        return -1e-9
    if not math.isnan(sol.bound):
        return sol.bound
    return sol.objective if sol.status == Status.OPTIMAL else math.inf


def _targets(net: Network, label: int, target: int | None) -> list[int]:
    if not 0 <= label < net.output_size:
        raise InvalidParameterError(f"label must be in [0, {net.output_size - 1}], got {label}")
    if target is not None:
        if not 0 <= target < net.output_size or target == label:
            raise InvalidParameterError(f"target must be a class in [0, {net.output_size - 1}] other than {label}, got {target}")
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
    bounds: str = DEFAULT_BOUNDS,
    domain: tuple[float, float] = (0.0, 1.0),
    decision: bool = False,
    mip_gap: float | None = None,
    threads: int | None = None,
    reference: Network | None = None,
    precomputed_bounds: Bounds | None = None,
) -> AdversarialResult:
    """Maximise ``y_t - y_label`` over ``||x - x0||_inf <= eps`` intersected with ``domain``.

    For every target ``t != label`` when ``target`` is None (one MILP each; the
    best is returned). With ``decision=True`` each MIP stops as soon as a
    positive margin is found or the bound proves the margin negative (and the
    loop stops at the first adversarial example). Targets whose linear upper
    bound is negative need no MIP.
    """
    start = time.perf_counter()
    deadline = start + time_limit
    lo, hi = _ball(x0, eps, domain)
    reference = net if reference is None else reference
    res = AdversarialResult(label=label, target=None, objective=-math.inf, bound=-math.inf, status="optimal", x=None, output=None)
    t = time.perf_counter()
    b = precomputed_bounds if precomputed_bounds is not None else compute_bounds(net, lo, hi, bounds, time_budget=0.25 * time_limit)
    res.stages["bounds"] = time.perf_counter() - t
    res.n_unstable = count_unstable(b, net)
    backend = get_backend(solver)
    backend.require()
    targets = _targets(net, label, target)
    for n_done, t_cls in enumerate(targets):
        C = np.zeros((1, net.output_size))
        C[0, t_cls], C[0, label] = 1.0, -1.0
        ub = float(linear_upper_bound(net, b, C, 0.0, lo, hi)[0])
        if decision and ub < 0:
            res.per_target[t_cls] = {"status": "bounds", "objective": None, "bound": ub, "time_s": 0.0}
            res.bound = max(res.bound, ub)
            continue
        t = time.perf_counter()
        model, enc = build_spec_milp(net, b, lo, hi, C, 0.0, name=f"max_margin_t{t_cls}")
        res.stages["build"] += time.perf_counter() - t
        res.n_binaries = enc.n_binaries
        t = time.perf_counter()
        share = (deadline - time.perf_counter()) / (len(targets) - n_done)  # fair share of what is left
        sol = backend.solve(model, _options(share, threads, 0.0 if decision else None, mip_gap))
        res.stages["mip"] += time.perf_counter() - t
        res.per_target[t_cls] = {"status": sol.status.value, "objective": sol.objective, "bound": sol.bound, "time_s": sol.time_s}
        if sol.status == Status.ERROR:
            _raise_solver_error(solver, sol.message)
        bound = _margin_bound(sol, decision)
        res.bound = max(res.bound, bound)
        found = sol.x is not None and sol.objective >= 0
        if not (sol.status == Status.OPTIMAL or (decision and (found or bound < 0))):
            res.status = "time_limit" if sol.status in (Status.TIME_LIMIT, Status.FEASIBLE) else sol.status.value
        if sol.x is not None:
            x = model.group("input", sol.x)
            y = reference.forward(x)
            margin = float(y[t_cls] - y[label])
            if margin > res.objective:
                res.objective, res.target, res.x, res.output = margin, t_cls, x, y
        if decision and res.is_adversarial:
            break
        if time.perf_counter() > deadline:
            res.status = "time_limit"
            break
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
    bounds: str = DEFAULT_BOUNDS,
    threads: int | None = None,
) -> AdversarialResult:
    """MIPVerify's minimal adversarial distortion (L-inf or L1) for each target (best returned).

    ``max_eps`` restricts the search to an L-inf ball (much tighter bounds,
    as MIPVerify does); without it the whole domain is the box.
    """
    start = time.perf_counter()
    deadline = start + time_limit
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    lo, hi = _ball(x0, max_eps, domain) if max_eps is not None else (np.full(x0.size, domain[0]), np.full(x0.size, domain[1]))
    res = AdversarialResult(label=label, target=None, objective=math.inf, bound=math.inf, status="optimal", x=None, output=None)
    t = time.perf_counter()
    b = compute_bounds(net, lo, hi, bounds, time_budget=0.25 * time_limit)
    res.stages["bounds"] = time.perf_counter() - t
    res.n_unstable = count_unstable(b, net)
    backend = get_backend(solver)
    backend.require()
    lower_bounds = []
    for t_cls in _targets(net, label, target):
        C = np.zeros((1, net.output_size))
        C[0, t_cls], C[0, label] = 1.0, -1.0
        model, enc = build_min_distortion_milp(net, b, x0, lo, hi, C, 0.0, norm=norm, margin=margin)
        res.n_binaries = enc.n_binaries
        t = time.perf_counter()
        sol = backend.solve(model, _options(deadline - time.perf_counter(), threads, None, None))
        res.stages["mip"] += time.perf_counter() - t
        res.per_target[t_cls] = {"status": sol.status.value, "objective": sol.objective, "bound": sol.bound, "time_s": sol.time_s}
        if sol.status == Status.INFEASIBLE:
            lower_bounds.append(math.inf)
            continue
        lower_bounds.append(sol.bound if math.isfinite(sol.bound) else sol.objective)
        if sol.status != Status.OPTIMAL:
            res.status = "time_limit"
        if sol.x is not None and sol.objective < res.objective:
            x = model.group("input", sol.x)
            res.objective, res.target, res.x, res.output = sol.objective, t_cls, x, net.forward(x)
        if time.perf_counter() > deadline:
            res.status = "time_limit"
            break
    res.bound = min(lower_bounds) if lower_bounds else math.inf
    res.time_s = time.perf_counter() - start
    return res
