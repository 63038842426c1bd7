"""Convolutions kept as kernels in the CROWN core (crown.ConvMap): the same bounds as the unrolled dense matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from optprune.io._conv import conv_to_sparse
from optprune.network import AffineLayer, ConvSpec, Network
from optprune.verification.crown import (
    ConvMap,
    DenseMap,
    TorchNetwork,
    affine_interval,
    intermediate_bounds,
    layer_bounds,
    pad_bound,
    spec_bound,
)

# (in_shape, out_channels, kernel, stride, padding): odd sizes, so conv_transpose2d needs its output_padding
GEOMETRIES = [((2, 7, 6), 3, 3, (2, 2), (1, 1)), ((3, 8, 8), 4, 4, (2, 2), (1, 1)), ((2, 5, 5), 2, 3, (1, 1), (0, 0)),
              ((1, 9, 7), 3, 2, (3, 2), (1, 0))]


def _conv_layer(rng, in_shape, co, k, stride, padding, activation="relu", name="conv") -> AffineLayer:
    kernel = rng.normal(size=(co, in_shape[0], k, k)) / np.sqrt(in_shape[0] * k * k)
    bias = rng.normal(size=co) * 0.1
    matrix, out_shape = conv_to_sparse(kernel, in_shape, stride, padding)
    spec = ConvSpec(kernel=kernel, bias=bias, in_shape=in_shape, out_shape=out_shape, stride=stride, padding=padding)
    return AffineLayer(matrix, np.repeat(bias, out_shape[1] * out_shape[2]), activation, name=name, conv=spec)


def _conv_net(seed: int) -> Network:
    """conv (stride 2) -> conv (stride 1) -> dense -> dense output, like oval21's nets in miniature."""
    rng = np.random.default_rng(seed)
    c1 = _conv_layer(rng, (2, 9, 8), 4, 3, (2, 2), (1, 1), name="c1")
    c2 = _conv_layer(rng, c1.conv.out_shape, 3, 3, (1, 1), (1, 1), name="c2")
    d1 = AffineLayer(rng.normal(size=(12, c2.out_features)) / 6, rng.normal(size=12) * 0.1, "relu", name="d1")
    out = AffineLayer(rng.normal(size=(4, 12)) / 3, np.zeros(4), "identity", name="out")
    return Network((c1, c2, d1, out), input_shape=(2, 9, 8))


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv_map_products_equal_the_unrolled_matrix(geometry):
    in_shape, co, k, stride, padding = geometry
    layer = _conv_layer(np.random.default_rng(1), in_shape, co, k, stride, padding)
    tn = TorchNetwork.from_network(Network((layer,), input_shape=in_shape))
    cmap = tn.maps[0]
    assert isinstance(cmap, ConvMap)
    W = torch.as_tensor(layer.dense_weight())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, W.shape[1], generator=gen, dtype=torch.float64)  # (batch, rows, n_in): any leading axes
    lam = torch.randn(3, 5, W.shape[0], generator=gen, dtype=torch.float64)
    torch.testing.assert_close(cmap.mv(x), x @ W.T, rtol=0, atol=1e-12)
    torch.testing.assert_close(cmap.abs_mv(x), x @ W.abs().T, rtol=0, atol=1e-12)
    torch.testing.assert_close(cmap.rmv(lam), lam @ W, rtol=0, atol=1e-12)
    assert torch.equal(cmap.dense(), W)  # each entry is one kernel weight times 1: exact
    # Rows with one nonzero (every neuron's ±e_i rows) take the scatter path: one exact product per entry.
    idx = torch.tensor([0, 3, W.shape[0] - 1, 5])
    onehot = torch.zeros(2, 4, W.shape[0], dtype=torch.float64)
    onehot[0, torch.arange(4), idx] = torch.tensor([1.0, -1.0, 2.5, 1.0], dtype=torch.float64)
    assert torch.equal(cmap.rmv(onehot), onehot @ W)
    assert tn.weights[0].shape == W.shape


def test_mismatched_conv_spec_falls_back_to_the_matrix():
    """A ConvSpec that no longer describes the weight (e.g. the matrix was pruned) is ignored: the matrix rules."""
    layer = _conv_layer(np.random.default_rng(2), (2, 6, 6), 3, 3, (1, 1), (1, 1))
    w = layer.weight.copy()
    w.data[0] += 1e-3
    changed = AffineLayer(w, layer.bias, "relu", name="pruned", conv=layer.conv)
    tn = TorchNetwork.from_network(Network((changed,), input_shape=(2, 6, 6)))
    assert isinstance(tn.maps[0], DenseMap)
    assert isinstance(TorchNetwork.from_network(Network((layer,), input_shape=(2, 6, 6)), conv=False).maps[0],
                      DenseMap)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_bounds_equal_dense_bounds_and_contain_samples(seed):
    net = _conv_net(seed)
    conv, dense = TorchNetwork.from_network(net), TorchNetwork.from_network(net, conv=False)
    assert [type(m).__name__ for m in conv.maps] == ["ConvMap", "ConvMap", "DenseMap", "DenseMap"]
    rng = np.random.default_rng(seed)
    centre = rng.random(net.input_size)
    lo, hi = np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)
    x_lo, x_hi = torch.as_tensor(lo).reshape(1, -1), torch.as_tensor(hi).reshape(1, -1)
    bc, bd = layer_bounds(conv, x_lo, x_hi), layer_bounds(dense, x_lo, x_hi)
    for (cl, cu), (dl, du) in zip(bc, bd):
        torch.testing.assert_close(cl, dl, rtol=0, atol=1e-9)
        torch.testing.assert_close(cu, du, rtol=0, atol=1e-9)
    pre = net.forward(lo + (hi - lo) * rng.random((300, net.input_size)), return_all=True)
    for z, (cl, cu) in zip(pre, bc):
        assert np.all(z >= cl.numpy()[0]) and np.all(z <= cu.numpy()[0])
    # Padded spec bounds on a batch of two subdomains (one with a split neuron) and several rows, alpha != CROWN's.
    lowers = [torch.cat([lo_, lo_]) for lo_, _ in bc[:-1]]
    uppers = [torch.cat([hi_, hi_]) for _, hi_ in bc[:-1]]
    splits = [torch.zeros_like(t, dtype=torch.int8) for t in lowers]
    j, n = 1, int(torch.nonzero((lowers[1][0] < 0) & (uppers[1][0] > 0))[0])
    splits[j][1, n], lowers[j][1, n] = 1, 0.0
    C = torch.as_tensor(rng.normal(size=(2, 3, net.output_size)))
    d = torch.as_tensor(rng.normal(size=(2, 3)))
    alpha = [torch.rand(2, 3, t.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
             for t in lowers]
    xl, xh = x_lo.repeat(2, 1), x_hi.repeat(2, 1)
    sc = spec_bound(conv, xl, xh, lowers, uppers, splits, C, d, alpha)
    sd = spec_bound(dense, xl, xh, lowers, uppers, splits, C, d, alpha)
    torch.testing.assert_close(pad_bound(sc), pad_bound(sd), rtol=0, atol=1e-9)
    torch.testing.assert_close(sc.magnitude, sd.magnitude, rtol=1e-12, atol=1e-12)
    # Intermediate bounds of the split batch (BaB's recomputation) agree too.
    ic = intermediate_bounds(conv, xl, xh, lowers, uppers, splits, start=0)
    id_ = intermediate_bounds(dense, xl, xh, lowers, uppers, splits, start=0)
    for a, b in zip(ic[0] + ic[1], id_[0] + id_[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    # The interval pass through a convolution, with the float32 maps the optimiser uses.
    il, iu = affine_interval(x_lo, x_hi, conv.maps[0], conv.biases[0])
    dl, du = affine_interval(x_lo, x_hi, dense.maps[0], dense.biases[0])
    torch.testing.assert_close(il, dl, rtol=0, atol=1e-12)
    torch.testing.assert_close(iu, du, rtol=0, atol=1e-12)
    assert conv.maps32[0].dtype == torch.float32


def test_oval21_first_layers_conv_equals_dense():
    """On oval21's cifar_base_kw (both convolutions, stride 2, padding 1): CROWN bounds equal the dense path's."""
    from optprune.data import data_dir
    from optprune.io import network_from_onnx
    from optprune.verification.vnnlib import read_vnnlib

    try:
        folder = data_dir() / "vnncomp2021-oval21"
    except Exception as exc:
        pytest.skip(f"shared data folder absent: {exc}")
    if not (folder / "nets" / "cifar_base_kw.onnx").exists():
        pytest.skip("oval21 data absent")
    net = network_from_onnx(folder / "nets" / "cifar_base_kw.onnx")
    case = read_vnnlib(folder / "vnnlib" / "cifar_base_kw-img4549-eps0.00392156862745098.vnnlib", net.input_size,
                       net.output_size).cases[0]
    sub = Network(net.layers[:2], input_shape=net.input_shape)  # the two convolutions: 2048 and 1024 neurons
    conv, dense = TorchNetwork.from_network(sub), TorchNetwork.from_network(sub, conv=False)
    assert all(isinstance(m, ConvMap) for m in conv.maps)
    x_lo, x_hi = torch.as_tensor(case.lower).reshape(1, -1), torch.as_tensor(case.upper).reshape(1, -1)
    bc = layer_bounds(conv, x_lo, x_hi)
    il, iu = affine_interval(x_lo, x_hi, dense.maps[0], dense.biases[0])
    torch.testing.assert_close(bc[0][0], il, rtol=0, atol=1e-9)
    torch.testing.assert_close(bc[0][1], iu, rtol=0, atol=1e-9)
    # The second convolution's bounds of 40 neurons (rows ±e_i, CROWN through the first) by both maps.
    idx = torch.as_tensor(np.random.default_rng(0).choice(sub.output_size, 40, replace=False))
    C = torch.zeros(1, 80, sub.output_size, dtype=torch.float64)
    C[0, torch.arange(40), idx], C[0, 40 + torch.arange(40), idx] = 1.0, -1.0
    d = torch.zeros(1, 80, dtype=torch.float64)
    args = ([bc[0][0], bc[1][0]], [bc[0][1], bc[1][1]], None, C, d)
    torch.testing.assert_close(pad_bound(spec_bound(conv, x_lo, x_hi, *args)),
                               pad_bound(spec_bound(dense, x_lo, x_hi, *args)), rtol=0, atol=1e-9)
    rng = np.random.default_rng(0)
    pre = sub.forward(case.lower + (case.upper - case.lower) * rng.random((50, net.input_size)), return_all=True)
    for z, (cl, cu) in zip(pre, bc):
        assert np.all(z >= cl.numpy()[0]) and np.all(z <= cu.numpy()[0])


def test_torch_network_cache_follows_the_weights_contents():
    """from_network serves a query's repeated calls from its cache, never after a weight changed in place."""
    net = _conv_net(5)
    first = TorchNetwork.from_network(net)
    assert TorchNetwork.from_network(net) is first
    assert TorchNetwork.from_network(net, conv=False) is not first
    net.layers[2].weight[0, 0] += 1.0  # a dense layer's matrix, changed in place
    changed = TorchNetwork.from_network(net)
    assert changed is not first
    assert float(changed.maps[2].dense()[0, 0]) == float(net.layers[2].weight[0, 0])


def test_attack_forward_through_conv_maps_is_the_network():
    """The attack runs convolutions as ConvMaps: its values equal the float64 forward pass of the network."""
    from optprune.verification.attack import _torch_layers, torch_forward

    net = _conv_net(3)
    layers = _torch_layers(net)
    assert isinstance(layers[0][0], ConvMap) and isinstance(layers[1][0], ConvMap)
    x = np.random.default_rng(3).random((6, net.input_size))
    out = torch_forward(layers, torch.as_tensor(x), torch.full((6,), 0.01, dtype=torch.float64))
    np.testing.assert_allclose(out.numpy(), net.forward(x), rtol=0, atol=1e-12)


def test_alpha_root_bounds_stop_at_the_deadline_and_stay_sound():
    """α-CROWN's root intermediate bounds stop their steps at a past deadline; the result is still sound."""
    import time

    from optprune.verification.alpha_crown import alpha_intermediate_bounds

    net = _conv_net(4)
    tn = TorchNetwork.from_network(net)
    rng = np.random.default_rng(4)
    centre = rng.random(net.input_size)
    lo, hi = np.clip(centre - 0.05, 0, 1), np.clip(centre + 0.05, 0, 1)
    x_lo, x_hi = torch.as_tensor(lo).reshape(1, -1), torch.as_tensor(hi).reshape(1, -1)
    crown = [(a.numpy()[0], b.numpy()[0]) for a, b in layer_bounds(tn, x_lo, x_hi)]
    late = alpha_intermediate_bounds(tn, x_lo, x_hi, crown, iters=50, deadline=time.perf_counter() - 1.0)
    full = alpha_intermediate_bounds(tn, x_lo, x_hi, crown, iters=50)
    pre = net.forward(lo + (hi - lo) * rng.random((300, net.input_size)), return_all=True)
    for z, (l_late, u_late), (l_full, u_full), (l0, u0) in zip(pre, late, full, crown):
        assert np.all(z >= l_late) and np.all(z <= u_late) and np.all(z >= l_full) and np.all(z <= u_full)
        assert np.all(l_late >= l0) and np.all(u_late <= u0)
