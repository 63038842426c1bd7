"""LM method ``reconstruct``: budget, the cut model equals the masked and re-fitted one, the re-fit beats masking."""

from __future__ import annotations

import copy

import pytest
import torch

from optprune.errors import InvalidParameterError
from optprune.lm import LM_METHODS, VOCAB, ArithTask, LMConfig, TinyLM, fit_lm, lm_groups, unit_masks
from optprune.lm._prune import _calibration, lm_parameters
from optprune.lm._reconstruct import Reconstruct
from optprune.pruning import count_parameters

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task() -> ArithTask:
    return ArithTask(seed=0, n_val=10, n_test=24)


@pytest.fixture(scope="module")
def model(task: ArithTask) -> TinyLM:
    torch.manual_seed(0)
    m = TinyLM(LMConfig(vocab_size=len(VOCAB), d_model=32, n_layers=2, n_heads=4, head_dim=8, d_ff=48))
    fit_lm(m, task, 3)
    with torch.no_grad():  # non-trivial weights and biases
        for p in m.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return m.eval()


@pytest.fixture(scope="module", params=["uniform", "search"])
def fitted(request, model: TinyLM, task: ArithTask) -> Reconstruct:
    return Reconstruct(ratio=0.3, allocation=request.param, n_calibration=32).fit(model, task)


def test_registered_and_keeps_the_parameter_budget(fitted: Reconstruct, model: TinyLM) -> None:
    assert {"reconstruct", "reconstruct-uniform"} <= set(LM_METHODS.names())
    target = 0.7 * count_parameters(model)
    assert fitted.target_params_ == int(target)
    assert fitted.params_after_ == count_parameters(fitted.model_) <= target
    w = fitted.widths_
    assert lm_parameters(model, w["heads"], w["neurons"]) == fitted.params_after_
    assert fitted.params_after_ > 0.6 * count_parameters(model)  # the budget is used, not undershot by far
    assert len(fitted.reports_) == 4 and all(r["objective"] >= 0 for r in fitted.reports_)


def _masked_and_refitted(model: TinyLM, fitted: Reconstruct) -> tuple[TinyLM, list, list]:
    """The dense model with the re-fitted out_proj/fc2 columns and biases of the pruned one written into the kept
    columns, and the 0/1 head and neuron masks of the kept units."""
    masked = copy.deepcopy(model)
    heads, neurons = [], []
    for i, (dense, cut) in enumerate(zip(masked.blocks, fitted.model_.blocks)):
        kh = fitted.kept_[f"blocks.{i}.attn.heads"]
        kn = fitted.kept_[f"blocks.{i}.mlp.fc1"]
        hd = dense.attn.head_dim
        cols = torch.tensor([h * hd + j for h in kh for j in range(hd)])
        with torch.no_grad():
            dense.attn.out_proj.weight[:, cols] = cut.attn.out_proj.weight
            dense.attn.out_proj.bias.copy_(cut.attn.out_proj.bias)
            dense.mlp.fc2.weight[:, torch.tensor(kn)] = cut.mlp.fc2.weight
            dense.mlp.fc2.bias.copy_(cut.mlp.fc2.bias)
        heads.append(torch.zeros(dense.attn.q_proj.out_features // hd).index_fill_(0, torch.tensor(kh), 1.0))
        neurons.append(torch.zeros(dense.mlp.fc1.out_features).index_fill_(0, torch.tensor(kn), 1.0))
    return masked, heads, neurons


def test_cut_model_computes_the_masked_and_refitted_model(fitted: Reconstruct, model: TinyLM,
                                                          task: ArithTask) -> None:
    ids, _ = _calibration(model, task, 16, 5)
    masked, heads, neurons = _masked_and_refitted(model, fitted)
    with torch.no_grad(), unit_masks(masked, heads=heads, neurons=neurons):
        expected = masked(ids)
    with torch.no_grad():
        got = fitted.model_(ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def _consumer_io(lm: TinyLM, ids: torch.Tensor, names: list[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Inputs and outputs of the named linear layers, rows = tokens, in float64."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    for n in names:
        def hook(mod, args, out, n=n):
            seen[n] = (args[0].reshape(-1, args[0].shape[-1]).double(), out.reshape(-1, out.shape[-1]).double())
        handles.append(lm.get_submodule(n).register_forward_hook(hook))
    try:
        with torch.no_grad():
            lm(ids)
    finally:
        for h in handles:
            h.remove()
    return seen


def test_refit_lowers_the_consumer_error_against_masking(fitted: Reconstruct, model: TinyLM,
                                                         task: ArithTask) -> None:
    """On the calibration problems, every consumer of the cut model, fed the cut model's inputs, reproduces the
    dense consumer's outputs better with its re-fitted columns and bias than with the dense ones (masking)."""
    ids, _ = _calibration(model, task, fitted.n_calibration, fitted.seed)
    names = [f"blocks.{i}.{c}" for i in range(2) for c in ("attn.out_proj", "mlp.fc2")]
    dense = _consumer_io(model, ids, names)
    cut = _consumer_io(fitted.model_, ids, names)
    for i, block in enumerate(model.blocks):
        hd = block.attn.head_dim
        kh = fitted.kept_[f"blocks.{i}.attn.heads"]
        for name, cols in ((f"blocks.{i}.attn.out_proj", [h * hd + j for h in kh for j in range(hd)]),
                           (f"blocks.{i}.mlp.fc2", fitted.kept_[f"blocks.{i}.mlp.fc1"])):
            X, Y_cut = cut[name]
            Y = dense[name][1]
            layer = model.get_submodule(name)
            Y_mask = X @ layer.weight.detach().double()[:, cols].T + layer.bias.detach().double()
            refit, masked = float(((Y - Y_cut) ** 2).sum()), float(((Y - Y_mask) ** 2).sum())
            assert refit < masked, name


def test_bad_allocation_is_refused(model: TinyLM, task: ArithTask) -> None:
    with pytest.raises(InvalidParameterError, match="allocation"):
        Reconstruct(ratio=0.3, allocation="greedy").fit(model, task)


def test_engine_groups_are_heads_and_neurons(model: TinyLM) -> None:
    kinds = sorted(g.kind for g in lm_groups(model) if g.prunable)
    assert kinds == ["heads", "heads", "neurons", "neurons"]


def test_cli_prunes_by_reconstruction_then_recovers(model: TinyLM, tmp_path, capsys) -> None:
    import json

    from optprune.cli._app import main
    from optprune.lm import save_lm

    path = save_lm(model, tmp_path / "tiny.pt")
    main(["lm", "prune", str(path), "--method", "reconstruct-uniform", "--ratio", "0.3", "--recovery", "lora",
          "--steps", "2", "--lora-rank", "2", "--json"])
    captured = capsys.readouterr()
    out = json.loads(captured.out)  # stdout is one JSON object: the per-group progress went to stderr
    assert out["method"] == "reconstruct-uniform"
    assert out["params_after"] <= 0.7 * out["params_before"]
    groups = [g.name for g in lm_groups(model) if g.prunable]
    err = " ".join(captured.err.split())
    for name in groups:  # one progress line per group: layer, budget, objective, gap, seconds
        assert f"group {name}: keep" in err, err
    assert err.count("gap ") >= len(groups) and err.count(" s") >= len(groups)
