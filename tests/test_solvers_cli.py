"""``optprune solvers --json`` and ``optprune solve X.mps --solver NAME --json`` for every installed backend.

Run in a subprocess so that anything a native solver prints on file
descriptor 1 would break the one-JSON-object contract and fail the test.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from optprune.milp import MILP, Sense
from optprune.solvers import backend_names, get_backend, write_model

CLI = [sys.executable, "-c", "from optprune.cli import main; main()"]


def _run(*args: str) -> dict:
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must be exactly one JSON object, got:\n{proc.stdout}"
    payload = json.loads(lines[0])
    assert isinstance(payload, dict)
    return payload


@pytest.fixture(scope="module")
def knapsack_mps(tmp_path_factory) -> str:
    """0/1 knapsack, values 10, 13, 7, 8, weights 3, 4, 2, 3, capacity 7: optimum 23 (+ offset 1.5)."""
    model = MILP(c=[10, 13, 7, 8], A=sp.csr_matrix([[3.0, 4, 2, 3]]), row_lower=None, row_upper=[7],
                 col_lower=0, col_upper=1, integrality=np.ones(4, bool), sense=Sense.MAXIMIZE, offset=1.5)
    return str(write_model(model, tmp_path_factory.mktemp("cli") / "knapsack.mps"))


def test_solvers_json_lists_every_backend() -> None:
    payload = _run("solvers", "--json")
    rows = {row["name"]: row for row in payload["solvers"]}
    assert set(rows) >= set(backend_names())
    for name, row in rows.items():
        backend = get_backend(name)
        assert row["available"] == backend.is_available()
        assert set(row["capabilities"]) >= {"integer", "continuous", "callbacks"}
        if not row["available"]:
            assert "pip install" in row["install"]
    assert rows["cpsat"]["capabilities"]["continuous"] is False


@pytest.mark.parametrize("name", backend_names())
def test_solve_json_per_backend(name: str, knapsack_mps: str) -> None:
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    payload = _run("solve", knapsack_mps, "--solver", name, "--json")
    assert {"status", "objective", "bound", "time_s", "backend"} <= set(payload)
    assert payload["backend"] == name
    assert payload["status"] == "optimal"
    assert payload["objective"] == pytest.approx(24.5)
    assert payload["bound"] is None or payload["bound"] >= 24.5 - 1e-6
    assert payload["time_s"] >= 0


def test_solve_json_unknown_solver_is_one_error_object(knapsack_mps: str) -> None:
    proc = subprocess.run([*CLI, "solve", knapsack_mps, "--solver", "nope", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    payload = json.loads(proc.stdout)
    assert payload["error_type"] == "UnknownSolverError"
    assert "highs" in payload["error"]
