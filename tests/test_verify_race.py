"""Two cores: engine ``auto`` with ``threads >= 2`` races BaB and the MIP in two processes (verification.race)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from optprune.errors import InvalidParameterError
from optprune.network import AffineLayer, Network
from optprune.verification import verify_property
from optprune.verification.deadline import Deadline
from optprune.verification.engines import CaseContext, CaseOutcome
from optprune.verification.race import can_race, race
from optprune.verification.vnnlib import parse_vnnlib

pytestmark = pytest.mark.skipif(not can_race(), reason="needs fork")


def _net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    sizes = [4, 12, 12, 3]
    layers = [AffineLayer(rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.1,
                          "relu" if k < len(sizes) - 2 else "identity")
              for k, (i, o) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return Network(tuple(layers))


def _robustness(net: Network, x0: np.ndarray, eps: float):
    """"The predicted class at ``x0`` stays the top one on the eps-box" (its negation: some other class >= it)."""
    top = int(np.argmax(net.forward(x0)))
    lines = [f"(declare-const X_{i} Real)" for i in range(4)] + [f"(declare-const Y_{j} Real)" for j in range(3)]
    lo, hi = (x0 - eps).tolist(), (x0 + eps).tolist()
    lines += [f"(assert (>= X_{i} {lo[i]!r}))\n(assert (<= X_{i} {hi[i]!r}))" for i in range(4)]
    others = " ".join(f"(and (>= Y_{j} Y_{top}))" for j in range(3) if j != top)
    lines.append(f"(assert (or {others}))")
    return parse_vnnlib("\n".join(lines), 4, 3)


def small_cases(seeds=range(3)):
    """``(seed, eps, net, prop)``: robustness properties of small nets at a tight, a middling and a wide eps."""
    for seed in seeds:
        net = _net(seed)
        x0 = np.random.default_rng(100 + seed).uniform(-1, 1, 4)
        for eps in (0.02, 0.3, 1.0):
            yield seed, eps, net, _robustness(net, x0, eps)


def assert_point_meets_property(net: Network, prop, x: np.ndarray) -> None:
    """A reported counterexample lies in the box and meets a disjunct under a float64 forward pass."""
    case = prop.cases[0]
    assert np.all(x >= case.lower - 1e-9) and np.all(x <= case.upper + 1e-9)
    assert any(c.holds(net.forward(x)) for c in case.disjuncts)


def test_two_workers_decide_what_one_worker_decides():
    decided, seen = 0, set()
    for seed, eps, net, prop in small_cases(range(4)):
        one = verify_property(net, prop, time_limit=30, threads=1)
        two = verify_property(net, prop, time_limit=30, threads=2)
        assert {one.verdict, two.verdict} != {"sat", "unsat"}, (seed, eps)  # never contradicts
        assert two.verdict == one.verdict, (seed, eps, one.message, two.message)
        if two.verdict == "sat":  # the point was re-checked; check it once more here
            assert_point_meets_property(net, prop, two.counterexample)
        decided += two.verdict != "unknown"
        seen.add(two.verdict)
    assert decided == 12 and seen == {"sat", "unsat"}


class _Sleeper:
    name = "sleeper"

    def decide(self, net, case, ctx):
        time.sleep(60)
        return CaseOutcome(engine=self.name)


class _Decider:
    name = "decider"

    def __init__(self, verdict: str, delay: float = 0.0) -> None:
        self.verdict, self.delay = verdict, delay

    def decide(self, net, case, ctx):
        time.sleep(self.delay)
        return CaseOutcome(verdict=self.verdict, engine=self.name, decided_by="bounds", stages={"x": 1.0})


class _Raiser:
    name = "raiser"

    def decide(self, net, case, ctx):
        raise InvalidParameterError("bad thing in the child")


def _ctx(seconds: float) -> CaseContext:
    return CaseContext(reference=None, deadline=Deadline(seconds))


def test_the_first_verdict_wins_and_the_other_process_is_stopped():
    ctx = _ctx(30)
    t = time.perf_counter()
    out = race([(_Sleeper(), ctx), (_Decider("unsat"), ctx)], None, None, ctx.deadline.end)
    assert time.perf_counter() - t < 20  # not the sleeper's 60 s: it was terminated
    assert out[0] is None and out[1].verdict == "unsat" and out[1].stages == {"x": 1.0}


def test_unknown_waits_for_the_other_engine_and_errors_are_raised_in_the_parent():
    ctx = _ctx(30)
    out = race([(_Decider("unknown"), ctx), (_Decider("sat", delay=0.5), ctx)], None, None, ctx.deadline.end)
    assert out[0].verdict == "unknown" and out[1].verdict == "sat"
    with pytest.raises(InvalidParameterError, match="bad thing in the child"):
        race([(_Raiser(), ctx), (_Sleeper(), ctx)], None, None, ctx.deadline.end)


def test_a_silent_child_is_stopped_after_the_deadline_and_its_grace():
    import optprune.verification.race as race_module

    ctx = _ctx(0.2)
    old = race_module.RACE_GRACE_S
    race_module.RACE_GRACE_S = 0.5
    try:
        t = time.perf_counter()
        out = race([(_Sleeper(), ctx), (_Sleeper(), ctx)], None, None, ctx.deadline.end)
    finally:
        race_module.RACE_GRACE_S = old
    assert out == [None, None] and time.perf_counter() - t < 10


def test_threads_must_be_a_positive_integer():
    net = _net(0)
    prop = _robustness(net, np.zeros(4), 0.1)
    with pytest.raises(InvalidParameterError, match="threads"):
        verify_property(net, prop, threads=0)


def test_the_cooperative_race_decides_what_one_worker_decides():
    """BaB and the MIP sharing a board (verification.coop): closed conjunctions and subdomains cross over."""
    for seed, eps, net, prop in small_cases():
        one = verify_property(net, prop, time_limit=30, threads=1)
        out = verify_property(net, prop, time_limit=30, threads=2, method="coop")
        assert out.verdict == one.verdict, (seed, eps, one.message, out.message)
        if out.verdict == "sat":
            assert_point_meets_property(net, prop, out.counterexample)


def test_auto_gives_bab_every_thread_when_the_mip_is_out_of_reach(monkeypatch):
    """Above AUTO_MIP_MAX_UNSTABLE unstable ReLUs (root CROWN) no MIP is raced: BaB alone, with all threads;
    at or below it, the race; the verdicts agree with one worker either way."""
    import optprune.verification.engines as engines

    seen_threads: list[int] = []
    real = engines.bab_verify_case

    def spy(*args, **kw):
        seen_threads.append(kw["threads"])
        return real(*args, **kw)

    monkeypatch.setattr(engines, "bab_verify_case", spy)
    net = _net(1)
    prop = _robustness(net, np.random.default_rng(101).uniform(-1, 1, 4), 0.3)
    one = verify_property(net, prop, time_limit=30, threads=1)
    monkeypatch.setattr(engines, "AUTO_MIP_MAX_UNSTABLE", -1)  # every network is "too large" for the MIP
    alone = verify_property(net, prop, time_limit=30, threads=2)
    assert seen_threads[-1] == 2 and "MIP not raced" in alone.message
    assert alone.verdict == one.verdict != "unknown"
    monkeypatch.setattr(engines, "AUTO_MIP_MAX_UNSTABLE", 10**9)
    n_calls = len(seen_threads)
    raced = verify_property(net, prop, time_limit=30, threads=2)
    assert raced.verdict == one.verdict and "MIP not raced" not in raced.message
    assert len(seen_threads) == n_calls  # BaB ran in a forked child, not here
