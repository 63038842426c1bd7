"""Transformers ViT/DeiT: structure analysis, exact conversion, pruning, save/reload, ONNX (issue 26)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")

from optprune.errors import InvalidParameterError, UnsupportedLayerError  # noqa: E402
from optprune.hf import vit as hv  # noqa: E402
from optprune.pruning import dependency_groups  # noqa: E402

TINY = {**hv.HF_VIT_PRESET["config"], "image_size": 8, "patch_size": 2, "num_hidden_layers": 2, "hidden_size": 16,
        "num_attention_heads": 4, "intermediate_size": 8}
HEADS = [[0, 2, 3], [1]]
NEURONS = [[0, 3, 5], [1, 2, 3, 4, 7]]


def _model(kind: str = "vit") -> nn.Module:
    torch.manual_seed(0)
    if kind == "vit":
        cfg = transformers.ViTConfig(**TINY)
        cfg._attn_implementation = "eager"
        return transformers.ViTForImageClassification(cfg).eval()
    cfg = transformers.DeiTConfig(**TINY)
    cfg._attn_implementation = "eager"
    return transformers.DeiTForImageClassification(cfg).eval()


def _x(n: int = 5) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def _logits(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(pixel_values=x).logits.numpy()


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_analysis_finds_heads_mlp_and_tokens(kind):
    s = hv.analyse_hf_vit(_model(kind))
    assert s.heads == [4, 4] and s.mlp == [8, 8] and s.layers[0].head_dim == 4
    assert s.special_tokens == (("cls_token",) if kind == "vit" else ("cls_token", "distillation_token"))
    assert s.layers[1].o.endswith("layers.1.attention.o_proj")


def test_analysis_refuses_unknown_module_by_name():
    m = _model()
    m.vit.layers[0].attention.lora = nn.Linear(2, 2)
    with pytest.raises(UnsupportedLayerError, match="layers.0.attention.lora"):
        hv.analyse_hf_vit(m)
    with pytest.raises(UnsupportedLayerError, match="Sequential"):
        hv.analyse_hf_vit(nn.Sequential(nn.Linear(2, 2)))


def test_conversion_is_exact_and_tracer_agrees_with_analysis():
    m, x = _model(), _x()
    v = hv.to_optprune_vit(m)
    assert np.abs(v(x).detach().numpy() - _logits(m, x)).max() <= 1e-5
    groups, _ = dependency_groups(v, (1, 8, 8))
    widths = [g.width for g in groups if g.prunable]
    s = hv.analyse_hf_vit(m)
    assert widths == [w for pair in zip(s.heads, s.mlp) for w in pair]
    back = hv.from_optprune_vit(v, m)
    assert np.abs(_logits(back, x) - _logits(m, x)).max() <= 1e-5
    with pytest.raises(UnsupportedLayerError):
        hv.to_optprune_vit(_model("deit"))


@pytest.mark.parametrize("kind", ["vit", "deit"])
def test_pruned_model_reloads_with_from_pretrained_and_matches_mask(kind, tmp_path):
    m, x = _model(kind), _x()
    masked = hv.mask_hf_vit(m, HEADS, NEURONS)
    pruned = hv.prune_hf_vit(m, HEADS, NEURONS)
    assert hv.analyse_hf_vit(pruned).heads == [3, 1] and hv.analyse_hf_vit(pruned).mlp == [3, 5]
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in m.parameters())
    pruned.save_pretrained(tmp_path)
    again = transformers.AutoModelForImageClassification.from_pretrained(tmp_path)
    assert again.config.heads_per_layer == [3, 1] and again.config.intermediate_per_layer == [3, 5]
    assert np.abs(_logits(again, x) - _logits(masked, x)).max() <= 1e-5
    # masking changed the model (the check above is not vacuous)
    assert np.abs(_logits(masked, x) - _logits(m, x)).max() > 1e-4


def test_onnx_export_matches_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    pruned, x = hv.prune_hf_vit(_model(), HEADS, NEURONS), _x(3)
    path = hv.export_hf_vit_onnx(pruned, tmp_path / "m.onnx")
    out = ort.InferenceSession(str(path)).run(None, {"pixel_values": x.numpy()})[0]
    assert np.abs(out - _logits(pruned, x)).max() <= 1e-5


def test_bad_keep_lists_are_named():
    m = _model()
    with pytest.raises(InvalidParameterError, match="one list per layer"):
        hv.prune_hf_vit(m, [[0]], [[0]])
    with pytest.raises(InvalidParameterError, match="layer 1"):
        hv.prune_hf_vit(m, [[0], [4]], [[0], [0]])
    with pytest.raises(InvalidParameterError, match=">= 1 head"):
        hv.mask_hf_vit(m, [[0], []], [[0], [0]])


def test_gohsp_on_the_transformers_vit_meets_the_budget_and_converts_exactly():
    rng = np.random.default_rng(0)
    X = rng.random((64, 1, 8, 8), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    m = _model()
    dense = sum(p.numel() for p in m.parameters())
    pruned, est = hv.gohsp_hf_vit(m, 0.6, (X, y), admm_iterations=1, finetune_epochs=0, calibration_size=32)
    assert isinstance(pruned, hv.PrunedViTForImageClassification)
    assert sum(p.numel() for p in pruned.parameters()) <= 0.6 * dense
    x = torch.as_tensor(X[:5])
    assert np.abs(_logits(pruned, x) - est.model_(x).detach().numpy()).max() <= 1e-5
    assert hv.analyse_hf_vit(pruned).heads == list(est.model_.config.heads)
