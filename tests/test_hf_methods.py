"""Every LM method on transformers causal LMs (issue 26): budgets, the Taylor score, peft LoRA, the CLI.

Tiny LLaMA/GPT-2 models from configs on the fly (no download, untrained: the checks are on structure,
budgets and exact identities, not on accuracy).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("peft")

from optprune.errors import InvalidParameterError
from optprune.hf import (
    CausalLMAdapter,
    HFOneShot,
    build_model,
    hf_groups,
    hf_method,
    load_hf,
    merge_peft,
    n_params,
    save_hf,
    unit_masks_hf,
    with_peft,
)
from optprune.lm import ArithTask, lm_batch, task_loss

SIZES = dict(d_model=16, n_layers=2, n_heads=4, block_size=60)


@pytest.fixture(scope="module")
def llama():
    return build_model("llama", seed=2, n_kv_heads=2, d_ff=24, **SIZES)


@pytest.fixture(scope="module")
def task():
    return ArithTask(seed=0, n_val=8, n_test=8)


@pytest.mark.parametrize("name", ["magnitude", "taylor", "wanda_sp", "flap", "bonsai", "reconstruct", "compresso"])
def test_every_method_meets_the_budget_and_reloads(llama, task, tmp_path, name):
    est = hf_method(name, 0.3, steps=5, lora_rank=2, recovery="none")
    if isinstance(est, HFOneShot):
        est.set_params(n_calibration=16, n_masks=20)
    est.fit(llama, task)
    assert est.params_after_ <= est.target_params_ < est.params_before_ == n_params(llama)
    assert all(h >= 2 for h in est.widths_["heads"])  # whole KV groups: 2 query heads each
    assert all(1 <= n <= 24 for n in est.widths_["neurons"])
    save_hf(est.model_, tmp_path / name)
    again = load_hf(tmp_path / name)
    ids = torch.randint(1, 44, (2, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (again(input_ids=ids).logits - est.model_(input_ids=ids).logits).abs().max() <= 1e-5


def test_taylor_score_is_the_mask_derivative(llama, task):
    est = HFOneShot("taylor", ratio=0.3, recovery="none", n_calibration=8).fit(llama, task)
    groups = hf_groups(llama)
    g = groups[1]  # layer 0 MLP
    ids, tgt = lm_batch(task.train_problems(8, np.random.default_rng([0, 11])), 60, "")
    model = llama.double()
    try:
        def loss(m: torch.Tensor) -> float:
            with torch.no_grad(), unit_masks_hf(model, [g], {g.name: m}):
                return float(task_loss(model(input_ids=ids).logits, tgt))

        eps = 1e-2  # central difference (error O(eps^2)); RMSNorm computes in float32, so no smaller step
        unit = 3
        up, down = torch.ones(g.width, dtype=torch.float64), torch.ones(g.width, dtype=torch.float64)
        up[unit] += eps
        down[unit] -= eps
        fd = abs(loss(up) - loss(down)) / (2 * eps)
    finally:
        llama.float()
    assert est.scores_[g.name][unit] == pytest.approx(fd, rel=1e-2)


def test_peft_lora_merges_into_the_same_function(llama):
    groups = hf_groups(llama)
    import copy

    peft_model = with_peft(copy.deepcopy(llama), groups, rank=2)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)  # a non-zero update
    ids = torch.randint(1, 44, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        adapted = peft_model(input_ids=ids).logits
        merged_model = merge_peft(peft_model)
        merged = merged_model(input_ids=ids).logits
        dense = llama(input_ids=ids).logits
    assert (adapted - dense).abs().max() > 1e-3
    assert (merged - adapted).abs().max() <= 1e-4
    assert type(merged_model).__name__ == "LlamaForCausalLM"


def test_gpt2_lorashear_with_conv1d_lora(task):  # LoRAShear on LLaMA runs in the benchmark
    gpt2 = build_model("gpt2", seed=0, d_ff=32, **SIZES)
    est = hf_method("lorashear", 0.3, steps=5, lora_rank=2).fit(gpt2, task)
    assert est.params_after_ <= est.target_params_
    assert type(est.model_).__name__ == "PrunedGPT2LMHeadModel"


def test_unknown_method_is_named():
    with pytest.raises(InvalidParameterError, match="sparsegpt"):
        hf_method("sparsegpt", 0.3)


def test_cli_lm_prune_eval_and_prune_dispatch(llama, tmp_path, capsys):
    from optprune.cli._app import main

    src = save_hf(llama, tmp_path / "dense")
    main(["lm", "prune", str(src), "--method", "flap", "--ratio", "0.3", "--steps", "1", "--recovery", "none",
          "--out", str(tmp_path / "pruned"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["architecture"] == "LlamaForCausalLM" and out["params_after"] < out["params_before"]
    main(["lm", "eval", str(tmp_path / "pruned"), "--split", "easy", "--json"])
    ev = json.loads(capsys.readouterr().out)
    assert ev["params"] == out["params_after"] and ev["kv_heads"] == out["kv_heads_kept"]
    with pytest.raises(SystemExit):  # optprune prune sees a language model: LM methods, not the MNIST scorers
        main(["prune", str(src), "--method", "sparsegpt", "--json"])
    assert "unknown LM method 'sparsegpt'" in json.loads(capsys.readouterr().out)["error"]
    with pytest.raises(SystemExit):
        main(["prune", str(src), "--method", "flap", "--data", "digits", "--json"])
    assert "--data for a language model" in json.loads(capsys.readouterr().out)["error"]


def test_adapter_generates_with_the_cache_like_without(llama):
    adapter = CausalLMAdapter(llama)
    ids = torch.randint(1, 44, (3, 5), generator=torch.Generator().manual_seed(2))
    caches: list[dict] = [{}]
    with torch.no_grad():
        first = adapter(ids[:, :4], caches)
        step = adapter(ids[:, 4:], caches)
        full = adapter(ids)
    assert (first - full[:, :4]).abs().max() <= 1e-5 and (step[:, 0] - full[:, 4]).abs().max() <= 1e-5
