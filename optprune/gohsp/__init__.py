"""GOHSP for vision transformers: graph-based head ranking and ADMM with heterogeneous structured sparsity.

Yin, Uzkent, Shen, Jin, Yuan 2023, "GOHSP: A Unified Framework of Graph and
Optimization-based Heterogeneous Structured Pruning for Vision Transformers"
(AAAI). :func:`stationary_distribution` / :func:`head_importance` rank heads
through the head-similarity graph; :class:`GraphHeadScorer` (registered as
``"gohsp"``) makes that a scorer of the pruning engine; :func:`search_keep`
turns scores into per-layer budgets with the exact structure search;
:func:`run_admm` drives a model into the heterogeneous structured-sparse set
(mathematics in :mod:`optprune.formulations.admm`); :class:`GOHSP` is the
estimator doing all of it, then the hard prune and fine-tuning.
"""

from optprune.gohsp._admm import group_rows, run_admm, set_group_rows
from optprune.gohsp._estimator import GOHSP
from optprune.gohsp._graph import SIMILARITIES, head_activations, head_graph, head_importance, stationary_distribution
from optprune.gohsp._scorer import GraphHeadScorer, comparable_scores, search_keep, unit_parameters

__all__ = [
    "GOHSP",
    "SIMILARITIES",
    "GraphHeadScorer",
    "comparable_scores",
    "group_rows",
    "head_activations",
    "head_graph",
    "head_importance",
    "run_admm",
    "search_keep",
    "set_group_rows",
    "stationary_distribution",
    "unit_parameters",
]
