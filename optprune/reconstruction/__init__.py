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
updates, local search by swaps, the error-vs-width path), the exact methods (``_bnb``: branch and bound on the
perspective relaxation, the default; ``_outer``: outer approximation; ``_exact``: the MIQP through the
formulations layer and the solver protocol) and ``_bound`` (the convex relaxation's lower bound).
"""

from __future__ import annotations

from optprune._lazy import lazy_exports

_PUBLIC = {
    "ReconstructionProblem": "_problem",
    "ReconstructionResult": "_problem",
    "greedy_backward": "_search",
    "local_search": "_search",
    "elimination_path": "_search",
    "solve_reconstruction": "_search",
    "solve_exact": "_exact",
    "solve_miqp": "_exact",
    "solve_outer": "_outer",
    "solve_bnb": "_bnb",
    "lower_bound": "_bound",
}

__all__ = sorted(_PUBLIC)


__getattr__, __dir__ = lazy_exports("optprune.reconstruction", _PUBLIC)
