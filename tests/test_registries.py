"""One registry per kind of method: adding one is a module plus a registration line, and every caller sees it.

The toy scorer and toy decision live in ``tests/_toy_methods.py``; each test
registers them with one line, runs them through ``optprune prune`` and a bench
config, and unregisters them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from optprune.bench import parse_config
from optprune.cli import main
from optprune.errors import InvalidParameterError
from optprune.io import save_torch_model
from optprune.pruning import DECISIONS, MethodDecision, PruningDecision, ScoredDecision, scored_decisions
from optprune.registry import Registry
from optprune.scoring import SCORERS, WEIGHT_SCORERS, FisherScorer, Scorer, get_scorer
from optprune.training import make_mlp


def run(capsys, *args: str) -> dict:
    main(list(args))
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


@pytest.fixture
def tiny_net(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "tiny.pt"
    save_torch_model(make_mlp([64, 16, 8, 10], (1, 8, 8)), path)
    return path


@pytest.fixture
def toys():
    """The toy scorer (registered lazily, by its path) and the toy decision (registered as an object)."""
    from _toy_methods import KeepFirst

    SCORERS.register("toy", "_toy_methods:ToyScorer", "scores unit j by j")
    DECISIONS.register("keep_first", KeepFirst(), "keeps the first units")
    try:
        yield
    finally:
        SCORERS.unregister("toy")
        DECISIONS.unregister("keep_first")
    assert "toy" not in SCORERS and "keep_first" not in DECISIONS


def test_toy_scorer_and_decision_run_through_the_cli(tmp_path, capsys, tiny_net, toys) -> None:
    decision_file = tmp_path / "decision.json"
    r = run(capsys, "prune", str(tiny_net), "--scorer", "toy", "--decision", "uniform", "--ratio", "0.5",
            "--data", "digits", "--calibration-size", "32", "--save-decision", str(decision_file), "--json")
    assert r["scorer"] == "toy" and r["group_widths"] == {"1": 8, "3": 4}
    kept = PruningDecision.load(decision_file).kept
    assert list(kept["1"]) == list(range(8, 16)) and list(kept["3"]) == [4, 5, 6, 7]  # last units rank highest
    r = run(capsys, "prune", str(tiny_net), "--scorer", "toy", "--decision", "keep_first", "--ratio", "0.25",
            "--data", "digits", "--calibration-size", "32", "--save-decision", str(decision_file), "--force", "--json")
    assert r["decision"] == "keep_first" and r["group_widths"] == {"1": 12, "3": 6}
    assert list(PruningDecision.load(decision_file).kept["1"]) == list(range(12))  # the decision ignores the scores


def test_toy_names_are_refused_once_unregistered(capsys, tiny_net) -> None:
    for option, name, listed in (("--scorer", "toy", "magnitude"), ("--decision", "keep_first", "reconvene")):
        with pytest.raises(SystemExit) as exc:
            main(["prune", str(tiny_net), option, name, "--data", "digits", "--json"])
        assert exc.value.code == 2
        error = json.loads(capsys.readouterr().out)["error"]
        assert f"{option} must be one of" in error and f"got {name!r}" in error and listed in error


def test_toy_scorer_and_decision_in_a_bench_config(toys) -> None:
    data = {"networks": [{"name": "n", "dataset": "digits", "hidden": [4]}], "queries": [{"eps": [0.1]}],
            "pruning": [{"scorer": "toy", "decision": "keep_first", "ratios": [0.5],
                         "scorer_options": {"reverse": True}},
                        {"scorer": "toy", "decision": "search", "ratios": [0.5]}]}
    config = parse_config(data)
    assert [(p.scorer, p.decision) for p in config.pruning] == [("toy", "keep_first"), ("toy", "search")]
    data["pruning"][0]["scorer_options"] = {"reverse": 1}
    with pytest.raises(InvalidParameterError, match=r"pruning\[0\].*ToyScorer.*'reverse'"):
        parse_config(data)
    data["pruning"][0]["scorer_options"] = {"revers": True}
    with pytest.raises(InvalidParameterError, match="unknown key 'revers'.*allowed keys: reverse"):
        parse_config(data)


def test_unknown_names_in_a_bench_config_list_the_registry() -> None:
    data = {"networks": [{"name": "n", "dataset": "digits", "hidden": [4]}], "queries": [{"eps": [0.1]}],
            "pruning": [{"scorer": "toy", "decision": "uniform", "ratios": [0.5]}]}
    with pytest.raises(InvalidParameterError, match=r"pruning\[0\]\.scorer: must be one of magnitude, .*gohsp.*'toy'"):
        parse_config(data)
    data["pruning"][0] = {"decision": "keep_first", "ratios": [0.5]}
    with pytest.raises(InvalidParameterError, match=r"pruning\[0\]\.decision.*'uniform'.*'reconvene'.*'keep_first'"):
        parse_config(data)


def test_toy_decision_in_the_pruner_and_its_auto_normalizer(toys) -> None:
    from optprune.pruning import Pruner

    assert "keep_first" in scored_decisions() and "bmrs-n" not in scored_decisions()
    model = make_mlp([6, 5, 3], (6,))
    pruner = Pruner(scorer="toy", decision="keep_first", ratio=0.4, input_shape=(6,)).fit(model)
    assert list(pruner.decision_.kept["1"]) == [0, 1, 2] and pruner.normalizer_ == "zscore"
    assert Pruner(decision="search", ratio=0.4, input_shape=(6,)).fit(model).normalizer_ == "mean"
    with pytest.raises(InvalidParameterError, match="'decision' must be one of 'uniform', 'global', 'search', "
                                                    ".*'keep_first' or a callable; got 'bmrs-n'"):
        Pruner(decision="bmrs-n").fit(model)


def test_gohsp_is_listed_and_accepted_by_prune(capsys, tmp_path) -> None:
    code = "import optprune.scoring as s, sys; print('gohsp' in s.SCORERS.names(), 'optprune.gohsp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() \
        == ["True", "False"]  # listed without importing optprune.gohsp
    main(["prune", "--help"])
    assert "gohsp" in capsys.readouterr().out
    from optprune.structure import MultiHeadSelfAttention

    torch.manual_seed(0)  # attention over the 8 rows (tokens of 8 pixels) of a digit, then an MLP
    model = nn.Sequential(MultiHeadSelfAttention(8, 2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 16), nn.ReLU(),
                          nn.Linear(16, 10))
    model.input_shape = (8, 8)
    torch.save(model, tmp_path / "attention.pt")  # optprune's .pt format stores no attention: pickled, trusted here
    r = run(capsys, "prune", str(tmp_path / "attention.pt"), "--trust-pickle", "--scorer", "gohsp", "--ratio", "0.5",
            "--data", "digits", "--calibration-size", "32", "--json")
    assert r["scorer"] == "gohsp" and r["group_widths"] == {"0.heads": 1, "3": 8}
    assert type(get_scorer("graph_heads")).__name__ == "GraphHeadScorer"


def test_registries_import_without_torch() -> None:
    code = ("import sys, optprune.scoring, optprune.pruning, optprune.bench._config, optprune.cli; "
            "print('torch' in sys.modules, len(optprune.pruning.DECISIONS), len(optprune.scoring.SCORERS))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and int(out[1]) >= 8 and int(out[2]) >= 20


def test_every_built_in_resolves_to_its_kind() -> None:
    for name in SCORERS:
        assert isinstance(get_scorer(name), Scorer)
    assert get_scorer("l1").p == 1 and get_scorer("ifv").metric == "ifv"  # aliases with their defaults
    assert {type(DECISIONS.get(n)).__name__ for n in DECISIONS} >= {"UniformDecision", "BMRSDecision"}
    for name in DECISIONS:
        assert isinstance(DECISIONS.get(name), (ScoredDecision, MethodDecision))
    for name in WEIGHT_SCORERS:
        assert callable(WEIGHT_SCORERS.get(name))


@pytest.mark.parametrize("name", list(WEIGHT_SCORERS.names()))
def test_weight_scorers_share_one_protocol(name: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3))
    X = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    scores = WEIGHT_SCORERS.get(name)(model, (X, y), input_shape=(1, 8, 8), batch_size=5)
    assert list(scores) == ["0", "3"]
    assert all(scores[n].shape == model.get_submodule(n).weight.shape for n in scores)
    assert all(bool(torch.all(s >= 0)) and bool(torch.all(torch.isfinite(s))) for s in scores.values())


def test_fisher_is_one_definition_for_units_and_weights() -> None:
    """The per-unit fisher scorer sums the per-weight fisher importance over a unit's rows (per-sample Fisher)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.ReLU(), nn.Linear(5, 3, bias=False))
    X = torch.randn(12, 4)
    y = torch.randint(0, 3, (12,))
    per_weight = WEIGHT_SCORERS.get("fisher")(model, (X, y), batch_size=5)
    per_unit = FisherScorer(members="out")(model, (X, y), input_shape=(4,))
    np.testing.assert_allclose(per_unit["0"], per_weight["0"].sum(dim=1).numpy(), rtol=1e-6)
    batch = WEIGHT_SCORERS.get("fisher")(model, (X, y), batch_size=12)  # batching does not change the definition
    np.testing.assert_allclose(batch["2"].numpy(), per_weight["2"].numpy(), rtol=1e-5)


def test_registry_basics() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("a", "collections:OrderedDict", "lazy")
    reg.register("b", dict)
    assert reg.names() == ("a", "b") and reg.help("a") == "lazy" and reg.get("a").__name__ == "OrderedDict"
    with pytest.raises(InvalidParameterError, match="already registered"):
        reg.register("b", list)
    with pytest.raises(InvalidParameterError, match="--widget must be one of a, b; got 'c'"):
        reg.check("c", "--widget")
    assert reg.constraint().accepts("a") and not reg.constraint().accepts("c")
    assert reg.constraint().describe() == "one of 'a', 'b'"
