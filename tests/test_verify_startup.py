"""Start-up of ``optprune verify``: what the command imports, checked in a fresh interpreter (behaviour, not time).

VNN-COMP counts the whole run, start-up included; importing a module the run does not use costs a good part of
a second (``torch._dynamo``, pulled in by constructing any ``torch.optim`` optimiser, about 1 s; onnxruntime and
its session about 0.3 s). These tests pin which modules the CLI and a run decided by its bounds import.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests._tiny_onnx import tiny_onnx_and_property

#: Modules the command line never needs just to start and parse its arguments.
NOT_AT_IMPORT = ("torch", "onnx", "onnxruntime", "pandas", "matplotlib", "highspy", "pyscipopt", "ortools",
                 "pyomo", "cvxpy", "gurobipy", "transformers", "sklearn", "peft")
#: Modules a ``verify`` run that its bounds decide does not need (no optimiser framework, no counterexample to
#: re-check by onnxruntime, no onnx package (the reader parses the protobuf itself: optprune.io._onnx_proto),
#: no other MIP backend than the default's).
NOT_FOR_A_BOUNDS_VERDICT = ("torch._dynamo", "onnx", "ml_dtypes", "onnxruntime", "pandas", "matplotlib",
                            "pyscipopt", "ortools", "pyomo", "cvxpy", "gurobipy", "transformers", "peft")


def _imported_after(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; return its JSON result line (``loaded``: modules in sys.modules)."""
    probe = code + "\nimport json, sys\nprint(json.dumps({'loaded': sorted(sys.modules)}))\n"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("{")]
    return {"loaded": set(json.loads(lines[-1])["loaded"]), "lines": lines}


def test_importing_the_cli_imports_no_heavy_module():
    loaded = _imported_after("import optprune.cli")["loaded"]
    assert not loaded & set(NOT_AT_IMPORT), sorted(loaded & set(NOT_AT_IMPORT))


def test_a_run_decided_by_its_bounds_imports_neither_dynamo_nor_onnxruntime(tmp_path):
    onnx_path, prop = tiny_onnx_and_property(tmp_path, 3, 8, 2, "(assert (>= Y_0 1000.0))")
    code = ("from optprune.cli import main\n"
            f"main(['verify', {str(onnx_path)!r}, {str(prop)!r}, '--json', '--threads', '1'])\n")
    out = _imported_after(code)
    result = json.loads(out["lines"][0])
    assert result["verdict"] == "unsat" and result["decided_by"] == "bounds"
    assert "torch" in out["loaded"]  # the bounds did run (torch core)
    assert not out["loaded"] & set(NOT_FOR_A_BOUNDS_VERDICT), sorted(out["loaded"] & set(NOT_FOR_A_BOUNDS_VERDICT))


def test_a_sat_run_still_checks_its_point_by_onnxruntime(tmp_path):
    """The deferred onnxruntime session is still built and used once there is a point to check."""
    onnx_path, prop = tiny_onnx_and_property(tmp_path, 3, 8, 2, "(assert (<= Y_0 1000.0))")
    code = ("from optprune.cli import main\n"
            f"main(['verify', {str(onnx_path)!r}, {str(prop)!r}, '--json', '--threads', '1'])\n")
    out = _imported_after(code)
    result = json.loads(out["lines"][0])
    assert result["verdict"] == "sat"
    assert "onnxruntime" in out["loaded"]
