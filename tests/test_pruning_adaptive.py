"""FLAP's adaptive structure (decision "adaptive"): per-group z-scores, one global threshold cut at 1 - ratio of
the parameters, against a hand-written reference; how it differs from the unit-count cut of "global"."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from optprune.pruning import DECISIONS, Pruner, ScoredDecision, count_parameters
from optprune.scoring import Scorer


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 10), nn.ReLU(), nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 3))


def params_of(w1: int, w2: int) -> int:
    return 17 * w1 + (w1 + 1) * w2 + 3 * (w2 + 1)


class FixedScorer(Scorer):
    name = "fixed"
    needs_data = False

    def __init__(self, scores):
        self.scores = scores

    def _score(self, model, groups, batches):
        return {g.name: np.asarray(self.scores[g.name], dtype=float) for g in groups}


def reference(scores: dict, frac: float) -> dict[str, int]:
    """FLAP's cut by hand: the lowest threshold on the per-group z-scores whose plan keeps <= frac of the params."""
    z = {k: (v - v.mean()) / v.std() for k, v in scores.items()}
    full = params_of(10, 6)
    for tau in np.sort(np.concatenate(list(z.values()))):  # lowest threshold first: the largest plan first
        w = {k: max(int((v >= tau).sum()), 1) for k, v in z.items()}
        if params_of(w["1"], w["3"]) <= frac * full:
            return w
    raise AssertionError("no plan fits")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [0.3, 0.5, 0.7])
def test_adaptive_is_flaps_threshold_at_the_parameter_budget(seed: int, ratio: float) -> None:
    rng = np.random.default_rng(seed)
    scores = {"1": rng.gamma(2.0, 1.0, 10), "3": rng.gamma(2.0, 3.0, 6)}
    model = mlp()
    p = Pruner(FixedScorer(scores), ratio=ratio, decision="adaptive").fit(model)
    assert p.widths_ == reference(scores, 1 - ratio)
    assert count_parameters(p.transform()) <= (1 - ratio) * count_parameters(model)
    for name, kept in p.decision_.kept.items():  # within a group: the highest scores
        assert sorted(kept) == sorted(np.argsort(-scores[name])[: len(kept)].tolist())
    assert p.search_result_.method == "global"


def test_adaptive_cuts_by_parameters_where_global_cuts_by_units() -> None:
    """Units of group "1" read 16 inputs, those of "3" read 10: a unit count is not a parameter fraction."""
    scores = {"1": np.linspace(1.0, 2.0, 10), "3": np.array([5.0, 0.1, 0.2, 0.3, 0.4, 0.5])}
    model = mlp()
    full = count_parameters(model)
    fractions = {}
    for decision in ("global", "adaptive"):
        p = Pruner(FixedScorer(scores), ratio=0.7, decision=decision).fit(model)
        fractions[decision] = count_parameters(p.transform()) / full
    assert fractions["global"] > 0.3  # 11 of 16 units removed, but 30.7% of the parameters stay
    assert fractions["adaptive"] <= 0.3


def test_adaptive_is_registered_as_a_scored_decision() -> None:
    assert "adaptive" in DECISIONS.names()
    assert isinstance(DECISIONS.get("adaptive"), ScoredDecision)
