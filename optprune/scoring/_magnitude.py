"""Data-free scorers: weight magnitude and random."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.pruning._graph import Group
from optprune.scoring._base import Batches, Scorer, register_scorer
from optprune.scoring._capture import ROLES, unit_sum

__all__ = ["MagnitudeScorer", "RandomScorer", "members_roles"]


def members_roles(members: str, owner: str) -> tuple[str, ...]:
    """``"out"`` (producer rows), ``"in"`` (consumer columns) or ``"all"`` as a tuple of roles."""
    table = {"out": ("out", "channel"), "in": ("in",), "all": ROLES}
    if members not in table:
        raise InvalidParameterError(f"{owner}: members must be one of {sorted(table)}, got {members!r}")
    return table[members]


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

    def __init__(self, p: float = 2, members: str = "out", bias: bool = False) -> None:
        if not isinstance(p, (int, float)) or isinstance(p, bool) or p <= 0:
            raise InvalidParameterError(f"MagnitudeScorer: p must be a number > 0, got {p!r}")
        members_roles(members, "MagnitudeScorer")
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

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def _score(self, model: nn.Module, groups: list[Group], batches: Batches) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        return {g.name: rng.random(g.width) for g in groups}


register_scorer(MagnitudeScorer, "l1", "l2")
register_scorer(RandomScorer)
