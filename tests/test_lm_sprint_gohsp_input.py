"""Bad input on ``lm``, ``sprint``, ``gohsp`` (issue 22): a named error (exit 2, one JSON object) or the right answer.

Every model file goes through one validation path (:mod:`optprune._checkpoint`):
format tag, config keys and values, state-dict shapes, finite weights; outputs
and the SPRINT outcome cache are written atomically at exactly the given path.
Tiny models, seconds each.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from optprune.cli import main
from optprune.errors import FileFormatError, InvalidParameterError
from optprune.lm import VOCAB, ArithTask, LMConfig, TinyLM, load_lm, save_lm
from optprune.lm import _sprint as sp
from optprune.vit import ViTConfig, make_vit, save_vit

torch.set_num_threads(1)

TINY_VIT = ViTConfig(8, 2, 1, 16, 4, (2, 2), (8, 8))


def tiny_lm(seed: int = 0) -> TinyLM:
    torch.manual_seed(seed)
    return TinyLM(LMConfig(vocab_size=len(VOCAB), d_model=16, n_layers=2, n_heads=2, head_dim=4,
                           d_ff=16)).eval()


def cli(capsys, *args: str) -> tuple[int, dict]:
    """Run ``optprune ARGS --json``: the exit code and the one JSON object on stdout."""
    code = 0
    try:
        main([*args, "--json"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines  # exactly one JSON object, no traceback
    return code, json.loads(lines[0])


def fails(capsys, error_type: str, *args: str) -> str:
    code, payload = cli(capsys, *args)
    assert code == 2 and payload["error_type"] == error_type, payload
    assert set(payload) == {"error", "error_type"}
    return payload["error"]


@pytest.fixture(scope="module")
def task() -> ArithTask:
    return ArithTask(seed=0, n_val=4, n_test=12)


@pytest.fixture()
def lm(tmp_path):
    return save_lm(tiny_lm(), tmp_path / "lm.pt")


@pytest.fixture()
def selector(tmp_path):
    return sp.HeadSelector(16, [2, 2], dim=4).save(tmp_path / "sel.pt", (1, 0))


def _rewrite(path, edit) -> None:
    data = torch.load(path, weights_only=True)
    edit(data)
    torch.save(data, path)


# ------------------------------------------------------------------ lost or mixed data
def test_sprint_train_refuses_one_path_given_twice(capsys, lm, tmp_path):
    same = tmp_path / "x.npz"
    says = fails(capsys, "InvalidParameterError", "sprint", "train", str(lm), "--out", str(same), "--cache", str(same))
    assert "--out" in says and "--cache" in says
    assert not same.exists()
    says = fails(capsys, "InvalidParameterError", "sprint", "train", str(lm), "--out", str(lm), "--force")
    assert "LM" in says
    assert load_lm(lm).config.d_model == 16  # the model was not overwritten by a selector


def test_cache_is_written_at_exactly_the_given_path_and_resumed(capsys, lm, tmp_path, monkeypatch):
    cache = tmp_path / "mycache.bin"
    code, payload = cli(capsys, "sprint", "train", str(lm), "--out", str(tmp_path / "s.pt"), "--cache", str(cache),
                        "--n-train", "3", "--samples", "0")
    assert code == 0, payload
    assert cache.is_file() and not (tmp_path / "mycache.bin.npz").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    monkeypatch.setattr(sp, "_answers", lambda *a, **k: pytest.fail("a cached column was recomputed"))
    code, payload = cli(capsys, "sprint", "train", str(lm), "--out", str(tmp_path / "s2.pt"), "--cache", str(cache),
                        "--n-train", "3", "--samples", "0")
    assert code == 0, payload


def test_a_write_killed_midway_leaves_the_previous_file(task, tmp_path, monkeypatch):
    from optprune._files import atomic_file

    model = tiny_lm()
    problems = task.problems("test", 2)
    cache = tmp_path / "c.npz"
    table = sp.collect_head_outcomes(model, problems, 0, cache=cache, progress=False)
    before = cache.read_bytes()

    def killed(file, **arrays):  # writes half an archive, then the process dies
        with open(file, "wb") if isinstance(file, (str, bytes)) or hasattr(file, "__fspath__") else file as fh:
            fh.write(before[: len(before) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(sp.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        sp.collect_head_outcomes(model, problems, 0, cache=cache, progress=False, overwrite_cache=True)
    assert cache.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    monkeypatch.undo()
    np.testing.assert_array_equal(sp.collect_head_outcomes(model, problems, 0, cache=cache, progress=False), table)

    out = save_lm(model, tmp_path / "m.pt")
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: open(f, "wb").write(b"PK\x03") and 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_lm(tiny_lm(1), out)
    monkeypatch.undo()
    assert load_lm(out).state_dict()["tok_emb.weight"].equal(model.state_dict()["tok_emb.weight"])
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "y.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert not (tmp_path / "y.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "m.pt"]


def test_truncated_cache_names_the_file_and_force_starts_afresh(capsys, lm, tmp_path):
    cache = tmp_path / "c.npz"
    args = ("sprint", "train", str(lm), "--cache", str(cache), "--n-train", "2", "--samples", "0")
    assert cli(capsys, *args, "--out", str(tmp_path / "a.pt"))[0] == 0
    cache.write_bytes(cache.read_bytes()[:100])  # what a kill mid-write used to leave
    says = fails(capsys, "FileFormatError", *args, "--out", str(tmp_path / "b.pt"))
    assert str(cache) in says and "delete it or pass --force" in says
    code, payload = cli(capsys, *args, "--out", str(tmp_path / "b.pt"), "--force")
    assert code == 0, payload
    assert zipfile.is_zipfile(cache)


def test_cache_is_keyed_on_the_model_and_the_samples(task, tmp_path):
    problems = task.problems("test", 2)
    cache = tmp_path / "c.npz"
    table = sp.collect_head_outcomes(tiny_lm(0), problems, 0, cache=cache, progress=False)
    with pytest.raises(FileFormatError, match="another model or other settings.*model"):
        sp.collect_head_outcomes(tiny_lm(1), problems, 0, cache=cache, progress=False)
    with pytest.raises(FileFormatError, match="n_samples"):
        sp.collect_head_outcomes(tiny_lm(0), problems, 1, cache=cache, progress=False)
    with pytest.raises(FileFormatError, match="other questions"):
        sp.collect_head_outcomes(tiny_lm(0), task.problems("test", 3)[1:], 0, cache=cache, progress=False)
    fresh = sp.collect_head_outcomes(tiny_lm(1), problems, 0, cache=cache, progress=False, overwrite_cache=True)
    assert fresh.shape == table.shape
    np.testing.assert_array_equal(sp.collect_head_outcomes(tiny_lm(1), problems, 0, cache=cache, progress=False),
                                  fresh)


# ------------------------------------------------------------------ tracebacks -> named errors
def _foreign(p):
    np.savez(p, weights=np.ones(3))


def _train_keys() -> np.ndarray:
    """The keys of the 2 questions ``sprint train --n-train 2 --seed 0`` draws (so only the table is wrong)."""
    from optprune.lm import get_task

    problems = get_task("arith").train_problems(2, np.random.default_rng([0, 23]))
    return np.array([[p.a, p.b, p.digits] for p in problems])


def _objects(p):
    np.savez(p, table=np.array([[{"a": 1}] * 5] * 2, dtype=object), keys=_train_keys(), settings=np.array("{}"))


def _text(p):
    p.write_text("question,answer\n1+1,2\n")


def _folder(p):
    p.mkdir()


def _strings(p):
    np.savez(p, table=np.array([["x"] * 5] * 2), keys=_train_keys(), settings=np.array("{}"))


def _single_array(p):
    with open(p, "wb") as fh:
        np.save(fh, np.ones(3))


@pytest.mark.parametrize("make", [_foreign, _objects, _text, _folder, _strings, _single_array])
def test_sprint_train_on_a_cache_that_is_not_one(capsys, lm, tmp_path, make):
    cache = tmp_path / "c.npz"
    make(cache)
    code, payload = cli(capsys, "sprint", "train", str(lm), "--out", str(tmp_path / "s.pt"), "--cache", str(cache),
                        "--n-train", "2", "--samples", "0")
    assert code == 2 and payload["error_type"] in ("FileFormatError", "InvalidParameterError"), payload
    assert str(cache) in payload["error"]


def test_cache_with_the_wrong_table_shape(task, tmp_path):
    model, problems = tiny_lm(), task.problems("test", 2)
    cache = tmp_path / "c.npz"
    sp.collect_head_outcomes(model, problems, 0, cache=cache, progress=False)
    with np.load(cache) as data:
        arrays = dict(data)
    arrays["table"] = arrays["table"][:, :3]
    with open(cache, "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(FileFormatError, match=r"table of float64 \(2, 3\); expected float \(2, 5\)"):
        sp.collect_head_outcomes(model, problems, 0, cache=cache, progress=False)


def _lm_unknown_key(d):
    d["config"]["n_experts"] = 4


def _lm_config_not_dict(d):
    d["config"] = [1, 2, 3]


def _lm_shapes(d):
    d["config"]["d_ff"] = 32
    d["config"]["ffs"] = [32, 32]


def _lm_bad_value(d):
    d["config"]["d_model"] = "big"


def _lm_missing_tensor(d):
    del d["state_dict"]["ln_f.bias"]


@pytest.mark.parametrize(("edit", "error_type", "says"), [
    (_lm_unknown_key, "FileFormatError", "n_experts"),
    (_lm_config_not_dict, "FileFormatError", "'config' must be a dict"),
    (_lm_shapes, "ShapeMismatchError", "blocks.0.mlp.fc1.weight"),
    (_lm_bad_value, "FileFormatError", "d_model"),
    (_lm_missing_tensor, "FileFormatError", "ln_f.bias"),
])
def test_lm_eval_on_a_broken_lm_file(capsys, lm, edit, error_type, says):
    _rewrite(lm, edit)
    assert says in fails(capsys, error_type, "lm", "eval", str(lm))


def _vit_unknown_key(d):
    d["config"]["dropout"] = 0.1


def _vit_config_not_dict(d):
    d["config"] = "tiny"


def _vit_shapes(d):
    d["config"]["mlp"] = [9, 9]


@pytest.mark.parametrize(("edit", "error_type", "says"), [
    (_vit_unknown_key, "FileFormatError", "dropout"),
    (_vit_config_not_dict, "FileFormatError", "'config' must be a dict"),
    (_vit_shapes, "ShapeMismatchError", "blocks.0.fc1.weight"),
])
def test_gohsp_on_a_broken_vit_file(capsys, tmp_path, edit, error_type, says):
    path = save_vit(make_vit(TINY_VIT), tmp_path / "vit.pt")
    _rewrite(path, edit)
    assert says in fails(capsys, error_type, "gohsp", str(path), "--data", "digits")


def _sel_no_d_model(d):
    del d["d_model"]


def _sel_empty_state(d):
    d["state_dict"] = {}


def _sel_far_head(d):
    d["best_fixed_head"] = [99, 99]


@pytest.mark.parametrize(("edit", "says"), [
    (_sel_no_d_model, "d_model"),
    (_sel_empty_state, "missing"),
    (_sel_far_head, "best_fixed_head [99, 99]"),
])
def test_sprint_eval_on_a_broken_selector(capsys, lm, selector, edit, says):
    _rewrite(selector, edit)
    assert says in fails(capsys, "FileFormatError", "sprint", "eval", str(lm), "--selector", str(selector))


def test_negative_seeds_are_refused(capsys, lm, selector):
    for args in (("sprint", "eval", str(lm), "--selector", str(selector), "--seed", "-1", "--n", "1"),
                 ("lm", "generate", str(lm), "--prompt", "1+2=", "--seed", "-1"),
                 ("lm", "prune", str(lm), "--seed", "-1"),
                 ("sprint", "train", str(lm), "--out", "never.pt", "--seed", "-1")):
        assert "--seed" in fails(capsys, "InvalidParameterError", *args)


def test_empty_prompt_is_refused(capsys, lm):
    assert "--prompt" in fails(capsys, "InvalidParameterError", "lm", "generate", str(lm), "--prompt", "")
    with pytest.raises(InvalidParameterError, match="prompt 1 is empty"):
        from optprune.lm import generate

        generate(load_lm(lm), ["1+1=", ""])


def test_non_finite_weights_are_refused_at_load(capsys, lm, tmp_path):
    _rewrite(lm, lambda d: d["state_dict"]["blocks.1.mlp.fc2.weight"].fill_(float("nan")))
    says = fails(capsys, "InvalidWeightsError", "lm", "eval", str(lm))
    assert "blocks.1.mlp.fc2.weight" in says
    vit = save_vit(make_vit(TINY_VIT), tmp_path / "vit.pt")
    _rewrite(vit, lambda d: d["state_dict"]["head.bias"].fill_(float("inf")))
    assert "head.bias" in fails(capsys, "InvalidWeightsError", "gohsp", str(vit), "--data", "digits")


def test_unreachable_prune_ratio_is_refused_naming_the_maximum(capsys, lm, task):
    from optprune.lm._prune import OneShot, max_ratio

    model = load_lm(lm)
    top = max_ratio(model)
    assert 0 < top < max_ratio(model, hidden=True) < 1
    says = fails(capsys, "InvalidParameterError", "lm", "prune", str(lm), "--method", "magnitude", "--ratio",
                 "0.999", "--steps", "1")
    assert f"{top:.4f}" in says and "0.999" in says
    with pytest.raises(InvalidParameterError, match="cannot be reached"):
        OneShot(ratio=top + 0.01, steps=0).fit(model, task)
    code, payload = cli(capsys, "lm", "prune", str(lm), "--method", "magnitude", "--ratio", str(round(top - 0.05, 3)),
                        "--steps", "1", "--lora-rank", "1")
    assert code == 0, payload
    assert payload["ratio_achieved"] == pytest.approx(1 - payload["params_after"] / payload["params_before"], abs=1e-4)
    assert "warning" not in payload


def test_a_ratio_the_training_falls_short_of_is_reported(capsys, lm):
    # reachable only by cutting the hidden width too, which two gate steps do not do: the JSON says so
    code, payload = cli(capsys, "lm", "prune", str(lm), "--method", "compresso", "--ratio", "0.95", "--steps", "2",
                        "--lora-rank", "1")
    assert code == 0, payload
    assert payload["ratio_achieved"] < 0.94 and "short of --ratio 0.95" in payload["warning"]


def test_n_train_is_bounded_by_what_the_data_provides(capsys, lm, task):
    says = fails(capsys, "InvalidParameterError", "sprint", "train", str(lm), "--out", "never.pt", "--n-train",
                 "100000000")
    assert "--n-train" in says and str(sp.MAX_TRAIN_QUESTIONS) in says
    small = ArithTask(seed=0, n_val=2, n_test=2, max_digits=1, digit_weights=(1.0,))
    assert small.n_train_available == 100 - 4 and sp.max_train_questions(small) == 96
    with pytest.raises(InvalidParameterError, match="n_train"):
        sp.Sprint(n_train=97).fit(tiny_lm(), small)


# ------------------------------------------------------------------ error types as the README's table gives them
def test_missing_files_are_data_not_found(capsys, tmp_path, lm):
    missing = str(tmp_path / "absent.pt")
    for args in (("lm", "eval", missing), ("sprint", "train", missing, "--out", str(tmp_path / "s.pt")),
                 ("sprint", "eval", str(lm), "--selector", missing), ("gohsp", missing, "--data", "digits")):
        assert "absent.pt" in fails(capsys, "DataNotFoundError", *args)


def test_a_file_for_another_command_is_named_for_what_it_is(capsys, tmp_path, lm, selector):
    says = fails(capsys, "FileFormatError", "gohsp", str(lm), "--data", "digits")
    assert "language model" in says and "ViT" in says and "layer" not in says
    vit = save_vit(make_vit(TINY_VIT), tmp_path / "vit.pt")
    says = fails(capsys, "FileFormatError", "lm", "eval", str(vit))
    assert "ViT" in says and "lm train" in says
    says = fails(capsys, "FileFormatError", "sprint", "eval", str(lm), "--selector", str(lm))
    assert "language model" in says and "sprint train" in says
    assert "folder" in fails(capsys, "FileFormatError", "lm", "eval", str(tmp_path))
