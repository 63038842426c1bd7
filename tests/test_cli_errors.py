"""Every usage mistake is one clear error: exit 2, a message on stderr, one JSON object on stdout with ``--json``.

Commands run through :func:`optprune.cli.main` (the console script's entry
point) and, for the usage errors, also through the installed ``optprune``
script in a subprocess, so a typer/click upgrade that changes which exception
class a usage error is cannot silently bring back tracebacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from _tiny_onnx import tiny_onnx_and_property

from optprune.cli import main

COMMANDS = ("solvers", "solve", "info", "bench", "prune", "search", "latency-table", "verify", "attack")
# (command, positional arguments it needs, a numeric option)
NUMERIC = {
    "solve": ("x.mps", "--time-limit"),
    "info": (None, None),
    "bench": ("c.toml", "--workers"),
    "prune": ("n.onnx", "--ratio"),
    "search": ("n.onnx", "--min-width"),
    "latency-table": ("n.onnx", "--points"),
    "verify": ("n.onnx p.vnnlib", "--timeout"),
    "attack": ("n.onnx", "--eps"),
}


def cli(capsys, *args: str) -> tuple[int, dict | None, str]:
    """Exit code, the one JSON object on stdout (None when stdout is empty) and stderr."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    if "--json" in args:
        assert len(lines) == 1, captured.out  # exactly one JSON object
        return code, json.loads(lines[0]), captured.err
    return code, None, captured.err


def assert_error(capsys, *args: str, error_type: str = "InvalidParameterError", says: tuple[str, ...] = ()) -> dict:
    code, payload, err = cli(capsys, *args, "--json")
    assert code == 2, (code, payload)
    assert set(payload) == {"error", "error_type"}
    assert payload["error_type"] == error_type, payload
    for text in says:
        assert text in payload["error"], (text, payload["error"])
    assert err.strip()  # the message also goes to stderr
    return payload


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """A 4 -> 5 -> 3 ONNX network and a VNN-LIB property on it."""
    folder = tmp_path_factory.mktemp("tiny")
    onnx_path, prop = tiny_onnx_and_property(folder, 4, 5, 3, "(assert (or (and (>= Y_1 Y_0)) (and (>= Y_2 Y_0))))")
    mps = folder / "tiny.mps"
    mps.write_text("NAME TINY\nROWS\n N obj\n L c1\nCOLUMNS\n    x obj 1 c1 1\nRHS\n    rhs c1 4\n"
                   "BOUNDS\n UP BND x 4\nENDATA\n")
    return {"onnx": onnx_path, "prop": prop, "mps": mps, "folder": folder}


# --------------------------------------------------------------------------------------------- usage errors
@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_option_is_a_usage_error_for_every_command(capsys, command) -> None:
    payload = assert_error(capsys, command, "--no-such-option", error_type="UsageError", says=("--no-such-option",))
    assert "No such option" in payload["error"]


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "solvers"])
def test_missing_argument_is_a_usage_error(capsys, command) -> None:
    assert_error(capsys, command, error_type="UsageError", says=("Missing",))


@pytest.mark.parametrize("command", sorted(k for k, v in NUMERIC.items() if v[1]))
def test_non_numeric_value_is_a_usage_error(capsys, command) -> None:
    positional, option = NUMERIC[command]
    assert_error(capsys, command, *positional.split(), option, "abc", error_type="UsageError", says=(option,))


def test_unknown_command_and_human_mode(capsys) -> None:
    assert_error(capsys, "no-such-command", error_type="UsageError", says=("no-such-command",))
    code, _, err = cli(capsys, "info", "--bogus")
    assert code == 2 and "Usage:" in err and "No such option: --bogus" in err and "Traceback" not in err


def _console_script() -> str:
    script = Path(sys.executable).with_name("optprune")
    found = str(script) if script.exists() else shutil.which("optprune")
    if found is None:
        pytest.skip("the optprune console script is not installed")
    return found


def test_usage_errors_through_the_installed_script(tmp_path) -> None:
    """The real console script: exit 2, usage on stderr, one JSON object on stdout, no traceback."""
    script = _console_script()
    for args in (["info", "--bogus", "--json"], ["verify", "--json"], ["search", "x.json", "--min-width", "x", "--json"],
                 ["nope", "--json"]):
        proc = subprocess.run([script, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and "Usage:" in proc.stderr
        (line,) = proc.stdout.strip().splitlines()
        assert json.loads(line)["error_type"] == "UsageError"


def test_typer_still_raises_its_own_click_exceptions_that_main_catches() -> None:
    """Pins the typer behaviour main() depends on: usage errors are ClickException subclasses main knows."""
    from optprune.cli._app import CLICK_ERRORS, app

    with pytest.raises(CLICK_ERRORS):
        app(args=["info", "--bogus"], standalone_mode=False)


# --------------------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize(
    ("args", "option", "value"),
    [
        (("verify", "{onnx}", "{prop}", "--timeout", "-5"), "--timeout", "-5"),
        (("verify", "{onnx}", "{prop}", "--timeout", "nan"), "--timeout", "nan"),
        (("attack", "{onnx}", "--count", "-1"), "--count", "-1"),
        (("attack", "{onnx}", "--eps", "1.5"), "--eps", "1.5"),
        (("attack", "{onnx}", "--eps", "nan"), "--eps", "nan"),
        (("attack", "{onnx}", "--time-limit", "0"), "--time-limit", "0"),
        (("search", "{onnx}", "--budget", "params=0.5", "--time-limit", "-5"), "--time-limit", "-5"),
        (("search", "{onnx}", "--budget", "params=0.5", "--min-width", "0"), "--min-width", "0"),
        (("search", "{onnx}", "--budget", "params=nan"), "--budget params", "nan"),
        (("prune", "{onnx}", "--ratio", "nan"), "--ratio", "nan"),
        (("prune", "{onnx}", "--finetune-epochs", "-1"), "--finetune-epochs", "-1"),
        (("latency-table", "{onnx}", "--out", "{folder}/t.json", "--points", "0"), "--points", "0"),
        (("latency-table", "{onnx}", "--out", "{folder}/t.json", "--repeats", "0"), "--repeats", "0"),
        (("latency-table", "{onnx}", "--out", "{folder}/t.json", "--batch-size", "0"), "--batch-size", "0"),
        (("solve", "{mps}", "--time-limit", "0"), "--time-limit", "0"),
        (("bench", "c.toml", "--out", "{folder}/b", "--workers", "0"), "--workers", "0"),
    ],
)
def test_out_of_range_numbers_name_option_range_and_value(capsys, tiny, args, option, value) -> None:
    filled = [a.format(**{k: str(v) for k, v in tiny.items()}) for a in args]
    payload = assert_error(capsys, *filled, says=(option, "must be"))
    assert payload["error"].endswith(f"got {float(value)!r}") or payload["error"].endswith(f"got {int(value)!r}")


def test_two_budgets_for_one_resource_are_an_error(capsys, tiny) -> None:
    assert_error(capsys, "search", str(tiny["onnx"]), "--budget", "params=0.5", "--budget", "params=0.3",
                 says=("--budget params is given twice", "params=0.3"))


def test_search_instance_that_is_a_list(capsys, tmp_path) -> None:
    path = tmp_path / "inst.json"
    path.write_text("[1, 2, 3]")
    assert_error(capsys, "search", str(path), "--budget", "params=0.5", error_type="FileFormatError",
                 says=("JSON object", "list"))


# --------------------------------------------------------------------------------------------- output paths
def test_output_paths_are_checked_before_the_work(capsys, tiny, tmp_path) -> None:
    onnx_path, prop = str(tiny["onnx"]), str(tiny["prop"])
    a_file = tmp_path / "a_file.json"
    a_file.write_text('{"mine": true}')
    a_dir = tmp_path / "a_dir"
    a_dir.mkdir()
    # a folder where a file is needed
    assert_error(capsys, "verify", onnx_path, prop, "--export-mps", str(a_dir), says=("--export-mps", "is a folder"))
    assert_error(capsys, "prune", onnx_path, "--out", str(a_dir / "x"), "--data", "digits",
                 says=("--out must end in .onnx",))
    assert_error(capsys, "prune", onnx_path, "--out", str(a_dir), says=("--out",))
    # a file where a folder is needed, or a file inside a path that goes through a file
    assert_error(capsys, "attack", onnx_path, "--out", str(a_file), says=("--out", "is a file, not a folder"))
    assert_error(capsys, "bench", "c.toml", "--out", str(a_file), says=("--out", "is a file, not a folder"))
    assert_error(capsys, "verify", onnx_path, prop, "--export-mps", str(a_file / "m.mps"), says=("--export-mps",))
    assert_error(capsys, "prune", onnx_path, "--save-decision", str(a_file / "d.json"), says=("--save-decision",))
    # an existing file is not overwritten without --force, and the file is untouched
    assert_error(capsys, "latency-table", onnx_path, "--out", str(a_file), says=("already exists", "--force"))
    assert_error(capsys, "verify", onnx_path, prop, "--out", str(a_file), says=("already exists", "--force"))
    assert_error(capsys, "prune", onnx_path, "--save-decision", str(a_file), says=("already exists",))
    assert a_file.read_text() == '{"mine": true}'
    (a_dir / "summary.json").write_text("{}")
    assert_error(capsys, "attack", onnx_path, "--out", str(a_dir), says=("summary.json", "--force"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_folder_is_refused(capsys, tiny, tmp_path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert_error(capsys, "verify", str(tiny["onnx"]), str(tiny["prop"]), "--out", str(ro / "r.txt"),
                     says=("cannot write into folder",))
    finally:
        ro.chmod(0o755)


def test_verify_missing_folder_is_created_and_force_overwrites(capsys, tiny, tmp_path) -> None:
    out = tmp_path / "new" / "deeper" / "result.txt"
    mps = tmp_path / "mps" / "first.mps"
    code, payload, _ = cli(capsys, "verify", str(tiny["onnx"]), str(tiny["prop"]), "--out", str(out),
                           "--export-mps", str(mps), "--timeout", "60", "--json")
    assert code == 0 and payload["verdict"] in ("sat", "unsat"), payload
    assert out.read_text().splitlines()[0] == payload["verdict"] and mps.stat().st_size > 0
    code, payload, _ = cli(capsys, "verify", str(tiny["onnx"]), str(tiny["prop"]), "--out", str(out), "--force",
                           "--timeout", "60", "--json")
    assert code == 0 and payload["verdict"] in ("sat", "unsat")


def test_verify_timeout_covers_loading_and_parsing(capsys, tiny) -> None:
    """A limit used up before verification starts gives 'unknown' with a message, not a negative time limit."""
    code, payload, _ = cli(capsys, "verify", str(tiny["onnx"]), str(tiny["prop"]), "--timeout", "1e-9", "--json")
    assert code == 0
    assert payload["verdict"] == "unknown"
    assert "spent loading the network and parsing the property" in payload["message"]
    assert payload["load_s"] >= 0


# --------------------------------------------------------------------------------------------- messages
def test_solve_json_includes_the_message(capsys, tiny) -> None:
    code, payload, _ = cli(capsys, "solve", str(tiny["mps"]), "--json")
    assert code == 0 and payload["status"] == "optimal" and payload["objective"] == 0.0
    assert "message" in payload and isinstance(payload["message"], str)


def test_solvers_check_reports_a_broken_backend(capsys, tmp_path, monkeypatch) -> None:
    """A package that is found but fails to import is 'available' to the cheap listing, broken under --check."""
    pkg = tmp_path / "optprune_broken_solver_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise ImportError('libfake.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from optprune.solvers import get_backend

    backend = get_backend("highs")
    monkeypatch.setattr(type(backend), "package", "optprune_broken_solver_pkg")
    monkeypatch.setattr(type(backend), "version", lambda self: "0")
    code, payload, _ = cli(capsys, "solvers", "--json")
    assert code == 0 and next(r for r in payload["solvers"] if r["name"] == "highs")["available"]
    code, payload, _ = cli(capsys, "solvers", "--check", "--json")
    assert code == 2
    assert payload["broken"] == ["highs"]
    row = next(r for r in payload["solvers"] if r["name"] == "highs")
    assert row["import_ok"] is False and "libfake.so" in row["import_error"]


def test_solvers_check_passes_when_everything_imports(capsys) -> None:
    code, payload, _ = cli(capsys, "solvers", "--check", "--json")
    assert code == 0 and payload["broken"] == []
    assert all(r["import_ok"] == r["available"] for r in payload["solvers"])


# --------------------------------------------------------------------------------------------- the Python API
def test_python_api_refuses_the_same_numbers() -> None:
    """The checks behind the options hold for library callers too (NaN compares false with every bound)."""
    import numpy as np

    from optprune.errors import InvalidParameterError
    from optprune.pruning import Pruner
    from optprune.search import measure_latency_tables
    from optprune.training import make_mlp, train_classifier

    model = make_mlp([4, 3, 2])
    X, y = np.zeros((4, 4), dtype=np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(InvalidParameterError, match="'ratio'.*nan"):
        Pruner(ratio=float("nan")).fit(model, (X, y))
    with pytest.raises(InvalidParameterError, match="batch_size must be a positive int, got 0"):
        train_classifier(model, (X, y), epochs=1, batch_size=0, progress=False)
    with pytest.raises(InvalidParameterError, match="lr must be a positive float, got nan"):
        train_classifier(model, (X, y), epochs=1, lr=float("nan"), progress=False)
    with pytest.raises(InvalidParameterError, match="points must be an integer >= 2.*got 0"):
        measure_latency_tables(model, points=0)
    with pytest.raises(InvalidParameterError, match="repeats must be an integer >= 1; got 0"):
        measure_latency_tables(model, repeats=0)
