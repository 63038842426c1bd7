"""Reconstruction-optimal structured pruning (OSSCAR / CHITA style): which units of a group to keep so that the
consumer layer, re-fitted by least squares, reproduces its calibration outputs best.

For a prunable group whose outputs feed a consumer layer with inputs ``X`` (calibration activations, N x n)
and weight ``W`` (n x m, rows = the group's units), keeping the units ``S`` costs

.. math:: E(S) = \\min_{W'} \\|X W - X_S W'\\|_F^2 + \\lambda \\|W'\\|_F^2
          = \\operatorname{tr}(W^\\top G W) - \\operatorname{tr}(C_S^\\top (G_{SS} + \\lambda I)^{-1} C_S),

with ``G = X^T X`` and ``C = G W`` (Meng et al., "OSSCAR: One-Shot Structured Pruning in Vision and Language
Models with Combinatorial Optimization", ICML 2024; Benbaki et al., "Fast as CHITA", ICML 2023). Only ``G`` and
``C`` are kept, so memory does not grow with the calibration set. Heads are blocks of units.

Modules: ``_problem`` (the problem, its objective and the re-fit), ``_search`` (greedy elimination with rank-one
updates, local search by swaps, the error-vs-width path), ``_exact`` (the MIQP through the formulations layer and
the solver protocol) and ``_bound`` (the convex relaxation's lower bound).
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "ReconstructionProblem": "_problem",
    "ReconstructionResult": "_problem",
    "greedy_backward": "_search",
    "local_search": "_search",
    "elimination_path": "_search",
    "solve_reconstruction": "_search",
    "solve_exact": "_exact",
    "lower_bound": "_bound",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'optprune.reconstruction' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optprune.reconstruction.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
