"""Issue 22, systolic: dimensions outside [1, MAX_DIM] are named errors, cycle counts never wrap, --batch is cheap."""

from __future__ import annotations

import json

import numpy as np
import pytest
from torch import nn

from optprune.cli import main
from optprune.errors import FileFormatError, InvalidParameterError
from optprune.systolic import (
    MAX_BLOCKS,
    MAX_DIM,
    ArraySpec,
    block_layout,
    compute_cycles,
    exact_cycles,
    fold_counts,
    gemms_from_json,
    gemms_from_torch,
    parse_array,
    tile_durations,
)


def _fail(capsys, *args: str) -> dict:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    assert exc.value.code == 2
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


def _run(capsys, *args: str) -> dict:
    main(list(args))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


@pytest.fixture()
def linear_net(tmp_path):
    from optprune.io import save_torch_model

    model = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    path = tmp_path / "net.pt"
    save_torch_model(model, path)
    return path


@pytest.mark.parametrize("batch", ["99999999999999999999999", "4000000000000000000", str(MAX_DIM + 1), "0"])
def test_batch_outside_range_is_a_named_error(capsys, linear_net, batch) -> None:
    r = _fail(capsys, "systolic", "cycles", str(linear_net), "--batch", batch, "--json")
    assert r["error_type"] == "InvalidParameterError"
    assert f"[1, {MAX_DIM}]" in r["error"] and batch in r["error"]


def test_batch_4e18_is_a_usage_error(capsys, linear_net) -> None:
    r = _fail(capsys, "systolic", "cycles", str(linear_net), "--batch", "4e18", "--json")
    assert r["error_type"] == "UsageError"


@pytest.mark.parametrize("row", [[4 * 10**18] * 3, [10**23, 3, 3], [MAX_DIM + 1, 1, 1], [0, 1, 1]])
def test_json_dimensions_outside_range_are_named_errors(capsys, tmp_path, row) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps([row]))
    r = _fail(capsys, "systolic", "cycles", str(path), "--json")
    assert r["error_type"] == "FileFormatError" and str(MAX_DIM) in r["error"]
    with pytest.raises(FileFormatError):
        gemms_from_json(path)


def test_largest_dimensions_give_exact_cycles(capsys, tmp_path) -> None:
    path = tmp_path / "g.json"
    path.write_text(json.dumps([[MAX_DIM] * 3, [MAX_DIM, 5, 7]]))
    r = _run(capsys, "systolic", "cycles", str(path), "--array", "1", "--json")
    big = MAX_DIM * MAX_DIM * (2 + 1 + MAX_DIM - 2) - 1  # ws: K/R * N/C folds of 2R + C + M - 2 lines, minus 1
    small = 5 * 7 * (2 + 1 + MAX_DIM - 2) - 1
    assert [layer["cycles"] for layer in r["layers"]] == [big, small]
    assert r["total_cycles"] == big + small > 2**63
    assert all(layer["cycles"] > 0 for layer in r["layers"])


@pytest.mark.parametrize("dataflow", ["ws", "os", "is"])
def test_compute_cycles_refuses_instead_of_wrapping(dataflow) -> None:
    spec = ArraySpec(1, 1, dataflow)
    exact = exact_cycles([[MAX_DIM] * 3], spec)[0]
    assert exact > 2**63
    with pytest.raises(InvalidParameterError, match="int64"):
        compute_cycles([[MAX_DIM] * 3], spec)
    folds, per_fold = fold_counts([[MAX_DIM] * 3], spec)
    assert int(folds[0]) > 0 and int(per_fold[0]) > 0  # in range: no wrap-around
    shapes = [[5, 10, 7], [33, 17, 9], [MAX_DIM, 3, 2]]
    assert compute_cycles(shapes, ArraySpec(4, 4, dataflow)).tolist() == exact_cycles(shapes, ArraySpec(4, 4, dataflow))


@pytest.mark.parametrize("bad", [[[np.nan, 1, 1]], [[np.inf, 1, 1]], [[1.5, 1, 1]], [[10**30, 1, 1]],
                                 [[2**63 + 5, 1, 1]], [[MAX_DIM + 1.0, 1, 1]], [[-3, 1, 1]]])
def test_python_api_refuses_out_of_range_shapes(bad) -> None:
    with pytest.raises(InvalidParameterError, match=str(MAX_DIM)):
        compute_cycles(bad, ArraySpec(4, 4))


def test_array_sides_outside_range() -> None:
    with pytest.raises(InvalidParameterError, match=str(MAX_DIM)):
        parse_array("99999999999999999999x4")
    with pytest.raises(InvalidParameterError, match=str(MAX_DIM)):
        ArraySpec(MAX_DIM + 1, 4)


def test_layouts_and_tilings_beyond_max_blocks_are_refused_before_allocating() -> None:
    with pytest.raises(InvalidParameterError, match="MAX_BLOCKS"):
        block_layout([[1, MAX_DIM, MAX_DIM]], ArraySpec(1, 1))
    with pytest.raises(InvalidParameterError, match="MAX_BLOCKS"):
        tile_durations([[1, 1, MAX_BLOCKS + 1]], [ArraySpec(1, 1)], tile=1)


def test_large_batch_builds_no_per_sample_arrays() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].shape[0]))
    small = gemms_from_torch(model, input_shape=(1, 6, 6), batch=3)
    big = gemms_from_torch(model, input_shape=(1, 6, 6), batch=200_000)
    assert [g.shape for g in small] == [(3 * 16, 9, 2), (3, 32, 3)]
    assert [g.shape for g in big] == [(200_000 * 16, 9, 2), (200_000, 32, 3)]
    assert max(seen) == 1  # the dummy pass runs on one sample; 200,000 would take gigabytes of activations
