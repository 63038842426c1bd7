"""Decide VNN-LIB properties: the public entry point over the verification engines.

:func:`verify_property` runs one engine of :data:`~optprune.verification.engines.ENGINES`
(``mip``: bounds, attack, decision MIPs; ``bab``: branch and bound; ``auto``:
BaB then MIP; ``bounds``: bounds only) on every case of a property, under one
:class:`~optprune.verification.deadline.Deadline`, and merges the engines'
outcomes into a :class:`VerificationResult`. The CLI (``optprune verify``),
bench (``vnnlib`` queries) and the benchmark scripts call it.

Every ``sat`` is re-checked (:mod:`optprune.verification.counterexample`) by a
float64 forward pass of the *reference* network (the original model; for a
pruned surrogate, the dense one) and, when the model came from ONNX, by
onnxruntime in the graph's own precision: the point is clipped to the input
box and must satisfy the output condition (strict VNN-LIB inequalities
strictly) in both. What may prove ``unsat`` is decided in one place,
:mod:`optprune.verification.verdicts`; a verdict proven on a surrogate that is
not the reference is ``unknown`` for the reference.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.network import Network
from optprune.solvers import get_backend
from optprune.verification.bounds import BOUND_METHODS
from optprune.verification.counterexample import OnnxChecker
from optprune.verification.deadline import Deadline
from optprune.verification.engine_registry import ENGINES
from optprune.verification.engines import CaseContext, CaseOutcome
from optprune.verification.verdicts import DECISION_TOLERANCES, DecisionTolerances
from optprune.verification.vnnlib import VNNLibProperty, read_vnnlib

__all__ = [
    "VerificationResult",
    "decide_cases",
    "verify_property",
    "verify_vnnlib",
    "format_vnncomp_result",
    "methods",
    "renamed_keyword",
    "no_more_keywords",
]


def methods() -> tuple[str, ...]:
    """The verification engines' names (``method=`` / ``--method``), read from the registry."""
    return ENGINES.names()


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

    def absorb(self, outcome: CaseOutcome) -> None:
        """Add one case's outcome (its stages, counts and records) to this result."""
        for name, seconds in outcome.stages.items():
            self.stages[name] = self.stages.get(name, 0.0) + seconds
        self.n_unstable = max(self.n_unstable, outcome.n_unstable)
        self.n_binaries = max(self.n_binaries, outcome.n_binaries)
        self.mips_solved += outcome.mips_solved
        self.bab_domains += outcome.bab_domains
        self.conjunctions.extend(outcome.conjunctions)
        self.bab.extend(outcome.bab)
        self.method = outcome.engine
        if outcome.verdict == "sat":
            self.counterexample, self.output = outcome.counterexample, outcome.output
        if outcome.verdict != "unknown" and outcome.decided_by:
            if not (outcome.verdict == "unsat" and self.decided_by):
                self.decided_by = outcome.decided_by
        if outcome.message and (outcome.verdict == "unknown" or not self.message):
            self.message = outcome.message


def renamed_keyword(kwargs: dict, old: str, new: str, value):
    """The value of ``new``, taking the deprecated keyword ``old`` from ``kwargs`` if it was used."""
    if old in kwargs:
        import warnings

        warnings.warn(f"the keyword {old!r} is deprecated; use {new!r}", DeprecationWarning, stacklevel=3)
        return kwargs.pop(old)
    return value


def no_more_keywords(kwargs: dict, function: str) -> None:
    if kwargs:
        raise TypeError(f"{function}() got unexpected keyword arguments: {', '.join(sorted(kwargs))}")


def decide_cases(engine, net: Network, prop: VNNLibProperty, ctx: CaseContext, method: str) -> VerificationResult:
    """Every input region of ``prop`` decided by ``engine`` in turn, stopping at the first ``sat``.

    The property's verdict: ``sat`` if some region has a point, else ``unknown``
    if some region is undecided, else ``unsat``.
    """
    result = VerificationResult(verdict="unsat", method=method)
    verdicts = []
    for case in prop.cases:
        outcome = engine.decide(net, case, ctx)
        result.absorb(outcome)
        verdicts.append(outcome.verdict)
        if outcome.verdict == "sat":
            break
    result.verdict = "sat" if "sat" in verdicts else ("unknown" if "unknown" in verdicts else "unsat")
    return result


def verify_property(
    net: Network,
    prop: VNNLibProperty,
    *,
    solver: str = "highs",
    time_limit: float = 60.0,
    bound_method: str | None = None,
    attack: bool = True,
    reference: Network | Callable | None = None,
    threads: int | None = None,
    obbt_budget: float | None = None,
    onnx_model=None,
    tolerances: DecisionTolerances = DECISION_TOLERANCES,
    method: str = "auto",
    **renamed,
) -> VerificationResult:
    """Decide a parsed VNN-LIB property on ``net`` with the engine ``method`` (module doc).

    ``method``: a name of :data:`~optprune.verification.engines.ENGINES`:
    ``mip`` (bounds, attack, one decision MIP per open conjunction), ``bab``
    (branch and bound on α/β-CROWN bounds), ``auto`` (BaB for
    ``AUTO_BAB_SHARE`` of the time left, then the MIP pipeline; the default:
    on mnistfc 256x2 at 120 s it decides 30/30 where the MIP pipeline alone
    decides 27/30) or ``bounds``. ``bound_method`` (a name of
    :data:`~optprune.verification.bounds.BOUND_METHODS`: interval, linear,
    alpha, obbt) is used by every engine; None lets each use its default (MIP:
    obbt; BaB: linear, then its own α-CROWN root). ``obbt_budget`` caps the
    seconds of the refining bound method. The record's ``method`` says which
    engine decided, ``bab_domains`` how many subdomains BaB bounded.

    ``threads``: CPU cores the query may use. None (the default) or 1: one process, the MIP solver with its
    own default; ``>= 2``: engine ``auto`` runs BaB and the MIP pipeline side by side in two processes, each
    with the whole time limit, the first verdict winning (:mod:`optprune.verification.race`); engine ``mip``
    gives them to the MIP solver.

    ``reference`` is the model counterexamples are checked on (default: ``net``);
    when it is another model (``net`` a pruned surrogate), only ``sat`` carries
    over: ``unsat`` on the surrogate says nothing about the reference and is
    reported ``unknown``. ``onnx_model`` (a path or ``onnx.ModelProto``) adds the
    onnxruntime check (in the graph's precision) of every counterexample.
    ``tolerances`` are the decision MIPs' tolerances and the proof margin
    ``delta`` (:mod:`optprune.verification.verdicts`).
    """
    time_limit = renamed_keyword(renamed, "timeout", "time_limit", time_limit)
    bound_method = renamed_keyword(renamed, "bounds", "bound_method", bound_method)
    no_more_keywords(renamed, "verify_property")
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and time_limit > 0):
        raise InvalidParameterError(f"time_limit must be a finite number of seconds > 0, got {time_limit!r}")
    if threads is not None and not (isinstance(threads, (int, np.integer)) and threads >= 1):
        raise InvalidParameterError(f"threads must be an integer >= 1 or None, got {threads!r}")
    if bound_method is not None:
        BOUND_METHODS.check(bound_method, "bound_method")
    engine = ENGINES.get(method, "method")
    if prop.n_inputs != net.input_size or prop.n_outputs != net.output_size:
        raise ShapeMismatchError(
            f"property has {prop.n_inputs} inputs / {prop.n_outputs} outputs; "
            f"network {net.name!r} has {net.input_size} / {net.output_size}"
        )
    get_backend(solver).require()
    start = time.perf_counter()
    deadline = Deadline(time_limit)
    surrogate = reference is not None and reference is not net
    ctx = CaseContext(reference=net if reference is None else reference, deadline=deadline,
                      onnx_check=OnnxChecker(onnx_model) if onnx_model is not None else None,
                      bound_method=bound_method, solver=solver, threads=threads, attack=attack,
                      tolerances=tolerances, refine_seconds=obbt_budget)
    result = decide_cases(engine, net, prop, ctx, method)
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
    time_limit = float(renamed_keyword(kwargs, "timeout", "time_limit", kwargs.pop("time_limit", 60.0)))
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
