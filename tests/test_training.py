"""optprune.training: model builders, deterministic training, accuracy, the digits models."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from optprune.data import load_dataset
from optprune.errors import InvalidParameterError
from optprune.io import network_from_torch
from optprune.training import accuracy, digits_cnn, digits_mlp, make_mlp, train_classifier


def test_make_mlp_structure():
    model = make_mlp([64, 32, 16, 10], (1, 8, 8))
    kinds = [type(m).__name__ for m in model]
    assert kinds == ["Flatten", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert model.input_shape == (1, 8, 8)
    assert network_from_torch(model).widths == [64, 32, 16, 10]
    with pytest.raises(InvalidParameterError, match=r"input_shape \(1, 8, 8\) has 64 entries but widths\[0\] = 32"):
        make_mlp([32, 10], (1, 8, 8))
    with pytest.raises(InvalidParameterError, match="at least one layer"):
        make_mlp([64])


def _small_data():
    X, y = load_dataset("digits", "train")
    return X[:300], y[:300]


def _train(seed: int) -> nn.Module:
    torch.manual_seed(123)  # same initial weights every time
    model = make_mlp([64, 16, 10], (1, 8, 8))
    return train_classifier(model, _small_data(), epochs=3, seed=seed, batch_size=32, progress=False)


def test_training_is_deterministic_under_a_seed():
    a, b, c = _train(0), _train(0), _train(1)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert any(not torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))
    assert not a.training


def test_training_improves_accuracy_and_restores_threads():
    threads = torch.get_num_threads()
    torch.manual_seed(0)
    model = make_mlp([64, 16, 10], (1, 8, 8))
    X, y = load_dataset("digits", "val")
    before = accuracy(model, X, y)
    train_classifier(model, "digits", epochs=5, seed=0, lr=1e-2, batch_size=64, progress=False)
    assert accuracy(model, X, y) > max(0.8, before + 0.3)
    assert torch.get_num_threads() == threads


def test_progress_goes_to_stderr(capsys, monkeypatch):
    # rich draws nothing on a stream that is not a terminal (the bar is transient): make it draw under capsys
    monkeypatch.setenv("FORCE_COLOR", "1")
    torch.manual_seed(0)
    train_classifier(make_mlp([64, 4, 10], (1, 8, 8)), _small_data(), epochs=2, seed=0, progress=True)
    out = capsys.readouterr()
    assert out.out == ""
    err = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.err)  # without the terminal's control sequences
    assert "train" in err and "2/2" in err, err
    loss, acc = re.search(r"epoch 2 loss (\d+\.\d{4}) acc (\d\.\d{4})", err).groups()
    assert 0 < float(loss) < 10 and 0 <= float(acc) <= 1
    assert float(acc) * 300 == pytest.approx(round(float(acc) * 300), abs=0.02)  # a count out of 300 samples
    train_classifier(make_mlp([64, 4, 10], (1, 8, 8)), _small_data(), epochs=2, seed=0, progress=False)
    assert capsys.readouterr().err == ""


def test_invalid_training_parameters():
    model = make_mlp([64, 10], (1, 8, 8))
    with pytest.raises(InvalidParameterError, match="epochs must be a positive int, got 0"):
        train_classifier(model, "digits", epochs=0, progress=False)
    with pytest.raises(InvalidParameterError, match="'cifar'"):
        train_classifier(model, "cifar", epochs=1, progress=False)


def test_digits_mlp_accuracy_and_network_agreement():
    model = digits_mlp([32, 32], seed=0)
    X, y = load_dataset("digits", "test")
    acc = accuracy(model, X, y)
    assert acc > 0.93
    net = network_from_torch(model)
    assert net.widths == [64, 32, 32, 10]
    assert accuracy(net, X, y) == acc
    # a fresh copy each call: editing one does not change the next
    with torch.no_grad():
        model[1].weight.zero_()
    assert accuracy(digits_mlp([32, 32], seed=0), X, y) == acc


def test_digits_cnn_reads_into_network():
    model = digits_cnn(seed=0)
    X, y = load_dataset("digits", "test")
    acc = accuracy(model, X, y)
    assert acc > 0.93
    net = network_from_torch(model)  # input_shape (1, 8, 8) travels with the model
    assert net.widths == [64, 8 * 8 * 8, 16 * 4 * 4, 32, 10]
    assert [layer.conv is not None for layer in net.layers] == [True, True, False, False]
    with torch.no_grad():
        logits = model(torch.as_tensor(X)).numpy()
    np.testing.assert_allclose(net.forward(X.reshape(len(X), -1)), logits, atol=1e-4)
    assert accuracy(net, X, y) == acc
