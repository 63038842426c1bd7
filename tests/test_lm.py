"""The small language model: task, model, generation, LoRA, engine groups, pruners (tiny models, seconds)."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch

from optprune.errors import FileFormatError, InvalidParameterError, NotFittedError, UnsupportedLayerError
from optprune.lm import (
    VOCAB,
    ArithTask,
    LMConfig,
    Problem,
    TinyLM,
    answer_of,
    encode,
    exact_match,
    fit_lm,
    generate,
    get_task,
    layer_widths,
    lm_batch,
    lm_groups,
    load_lm,
    perplexity,
    prune_hidden,
    prune_lm,
    save_lm,
    unit_masks,
)
from optprune.lm._lora import LoRALinear, add_lora, lora_parameters, merge_lora, prune_lora
from optprune.lm._prune import Compresso, LoRAShear, OneShot, lm_parameters
from optprune.pruning import count_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task() -> ArithTask:
    return ArithTask(seed=0, n_val=10, n_test=24)


def tiny(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(LMConfig(vocab_size=len(VOCAB), d_model=32, n_layers=2, n_heads=2, head_dim=8, d_ff=48))


@pytest.fixture(scope="module")
def model(task: ArithTask) -> TinyLM:
    m = tiny()
    fit_lm(m, task, 3)
    with torch.no_grad():  # non-trivial biases so that masking vs cutting is a real check
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


# --------------------------------------------------------------------- task
def test_completion_writes_carry_steps_and_answer() -> None:
    p = Problem(47, 285, 3)
    assert p.prompt == "047+285="
    assert p.completion == "7+5+0=12,4+8+1=13,0+2+1=03|332\n"
    assert answer_of(p.completion) == "332"
    assert answer_of("7+5+0=12") == ""


def test_splits_are_seeded_and_disjoint(task: ArithTask) -> None:
    again = ArithTask(seed=0, n_val=10, n_test=24)
    assert [(p.a, p.b) for p in again.test] == [(p.a, p.b) for p in task.test]
    held = {(p.a, p.b, p.digits) for p in task.test + task.val}
    assert len(held) == 34
    train = task.train_problems(2000, np.random.default_rng(5))
    assert not held & {(p.a, p.b, p.digits) for p in train}
    assert all(p.digits == 4 for p in task.problems("hard"))
    assert all(p.digits <= 2 for p in task.problems("easy"))


def test_bad_dataset_split_and_character() -> None:
    with pytest.raises(InvalidParameterError, match="unknown dataset 'wiki'"):
        get_task("wiki")
    with pytest.raises(InvalidParameterError, match="split must be one of"):
        ArithTask(n_test=4, n_val=2).problems("medium")
    with pytest.raises(InvalidParameterError, match="not in the vocabulary"):
        encode("1*2")


def test_batch_targets_cover_only_the_completion() -> None:
    p = Problem(3, 4, 1)
    ids, tgt = lm_batch([p], 80, "now:")
    n_prompt = len("now:" + p.prompt)
    assert (tgt[0, : n_prompt - 1] == -100).all()
    assert tgt[0, n_prompt - 1 :].tolist() == encode(p.completion)


# --------------------------------------------------------------------- model and engine groups
def test_engine_groups_cover_heads_and_neurons_not_hidden(model: TinyLM) -> None:
    groups = lm_groups(model)
    prunable = {g.name: g for g in groups if g.prunable}
    assert sorted(prunable) == ["blocks.0.attn.heads", "blocks.0.mlp.fc1", "blocks.1.attn.heads", "blocks.1.mlp.fc1"]
    assert prunable["blocks.0.attn.heads"].width == 2 and prunable["blocks.0.mlp.fc1"].width == 48
    hidden = [g for g in groups if g.width == 32 and not g.prunable]
    assert hidden and all(g.reason for g in hidden)


def test_cut_model_equals_masked_model(model: TinyLM, task: ArithTask) -> None:
    kept = {"blocks.0.attn.heads": [1], "blocks.1.mlp.fc1": list(range(0, 48, 3))}
    small = prune_lm(model, kept)
    assert layer_widths(small) == {"heads": [1, 2], "neurons": [48, 16], "hidden": 32}
    ids, _ = lm_batch(task.test[:6], 80)
    mh = [torch.tensor([0.0, 1.0]), None]
    mn = [None, torch.zeros(48).index_fill_(0, torch.arange(0, 48, 3), 1.0)]
    with unit_masks(model, heads=mh, neurons=mn):
        ref = model(ids)
    torch.testing.assert_close(small(ids), ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model(ids), ref, atol=1e-4)  # the masks did change something


def test_parameter_formula_matches_cut_models(model: TinyLM) -> None:
    small = prune_hidden(prune_lm(model, {"blocks.0.attn.heads": [0], "blocks.0.mlp.fc1": [1, 5, 7]}), [0, 3, 4, 9])
    w = layer_widths(small)
    assert w == {"heads": [1, 2], "neurons": [3, 48], "hidden": 4}
    assert lm_parameters(model, w["heads"], w["neurons"], w["hidden"]) == count_parameters(small)
    assert lm_parameters(model, [2, 2], [48, 48]) == count_parameters(model)
    assert small(torch.tensor([encode("1+2=")])).shape == (1, 4, len(VOCAB))
    with pytest.raises(InvalidParameterError, match="non-empty subset of 0..31"):
        prune_hidden(model, [40])


def test_save_load_roundtrip_of_a_pruned_model(model: TinyLM, tmp_path) -> None:
    small = prune_lm(model, {"blocks.1.attn.heads": [0], "blocks.1.mlp.fc1": [2, 3]})
    path = save_lm(small, tmp_path / "m.pt", {"note": "x"})
    back = load_lm(path)
    ids = torch.tensor([encode("12+34=")])
    torch.testing.assert_close(back(ids), small(ids))
    assert back.metadata == {"note": "x"}
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(FileFormatError):
        load_lm(tmp_path / "bad.pt")


# --------------------------------------------------------------------- generation
def test_cached_generation_equals_full_recompute(model: TinyLM, task: ArithTask) -> None:
    prompts = [p.prompt for p in task.test[:5]]
    outs = generate(model, prompts, max_new_tokens=12)
    for prompt, out in zip(prompts, outs):
        ids = torch.tensor([encode(prompt)])
        text = ""
        for _ in range(len(out)):
            nxt = int(model(ids)[0, -1].argmax())
            text += VOCAB[nxt]
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
            if VOCAB[nxt] == "\n":
                break
        assert text == out


def test_sampling_top1_is_greedy_and_seeded(model: TinyLM, task: ArithTask) -> None:
    prompts = [p.prompt for p in task.test[:4]]
    greedy = generate(model, prompts, 10)
    assert generate(model, prompts, 10, temperature=1.0, top_k=1) == greedy
    a = generate(model, prompts, 10, temperature=2.0, seed=3)
    assert a == generate(model, prompts, 10, temperature=2.0, seed=3)
    # sampling is not greedy, and the seed matters
    sampled = {seed: generate(model, prompts, 10, temperature=2.0, top_k=2, seed=seed) for seed in range(4)}
    assert any(out != greedy for out in sampled.values())
    assert len({tuple(out) for out in sampled.values()}) > 1
    assert sampled[1] == generate(model, prompts, 10, temperature=2.0, top_k=2, seed=1)
    # every sampled token is one of the 2 most likely after its context (recomputed without the cache)
    with torch.no_grad():
        for outs in sampled.values():
            for prompt, out in zip(prompts, outs):
                ids = encode(prompt + out)
                logits = model(torch.tensor([ids[:-1]]))[0]
                for pos in range(len(prompt), len(ids)):
                    assert ids[pos] in torch.topk(logits[pos - 1], 2).indices.tolist(), (prompt, out, pos)
    with pytest.raises(InvalidParameterError, match="temperature"):
        generate(model, prompts, temperature=-1.0)


def test_exact_match_counts_correct_answers(monkeypatch, task: ArithTask, model: TinyLM) -> None:
    import optprune.lm._eval as ev

    problems = task.test[:4]
    fake = [problems[0].completion, "1+1+0=02|99\n", problems[2].completion, ""]
    monkeypatch.setattr(ev, "generate", lambda *a, **k: fake)
    acc, correct = ev.exact_match(model, problems, return_correct=True)
    assert acc == 0.5 and correct.tolist() == [True, False, True, False]


def test_perplexity_is_exp_of_completion_loss(model: TinyLM, task: ArithTask) -> None:
    problems = task.test[:8]
    for prefix in ("", "now:"):
        # by hand, one problem at a time (no padding): -log p of every completion token given all before it
        nll, count = 0.0, 0
        with torch.no_grad():
            for p in problems:
                head, tail = encode(prefix + p.prompt), encode(p.completion)
                ids = head + tail
                logp = torch.log_softmax(model(torch.tensor([ids[:-1]]))[0].double(), dim=-1)
                for pos in range(len(head), len(ids)):
                    nll -= float(logp[pos - 1, ids[pos]])
                    count += 1
        assert count == sum(len(p.completion) for p in problems)
        expected = math.exp(nll / count)
        assert 1.0 < expected < len(VOCAB)
        assert perplexity(model, problems, prefix) == pytest.approx(expected, rel=1e-5)
        # batches of unequal token counts: the mean is per token, not per batch
        assert perplexity(model, problems, prefix, batch_size=3) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------- LoRA
def test_lora_merge_is_exact_and_trains_only_adapters(model: TinyLM, task: ArithTask) -> None:
    m = copy.deepcopy(model)
    params = add_lora(m, rank=2)
    assert sum(isinstance(x, LoRALinear) for x in m.modules()) == 12
    assert {id(p) for p in m.parameters() if p.requires_grad} == {id(p) for p in params}
    before = {k: v.clone() for k, v in m.state_dict().items() if "lora" not in k}
    fit_lm(m, task, 2, lr=1e-2)
    after = m.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    ids, _ = lm_batch(task.test[:3], 80)
    merged = merge_lora(m)
    assert not any(isinstance(x, LoRALinear) for x in merged.modules())
    torch.testing.assert_close(merged(ids), m(ids), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(merged(ids), model(ids), atol=1e-4)


def test_lora_bad_inputs(model: TinyLM) -> None:
    with pytest.raises(InvalidParameterError, match="rank 40 is larger than layer"):
        add_lora(copy.deepcopy(model), rank=40)
    with pytest.raises(InvalidParameterError, match="targets"):
        add_lora(copy.deepcopy(model), targets=("lm_head",))
    with pytest.raises(UnsupportedLayerError):
        add_lora(torch.nn.Sequential(torch.nn.ReLU()), rank=1)


def test_lora_factors_are_cut_with_their_base_units(model: TinyLM, task: ArithTask) -> None:
    m = copy.deepcopy(model)
    add_lora(m, rank=2)
    for p in lora_parameters(m):
        torch.nn.init.normal_(p, std=0.2)
    groups = lm_groups(model)
    kept = {"blocks.0.attn.heads": [1], "blocks.0.mlp.fc1": list(range(20))}
    cut = prune_lm(m, kept, groups)
    prune_lora(cut, {"blocks.0.attn.heads": [0], "blocks.0.mlp.fc1": list(range(20, 48))}, groups)
    assert cut.blocks[0].attn.q_proj.lora_B.shape == (8, 2)
    assert cut.blocks[0].attn.out_proj.lora_A.shape == (2, 8)
    assert cut.blocks[0].mlp.fc2.lora_A.shape == (2, 20)
    ids, _ = lm_batch(task.test[:3], 80)
    torch.testing.assert_close(merge_lora(cut)(ids), prune_lm(merge_lora(m), kept, groups)(ids), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------- pruners
@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5, "half"])
def test_ratio_outside_open_interval_is_refused(model: TinyLM, task: ArithTask, ratio) -> None:
    for est in (Compresso(ratio=ratio, steps=2, recovery_steps=0), LoRAShear(ratio=ratio, steps=1),
                OneShot(ratio=ratio, steps=0)):
        with pytest.raises(InvalidParameterError, match=r"ratio must be a number in \(0, 1\)"):
            est.fit(model, task)


def test_model_without_supported_attention_is_refused(task: ArithTask) -> None:
    with pytest.raises(UnsupportedLayerError, match="TinyLM"):
        LoRAShear(ratio=0.3, steps=1).fit(torch.nn.Linear(3, 3), task)
    broken = tiny()
    broken.blocks[0].attn = torch.nn.Identity()
    with pytest.raises(UnsupportedLayerError, match="blocks.0.attn"):
        Compresso(ratio=0.3, steps=2, recovery_steps=0).fit(broken, task)


def test_not_fitted(model: TinyLM) -> None:
    with pytest.raises(NotFittedError):
        LoRAShear().transform()


def test_compresso_gates_follow_the_size_constraint(model: TinyLM, task: ArithTask) -> None:
    est = Compresso(ratio=0.4, steps=40, recovery_steps=2, lora_rank=2, gate_lr=0.2, lambda_lr=0.5).fit(model, task)
    first, last = est.history_[0], est.history_[-1]
    assert last["expected_fraction"] < first["expected_fraction"] - 0.05  # the gates close under the constraint
    assert last["lambda1"] != 0.0
    assert est.params_after_ <= est.target_params_ + 1
    assert est.params_after_ == count_parameters(est.model_)
    assert est.params_after_ < 0.62 * est.params_before_


def test_lorashear_progressive_stages_reach_the_budget(model: TinyLM, task: ArithTask) -> None:
    est = LoRAShear(ratio=0.35, steps=8, stages=3, lora_rank=2).fit(model, task)
    params = [h["params"] for h in est.history_]
    assert params == sorted(params, reverse=True) and params[0] < est.params_before_
    assert params[-1] <= est.target_params_
    assert est.params_after_ == params[-1] == count_parameters(est.model_)
    assert not any(isinstance(x, LoRALinear) for x in est.model_.modules())


def test_one_shot_magnitude_meets_budget_and_keeps_top_scores(model: TinyLM, task: ArithTask) -> None:
    est = OneShot("magnitude", ratio=0.3, steps=0).fit(model, task)
    assert est.params_after_ <= est.target_params_
    s = est.scores_["blocks.1.mlp.fc1"]
    kept = est.kept_["blocks.1.mlp.fc1"]
    dropped = sorted(set(range(48)) - set(kept))
    assert s[kept].min() >= s[dropped].max()
    assert exact_match(est.model_, task.test[:4]) == 0.0  # an untrained tiny model solves nothing


# --------------------------------------------------------------------- CLI
def test_cli_prune_and_errors(model: TinyLM, tmp_path, capsys) -> None:
    from optprune.cli._app import main

    path = save_lm(model, tmp_path / "tiny.pt")
    with pytest.raises(SystemExit) as exc:
        main(["lm", "prune", str(path), "--ratio", "1.2", "--json"])
    assert exc.value.code == 2
    assert "--ratio" in json.loads(capsys.readouterr().out)["error"]
    with pytest.raises(SystemExit) as exc:
        main(["lm", "prune", str(path), "--data", "wiki", "--json"])
    assert json.loads(capsys.readouterr().out)["error_type"] == "InvalidParameterError"
    with pytest.raises(SystemExit):
        main(["lm", "prune", str(path), "--method", "sparsegpt", "--json"])
    assert "--method" in json.loads(capsys.readouterr().out)["error"]
    main(["lm", "prune", str(path), "--method", "lorashear", "--ratio", "0.3", "--steps", "5", "--lora-rank", "2",
          "--out", str(tmp_path / "p.pt"), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert out["params_after"] < out["params_before"] and len(out["heads_kept"]) == 2
    assert load_lm(tmp_path / "p.pt").config.d_model == 32


def test_pruned_model_exports_to_onnx(model: TinyLM, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    from optprune.lm import export_onnx

    small = prune_hidden(prune_lm(model, {"blocks.0.attn.heads": [1], "blocks.1.mlp.fc1": [0, 4, 9]}), range(20))
    path = export_onnx(small, tmp_path / "s.onnx")
    ids = torch.tensor([encode("12+34=4+"), encode("99+01=9+")])
    got = ort.InferenceSession(str(path)).run(None, {"ids": ids.numpy()})[0]
    np.testing.assert_allclose(got, small(ids).detach().numpy(), atol=1e-4)


def test_hidden_cut_equals_hidden_mask_with_masked_layernorm(model: TinyLM, task: ArithTask) -> None:
    keep = [0, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31]
    small = prune_hidden(model, keep)
    ids, _ = lm_batch(task.test[:5], 80)
    z = torch.zeros(32).index_fill_(0, torch.tensor(keep), 1.0)
    with unit_masks(model, hidden=z):
        ref = model(ids)
    torch.testing.assert_close(small(ids), ref, atol=1e-5, rtol=1e-5)


def test_reference_training_is_reproducible_from_its_seed() -> None:
    from optprune.lm import train_reference

    cfg = LMConfig(vocab_size=len(VOCAB), d_model=16, n_layers=1, n_heads=2, head_dim=8, d_ff=16)
    a, la = train_reference(copy.deepcopy(cfg), steps=3, seed=1)
    b, lb = train_reference(copy.deepcopy(cfg), steps=3, seed=1)
    c, _ = train_reference(copy.deepcopy(cfg), steps=3, seed=2)
    assert la == lb
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.tok_emb.weight, c.tok_emb.weight)
