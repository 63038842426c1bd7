"""Issue 22, bench: a folder belongs to one config (--force starts afresh); every method option is checked on load.

No network is trained here: ``prepare_variants`` is replaced by a function that raises, so reaching it means
the checks let the run through, and an error before it means no work was done.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import optprune.bench._runner as runner
from optprune.bench import load_config, parse_config, run_bench
from optprune.bench._store import atomic_file, atomic_write
from optprune.cli import main
from optprune.errors import InvalidParameterError

CONFIG = """
[bench]
name = "{name}"
time_limit = {time_limit}

[[networks]]
name = "digits-4"
dataset = "digits"
hidden = [4]

[[pruning]]
{pruning}

[[queries]]
images = 1
eps = [0.05]
"""

UNIFORM = 'scorer = "magnitude"\ndecision = "uniform"\nratios = [0.5]'


class _Worked(Exception):
    """Raised where the run would start training networks."""


@pytest.fixture(autouse=True)
def no_work(monkeypatch):
    def refuse(*args, **kwargs):
        raise _Worked

    monkeypatch.setattr(runner, "prepare_variants", refuse)


def _config(folder: Path, name: str = "a", time_limit: int = 10, pruning: str = UNIFORM) -> Path:
    path = folder / f"{name}-{time_limit}.toml"
    path.write_text(CONFIG.format(name=name, time_limit=time_limit, pruning=pruning))
    return path


def _start(cfg: Path, out: Path, **kwargs) -> None:
    with pytest.raises(_Worked):
        run_bench(cfg, out, workers=1, progress=False, plots=False, log=lambda s: None, **kwargs)


def _cli(capsys, *args: str) -> tuple[int, dict]:
    code = 0
    try:
        main([*args, "--json"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    return code, json.loads(lines[0])


# ----------------------------------------------------------------------------- one config per folder


def test_another_config_in_a_used_folder_is_refused_before_any_work(tmp_path, capsys) -> None:
    out = tmp_path / "out"
    first = _config(tmp_path)
    _start(first, out)
    (out / "records.jsonl").write_text('{"id": "kept"}\n')
    other = _config(tmp_path, time_limit=20)
    with pytest.raises(InvalidParameterError, match=r"another config.*time_limit.*--force"):
        run_bench(other, out, workers=1, progress=False, plots=False, log=lambda s: None)
    assert (out / "records.jsonl").read_text() == '{"id": "kept"}\n'
    assert (out / "config.toml").read_text() == first.read_text()  # not replaced
    code, payload = _cli(capsys, "bench", str(other), "--out", str(out), "--no-progress")
    assert code == 2 and payload["error_type"] == "InvalidParameterError" and "--force" in payload["error"]


def test_the_same_config_resumes(tmp_path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path)
    _start(cfg, out)
    (out / "records.jsonl").write_text('{"id": "kept"}\n')
    _start(cfg, out)  # the same config: on to the work
    copy = tmp_path / "moved" / "same.toml"  # the same config from another file
    copy.parent.mkdir()
    copy.write_text(cfg.read_text())
    _start(copy, out)
    _start(out / "config.toml", out)  # resuming from the folder's own copy
    assert (out / "records.jsonl").read_text() == '{"id": "kept"}\n'


def test_force_starts_the_folder_afresh(tmp_path) -> None:
    out = tmp_path / "out"
    _start(_config(tmp_path), out)
    for name in ("records.jsonl", "summary.md", "cactus.png"):
        (out / name).write_text("old")
    (out / "networks").mkdir()
    (out / "networks" / "x.onnx").write_text("old")
    (out / "notes.txt").write_text("the user's own file")
    other = _config(tmp_path, name="b")
    logs: list[str] = []
    with pytest.raises(_Worked):
        run_bench(other, out, workers=1, progress=False, plots=False, log=logs.append, force=True)
    assert not (out / "records.jsonl").exists() and not (out / "summary.md").exists()
    assert not (out / "cactus.png").exists() and not (out / "networks").exists()
    assert (out / "notes.txt").read_text() == "the user's own file"
    assert (out / "config.toml").read_text() == other.read_text()
    assert json.loads((out / "config.json").read_text())["name"] == "b"
    assert any("--force" in line and "records.jsonl" in line for line in logs)


def test_records_without_a_config_record_are_refused(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "records.jsonl").write_text('{"id": "x"}\n')
    with pytest.raises(InvalidParameterError, match="without the config.json"):
        run_bench(_config(tmp_path), out, workers=1, progress=False, plots=False, log=lambda s: None)


def test_a_different_method_override_is_a_different_config(tmp_path) -> None:
    out = tmp_path / "out"
    cfg = _config(tmp_path)
    _start(cfg, out)
    text = cfg.read_text().replace("[[queries]]\nimages = 1\neps = [0.05]",
                                   '[[queries]]\nimages = 1\neps = [0.05]\n\n[[queries]]\nname = "v"\n'
                                   'kind = "vnnlib"\npaths = ["p.vnnlib"]')
    cfg.write_text(text)
    out2 = tmp_path / "out2"
    _start(cfg, out2)
    with pytest.raises(InvalidParameterError, match="queries"):
        run_bench(cfg, out2, workers=1, progress=False, plots=False, log=lambda s: None, method="bab")


# ----------------------------------------------------------------------------- method options on load


@pytest.mark.parametrize(
    ("pruning", "says"),
    [
        ('decision = "bmrs-n"\nratios = [0.5]\nscorer_options = { epochs = "abc" }', ("epochs", "'abc'", "BMRS")),
        ('decision = "bmrs-n"\nratios = [0.5]\nscorer_options = { epochs = nan }', ("epochs", "nan")),
        ('decision = "reconvene"\nratios = [0.5]\nscorer_options = { epochs = 1.9 }', ("epochs", "1.9", "Reconvene")),
        ('decision = "reconvene"\nratios = [0.5]\nscorer_options = { epoch = 3 }', ("'epoch'", "allowed keys: epochs")),
        ('decision = "bmrs-u"\nratios = [0.5]\nscorer = "nonsense"', ("scorer", "'nonsense'")),
        ('decision = "bmrs-u"\nratios = [0.5]\nscorer_options = { epochs = 0 }', ("epochs", "at least 1", "got 0")),
        ('decision = "bmrs-u"\nratios = [0.5]\nscorer_options = { epochs = -3 }', ("epochs", "got -3")),
        ('scorer = "magnitude"\ndecision = "uniform"\nratios = [0.5]\nscorer_options = { q = 2 }',
         ("'q'", "allowed keys: bias, members, p")),
        ('scorer = "mip"\ndecision = "global"\nratios = [0.5]\nscorer_options = { eps = -1.0 }',
         ("MIPAwareScorer", "'eps'", "-1.0")),
        ('scorer = "magnitude"\ndecision = "uniform"\nratios = [0.5]\nsearch_options = { solver = "highs" }',
         ("search_options", "only decision 'search'")),
        ('scorer = "magnitude"\ndecision = "search"\nratios = [0.5]\nsearch_options = { solvr = "highs" }',
         ("'solvr'", "allowed keys", "solver")),
        ('scorer = "magnitude"\ndecision = "unstructured"\nratios = [0.5]\nscorer_options = { p = 1 }',
         ("scorer_options", "'unstructured'")),
    ],
)
def test_bad_method_options_are_refused_when_the_config_is_loaded(tmp_path, capsys, pruning, says) -> None:
    cfg = _config(tmp_path, pruning=pruning)
    with pytest.raises(InvalidParameterError) as exc:
        load_config(cfg)
    for text in ("pruning[0]", *says):
        assert text in str(exc.value), (text, str(exc.value))
    out = tmp_path / "out"
    code, payload = _cli(capsys, "bench", str(cfg), "--out", str(out), "--no-progress")
    assert code == 2 and payload["error_type"] == "InvalidParameterError"  # not _Worked: nothing was trained
    assert not (out / "networks").exists() and not (out / "config.json").exists()


@pytest.mark.parametrize(
    "pruning",
    [
        'decision = "bmrs-n"\nratios = [0.5]\nscorer_options = { epochs = 2 }',
        'decision = "reconvene"\nratios = [0.5]',
        'scorer = "mip"\ndecision = "global"\nratios = [0.5]\nscorer_options = { eps = 0.02 }',
        'scorer = "l1"\ndecision = "uniform"\nratios = [0.5]\nscorer_options = { bias = true }',
        'scorer = "magnitude"\ndecision = "search"\nratios = [0.5]\n'
        'search_options = { solver = "highs", time_limit = 5 }',
    ],
)
def test_good_method_options_load(tmp_path, pruning) -> None:
    config = load_config(_config(tmp_path, pruning=pruning))
    assert len(config.pruning) == 1


def test_method_option_checks_reuse_the_estimators_constraints(monkeypatch) -> None:
    from optprune._validation import Interval
    from optprune.bayes import BMRS

    data = {"networks": [{"name": "n", "dataset": "digits", "hidden": [4]}], "queries": [{"eps": [0.1]}],
            "pruning": [{"decision": "bmrs-n", "ratios": [0.5], "scorer_options": {"epochs": 50}}]}
    assert parse_config(data).pruning[0].scorer_options == {"epochs": 50}
    monkeypatch.setitem(BMRS._parameter_constraints, "epochs", [Interval(int, 0, 10)])
    with pytest.raises(InvalidParameterError, match=r"\[0, 10\]"):
        parse_config(data)


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path) -> None:
    path = tmp_path / "summary.md"
    atomic_write(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["summary.md"]
    atomic_write(path, b"new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["summary.md"]


def test_summaries_are_written_atomically(tmp_path, monkeypatch) -> None:
    from optprune.bench import _summary

    replaced: list[str] = []
    real = _summary.atomic_file

    def spy(path):
        replaced.append(Path(path).name)
        return real(path)

    monkeypatch.setattr(_summary, "atomic_file", spy)
    monkeypatch.setattr(_summary, "atomic_write", lambda path, data: (replaced.append(Path(path).name),
                                                                       atomic_write(path, data)))
    _summary.write_tables([], tmp_path, header="# run")
    assert set(replaced) == {"summary.md", "summary.csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.csv", "summary.md"]
