"""From scores to kept units: uniform per-group ratio and global threshold."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from optprune.structure import Group

__all__ = ["keep_count", "top_units", "uniform_keep", "global_keep"]


def keep_count(width: int, ratio: float, min_keep: int) -> int:
    """``max(min_keep, floor((1 - ratio) * width))``, at most ``width``."""
    return int(min(width, max(min_keep, math.floor((1.0 - ratio) * width + 1e-9))))


def top_units(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` highest scores (ties: the lower index first), sorted ascending."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return sorted(int(i) for i in order[:k])


def uniform_keep(
    scores: Mapping[str, np.ndarray], groups: Sequence[Group], ratio: float, min_keep: int = 1
) -> dict[str, list[int]]:
    """Every prunable group removes the same fraction ``ratio`` of its units, lowest scores first."""
    return {g.name: top_units(scores[g.name], keep_count(g.width, ratio, min_keep)) for g in groups if g.prunable}


def global_keep(
    scores: Mapping[str, np.ndarray], groups: Sequence[Group], ratio: float, min_keep: int = 1
) -> dict[str, list[int]]:
    r"""One threshold over all groups' (normalised) scores.

    The ``floor(ratio * U)`` lowest-scoring units over all ``U`` prunable units are
    removed, skipping a unit when its group would fall below ``min_keep``
    (the global ranking of FLAP, An et al. 2024, section 3.2, and of
    Torch-Pruning's ``global_pruning``).
    """
    prunable = [g for g in groups if g.prunable]
    names = np.concatenate([[i] * g.width for i, g in enumerate(prunable)]).astype(int)
    units = np.concatenate([np.arange(g.width) for g in prunable])
    values = np.concatenate([np.asarray(scores[g.name], dtype=np.float64) for g in prunable])
    target = int(math.floor(ratio * values.size + 1e-9))
    left = np.array([g.width for g in prunable])
    removed = [set() for _ in prunable]
    count = 0
    for pos in np.argsort(values, kind="stable"):
        if count >= target:
            break
        gi = names[pos]
        if left[gi] <= min_keep:
            continue
        removed[gi].add(int(units[pos]))
        left[gi] -= 1
        count += 1
    return {g.name: [j for j in range(g.width) if j not in removed[i]] for i, g in enumerate(prunable)}
