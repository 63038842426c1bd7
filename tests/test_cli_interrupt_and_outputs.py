"""Issue 22, CLI-wide: Ctrl-C under --json is one JSON object and exit 130; output paths are checked before any work."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _tiny_onnx import tiny_onnx_and_property

from optprune.cli import main
from optprune.cli._validate import check_output_files
from optprune.errors import InvalidParameterError


def _cli(capsys, *args: str) -> tuple[int, list[str], str]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out.strip().splitlines(), captured.err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tiny")
    onnx_path, prop = tiny_onnx_and_property(folder, 2, 3, 2, "(assert (>= Y_1 Y_0))")
    gemms = folder / "g.json"
    gemms.write_text("[[4, 4, 4]]")
    return {"onnx": onnx_path, "prop": prop, "gemms": gemms}


# ----------------------------------------------------------------------------- Ctrl-C


def _raise_interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupt_under_json_is_one_object_and_exit_130(capsys, monkeypatch, tiny) -> None:
    import optprune.systolic

    monkeypatch.setattr(optprune.systolic, "load_gemms", _raise_interrupt)
    code, out, err = _cli(capsys, "systolic", "cycles", str(tiny["gemms"]), "--json")
    assert code == 130
    assert len(out) == 1 and json.loads(out[0]) == {"error": "interrupted", "error_type": "KeyboardInterrupt"}
    assert "interrupted" in err


def test_interrupt_without_json_prints_nothing_on_stdout(capsys, monkeypatch, tiny) -> None:
    import optprune.systolic

    monkeypatch.setattr(optprune.systolic, "load_gemms", _raise_interrupt)
    code, out, err = _cli(capsys, "systolic", "cycles", str(tiny["gemms"]))
    assert code == 130 and out == [] and "interrupted" in err


def test_interrupt_after_the_result_was_printed_adds_no_second_object(capsys, monkeypatch, tiny) -> None:
    import optprune.cli._systolic as systolic_cli
    from optprune.cli._output import emit

    def emit_then_interrupt(payload, as_json, human=None):
        emit(payload, as_json, human)
        raise KeyboardInterrupt

    monkeypatch.setattr(systolic_cli, "emit", emit_then_interrupt)
    code, out, _ = _cli(capsys, "systolic", "cycles", str(tiny["gemms"]), "--json")
    assert code == 130 and len(out) == 1 and "total_cycles" in json.loads(out[0])


def test_real_sigint_in_a_subprocess(tmp_path, tiny) -> None:
    script = (
        "import sys, time\n"
        "import optprune.systolic as s\n"
        "def slow(*a, **k):\n"
        "    print('ready', file=sys.stderr, flush=True)\n"
        "    time.sleep(60)\n"
        "s.load_gemms = slow\n"
        "from optprune.cli import main\n"
        f"main(['systolic', 'cycles', {str(tiny['gemms'])!r}, '--json'])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "ready" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert "ready" in line
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert [json.loads(x) for x in out.strip().splitlines()] == [
        {"error": "interrupted", "error_type": "KeyboardInterrupt"}]
    assert "Traceback" not in err


# ----------------------------------------------------------------------------- output paths


def _verify_fails(capsys, *extra: str) -> dict:
    code, out, err = _cli(capsys, "verify", *extra, "--json")
    assert code == 2, (out, err)
    assert len(out) == 1
    payload = json.loads(out[0])
    assert set(payload) == {"error", "error_type"} and "Traceback" not in err
    return payload


def test_verify_same_path_twice_is_refused_before_any_work(capsys, monkeypatch, tiny, tmp_path) -> None:
    import optprune.io

    monkeypatch.setattr(optprune.io, "load_network", _raise_interrupt)  # any work would show as exit 130
    target = tmp_path / "r.mps"
    payload = _verify_fails(capsys, str(tiny["onnx"]), str(tiny["prop"]), "--out", str(target),
                            "--export-mps", str(target))
    assert payload["error_type"] == "InvalidParameterError"
    assert "--out" in payload["error"] and "--export-mps" in payload["error"] and "r.mps" in payload["error"]
    assert not target.exists()
    # the same file spelled differently is the same file
    other = tmp_path / "sub" / ".." / "r.mps"
    payload = _verify_fails(capsys, str(tiny["onnx"]), str(tiny["prop"]), "--out", str(target),
                            "--export-mps", str(other), "--force")
    assert "--export-mps" in payload["error"]


def test_verify_bad_mps_suffix_is_refused_before_out_is_written(capsys, monkeypatch, tiny, tmp_path) -> None:
    import optprune.io

    monkeypatch.setattr(optprune.io, "load_network", _raise_interrupt)
    out = tmp_path / "result.txt"
    payload = _verify_fails(capsys, str(tiny["onnx"]), str(tiny["prop"]), "--out", str(out),
                            "--export-mps", str(tmp_path / "r.txt"))
    assert payload["error_type"] == "InvalidParameterError"
    assert "--export-mps" in payload["error"] and ".mps" in payload["error"] and "'.txt'" in payload["error"]
    assert not out.exists()


def test_verify_existing_second_output_is_refused_before_any_work(capsys, monkeypatch, tiny, tmp_path) -> None:
    import optprune.io

    monkeypatch.setattr(optprune.io, "load_network", _raise_interrupt)
    (tmp_path / "r.mps").write_text("keep me")
    payload = _verify_fails(capsys, str(tiny["onnx"]), str(tiny["prop"]), "--out", str(tmp_path / "res.txt"),
                            "--export-mps", str(tmp_path / "r.mps"))
    assert "already exists" in payload["error"] and "--export-mps" in payload["error"]
    assert (tmp_path / "r.mps").read_text() == "keep me" and not (tmp_path / "res.txt").exists()


def test_verify_writes_both_outputs_atomically(capsys, tiny, tmp_path) -> None:
    res, mps = tmp_path / "res.txt", tmp_path / "r.lp"
    code, out, err = _cli(capsys, "verify", str(tiny["onnx"]), str(tiny["prop"]), "--out", str(res),
                          "--export-mps", str(mps), "--method", "mip", "--timeout", "60", "--json")
    assert code == 0, err
    verdict = json.loads(out[0])["verdict"]
    assert res.read_text().splitlines()[0] == verdict
    assert mps.read_text().strip()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.lp", "res.txt"]  # no temporary files left


def test_check_output_files_helper(tmp_path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.mps"
    assert check_output_files([("--out", a, None), ("--export-mps", b, (".mps", ".lp")), ("--plot", None, None)]) \
        == [a, b, None]
    with pytest.raises(InvalidParameterError, match=r"--export-mps.*\.mps, \.lp"):
        check_output_files([("--export-mps", tmp_path / "b.txt", (".mps", ".lp"))])
    with pytest.raises(InvalidParameterError, match="--out and --plot"):
        check_output_files([("--out", a, None), ("--plot", tmp_path / "x" / ".." / "a.json", None)])
