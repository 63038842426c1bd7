"""``optprune prune`` end to end: JSON report, smaller ONNX / .pt output, decision file, verification."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optprune.cli import main
from optprune.data import data_dir
from optprune.errors import DataNotFoundError
from optprune.io import load_network, load_torch_model, network_from_onnx, save_torch_model
from optprune.pruning import PruningDecision
from optprune.training import accuracy, digits_mlp

KEYS = {"params_before", "params_after", "accuracy_before", "accuracy_after_prune", "accuracy_after_finetune",
        "widths", "data_note"}


def run(capsys, *args: str) -> dict:
    main(list(args))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object on stdout
    return json.loads(out[0])


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "digits_32x16.pt"
    model = digits_mlp([32, 16], seed=0, epochs=10)
    save_torch_model(model, path)  # weights and architecture, loads without --trust-pickle
    return path


def test_prune_digits_to_onnx(capsys, tmp_path, digits_net) -> None:
    out = tmp_path / "pruned.onnx"
    decision_file = tmp_path / "decision.json"
    r = run(capsys, "prune", str(digits_net), "--scorer", "flap", "--ratio", "0.5", "--data", "digits",
            "--finetune-epochs", "2", "--lr", "1e-3", "--distill", "--out", str(out),
            "--save-decision", str(decision_file), "--json")
    assert KEYS <= set(r)
    assert r["widths"] == [64, 16, 8, 10]
    assert r["params_after"] == 64 * 16 + 16 + 16 * 8 + 8 + 8 * 10 + 10 < r["params_before"]
    assert "digits" in r["data_note"] and "'test' fold" in r["data_note"]
    for key in ("accuracy_before", "accuracy_after_prune", "accuracy_after_finetune"):
        assert 0.0 <= r[key] <= 1.0
    net = network_from_onnx(out)
    assert net.widths == [64, 16, 8, 10]
    # the ONNX file computes what the reported accuracy says
    from optprune.data import load_dataset

    X, y = load_dataset("digits", "test")
    assert accuracy(net, X, y) == pytest.approx(r["accuracy_after_finetune"], abs=1e-9)
    decision = PruningDecision.load(decision_file)
    assert decision.new_widths == {"1": 16, "3": 8}


def test_prune_without_finetune_writes_pt(capsys, tmp_path, digits_net) -> None:
    out = tmp_path / "pruned.pt"
    r = run(capsys, "prune", str(digits_net), "--scorer", "l1", "--ratio", "0.25", "--data", "digits",
            "--decision", "global", "--out", str(out), "--json")
    assert r["accuracy_after_finetune"] is None
    model = load_torch_model(out)
    assert sum(p.numel() for p in model.parameters()) == r["params_after"]
    assert load_network(out).widths == r["widths"]
    assert sum(r["widths"][1:-1]) == int(0.75 * 48)  # global: 25% of all 48 hidden units removed


def test_prune_pickled_model_needs_trust_pickle(capsys, tmp_path) -> None:
    """A whole torch.save'd model is refused by default and accepted with --trust-pickle."""
    path = tmp_path / "pickled.pt"
    torch.save(digits_mlp([16], seed=0, epochs=1), path)
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(path), "--data", "digits", "--json"])
    assert exc.value.code == 2
    payload = json.loads(capsys.readouterr().out)
    assert payload["error_type"] == "FileFormatError" and "--trust-pickle" in payload["error"]
    r = run(capsys, "prune", str(path), "--data", "digits", "--ratio", "0.5", "--trust-pickle", "--json")
    assert r["widths"] == [64, 8, 10]


def test_prune_reports_bad_options(capsys, digits_net) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["prune", str(digits_net), "--ratio", "1.5", "--data", "digits", "--json"])
    assert exc.value.code == 2
    payload = json.loads(capsys.readouterr().out)
    assert "ratio" in payload["error"] and "1.5" in payload["error"]
    with pytest.raises(SystemExit):
        main(["prune", str(digits_net), "--data", "cifar", "--json"])
    assert "--data must be 'mnist' or 'digits'" in json.loads(capsys.readouterr().out)["error"]


def _mnist_net():
    try:
        folder = data_dir()
    except DataNotFoundError as exc:
        pytest.skip(f"shared data not found: {exc}")
    path = folder / "vnncomp2021-mnistfc" / "mnist-net_256x2.onnx"
    if not path.exists():
        pytest.skip(f"{path} not found")
    return folder, path


def test_prune_mnist_onnx_and_verify(capsys, tmp_path) -> None:
    """The pruned ONNX of a VNN-COMP net is read back and accepted by the verifier."""
    folder, path = _mnist_net()
    out = tmp_path / "pruned.onnx"
    r = run(capsys, "prune", str(path), "--scorer", "wanda_sp", "--ratio", "0.75", "--data", "mnist",
            "--calibration-size", "128", "--out", str(out), "--json")
    assert r["widths"] == [784, 64, 64, 10]
    assert "MNIST" in r["data_note"] and "not on the official test set" in r["data_note"]
    assert r["accuracy_before"] > 0.95 and r["accuracy_after_prune"] > 0.5
    from optprune import verification

    result = verification.verify_vnnlib(out, folder / "vnncomp2021-mnistfc" / "prop_0_0.03.vnnlib", time_limit=60)
    assert result.verdict in ("sat", "unsat"), result.to_dict()  # a 64x64 net is decided well within the minute
    if result.verdict == "sat":  # a counterexample must really violate the property on the pruned net
        net = network_from_onnx(out)
        y = net.forward(np.asarray(result.counterexample))
        assert np.argmax(y) != 7 or np.sort(y)[-2] >= y[7]


def test_prune_with_verification_friendly_finetuning(capsys, tmp_path, digits_net) -> None:
    out = tmp_path / "stable.onnx"
    r = run(capsys, "prune", str(digits_net), "--scorer", "l1", "--ratio", "0.25", "--data", "digits",
            "--finetune-epochs", "2", "--lr", "1e-3", "--rs-weight", "0.1", "--rs-eps", "0.05", "--sparsity", "0.5",
            "--out", str(out), "--json")
    assert r["stability"]["sparsity"] == 0.5 and r["stability"]["rs_weight"] == 0.1
    net = network_from_onnx(out)
    for layer in net.layers:  # half of every layer's weights are exact zeros
        w = layer.dense_weight()
        assert abs(int((w == 0).sum()) - w.size // 2) <= 1
    code = None
    try:
        main(["prune", str(digits_net), "--data", "digits", "--sparsity", "0.5", "--json"])
    except SystemExit as exc:
        code = exc.code
    payload = json.loads(capsys.readouterr().out.strip())
    assert code == 2 and "--finetune-epochs" in payload["error"]
