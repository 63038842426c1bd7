"""Data-free scorers: weight magnitude and random."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from optprune._validation import InstanceOf, Interval, Options
from optprune.errors import InvalidParameterError
from optprune.scoring._base import Batches, Scorer
from optprune.scoring._capture import ROLES, unit_sum
from optprune.structure import Group

__all__ = ["MEMBER_ROLES", "MagnitudeScorer", "RandomScorer", "members_roles"]


#: ``members`` of the weight-based scorers -> the member roles whose parameters count
MEMBER_ROLES: dict[str, tuple[str, ...]] = {"all": ROLES, "in": ("in",), "out": ("out", "channel")}


def members_roles(members: str, owner: str) -> tuple[str, ...]:
    """``"out"`` (producer rows), ``"in"`` (consumer columns) or ``"all"`` as a tuple of roles."""
    if members not in MEMBER_ROLES:
        raise InvalidParameterError(
            f"{owner}: parameter 'members' must be one of {', '.join(map(repr, MEMBER_ROLES))}; got {members!r}"
        )
    return MEMBER_ROLES[members]


class MagnitudeScorer(Scorer):
    r"""L_p norm of the parameters a unit owns.

    .. math:: s_j = \Big(\sum_{\theta \in \Theta_j} |\theta|^p\Big)^{1/p}

    ``Θ_j`` is the unit's slice of the group's members: with ``members="out"``
    the rows of the producing layers (a convolution filter, a neuron's incoming
    weights) and per-channel BatchNorm scales, with ``"all"`` also the columns of
    the consuming layers (Torch-Pruning's group magnitude, Fang et al. 2023).
    Biases count only with ``bias=True``. ``p = 1`` is the filter L1 norm of
    Li et al. 2017, "Pruning Filters for Efficient ConvNets" (ICLR), eq. 1;
    ``p = 2`` the L2 criterion of He et al. 2018, "Soft Filter Pruning" (IJCAI).
    """

    name = "magnitude"
    needs_data = False
    alias_defaults = {"l1": {"p": 1}, "l2": {"p": 2}}

    _parameter_constraints = {
        "p": [Interval(float, 0.0, None, closed="neither", finite=True)],
        "members": [Options(tuple(MEMBER_ROLES))],
        "bias": [InstanceOf((bool,))],
    }

    def __init__(self, p: float = 2, members: str = "out", bias: bool = False) -> None:
        self.p = p
        self.members = members
        self.bias = bias

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        roles = members_roles(self.members, "MagnitudeScorer")

        def values(qname: str, t: torch.Tensor) -> torch.Tensor:
            if not self.bias and qname.endswith(".bias"):
                return torch.zeros_like(t)
            return t.double().abs() ** self.p

        return {g.name: (unit_sum(model, g, values, roles) ** (1.0 / self.p)).numpy() for g in groups}


class RandomScorer(Scorer):
    """Uniform random scores ``s_j ~ U(0, 1)``, seeded; the baseline of Mittal et al. 2019,
    "Studying the plasticity in deep convolutional neural networks using random pruning" (MVA).
    """

    name = "random"
    needs_data = False

    _parameter_constraints = {"seed": [Interval(int, 0, None)]}

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return {g.name: rng.random(g.width) for g in groups}
