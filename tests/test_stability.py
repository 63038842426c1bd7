"""Verification-friendly fine-tuning: the torch bounds are the project's, and the losses do what they claim."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from optprune.data import load_dataset
from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.io import network_from_torch
from optprune.stability import StabilityOptions, interval_preactivation_bounds, stabilize
from optprune.training import digits_mlp
from optprune.verification.bounds import count_unstable, interval_bounds, linear_bounds


def test_torch_interval_bounds_equal_the_numpy_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    net = network_from_torch(model)
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(3, 6))
    lo, hi = np.clip(x - 0.1, 0, 1), np.clip(x + 0.1, 0, 1)
    model = model.double()
    ours = interval_preactivation_bounds(model, torch.tensor(lo), torch.tensor(hi))
    assert len(ours) == 2  # the two pre-activations that feed a ReLU
    for b in range(3):
        reference = interval_bounds(net, lo[b], hi[b])
        for (tl, tu), (nl, nu) in zip(ours, reference[:2]):
            np.testing.assert_allclose(tl[b].detach().numpy(), nl, atol=1e-7)  # numpy pads by ~1e-9
            np.testing.assert_allclose(tu[b].detach().numpy(), nu, atol=1e-7)


def _unstable(model, X, eps) -> float:
    net = network_from_torch(model)
    return float(np.mean([count_unstable(net, linear_bounds(net, np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1)))
                          for x in X]))


def test_stability_loss_reduces_unstable_relus_and_sparsity_gives_exact_zeros():
    X, y = load_dataset("digits", "train")
    Xv, _ = load_dataset("digits", "val")
    base = digits_mlp([32, 32], seed=0, epochs=20)
    plain, stable = copy.deepcopy(base), copy.deepcopy(base)
    eps = 0.05
    stabilize(plain, (X, y), 4, StabilityOptions(eps=eps), progress=False)
    options = StabilityOptions(eps=eps, rs_weight=0.5, l1_weight=1e-3, sparsity=0.5)
    stabilize(stable, (X, y), 4, options, progress=False)
    assert _unstable(stable, Xv[:40], eps) < 0.8 * _unstable(plain, Xv[:40], eps)
    for m in stable:
        if isinstance(m, nn.Linear):
            zeros = int((m.weight == 0).sum())
            assert abs(zeros - 0.5 * m.weight.numel()) <= 1
    yv = load_dataset("digits", "val")[1]
    acc = float((stable(torch.as_tensor(Xv, dtype=torch.float32)).argmax(1).numpy() == yv).mean())
    assert acc > 0.8


def test_bad_options_and_layers_are_named_errors():
    with pytest.raises(InvalidParameterError, match="sparsity must be in"):
        StabilityOptions(sparsity=1.5)
    with pytest.raises(InvalidParameterError, match="eps must be in"):
        StabilityOptions(eps=float("nan"))
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    with pytest.raises(UnsupportedLayerError, match="Conv2d"):
        stabilize(conv, (np.zeros((4, 1, 8, 8), np.float32), np.zeros(4, np.int64)), 1, StabilityOptions(rs_weight=1.0))


def test_stabilize_checks_its_training_parameters_like_finetune():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    data = (np.zeros((4, 4), np.float32), np.zeros(4, np.int64))
    with pytest.raises(InvalidParameterError, match=r"stabilize: parameter 'epochs' must be an int in \[0, inf\]"):
        stabilize(model, data, -1, StabilityOptions())
    with pytest.raises(InvalidParameterError, match=r"stabilize: parameter 'alpha' must be a float in \[0.0, 1.0\]"):
        stabilize(model, data, 1, StabilityOptions(), alpha=1.5)
