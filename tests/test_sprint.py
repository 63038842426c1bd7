"""SPRINT on the small LM: outcome table and its cache, contrastive selector, majority vote, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from optprune.errors import FileFormatError, InvalidParameterError, NotFittedError, ShapeMismatchError
from optprune.lm import VOCAB, ArithTask, LMConfig, TinyLM, fit_lm, save_lm
from optprune.lm import _sprint as sp

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task() -> ArithTask:
    return ArithTask(seed=0, n_val=4, n_test=30)


@pytest.fixture(scope="module")
def model(task: ArithTask) -> TinyLM:
    torch.manual_seed(0)
    m = TinyLM(LMConfig(vocab_size=len(VOCAB), d_model=32, n_layers=2, n_heads=2, head_dim=8, d_ff=48))
    fit_lm(m, task, 3)
    return m.eval()


def test_outcome_table_and_resumable_cache(model: TinyLM, task: ArithTask, tmp_path, monkeypatch) -> None:
    problems = task.problems("test", 6)
    cache = tmp_path / "c.npz"
    table = sp.collect_head_outcomes(model, problems, n_samples=1, cache=cache, progress=False)
    assert table.shape == (6, 1 + 4) and np.isfinite(table).all()
    assert set(np.unique(table)) <= {0.0, 0.5, 1.0}
    monkeypatch.setattr(sp, "_answers", lambda *a, **k: pytest.fail("a cached column was recomputed"))
    np.testing.assert_array_equal(sp.collect_head_outcomes(model, problems, 1, cache=cache, progress=False), table)
    with pytest.raises(FileFormatError, match="other questions"):
        sp.collect_head_outcomes(model, task.problems("test", 5), 1, cache=cache, progress=False)


def test_selector_learns_which_head_helps_which_question() -> None:
    rng = np.random.default_rng(0)
    n, d = 120, 8
    cluster = rng.integers(0, 3, size=n)
    centres = rng.normal(size=(3, d)) * 3
    feats = torch.tensor(centres[cluster] + rng.normal(size=(n, d)) * 0.3, dtype=torch.float32)
    outcomes = np.zeros((n, 1 + 4))
    outcomes[np.arange(n), 1 + cluster] = 1.0  # head `cluster` helps, the others do nothing
    outcomes[cluster == 2, 0] = 1.0  # for cluster 2, pruning nothing does as well as its head ...
    outcomes[cluster == 2, 3] = 0.0  # ... which now hurts: "prune nothing" is the only best candidate
    sel = sp.HeadSelector(d, [2, 2], dim=8, tau=0.1).fit(feats, outcomes, epochs=200)
    assert sel.history_[-1] < sel.history_[0]
    expected = np.where(cluster == 2, 0, 1 + cluster)
    assert (sel(feats).argmax(1).numpy() == expected).mean() == 1.0


def test_selector_for_another_model_is_refused(model: TinyLM, tmp_path) -> None:
    sel = sp.HeadSelector(32, [4, 4])
    with pytest.raises(ShapeMismatchError, match=r"heads per layer \[4, 4\]"):
        sel.check_model(model)
    with pytest.raises(ShapeMismatchError):
        sp.best_of_n(model, [], 2, "sprint", sel)
    back = sp.load_selector(sel.save(tmp_path / "s.pt", (1, 2)))
    assert back.heads == [4, 4] and back.best_fixed_head_ == (1, 2)
    (tmp_path / "x.pt").write_text("no")
    with pytest.raises(FileFormatError):
        sp.load_selector(tmp_path / "x.pt")


def test_majority_vote_and_head_choice(model: TinyLM, task: ArithTask, monkeypatch) -> None:
    problems = task.problems("test", 2)
    seen: list = []

    def fake(m, probs, head, temperature, seed):
        seen.append(head)
        # head (0, 1) answers right, every other configuration wrong
        return [p.answer if head == (0, 1) else "7" for p in probs]

    monkeypatch.setattr(sp, "_answers", fake)
    assert sp.best_of_n(model, problems, 3, "best_fixed_head", fixed_head=(0, 1)).tolist() == [True, True]
    assert seen == [(0, 1)]
    assert sp.best_of_n(model, problems, 3, "best_of_n").tolist() == [False, False]
    sel = sp.HeadSelector(32, [2, 2])
    with torch.no_grad():  # make (0, 1) (candidate 2) the top candidate for every question
        sel.head_emb.zero_()
        sel.head_emb[2] = 1.0
        sel.proj.weight.zero_()
        sel.proj.bias.fill_(1.0)
    # sample 0 and 2 use head (0, 1), sample 1 the second-ranked: a 2-1 vote for the right answer
    assert sp.best_of_n(model, problems, 3, "sprint", sel, top_k=2).tolist() == [True, True]


def test_bad_input(model: TinyLM, task: ArithTask) -> None:
    with pytest.raises(InvalidParameterError, match="n must be an integer >= 1"):
        sp.best_of_n(model, task.problems("test", 2), 0)
    with pytest.raises(InvalidParameterError, match="mode must be one of"):
        sp.best_of_n(model, task.problems("test", 2), 2, "oracle")
    with pytest.raises(NotFittedError):
        sp.best_of_n(model, task.problems("test", 2), 2, "sprint")
    with pytest.raises(NotFittedError):
        sp.Sprint().score(model, task.problems("test", 2), 2)
    with pytest.raises(InvalidParameterError, match="n_train"):
        sp.Sprint(n_train=0).fit(model, task)


def test_sprint_fit_and_score_end_to_end(model: TinyLM, task: ArithTask) -> None:
    est = sp.Sprint(n_train=8, n_samples=0, epochs=5).fit(model, task)
    assert est.outcomes_.shape == (8, 5) and est.best_fixed_head_ in sp.head_list(model)
    acc = est.score(model, task.problems("test", 4), n=2)
    assert set(acc) == set(sp.SELECTION_MODES) and all(0.0 <= v <= 1.0 for v in acc.values())


def test_cli_errors(model: TinyLM, tmp_path, capsys) -> None:
    from optprune.cli._app import main

    lm = save_lm(model, tmp_path / "lm.pt")
    sel = sp.HeadSelector(32, [4, 4]).save(tmp_path / "sel.pt")
    for args, needle in ((["--n", "0"], "--n"), (["--data", "gsm8k"], "unknown dataset"),
                         (["--split", "medium"], "--split"), ([], "heads per layer")):
        with pytest.raises(SystemExit) as exc:
            main(["sprint", "eval", str(lm), "--selector", str(sel), *args, "--json"])
        assert exc.value.code == 2
        assert needle in json.loads(capsys.readouterr().out)["error"]
