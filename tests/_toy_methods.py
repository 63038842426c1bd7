"""A toy scorer and a toy pruning decision: all that adding a method takes is this file plus one registration line.

``tests/test_registries.py`` registers them (``SCORERS.register("toy", ToyScorer)``,
``DECISIONS.register("keep_first", KeepFirst())``), runs them through the CLI and a
bench config, and unregisters them.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from optprune._validation import InstanceOf
from optprune.pruning import ScoredDecision, keep_count
from optprune.scoring import Scorer


class ToyScorer(Scorer):
    """Scores unit ``j`` of a group by ``j`` (``reverse``: by ``-j``): the last units rank highest."""

    name = "toy"
    needs_data = False
    _parameter_constraints: ClassVar[dict] = {"reverse": [InstanceOf((bool,))]}

    def __init__(self, reverse: bool = False) -> None:
        self.reverse = reverse

    def _score(self, model, groups, batches):
        return {g.name: np.arange(g.width, dtype=float) * (-1.0 if self.reverse else 1.0) for g in groups}


class KeepFirst(ScoredDecision):
    """Keeps the first ``keep_count`` units of every group, whatever their scores."""

    def keep(self, pruner, model, groups):
        return {g.name: list(range(keep_count(g.width, pruner.ratio, pruner.min_keep))) for g in groups}
