"""Every benchmark summary states its command, code, date, wall time, machine and library versions.

Issue 10: figures anyone can re-make; issue 22: the commit, a clean tree (a dirty one is refused under results/
without --allow-dirty), the wall time and gurobipy's version.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
from pathlib import Path

import pytest

from optprune.bench import _provenance, run_bench
from optprune.bench._provenance import PACKAGES, ROOT, _git_state, provenance, provenance_header, start_run
from optprune.bench._summary import write_surrogate, write_tables
from optprune.errors import InvalidParameterError

CONFIG = """
[bench]
name = "prov"
time_limit = 5

[[networks]]
name = "digits-6"
dataset = "digits"
hidden = [6]
epochs = 2

[[queries]]
name = "adv"
images = 1
eps = [0.02]
"""


def test_provenance_names_the_command_machine_and_versions():
    info = provenance(["python", "benchmarks/x.py", "--images", "3"])
    assert info["command"] == "python benchmarks/x.py --images 3"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["date_utc"])
    assert info["logical_cores"] == os.cpu_count()
    assert info["cpu"] and info["hostname"]
    assert set(info["packages"]) == set(PACKAGES)
    assert info["packages"]["numpy"] == importlib.metadata.version("numpy")
    assert info["packages"]["highspy"] == importlib.metadata.version("highspy")


def test_header_quotes_arguments_and_lists_missing_packages():
    info = provenance(["python", "bench.py", "--out", "a dir/x"])
    info["packages"] = {"numpy": "9.9", "nosuchsolver": None}
    head = provenance_header(info=info)
    assert "`python bench.py --out 'a dir/x'`" in head  # shell-quoted: it can be pasted back
    assert "numpy 9.9" in head
    assert "not installed: nosuchsolver" in head
    assert f"{os.cpu_count()} logical cores" in head
    info["git"] = {"commit": "abc123", "dirty": True, "changes": [" M optprune/x.py"]}
    head = provenance_header(info=info)
    assert "- optprune commit: abc123" in head
    assert "- working tree: dirty (1 changes outside results/: M optprune/x.py)" in head
    info["git"] = None  # not a git checkout: said so, no error
    assert "- optprune commit: unknown (not a git checkout)" in provenance_header(info=info)


def test_summary_writers_put_the_header_first(tmp_path):
    head = provenance_header(["optprune", "bench", "c.toml"])
    files = write_tables([], tmp_path, header=head)
    assert Path(files["markdown"]).read_text().startswith("- command: `optprune bench c.toml`")
    files = write_surrogate([], [], {}, tmp_path, plots=False, header=head)
    assert Path(files["markdown"]).read_text().startswith("- command: `optprune bench c.toml`")


def test_run_bench_summary_starts_with_provenance(tmp_path):
    config = tmp_path / "prov.toml"
    config.write_text(CONFIG)
    result = run_bench(config, tmp_path / "out", workers=1, progress=False, plots=False,
                       command=["optprune", "bench", "prov.toml", "--out", "out"], log=lambda s: None)
    text = (tmp_path / "out" / "summary.md").read_text()
    assert text.startswith("- command: `optprune bench prov.toml --out out`")
    assert "logical cores" in text and f"numpy {importlib.metadata.version('numpy')}" in text
    assert "| digits-6 |" in text  # the table follows the header
    assert result.markdown == text


def _fake_git(monkeypatch, dirty: bool) -> None:
    state = {"commit": "f" * 40, "dirty": dirty, "changes": [" M optprune/verify.py"] if dirty else []}
    monkeypatch.setattr(_provenance, "_git_state", lambda root=ROOT: state)


def test_header_has_commit_clean_wall_time_and_gurobipy_lines(monkeypatch):
    _fake_git(monkeypatch, dirty=False)
    run = start_run(ROOT / "results" / "x", ["python", "benchmarks/x.py"])
    head = run.header()
    lines = head.splitlines()
    assert lines[0] == "- command: `python benchmarks/x.py`"
    assert f"- optprune commit: {'f' * 40}" in lines
    assert "- working tree: clean" in lines
    assert any(re.fullmatch(r"- date \(UTC, start of the measurement\): \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line)
               for line in lines)
    assert any(re.fullmatch(r"- wall time: \d+ s( \(\d+\.\d min\))?", line) for line in lines)
    versions = lines[-1]
    try:
        assert f"gurobipy {importlib.metadata.version('gurobipy')}" in versions
    except importlib.metadata.PackageNotFoundError:
        assert re.search(r"not installed: .*gurobipy", versions)


def test_wall_time_is_measured_from_the_start(monkeypatch):
    _fake_git(monkeypatch, dirty=False)
    run = start_run("/tmp/not-results", ["python", "b.py"])
    run._started -= 125.0  # as if the run had taken just over two minutes
    assert "- wall time: 125 s (2.1 min)" in run.header()
    run.resumed(3, 10)
    assert "- resumed: 3 of 10 records were measured by an earlier invocation" in run.header()


def test_dirty_tree_is_refused_under_results_without_allow_dirty(monkeypatch):
    _fake_git(monkeypatch, dirty=True)
    with pytest.raises(InvalidParameterError, match="--allow-dirty"):
        start_run(ROOT / "results" / "x", ["python", "benchmarks/x.py"])
    run = start_run(ROOT / "results" / "x", ["python", "benchmarks/x.py", "--allow-dirty"], allow_dirty=True)
    assert "- working tree: dirty (1 changes outside results/: M optprune/verify.py), written with --allow-dirty" \
        in run.header()
    start_run("/tmp/elsewhere", ["python", "b.py"])  # outside results/: written, and the header says dirty


def test_git_state_sees_tracked_and_untracked_changes_but_not_results(tmp_path):
    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "init")
    assert _git_state(tmp_path)["dirty"] is False
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "summary.md").write_text("x")
    assert _git_state(tmp_path)["dirty"] is False  # what benchmarks write does not make the tree dirty
    (tmp_path / "new.py").write_text("x = 1\n")
    state = _git_state(tmp_path)
    assert state["dirty"] is True and any("new.py" in c for c in state["changes"])
