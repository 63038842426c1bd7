"""GOHSP as a scikit-learn-style estimator: graph ranking, searched budgets, ADMM, hard prune, fine-tune.

Yin, Uzkent, Shen, Jin, Yuan 2023, "GOHSP: A Unified Framework of Graph and
Optimization-based Heterogeneous Structured Pruning for Vision Transformers"
(AAAI). The steps of :meth:`GOHSP.fit`:

1. score heads with the stationary distribution of the head-similarity graph
   and MLP neurons by magnitude (:class:`~optprune.gohsp.GraphHeadScorer`);
2. per-layer budgets (heads and neurons kept per block) from the exact
   structure search under the parameter budget: on the scores of step 1
   (:func:`~optprune.gohsp.search_keep`, ``budgets="search"``), or on the
   groups' reconstruction error curves (``budgets="reconstruction"``: the
   greedy least-squares error of ``out_proj``/``fc2`` at every width,
   :func:`optprune.pruning._reconstruct.error_curves`, through the exact width
   allocation :func:`optprune.search.allocate_widths`, as the ``reconstruct``
   decision's ``allocation="search"``; Meng et al., OSSCAR, ICML 2024), the
   heads and neurons of those widths then ranked by step 1's scores;
3. ADMM towards that heterogeneous structured-sparse set ``S``, the graph
   importance weighting the Z-step (:mod:`optprune.formulations.admm`);
4. hard prune to the rows the last Z-step kept (:func:`optprune.pruning.apply_decision`:
   a physically smaller model), then fine-tune.

``admm_iterations=0`` skips step 3 (graph ranking + search + fine-tune only).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import InstanceOf, Interval, Options
from optprune.formulations.admm import StructuredSet
from optprune.gohsp._admm import run_admm
from optprune.gohsp._graph import SIMILARITIES
from optprune.gohsp._scorer import GraphHeadScorer, search_keep
from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups, finetune
from optprune.vit import check_inputs, check_vit, vit_accuracy

__all__ = ["BUDGETS", "GOHSP"]

#: where GOHSP's per-layer budgets come from: the exact search on the head-graph / magnitude scores (the paper's),
#: or the exact width allocation on the groups' reconstruction error curves
BUDGETS = ("search", "reconstruction")


class GOHSP(BaseEstimator):
    """Prune a :class:`optprune.vit.ViT` to a parameter budget with GOHSP.

    Parameters (stored as given, validated by :meth:`fit`):

    budget : float in (0, 1]
        Fraction of the parameters (or FLOPs) kept (``0.6``: 40% fewer parameters).
    resource : "params" or "flops"
        What the budget limits (FLOPs: multiply-accumulates of one image).
    similarity : "correlation" or "attention"
        Edge weights of the head graph (see :mod:`optprune.gohsp._graph`).
    damping : float in [0, 1]
        PageRank damping of the random walk (1: the plain chain).
    admm_iterations, admm_epochs : int
        ADMM iterations and SGD epochs per W-step (0 iterations: no ADMM).
    rho, rho_growth : float
        Initial penalty and its growth factor per iteration.
    finetune_epochs, lr, batch_size, seed :
        Fine-tuning after the hard prune (Adam); also the W-step's optimiser settings.
    distill : bool
        Fine-tune with distillation from the unpruned model.
    calibration_size : int
        Training images used to build the head graph (and the error curves).
    budgets : "search" or "reconstruction"
        Where the per-layer budgets come from (module doc, step 2).

    Attributes after :meth:`fit`: ``groups_``, ``scores_`` (per group),
    ``head_importance_`` (stationary probabilities per block), ``budget_kept_``
    (kept indices per group from the search), ``search_result_``, ``error_curves_``
    (per group, with ``budgets="reconstruction"``; empty otherwise),
    ``admm_history_`` (list of dicts: rho, primal/dual residuals, kept rows),
    ``decision_`` (:class:`~optprune.pruning.PruningDecision`), ``model_`` (the
    pruned, fine-tuned ViT), ``heads_kept_``, ``mlp_widths_``,
    ``n_params_before_``, ``n_params_after_``.
    """

    _parameter_constraints: ClassVar[dict[str, list]] = {
        "budget": [Interval(float, 0.0, 1.0, closed="right")],
        "resource": [Options(("params", "flops"))],
        "similarity": [Options(SIMILARITIES)],
        "damping": [Interval(float, 0.0, 1.0)],
        "admm_iterations": [Interval(int, 0, None)],
        "admm_epochs": [Interval(int, 1, None)],
        "rho": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "rho_growth": [Interval(float, 1.0, None, finite=True)],
        "finetune_epochs": [Interval(int, 0, None)],
        "lr": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "batch_size": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
        "distill": [InstanceOf((bool,))],
        "calibration_size": [Interval(int, 1, None)],
        "budgets": [Options(BUDGETS)],
    }

    def __init__(
        self,
        budget: float = 0.6,
        *,
        resource: str = "params",
        similarity: str = "correlation",
        damping: float = 0.85,
        admm_iterations: int = 4,
        admm_epochs: int = 1,
        rho: float = 0.1,
        rho_growth: float = 3.0,
        finetune_epochs: int = 3,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
        distill: bool = True,
        calibration_size: int = 256,
        budgets: str = "search",
    ) -> None:
        self.budget = budget
        self.resource = resource
        self.similarity = similarity
        self.damping = damping
        self.admm_iterations = admm_iterations
        self.admm_epochs = admm_epochs
        self.rho = rho
        self.rho_growth = rho_growth
        self.finetune_epochs = finetune_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.distill = distill
        self.calibration_size = calibration_size
        self.budgets = budgets

    def fit(self, model: nn.Module, data: str | tuple[np.ndarray, np.ndarray]) -> GOHSP:
        """Prune ``model`` (left unchanged) on ``data``: a dataset name (its train fold) or ``(X, y)``."""
        self._validate_params()
        check_vit(model)
        from optprune.training import training_tensors

        Xt, yt, _ = training_tensors(data, None, "GOHSP.fit")
        check_inputs(model, Xt)
        shape = tuple(model.input_shape)
        work = _copy(model)
        self.groups_, _ = dependency_groups(work, shape)
        prunable = [g for g in self.groups_ if g.prunable]
        gen = torch.Generator().manual_seed(self.seed)
        calib = Xt[torch.randperm(len(Xt), generator=gen)[: self.calibration_size]]

        scorer = GraphHeadScorer(self.similarity, float(self.damping), int(self.calibration_size))
        self.scores_ = scorer(work, calib, groups=self.groups_)
        heads = [g for g in prunable if g.kind == "heads"]
        total = sum(g.width for g in heads)
        self.head_importance_ = {g.name: self.scores_[g.name] / total for g in heads}
        self.error_curves_: dict[str, np.ndarray] = {}
        if self.budgets == "reconstruction":
            from optprune.pruning._reconstruct import error_curves
            from optprune.search import allocate_widths

            self.error_curves_ = error_curves(work, (calib, None), shape, groups=self.groups_)
            allocated = allocate_widths(
                self.error_curves_, work, {self.resource: float(self.budget)}, input_shape=shape, min_width=1,
                return_result=True)
            assert isinstance(allocated, tuple)
            chosen: dict[str, int] = allocated[0]
            self.search_result_: object = allocated[1]
            self.budget_kept_ = {g.name: sorted(int(i) for i in np.argsort(-self.scores_[g.name], kind="stable")
                                                [: int(chosen[g.name])]) for g in prunable}
        else:
            self.budget_kept_, self.search_result_ = search_keep(
                work, self.scores_, self.groups_, self.budget, shape, resource=self.resource)
        widths = {g.name: g.width for g in prunable}
        keep = {n: len(k) for n, k in self.budget_kept_.items()}

        kept = self.budget_kept_
        self.admm_history_: list[dict] = []
        if self.admm_iterations:
            weights = {g.name: np.maximum(self.scores_[g.name] / self.scores_[g.name].mean(), 1e-6) for g in heads}
            S = StructuredSet(keep, weights)
            result = run_admm(work, prunable, S, Xt, yt, rho=float(self.rho), growth=float(self.rho_growth),
                              iterations=int(self.admm_iterations), epochs=int(self.admm_epochs),
                              lr=float(self.lr), batch_size=int(self.batch_size), seed=int(self.seed))
            self.admm_history_ = [r.to_dict() for r in result.history]
            kept = {n: [int(i) for i in result.kept[n]] for n in keep}
        self.decision_ = PruningDecision(kept, widths, shape, {"method": "gohsp", "budget": self.budget})
        pruned = apply_decision(work, self.decision_, groups=self.groups_)
        pruned.input_shape = shape
        if self.finetune_epochs:
            teacher = model if self.distill else None
            finetune(pruned, (Xt.numpy(), yt.numpy()), self.finetune_epochs, teacher=teacher, lr=self.lr,
                     batch_size=self.batch_size, seed=self.seed, progress=False)
        self.model_ = check_vit(pruned).eval()
        cfg = self.model_.config
        self.heads_kept_ = list(cfg.heads)
        self.mlp_widths_ = list(cfg.mlp)
        self.n_params_before_ = count_parameters(model)
        self.n_params_after_ = count_parameters(self.model_)
        return self

    def transform(self) -> nn.Module:
        """The pruned, fine-tuned ViT."""
        self._check_fitted()
        return self.model_

    def fit_transform(self, model: nn.Module, data: str | tuple[np.ndarray, np.ndarray]) -> nn.Module:
        return self.fit(model, data).transform()

    def score(self, X: np.ndarray, y: np.ndarray) -> float:
        """Accuracy of the pruned model on ``(X, y)``."""
        self._check_fitted()
        check_inputs(self.model_, X)
        return vit_accuracy(self.model_, X, y)


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)
