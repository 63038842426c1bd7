"""transformers causal LMs: dependency groups from the module graph, cut, save/reload and ONNX (issue 26).

Tiny models are built from configs on the fly (nothing downloaded); every check compares the pruned model
with the dense model under 0/1 unit masks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from optprune.errors import InvalidParameterError
from optprune.hf import (
    UnsupportedArchitectureError,
    build_model,
    cut_model,
    export_onnx_hf,
    hf_groups,
    layer_widths_hf,
    load_hf,
    save_hf,
    unit_masks_hf,
)

SIZES = dict(d_model=32, n_layers=2, n_heads=4, block_size=24)
CASES = [("llama", dict(n_kv_heads=2, d_ff=48)), ("gpt2", dict(d_ff=64)), ("opt", dict(d_ff=64))]


def _model(arch: str, extra: dict):
    return build_model(arch, seed=1, **SIZES, **extra)


def test_llama_gqa_groups_tie_kv_head_with_its_query_heads_and_swiglu():
    groups = hf_groups(_model("llama", dict(n_kv_heads=2, d_ff=48)))
    heads = [g for g in groups if g.kind == "heads"]
    mlps = [g for g in groups if g.kind == "neurons"]
    assert len(heads) == len(mlps) == 2
    g = heads[0]
    assert g.width == 2 and g.query_heads_per_unit == 2 and g.head_dim == 8
    by = {m.module.rsplit(".", 1)[-1]: m for m in g.members}
    # KV head 1 owns query heads 2 and 3 (repeat_kv order), its k/v rows, and o_proj columns 16..31
    assert by["q_proj"].units[1] == list(range(16, 32))
    assert by["k_proj"].units[1] == by["v_proj"].units[1] == list(range(8, 16))
    assert by["o_proj"].role == "in" and by["o_proj"].units[1] == list(range(16, 32))
    m = mlps[0]
    assert sorted(x.module.rsplit(".", 1)[-1] for x in m.members) == ["down_proj", "gate_proj", "up_proj"]
    assert m.width == 48 and all(x.units[5] == [5] for x in m.members)
    assert g.unit_params == 16 * 32 + 8 * 32 * 2 + 16 * 32


def test_gpt2_fused_c_attn_slices_join_their_head():
    groups = hf_groups(_model("gpt2", dict(d_ff=64)))
    g = groups[0]
    c_attn = next(m for m in g.members if m.module.endswith("c_attn"))
    # head 1: q rows 8..15, k rows 32+8.., v rows 64+8.. of the fused (3 x 32)-wide output
    assert c_attn.units[1] == [*range(8, 16), *range(40, 48), *range(72, 80)]
    assert g.width == 4 and g.kind == "heads"


@pytest.mark.parametrize("arch,extra", CASES)
def test_cut_equals_masked_and_reloads(tmp_path, arch, extra):
    model = _model(arch, extra)
    groups = hf_groups(model)
    rng = np.random.default_rng(0)
    kept = {g.name: sorted(rng.choice(g.width, size=max(1, g.width // 2), replace=False).tolist()) for g in groups}
    masks = {g.name: torch.zeros(g.width).index_fill_(0, torch.tensor(kept[g.name]), 1.0) for g in groups}
    ids = torch.randint(0, 44, (3, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), unit_masks_hf(model, groups, masks):
        masked = model(input_ids=ids).logits
    with torch.no_grad():
        dense = model(input_ids=ids).logits
    assert (masked - dense).abs().max() > 1e-3  # the masks do something
    pruned = cut_model(model, groups, kept)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert (pruned(input_ids=ids).logits - masked).abs().max() <= 1e-5
    save_hf(pruned, tmp_path / "m")
    with pytest.raises(InvalidParameterError, match="exists"):
        save_hf(pruned, tmp_path / "m")
    again = load_hf(tmp_path / "m")
    assert type(again).__name__.startswith("Pruned")
    assert layer_widths_hf(again, groups) == layer_widths_hf(pruned, groups)
    with torch.no_grad():
        assert (again(input_ids=ids).logits - masked).abs().max() <= 1e-5
    onnxruntime = pytest.importorskip("onnxruntime")
    path = export_onnx_hf(again, tmp_path / "m.onnx")
    out = onnxruntime.InferenceSession(str(path)).run(None, {"ids": ids.numpy()})[0]
    assert np.abs(out - masked.numpy()).max() <= 1e-4


def test_flap_bias_compensation_lands_in_saved_model(tmp_path):
    model = _model("llama", dict(n_kv_heads=2, d_ff=48))
    groups = hf_groups(model)
    mlp = next(g for g in groups if g.kind == "neurons")
    bias = {mlp.consumer: torch.full((32,), 0.5)}
    pruned = cut_model(model, groups, {mlp.name: list(range(10))}, bias=bias)
    save_hf(pruned, tmp_path / "m")
    again = load_hf(tmp_path / "m")
    assert torch.equal(again.get_submodule(mlp.consumer).bias, torch.full((32,), 0.5))


def test_unsupported_model_is_named():
    from torch import nn

    with pytest.raises(UnsupportedArchitectureError.__mro__[1], match="Sequential"):
        hf_groups(nn.Sequential(nn.Linear(2, 2)))
