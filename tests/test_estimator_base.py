"""The estimator base (optprune._estimator) as every estimator and scorer uses it: the constructor only stores,
get_params/set_params/clone round trip, repr, validation at fit (not at __init__), NotFittedError before fit."""

from __future__ import annotations

import inspect
import math

import pytest
from torch import nn

from optprune._estimator import BaseEstimator, clone
from optprune.bayes import BMRS
from optprune.errors import InvalidParameterError, NotFittedError
from optprune.gohsp import GOHSP
from optprune.hf._methods import HFCompresso, HFLoRAShear, HFOneShot
from optprune.lm._prune import Compresso, LoRAShear, OneShot
from optprune.lm._reconstruct import Reconstruct
from optprune.lm._sprint import Sprint
from optprune.pai import Reconvene, UnstructuredPaI
from optprune.pruning import Pruner
from optprune.scoring import SCORERS, MagnitudeScorer, Scorer

ESTIMATORS = [Pruner, BMRS, GOHSP, Reconvene, UnstructuredPaI, OneShot, Reconstruct, Compresso, LoRAShear, Sprint,
              HFOneShot, HFCompresso, HFLoRAShear]
SCORER_CLASSES = sorted({SCORERS.get(name) for name in SCORERS.names()}, key=lambda c: c.__name__)
ALL = ESTIMATORS + SCORER_CLASSES


def _leaves(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out.add(sub)
        out |= _leaves(sub)
    return {c for c in out if not c.__name__.startswith("_") and not inspect.isabstract(c)
            and c.__module__.startswith("optprune.")}


def test_every_estimator_of_the_library_is_covered_here() -> None:
    assert _leaves(BaseEstimator) <= set(ALL), sorted(c.__name__ for c in _leaves(BaseEstimator) - set(ALL))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_one_implementation_of_the_estimator_api(cls: type) -> None:
    assert issubclass(cls, BaseEstimator)
    for klass in cls.__mro__:
        if klass in (BaseEstimator, object):
            continue
        for method in ("get_params", "set_params", "__repr__", "_check_fitted"):
            assert method not in vars(klass), f"{klass.__name__} defines its own {method}"


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_params_are_the_constructor_arguments_and_round_trip(cls: type) -> None:
    est = cls()
    signature = {} if cls.__init__ is object.__init__ else inspect.signature(cls.__init__).parameters
    params = est.get_params(deep=False)
    assert list(params) == [n for n in signature if n != "self"]  # a scorer without a constructor has none
    assert all(params[n] == signature[n].default or params[n] is signature[n].default for n in params)
    assert set(cls._parameter_constraints) <= set(params)  # every constraint names a constructor argument
    assert est.set_params(**params) is est and est.get_params(deep=False) == params
    with pytest.raises(InvalidParameterError, match=rf"{cls.__name__}: unknown parameter 'no_such'; parameters: "):
        est.set_params(no_such=1)
    twin = clone(est)
    assert type(twin) is cls and twin is not est and twin.get_params(deep=False) == params
    text = repr(est)
    assert text.startswith(f"{cls.__name__}(") and text.endswith(")")
    assert all(f"{n}={params[n]!r}" in text for n in params)


@pytest.mark.parametrize(
    ("cls", "name"),
    [(cls, name) for cls in ALL for name in cls._parameter_constraints],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_constructor_stores_and_fit_validates(cls: type, name: str) -> None:
    est = cls(**{name: math.nan})  # NaN: no constraint of any parameter accepts it
    assert getattr(est, name) is not None and math.isnan(getattr(est, name))
    assert not hasattr(est, cls._fitted_attribute)
    expected = rf"{cls.__name__}: parameter '{name}' must be .*; got nan"
    with pytest.raises(InvalidParameterError, match=expected):
        if issubclass(cls, Scorer):
            est(None)  # a scorer's fit is the scoring: parameters are checked before the model is looked at
        else:
            est.fit(None, None)  # parameters are checked before the arguments are looked at


def _result(est: BaseEstimator):
    if isinstance(est, Sprint):
        return est.score(None, [], 1)
    return est.transform()


@pytest.mark.parametrize("cls", ESTIMATORS, ids=lambda c: c.__name__)
def test_results_before_fit_raise_not_fitted(cls: type) -> None:
    message = rf"This {cls.__name__} is not fitted yet; call fit\(model(, \w+)?\) first"
    with pytest.raises(NotFittedError, match=message):
        _result(cls())


def test_pruner_not_fitted_message_names_the_required_arguments() -> None:
    with pytest.raises(NotFittedError, match=r"This Pruner is not fitted yet; call fit\(model\) first"):
        Pruner().transform()


def test_nested_parameters_and_clone_of_a_fitted_estimator() -> None:
    scorer = MagnitudeScorer(p=1)
    p = Pruner(scorer=scorer, ratio=0.25)
    deep = p.get_params()
    assert deep["scorer"] is scorer and deep["scorer__p"] == 1 and deep["scorer__members"] == "out"
    assert "scorer__p" not in p.get_params(deep=False)
    p.set_params(scorer__p=3, ratio=0.5)
    assert scorer.p == 3 and p.ratio == 0.5
    with pytest.raises(InvalidParameterError, match=r"parameter 'ratio' is not an estimator"):
        p.set_params(ratio__x=1)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    p.fit(model)
    twin = clone(p)
    assert twin.scorer is not scorer and twin.scorer.get_params() == scorer.get_params()
    assert not hasattr(twin, "decision_") and hasattr(p, "decision_")
    with pytest.raises(NotFittedError):
        twin.transform()
    assert p.transform()[0].out_features == 3
    with pytest.raises(InvalidParameterError, match="clone: expected an optprune estimator; got Sequential"):
        clone(model)


def test_a_user_scorer_gets_the_api_from_its_constructor() -> None:
    class Mine(Scorer):
        name = "mine"
        needs_data = False

        def __init__(self, k: int = 2, mode: str = "a") -> None:
            self.k = k
            self.mode = mode

        def _score(self, model, groups, batches):
            return {g.name: [float(self.k)] * g.width for g in groups}

    s = Mine(k=5)
    assert repr(s) == "Mine(k=5, mode='a')" and clone(s).get_params() == {"k": 5, "mode": "a"}

    class Bad(Mine):
        def __init__(self, **kwargs) -> None:
            self.kwargs = kwargs

    with pytest.raises(TypeError, match=r"Bad: an estimator's constructor names every parameter"):
        Bad().get_params()
