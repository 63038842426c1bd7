"""Expected unstable ReLUs as a resource of the structure search.

A ReLU neuron that is unstable over a query's input region costs one binary
in the MILP (:mod:`optprune.formulations.relu_milp`), and binaries are what
makes the MIP hard. With the instability frequency ``f_i`` of each unit
(:func:`optprune.scoring.instability_frequency`: how often its pre-activation
straddles 0 over eps-balls around calibration inputs), keeping the ``w``
best-scored units of a group costs, in expectation,

.. math:: U_g(w) = \\sum_{i \\in \\mathrm{top}_w(s_g)} f_i

unstable neurons: the search keeps the ``w`` highest scores, so the cost is
the cumulative frequency along the score order. :func:`unstable_layers` turns
it into one :class:`~optprune.search.LayerCost` per group (a one-row
:class:`~optprune.search.Table` over the group's widths), so ``budgets =
{"unstable": 0.3, ...}`` caps the expected binaries next to parameter or FLOP
budgets. Widths between table points are interpolated linearly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from optprune.errors import ShapeMismatchError
from optprune.formulations.structure_search import LayerCost, Table

__all__ = ["RESOURCE", "unstable_layers", "expected_unstable_of_widths"]

RESOURCE = "unstable"


def _ordered_frequencies(scores: np.ndarray, frequencies: np.ndarray, name: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    f = np.asarray(frequencies, dtype=np.float64).reshape(-1)
    if s.shape != f.shape:
        raise ShapeMismatchError(f"group {name!r}: {s.size} scores but {f.size} instability frequencies")
    return f[np.argsort(-s, kind="stable")]


def unstable_layers(scores: Mapping[str, np.ndarray], frequencies: Mapping[str, np.ndarray]) -> list[LayerCost]:
    """One cost entry per group: expected unstable neurons when keeping its ``w`` best-scored units (module doc)."""
    layers = []
    for name, s in scores.items():
        if name not in frequencies:
            raise ShapeMismatchError(
                f"no instability frequencies for group {name!r}; groups given: {sorted(frequencies)}"
            )
        f = _ordered_frequencies(s, frequencies[name], name)
        widths = np.arange(0, f.size + 1, dtype=np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(f)])
        table = Table(np.array([1.0]), widths, cumulative[None, :])
        layers.append(LayerCost(f"{RESOURCE}:{name}", 1, name, {RESOURCE: table}))
    return layers


def expected_unstable_of_widths(
    scores: Mapping[str, np.ndarray], frequencies: Mapping[str, np.ndarray], widths: Mapping[str, int]
) -> float:
    """``sum_g U_g(w_g)``: the expected unstable neurons of a width plan (for checking a search result)."""
    return float(sum(_ordered_frequencies(scores[g], frequencies[g], g)[: int(w)].sum() for g, w in widths.items()))
