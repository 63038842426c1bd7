"""The small ViT: its forward pass against a plain reference, the engine's groups, saving, ONNX, named errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from optprune.errors import DataNotFoundError, FileFormatError, ShapeMismatchError, UnsupportedLayerError
from optprune.pruning import PruningDecision, apply_decision, dependency_groups, mask_model
from optprune.vit import (
    ViTConfig,
    check_inputs,
    check_vit,
    export_vit_onnx,
    group_names,
    load_vit,
    make_vit,
    save_vit,
)

TINY = ViTConfig(8, 2, 1, 16, 4, (4, 3), (12, 10))


def reference_forward(model, x: torch.Tensor) -> torch.Tensor:
    """The same ViT written the usual way (conv patches, expand, transpose, indexing)."""
    emb = model.embed
    p, d = emb.patch, emb.weight.shape[-1]
    conv_w = emb.weight.reshape(emb.channels, p, p, d).permute(3, 0, 1, 2)
    patches = nn.functional.conv2d(x, conv_w, emb.bias, stride=p).flatten(2).transpose(1, 2)
    z = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), patches], dim=1) + model.pos_embed
    for blk in model.blocks:
        a = blk.attn
        u = blk.norm1(z)
        n, t, _ = u.shape
        h = a.q_proj.out_features // a.head_dim
        q, k, v = (proj(u).view(n, t, h, a.head_dim).transpose(1, 2) for proj in (a.q_proj, a.k_proj, a.v_proj))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(a.head_dim), dim=-1)
        z = z + a.out_proj((att @ v).transpose(1, 2).reshape(n, t, -1))
        z = z + blk.fc2(nn.functional.gelu(blk.fc1(blk.norm2(z))))
    return model.head(model.norm(z)[:, 0])


def test_forward_matches_the_plain_reference():
    model = make_vit(TINY, seed=1)
    with torch.no_grad():
        model.cls_token.normal_()
    x = torch.rand(5, 1, 8, 8)
    torch.testing.assert_close(model(x), reference_forward(model, x), rtol=1e-5, atol=1e-5)


def test_engine_finds_heads_and_mlp_groups_and_only_those():
    model = make_vit(TINY)
    groups, _ = dependency_groups(model, model.input_shape)
    prunable = {g.name: (g.kind, g.width) for g in groups if g.prunable}
    names = group_names(model)
    assert prunable == {
        names["heads"][0]: ("heads", 4), names["heads"][1]: ("heads", 3),
        names["mlp"][0]: ("neurons", 12), names["mlp"][1]: ("neurons", 10),
    }


def test_pruned_vit_equals_masked_vit_and_is_smaller():
    model = make_vit(TINY, seed=2)
    groups, _ = dependency_groups(model, model.input_shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    kept = {"blocks.0.attn.heads": [1, 3], "blocks.1.attn.heads": [0], "blocks.0.fc1": [0, 5, 7],
            "blocks.1.fc1": list(range(0, 10, 2))}
    decision = PruningDecision(kept, widths, model.input_shape)
    pruned = apply_decision(model, decision, groups=groups)
    masked = mask_model(model, decision, groups=groups)
    x = torch.rand(7, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), masked(x), rtol=1e-5, atol=1e-5)
    assert check_vit(pruned).config.heads == (2, 1)
    assert pruned.config.mlp == (3, 5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_save_load_roundtrip_of_a_pruned_vit(tmp_path):
    model = make_vit(TINY, seed=3)
    groups, _ = dependency_groups(model, model.input_shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    pruned = apply_decision(model, PruningDecision({"blocks.1.attn.heads": [2], "blocks.0.fc1": [1, 2]}, widths,
                                                   model.input_shape), groups=groups)
    path = save_vit(pruned, tmp_path / "v.pt", {"note": "x"})
    loaded = load_vit(path)
    x = torch.rand(3, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), pruned(x))
    assert loaded.config.heads == (4, 1) and loaded.metadata == {"note": "x"}


def test_onnx_export_of_a_pruned_vit_matches_torch(tmp_path):
    import onnxruntime as ort  # a core dependency

    full = make_vit(TINY, seed=4)
    groups, _ = dependency_groups(full, full.input_shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    decision = PruningDecision({"blocks.0.attn.heads": [0, 2], "blocks.1.fc1": [3, 4]}, widths, full.input_shape)
    model = apply_decision(full, decision, groups=groups)
    path = export_vit_onnx(model, tmp_path / "v.onnx")
    x = np.random.default_rng(0).random((4, 1, 8, 8), dtype=np.float32)
    got = ort.InferenceSession(str(path)).run(None, {"images": x})[0]
    with torch.no_grad():
        want = model(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_unsupported_models_are_named():
    with pytest.raises(UnsupportedLayerError, match="Sequential"):
        check_vit(nn.Sequential(nn.Linear(4, 2)))
    model = make_vit(TINY)
    model.blocks[1].attn = nn.MultiheadAttention(16, 4, batch_first=True)
    with pytest.raises(UnsupportedLayerError, match=r"blocks\.1\.attn.*MultiheadAttention"):
        check_vit(model)


def test_files_and_shapes_are_checked(tmp_path):
    with pytest.raises(DataNotFoundError):
        load_vit(tmp_path / "missing.pt")
    other = tmp_path / "other.pt"
    torch.save({"format": "something else"}, other)
    with pytest.raises(FileFormatError, match="something else.*vit-train"):  # a file, not a layer
        load_vit(other)
    with pytest.raises(ShapeMismatchError, match=r"\(1, 8, 8\).*\(1, 28, 28\)"):
        check_inputs(make_vit(TINY), np.zeros((2, 1, 28, 28), dtype=np.float32))
