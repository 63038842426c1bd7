r"""Reconstruction-optimal one-shot pruning of :class:`TinyLM`: the engine's ``reconstruct`` decision on its trunk.

Every prunable group of :func:`lm_groups` (the heads of a block, blocks of ``head_dim`` columns of ``out_proj``;
the MLP neurons, columns of ``fc2``) is pruned in trace order by
:func:`optprune.pruning.reconstruct` on :meth:`TinyLM.trunk` (the blocks after the embeddings), with calibration
embeddings of ``n_calibration`` training problems: the consumer's inputs come from the model pruned so far, its
targets from the dense model, and the kept units and the consumer's re-fitted weights and bias solve

.. math:: \min_{|S| = k} \; \min_{W', b'} \|Y_{dense} - X_{S} W' - 1 b'^\top\|_F^2 + \lambda \|W'\|_F^2

(Meng et al., "OSSCAR", ICML 2024: swap local search with low-rank updates; the re-fit of SparseGPT/OBC,
Frantar & Alistarh 2023). The widths: ``allocation="uniform"`` keeps the same widths as the one-shot
heuristics (:func:`optprune.lm._prune.uniform_widths`); ``"search"`` (any other name of
:data:`optprune.pruning._reconstruct.WIDTH_ALLOCATIONS`) chooses them by the exact width search over the groups'
greedy error curves (:func:`optprune.search.allocate_widths`) under the parameter budget: the model keeps at most
``(1 - ratio)`` of its parameters, the embeddings outside the trunk counted as fixed. No training, unless a
recovery follows as for the other one-shot methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from optprune._validation import Interval, Options
from optprune.lm._data import ArithTask
from optprune.lm._model import TinyLM, prune_lm
from optprune.lm._prune import OneShot, _calibration, uniform_widths
from optprune.pruning import count_parameters
from optprune.pruning._reconstruct import WIDTH_ALLOCATIONS, reconstruct
from optprune.reconstruction._search import METHODS
from optprune.structure import Group

__all__ = ["Reconstruct"]


class Reconstruct(OneShot):
    """One-shot pruning of heads and MLP neurons by reconstruction with re-fit of ``out_proj``/``fc2`` (module doc).

    Parameters as :class:`OneShot` (``ratio``, ``recovery``, ``steps``, ``lora_rank``, ``lr``, ``n_calibration``,
    ``seed``) and those of :func:`optprune.pruning.reconstruct`: ``allocation`` (``uniform`` or ``search``),
    ``solver`` (``local``, ``greedy``, ``exact``, ``auto``), ``ridge`` (``"auto"`` or >= 0), ``time_limit`` and
    ``max_rounds`` (per group, local search). Fitted: ``model_``, ``one_shot_model_``, ``kept_``, ``reports_`` (one
    per group: kept, objective, relative error, gap, seconds), ``widths_``, ``params_after_``, ``target_params_``.
    """

    _parameter_constraints = {
        "allocation": [Options(tuple(WIDTH_ALLOCATIONS.names()))],
        "solver": [Options(METHODS)],
        "ridge": [Options(("auto",)), Interval(float, 0.0, None)],
        "time_limit": [Interval(float, 0.0, None, closed="neither")],
        "max_rounds": [Interval(int, 0, None)],
        # OneShot's own parameters but its scorer (the reconstruction objective stands in for it)
        **{k: v for k, v in OneShot._parameter_constraints.items() if k != "scorer"},
    }

    def __init__(self, ratio: float = 0.35, allocation: str = "search", solver: str = "local",
                 ridge: float | str = "auto", time_limit: float = 10.0, max_rounds: int = 1000,
                 recovery: str = "none", steps: int = 300, lora_rank: int = 8, lr: float = 2e-3,
                 n_calibration: int = 128, seed: int = 0) -> None:
        self.ratio = ratio
        self.allocation = allocation
        self.solver = solver
        self.ridge = ridge
        self.time_limit = time_limit
        self.max_rounds = max_rounds
        self.recovery = recovery
        self.steps = steps
        self.lora_rank = lora_rank
        self.lr = lr
        self.n_calibration = n_calibration
        self.seed = seed

    def fit(self, model: TinyLM, task: ArithTask, progress: Callable[[dict], None] | None = None) -> Reconstruct:
        """As :meth:`OneShot.fit`; ``progress`` is called with each group's report as soon as it is pruned
        (``group``, ``width``, ``kept``, ``objective``, ``relative``, ``gap``, ``status``, ``seconds``), e.g. to log
        it on stderr."""
        self._progress = progress
        try:
            super().fit(model, task)
        finally:
            self._progress = None
        return self

    def _cut(self, model: TinyLM, task: ArithTask, groups: list[Group]) -> TinyLM:
        ids, tgt = _calibration(model, task, self.n_calibration, self.seed)
        with torch.no_grad():
            X = model.embed(ids)
        trunk = model.trunk().eval()
        options: dict[str, Any] = {}
        if self.allocation == "uniform":
            options["widths"] = uniform_widths(model, groups, self.ratio)
        else:  # the trunk's share of the budget: everything outside it (position embeddings) is kept
            total, inside = count_parameters(model), count_parameters(trunk)
            options.update(allocation=self.allocation,
                           params=((1 - self.ratio) * total - (total - inside)) / inside)
        if self.solver in ("local", "auto"):
            options.update(time_limit=self.time_limit, max_rounds=self.max_rounds)
        cut, decision, reports = reconstruct(
            trunk, (X, tgt), self.ratio, (model.config.block_size, model.config.d_model), solver=self.solver,
            ridge=self.ridge, progress=getattr(self, "_progress", None), **options,
        )
        self.kept_ = {name: list(units) for name, units in decision.kept.items()}
        self.reports_ = reports
        pruned = prune_lm(model, self.kept_, groups)  # the LM cut like the trunk, then the trunk's re-fitted weights
        pruned.blocks.load_state_dict(cut.blocks.state_dict())
        return pruned
