"""Loading a model file runs no code from it; files that are not models get a named error saying what they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from torch import nn

from optprune.cli import main
from optprune.errors import FileFormatError, ShapeMismatchError
from optprune.io import load_network, load_torch_model, network_from_onnx, network_from_torch, save_torch_model


class _Payload:
    """Unpickling this object calls ``os.system`` (a stand-in for any code an attacker wants to run)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, path)
    assert not marker.exists()
    return path, marker


def _script() -> str:
    script = Path(sys.executable).with_name("optprune")
    if not script.exists():
        pytest.skip("the optprune console script is not installed")
    return str(script)


def test_malicious_pt_is_not_unpickled_by_the_cli(evil, tmp_path) -> None:
    path, marker = evil
    proc = subprocess.run([_script(), "info", str(path), "--json"], capture_output=True, text=True, timeout=120,
                          cwd=tmp_path)
    assert not marker.exists(), "loading the file ran code from it"
    assert proc.returncode == 2, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["error_type"] == "FileFormatError"
    assert "--trust-pickle" in payload["error"] and "posix.system" in payload["error"]


@pytest.mark.parametrize("command", [
    ["verify", "{pt}", "{pt}"], ["prune", "{pt}", "--data", "digits"], ["search", "{pt}", "--budget", "params=0.5"],
    ["latency-table", "{pt}", "--out", "{dir}/t.json"], ["attack", "{pt}", "--out", "{dir}/att"],
])
def test_every_loading_command_refuses_the_payload(capsys, evil, command) -> None:
    path, marker = evil
    args = [a.format(pt=path, dir=path.parent) for a in command]
    with pytest.raises(SystemExit) as exc:
        main([*args, "--json"])
    assert exc.value.code == 2
    assert not marker.exists()
    assert json.loads(capsys.readouterr().out)["error_type"] == "FileFormatError"


def test_whole_pickled_model_needs_trust_pickle(tmp_path) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(FileFormatError, match=r"--trust-pickle.*save_torch_model"):
        load_network(path)
    with pytest.raises(FileFormatError, match="--trust-pickle"):
        load_torch_model(path)
    assert load_network(path, trust_pickle=True).widths == [4, 3, 2]
    assert isinstance(load_torch_model(path, trust_pickle=True), nn.Sequential)


def test_trust_pickle_help_says_it_runs_code(capsys) -> None:
    for command in ("info", "verify", "prune", "search", "attack", "latency-table"):
        main([command, "--help"])  # help exits normally (code 0)
        text = " ".join(capsys.readouterr().out.replace("│", " ").split())
        assert "--trust-pickle" in text and "RUNS CODE" in text, command


def test_save_torch_model_round_trip_without_pickled_code(tmp_path) -> None:
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
        nn.Sequential(nn.Linear(32, 6), nn.Dropout(0.1)), nn.ReLU(), nn.Linear(6, 3, bias=False),
    ).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
    model.input_shape = (1, 4, 4)
    path = save_torch_model(model, tmp_path / "m.pt")
    torch.load(path, weights_only=True)  # plain data and tensors only
    back = load_torch_model(path)
    x = torch.randn(5, 1, 4, 4)
    assert torch.equal(back(x), model(x))
    assert back.input_shape == (1, 4, 4)
    assert load_network(path).widths == [16, 32, 6, 3]


def test_bare_state_dict_says_how_to_save_a_loadable_file(tmp_path) -> None:
    path = tmp_path / "sd.pth"
    torch.save(nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(FileFormatError, match="without the architecture.*save_torch_model"):
        load_network(path)


def test_directory_and_empty_files_are_named(tmp_path) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    with pytest.raises(FileFormatError, match="is a directory"):
        load_network(folder)
    with pytest.raises(FileFormatError, match="is a directory"):
        network_from_onnx(folder)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        load_network(empty)
    with pytest.raises(FileFormatError, match="empty"):
        network_from_onnx(empty)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07")  # parses as an empty ModelProto
    with pytest.raises(FileFormatError, match="not a valid ONNX"):
        network_from_onnx(junk)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"hello, this is not a protobuf")
    with pytest.raises(FileFormatError, match="not a valid ONNX protobuf"):
        network_from_onnx(garbage)
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(FileFormatError, match=r"could not be read by torch.load: Unsupported operand") as exc:
        load_network(tmp_path / "junk.pt")
    assert "weights_only` set to `False`" not in str(exc.value)  # no advice to turn the protection off
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(FileFormatError, match="empty"):
        load_network(tmp_path / "empty.pt")


def test_directory_model_through_the_cli(capsys, tmp_path) -> None:
    (tmp_path / "net.onnx").mkdir()
    with pytest.raises(SystemExit) as exc:
        main(["info", str(tmp_path / "net.onnx"), "--json"])
    assert exc.value.code == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["error_type"] == "FileFormatError" and "directory" in payload["error"]


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_zero_width_layers_are_refused(tmp_path) -> None:
    weight = numpy_helper.from_array(np.zeros((0, 4), dtype=np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(0, dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["input", "w", "b"], ["output"], name="fc0", transB=1)], "zero",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("output", onnx.TensorProto.FLOAT, ["N", 0])], initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(ShapeMismatchError, match=r"'fc0' has 0 output units.*at least 1"):
        network_from_onnx(model)
    with pytest.raises(ShapeMismatchError, match="0 output units"):
        network_from_torch(nn.Sequential(nn.Linear(4, 0)), (4,))
