"""Unstructured magnitude pruning, the baseline in the pruning package."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.pruning import (
    Pruner,
    attach_masks,
    count_parameters,
    magnitude_masks,
    prune_unstructured,
    remove_masks,
    unstructured_keep_count,
)


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))


def test_keeps_the_largest_weights_with_one_global_threshold() -> None:
    model = mlp()
    pruned, masks, keep = prune_unstructured(model, 0.5)
    weights = [m.weight.detach().abs().reshape(-1) for m in model if isinstance(m, nn.Linear)]
    n = sum(w.numel() for w in weights)
    assert keep == round(0.5 * n)
    threshold = torch.sort(torch.cat(weights), descending=True).values[keep - 1]
    for name, mask in masks.items():
        original = model.get_submodule(name).weight.detach()
        assert torch.equal(mask.bool(), original.abs() >= threshold)
        assert torch.equal(pruned.get_submodule(name).weight.detach(), original * mask)
    assert sum(int(m.sum()) for m in masks.values()) == keep
    assert all(torch.count_nonzero(m.weight) == m.weight.numel() for m in model if isinstance(m, nn.Linear))


def test_match_uniform_counts_from_widths_like_the_pruner() -> None:
    model = mlp()
    keep = unstructured_keep_count(model, 0.5, "uniform")
    n_bias = sum(m.bias.numel() for m in model if isinstance(m, nn.Linear))
    after = Pruner("magnitude", ratio=0.5).fit(model).n_params_after_
    assert keep == after - n_bias
    # uniform at 0.5: widths 8 -> 4, 5 -> 2; its parameters minus the dense model's biases (kept by unstructured)
    assert keep == (6 * 4 + 4 + 4 * 2 + 2 + 2 * 3 + 3) - (8 + 5 + 3)


def test_masks_survive_fine_tuning_steps() -> None:
    model = mlp()
    pruned, masks, _ = prune_unstructured(model, 0.7)
    attach_masks(pruned, masks)
    opt = torch.optim.SGD(pruned.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        pruned(torch.randn(4, 6)).sum().backward()
        opt.step()
    remove_masks(pruned)
    for name, mask in masks.items():
        w = pruned.get_submodule(name).weight.detach()
        assert torch.all(w[mask == 0] == 0)
    assert count_parameters(pruned) == count_parameters(model)


def test_bad_input_is_named() -> None:
    match_message = "unstructured_keep_count: parameter 'match' must be one of 'none', 'uniform'"
    with pytest.raises(InvalidParameterError, match=match_message):
        unstructured_keep_count(mlp(), 0.5, "global")
    with pytest.raises(InvalidParameterError, match="parameter 'ratio' must be a float in \\[0.0, 1.0\\); got nan"):
        prune_unstructured(mlp(), float("nan"))
    keep_message = r"magnitude_masks: parameter 'keep' must be an int in \[0, 103\]; got 500"
    with pytest.raises(InvalidParameterError, match=keep_message):
        magnitude_masks(mlp(), 500)
