"""Every benchmark summary states its command, date, machine and library versions (issue 10: figures anyone can re-make)."""

from __future__ import annotations

import importlib.metadata
import os
import re
from pathlib import Path

from optprune.bench import run_bench
from optprune.bench._provenance import PACKAGES, provenance, provenance_header
from optprune.bench._summary import write_surrogate, write_tables

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
    info["git"] = {"commit": "abc123", "dirty": True}
    assert "- optprune commit: abc123 (with uncommitted changes)" in provenance_header(info=info)
    info["git"] = None  # not a git checkout: no commit line, no error
    assert "commit" not in provenance_header(info=info)


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
