"""Soundness under floating point: networks built so that float64 rounding hides a counterexample.

The networks of "Fooling a complete neural network verifier" (Zombori et al.,
ICLR 2021) and "Exploiting verified neural networks via floating point
numerical error" (Jia & Rinard, SAS 2021): large weights and tiny margins, so
that ``1e8 - 1e8 + 5e-9`` loses the ``5e-9`` unless the padding scales with the
magnitudes summed. The truth is decided independently: an exact rational
forward pass (``fractions.Fraction``) of a point, and, for the optimisation
queries, brute force over activation patterns.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optprune.network import AffineLayer, Network
from optprune.verification import max_margin, min_distortion, verify_property
from optprune.verification.bounds import interval_bounds, linear_bounds, linear_upper_bound
from optprune.verification.rounding import error_bound, gamma
from optprune.verification.vnnlib import Conjunction, VNNLibCase, VNNLibProperty

METHODS = ("mip", "bab", "auto")


def layer(w, b, act="relu") -> AffineLayer:
    return AffineLayer(np.array(w, dtype=float), np.array(b, dtype=float), act)


def exact_forward(net: Network, x) -> list[list[Fraction]]:
    """Pre-activations of every layer at ``x`` in exact rational arithmetic (the float64 weights as given)."""
    h = [Fraction(float(v)) for v in x]
    out = []
    for lay in net.layers:
        W = lay.dense_weight()
        z = [sum((Fraction(float(W[i, j])) * h[j] for j in range(len(h))), Fraction(float(lay.bias[i])))
             for i in range(W.shape[0])]
        out.append(z)
        h = [max(v, Fraction(0)) for v in z] if lay.activation == "relu" else z
    return out


def prop(net: Network, lo, hi, C, d) -> VNNLibProperty:
    conj = Conjunction(np.atleast_2d(np.asarray(C, dtype=float)), np.atleast_1d(np.asarray(d, dtype=float)))
    case = VNNLibCase(np.asarray(lo, dtype=float), np.asarray(hi, dtype=float), (conj,))
    return VNNLibProperty(net.input_size, net.output_size, (case,), "fp")


def cancellation_net(big: float, tiny: float, gain: float) -> Network:
    """z = [-big x0 + big, x1] -> relu -> q = -big h0 - 0.6 tiny h1 + tiny -> relu -> gain q -> relu -> gain r.

    At x = (1, 1): h0 = 0 and q = 0.4 tiny > 0, so y = 0.4 tiny gain^2 exactly; the interval of q
    over the box sums terms of size big^2 against tiny.
    """
    return Network((
        layer([[-big, 0.0], [0.0, 1.0]], [big, 0.0]),
        layer([[-big, -0.6 * tiny]], [tiny]),
        layer([[gain]], [0.0]),
        layer([[gain]], [0.0], "identity"),
    ))


# The four networks of the issue (1-3 as VNN-LIB-style properties).
NET1 = Network((layer([[-1e4, 0], [0, 1]], [1e4, 0]), layer([[-1e4, -3e-9]], [5e-9]), layer([[1e4]], [0]),
                layer([[1e4]], [0], "identity")))
T27 = 2.0**27
NET2 = Network((layer([[-1.0, 0], [0, 1]], [-T27, 0.0]), layer([[-T27, -(2.0**-30)]], [2.0**-29]),
                layer([[2.0**30]], [0]), layer([[19.0]], [0], "identity")))
NET2_SHALLOW = Network((layer([[-1.0, 0], [0, 1]], [-T27, 0.0]), layer([[-T27, 19.0]], [-(2.0**-30)], "identity")))
NET3 = Network((layer([[3.0], [5.0]], [0, 0]), layer([[5.0, -3.0]], [1.0], "identity")))

CASES = {
    "net1": (NET1, [0.999, 1.0], [1.0, 2.0], [[1.0]], [-0.1], [1.0, 1.0]),
    "net2": (NET2, [-T27 - 16, 1.0], [-T27, 2.0], [[1.0]], [-1.0], [-T27, 1.0]),
    "net2-shallow": (NET2_SHALLOW, [-T27 - 16, 1.0], [-T27, 2.0], [[1.0]], [0.0], [-T27, 1.0]),
    "net3": (NET3, [2.0**26], [2.0**26 + 64], [[0.1]], [-0.099999995], [2.0**26]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_known_point_satisfies_the_property_exactly_and_in_float64(name):
    net, _, _, C, d, x = CASES[name]
    y_exact = exact_forward(net, x)[-1]
    slack_exact = sum(Fraction(c) * v for c, v in zip(C[0], y_exact)) + Fraction(d[0])
    assert slack_exact >= 0
    assert float((np.asarray(C) @ net.forward(np.array(x)))[0] + d[0]) >= 0


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_cancellation_networks_are_never_unsat(name, method):
    net, lo, hi, C, d, _ = CASES[name]
    res = verify_property(net, prop(net, lo, hi, C, d), method=method, time_limit=20, bound_method="linear")
    assert res.verdict != "unsat", res.to_dict()
    if res.verdict == "sat":
        x = res.counterexample
        assert np.all(x >= np.asarray(lo)) and np.all(x <= np.asarray(hi))
        assert float((np.asarray(C) @ net.forward(x))[0] + d[0]) >= 0


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_bound_contains_the_exact_pre_activations_of_the_point(name):
    net, lo, hi, C, d, x = CASES[name]
    exact = exact_forward(net, x)
    for bounds in (interval_bounds(net, lo, hi), linear_bounds(net, lo, hi)):
        for (lower, upper), z in zip(bounds, exact):
            for i, v in enumerate(z):
                assert Fraction(float(lower[i])) <= v <= Fraction(float(upper[i]))
    spec_upper = linear_upper_bound(net, linear_bounds(net, lo, hi), np.asarray(C), np.asarray(d), lo, hi)
    slack = sum(Fraction(c) * v for c, v in zip(C[0], exact[-1])) + Fraction(d[0])
    assert Fraction(float(spec_upper[0])) >= slack


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(big=st.floats(1e2, 1e7), tiny_exp=st.floats(-12.0, -5.0), gain_exp=st.floats(2.0, 6.0),
       method=st.sampled_from(METHODS))
def test_cancellation_family_at_random_scales_is_never_unsat(big, tiny_exp, gain_exp, method):
    tiny, gain = 10.0**tiny_exp, 10.0**gain_exp
    net = cancellation_net(big, tiny, gain)
    x_star = [1.0, 1.0]
    y_exact = exact_forward(net, x_star)[-1][0]
    assert y_exact > 0
    threshold = float(y_exact) / 2  # the property y >= threshold holds at x_star in exact arithmetic
    lo, hi = [1.0 - 1e-3, 1.0], [1.0, 2.0]
    exact = exact_forward(net, x_star)
    for (lower, upper), z in zip(linear_bounds(net, lo, hi), exact):
        assert Fraction(float(lower[0])) <= z[0] <= Fraction(float(upper[0]))
    res = verify_property(net, prop(net, lo, hi, [[1.0]], [-threshold]), method=method, time_limit=10,
                          bound_method="linear")
    assert res.verdict != "unsat", (big, tiny, gain, res.to_dict())


NET4 = Network((layer([[-1e4, 0], [0, 1]], [1e4, 0]), layer([[-1e4, -3e-9]], [5e-9]), layer([[1e4]], [0]),
                layer([[1e4], [0.0]], [0, 0.1], "identity")))


def test_max_margin_bound_is_above_the_best_point_on_the_cancellation_network():
    # Label 1; at (1, 1) y = (0.2, 0.1): margin y0 - y1 = 0.1 by an exact forward pass.
    y = exact_forward(NET4, [1.0, 1.0])[-1]
    assert y[0] - y[1] > Fraction(1, 20)
    res = max_margin(NET4, np.array([0.9995, 1.0005]), 1, 0.0005, domain=(-10.0, 10.0), time_limit=20,
                     bound_method="linear")
    assert res.bound >= 0.1 - 1e-9
    assert not res.proven_robust


def test_min_distortion_with_max_eps_never_exceeds_max_eps_on_the_cancellation_network():
    # (1, 1) is at L-inf distance 0.0005 of the centre and adversarial for label 1.
    res = min_distortion(NET4, np.array([0.9995, 1.0005]), 1, max_eps=0.0005, domain=(-10.0, 10.0),
                         time_limit=20, bound_method="linear")
    assert res.bound <= 0.0005
    if res.x is not None:
        assert int(np.argmax(NET4.forward(res.x))) != 1


def _two_class_net() -> Network:
    # y0 = relu(x) and y1 = 0.5: class 0 wins from x > 0.5 on; x0 = 0.2 is class 1, distance 0.3 to class 0.
    return Network((layer([[1.0]], [0.0]), layer([[1.0], [0.0]], [0.0, 0.5], "identity")))


def test_min_distortion_bound_holds_for_margin_above_zero_not_a_positive_margin():
    net = _two_class_net()
    res = min_distortion(net, np.array([0.2]), 1, time_limit=20, margin=0.1, bound_method="linear")
    # Margin y0 - y1 >= 0 first reached at x = 0.5 (distance 0.3); the old bound was for margin >= 0.1 (0.4).
    assert res.bound <= 0.3 + 1e-9
    assert res.bound >= 0.3 - 1e-4
    assert int(np.argmax(net.forward(res.x))) == 0


def test_min_distortion_with_max_eps_is_no_claim_beyond_the_ball():
    net = _two_class_net()
    res = min_distortion(net, np.array([0.2]), 1, max_eps=0.1, time_limit=20, bound_method="linear")
    assert res.bound == pytest.approx(0.1)  # nothing within 0.1; an adversarial point exists at 0.3
    assert res.x is None


def test_error_bound_covers_catastrophic_cancellation():
    terms = np.array([1e8, -1e8, 5e-9])
    computed = float(np.sum(terms))
    exact = sum(Fraction(float(t)) for t in terms)
    pad = float(error_bound(np.abs(terms).sum(), terms.size))
    assert Fraction(computed) - Fraction(pad) <= exact <= Fraction(computed) + Fraction(pad)
    assert gamma(10) > 10 * 2.0**-53


def test_solver_resolution_blocks_mip_proofs_only_where_the_solver_cannot_resolve():
    from optprune.verification.verdicts import solver_resolution

    well = Network((layer([[1.0, -1.0], [0.5, 0.5]], [0.0, 0.0]), layer([[1.0, -1.0]], [0.0], "identity")))
    lo, hi = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    assert solver_resolution(well, linear_bounds(well, lo, hi), np.array([[1.0]]))[0] < 1e-5
    b1 = linear_bounds(NET1, [0.999, 1.0], [1.0, 2.0])
    assert solver_resolution(NET1, b1, np.array([[1.0]]))[0] > 1.0


verify_mip = functools.partial(verify_property, method="mip")


def test_a_well_scaled_mip_proof_still_goes_through():
    # y = relu(x0) + relu(-x0) - 2 <= -1 on [-1, 1]: unsat by the MIP or the bounds, never unknown.
    net = Network((layer([[1.0], [-1.0]], [0.0, 0.0]), layer([[1.0, 1.0]], [-2.0], "identity")))
    res = verify_mip(net, prop(net, [-1.0], [1.0], [[1.0]], [0.0]), time_limit=20, bound_method="linear")
    assert res.verdict == "unsat"
    assert math.isfinite(res.time_s)
