"""SPRINT on a transformers LLaMA (optprune.hf.sprint): head masks, outcome table, phenomenon, sampling modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from optprune.errors import InvalidParameterError
from optprune.hf import build_model
from optprune.hf.sprint import (
    collect_head_outcomes_hf,
    head_list_hf,
    head_mask,
    phenomenon,
    question_features_hf,
    sample_answers_hf,
)
from optprune.lm import ArithTask
from optprune.lm._sprint import SELECTION_MODES, HeadSelector

SIZES = {"d_model": 16, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "d_ff": 16, "block_size": 16}


@pytest.fixture(scope="module")
def model():
    return build_model("llama", seed=0, **SIZES)


def test_head_mask_equals_zeroed_o_proj_columns(model):
    ids = torch.tensor([[3, 5, 7, 9, 11]])
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with head_mask(model, (1, 2)):
            masked = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
        w = model.model.layers[1].self_attn.o_proj.weight
        saved = w[:, 8:12].clone()
        w[:, 8:12] = 0.0
        zeroed = model(input_ids=ids).logits
        w[:, 8:12] = saved
    assert torch.allclose(masked, zeroed, atol=1e-6)
    assert not torch.allclose(masked, plain, atol=1e-6)
    assert torch.equal(after, plain)  # the hook is gone
    assert head_list_hf(model) == [(i, h) for i in range(2) for h in range(4)]
    with pytest.raises(InvalidParameterError, match="head must be one of"):
        with head_mask(model, (2, 0)):
            pass


def test_outcome_table_phenomenon_and_modes(model, tmp_path):
    task = ArithTask(seed=0)
    problems = task.train_problems(4, np.random.default_rng(0))
    cache = tmp_path / "outcomes.npz"
    table = collect_head_outcomes_hf(model, problems, n_samples=1, cache=cache)
    assert table.shape == (4, 9) and np.all((table >= 0) & (table <= 1))
    again = collect_head_outcomes_hf(model, problems, n_samples=1, cache=cache)  # read back, not recomputed
    assert np.array_equal(table, again)
    made = np.array([[0.5, 1.0, 0.0, 0.5], [0.0, 0.0, 0.5, 0.0]])
    ph = phenomenon(made)
    assert ph["help"] == pytest.approx(2 / 6) and ph["hurt"] == pytest.approx(1 / 6)
    assert ph["same"] == pytest.approx(3 / 6) and ph["mean_best_candidate"] == pytest.approx(0.75)
    feats = question_features_hf(model, problems)
    assert feats.shape == (4, 16)
    sel = HeadSelector(16, [4, 4], dim=4).fit(feats, table, epochs=5)
    for mode in SELECTION_MODES:
        ans = sample_answers_hf(model, problems[:3], 4, mode, sel, top_k=2, seed=0, fixed_head=(0, 1))
        assert ans.shape == (3, 4)
    with pytest.raises(InvalidParameterError, match="fixed_head"):
        sample_answers_hf(model, problems[:2], 2, "best_fixed_head", sel, fixed_head=(5, 0))
