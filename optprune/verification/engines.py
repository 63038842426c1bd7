"""Verification engines behind one interface: each decides one VNN-LIB case before a deadline.

An :class:`Engine` takes the network, one case (an input box and a
disjunction of output conjunctions) and a :class:`CaseContext` (reference
model, counterexample check, :class:`~optprune.verification.deadline.Deadline`,
bound method, solver, tolerances) and returns a :class:`CaseOutcome`; it never
edits shared state. Engines are looked up by name in :data:`ENGINES`:

* ``bounds``: the chosen bound method and the specification's back-substituted
  bound; ``unsat`` when it is negative, else ``unknown``;
* ``mip``: bounds, attack, one decision MIP per open conjunction
  (:class:`MipEngine`);
* ``bab``: branch and bound on α/β-CROWN bounds (:mod:`optprune.verification.bab`);
* ``auto``: ``bab`` for ``AUTO_BAB_SHARE`` of the time left, then ``mip``
  (:class:`AutoEngine`, a composition).

What may prove ``unsat`` is decided in :mod:`optprune.verification.verdicts`;
every point is re-checked by :mod:`optprune.verification.counterexample`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from optprune.errors import SolverError
from optprune.formulations.relu_milp import build_spec_milp, check_piecewise_linear
from optprune.network import PIECEWISE_LINEAR, Network
from optprune.solvers import Status, get_backend
from optprune.verification.attack import pgd_attack
from optprune.verification.bab import BaBSettings, bab_verify_case
from optprune.verification.bounds import (
    BOUND_METHODS,
    DEFAULT_BOUNDS,
    Bounds,
    compute_bounds,
    count_unstable,
    linear_upper_bound,
)
from optprune.verification.claims import Claims
from optprune.verification.coop import Board, MipSide
from optprune.verification.counterexample import OnnxChecker, case_confirm, confirm_point
from optprune.verification.deadline import Deadline
from optprune.verification.engine_registry import ENGINES
from optprune.verification.subdomain_mip import intersect_bounds, solve_subdomain
from optprune.verification.verdicts import (
    DECISION_TOLERANCES,
    DecisionTolerances,
    check_bounds_contain,
    check_encoding,
    decision_options,
    slack_verdict,
    solver_resolution,
    widened,
)
from optprune.verification.vnnlib import VNNLibCase

__all__ = [
    "AUTO_BAB_SHARE",
    "AUTO_MIP_MAX_UNSTABLE",
    "AUTO_RELAY_SHARE",
    "COOP_CONJ_SHARE",
    "COOP_DOMAIN_SHARE",
    "ATTACK_SHARE",
    "OBBT_SHARE",
    "CaseContext",
    "CaseOutcome",
    "Engine",
    "ENGINES",
    "BoundsEngine",
    "MipEngine",
    "BabEngine",
    "AutoEngine",
    "RelayEngine",
    "MIP_ENGINE",
    "BAB_ENGINE",
    "AUTO_ENGINE",
    "COOP_ENGINE",
    "BOUNDS_ENGINE",
]

AUTO_BAB_SHARE = 0.6  # engine "auto": BaB gets this share of the time left, the MIP pipeline the rest
ATTACK_SHARE = 0.1  # the MIP engine's attack: this share of the time left, at least 1 s (never beyond the deadline)
OBBT_SHARE = 0.25  # the MIP engine's refining bound method: this share of the time left
COOP_CONJ_SHARE = 0.0  # beside BaB (a coop Board): each whole-conjunction MIP first, this share of the time left
COOP_DOMAIN_SHARE = 0.25  # ... and one BaB subdomain's MIP this share (at least 1 s); the roots are subdomains too
#: engine "auto" on two or more threads: with more unstable ReLUs than this under the root CROWN bounds, the
#: MIP pipeline is not raced and BaB gets every thread. Measured (``benchmarks/auto_policy.py``,
#: results/auto_policy): the instances any of our runs decided by the MIP have at most 173 unstable ReLUs under
#: the root CROWN bounds (146 binaries after OBBT), and on oval21 the MIP decided nothing while taking a core
#: from BaB.
AUTO_MIP_MAX_UNSTABLE = 400
#: engine "auto" raced on two or more threads: BaB's process gives up BaB after this share of the time left and
#: runs a second MIP pipeline on the conjunctions the first has not claimed (:class:`RelayEngine`). A tenth:
#: on an idle machine every raced instance of our runs that BaB decided took it under 6% of the limit (256x2:
#: 1-7 s of 120 s; oval21: 17 s of 300 s), while the MIPs of the hard ones need both cores. Measured against
#: half (``benchmarks/bab_depth.py``, results relay_tenth_256x4_300s and relay_tenth_256x2_120s): 256x4
#: prop_3_0.03 unsat in 177 s instead of 227 s, prop_10_0.05 in 102 s instead of 172 s, the 256x2 instances
#: BaB decides unchanged. Under heavy load BaB can take longer (256x2 prop_1_0.03: 38.7 s at a load of 12);
#: there the two MIP pipelines decide it instead.
AUTO_RELAY_SHARE = 0.1


@dataclass(frozen=True)
class CaseContext:
    """Everything an engine needs besides the network and the case; one per query.

    ``bound_method`` None lets each engine use its own default (the MIP
    engine's :data:`~optprune.verification.bounds.DEFAULT_BOUNDS`, BaB's
    α-CROWN root); a name is used by every engine.
    """

    reference: Network | Callable
    deadline: Deadline
    onnx_check: OnnxChecker | None = None
    bound_method: str | None = None
    solver: str = "highs"
    threads: int | None = None
    attack: bool = True
    tolerances: DecisionTolerances = DECISION_TOLERANCES
    refine_seconds: float | None = None  # time for the refining bound method (default: OBBT_SHARE of the time left)
    board: Board | None = None  # shared with the other process of a cooperative race (optprune.verification.coop)
    bab_options: tuple = ()  # (name, value) pairs of BaBSettings fields for the bab engine (default: its defaults)
    root_bounds: Bounds | None = None  # CROWN ("linear") bounds of this case already computed (engine auto, once)
    claims: Claims | None = None  # conjunctions shared with a second MIP pipeline (engine auto's relay)
    mip_reverse: bool = False  # the MIP pipeline takes the conjunctions from the end of its order (the relay's)
    attack_seconds: float | None = None  # the MIP pipeline's attack (default: ATTACK_SHARE of the time left)

    def with_deadline(self, deadline: Deadline) -> CaseContext:
        return replace(self, deadline=deadline)


@dataclass
class CaseOutcome:
    """What one engine found on one case; merged into a :class:`~optprune.verification.api.VerificationResult`."""

    verdict: str = "unknown"
    engine: str = ""
    decided_by: str = ""
    counterexample: np.ndarray | None = None
    output: np.ndarray | None = None
    stages: dict = field(default_factory=dict)
    n_unstable: int = 0
    n_binaries: int = 0
    mips_solved: int = 0
    bab_domains: int = 0
    conjunctions: list = field(default_factory=list)
    bab: list = field(default_factory=list)
    message: str = ""

    def add_stage(self, name: str, seconds: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + seconds


class Engine(Protocol):
    """Decides one case (module doc)."""

    name: str

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome: ...


def _bounds(net: Network, case: VNNLibCase, ctx: CaseContext, method: str, *, deadline: Deadline,
            solver: str) -> Bounds:
    """``compute_bounds`` by ``method``, or ``ctx.root_bounds`` when the method is CROWN and they are given."""
    if method == "linear" and ctx.root_bounds is not None:
        return ctx.root_bounds
    return compute_bounds(net, case.lower, case.upper, method, deadline=deadline, solver=solver)


def _conjunction_upper_bounds(net: Network, case: VNNLibCase, bounds: Bounds) -> list[float]:
    """Per conjunction, the smallest back-substituted upper bound of its rows (< 0: it cannot hold)."""
    return [float(np.min(linear_upper_bound(net, bounds, c.C, c.d, case.lower, case.upper))) for c in case.disjuncts]


class BoundsEngine:
    """``unsat`` when the chosen bounds rule out every conjunction, else ``unknown`` (rule (a) alone)."""

    name = "bounds"

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
        out = CaseOutcome(engine=self.name)
        t = time.perf_counter()
        bounds = _bounds(net, case, ctx, ctx.bound_method or "linear", deadline=ctx.deadline, solver=ctx.solver)
        check_bounds_contain(net, bounds, (case.lower + case.upper) / 2.0)
        upper = _conjunction_upper_bounds(net, case, bounds)
        out.add_stage("bounds", time.perf_counter() - t)
        out.n_unstable = count_unstable(net, bounds)
        if all(u < 0 for u in upper):
            out.verdict, out.decided_by = "unsat", "bounds"
        else:
            out.message = f"bounds leave {sum(u >= 0 for u in upper)} conjunction(s) open"
        return out


class MipEngine:
    """Bounds, attack, then one decision MIP per open conjunction (the pipeline of :mod:`optprune.verification`).

    1. the chosen bound method's ``base`` (cheap: linear or interval);
    2. conjunctions whose back-substituted bound is negative are closed;
    3. a projected-gradient attack (``ATTACK_SHARE`` of the time left, at least
       1 s, never past the deadline); a point it finds is ``sat`` once re-checked;
    4. the refining bound method (e.g. OBBT, within ``OBBT_SHARE``) only if
       MIPs remain;
    5. one max-slack MILP per open conjunction, most promising first, stopped
       at an incumbent >= 0 (a candidate, re-checked) or a dual bound below
       ``-delta`` widened by the solver's resolution (rules of
       :mod:`optprune.verification.verdicts`).
    """

    name = "mip"

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
        check_piecewise_linear(net)  # sigmoid, tanh: a named error (no exact MIP encoding)
        out = CaseOutcome(engine=self.name)
        tol, deadline = ctx.tolerances, ctx.deadline
        method = BOUND_METHODS.get(ctx.bound_method or DEFAULT_BOUNDS, "bound_method")
        t = time.perf_counter()
        bounds = _bounds(net, case, ctx, method.base or method.name, deadline=deadline, solver=ctx.solver)
        out.add_stage("bounds", time.perf_counter() - t)
        centre = (case.lower + case.upper) / 2.0
        check_bounds_contain(net, bounds, centre)  # every proof below rests on these bounds
        upper = _conjunction_upper_bounds(net, case, bounds)
        order = [i for i, u in enumerate(upper) if u >= 0]
        board = ctx.board.mip_side() if ctx.board is not None else None
        _publish(board, upper)
        claims = ctx.claims
        if claims is not None:
            claims.close(i for i, u in enumerate(upper) if u < 0)
        if not order:
            out.n_unstable = count_unstable(net, bounds)
            out.verdict, out.decided_by = "unsat", "bounds"
            return out

        if ctx.attack:
            t = time.perf_counter()
            seconds = (deadline.seconds(ATTACK_SHARE, floor=1.0) if ctx.attack_seconds is None
                       else deadline.seconds(cap=ctx.attack_seconds))
            att = pgd_attack(net, case.lower, case.upper, [case.disjuncts[i] for i in order], start=centre,
                             time_limit=seconds)
            out.add_stage("attack", time.perf_counter() - t)
            if att.found:
                ok, x, y, _ = confirm_point(ctx.reference, ctx.onnx_check, case, att.x)
                if ok:
                    out.verdict, out.decided_by, out.counterexample, out.output = "sat", "attack", x, y
                    return out
            order = [order[j] for j in np.argsort(-att.best_slacks)]  # likeliest counterexample first

        if method.base is not None:
            t = time.perf_counter()
            seconds = ctx.refine_seconds if ctx.refine_seconds is not None else deadline.seconds(OBBT_SHARE)
            bounds = method.refine(net, case.lower, case.upper, bounds, deadline=deadline.share(1.0, cap=seconds),
                                   solver=ctx.solver)
            out.add_stage("bounds", time.perf_counter() - t)
            check_bounds_contain(net, bounds, centre)
            upper = _conjunction_upper_bounds(net, case, bounds)
            order = [i for i in order if upper[i] >= 0]
            _publish(board, upper)
            if claims is not None:
                claims.close(i for i, u in enumerate(upper) if u < 0)
        out.n_unstable = count_unstable(net, bounds)
        if ctx.mip_reverse:
            order = order[::-1]

        if board is not None and board.board.conj_share <= 0:  # beside BaB, subdomains only (roots included)
            return _subdomains(net, case, ctx, out, board, bounds)
        verdict = "unsat"
        backend = get_backend(ctx.solver)
        for i in order:
            if deadline.expired():
                return _unknown(out, "time limit before every conjunction was decided")
            if board is not None and board.is_closed(i):  # proved by branch and bound beside us
                out.conjunctions.append({"index": i, "status": "closed by bab", "verdict": "unsat"})
                continue
            if claims is not None and not claims.claim(i):  # the other MIP pipeline has it, or it is proved
                out.conjunctions.append({"index": i, "status": "closed" if claims.is_closed(i) else "claimed",
                                         "verdict": "unsat" if claims.is_closed(i) else "elsewhere"})
                continue
            conj = case.disjuncts[i]
            t = time.perf_counter()
            model, enc = build_spec_milp(net, bounds, case.lower, case.upper, conj.C, conj.d, spec_upper=upper[i])
            out.n_binaries = max(out.n_binaries, enc.n_binaries)
            # The proof margin grows with what the solver cannot resolve on this network (verdicts module).
            tol_i = widened(tol, solver_resolution(net, bounds, conj.C, tol))
            options = decision_options(deadline.left(), ctx.threads, tol_i)
            if board is not None:  # a share of the time, and stop once branch and bound closes it
                options = _beside_bab(options, board, i, board.board.conj_share * deadline.left())
                board.work_on(i)
            sol = backend.solve(model, options)
            if board is not None:
                board.work_on(-1)
            out.add_stage("mip", time.perf_counter() - t)
            out.mips_solved += 1
            record = {"index": i, "linear_upper_bound": upper[i], "status": sol.status.value,
                      "objective": sol.objective, "bound": sol.bound, "delta": tol_i.delta,
                      "time_s": round(sol.time_s, 4), "message": sol.message}
            out.conjunctions.append(record)
            if sol.status == Status.ERROR:
                raise SolverError(f"backend {ctx.solver!r} failed: {sol.message}")
            if board is not None and board.is_closed(i) and not (sol.x is not None and sol.objective >= 0):
                record["verdict"] = "unsat"  # closed by branch and bound while this MIP ran: its proof
                continue
            if sol.x is not None and sol.objective >= 0:
                ok, x, y, why = confirm_point(ctx.reference, ctx.onnx_check, case, model.group("input", sol.x))
                if not ok and ctx.attack:
                    # Numerical slack of the MIP: polish locally with the attack from its point.
                    polish = pgd_attack(net, case.lower, case.upper, [conj], start=x, restarts=1, steps=50,
                                        target_slack=tol.delta)
                    if polish.found:
                        ok, x, y, why = confirm_point(ctx.reference, ctx.onnx_check, case, polish.x)
                if ok:
                    out.verdict, out.decided_by, out.counterexample, out.output = "sat", "mip", x, y
                    return out
                out.message = f"conjunction {i}: MIP point failed the {why} (slack {conj.slack(y):.2e})"
                verdict = "unknown"
                continue
            status = "infeasible" if cutoff_infeasible(sol) else sol.status.value
            if status == "infeasible":
                # Rule (b): trusted only if the model (without the cutoff) accepts a real forward pass.
                check_encoding(net, bounds, model, enc, centre)
            record["verdict"] = slack_verdict(status, sol.bound, cutoff=True, delta=tol_i.delta)
            if record["verdict"] != "unsat":
                verdict = "unknown"
            else:
                if board is not None:
                    board.close(i)
                if claims is not None:
                    claims.close([i])
        if board is not None and board.all_closed():
            verdict = "unsat"
        if claims is not None and verdict == "unsat" and not claims.all_closed():
            verdict = "unknown"  # conjunctions the other pipeline claimed are still open: it reports the case
            out.message = (f"{claims.open_count()} conjunction(s) left to the other MIP pipeline "
                           "(engine auto's relay)")
        out.verdict = verdict
        if verdict == "unsat":
            relayed = any(c.get("status") == "closed" for c in out.conjunctions)  # proved by the other pipeline
            out.decided_by = "mip" if out.mips_solved or relayed else "bounds"
            if any(c.get("status") == "closed by bab" for c in out.conjunctions):
                out.decided_by = "mip+bab"
            return out
        if board is not None:
            return _subdomains(net, case, ctx, out, board, bounds)
        return out


def _publish(board: MipSide | None, upper: list[float]) -> None:
    """Flag on the board every conjunction these bounds close (rule (a))."""
    if board is not None:
        for i, u in enumerate(upper):
            if u < 0:
                board.close(i)


def _beside_bab(options, board: MipSide, i: int, seconds: float):
    """``options`` with a time slice, stopping once conjunction ``i`` is closed on the board."""
    rule = options.stop_rule
    return replace(options, time_limit=max(float(seconds), 0.01),
                   stop_rule=lambda p: (rule is not None and rule(p)) or board.is_closed(i))


def _subdomains(net: Network, case: VNNLibCase, ctx: CaseContext, out: CaseOutcome, board: MipSide,
                bounds: Bounds) -> CaseOutcome:
    """The MIP beside branch and bound, after its whole-conjunction pass: one BaB subdomain at a time
    (:mod:`optprune.verification.coop`), until every conjunction is closed, a point is found, or the deadline.

    Each subdomain's bounds are intersected with this process's ``bounds`` (e.g. OBBT's, checked to contain a
    forward pass): both hold on the subdomain, so the intersection does, with tighter big-M constants."""
    deadline = ctx.deadline
    confirm = case_confirm(ctx.reference, ctx.onnx_check, case)
    board.start_taking()
    while not deadline.expired():
        if board.all_closed():
            out.verdict, out.decided_by = "unsat", "mip+bab"
            return out
        job = board.take(min(0.25, deadline.left()))
        if job is None:
            continue
        tag, dom = job
        spec = dom.spec
        if board.is_closed(spec):
            board.reply(tag, "open")
            continue
        conj = case.disjuncts[spec]
        t = time.perf_counter()
        dom = intersect_bounds(dom, bounds)
        ans = solve_subdomain(net, dom, conj.C, conj.d, confirm=confirm, solver=ctx.solver, threads=ctx.threads,
                              time_limit=min(deadline.left(), max(1.0, board.board.domain_share * deadline.left())),
                              tol=ctx.tolerances, stop=functools.partial(board.is_closed, spec))
        out.add_stage("subdomain_mip", time.perf_counter() - t)
        out.conjunctions.append({"index": spec, "subdomain": True, "splits": dom.n_splits, "status": ans.status,
                                 "verdict": ans.verdict, "binaries": ans.n_binaries, "bound": ans.bound,
                                 "delta": ans.delta, "time_s": round(ans.build_s + ans.solve_s, 4)})
        if ans.verdict == "sat":
            out.verdict, out.decided_by, out.counterexample, out.output = "sat", "mip", ans.x, ans.y
            return out
        board.reply(tag, ans.verdict)
    if board.all_closed():
        out.verdict, out.decided_by = "unsat", "mip+bab"
        return out
    return _unknown(out, "time limit beside branch and bound")


def _unknown(out: CaseOutcome, message: str) -> CaseOutcome:
    out.verdict, out.message = "unknown", out.message or message
    return out


def cutoff_infeasible(sol) -> bool:
    """INFEASIBLE, or stopped with a dual bound of ``-inf`` on ``max s``: every node pruned by the cutoff."""
    return sol.status == Status.INFEASIBLE or sol.bound == -np.inf


class BabEngine:
    """Branch and bound on α/β-CROWN bounds (:func:`optprune.verification.bab.bab_verify_case`).

    Its root bounds are the chosen bound method's (default: CROWN, then BaB's
    own α-CROWN root); every point it finds is re-checked by
    :func:`optprune.verification.counterexample.confirm_point`.
    """

    name = "bab"

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
        check_piecewise_linear(net)  # its leaves are LPs on affine pieces: ReLU and identity layers only
        out = CaseOutcome(engine=self.name)
        t = time.perf_counter()
        bounds = _bounds(net, case, ctx, ctx.bound_method or "linear", deadline=ctx.deadline.share(OBBT_SHARE),
                         solver=ctx.solver)
        check_bounds_contain(net, bounds, (case.lower + case.upper) / 2.0)  # every proof below rests on these
        res = bab_verify_case(net, case, deadline=ctx.deadline.end,
                              confirm=case_confirm(ctx.reference, ctx.onnx_check, case),
                              bounds=bounds, settings=BaBSettings(**{
                                  "attack": ctx.attack, **({"handoff": ctx.board.handoff} if ctx.board else {}),
                                  **dict(ctx.bab_options)}),
                              helper=ctx.board.bab_side() if ctx.board is not None else None,
                              threads=int(ctx.threads or 1))
        out.add_stage("bab", time.perf_counter() - t)
        out.bab_domains = res.domains
        out.bab.append(res.to_dict())
        out.n_unstable = res.n_unstable
        out.verdict, out.decided_by = res.verdict, res.decided_by
        if res.verdict == "sat":
            out.counterexample, out.output = res.counterexample, res.output
        elif res.verdict == "unknown" and res.message:
            out.message = f"bab: {res.message}"
        return out


class RelayEngine:
    """Branch and bound, then a second MIP pipeline (the BaB process of engine ``auto``'s race).

    BaB runs for ``share`` of the time left; if it has not decided the case, the conjunctions it closed
    (every subdomain closed: a proof) are marked closed on ``ctx.claims`` and the MIP pipeline runs on
    the rest, from the end of its order, skipping those the first MIP process claimed
    (:mod:`optprune.verification.claims`): two cores on the MIPs once BaB has had its chance. Its attack
    is capped at 1 s (BaB's ran already).
    """

    name = "relay"

    def __init__(self, share: float = AUTO_RELAY_SHARE) -> None:
        self.share = float(share)

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
        first = BAB_ENGINE.decide(net, case, ctx.with_deadline(ctx.deadline.share(self.share)))
        if first.verdict != "unknown" or ctx.deadline.expired() or ctx.claims is None:
            return first
        if first.bab:
            ctx.claims.close(first.bab[-1]["closed_conjunctions"])
        second = MIP_ENGINE.decide(net, case, replace(ctx, mip_reverse=True, attack_seconds=1.0))
        return AutoEngine._merge(first, second)


class AutoEngine:
    """``bab`` and ``mip``: side by side on two cores, else ``bab`` for ``AUTO_BAB_SHARE`` of the time, then ``mip``.

    ``coop`` (engine ``coop``): raced, the two share a :class:`~optprune.verification.coop.Board` (conjunctions
    closed by either, BaB's open subdomains solved by the MIP; ``coop_options``: the Board's time shares and
    hand-off). Off in ``auto``: measured equal in decisions (``benchmarks/bab_depth.py``), not better.

    With ``ctx.threads >= 2`` (``optprune verify``'s default: all cores) the root CROWN bounds are computed
    once, here. With more than :data:`AUTO_MIP_MAX_UNSTABLE` unstable ReLUs under them, BaB runs alone on
    every thread (a MIP that size has never decided an instance in our runs, and it took a core from BaB).
    Otherwise the two engines run in two processes (:func:`optprune.verification.race.race`) from those
    bounds, each with the whole deadline, the MIP solver with ``threads - 1`` threads; the first verdict
    wins and the other process is stopped. With ``relay`` (a share of the time; default
    :data:`AUTO_RELAY_SHARE`, None: BaB to the end), BaB's process turns to the MIPs after that share
    (:class:`RelayEngine`), the two MIP pipelines sharing the conjunctions: measured
    (``benchmarks/bab_depth.py``, results ``relay_256x4_300s`` and ``relay_256x2_120s``) it decides mnistfc
    256x4 prop_3_0.03 at 300 s (unsat in 248 s) that the plain race leaves open, and the same 4/4 256x2
    instances as the plain race, which BaB decides in 1-6 s, long before the share.
    With one thread (the API's default, ``threads=None``), or where processes cannot be forked, they run
    one after the other.
    """

    name = "auto"

    def __init__(self, first: str = "bab", then: str = "mip", share: float = AUTO_BAB_SHARE,
                 coop: bool = False, coop_options: dict | None = None, bab_options: dict | None = None,
                 relay: float | None = AUTO_RELAY_SHARE) -> None:
        self.first, self.then, self.share, self.coop, self.relay = first, then, share, coop, relay
        self.name = "coop" if coop else "auto"
        self.bab_options = tuple(sorted((bab_options or {}).items()))
        self.coop_options = {"conj_share": COOP_CONJ_SHARE, "domain_share": COOP_DOMAIN_SHARE,
                             **(coop_options or {})}

    def decide(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
        if any(layer.activation not in PIECEWISE_LINEAR for layer in net.layers):
            return _incomplete(net, case, ctx)
        if self.bab_options:
            ctx = replace(ctx, bab_options=self.bab_options)
        if ctx.threads is not None and ctx.threads >= 2:
            ctx, seconds = self._root_once(net, case, ctx)
            alone = self._bab_alone(net, case, ctx)
            outcome = alone if alone is not None else self._race(net, case, ctx)
            if outcome is not None:
                outcome.add_stage("bounds", seconds)
                return outcome
        first = ENGINES.get(self.first).decide(net, case, ctx.with_deadline(ctx.deadline.share(self.share)))
        if first.verdict != "unknown" or ctx.deadline.expired():
            return first
        second = ENGINES.get(self.then).decide(net, case, ctx)
        return self._merge(first, second)

    def _root_once(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> tuple[CaseContext, float]:
        """The root CROWN bounds that both engines start from, computed once here (default bounds only)."""
        if (self.first, self.then) != ("bab", "mip") or ctx.bound_method not in (None, "linear"):
            return ctx, 0.0
        t = time.perf_counter()
        bounds = compute_bounds(net, case.lower, case.upper, "linear", deadline=ctx.deadline, solver=ctx.solver)
        return replace(ctx, root_bounds=bounds), time.perf_counter() - t

    def _bab_alone(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome | None:
        """BaB on every thread when the MIP is out of reach (:data:`AUTO_MIP_MAX_UNSTABLE`), else None."""
        if ctx.root_bounds is None or self.coop:
            return None
        n = count_unstable(net, ctx.root_bounds)
        if n <= AUTO_MIP_MAX_UNSTABLE:
            return None
        out = ENGINES.get(self.first).decide(net, case, ctx)
        note = f"MIP not raced: {n} unstable ReLUs under CROWN > AUTO_MIP_MAX_UNSTABLE={AUTO_MIP_MAX_UNSTABLE}"
        out.message = f"{out.message}; {note}" if out.message else note
        return out

    def _race(self, net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome | None:
        from optprune.verification.race import race

        coop = self.coop and (self.first, self.then) == ("bab", "mip")
        board = Board(len(case.disjuncts), **self.coop_options) if coop else None
        relay = self.relay is not None and not coop and (self.first, self.then) == ("bab", "mip")
        claims = Claims(len(case.disjuncts)) if relay else None
        first = RelayEngine(self.relay) if relay and self.relay is not None else ENGINES.get(self.first)
        jobs = [(first, replace(ctx, threads=1, board=board, claims=claims)),
                (ENGINES.get(self.then),
                 replace(ctx, threads=max(1, int(ctx.threads or 2) - 1), board=board, claims=claims))]
        t = time.perf_counter()
        outcomes = race(jobs, net, case, ctx.deadline.end)
        if outcomes is None:
            return None
        for outcome in outcomes:
            if outcome is not None and outcome.verdict != "unknown":
                return outcome
        first, second = outcomes
        if first is None or second is None:
            out = second or first or CaseOutcome(engine=self.name)
            out.message = out.message or "time limit (an engine did not report before the deadline)"
            out.add_stage("race", time.perf_counter() - t)
            return out
        return self._merge(first, second)

    @staticmethod
    def _merge(first: CaseOutcome, second: CaseOutcome) -> CaseOutcome:
        """Both engines undecided: ``second``'s outcome with ``first``'s stages, subdomains and records added."""
        second.stages = {**first.stages, **{k: second.stages.get(k, 0.0) + first.stages.get(k, 0.0)
                                             for k in second.stages}}
        second.bab_domains += first.bab_domains
        second.bab = first.bab + second.bab
        second.n_unstable = max(first.n_unstable, second.n_unstable)
        if second.verdict == "unknown" and first.message and not second.message:
            second.message = first.message
        return second


def _incomplete(net: Network, case: VNNLibCase, ctx: CaseContext) -> CaseOutcome:
    """Sigmoid / tanh networks (engine ``auto``): the bounds (CROWN with the relaxations of
    :func:`optprune.verification.crown.smooth_relaxation`), then the attack until the deadline; ``unknown``
    when neither decides (no complete method: the MIP and branch and bound need piecewise-linear layers)."""
    out = BOUNDS_ENGINE.decide(net, case, ctx)
    out.engine = "bounds"
    if out.verdict != "unknown":
        return out
    if ctx.attack and not ctx.deadline.expired():
        t = time.perf_counter()
        centre = (case.lower + case.upper) / 2.0
        att = pgd_attack(net, case.lower, case.upper, list(case.disjuncts), start=centre,
                         time_limit=ctx.deadline.left(), restarts=8, steps=200)
        out.add_stage("attack", time.perf_counter() - t)
        if att.found:
            ok, x, y, _ = confirm_point(ctx.reference, ctx.onnx_check, case, att.x)
            if ok:
                out.verdict, out.decided_by, out.counterexample, out.output = "sat", "attack", x, y
                out.engine, out.message = "attack", ""
                return out
    out.message = ("sigmoid/tanh network: incomplete verification (bounds and attack) left it open; "
                   f"{out.message}")
    return out


MIP_ENGINE, BAB_ENGINE, AUTO_ENGINE, BOUNDS_ENGINE = MipEngine(), BabEngine(), AutoEngine(), BoundsEngine()
COOP_ENGINE = AutoEngine(coop=True)  # auto; raced, BaB and the MIP share a board (optprune.verification.coop)
