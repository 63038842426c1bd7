"""The Pruner's estimator contract, its decision modes, and recovery by fine-tuning."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError, NotFittedError
from optprune.pruning import (
    Pruner,
    PruningDecision,
    count_parameters,
    distillation_loss,
    finetune,
    global_keep,
    uniform_keep,
)
from optprune.scoring import Scorer


def mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))


def data(n: int = 60, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, 4, 4, generator=g)
    y = (X.reshape(n, -1)[:, :8].sum(1) > X.reshape(n, -1)[:, 8:].sum(1)).long() + (X[:, 0, 0, 0] > 0.7).long()
    return X, y


class FixedScorer(Scorer):
    """Scores given up front: shows a user-defined scorer plugs into the pruner."""

    name = "fixed"
    needs_data = False

    def __init__(self, scores):
        self.scores = scores

    def _score(self, model, groups, batches):
        return {g.name: np.asarray(self.scores[g.name], dtype=float) for g in groups}


FIXED = {"1": np.arange(10, dtype=float), "3": np.array([5.0, 0.5, 4.0, 0.1, 3.0, 0.2])}


def test_constructor_only_stores_parameters() -> None:
    p = Pruner(scorer="nope", ratio=7, decision="sideways", min_keep=0)
    assert p.get_params()["ratio"] == 7 and p.scorer == "nope"
    assert "ratio=7" in repr(p)
    assert p.set_params(ratio=0.25) is p and p.ratio == 0.25
    with pytest.raises(InvalidParameterError, match="unknown parameter 'rate'"):
        p.set_params(rate=0.1)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ratio": 1.0}, r"parameter 'ratio' must be a float in \[0.0, 1.0\); got 1.0"),
        ({"ratio": -0.1}, r"parameter 'ratio' must be a float in \[0.0, 1.0\); got -0.1"),
        ({"ratio": "half"}, r"parameter 'ratio' must be .*; got 'half'"),
        ({"decision": "sideways"}, r"parameter 'decision' must be one of 'uniform', 'global', .* or a callable"),
        ({"normalizer": "max"}, r"parameter 'normalizer' must be one of 'auto', 'zscore'.*; got 'max'"),
        ({"min_keep": 0}, r"parameter 'min_keep' must be an int in \[1, inf\]; got 0"),
        ({"min_keep": 1.5}, r"parameter 'min_keep' must be an int"),
        ({"scorer": "nope"}, r"parameter 'scorer' must be one of .*magnitude.* or a Scorer instance; got 'nope'"),
        ({"input_shape": (0, 4)}, r"parameter 'input_shape' must be a tuple of positive ints or None"),
        ({"compensate": "yes"}, r"parameter 'compensate' must be an instance of bool; got 'yes'"),
        ({"ratio": float("nan")}, r"Pruner: parameter 'ratio' must be a float in \[0.0, 1.0\); got nan"),
        ({"ratio": np.float64("nan")}, r"Pruner: parameter 'ratio' must be a float in \[0.0, 1.0\); got "),
    ],
)
def test_fit_validates_parameters(params, message) -> None:
    with pytest.raises(InvalidParameterError, match=message):
        Pruner(**params).fit(mlp(), data())


def test_fit_counts_parameters_from_widths_without_building_a_model(monkeypatch) -> None:
    import optprune.pruning._apply as apply_module
    import optprune.pruning._pruner as pruner_module

    def refuse(*args, **kwargs):
        raise AssertionError("fit must not build a pruned copy to count its parameters")

    monkeypatch.setattr(pruner_module, "apply_decision", refuse)
    monkeypatch.setattr(apply_module.copy, "deepcopy", refuse)
    p = Pruner(FixedScorer(FIXED), ratio=0.5).fit(mlp())
    # widths 5 and 3: 16*5 + 5 + 5*3 + 3 + 3*3 + 3
    assert p.n_params_after_ == 16 * 5 + 5 + 5 * 3 + 3 + 3 * 3 + 3


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        Pruner().transform(mlp())


def test_uniform_keeps_top_scores_per_group() -> None:
    model = mlp()
    p = Pruner(FixedScorer(FIXED), ratio=0.5).fit(model)
    assert p.decision_.kept == {"1": (5, 6, 7, 8, 9), "3": (0, 2, 4)}
    assert p.widths_ == {"1": 5, "3": 3}
    small = p.transform()
    assert small[1].out_features == 5 and small[3].weight.shape == (3, 5)
    assert p.n_params_after_ == count_parameters(small) < p.n_params_before_ == count_parameters(model)
    # floor((1 - 0.3) * 10) = 7, floor((1 - 0.3) * 6) = 4
    assert Pruner(FixedScorer(FIXED), ratio=0.3).fit(model).widths_ == {"1": 7, "3": 4}


def test_global_threshold_on_normalised_scores() -> None:
    p = Pruner(FixedScorer(FIXED), ratio=0.5, decision="global", normalizer="none", min_keep=2).fit(mlp())
    # the 8 lowest of the 16 values: 0, 1, 2, 3 (group 1) and 0.1, 0.2, 0.5, 3.0 (group 3; ties: group 1 first)
    assert p.decision_.kept == {"1": (4, 5, 6, 7, 8, 9), "3": (0, 2)}
    p = Pruner(FixedScorer(FIXED), ratio=0.75, decision="global", normalizer="none", min_keep=2).fit(mlp())
    assert len(p.decision_.kept["3"]) == 2  # min_keep stops group 3 at 2 units
    assert sum(len(v) for v in p.decision_.kept.values()) == 16 - 12


def test_select_functions_directly() -> None:
    from optprune.pruning import dependency_groups

    groups, _ = dependency_groups(mlp(), (1, 4, 4))
    assert uniform_keep(FIXED, groups, 0.0) == {"1": list(range(10)), "3": list(range(6))}
    assert global_keep(FIXED, groups, 0.0) == {"1": list(range(10)), "3": list(range(6))}


def test_callable_decision_gets_normalised_scores() -> None:
    seen = {}

    def keep_first_two(scores, groups, ratio):
        seen.update(scores)
        return {g.name: [0, 1] for g in groups}

    p = Pruner(FixedScorer(FIXED), decision=keep_first_two, normalizer="mean").fit(mlp())
    np.testing.assert_allclose(seen["1"], FIXED["1"] / FIXED["1"].mean())
    assert p.widths_ == {"1": 2, "3": 2} and p.decision_.metadata["decision"] == "keep_first_two"

    def bad(scores, groups, ratio):
        return {"1": [99]}

    with pytest.raises(InvalidParameterError, match="allowed range is 0..9"):
        Pruner(FixedScorer(FIXED), decision=bad).fit(mlp())


def test_search_decision_is_the_brute_force_optimum_under_the_parameter_budget() -> None:
    # The search keeps the w best units of each group, maximising the sum of the kept mean-normalised scores
    # with params(w1, w2) = 16 w1 + w1 + w1 w2 + w2 + 3 w2 + 3 <= (1 - ratio) * 257 (257 = 170 + 66 + 21).
    n1, n3 = FIXED["1"] / FIXED["1"].mean(), FIXED["3"] / FIXED["3"].mean()
    plans = []
    for w1, w2 in itertools.product(range(1, 11), range(1, 7)):
        params = 17 * w1 + (w1 + 1) * w2 + 3 * (w2 + 1)
        if params <= 0.5 * 257:
            plans.append((np.sort(n1)[::-1][:w1].sum() + np.sort(n3)[::-1][:w2].sum(), w1, w2, params))
    plans.sort(reverse=True)
    value, w1, w2, params = plans[0]
    assert (w1, w2, params) == (5, 4, 124) and value > plans[1][0] + 0.1  # a unique optimum, worked out here
    p = Pruner(FixedScorer(FIXED), ratio=0.5, decision="search").fit(mlp())
    assert p.normalizer_ == "mean" and p.search_result_ is not None
    assert p.widths_ == {"1": 5, "3": 4}
    # the best-scored units: 5..9 of group 1; scores 5, 4, 3, 0.5 (units 0, 2, 4, 1) of group 3
    assert {k: list(v) for k, v in p.decision_.kept.items()} == {"1": [5, 6, 7, 8, 9], "3": [0, 1, 2, 4]}
    assert p.search_result_.objective == pytest.approx(value)
    assert p.n_params_before_ == 257 and p.n_params_after_ == 124
    assert count_parameters(p.transform()) == 124


def test_fit_scores_and_compensation_with_data() -> None:
    model = mlp()
    X, y = data()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    p = Pruner("flap", ratio=0.4, compensate=True).fit(model, (X, y))
    assert set(p.scores_) == {"1", "3"} and p.input_shape_ == (1, 4, 4)
    assert set(p.compensation_) == {"3", "5"}
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    small = p.transform()
    assert small(X).shape == (60, 3)
    with pytest.raises(InvalidParameterError, match="compensate=True needs calibration data"):
        Pruner("l1", compensate=True).fit(model)


def test_transform_replays_on_another_model() -> None:
    p = Pruner("l1", ratio=0.5).fit(mlp(0))
    other = p.transform(mlp(1))
    assert [t.shape for t in other.parameters()] == [t.shape for t in p.transform().parameters()]
    assert isinstance(p.decision_, PruningDecision)


def test_distillation_loss_by_hand() -> None:
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    y = torch.tensor([0])
    ce = nn.functional.cross_entropy(s, y)
    assert distillation_loss(s, y, None, 0.7, 2.0) == pytest.approx(float(ce))
    assert distillation_loss(s, y, t, 0.0, 2.0) == pytest.approx(float(ce))
    assert distillation_loss(s, y, s, 1.0, 3.0) == pytest.approx(0.0, abs=1e-7)
    p = torch.softmax(t / 2, 1)
    q = torch.softmax(s / 2, 1)
    kl = float((p * (p.log() - q.log())).sum())
    assert distillation_loss(s, y, t, 0.25, 2.0) == pytest.approx(0.75 * float(ce) + 0.25 * 4 * kl, rel=1e-6)


def test_finetune_recovers_and_is_deterministic() -> None:
    X, y = data(200)
    model = mlp()
    pruned = Pruner("l1", ratio=0.7).fit_transform(model)

    def loss(m):
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(X), y))

    a = finetune(Pruner("l1", ratio=0.7).fit_transform(model), (X, y), epochs=15, lr=0.01, progress=False)
    b = finetune(Pruner("l1", ratio=0.7).fit_transform(model), (X, y), epochs=15, lr=0.01, progress=False)
    assert loss(a) < loss(pruned)
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    distilled = finetune(Pruner("l1", ratio=0.7).fit_transform(model), (X, y), epochs=15, lr=0.01, teacher=model,
                         alpha=0.9, progress=False)
    assert not all(torch.equal(pa, pd) for pa, pd in zip(a.parameters(), distilled.parameters()))
    assert not distilled.training


def test_finetune_validates() -> None:
    alpha_message = r"finetune: parameter 'alpha' must be a float in \[0.0, 1.0\]; got 1.5"
    with pytest.raises(InvalidParameterError, match=alpha_message):
        finetune(mlp(), data(), alpha=1.5)
    with pytest.raises(InvalidParameterError, match=r"parameter 'epochs' must be an int in \[0, inf\]; got -1"):
        finetune(mlp(), data(), epochs=-1)
    with pytest.raises(InvalidParameterError, match="parameter 'lr' must be a finite float .*; got nan"):
        finetune(mlp(), data(), lr=float("nan"))
