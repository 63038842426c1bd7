"""SPRINT on the small LM: outcome table and its cache, contrastive selector, majority vote, bad input."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from optprune.errors import FileFormatError, InvalidParameterError, NotFittedError, ShapeMismatchError
from optprune.lm import VOCAB, ArithTask, LMConfig, TinyLM, encode, fit_lm, load_lm, save_lm
from optprune.lm import _sprint as sp
from optprune.lm._data import EOS, decode

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


@pytest.fixture(scope="module")
def trained() -> TinyLM:
    """The reference model trained for 1,100 steps: right on some questions, wrong on others, head by head."""
    return load_lm(Path(__file__).resolve().parents[1] / "instances" / "lm" / "arith_tiny_1100.pt").eval()


def _without_head(model: TinyLM, head: tuple[int, int] | None) -> TinyLM:
    """A copy with head ``(layer, h)`` cut out of the weights: its columns of ``out_proj`` zeroed (no hooks)."""
    m = copy.deepcopy(model)
    if head is not None:
        attn = m.blocks[head[0]].attn
        with torch.no_grad():
            attn.out_proj.weight[:, head[1] * attn.head_dim : (head[1] + 1) * attn.head_dim] = 0.0
    return m


@torch.no_grad()
def _greedy_answer(model: TinyLM, prompt: str) -> str:
    """Greedy decoding by full recompute (no cache), then the text after the last '|' up to the end of line."""
    ids = encode(prompt)
    while len(ids) < model.config.block_size and len(ids) < len(prompt) + 64:
        ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        if ids[-1] == EOS:
            break
    text = decode(ids[len(prompt):])
    return text.rsplit("|", 1)[1].split("\n", 1)[0] if "|" in text else ""


def test_outcome_table_and_resumable_cache(trained: TinyLM, task: ArithTask, tmp_path, monkeypatch) -> None:
    problems = task.problems("test", 6)
    heads = sp.head_list(trained)
    cache = tmp_path / "c.npz"
    table = sp.collect_head_outcomes(trained, problems, n_samples=1, cache=cache, progress=False)
    assert table.shape == (6, 1 + 16) and set(np.unique(table)) <= {0.0, 0.5, 1.0}
    # independently: each head cut out of a copy's weights; greedy by full recompute, the sample (seed 1) on the copy
    for col in (0, 1, 5, 6, 11, 14):
        cut = _without_head(trained, None if col == 0 else heads[col - 1])
        greedy = np.array([_greedy_answer(cut, p.prompt) == p.answer for p in problems])
        outs = sp.generate(cut, [p.prompt for p in problems], temperature=0.7, seed=1)
        sampled = np.array([sp.answer_of(o) == p.answer for o, p in zip(outs, problems)])
        np.testing.assert_array_equal(table[:, col], (greedy.astype(float) + sampled) / 2, err_msg=f"column {col}")
    assert (table[:, 0] == 1).any() and (table == 0).any()  # right and wrong answers among the checked entries
    # a cache that is complete: read back, nothing recomputed
    monkeypatch.setattr(sp, "_answers", lambda *a, **k: pytest.fail("a cached column was recomputed"))
    np.testing.assert_array_equal(sp.collect_head_outcomes(trained, problems, 1, cache=cache, progress=False), table)
    monkeypatch.undo()
    with pytest.raises(FileFormatError, match="other questions"):
        sp.collect_head_outcomes(trained, task.problems("test", 5), 1, cache=cache, progress=False)
    # interrupted after 3 columns (2 generations each), then resumed: only the 14 missing columns are computed
    partial, answers, calls = tmp_path / "p.npz", sp._answers, []

    def interrupted(model, probs, head, temperature, seed):
        if len(calls) == 6:
            raise KeyboardInterrupt
        calls.append(head)
        return answers(model, probs, head, temperature, seed)

    monkeypatch.setattr(sp, "_answers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sp.collect_head_outcomes(trained, problems, 1, cache=partial, progress=False)
    assert calls == [None, None, heads[0], heads[0], heads[1], heads[1]]
    calls.clear()

    def counted(model, probs, head, temperature, seed):
        calls.append(head)
        return answers(model, probs, head, temperature, seed)

    monkeypatch.setattr(sp, "_answers", counted)
    np.testing.assert_array_equal(sp.collect_head_outcomes(trained, problems, 1, cache=partial, progress=False),
                                  table)
    assert calls == [h for h in heads[2:] for _ in range(2)]


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


def test_sprint_fit_and_score_end_to_end(trained: TinyLM, task: ArithTask) -> None:
    est = sp.Sprint(n_train=8, n_samples=0, epochs=5).fit(trained, task)
    heads = sp.head_list(trained)
    assert est.outcomes_.shape == (8, 17)
    # n_samples=0: the table is greedy correctness with each head cut out, recomputed here for every entry
    problems = task.train_problems(8, np.random.default_rng([0, 23]))
    expected = np.array([[_greedy_answer(_without_head(trained, h), p.prompt) == p.answer for h in [None, *heads]]
                         for p in problems], dtype=float)
    np.testing.assert_array_equal(est.outcomes_, expected)
    assert 0 < expected.sum() < expected.size
    assert est.best_fixed_head_ == heads[int(np.argmax(expected[:, 1:].mean(0)))]
    test = task.problems("test", 4)
    acc = est.score(trained, test, n=2)
    assert set(acc) == set(sp.SELECTION_MODES) and all(0.0 <= v <= 1.0 for v in acc.values())

    def vote_accuracy(model: TinyLM, seed: int) -> float:
        # two samples per question, generated together (question-major) at T = 0.7; the earliest non-empty
        # answer wins a 1-1 tie
        outs = sp.generate(model, [p.prompt for p in test for _ in range(2)], temperature=0.7, seed=seed)
        answers = [sp.answer_of(o) for o in outs]
        right = []
        for i, p in enumerate(test):
            a, b = answers[2 * i], answers[2 * i + 1]
            right.append((a or b) == p.answer)
        return float(np.mean(right))

    # plain best-of-N: no head masked (seed 0 * 1000 + 0); the best fixed head k: seed k + 1, cut out of the weights
    assert acc["best_of_n"] == vote_accuracy(trained, 0)
    k = heads.index(est.best_fixed_head_)
    assert acc["best_fixed_head"] == vote_accuracy(_without_head(trained, est.best_fixed_head_), k + 1)


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
