"""Declarative parameter validation (optprune._validation) as the pruner and the scorers use it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optprune._validation import InstanceOf, Interval, Options, Predicate, validate_params
from optprune.errors import InvalidParameterError
from optprune.scoring import BonsaiScorer, MagnitudeScorer, MIPAwareScorer, get_scorer


@pytest.mark.parametrize("closed", ["both", "left", "right", "neither"])
def test_interval_refuses_nan_whatever_its_ends(closed: str) -> None:
    for low, high in ((0.0, 1.0), (None, None), (0.0, None), (None, 1.0)):
        interval = Interval(float, low, high, closed=closed)
        assert not interval.accepts(math.nan)
        assert not interval.accepts(np.float64("nan"))


def test_interval_ends_kinds_and_infinity() -> None:
    half_open = Interval(float, 0.0, 1.0, closed="left")
    assert half_open.accepts(0.0) and half_open.accepts(0.5) and not half_open.accepts(1.0)
    assert not half_open.accepts(True) and not half_open.accepts("0.5")
    ints = Interval(int, 1, None)
    assert ints.accepts(3) and ints.accepts(np.int64(3)) and not ints.accepts(3.0) and not ints.accepts(0)
    assert Interval(float, 0.0, None).accepts(math.inf)
    assert not Interval(float, 0.0, None, finite=True).accepts(math.inf)
    assert Interval(float, 0.0, None, finite=True).describe() == "a finite float in [0.0, inf]"
    with pytest.raises(ValueError, match="closed"):
        Interval(float, 0.0, 1.0, closed="open")


def test_message_names_owner_parameter_allowed_and_received() -> None:
    constraints = {"k": [Interval(int, 1, 5)], "mode": [Options(("a", "b"))], "f": [InstanceOf((dict,)), None],
                   "pair": [Predicate(lambda v: isinstance(v, tuple) and len(v) == 2, "a pair")]}
    good = {"k": 2, "mode": "a", "f": None, "pair": (1, 2)}
    validate_params("Thing", good, constraints)
    cases = [
        ({"k": 7}, "Thing: parameter 'k' must be an int in [1, 5]; got 7"),
        ({"mode": "c"}, "Thing: parameter 'mode' must be one of 'a', 'b'; got 'c'"),
        ({"f": []}, "Thing: parameter 'f' must be an instance of dict or None; got []"),
        ({"pair": (1,)}, "Thing: parameter 'pair' must be a pair; got (1,)"),
    ]
    for change, message in cases:
        with pytest.raises(InvalidParameterError) as info:
            validate_params("Thing", {**good, **change}, constraints)
        assert str(info.value) == message


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MagnitudeScorer(p=math.nan),
         r"MagnitudeScorer: parameter 'p' must be a finite float in \(0.0, inf\); got nan"),
        (lambda: MagnitudeScorer(members="some"),
         r"MagnitudeScorer: parameter 'members' must be one of 'all', 'in', 'out'"),
        (lambda: MIPAwareScorer(eps=math.nan), r"MIPAwareScorer: parameter 'eps' must be .*; got nan"),
        (lambda: MIPAwareScorer(weight=-1.0),
         r"MIPAwareScorer: parameter 'weight' must be a finite float in \[0.0, inf\]; got -1.0"),
        (lambda: MIPAwareScorer(normalizer="max"), r"MIPAwareScorer: parameter 'normalizer' must be one of 'zscore'"),
        (lambda: MIPAwareScorer(input_range=(1.0, 0.0)), r"parameter 'input_range' must be a pair \(low, high\)"),
        (lambda: BonsaiScorer(keep_prob=1.0),
         r"BonsaiScorer: parameter 'keep_prob' must be a float in \(0.0, 1.0\); got 1.0"),
        (lambda: get_scorer("taylor", members="rows"), r"TaylorScorer: parameter 'members' must be one of"),
    ],
)
def test_scorers_validate_their_parameters_when_scoring(make, message) -> None:
    from torch import nn

    scorer = make()  # the constructor only stores (estimator contract): the check comes at the point of use
    with pytest.raises(InvalidParameterError, match=message):
        scorer(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), input_shape=(2,))


def test_scorer_parameters_are_checked_again_before_scoring() -> None:
    from torch import nn

    scorer = MagnitudeScorer()
    scorer.p = math.nan  # changed after construction: caught when scoring, not silently used
    with pytest.raises(InvalidParameterError, match="parameter 'p'"):
        scorer(nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)), input_shape=(2,))
