"""The shared VNN-COMP 2021 mnistfc networks read through optprune.io, and ``optprune info``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from optprune.data import data_dir, load_dataset
from optprune.errors import DataNotFoundError
from optprune.io import network_from_onnx
from optprune.training import accuracy

try:
    DATA = data_dir()
except DataNotFoundError as exc:  # pragma: no cover - depends on the checkout
    pytest.skip(f"shared data folder absent ({exc})", allow_module_level=True)

NETS = DATA / "vnncomp2021-mnistfc"
# Test accuracies stated by the data README (VNN-COMP 2021), on all 10,000 MNIST test images in [0, 1].
EXPECTED = {"mnist-net_256x2.onnx": (0.9808, [784, 256, 256, 10]),
            "mnist-net_256x4.onnx": (0.9764, [784, 256, 256, 256, 256, 10])}


@pytest.fixture(scope="module")
def mnist_all():
    return load_dataset("mnist", "all")


@pytest.mark.parametrize("filename", sorted(EXPECTED))
def test_shared_net_accuracy_and_onnxruntime_agreement(filename, mnist_all):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (dev extra) is needed to compare outputs")
    path = NETS / filename
    if not path.is_file():
        pytest.skip(f"{path} absent")
    expected_acc, widths = EXPECTED[filename]
    net = network_from_onnx(path)
    assert net.widths == widths
    assert net.input_shape == (784, 1)  # the graph input is (1, 784, 1); the graph does no normalisation
    X, y = mnist_all
    assert accuracy(net, X, y) == expected_acc  # exact: 9808 / 10000 and 9764 / 10000

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    flat = X.reshape(X.shape[0], -1)
    ours = net.forward(flat)
    theirs = np.concatenate([sess.run(None, {name: flat[i].reshape(1, 784, 1)})[0] for i in range(flat.shape[0])])
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def test_info_cli_prints_one_json_object():
    path = NETS / "mnist-net_256x2.onnx"
    proc = subprocess.run(
        [sys.executable, "-c", "from optprune.cli import main; main()", "info", str(path), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    info = json.loads(lines[0])
    assert info["widths"] == [784, 256, 256, 10]
    assert info["n_params"] == 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert [layer["activation"] for layer in info["layers"]] == ["relu", "relu", "identity"]


def test_info_cli_missing_file_is_a_json_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "from optprune.cli import main; main()", "info", str(tmp_path / "nope.onnx"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    out = json.loads(proc.stdout)
    assert out["error_type"] == "DataNotFoundError" and "nope.onnx" in out["error"]
