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


def _unstable_by_definition(scores, freqs, widths) -> float:
    """U = sum of f_i over the units kept, unit i kept when fewer than w units of its group score higher.

    Written from the definition, unit by unit, sharing no code with the library (scores are distinct draws).
    """
    total = 0.0
    for g, w in widths.items():
        for i, (s_i, f_i) in enumerate(zip(scores[g], freqs[g])):
            higher = sum(1 for j, s_j in enumerate(scores[g]) if j != i and s_j > s_i)
            if higher < w:
                total += float(f_i)
    return total


def test_expected_unstable_by_hand() -> None:
    scores = {"a": np.array([0.9, 0.1, 0.5]), "b": np.array([0.2, 0.7])}
    freqs = {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.25, 4.0])}
    # a keeps 0.9 and 0.5 (frequencies 1 and 3), b keeps 0.7 (frequency 4)
    assert expected_unstable_of_widths(scores, freqs, {"a": 2, "b": 1}) == pytest.approx(8.0)
    assert expected_unstable_of_widths(scores, freqs, {"a": 1, "b": 2}) == pytest.approx(1.0 + 4.25)
    assert expected_unstable_of_widths(scores, freqs, {"a": 3, "b": 0}) == pytest.approx(6.0)
    # the cost tables the search reads: U(w) for w = 0, 1, ... along the score order (a: 0.9, 0.5, 0.1)
    tables = {layer.output: layer.costs["unstable"] for layer in unstable_layers(scores, freqs)}
    assert tables["a"].out_widths.tolist() == [0, 1, 2, 3] and tables["a"].values.tolist() == [[0, 1, 4, 6]]
    assert tables["b"].out_widths.tolist() == [0, 1, 2] and tables["b"].values.tolist() == [[0, 4, 4.25]]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("fraction", [0.3, 0.6])
def test_unstable_budget_is_met_and_the_plan_is_the_brute_force_optimum(seed, fraction):
    scores, freqs = _instance(seed)
    layers = chain_layers(["h1", "h2"], 4, 3) + unstable_layers(scores, freqs)
    result = search_widths(scores, layers, {"unstable": fraction, "params": 1.0}, mip_gap=0.0)
    dense = float(freqs["h1"].sum() + freqs["h2"].sum())  # every unit kept
    used = _unstable_by_definition(scores, freqs, result.widths)
    assert used <= fraction * dense + 1e-9
    assert result.resources["unstable"] == pytest.approx(used)
    assert expected_unstable_of_widths(scores, freqs, result.widths) == pytest.approx(used)
    best = -np.inf
    for w1, w2 in itertools.product(range(1, 7), range(1, 6)):
        if _unstable_by_definition(scores, freqs, {"h1": w1, "h2": w2}) <= fraction * dense + 1e-9:
            value = np.sort(scores["h1"])[::-1][:w1].sum() + np.sort(scores["h2"])[::-1][:w2].sum()
            best = max(best, value)
    assert result.objective == pytest.approx(best, abs=1e-9)
