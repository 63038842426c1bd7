"""Reconstruction-optimal pruning through convolutions: a residual tie (one group, two consumer convolutions) and
a convolution flattened into a Linear head (``h*w`` columns per channel), as in ``benchmarks/bayes_pai.py``'s
residual CNN that ``benchmarks/reconstruction_finetune.py`` prunes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optprune.pruning import apply_decision, reconstruct


class TinyResCNN(nn.Module):
    """Conv(1,4,s2)-ReLU, residual block of two 3x3 convs tied to the stem, Conv(4,6,s2)-ReLU, Linear(6*2*2, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, stride=2, padding=1)
        self.c1 = nn.Conv2d(4, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 6, 3, stride=2, padding=1)
        self.head = nn.Linear(6 * 2 * 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.c2(torch.relu(self.c1(h))))
        return self.head(torch.relu(self.down(h)).flatten(1))


def test_residual_cnn_groups_are_pruned_and_the_last_report_is_the_output_error() -> None:
    torch.manual_seed(0)
    model = TinyResCNN().double()
    X = torch.randn((256, 1, 8, 8), generator=torch.Generator().manual_seed(1)).double()
    pruned, decision, reports = reconstruct(model, (X, None), 0.5, (1, 8, 8), solver="local", ridge=0.0)
    assert [(r["group"], r["width"], r["kept"]) for r in reports] == [("stem", 4, 2), ("c1", 4, 2), ("down", 6, 3)]
    shapes = {name: tuple(p.shape) for name, p in pruned.named_parameters() if name.endswith("weight")}
    assert shapes == {"stem.weight": (2, 1, 3, 3), "c1.weight": (2, 2, 3, 3), "c2.weight": (2, 2, 3, 3),
                      "down.weight": (3, 2, 3, 3), "head.weight": (3, 12)}
    with torch.no_grad():
        err = float(((pruned(X) - model(X)) ** 2).sum())
        masked = float(((apply_decision(model, decision)(X) - model(X)) ** 2).sum())
    # the head is the last group's consumer, re-fitted on the pruned model's inputs against the dense outputs
    assert err == pytest.approx(reports[-1]["objective"], rel=1e-6, abs=1e-9)
    assert err < masked  # the re-fits beat keeping the same channels with the original weights
