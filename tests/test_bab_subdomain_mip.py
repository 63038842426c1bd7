"""The MIP of one branch-and-bound subdomain (``verification.subdomain_mip``) against brute force, and BaB with a
helper MIP (``verification.coop``) deciding what BaB alone decides.

Brute force: the maximum of ``min_i (C_i y + d_i)`` over the points of the box that satisfy a subdomain's split
decisions is the best LP over the activation patterns that agree with the splits (``activation_regions`` of
``test_relu_milp``, SciPy's ``linprog``: a path independent of the bounds and of the encoding under test).
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
from test_relu_milp import tiny_net
from test_soundness import brute_force_max_min

from optprune.verification.bab import BaBSettings, bab_verify_case
from optprune.verification.bounds import linear_bounds
from optprune.verification.counterexample import case_confirm
from optprune.verification.crown import with_linear_output
from optprune.verification.subdomain_mip import Subdomain, solve_subdomain
from optprune.verification.vnnlib import Conjunction, VNNLibCase


def _subdomain(net, lo, hi, signs: np.ndarray) -> Subdomain:
    """Root linear bounds with the split decisions applied (as branch and bound applies them)."""
    lin, bounds = with_linear_output(net, linear_bounds(net, lo, hi))
    lowers, uppers, splits, pos = [], [], [], 0
    for lo_j, hi_j in bounds[:-1]:
        n = lo_j.size
        s = signs[pos:pos + n].astype(np.int8)
        pos += n
        lo_j, hi_j = lo_j.copy(), hi_j.copy()
        lo_j[s > 0] = np.maximum(lo_j[s > 0], 0.0)
        hi_j[s < 0] = np.minimum(hi_j[s < 0], 0.0)
        lowers.append(lo_j)
        uppers.append(hi_j)
        splits.append(s)
    return Subdomain(spec=0, lowers=lowers, uppers=uppers, splits=splits, x_lo=lo, x_hi=hi)


@pytest.mark.parametrize("tighten_bounds", [True, False])
def test_subdomain_mip_closes_and_finds_exactly_what_brute_force_says(tighten_bounds):
    rng = np.random.default_rng(7)
    seen = {"closed": 0, "sat": 0}
    for seed in range(10):
        net = tiny_net(seed, 2, [4, 3])
        lo, hi = -np.ones(2), np.ones(2)
        C = np.array([[-1.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
        signs = np.zeros(7)
        pick = rng.choice(7, size=3, replace=False)
        signs[pick] = rng.choice([-1.0, 1.0], size=3)
        base = brute_force_max_min(net, C, np.zeros(2), lo, hi, signs)
        if not np.isfinite(base):
            d = np.zeros(2)  # an empty subdomain: must be closed whatever the specification
            truth = -np.inf
        else:
            d = np.full(2, -base + rng.choice([-1.0, 1.0]) * 0.05 * (1 + abs(base)))
            truth = base + d[0]
        case = VNNLibCase(lo, hi, (Conjunction(C, d),))
        dom = _subdomain(net, lo, hi, signs)
        ans = solve_subdomain(net, dom, C, d, confirm=case_confirm(net, None, case), time_limit=20,
                              tighten_bounds=tighten_bounds)
        assert ans.verdict != "closed" or truth < 0, (seed, truth, ans)  # never closes a subdomain with a point
        assert ans.verdict == ("sat" if truth > 0 else "closed"), (seed, truth, ans)
        if ans.verdict == "sat":  # the point lies in the subdomain: its pre-activations have the split signs
            pre = np.concatenate([np.asarray(z).reshape(-1) for z in net.forward(ans.x, return_all=True)[:-1]])
            assert np.all(pre[signs > 0] >= -1e-9) and np.all(pre[signs < 0] <= 1e-9)
            assert np.all(C @ net.forward(ans.x) + d >= 0)
        seen[ans.verdict] += 1
    assert seen["closed"] >= 2 and seen["sat"] >= 2, seen


class _InlineHelper:
    """A helper MIP in the same process: each subdomain handed over is answered by ``solve_subdomain`` at the
    next exchange (what the race's MIP process does, without processes)."""

    def __init__(self, net, case):
        self.net, self.case, self.queue, self.done = net, case, [], []
        self.solved = {"closed": 0, "open": 0, "sat": 0}

    def closed(self):
        return []

    def close(self, spec):
        pass

    def idle(self):
        return not self.queue

    def working(self):
        return -1

    def send(self, tag, dom):
        self.queue.append((tag, dom))

    def answers(self):
        out = []
        for tag, dom in self.queue:
            conj = self.case.disjuncts[dom.spec]
            ans = solve_subdomain(self.net, dom, conj.C, conj.d, confirm=case_confirm(self.net, None, self.case),
                                  time_limit=20)
            self.solved[ans.verdict] += 1
            out.append((tag, "open" if ans.verdict == "sat" else ans.verdict))
        self.queue = []
        return out


@functools.cache
def _best(seed: int) -> float:
    """Brute-force max of ``y_1 - y_0`` on the box of the helper test's net ``seed`` (shared by both hand-offs)."""
    return brute_force_max_min(tiny_net(seed, 3, [5, 4]), np.array([[-1.0, 1.0, 0.0]]), np.zeros(1),
                               -np.ones(3), np.ones(3), np.zeros(9))


@pytest.mark.parametrize("handoff", ["top", "deep"])
def test_bab_with_a_subdomain_helper_decides_what_bab_alone_decides(handoff):
    handed = 0
    for seed in range(3):
        net = tiny_net(seed, 3, [5, 4])
        lo, hi = -np.ones(3), np.ones(3)
        C = np.array([[-1.0, 1.0, 0.0]])
        best = _best(seed)
        for shift in (-0.05, 0.05):
            truth = "sat" if shift > 0 else "unsat"
            case = VNNLibCase(lo, hi, (Conjunction(C, np.array([-best + shift])),))
            settings = BaBSettings(attack=False, batch=1, split="relu", handoff=handoff)
            alone = bab_verify_case(net, case, deadline=time.perf_counter() + 20, settings=settings)
            helper = _InlineHelper(net, case)
            both = bab_verify_case(net, case, deadline=time.perf_counter() + 20, settings=settings, helper=helper)
            assert alone.verdict == truth, (seed, shift, alone.to_dict())
            assert both.verdict == truth, (seed, shift, both.to_dict(), helper.solved)
            if both.verdict == "sat":
                y = net.forward(both.counterexample)
                assert C @ y + case.disjuncts[0].d >= 0
            assert both.helper_closed <= both.handed
            handed += both.handed
    assert handed > 0
