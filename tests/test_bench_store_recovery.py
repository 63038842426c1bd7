"""Nothing finished is lost: the bench record store keeps every readable record and moves the rest aside.

Also: ``--executor ray`` with an address where no cluster answers fails within
the connect timeout with a named error instead of hanging.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optprune.bench import RecordStore, read_records
from optprune.bench._executors import check_ray_address
from optprune.errors import InvalidParameterError


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_complete_last_record_without_newline_is_kept(tmp_path, capsys) -> None:
    path = tmp_path / "records.jsonl"
    path.write_bytes(b'{"id":"a","v":1}\n{"id":"b","v":2}')  # finished record, newline not written
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    store = RecordStore(path).open()
    assert set(store.records) == {"a", "b"} and store.repaired_bytes == 0
    assert "lacked its final newline" in capsys.readouterr().err
    assert store.append({"id": "c", "v": 3})
    store.close()
    assert _ids(path) == ["a", "b", "c"]
    assert not (tmp_path / "records.jsonl.unreadable").exists()


def test_corrupted_middle_lines_move_to_a_side_file_with_their_line_numbers(tmp_path, capsys) -> None:
    path = tmp_path / "records.jsonl"
    lines = [b'{"id":"a"}', b'{"id":"b", BROKEN', b'{"id":"c"}', b'[1, 2]', b'\xff\xfe', b'{"id":"d"}']
    path.write_bytes(b"\n".join(lines) + b'\n{"id":"e","v"')  # and a partial last line
    read_records(path)
    assert "unreadable line(s) left out: 2, 4, 5, 7" in capsys.readouterr().err
    store = RecordStore(path).open()
    err = capsys.readouterr().err
    assert "4 unreadable line(s) (2, 4, 5, 7" in err and "records.jsonl.unreadable" in err
    assert store.unreadable_lines == [2, 4, 5, 7] and store.skipped_lines == 4
    assert store.repaired_bytes == len(b'{"id":"e","v"')
    assert set(store.records) == {"a", "c", "d"}
    store.close()
    assert _ids(path) == ["a", "c", "d"]
    side = (tmp_path / "records.jsonl.unreadable").read_bytes().split(b"\n")
    assert side[:-1] == [lines[1], lines[3], lines[4], b'{"id":"e","v"']  # kept byte for byte
    # a second repair appends to the side file instead of replacing it
    with open(path, "ab") as fh:
        fh.write(b"garbage\n")
    RecordStore(path).open().close()
    assert (tmp_path / "records.jsonl.unreadable").read_bytes().endswith(b'{"id":"e","v"\ngarbage\n')
    assert _ids(path) == ["a", "c", "d"]


def test_unreachable_ray_address_fails_fast(tmp_path) -> None:
    """The real entry point, a few seconds at most: a named error (exit 2), not a hang."""
    pytest.importorskip("ray")
    script = Path(sys.executable).with_name("optprune")
    if not script.exists():
        pytest.skip("the optprune console script is not installed")
    config = tmp_path / "c.toml"
    config.write_text("[bench]\n")
    env = {**os.environ, "OPTPRUNE_RAY_CONNECT_TIMEOUT": "3"}
    # TEST-NET-1 (RFC 5737): never a Ray cluster; either the TCP connect or the Ray probe times out
    proc = subprocess.run([str(script), "bench", str(config), "--out", str(tmp_path / "o"), "--executor", "ray",
                           "--address", "192.0.2.1:6379", "--json"], capture_output=True, text=True, timeout=60,
                          env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    payload = json.loads(proc.stdout)
    assert payload["error_type"] == "InvalidParameterError"
    assert "--address 192.0.2.1:6379" in payload["error"]


def test_ray_address_syntax_and_refused_port() -> None:
    with pytest.raises(InvalidParameterError, match="HOST:PORT"):
        check_ray_address("no-port-here", timeout=1)
    with pytest.raises(InvalidParameterError, match="cannot connect"):
        check_ray_address("127.0.0.1:1", timeout=1)  # nothing listens on port 1
    check_ray_address(None)
    check_ray_address("auto")
