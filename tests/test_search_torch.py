"""Structure search on real torch models: budgets hold on the pruned model, latency tables, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _structure_brute import brute_force
from torch import nn

from optprune.cli import main
from optprune.io import save_torch_model
from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups
from optprune.search import (
    latency_layers,
    magnitude_scores,
    measure_latency_tables,
    problem_from_model,
    save_instance,
    search_decision,
    solve_search,
    synthetic_problem,
)
from optprune.search._specs import module_specs
from optprune.solvers import Status
from optprune.training import make_digits_cnn, make_mlp


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c, self.d = nn.Linear(10, 20), nn.Linear(20, 30), nn.Linear(30, 20), nn.Linear(20, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        return self.d(h + self.c(torch.relu(self.b(h))))


def _apply(model: nn.Module, kept: dict, input_shape) -> nn.Module:
    groups, _ = dependency_groups(model, input_shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    return apply_decision(model, PruningDecision(kept, widths, tuple(input_shape)))


MODELS = {
    "mlp": (lambda: make_mlp([20, 16, 12, 8, 3]), (20,)),
    "digits_cnn": (make_digits_cnn, (1, 8, 8)),
    "residual": (Residual, (10,)),
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("frac", [0.3, 0.6])
def test_pruned_model_meets_the_parameter_budget(name: str, frac: float) -> None:
    torch.manual_seed(0)
    make, shape = MODELS[name]
    model = make()
    scores = magnitude_scores(model, shape)
    problem = problem_from_model(model, scores, input_shape=shape)
    assert problem.full_resources()["params"] == count_parameters(model)  # the cost model is exact
    kept, result = search_decision(model, scores, {"params": frac}, input_shape=shape, return_result=True)
    small = _apply(model, kept, shape)
    assert count_parameters(small) == result.resources["params"] <= frac * count_parameters(model)
    # the pruned model's own cost model (traced afresh) agrees on FLOPs too
    assert problem_from_model(small, magnitude_scores(small, shape), input_shape=shape).full_resources()["flops"] == (
        pytest.approx(result.resources["flops"])
    )
    assert small(torch.zeros((2, *shape))).shape[-1] == model(torch.zeros((2, *shape))).shape[-1]
    # and it is the brute-force optimum of the traced problem (grids coarse enough to enumerate)
    coarse = problem_from_model(model, scores, input_shape=shape, round_to=4)
    absolute = coarse.absolute_budgets({"params": frac})
    found = brute_force(coarse, absolute)
    if found is not None:
        assert solve_search(coarse, {"params": frac}, mip_gap=1e-9).objective == pytest.approx(found[1], rel=1e-9)


def test_scores_may_be_keyed_in_forward_order() -> None:
    model = make_mlp([12, 9, 7, 2])
    named = magnitude_scores(model)
    positional = {f"layer{i}": v for i, v in enumerate(named.values())}
    a = search_decision(model, named, 0.5)
    b = search_decision(model, positional, 0.5)
    assert a == b and set(a) == set(named)


def test_latency_table_is_measured_cached_and_budgeted(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("OPTPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = make_mlp([64, 384, 384, 4])
    opts = {"points": 2, "repeats": 1, "batch_size": 256}
    first = measure_latency_tables(model, **opts)
    assert not first["cached"] and set(first["tables"]) == {"1", "3", "5"}
    assert first["tables"]["3"]["in_widths"] == [1, 384] and first["tables"]["3"]["out_widths"] == [1, 384]
    assert first["tables"]["1"]["input"] == 64 and first["tables"]["1"]["in_widths"] == [64]
    assert all(v > 0 for t in first["tables"].values() for row in t["values"] for v in row)
    second = measure_latency_tables(model, **opts)
    assert second["cached"] and second["tables"] == first["tables"]
    scores = magnitude_scores(model)
    kept, result = search_decision(model, scores, {"params": 0.8, "latency": 0.8}, return_result=True,
                                   latency=latency_layers(model, **opts))
    assert result.resources["latency"] <= result.budgets["latency"] * (1 + 1e-9)
    assert result.status == Status.OPTIMAL


def _cli(capsys, *args) -> tuple[int, dict]:
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out  # exactly one JSON object
    return code, json.loads(out[0])


def test_cli_search_instance_and_network(tmp_path, capsys) -> None:
    problem = synthetic_problem(5, min_units=16, max_units=32, round_to=4, min_width=4, input_size=20, seed=1)
    path = save_instance(tmp_path / "inst.json", problem, budgets={"params": 0.5})
    code, payload = _cli(capsys, "search", str(path), "--json")
    assert code == 0
    assert {"widths", "objective", "resources", "status", "time_s"} <= set(payload)
    assert payload["status"] == "optimal" and set(payload["widths"]) == {g.name for g in problem.groups}
    assert payload["resources"]["params"]["used"] <= payload["resources"]["params"]["budget"]
    code, uni = _cli(capsys, "search", str(path), "--method", "uniform", "--json")
    assert code == 0 and uni["objective"] <= payload["objective"] + 1e-9

    torch.manual_seed(0)
    model = make_mlp([20, 16, 12, 3])
    save_torch_model(model, tmp_path / "mlp.pt")
    code, net = _cli(capsys, "search", str(tmp_path / "mlp.pt"), "--budget", "params=0.4", "--budget", "flops=0.5",
                     "--round-to", "2", "--min-width", "2", "--kept", "--json")
    assert code == 0 and net["status"] == "optimal"
    assert all(w % 2 == 0 and w >= 2 for w in net["widths"].values())
    assert {k: len(v) for k, v in net["kept"].items()} == net["widths"]
    code, err = _cli(capsys, "search", str(tmp_path / "mlp.pt"), "--budget", "params=0.01", "--json")
    assert code == 2 and err["error_type"] == "InfeasibleBudgetError" and "smallest allowed widths need" in err["error"]


def test_cli_latency_table(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("OPTPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    model = make_mlp([64, 384, 4])
    save_torch_model(model, tmp_path / "m.pt")
    code, payload = _cli(capsys, "latency-table", str(tmp_path / "m.pt"), "--out", str(tmp_path / "t.json"),
                         "--points", "2", "--repeats", "1", "--batch-size", "256", "--json")
    assert code == 0 and payload["layers"] == 2 and (tmp_path / "t.json").is_file()
    code, res = _cli(capsys, "search", str(tmp_path / "m.pt"), "--budget", "latency=0.9", "--latency-table",
                     str(tmp_path / "t.json"), "--json")
    assert code == 0 and res["resources"]["latency"]["used"] <= res["resources"]["latency"]["budget"] * (1 + 1e-9)


def test_module_specs_record_flatten_factors() -> None:
    groups, specs = module_specs(make_digits_cnn(), (1, 8, 8))
    fc = next(s for s in specs if s.name == "5")
    assert fc.in_segments == [("2", 16)] and fc.fixed_in == 0  # 16 channels of 4x4 -> 256 features
    assert [g.name for g in groups] == ["0", "2", "5"]


def test_shared_256x4_network_search_is_optimal(capsys) -> None:
    from optprune.data import data_dir
    from optprune.errors import DataNotFoundError

    try:
        net = data_dir() / "vnncomp2021-mnistfc" / "mnist-net_256x4.onnx"
    except DataNotFoundError as exc:
        pytest.skip(f"shared data not available: {exc}")
    if not net.is_file():
        pytest.skip(f"{net} is missing")
    code, payload = _cli(capsys, "search", str(net), "--budget", "params=0.5", "--round-to", "8", "--min-width", "8",
                         "--json")
    assert code == 0 and payload["status"] == "optimal"
    assert payload["resources"]["params"]["used"] <= 0.5 * payload["resources"]["params"]["full"]
    from optprune.io import load_torch_model

    model = load_torch_model(net)
    scores = {k: v / np.mean(np.abs(v)) for k, v in magnitude_scores(model).items()}
    coarse = problem_from_model(model, scores, round_to=32, min_width=32)
    best = brute_force(coarse, coarse.absolute_budgets({"params": 0.5}))[1]
    assert solve_search(coarse, {"params": 0.5}, mip_gap=1e-9).objective == pytest.approx(best, rel=1e-9)
