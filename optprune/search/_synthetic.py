"""Synthetic structure-search instances (MLP chains with realistic score profiles) for benchmarks and tests."""

from __future__ import annotations

import numpy as np

from optprune.formulations.structure_search import LayerCost, SearchProblem, WidthGroup, linear_costs, width_grid

__all__ = ["synthetic_problem"]


def synthetic_problem(
    n_layers: int,
    *,
    min_units: int = 256,
    max_units: int = 1024,
    round_to: int = 8,
    min_width: int = 8,
    input_size: int = 784,
    output_size: int = 10,
    seed: int = 0,
) -> SearchProblem:
    """An MLP of ``n_layers`` hidden layers with widths uniform on multiples of ``round_to`` in [min, max].

    Scores are log-normal per unit (like weight-magnitude scores) with a
    per-layer location and spread, so layers differ in how much they are worth
    keeping. Costs are ``nn.Linear`` parameters and multiply-accumulates; widths
    are multiples of ``round_to`` from ``min_width`` up.
    """
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_units // round_to, max_units // round_to + 1, n_layers) * round_to
    groups = []
    for i, size in enumerate(sizes):
        scores = rng.lognormal(rng.normal(0.0, 0.5), rng.uniform(0.3, 1.0), int(size))
        groups.append(WidthGroup(f"h{i}", scores, width_grid(int(size), round_to, min_width)))
    ends = [input_size, *[g.name for g in groups], output_size]
    layers = [LayerCost(f"fc{i}", a, b, linear_costs()) for i, (a, b) in enumerate(zip(ends, ends[1:]))]
    return SearchProblem(tuple(groups), tuple(layers), name=f"synthetic_{n_layers}x{min_units}-{max_units}_s{seed}")
