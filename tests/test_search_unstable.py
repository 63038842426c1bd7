"""Expected unstable ReLUs as a structure-search resource, against brute force over the width grid."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optprune.search import chain_layers, expected_unstable_of_widths, search_widths, unstable_layers


def _instance(seed: int):
    rng = np.random.default_rng(seed)
    scores = {"h1": rng.uniform(0, 1, 6), "h2": rng.uniform(0, 1, 5)}
    freqs = {"h1": rng.uniform(0, 3, 6), "h2": rng.uniform(0, 3, 5)}
    return scores, freqs


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_unstable_budget_is_met_and_the_plan_is_the_brute_force_optimum(seed, fraction):
    scores, freqs = _instance(seed)
    layers = chain_layers(["h1", "h2"], 4, 3) + unstable_layers(scores, freqs)
    result = search_widths(scores, layers, {"unstable": fraction, "params": 1.0}, mip_gap=0.0)
    dense = expected_unstable_of_widths(scores, freqs, {"h1": 6, "h2": 5})
    used = expected_unstable_of_widths(scores, freqs, result.widths)
    assert used <= fraction * dense + 1e-9
    assert result.resources["unstable"] == pytest.approx(used)
    best = -np.inf
    for w1, w2 in itertools.product(range(1, 7), range(1, 6)):
        if expected_unstable_of_widths(scores, freqs, {"h1": w1, "h2": w2}) <= fraction * dense + 1e-9:
            value = np.sort(scores["h1"])[::-1][:w1].sum() + np.sort(scores["h2"])[::-1][:w2].sum()
            best = max(best, value)
    assert result.objective == pytest.approx(best, abs=1e-9)
