"""benchmarks/mip_focus.py: both settings run the MIP pipeline on a real instance, agree, and resume."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def mip_focus(benchmark_script):
    return benchmark_script("mip_focus")


def test_both_settings_prove_the_instance_by_mips_and_a_rerun_resumes(mip_focus, mnistfc, tmp_path, capsys):
    out = tmp_path / "focus"
    args = ["--instances", "256x2:prop_0_0.03", "--limit-s", "60", "--data-dir", str(mnistfc.parent),
            "--out", str(out), "--allow-dirty"]
    assert mip_focus.main(args) == 0
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["setting"] for r in records) == ["bound", "plain"]
    for r in records:  # the competition says unsat; the bounds alone do not decide it, so MIPs ran
        assert r["verdict"] == "unsat" and r["decided_by"] == "mip" and r["mips_solved"] >= 1 and r["mip_s"] > 0
    text = (out / "summary.md").read_text()
    assert "| plain | 1/1 | 0 |" in text and "| bound | 1/1 | 0 |" in text
    assert "geometric mean over the 1 instances both decide" in text
    assert mip_focus.main(args) == 0  # everything from the store: no new record
    assert len((out / "records.jsonl").read_text().splitlines()) == 2


def test_an_unknown_instance_is_refused_by_name(mip_focus, mnistfc, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        mip_focus.main(["--instances", "256x9:prop_0_0.03", "--data-dir", str(mnistfc.parent),
                        "--out", str(tmp_path / "x"), "--allow-dirty"])
    assert exc.value.code == 2
    assert "256x9:prop_0_0.03" in capsys.readouterr().err
