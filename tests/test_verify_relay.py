"""Engine ``auto``'s relay: BaB's process turns to the MIPs, two MIP pipelines sharing the conjunctions.

The claims (:mod:`optprune.verification.claims`) let each conjunction be solved by one process only; a case
is ``unsat`` only once every conjunction is closed by a proof, whichever process holds it.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_verify_race import _net, _robustness, assert_point_meets_property, small_cases

from optprune.verification import verify_property
from optprune.verification.api import decide_cases
from optprune.verification.claims import Claims
from optprune.verification.deadline import Deadline
from optprune.verification.engines import MIP_ENGINE, AutoEngine, CaseContext
from optprune.verification.race import can_race


def _mip_case():
    """A case whose two conjunctions the bounds leave open and two decision MIPs prove unsat."""
    net = _net(7)
    case = _robustness(net, np.random.default_rng(107).uniform(-1, 1, 4), 0.4).cases[0]
    ctx = CaseContext(reference=net, deadline=Deadline(30), threads=1, attack=False)
    out = MIP_ENGINE.decide(net, case, ctx)
    solved = [c["index"] for c in out.conjunctions if c.get("verdict") == "unsat"]
    assert out.verdict == "unsat" and len(solved) == 2, out.conjunctions  # the premise of the tests below
    return net, case, solved


def test_claims_give_each_conjunction_to_one_process_and_count_closed_ones():
    claims = Claims(3)
    assert claims.claim(1) and not claims.claim(1)  # the second claimant is refused
    claims.close([0])
    assert not claims.claim(0) and claims.is_closed(0) and not claims.is_closed(1)
    assert claims.open_count() == 2 and not claims.all_closed()
    claims.close([1, 2])
    assert claims.all_closed() and claims.open_count() == 0


def test_a_mip_pipeline_leaves_claimed_conjunctions_to_the_other_and_is_unsat_only_when_all_are_closed():
    net, case, solved = _mip_case()
    other = solved[0]
    ctx = CaseContext(reference=net, deadline=Deadline(30), threads=1, attack=False)
    claims = Claims(len(case.disjuncts))
    assert claims.claim(other)  # the other process holds it, still open
    out = MIP_ENGINE.decide(net, case, ctx.__class__(**{**ctx.__dict__, "claims": claims}))
    assert out.verdict == "unknown" and "other MIP pipeline" in out.message
    assert [c["status"] for c in out.conjunctions if c["index"] == other] == ["claimed"]
    assert all(claims.is_closed(i) for i in solved if i != other)  # what it proved is on the board
    claims.close([other])  # the other process proves it: the case is now decided by either
    again = MIP_ENGINE.decide(net, case, ctx.__class__(**{**ctx.__dict__, "claims": claims}))
    assert again.verdict == "unsat" and again.mips_solved == 0 and again.decided_by == "mip"


def test_the_reversed_pipeline_starts_from_the_other_end():
    net, case, solved = _mip_case()
    base = CaseContext(reference=net, deadline=Deadline(30), threads=1, attack=False)
    forward = MIP_ENGINE.decide(net, case, base)
    backward = MIP_ENGINE.decide(net, case, base.__class__(**{**base.__dict__, "mip_reverse": True}))
    order = [c["index"] for c in forward.conjunctions]
    assert [c["index"] for c in backward.conjunctions] == order[::-1]
    assert backward.verdict == forward.verdict == "unsat"


@pytest.mark.skipif(not can_race(), reason="needs fork")
@pytest.mark.parametrize("share", [1e-6, 0.5])
def test_the_relay_decides_what_one_worker_decides(share):
    """share ~0: BaB hands over at once and two MIP pipelines split the conjunctions; 0.5: BaB first."""
    engine = AutoEngine(relay=share)
    for seed, eps, net, prop in small_cases():
        one = verify_property(net, prop, time_limit=30, threads=1)
        out = decide_cases(engine, net, prop, CaseContext(reference=net, deadline=Deadline(30), threads=2), "auto")
        assert out.verdict == one.verdict != "unknown", (seed, eps, one.message, out.message)
        if out.verdict == "sat":
            assert_point_meets_property(net, prop, out.counterexample)
