"""``optprune gohsp``: one JSON object with the figures the issue names, files written, named errors."""

from __future__ import annotations

import json

import pytest
import torch

from optprune.cli import main
from optprune.vit import ViTConfig, load_vit, make_vit, save_vit

TINY = ViTConfig(8, 2, 1, 16, 4, (4, 4), (12, 12))


def cli(capsys, *args: str) -> tuple[int, dict]:
    code = 0
    try:
        main([*args, "--json"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # exactly one JSON object on stdout
    return code, json.loads(lines[0])


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    path = tmp_path_factory.mktemp("vit") / "tiny.pt"
    save_vit(make_vit(TINY, seed=0), path)
    return path


def test_gohsp_command_reports_and_writes(capsys, tiny_vit, tmp_path):
    out, plot = tmp_path / "p.pt", tmp_path / "r.png"
    code, payload = cli(capsys, "gohsp", str(tiny_vit), "--budget", "params=0.6", "--data", "digits",
                        "--admm-iterations", "2", "--finetune-epochs", "0", "--out", str(out), "--plot", str(plot))
    assert code == 0, payload
    assert payload["params_after"] <= 0.6 * payload["params_before"]
    assert len(payload["heads_kept"]) == 2 and len(payload["mlp_widths"]) == 2
    assert [h["iteration"] for h in payload["admm"]] == [0, 1]
    assert {"accuracy_before", "accuracy_after", "primal_residual"} <= set(payload) | set(payload["admm"][0])
    pruned = load_vit(out)
    assert list(pruned.config.heads) == payload["heads_kept"] and list(pruned.config.mlp) == payload["mlp_widths"]
    assert sum(p.numel() for p in pruned.parameters()) == payload["params_after"]
    assert plot.stat().st_size > 0
    code, rec = cli(capsys, "gohsp", str(tiny_vit), "--budget", "params=0.6", "--data", "digits",
                    "--admm-iterations", "0", "--finetune-epochs", "0", "--budgets", "reconstruction")
    assert code == 0 and rec["budgets"] == "reconstruction" and rec["params_after"] <= 0.6 * rec["params_before"]


# TINY's parameters by hand (dim 16, head_dim 4, 17 tokens, 10 classes): patch embedding 2*2*16 + 16 = 80, class
# token 16, positions 17*16 = 272, final LayerNorm 32, head 16*10 + 10 = 170; a block with h heads and m MLP neurons:
# two LayerNorms 64, q/k/v 3 (16*4h + 4h) = 204h, out_proj 4h*16 + 16 = 64h + 16, fc1 17m, fc2 16m + 16, so
# 268h + 33m + 96. Unpruned (h=4, m=12): 570 + 2 * 1564 = 3698; smallest (h=1, m=1): 570 + 2 * 397 = 1364.
INFEASIBLE = ("budget params=36.98 is infeasible: the smallest allowed widths need params=1364 "
              "(0.3688 of the unpruned model's 3698); allowed: a budget >= 1364 (relative >= 0.3688)")


def test_hand_counted_parameters_of_tiny():
    count = lambda cfg: sum(p.numel() for p in make_vit(cfg, seed=0).parameters())
    assert count(TINY) == 3698
    assert count(ViTConfig(8, 2, 1, 16, 4, (1, 1), (1, 1))) == 1364


@pytest.mark.parametrize(
    ("args", "error_type", "says"),
    [
        (("--budget", "params=0.01"), "InfeasibleBudgetError", INFEASIBLE),
        (("--budget", "memory=0.5"), "InvalidParameterError", "params"),
        (("--data", "mnist"), "ShapeMismatchError", "(1, 8, 8)"),
        (("--out", "x.txt"), "InvalidParameterError", ".onnx, .pt"),
        (("--budgets", "magic"), "InvalidParameterError", "'search' or 'reconstruction'"),
    ],
)
def test_gohsp_command_named_errors(capsys, tiny_vit, args, error_type, says):
    code, payload = cli(capsys, "gohsp", str(tiny_vit), "--data", "digits", "--admm-iterations", "0",
                        "--finetune-epochs", "0", *args)
    assert code == 2 and payload["error_type"] == error_type, payload
    assert says in payload["error"]


def test_gohsp_command_refuses_a_model_that_is_not_a_vit(capsys, tmp_path):
    path = tmp_path / "mlp.pt"
    torch.save({"format": "optprune.torch/1"}, path)
    code, payload = cli(capsys, "gohsp", str(path), "--data", "digits")
    assert code == 2 and payload["error_type"] == "FileFormatError", payload
    assert "vit-train" in payload["error"]
