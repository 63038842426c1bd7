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


@pytest.mark.parametrize(
    ("args", "error_type", "says"),
    [
        (("--budget", "params=0.01"), "InfeasibleBudgetError", ""),
        (("--budget", "memory=0.5"), "InvalidParameterError", "params"),
        (("--data", "mnist"), "ShapeMismatchError", "(1, 8, 8)"),
        (("--out", "x.txt"), "InvalidParameterError", ".onnx or .pt"),
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
    assert code == 2 and payload["error_type"] == "UnsupportedLayerError", payload
