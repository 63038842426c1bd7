"""JSON-lines record store: durable appends, no duplicates, a partial last line repaired on open."""

from __future__ import annotations

import json
import math

import pytest

from optprune.bench import RecordStore, read_records
from optprune.bench._store import lock_dir
from optprune.errors import InvalidParameterError


def test_append_is_keyed_by_id_and_survives_reopen(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordStore(path) as store:
        assert store.append({"id": "a", "x": 1})
        assert not store.append({"id": "a", "x": 2})  # already there: not written again
        assert store.append({"id": "b", "x": math.inf})  # non-finite floats become null
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[1]) == {"id": "b", "x": None}
    with RecordStore(path) as store:
        assert "a" in store and len(store) == 2 and store.records["a"]["x"] == 1
        assert store.append({"id": "c"})
    assert [r["id"] for r in read_records(path)] == ["a", "b", "c"]


def test_partial_last_line_is_dropped_and_file_repaired(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id":"a","v":1}\n{"id":"b","v":2}\n{"id":"c","v"')  # killed mid-write
    assert [r["id"] for r in read_records(path)] == ["a", "b"]
    store = RecordStore(path).open()
    assert store.repaired_bytes == len(b'{"id":"c","v"')
    assert set(store.records) == {"a", "b"}
    store.append({"id": "c", "v": 3})
    store.close()
    assert [json.loads(line)["id"] for line in path.read_text().splitlines()] == ["a", "b", "c"]


def test_append_needs_open_and_an_id(tmp_path):
    store = RecordStore(tmp_path / "r.jsonl")
    with pytest.raises(InvalidParameterError, match="open"):
        store.append({"id": "a"})
    store.open()
    with pytest.raises(InvalidParameterError, match="'id'"):
        store.append({"x": 1})
    store.close()


def test_output_folder_lock_is_exclusive(tmp_path):
    held = lock_dir(tmp_path)
    try:
        with pytest.raises(InvalidParameterError, match="in use by another"):
            lock_dir(tmp_path)
    finally:
        held.close()
    lock_dir(tmp_path).close()  # released: can be taken again
