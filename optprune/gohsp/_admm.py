"""The torch side of GOHSP's ADMM: group row matrices of a model, and the W-step as SGD epochs.

The mathematics (W-, Z-, U-steps, residuals, rho schedule) lives torch-free in
:mod:`optprune.formulations.admm`; here a prunable dependency group ``g`` is
viewed as a matrix whose row ``j`` concatenates every parameter unit ``j`` owns
(for a head: its ``head_dim`` rows of W_q, W_k, W_v and their biases and its
``head_dim`` columns of the output projection; for an MLP neuron: its row of
``fc1`` with the bias and its column of ``fc2``), and the W-step runs Adam on

    cross-entropy(W) + rho/2 * sum_g ||rows_g(W) - (Z_g - U_g)||^2.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from optprune.formulations.admm import ADMMResult, StructuredSet, admm
from optprune.structure import Group, member_tensors, unit_view

__all__ = ["group_rows", "run_admm", "set_group_rows"]


def group_rows(model: nn.Module, group: Group) -> torch.Tensor:
    """``(width, features)``: every parameter unit ``j`` of ``group`` owns, as row ``j`` (differentiable)."""
    parts = []
    for m in group.members:
        for _, tensor, axis in member_tensors(model, m, group.width):
            parts.append(unit_view(tensor, axis, m, group.width))
    return torch.cat(parts, dim=1)


def set_group_rows(model: nn.Module, group: Group, rows: np.ndarray | torch.Tensor) -> None:
    """Write ``rows`` (as :func:`group_rows` lays them out) back into the model's parameters, in place."""
    rows = torch.as_tensor(np.asarray(rows), dtype=torch.float32)
    col = 0
    with torch.no_grad():
        for m in group.members:
            for _, tensor, axis in member_tensors(model, m, group.width):
                part = tensor.narrow(axis, m.offset, group.width * m.factor)
                moved = part.movedim(axis, 0)
                size = moved[0].numel() * m.factor
                block = rows[:, col : col + size].reshape(moved.shape)
                part.copy_(block.movedim(0, axis))
                col += size


def run_admm(
    model: nn.Module,
    groups: Sequence[Group],
    S: StructuredSet,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    rho: float,
    growth: float,
    iterations: int,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> ADMMResult:
    """ADMM on ``model`` (changed in place: it ends at the last W-step) for the groups named in ``S``."""
    from optprune.training import fit_epochs

    by_name = {g.name: g for g in groups if g.name in S.keep}
    W0 = {n: group_rows(model, g).detach().double().numpy() for n, g in by_name.items()}

    calls = [0]  # a different shuffle in every W-step

    def w_step(target: dict[str, np.ndarray], rho_t: float) -> dict[str, np.ndarray]:
        calls[0] += 1
        goal = {n: torch.as_tensor(t, dtype=torch.float32) for n, t in target.items()}

        def loss(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
            penalty = sum(((group_rows(model, g) - goal[n]) ** 2).sum() for n, g in by_name.items())
            return nn.functional.cross_entropy(out, y[idx]) + 0.5 * rho_t * penalty

        fit_epochs(model, X, y, loss, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed + calls[0],
                   progress=False, title="ADMM W-step")
        return {n: group_rows(model, g).detach().double().numpy() for n, g in by_name.items()}

    return admm(w_step, W0, S, rho=rho, growth=growth, iterations=iterations)
