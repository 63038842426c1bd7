"""``optprune gohsp`` / ``optprune prune`` on a transformers ViT folder (issue 26): the folder written back
reloads with ``from_pretrained``, its parameter count is the JSON's, one JSON object, named errors.

The ViT is a tiny ``ViTForImageClassification`` built from a config here (seeded, untrained, 8x8 digits
images): nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from transformers import AutoModelForImageClassification, DeiTConfig, DeiTForImageClassification, ViTConfig

import optprune.hf.vit  # noqa: F401  (registers the pruned classes with the Auto classes)
from optprune.cli import main
from optprune.data import load_dataset
from optprune.hf.vit import PrunedViTForImageClassification, hf_logits, hf_vit_accuracy

TINY = dict(image_size=8, patch_size=2, num_channels=1, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=12, hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0, qkv_bias=True, num_labels=10)
FAST = ("--data", "digits", "--admm-iterations", "1", "--finetune-epochs", "0")


def cli(capsys, *args: str) -> tuple[int, dict]:
    code = 0
    try:
        main([*args, "--json"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # exactly one JSON object on stdout
    return code, json.loads(lines[0])


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory):
    from transformers import ViTForImageClassification

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("hfvit") / "tiny_vit"
    ViTForImageClassification(ViTConfig(**TINY)).save_pretrained(path)
    return path


def reload(path) -> PrunedViTForImageClassification:
    model = AutoModelForImageClassification.from_pretrained(str(path), local_files_only=True)
    assert isinstance(model, PrunedViTForImageClassification)
    return model.eval()


def test_gohsp_on_a_transformers_folder_writes_a_folder_that_reloads(capsys, vit_folder, tmp_path):
    out = tmp_path / "pruned"
    code, payload = cli(capsys, "gohsp", str(vit_folder), "--budget", "params=0.6", *FAST, "--out", str(out))
    assert code == 0, payload
    assert payload["architecture"] == "ViTForImageClassification"
    assert payload["architecture_out"] == "PrunedViTForImageClassification"
    assert payload["params_before"] == n_params(AutoModelForImageClassification.from_pretrained(str(vit_folder)))
    assert payload["params_after"] <= 0.6 * payload["params_before"]
    assert max(payload["conversion_max_abs_diff"].values()) <= 1e-5  # both conversions exact to float error
    pruned = reload(out)
    assert n_params(pruned) == payload["params_after"]
    assert pruned.config.heads_per_layer == payload["heads_kept"]
    assert pruned.config.intermediate_per_layer == payload["mlp_widths"]
    X, y = load_dataset("digits", "test")
    assert hf_vit_accuracy(pruned, X, y) == payload["accuracy_after"]
    assert json.loads((out / "optprune.json").read_text())["method"] == "gohsp"

    # an existing folder is not replaced without --force; with it, it is (atomically, a fresh model)
    code, err = cli(capsys, "gohsp", str(vit_folder), *FAST, "--out", str(out))
    assert code == 2 and err["error_type"] == "InvalidParameterError" and "--force" in err["error"]
    assert n_params(reload(out)) == payload["params_after"]
    code, again = cli(capsys, "gohsp", str(vit_folder), "--budget", "params=0.8", *FAST, "--out", str(out), "--force")
    assert code == 0 and n_params(reload(out)) == again["params_after"] > payload["params_after"]


def test_prune_dispatches_a_transformers_vit_to_gohsp(capsys, vit_folder, tmp_path):
    out = tmp_path / "pruned"
    code, payload = cli(capsys, "prune", str(vit_folder), "--method", "gohsp", "--ratio", "0.5", "--data", "digits",
                        "--out", str(out))
    assert code == 0, payload
    assert payload["method"] == "gohsp" and payload["budget"] == {"params": 0.5}
    assert payload["params_after"] <= 0.5 * payload["params_before"]
    pruned = reload(out)
    assert n_params(pruned) == payload["params_after"]
    X, _ = load_dataset("digits", "test")
    assert np.isfinite(hf_logits(pruned, X[:50])).all()


def test_prune_names_the_methods_a_vit_takes(capsys, vit_folder):
    code, err = cli(capsys, "prune", str(vit_folder), "--data", "digits")
    assert code == 2 and err["error_type"] == "InvalidParameterError"
    assert "--method gohsp" in err["error"] and "optprune gohsp" in err["error"]


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    from optprune.hf._models import build_model

    path = tmp_path_factory.mktemp("gpt2") / "tiny_gpt2"
    build_model("gpt2", d_model=16, n_layers=1, n_heads=2).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def deit_folder(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("deit") / "tiny_deit"
    DeiTForImageClassification(DeiTConfig(**TINY)).save_pretrained(path)
    return path


def test_gohsp_named_errors_on_folders_that_are_not_a_vit(capsys, gpt2_folder, deit_folder, tmp_path):
    code, err = cli(capsys, "gohsp", str(gpt2_folder), *FAST)
    assert code == 2 and err["error_type"] == "FileFormatError"
    assert "model_type 'gpt2'" in err["error"] and "vit" in err["error"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = cli(capsys, "gohsp", str(empty), *FAST)
    assert code == 2 and err["error_type"] == "FileFormatError" and "config.json" in err["error"]
    # DeiT's distillation token has no counterpart in the project's ViT: refused by name, before any work
    code, err = cli(capsys, "gohsp", str(deit_folder), *FAST)
    assert code == 2 and err["error_type"] == "UnsupportedLayerError" and "DeiTForImageClassification" in err["error"]


def test_gohsp_out_must_be_a_folder_or_onnx_for_a_transformers_vit(capsys, vit_folder, tmp_path):
    code, err = cli(capsys, "gohsp", str(vit_folder), *FAST, "--out", str(tmp_path / "x.pt"))
    assert code == 2 and err["error_type"] == "InvalidParameterError" and "save_pretrained" in err["error"]
    assert not (tmp_path / "x.pt").exists()
