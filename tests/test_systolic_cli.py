"""``optprune systolic cycles|prune|assign`` through the real entry point: one JSON object, named errors, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from optprune.cli import main
from optprune.io import load_network, save_torch_model
from optprune.systolic import ArraySpec, compute_cycles
from optprune.training import digits_mlp


def run(capsys, *args: str) -> dict:
    main(list(args))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def fail(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


@pytest.fixture(scope="module")
def gemm_list(tmp_path_factory):
    path = tmp_path_factory.mktemp("gemms") / "gemms.json"
    path.write_text(json.dumps([[5, 10, 7], [33, 17, 9]]))
    return path


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    path = tmp_path_factory.mktemp("nets") / "digits_16.pt"
    save_torch_model(digits_mlp([16], seed=0, epochs=10), path)
    return path


def test_cycles_json_list(capsys, gemm_list) -> None:
    r = run(capsys, "systolic", "cycles", str(gemm_list), "--array", "4x4", "--dataflow", "ws", "--batch", "7",
            "--json")
    assert [layer["cycles"] for layer in r["layers"]] == [89, 644]  # SCALE-Sim 3.0.0's measured Total Cycles
    assert r["total_cycles"] == 89 + 644 and r["batch"] is None
    assert [layer["folds"] for layer in r["layers"]] == [6, 15]
    assert r["layers"][0] | {"name": None} == {"name": None, "kind": "gemm", "M": 5, "K": 10, "N": 7, "folds": 6,
                                                "cycles_per_fold": 15, "cycles": 89}


def test_cycles_onnx(capsys, mnistfc) -> None:
    r = run(capsys, "systolic", "cycles", str(mnistfc / "mnist-net_256x2.onnx"), "--array", "16x8",
            "--dataflow", "os", "--batch", "4", "--json")
    shapes = [[layer["M"], layer["K"], layer["N"]] for layer in r["layers"]]
    assert shapes == [[4, 784, 256], [4, 256, 256], [4, 256, 10]]
    # SCALE-Sim os on 16x8 by hand: ceil(M/16) ceil(N/8) folds of R + C + K - 2 lines, cycles = folds x lines - 1
    #   4x784x256: 1 x 32 = 32 folds of 16 + 8 + 784 - 2 = 806 lines -> 25791
    #   4x256x256: 32 folds of 278 lines -> 8895;  4x256x10: 1 x 2 = 2 folds of 278 lines -> 555
    assert [(layer["folds"], layer["cycles_per_fold"], layer["cycles"]) for layer in r["layers"]] == [
        (32, 806, 25791), (32, 278, 8895), (2, 278, 555)]
    assert r["total_cycles"] == 25791 + 8895 + 555 == 35241


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--array", "0"], "array size '0': rows must be a positive integer >= 1; got 0"),
        (["--array", "8x0"], "cols must be a positive integer >= 1"),
        (["--array", "3.5x4"], "rows must be a positive integer (e.g. 32x32 or 32); got '3.5'"),
        (["--dataflow", "rs"], "--dataflow must be one of ws, os, is; got 'rs'"),
        (["--batch", "0"], "--batch must be in [1, 2147483647]; got 0"),
    ],
)
def test_cycles_bad_options(capsys, gemm_list, args, message) -> None:
    r = fail(capsys, "systolic", "cycles", str(gemm_list), *args, "--json")
    assert r["error_type"] == "InvalidParameterError"
    assert message in r["error"]


def test_cycles_unsupported_layer_named(capsys, tmp_path) -> None:
    path = tmp_path / "bn.pt"
    save_torch_model(nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2)), path)
    r = fail(capsys, "systolic", "cycles", str(path), "--json")
    assert r["error_type"] == "UnsupportedLayerError"
    assert "'1' of type 'BatchNorm1d'" in r["error"] and "Linear" in r["error"]


def test_prune_digits_exact_writes_model_and_mask(capsys, tmp_path, digits_net) -> None:
    out = tmp_path / "pruned.onnx"
    r = run(capsys, "systolic", "prune", str(digits_net), "--array", "8x8", "--dataflow", "os", "--cycle-budget",
            "0.7", "--scorer", "taylor", "--solver", "highs", "--data", "digits", "--finetune-epochs", "1",
            "--lr", "1e-3", "--out", str(out), "--json")
    assert r["cycles_after"] <= int(0.7 * r["cycles_before"]) < r["cycles_before"]
    assert r["speedup"] == pytest.approx(r["cycles_before"] / r["cycles_after"])
    assert 0 < r["blocks_kept"] < r["blocks"] and r["selection"]["status"] == "optimal"
    for key in ("accuracy_before", "accuracy_after_prune", "accuracy_after"):
        assert 0.0 <= r[key] <= 1.0
    # the written network has exactly the reported zero blocks and the cycles the report says
    net = load_network(out)
    from optprune.systolic import block_layout

    layout = block_layout([[1, 64, 16], [1, 16, 10]], ArraySpec(8, 8, "os"))
    keep = layout.keep_from_weights([layer.dense_weight().T for layer in net.layers])
    assert int(keep.sum()) == r["blocks_kept"] and layout.cycles(keep) == r["cycles_after"]
    saved = np.load(out.with_suffix(".mask.npz"))
    assert saved["keep"].tolist() == keep.tolist()
    from optprune.data import load_dataset
    from optprune.training import accuracy

    X, y = load_dataset("digits", "test")
    assert accuracy(net, X, y) == pytest.approx(r["accuracy_after"], abs=1e-9)


def test_prune_greedy_never_beats_exact(capsys, digits_net) -> None:
    common = ["--array", "4x4", "--cycle-budget", "0.5", "--data", "digits", "--json"]
    exact = run(capsys, "systolic", "prune", str(digits_net), *common, "--solver", "highs")
    greedy = run(capsys, "systolic", "prune", str(digits_net), *common, "--solver", "greedy")
    assert greedy["selection"]["score"] <= exact["selection"]["score"] + 1e-9
    assert greedy["cycles_after"] <= greedy["selection"]["budget"]


@pytest.mark.parametrize(
    ("args", "error_type", "message"),
    [
        (["--cycle-budget", "0"], "InvalidParameterError", "--cycle-budget must be in (0, 1]; got 0.0"),
        (["--cycle-budget", "1.5"], "InvalidParameterError", "--cycle-budget must be in (0, 1]; got 1.5"),
        (["--cycle-budget", "0.001"], "InfeasibleBudgetError", "no block selection meets a cycle budget of 0.001"),
        (["--array", "0x8"], "InvalidParameterError", "rows must be a positive integer >= 1"),
        (["--dataflow", "xs"], "InvalidParameterError", "--dataflow must be one of ws, os, is"),
        (["--scorer", "l2"], "InvalidParameterError", "--scorer must be one of magnitude, taylor"),
        (["--solver", "nope"], "UnknownSolverError", "unknown solver 'nope'"),
    ],
)
def test_prune_bad_input(capsys, digits_net, args, error_type, message) -> None:
    r = fail(capsys, "systolic", "prune", str(digits_net), "--data", "digits", *args, "--json")
    assert r["error_type"] == error_type
    assert message in r["error"]


def test_prune_refuses_existing_output(capsys, tmp_path, digits_net) -> None:
    out = tmp_path / "p.onnx"
    out.write_text("keep me")
    r = fail(capsys, "systolic", "prune", str(digits_net), "--data", "digits", "--out", str(out), "--json")
    assert "--force" in r["error"] and out.read_text() == "keep me"


def test_assign(capsys, gemm_list) -> None:
    r = run(capsys, "systolic", "assign", str(gemm_list), "--arrays", "4x4,2x2", "--tile", "3", "--json")
    assert r["status"] == "optimal" and r["makespan"] <= r["lpt_makespan"]
    assert r["bound"] == pytest.approx(r["makespan"])
    assert r["makespan"] <= min(r["single_array_makespans"].values())
    assert len(r["assignment"]) == 3 + 3  # N = 7 and 9 in tiles of 3
    cp = run(capsys, "systolic", "assign", str(gemm_list), "--arrays", "4x4,2x2", "--tile", "3", "--solver",
             "cpsat", "--json")
    assert cp["makespan"] == r["makespan"]


@pytest.mark.parametrize(("arrays", "message"), [("32x32,0", "rows must be a positive integer >= 1"),
                                                  (",", "--arrays must list at least one array size")])
def test_assign_bad_arrays(capsys, gemm_list, arrays, message) -> None:
    r = fail(capsys, "systolic", "assign", str(gemm_list), "--arrays", arrays, "--json")
    assert message in r["error"]


def test_torch_model_cycles_match_python_api(capsys, tmp_path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 3))
    path = tmp_path / "m.pt"
    save_torch_model(model, path)
    r = run(capsys, "systolic", "cycles", str(path), "--array", "4", "--dataflow", "is", "--batch", "2", "--json")
    assert [[layer["M"], layer["K"], layer["N"]] for layer in r["layers"]] == [[2, 12, 6], [2, 6, 3]]
    # SCALE-Sim is on 4x4 by hand: ceil(K/4) ceil(M/4) folds of 2R + C + N - 2 lines, cycles = folds x lines - 1
    #   2x12x6: 3 x 1 = 3 folds of 8 + 4 + 6 - 2 = 16 lines -> 47;  2x6x3: 2 x 1 = 2 folds of 13 lines -> 25
    assert [(layer["folds"], layer["cycles_per_fold"], layer["cycles"]) for layer in r["layers"]] == [
        (3, 16, 47), (2, 13, 25)]
    assert r["total_cycles"] == 47 + 25 == 72
    assert r["total_cycles"] == int(compute_cycles([[2, 12, 6], [2, 6, 3]], ArraySpec(4, 4, "is")).sum())


def test_prune_reconstruction_objective_exact_never_below_greedy(capsys, digits_net) -> None:
    common = ["--array", "8x8", "--dataflow", "ws", "--cycle-budget", "0.6", "--data", "digits",
              "--objective", "reconstruction", "--json"]
    exact = run(capsys, "systolic", "prune", str(digits_net), *common, "--solver", "highs")
    greedy = run(capsys, "systolic", "prune", str(digits_net), *common, "--solver", "greedy")
    assert exact["objective"] == "reconstruction" and exact["selection"]["objective"] == "reconstruction"
    assert greedy["selection"]["score"] <= exact["selection"]["score"] + 1e-9
    assert exact["cycles_after"] <= exact["selection"]["budget"]
    assert exact["selection"]["gap"] is not None and exact["selection"]["gap"] >= 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--objective", "loss"], "--objective must be one of score, reconstruction"),
        (["--objective", "reconstruction", "--whole-rows"], "apply to --objective score"),
    ],
)
def test_prune_bad_objective(capsys, digits_net, args, message) -> None:
    r = fail(capsys, "systolic", "prune", str(digits_net), "--data", "digits", *args, "--json")
    assert r["error_type"] == "InvalidParameterError"
    assert message in r["error"]


def test_cycles_memory_term(capsys, gemm_list) -> None:
    from optprune.systolic import MemorySpec, layer_memory

    r = run(capsys, "systolic", "cycles", str(gemm_list), "--array", "4x4", "--sram-kb", "1", "--bandwidth", "1",
            "--json")
    ref = layer_memory([[5, 10, 7], [33, 17, 9]], ArraySpec(4, 4, "ws"), MemorySpec(1, 1, 1, 1))
    assert [row["memory"]["stall_cycles"] for row in r["layers"]] == ref["stall_cycles"].tolist()
    assert r["memory"]["total_cycles_with_stalls"] == int(ref["total_cycles"].sum()) >= r["total_cycles"]
    bad = fail(capsys, "systolic", "cycles", str(gemm_list), "--sram-kb", "1", "--json")
    assert "needs both --sram-kb and --bandwidth" in bad["error"]
