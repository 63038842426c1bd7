"""benchmarks/vnncomp_peers.py: its parsing, its verdict checks, its hard kill, and one real optprune run.

The peers themselves (NeuralSAT, Marabou) live in their own venvs outside the project and are not needed here: a
missing peer must give the install command, and optprune's own end-to-end run on one mnistfc instance (a sat whose
counterexample the harness re-checks in float64) needs only the shared data.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from optprune.data import data_dir


@pytest.fixture(scope="module")
def peers(benchmark_script):
    return benchmark_script("vnncomp_peers")


def test_counterexample_string_is_read_in_input_order(peers):
    text = "sat\n((X_1 0.25)\n (X_0 -1e-3)\n (X_2 1.0)\n (Y_0 3.5))"
    np.testing.assert_array_equal(peers.parse_assignment(text, 3), [-1e-3, 0.25, 1.0])
    assert peers.parse_assignment("unsat", 3) is None
    with pytest.raises(ValueError, match="3 inputs"):
        peers.parse_assignment("((X_0 1.0) (X_2 1.0))", 3)


def test_wrong_verdicts(peers):
    sat_ok = {"verdict": "sat", "cex_ok": True, "late": False}
    unsat = {"verdict": "unsat", "cex_ok": None, "late": False}
    assert peers.wrong_reason(unsat, "sat", []) == "competition: sat"
    assert peers.wrong_reason(unsat, "unsat", []) == ""
    assert "float64" in peers.wrong_reason({"verdict": "sat", "cex_ok": False, "late": False}, "sat", [])
    assert "float64" in peers.wrong_reason({"verdict": "sat", "cex_ok": None, "late": False}, "unknown", [])
    assert peers.wrong_reason(sat_ok, "unknown", [unsat]) == ""
    assert "another tool" in peers.wrong_reason(unsat, "unknown", [sat_ok])
    assert peers.wrong_reason({"verdict": "unknown", "late": False}, "sat", [sat_ok]) == ""
    assert peers.decided(sat_ok) and not peers.decided({**sat_ok, "late": True})
    assert peers.gmean([2.0, 8.0]) == pytest.approx(4.0)


def test_hard_kill_ends_the_process_group(peers, tmp_path):
    code, wall, _, _ = peers._run([sys.executable, "-c", "import time; time.sleep(60)"], {}, str(tmp_path), 0.5,
                                  tmp_path)
    assert code is None and wall < 30


def test_missing_peer_names_the_install_command(peers, tmp_path):
    with pytest.raises(SystemExit, match="neuralsat==0.2.17"):
        peers.main(["--peer", "neuralsat", "--peer-python", str(tmp_path / "nope" / "python"), "--out",
                    str(tmp_path / "out")])
    with pytest.raises(SystemExit):
        peers.main(["--peer", "marabou", "--out", str(tmp_path / "out")])  # no --peer-python for it


def test_optprune_end_to_end_sat_is_rechecked(peers, tmp_path):
    if not (data_dir() / "vnncomp2021-mnistfc" / "mnist-net_256x4.onnx").exists():
        pytest.skip("the shared mnistfc data is not there")
    out = tmp_path / "out"
    assert peers.main(["--nets", "256x4", "--props", "prop_2_0.03", "--limits", "256x4=60", "--threads", "1",
                       "--out", str(out)]) == 0
    summary = (out / "summary.md").read_text()
    assert "| 256x4 | prop_2_0.03 | sat |" in summary
    assert "sat ✓" in summary  # optprune's point passed the harness's own float64 check
    assert "256x4: 60 s here, the competition's limit is 300 s" in summary
    import json

    (rec,) = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert rec["tool"] == "optprune" and rec["verdict"] == "sat" and rec["cex_ok"] is True
