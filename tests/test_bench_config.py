"""Benchmark config validation: every error names the key, the allowed values and what was received."""

from __future__ import annotations

import copy

import pytest

from optprune.bench import load_config, parse_config
from optprune.errors import DataNotFoundError, FileFormatError, InvalidParameterError

BASE = {
    "bench": {"name": "t", "time_limit": 5, "ratios": [0.5]},
    "networks": [{"name": "d", "dataset": "digits", "hidden": [8, 8], "epochs": 3}],
    "pruning": [{"scorer": "magnitude", "decision": "uniform"}],
    "queries": [{"images": 2, "eps": [0.05]}],
}


def _with(path: list, value) -> dict:
    cfg = copy.deepcopy(BASE)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return cfg


_DELETE = object()


def test_valid_config_reads_defaults_and_names():
    cfg = parse_config(BASE)
    assert cfg.name == "t" and cfg.time_limit == 5.0 and cfg.backends == ("highs",)
    assert cfg.pruning[0].name == "magnitude-uniform" and cfg.pruning[0].ratios == (0.5,)
    q = cfg.queries[0]
    assert (q.kind, q.target, q.mode, q.split, q.images, q.eps) == ("max_margin", "runner_up", "optimize", "test", 2, (0.05,))
    assert cfg.networks[0].hidden == (8, 8) and cfg.finetune.epochs == 0


@pytest.mark.parametrize(
    "path, value, fragments",
    [
        (["pruning", 0, "decision"], "random", ["pruning[0].decision", "'uniform'", "'unstructured'", "'random'"]),
        (["pruning", 0, "scorer"], "nope", ["pruning[0].scorer", "magnitude", "'nope'"]),
        (["bench", "ratios"], [0.5, 1.5], ["bench.ratios", "(0, 1)", "1.5"]),
        (["bench", "time_limit"], -1, ["bench.time_limit", "> 0", "-1"]),
        (["bench", "backends"], ["nosuch"], ["bench.backends", "highs", "'nosuch'"]),
        (["queries", 0, "target"], "best", ["queries[0].target", "'runner_up'", "'all'", "'best'"]),
        (["queries", 0, "mode"], "fast", ["queries[0].mode", "'optimize'", "'decision'", "'fast'"]),
        (["queries", 0, "kind"], "lp", ["queries[0].kind", "'max_margin'", "'vnnlib'", "'lp'"]),
        (["queries", 0, "eps"], [], ["queries[0].eps", "radii > 0"]),
        (["networks", 0, "dataset"], "cifar", ["networks[0].dataset", "'mnist'", "'digits'", "'cifar'"]),
        (["networks", 0, "hidden"], [8, 0], ["networks[0].hidden", ">= 1"]),
        (["bench", "colour"], "red", ["bench", "unknown key 'colour'", "time_limit"]),
        (["queries", 0, "epsilon"], 0.1, ["queries[0]", "unknown key 'epsilon'", "eps"]),
        (["bench", "repetitions"], 0, ["bench.repetitions", ">= 1", "0"]),
    ],
)
def test_errors_name_key_allowed_and_received(path, value, fragments):
    with pytest.raises(InvalidParameterError) as info:
        parse_config(_with(path, value))
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_missing_tables_and_conflicting_network_sources():
    with pytest.raises(InvalidParameterError, match="networks"):
        parse_config(_with(["networks"], []))
    with pytest.raises(InvalidParameterError, match="queries"):
        parse_config(_with(["queries"], []))
    with pytest.raises(InvalidParameterError, match="exactly one of 'onnx'"):
        parse_config(_with(["networks", 0, "onnx"], "x.onnx"))
    with pytest.raises(InvalidParameterError, match="unstructured pruning supports only 'magnitude'"):
        parse_config(_with(["pruning", 0], {"scorer": "taylor", "decision": "unstructured"}))
    dup = _with(["pruning"], [{"scorer": "magnitude"}, {"scorer": "magnitude"}])
    with pytest.raises(InvalidParameterError, match=r"pruning\[1\].name: 'magnitude-uniform' is used twice"):
        parse_config(dup)


def test_pruning_without_ratios_anywhere_is_an_error():
    cfg = _with(["bench", "ratios"], _DELETE)
    with pytest.raises(InvalidParameterError, match=r"pruning\[0\].ratios: required key is missing"):
        parse_config(cfg)


def test_load_config_file_errors_and_relative_paths(tmp_path):
    with pytest.raises(DataNotFoundError, match="benchmark config not found"):
        load_config(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[bench\nname = 1\n")
    with pytest.raises(FileFormatError, match="not valid TOML"):
        load_config(bad)
    good = tmp_path / "sub" / "good.toml"
    good.parent.mkdir()
    good.write_text(
        '[[networks]]\nname = "n"\ndataset = "mnist"\nonnx = "nets/a.onnx"\n'
        '[[networks]]\nname = "m"\ndataset = "mnist"\nonnx = "{data}/x.onnx"\n'
        '[[queries]]\nkind = "vnnlib"\npaths = ["p/*.vnnlib"]\n'
    )
    cfg = load_config(good)
    assert cfg.networks[0].onnx == str((good.parent / "nets" / "a.onnx").resolve())
    assert cfg.networks[1].onnx == "{data}/x.onnx"  # resolved lazily (the data folder may be absent)
    assert cfg.name == "good" and cfg.pruning == () and cfg.queries[0].paths == ("p/*.vnnlib",)


def test_missing_data_uses_the_fallback_network(tmp_path, monkeypatch):
    from optprune.bench._networks import resolve_network

    cfg = parse_config({
        "networks": [{"name": "big", "dataset": "mnist", "onnx": "{data}/nets/big.onnx",
                      "fallback": {"name": "small", "dataset": "digits", "hidden": [8], "finetune_epochs": 7}}],
        "queries": [{"eps": [0.1]}],
    })
    monkeypatch.setenv("OPTPRUNE_DATA", str(tmp_path / "absent"))
    messages = []
    eff = resolve_network(cfg.networks[0], messages.append)
    assert (eff.name, eff.dataset, eff.hidden, eff.finetune_epochs) == ("small", "digits", (8,), 7)
    assert "using its fallback 'small'" in messages[0]
    # With the data folder present but the file missing, the fallback is used too; without one it is an error.
    (tmp_path / "data" / "mnist").mkdir(parents=True)
    (tmp_path / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    monkeypatch.setenv("OPTPRUNE_DATA", str(tmp_path / "data"))
    assert resolve_network(cfg.networks[0]).name == "small"
    no_fallback = parse_config({"networks": [{"name": "big", "dataset": "mnist", "onnx": "{data}/nets/big.onnx"}],
                                "queries": [{"eps": [0.1]}]})
    with pytest.raises(DataNotFoundError, match=r"network 'big': network file not found: .*big.onnx"):
        resolve_network(no_fallback.networks[0])


def test_stability_entries_are_checked_and_keyed():
    cfg = parse_config(_with(["pruning"], [
        {"name": "stable", "decision": "none", "stability": {"eps": 0.02, "rs_weight": 0.005, "sparsity": 0.5}},
        {"name": "stable-structured", "scorer": "magnitude", "decision": "uniform", "ratios": [0.5],
         "stability": {"rs_weight": 0.01}},
    ]))
    none, structured = cfg.pruning
    assert none.ratios == (0.0,) and none.stability["sparsity"] == 0.5 and none.key()["stability"]["eps"] == 0.02
    assert structured.stability["rs_weight"] == 0.01 and structured.key() != {**structured.key(), "stability": {}}
    with pytest.raises(InvalidParameterError, match=r"stability: unknown keys \['rs'\]"):
        parse_config(_with(["pruning"], [{"decision": "none", "stability": {"rs": 1}}]))
    with pytest.raises(InvalidParameterError, match="sparsity must be in"):
        parse_config(_with(["pruning"], [{"decision": "none", "stability": {"sparsity": 2}}]))
    with pytest.raises(InvalidParameterError, match=r"ratios: must be \[0\] \(decision 'none' prunes nothing\)"):
        parse_config(_with(["pruning"], [{"decision": "none", "ratios": [0.5]}]))
