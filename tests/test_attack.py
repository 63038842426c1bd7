"""The projected-gradient attack: exact values under a surrogate backward pass, and dead ReLUs escaped."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optprune.verification import attack
from optprune.verification.attack import _torch_layers, pgd_attack, torch_forward


def _net():
    from optprune.network import AffineLayer, Network

    rng = np.random.default_rng(3)
    return Network((AffineLayer(rng.normal(size=(6, 4)), rng.normal(size=6), "relu"),
                    AffineLayer(rng.normal(size=(3, 6)), rng.normal(size=3), "identity")))


def test_leaky_backward_keeps_values_and_changes_only_dead_gradients():
    layers = _torch_layers(_net())
    x = torch.randn(16, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    exact = torch_forward(layers, x)
    leak = torch.full((16,), 0.1, dtype=torch.float64)
    np.testing.assert_array_equal(torch_forward(layers, x, leak).numpy(), exact.numpy())

    def grad(lk):
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(torch_forward(layers, xx, lk).sum(), xx)
        return g

    np.testing.assert_allclose(grad(torch.zeros(16, dtype=torch.float64)).numpy(), grad(None).numpy())
    w1, b1, _ = layers[0]
    dead = (x @ w1.T + b1) <= 0
    assert bool(dead.any())  # the surrogate must differ somewhere, and exactly through the dead units
    manual = (torch.where(dead, 0.1, 1.0) * layers[1][0].sum(0)) @ w1
    np.testing.assert_allclose(grad(leak).numpy(), manual.numpy(), rtol=1e-6)


def test_attack_escapes_dead_relus_on_mnistfc_256x4(mnistfc, monkeypatch):
    """prop_1_0.05 is sat (competition verdict); one ReLU of layer 3 is on over the box: exact gradients stall."""
    from optprune.io import network_from_onnx
    from optprune.verification.vnnlib import parse_vnnlib

    net = network_from_onnx(mnistfc / "mnist-net_256x4.onnx")
    case = parse_vnnlib((mnistfc / "prop_1_0.05.vnnlib").read_text()).cases[0]
    start = (case.lower + case.upper) / 2
    res = pgd_attack(net, case.lower, case.upper, case.disjuncts, start=start)
    assert res.found
    assert np.all(res.x >= case.lower) and np.all(res.x <= case.upper)
    h = res.x
    for layer in net.layers:  # float64 forward pass of the network read from ONNX
        h = layer.weight @ h + layer.bias
        h = np.maximum(h, 0) if layer.activation == "relu" else h
    conj = case.disjuncts[res.index]
    assert float(np.min(conj.C @ h + conj.d)) >= 0
    monkeypatch.setattr(attack, "LEAKY_SLOPES", (0.0,))
    assert not pgd_attack(net, case.lower, case.upper, case.disjuncts, start=start).found


if __name__ == "__main__":
    pytest.main([__file__])
