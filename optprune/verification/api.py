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

Every ``sat`` is re-checked (:mod:`optprune.counterexample`) by a float64 forward pass of the *reference*
network (the original model; for a pruned surrogate, the dense one) and, when
the model came from ONNX, by onnxruntime in the graph's own precision: the point is clipped to
the input box and must satisfy the output condition (strict VNN-LIB
inequalities strictly) in both. A point that fails either is never ``sat``.
What may prove ``unsat`` is decided in one place, :mod:`optprune.verdicts`;
a verdict proven on a surrogate that is not the reference is ``unknown`` for
the reference.
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
from optprune.bab import BaBSettings, bab_verify_case
from optprune.bounds import (
    BOUND_METHODS,
    DEFAULT_BOUNDS,
    Bounds,
    compute_bounds,
    count_unstable,
    linear_bounds,
    linear_upper_bound,
    obbt_bounds,
)
from optprune.counterexample import OnnxChecker, case_confirm, check_counterexample, confirm_point
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations.relu_milp import build_min_distortion_milp, build_spec_milp
from optprune.network import Network
from optprune.solvers import Status, get_backend
from optprune.verdicts import (
    DECISION_TOLERANCES,
    DecisionTolerances,
    check_bounds_contain,
    check_encoding,
    decision_options,
    optimize_options,
    proves_nonpositive,
    slack_verdict,
    solver_resolution,
    widened,
)
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
    "OnnxChecker",
    "METHODS",
]

METHODS = ("mip", "bab", "auto")  # verify_property(method=...): MIP pipeline, branch and bound, or BaB then MIP
AUTO_BAB_SHARE = 0.6  # method="auto": BaB gets this share of the time left, the MIP pipeline the rest



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
    method: str = ""  # the method that decided (mip or bab), or the one asked for when undecided
    bab_domains: int = 0  # subdomains bounded by branch and bound (all cases)
    bab: list = field(default_factory=list)  # per case, BaBResult.to_dict()

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
            "method": self.method,
            "bab_domains": self.bab_domains,
            "bab": self.bab,
        }


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
    onnx_check: OnnxChecker | None = None,
    tol: DecisionTolerances = DECISION_TOLERANCES,
) -> str:
    # Cheap bounds first: OBBT is paid for only when the bounds and the attack leave MIPs to solve.
    t = time.perf_counter()
    bounds = compute_bounds(net, case.lower, case.upper, "interval" if bounds_method == "interval" else "linear")
    result.stages["bounds"] += time.perf_counter() - t
    centre = (case.lower + case.upper) / 2.0
    check_bounds_contain(net, bounds, centre)  # a cheap guard: every proof below rests on these bounds

    def conjunction_upper_bounds(bounds) -> list[float]:
        """Conjunctions whose back-substituted upper bound is negative cannot hold."""
        return [float(np.min(linear_upper_bound(net, bounds, c.C, c.d, case.lower, case.upper)))
                for c in case.disjuncts]

    upper = conjunction_upper_bounds(bounds)
    open_idx = [i for i, u in enumerate(upper) if u >= 0]
    if not open_idx:
        result.n_unstable = max(result.n_unstable, count_unstable(net, bounds))
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
            ok, x, y, _ = confirm_point(reference, onnx_check, case, att.x)
            if ok:
                result.counterexample, result.output, result.decided_by = x, y, "attack"
                return "sat"
        # Most promising conjunction first: the MIP that is likeliest to find a counterexample fast.
        order = [open_idx[j] for j in np.argsort(-att.best_slacks)]

    if bounds_method == "obbt":
        t = time.perf_counter()
        bounds = obbt_bounds(net, case.lower, case.upper, bounds, time_budget=obbt_budget)
        result.stages["bounds"] += time.perf_counter() - t
        check_bounds_contain(net, bounds, centre)
        upper = conjunction_upper_bounds(bounds)
        order = [i for i in order if upper[i] >= 0]
    result.n_unstable = max(result.n_unstable, count_unstable(net, bounds))

    verdict = "unsat"
    for i in order:
        time_left = deadline - time.perf_counter()
        if time_left <= 0:
            return "unknown"
        conj = case.disjuncts[i]
        t = time.perf_counter()
        model, enc = build_spec_milp(net, bounds, case.lower, case.upper, conj.C, conj.d, spec_upper=upper[i])
        result.n_binaries = max(result.n_binaries, enc.n_binaries)
        # The proof margin grows with what the solver cannot resolve on this network (optprune.verdicts).
        tol_i = widened(tol, solver_resolution(net, bounds, conj.C, tol))
        sol = get_backend(solver).solve(model, decision_options(time_left, threads, tol_i))
        result.stages["mip"] += time.perf_counter() - t
        result.mips_solved += 1
        record = {"index": i, "linear_upper_bound": upper[i], "status": sol.status.value, "objective": sol.objective,
                  "bound": sol.bound, "delta": tol_i.delta, "time_s": round(sol.time_s, 4), "message": sol.message}
        result.conjunctions.append(record)
        if sol.status == Status.ERROR:
            _raise_solver_error(solver, sol.message)
        if sol.x is not None and sol.objective >= 0:
            ok, x, y, why = confirm_point(reference, onnx_check, case, model.group("input", sol.x))
            if not ok and attack:
                # Numerical slack of the MIP: polish locally with the attack from its point.
                polish = pgd_attack(net, case.lower, case.upper, [conj], start=x, restarts=1, steps=50,
                                    target_slack=tol.delta)
                if polish.found:
                    ok, x, y, why = confirm_point(reference, onnx_check, case, polish.x)
            if ok:
                result.counterexample, result.output, result.decided_by = x, y, "mip"
                return "sat"
            result.message = f"conjunction {i}: MIP point failed the {why} (slack {conj.slack(y):.2e})"
            verdict = "unknown"
            continue
        status = "infeasible" if _cutoff_infeasible(sol) else sol.status.value
        if status == "infeasible":
            # Rule (b): trusted only if the model (without the cutoff) accepts a real forward pass.
            check_encoding(net, bounds, model, enc, centre)
        record["verdict"] = slack_verdict(status, sol.bound, cutoff=True, delta=tol_i.delta)
        if record["verdict"] == "unsat":
            continue  # proven: this conjunction cannot hold
        verdict = "unknown"
    if verdict == "unsat":
        result.decided_by = "mip" if result.mips_solved else "bounds"
    return verdict


def _bab_case(net: Network, case: VNNLibCase, reference, onnx_check, deadline: float, attack: bool,
              result: VerificationResult) -> str:
    """One case by branch and bound (:func:`optprune.bab.bab_verify_case`).

    Every point it finds is re-checked by :func:`optprune.counterexample.confirm_point`.
    """

    t = time.perf_counter()
    bounds = linear_bounds(net, case.lower, case.upper)
    check_bounds_contain(net, bounds, (case.lower + case.upper) / 2.0)  # every proof below rests on these bounds
    res = bab_verify_case(net, case, deadline=deadline, confirm=case_confirm(reference, onnx_check, case),
                          bounds=bounds, settings=BaBSettings(attack=attack))
    result.stages["bab"] = result.stages.get("bab", 0.0) + time.perf_counter() - t
    result.bab_domains += res.domains
    result.bab.append(res.to_dict())
    result.n_unstable = max(result.n_unstable, res.n_unstable)
    result.method = "bab"
    if res.verdict == "sat":
        result.counterexample, result.output = res.counterexample, res.output
    if res.verdict != "unknown":
        result.decided_by = result.decided_by if res.verdict == "unsat" and result.decided_by else res.decided_by
    elif res.message:
        result.message = f"bab: {res.message}"
    return res.verdict


def _cutoff_infeasible(sol) -> bool:
    """INFEASIBLE, or stopped with a dual bound of ``-inf`` on ``max s``: every node pruned by the cutoff."""
    return sol.status == Status.INFEASIBLE or sol.bound == -math.inf


def _renamed(kwargs: dict, old: str, new: str, value):
    """The value of ``new``, taking the deprecated keyword ``old`` from ``kwargs`` if it was used."""
    if old in kwargs:
        import warnings

        warnings.warn(f"the keyword {old!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
        return kwargs.pop(old)
    return value


def _no_more(kwargs: dict, function: str) -> None:
    if kwargs:
        raise TypeError(f"{function}() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")


def _raise_solver_error(solver: str, message: str) -> None:
    from optprune.errors import SolverError

    raise SolverError(f"backend {solver!r} failed: {message}")


def verify_property(
    net: Network,
    prop: VNNLibProperty,
    *,
    solver: str = "highs",
    time_limit: float = 60.0,
    bound_method: str = DEFAULT_BOUNDS,
    attack: bool = True,
    reference: Network | Callable | None = None,
    threads: int | None = None,
    obbt_budget: float | None = None,
    onnx_model=None,
    tolerances: DecisionTolerances = DECISION_TOLERANCES,
    method: str = "auto",
    **renamed,
) -> VerificationResult:
    """Decide a parsed VNN-LIB property on ``net`` (see module doc).

    ``method``: ``mip`` (bounds, attack, one decision MIP per open conjunction),
    ``bab`` (branch and bound on α/β-CROWN bounds, :mod:`optprune.bab`), or
    ``auto`` (BaB for ``AUTO_BAB_SHARE`` of the time left, then the MIP
    pipeline; the default: on mnistfc 256x2 at 120 s it decides 30/30 where the MIP
    pipeline alone decides 27/30, and on 256x4 at 60 s no fewer). The record's
    ``method`` says which decided, ``bab_domains`` how many subdomains BaB bounded.

    ``reference`` is the model counterexamples are checked on (default: ``net``);
    when it is another model (``net`` a pruned surrogate), only ``sat`` carries
    over: ``unsat`` on the surrogate says nothing about the reference and is
    reported ``unknown``. ``onnx_model`` (a path or ``onnx.ModelProto``) adds the
    onnxruntime check (in the graph's precision) of every counterexample. ``tolerances`` are the
    decision MIPs' tolerances and the proof margin ``delta``
    (:mod:`optprune.verdicts`).
    """
    time_limit = _renamed(renamed, "timeout", "time_limit", time_limit)
    bound_method = _renamed(renamed, "bounds", "bound_method", bound_method)
    _no_more(renamed, "verify_property")
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise InvalidParameterError(f"time_limit must be a finite number of seconds > 0, got {time_limit}")
    if bound_method not in BOUND_METHODS:
        raise InvalidParameterError(f"bound_method must be one of {BOUND_METHODS}, got {bound_method!r}")
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")
    if prop.n_inputs != net.input_size or prop.n_outputs != net.output_size:
        raise ShapeMismatchError(
            f"property has {prop.n_inputs} inputs / {prop.n_outputs} outputs; "
            f"network {net.name!r} has {net.input_size} / {net.output_size}"
        )
    get_backend(solver).require()
    start = time.perf_counter()
    deadline = start + time_limit
    budget = obbt_budget if obbt_budget is not None else 0.25 * time_limit
    result = VerificationResult(verdict="unsat")
    surrogate = reference is not None and reference is not net
    reference = net if reference is None else reference
    onnx_check = OnnxChecker(onnx_model) if onnx_model is not None else None
    verdicts = []
    for case in prop.cases:
        v = "unknown"
        if method in ("bab", "auto"):
            share = 1.0 if method == "bab" else AUTO_BAB_SHARE
            bab_deadline = time.perf_counter() + share * (deadline - time.perf_counter())
            v = _bab_case(net, case, reference, onnx_check, bab_deadline, attack, result)
        if method == "mip" or (method == "auto" and v == "unknown"):
            v = _verify_case(net, case, reference, solver, deadline, bound_method, attack, threads, result, budget,
                             onnx_check, tolerances)
            result.method = "mip"
        verdicts.append(v)
        if v == "sat":
            break
    result.verdict = "sat" if "sat" in verdicts else ("unknown" if "unknown" in verdicts else "unsat")
    if result.verdict == "unsat" and surrogate:
        result.verdict = "unknown"
        result.message = ("proven unsat on the given network, which is not the reference model: "
                          "only a counterexample carries over to the reference")
    result.time_s = time.perf_counter() - start
    return result


def verify_vnnlib(
    network: Network | str | os.PathLike,
    vnnlib_path: str | os.PathLike,
    **kwargs,
) -> VerificationResult:
    """Verify the property in ``vnnlib_path`` on ``network`` (a Network or an .onnx / .pt path).

    Reading the network and parsing the property count against ``time_limit``.
    An ``.onnx`` path also turns on the onnxruntime check (in the graph's precision) of counterexamples.
    """
    start = time.perf_counter()
    time_limit = float(_renamed(kwargs, "timeout", "time_limit", kwargs.pop("time_limit", 60.0)))
    if not (math.isfinite(time_limit) and time_limit > 0):
        raise InvalidParameterError(f"time_limit must be a finite number of seconds > 0, got {time_limit}")
    if not isinstance(network, Network):
        from optprune.io import load_network

        path = Path(network)
        if path.suffix.lower() == ".onnx":
            kwargs.setdefault("onnx_model", path)
        network = load_network(path)
    prop = read_vnnlib(vnnlib_path, network.input_size, network.output_size)
    spent = time.perf_counter() - start
    if spent >= time_limit:
        message = f"the time limit ({time_limit} s) was spent reading the network and the property"
        return VerificationResult(verdict="unknown", time_s=spent, message=message)
    result = verify_property(network, prop, time_limit=time_limit - spent, **kwargs)
    result.time_s += spent
    return result


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
    """Max-margin (or minimal-distortion) adversarial example for one input.

    ``bound`` is a proof-grade bound only: for max-margin, an upper bound on
    the best margin (linear bounds, a MIP dual bound, or ``-delta`` for an
    infeasible decision MIP); for min-distortion, a lower bound on the
    distortion taken from dual bounds only, never from an incumbent.
    ``proven_robust`` applies :mod:`optprune.verdicts` to every target and is
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
        """Every target's margin is proven below zero by a rule of :mod:`optprune.verdicts`."""
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
    by the solver's ``resolution`` (:func:`optprune.verdicts.solver_resolution`):
    that is added.
    """
    if decision and _cutoff_infeasible(sol):
        return -delta + resolution
    return sol.bound + resolution if math.isfinite(sol.bound) else math.inf


def _infeasible_without_cutoff(solver: str, what: str) -> None:
    from optprune.errors import SolverError

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
    bound_method = _renamed(renamed, "bounds", "bound_method", bound_method)
    _no_more(renamed, "max_margin")
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
        infeasible = _cutoff_infeasible(sol)
        bound = _margin_bound(sol, decision, tol_t.delta, resolution)
        res.per_target[t_cls] = {"status": "infeasible" if infeasible else sol.status.value, "objective": sol.objective,
                                 "bound": bound, "solver_bound": sol.bound, "resolution": resolution,
                                 "time_s": sol.time_s, "cutoff": decision}
        if sol.status == Status.ERROR:
            _raise_solver_error(solver, sol.message)
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
    (:func:`optprune.verdicts.solver_resolution`), a relaxation of margin
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
    bound_method = _renamed(renamed, "bounds", "bound_method", bound_method)
    _no_more(renamed, "min_distortion")
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
            _raise_solver_error(solver, sol.message)
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
