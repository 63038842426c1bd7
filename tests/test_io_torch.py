"""torch nn.Sequential <-> Network: conv unrolling, BatchNorm folding, errors, .pt loading."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from optprune.errors import (
    DataNotFoundError,
    FileFormatError,
    InvalidWeightsError,
    ShapeMismatchError,
    UnsupportedLayerError,
)
from optprune.io import (
    SUPPORTED_TORCH_MODULES,
    conv_spec_matches,
    conv_to_sparse,
    load_network,
    load_torch_model,
    network_from_torch,
    network_to_torch,
)


def _torch_out(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model = model.double().eval()
    with torch.no_grad():
        return model(torch.as_tensor(x, dtype=torch.float64)).reshape(x.shape[0], -1).numpy()


def _randomise_bn(model: nn.Module, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen))
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=gen))
                m.bias.copy_(torch.randn(n, generator=gen))


def test_mlp_forward_and_activations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 7), nn.ReLU(), nn.Linear(7, 5), nn.Linear(5, 3))
    net = network_from_torch(model, input_shape=(3, 4))
    assert net.widths == [12, 7, 5, 3]
    assert [layer.activation for layer in net.layers] == ["relu", "identity", "identity"]
    assert [layer.name for layer in net.layers] == ["1", "3", "4"]
    x = np.random.default_rng(0).normal(size=(20, 3, 4))
    np.testing.assert_allclose(net.forward(x.reshape(20, -1)), _torch_out(model, x), atol=1e-10)


def test_input_shape_inferred_from_first_linear():
    net = network_from_torch(nn.Sequential(nn.Linear(4, 2), nn.ReLU()))
    assert net.input_shape == (4,)
    assert net.layers[0].activation == "relu"


@pytest.mark.parametrize("case", range(25))
def test_conv_unrolling_equals_torch_conv(case):
    rng = np.random.default_rng(case)
    c, co = int(rng.integers(1, 4)), int(rng.integers(1, 5))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    stride = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
    padding = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
    h, w = int(rng.integers(kh, 10)), int(rng.integers(kw, 10))
    kernel = rng.normal(size=(co, c, kh, kw))
    x = rng.normal(size=(3, c, h, w))
    matrix, out_shape = conv_to_sparse(kernel, (c, h, w), stride, padding)
    expected = torch.nn.functional.conv2d(torch.as_tensor(x), torch.as_tensor(kernel), stride=stride, padding=padding)
    assert out_shape == tuple(expected.shape[1:])
    assert sp.issparse(matrix) and matrix.shape == (int(np.prod(out_shape)), c * h * w)
    np.testing.assert_allclose((matrix @ x.reshape(3, -1).T).T, expected.reshape(3, -1).numpy(), atol=1e-12)


def _small_cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 3, (2, 3), stride=(2, 1), padding=(0, 1)), nn.ReLU()),
        nn.Flatten(), nn.Dropout(0.3), nn.Identity(), nn.Linear(3 * 3 * 6, 5),
    )


def test_conv_net_matches_torch_and_keeps_convspec():
    torch.manual_seed(1)
    model = _small_cnn()
    net = network_from_torch(model, input_shape=(2, 6, 6))
    assert [layer.name for layer in net.layers] == ["0", "2.0", "6"]
    conv = net.layers[1].conv
    assert conv is not None and conv.in_shape == (4, 6, 6) and conv.out_shape == (3, 3, 6)
    assert conv.stride == (2, 1) and conv.padding == (0, 1)
    assert net.layers[1].n_params == 4 * 3 * 2 * 3 + 3
    x = np.random.default_rng(1).uniform(size=(10, 2, 6, 6))
    np.testing.assert_allclose(net.forward(x.reshape(10, -1)), _torch_out(model, x), atol=1e-10)


def test_conv_needs_input_shape():
    with pytest.raises(ShapeMismatchError, match="input_shape"):
        network_from_torch(_small_cnn())


def test_batchnorm_folding_equals_eval_mode_torch():
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.BatchNorm2d(2),  # at the input: folds into the padded conv, whose ConvSpec must be dropped
        nn.Conv2d(2, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
        nn.Conv2d(3, 2, 3, stride=2), nn.ReLU(), nn.BatchNorm2d(2),  # after a ReLU: folds forward
        nn.Flatten(), nn.Linear(2 * 2 * 2, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 4),
    )
    _randomise_bn(model, 3)
    model.train()  # the reader uses running statistics whatever the mode
    net = network_from_torch(model, input_shape=(2, 6, 6))
    assert model.training
    assert [layer.name for layer in net.layers] == ["1", "4", "8", "11"]
    assert net.layers[0].conv is None  # input shift + zero padding: no longer a plain convolution
    assert net.layers[1].conv is not None and conv_spec_matches(net.layers[1])
    assert net.metadata["folded"] == {"1": ["0", "2"], "8": ["6", "9"]}
    x = np.random.default_rng(2).uniform(size=(16, 2, 6, 6))
    np.testing.assert_allclose(net.forward(x.reshape(16, -1)), _torch_out(model, x), atol=1e-9)


def test_batchnorm_after_conv_keeps_convspec():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    _randomise_bn(model, 5)
    net = network_from_torch(model, input_shape=(1, 4, 4))
    assert net.layers[0].conv is not None and conv_spec_matches(net.layers[0])
    x = np.random.default_rng(3).uniform(size=(5, 1, 4, 4))
    np.testing.assert_allclose(net.forward(x.reshape(5, -1)), _torch_out(model, x), atol=1e-10)
    back = network_to_torch(net, dtype=torch.float64)
    assert isinstance(back[0], nn.Conv2d) and back[0].weight.dtype == torch.float64
    np.testing.assert_allclose(_torch_out(back, x), _torch_out(model, x), atol=1e-9)


def test_trailing_batchnorm_becomes_diagonal_layer():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4))
    _randomise_bn(model, 6)
    net = network_from_torch(model)
    assert [(layer.name, layer.activation) for layer in net.layers] == [("0", "relu"), ("2", "identity")]
    x = np.random.default_rng(4).normal(size=(6, 3))
    np.testing.assert_allclose(net.forward(x), _torch_out(model, x), atol=1e-10)


@pytest.mark.parametrize(
    "module, kind",
    [(nn.Tanh(), "Tanh"), (nn.Conv2d(2, 2, 3, groups=2), "Conv2d(groups=2)"), (nn.MaxPool2d(2), "MaxPool2d")],
)
def test_unsupported_module_names_layer_and_supported_list(module, kind):
    model = nn.Sequential(nn.Sequential(nn.Conv2d(1, 2, 1), module), nn.Flatten())
    with pytest.raises(UnsupportedLayerError) as info:
        network_from_torch(model, input_shape=(1, 6, 6))
    err = info.value
    assert err.name == "0.1" and err.kind == kind and err.supported == SUPPORTED_TORCH_MODULES
    assert "'0.1'" in str(err) and "Linear" in str(err) and "BatchNorm2d" in str(err)


def test_non_sequential_container_is_unsupported():
    class Custom(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(UnsupportedLayerError, match="Custom"):
        network_from_torch(nn.Sequential(nn.Linear(2, 2), Custom()))


def test_nan_weight_names_the_module():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        model[2].weight[1, 0] = float("nan")
    with pytest.raises(InvalidWeightsError, match=r"'2' \(Linear\): weight has 1 NaN/Inf"):
        network_from_torch(model)


def test_to_torch_round_trip_mlp_and_cnn():
    torch.manual_seed(7)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(9, 4), nn.ReLU(), nn.Linear(4, 3))
    cnn = _small_cnn()
    for model, shape in ((mlp, (1, 3, 3)), (cnn, (2, 6, 6))):
        net = network_from_torch(model, input_shape=shape)
        back = network_to_torch(net)
        assert back.input_shape == shape and not back.training
        x = np.random.default_rng(5).uniform(size=(4, *shape)).astype(np.float32)
        with torch.no_grad():
            got = back(torch.as_tensor(x)).reshape(4, -1).numpy()
        np.testing.assert_allclose(got, net.forward(x.reshape(4, -1)), atol=1e-5)
        again = network_from_torch(back)  # input_shape travels as an attribute
        np.testing.assert_allclose(again.forward(x.reshape(4, -1)), got, atol=1e-5)
    assert sum(isinstance(m, nn.Conv2d) for m in network_to_torch(network_from_torch(cnn, (2, 6, 6)))) == 2


def test_edited_convspec_is_written_as_linear():
    torch.manual_seed(8)
    net = network_from_torch(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), input_shape=(1, 4, 4))
    layer = net.layers[0]
    edited = type(layer)(weight=layer.weight * 2.0, bias=layer.bias, activation="relu", name="0", conv=layer.conv)
    with pytest.warns(UserWarning, match="ConvSpec does not match"):
        model = network_to_torch(net.with_layers([edited]))
    assert any(isinstance(m, nn.Linear) for m in model) and not any(isinstance(m, nn.Conv2d) for m in model)


def test_load_pt_files(tmp_path):
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(5, 3), nn.ReLU(), nn.Linear(3, 2))
    path = tmp_path / "model.pt"
    torch.save(model, path)
    with pytest.raises(FileFormatError, match="--trust-pickle"):
        load_network(path)  # a whole pickled module runs code on load: opt-in only
    net = load_network(path, trust_pickle=True)
    assert net.widths == [5, 3, 2] and net.name == "model"
    x = np.random.default_rng(6).normal(size=(3, 5))
    np.testing.assert_allclose(net.forward(x), _torch_out(load_torch_model(path, trust_pickle=True), x), atol=1e-6)

    torch.save(model.state_dict(), tmp_path / "weights.pth")
    with pytest.raises(FileFormatError, match="state_dict"):
        load_network(tmp_path / "weights.pth")
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(FileFormatError, match="could not be read by torch.load"):
        load_network(tmp_path / "junk.pt")
    with pytest.raises(DataNotFoundError, match="missing.onnx"):
        load_network(tmp_path / "missing.onnx")
    with pytest.raises(FileFormatError, match=r"'\.h5'.*\.onnx, \.pt, \.pth"):
        load_network(tmp_path / "model.h5")
