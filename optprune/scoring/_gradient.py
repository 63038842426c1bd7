"""Gradient-based scorers: first-order Taylor and Fisher / Optimal Brain Damage."""

from __future__ import annotations

import numpy as np
from torch import nn

from optprune._validation import IsCallable, Options
from optprune.scoring._base import Batches, LossFn, Scorer
from optprune.scoring._capture import loss_gradients, mean_squared_sample_gradients, unit_sum
from optprune.scoring._magnitude import MEMBER_ROLES, members_roles
from optprune.structure import Group

__all__ = ["TaylorScorer", "FisherScorer"]


class TaylorScorer(Scorer):
    r"""First-order Taylor estimate of the loss change when a unit's parameters are zeroed.

    .. math:: s_j = \Big|\sum_{\theta \in \Theta_j} \theta \, \frac{\partial L}{\partial \theta}\Big|

    with ``L`` the mean loss over the calibration set and ``Θ_j`` every parameter
    the unit owns (``members="all"``: producer rows, biases, BatchNorm entries and
    consumer columns). Molchanov et al. 2019, "Importance Estimation for Neural
    Network Pruning" (CVPR), eq. 3-4 (group contribution, before squaring).
    """

    name = "taylor"
    needs_labels = True

    _parameter_constraints = {"members": [Options(tuple(MEMBER_ROLES))], "loss_fn": [IsCallable(), None]}

    def __init__(self, members: str = "all", loss_fn: LossFn | None = None) -> None:
        self.members = members
        self.loss_fn = loss_fn

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        grads = loss_gradients(model, batches, self.loss_fn)
        roles = members_roles(self.members, "TaylorScorer")
        return {
            g.name: unit_sum(model, g, lambda q, t: t.double() * grads[q], roles).abs().numpy() for g in groups
        }


class FisherScorer(Scorer):
    r"""Optimal Brain Damage saliency with the empirical Fisher diagonal as Hessian.

    .. math:: s_j = \frac12 \sum_{\theta \in \Theta_j} \theta^2 \, \mathbb{E}_n\big[g_{n,\theta}^2\big]

    where ``g_n`` is the gradient of the loss of calibration sample ``n`` alone
    (per-sample gradients through ``torch.func.vmap``). LeCun, Denker & Solla 1990,
    "Optimal Brain Damage" (NeurIPS), eq. 6 ``s_k = h_kk u_k^2 / 2``, with
    ``h_kk ≈ E[g_k^2]`` (Fisher approximation as in Theis et al. 2018, "Faster
    gaze prediction with dense networks and Fisher pruning", eq. 5).
    """

    name = "fisher"
    needs_labels = True

    _parameter_constraints = {"members": [Options(tuple(MEMBER_ROLES))], "loss_fn": [IsCallable(), None]}

    def __init__(self, members: str = "all", loss_fn: LossFn | None = None) -> None:
        self.members = members
        self.loss_fn = loss_fn

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        fisher = mean_squared_sample_gradients(model, batches, self.loss_fn)
        roles = members_roles(self.members, "FisherScorer")
        return {
            g.name: (0.5 * unit_sum(model, g, lambda q, t: t.double() ** 2 * fisher[q], roles)).numpy()
            for g in groups
        }
