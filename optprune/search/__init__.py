"""Global structure search: how many units each prunable group keeps, under resource budgets, exactly.

The problem and its MILP live in :mod:`optprune.formulations.structure_search`
(torch-free); this package solves it with any backend or a baseline
(:func:`solve_search`, :func:`search_widths`), reads and writes instances, builds
problems from torch models (:func:`problem_from_model`), measures latency
tables, gives the pruner its ``decision="search"`` (:func:`search_decision`),
and allocates widths from per-group error curves (:func:`allocate_widths`).
Torch is imported only by the model-facing functions.
"""

import importlib

from optprune.formulations.structure_search import (
    Bilinear,
    LayerCost,
    SearchProblem,
    Table,
    WidthGroup,
    conv_costs,
    linear_costs,
    width_grid,
)
from optprune.search._allocate import allocate_widths, error_values
from optprune.search._baselines import global_threshold_widths, standardize, uniform_widths
from optprune.search._core import METHODS, SearchResult, chain_layers, search_widths, solve_search
from optprune.search._instances import load_instance, problem_from_dict, problem_to_dict, save_instance
from optprune.search._minimum import build_search_milp, check_budgets, minimum_resources
from optprune.search._synthetic import synthetic_problem
from optprune.search._unstable import expected_unstable_of_widths, unstable_layers

__all__ = [
    "METHODS",
    "Bilinear",
    "LayerCost",
    "SearchProblem",
    "SearchResult",
    "Table",
    "WidthGroup",
    "allocate_widths",
    "build_search_milp",
    "expected_unstable_of_widths",
    "chain_layers",
    "check_budgets",
    "conv_costs",
    "error_values",
    "global_threshold_widths",
    "latency_layers",
    "linear_costs",
    "load_instance",
    "load_latency_layers",
    "magnitude_scores",
    "measure_latency_tables",
    "minimum_resources",
    "model_scores",
    "problem_from_dict",
    "problem_from_model",
    "problem_to_dict",
    "save_instance",
    "save_latency_tables",
    "search_decision",
    "search_widths",
    "solve_search",
    "standardize",
    "synthetic_problem",
    "uniform_widths",
    "unstable_layers",
    "width_grid",
]

_TORCH_NAMES = {
    "problem_from_model": "optprune.search._torch",
    "magnitude_scores": "optprune.search._torch",
    "model_scores": "optprune.search._torch",
    "search_decision": "optprune.search._torch",
    "module_specs": "optprune.search._specs",
    "latency_layers": "optprune.search._latency",
    "measure_latency_tables": "optprune.search._latency",
    "save_latency_tables": "optprune.search._latency",
    "load_latency_layers": "optprune.search._latency",
}


def __getattr__(name: str) -> object:
    # Lazy on purpose: these names need torch (seconds to import), the rest of the search
    # (instances, solving, baselines) does not, e.g. ``optprune search instance.json``.
    if name in _TORCH_NAMES:
        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'optprune.search' has no attribute {name!r}")
