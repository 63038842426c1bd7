"""Forward-only scorers that remove units and measure the loss: leave-one-out and Bonsai."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from optprune._validation import Interval, IsCallable, Options
from optprune.scoring._base import Batches, LossFn, Scorer, mean_loss
from optprune.structure import Group, masked

__all__ = ["AblationScorer", "BonsaiScorer"]


class AblationScorer(Scorer):
    r"""Leave-one-out ablation: the exact loss increase when one unit alone is removed.

    .. math:: s_j = L(\theta \setminus \text{unit } j) - L(\theta)

    One forward pass over the calibration set per unit, so it is slow; it is the
    reference the cheaper scorers are compared with (Kendall's τ in the
    benchmark), as in Molchanov et al. 2019 (CVPR), section 4 ("oracle").
    """

    name = "ablation"
    needs_labels = True

    _parameter_constraints = {"loss_fn": [IsCallable(), None]}

    def __init__(self, loss_fn: LossFn | None = None) -> None:
        self.loss_fn = loss_fn

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        base = mean_loss(model, batches, self.loss_fn)
        out = {}
        for g in groups:
            scores = np.empty(g.width)
            for j in range(g.width):
                mask = torch.ones(g.width)
                mask[j] = 0.0
                with masked(model, groups, {g.name: mask}):
                    scores[j] = mean_loss(model, batches, self.loss_fn) - base
            out[g.name] = scores
        return out


class BonsaiScorer(Scorer):
    r"""Bonsai: regress the loss of randomly pruned sub-models on their masks, forward passes only.

    Draw ``n_masks`` keep-masks ``m^{(k)} ∈ {0,1}^U`` over the units of all groups
    at once (each unit kept with probability ``keep_prob``), evaluate
    ``L_k = L(θ ⊙ m^{(k)})`` on the calibration set and fit

    .. math:: \min_{\beta_0, \beta} \sum_k \big(L_k - \beta_0 - \beta^\top m^{(k)}\big)^2 + \alpha \,\Omega(\beta)

    with ``Ω = ‖β‖²₂`` (``penalty="l2"``, closed form) or ``‖β‖₁`` (``"l1"``, sparse,
    scikit-learn's Lasso). Keeping unit ``j`` changes the loss by ``β_j``, so its
    importance is ``s_j = -β_j``. Dery et al. 2024, "Everybody Prune Now:
    Structured Pruning of LLMs with only Forward Passes" (arXiv:2402.05406),
    section 3, eq. 3-5.
    """

    name = "bonsai"
    _parameter_constraints = {
        "n_masks": [Interval(int, 2, None)],
        "keep_prob": [Interval(float, 0.0, 1.0, closed="neither")],
        "alpha": [Interval(float, 0.0, None, finite=True)],
        "penalty": [Options(("l1", "l2"))],
        "seed": [Interval(int, 0, None)],
        "loss_fn": [IsCallable(), None],
    }
    needs_labels = True

    def __init__(
        self,
        n_masks: int = 200,
        keep_prob: float = 0.5,
        alpha: float = 1e-3,
        penalty: str = "l2",
        seed: int = 0,
        loss_fn: LossFn | None = None,
    ) -> None:
        self.n_masks = n_masks
        self.keep_prob = keep_prob
        self.alpha = alpha
        self.penalty = penalty
        self.seed = seed
        self.loss_fn = loss_fn

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        widths = [g.width for g in groups]
        total = sum(widths)
        masks = (rng.random((self.n_masks, total)) < self.keep_prob).astype(np.float64)
        splits = np.cumsum(widths)[:-1]
        losses = np.empty(self.n_masks)
        for k in range(self.n_masks):
            parts = np.split(masks[k], splits)
            with masked(model, groups, {g.name: p for g, p in zip(groups, parts)}):
                losses[k] = mean_loss(model, batches, self.loss_fn)
        beta = self._regress(masks, losses)
        return {g.name: -b for g, b in zip(groups, np.split(beta, splits))}

    def _regress(self, M: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.penalty == "l1":
            from sklearn.linear_model import Lasso

            return Lasso(alpha=self.alpha, max_iter=50_000, tol=1e-8).fit(M, y).coef_
        Mc = M - M.mean(axis=0)
        yc = y - y.mean()
        k, u = Mc.shape
        if k >= u:  # primal (M'M + aI) b = M'y
            return np.linalg.lstsq(Mc.T @ Mc + self.alpha * np.eye(u), Mc.T @ yc, rcond=None)[0]
        return Mc.T @ np.linalg.lstsq(Mc @ Mc.T + self.alpha * np.eye(k), yc, rcond=None)[0]  # dual form
