"""Structure search: exact optimum (= brute force on every backend), budgets, ties, grids, baselines, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _structure_brute import brute_force

from optprune.errors import InfeasibleBudgetError, InvalidParameterError
from optprune.search import (
    Bilinear,
    LayerCost,
    SearchProblem,
    Table,
    WidthGroup,
    build_search_milp,
    chain_layers,
    global_threshold_widths,
    linear_costs,
    load_instance,
    minimum_resources,
    save_instance,
    search_widths,
    solve_search,
    synthetic_problem,
    uniform_widths,
    width_grid,
)
from optprune.solvers import Status, backend_names, get_backend


def _groups(sizes, seed, round_to=1, min_width=1, signed=False):
    rng = np.random.default_rng(seed)
    out = []
    for i, s in enumerate(sizes):
        scores = rng.normal(0.2, 1.0, s) if signed else rng.gamma(2.0, rng.uniform(0.5, 2.0), s)
        out.append(WidthGroup(f"g{i}", scores, width_grid(s, round_to, min_width)))
    return tuple(out)


def chain_problem(seed=0, sizes=(5, 6, 4, 5), ties=(), signed=False) -> SearchProblem:
    groups = _groups(sizes, seed, signed=signed)
    return SearchProblem(groups, tuple(chain_layers([g.name for g in groups], 7, 3)), ties)


def residual_problem(seed=1) -> SearchProblem:
    """Stream g0 feeds block g1 -> back into g0 (two layers between the same pair), a conv-like
    layer g0 -> g2 with a latency table, batch-norm on g2, and a head."""
    rng = np.random.default_rng(seed)
    groups = _groups((6, 5, 4), seed)
    table = Table([1, 3, 6], [1, 2, 4], rng.uniform(0.5, 2.0, (3, 3)))  # non-monotone on purpose
    layers = (
        LayerCost("stem", 9, "g0", linear_costs()),
        LayerCost("b1", "g0", "g1", linear_costs()),
        LayerCost("b2", "g1", "g0", linear_costs()),
        LayerCost("conv", "g0", "g2", {"params": Bilinear(in_out=9, out=1), "flops": Bilinear(in_out=36),
                                        "latency": table}),
        LayerCost("bn", "g2", "g2", {"params": Bilinear(out=2)}),
        LayerCost("head", "g2", 3, {**linear_costs(spatial_in=4), "latency": Bilinear(in_=0.3, const=1.0)}),
    )
    return SearchProblem(groups, layers, name="residual")


def cyclic_problem(seed=2) -> SearchProblem:
    """Three groups joined pairwise (a cycle in the class graph: no forest, no reduction)."""
    groups = _groups((4, 5, 4), seed)
    layers = (
        LayerCost("a", 6, "g0", linear_costs()), LayerCost("b", "g0", "g1", linear_costs()),
        LayerCost("c", "g1", "g2", linear_costs()), LayerCost("skip", "g0", "g2", linear_costs()),
        LayerCost("out", "g2", 2, linear_costs()),
    )
    return SearchProblem(groups, layers, name="cyclic")


CASES = {
    "chain": (lambda: chain_problem(0), {"params": 0.45}),
    "chain_two_budgets": (lambda: chain_problem(3), {"params": 0.5, "flops": 0.4}),
    "chain_tied": (lambda: chain_problem(4, ties=(("g0", "g2"),)), {"params": 0.4}),
    "chain_negative_scores": (lambda: chain_problem(5, signed=True), {"params": 0.6}),
    "residual_latency": (lambda: residual_problem(1), {"params": 0.5, "latency": 0.8}),
    "cyclic": (lambda: cyclic_problem(2), {"params": 0.5}),
}


def _available(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("solver", backend_names())
def test_every_backend_finds_the_brute_force_optimum(case: str, solver: str) -> None:
    backend = _available(solver)
    make, budgets = CASES[case]
    problem = make()
    absolute = problem.absolute_budgets(budgets)
    widths_bf, best = brute_force(problem, absolute)
    result = solve_search(problem, budgets, solver, mip_gap=1e-9, time_limit=60)
    assert result.status == Status.OPTIMAL
    for key, cap in absolute.items():
        assert result.resources[key] <= cap + 1e-9 * cap
    assert result.objective == pytest.approx(problem.value(result.widths))
    if backend.supports_continuous:
        assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-9)
    else:  # integer-scaled model: optimal up to the reported rounding of the values and budgets
        rounding = result.solver_stats["rounding"]
        assert rounding["value_scale"] > 0 and set(rounding["cost_scales"]) == set(budgets)
        assert result.objective >= best - 2 * rounding["max_value_error"] - 1e-9
        assert result.objective <= best + 1e-9
        if any(rounding["max_budget_loss"].values()):
            # a budget scaled with loss: the optimum of a budget reduced by that loss is a lower bound
            tighter = {k: v - rounding["max_budget_loss"][k] for k, v in absolute.items()}
            found = brute_force(problem, tighter)
            if found is not None:
                assert result.objective >= found[1] - 2 * rounding["max_value_error"] - 1e-9


@pytest.mark.parametrize("case", sorted(CASES))
def test_reduction_keeps_the_optimum_and_the_unreduced_model_agrees(case: str) -> None:
    make, budgets = CASES[case]
    problem = make()
    absolute = problem.absolute_budgets(budgets)
    best = brute_force(problem, absolute)[1]
    for reduce in (True, False):
        r = solve_search(problem, budgets, mip_gap=1e-9, reduce=reduce)
        assert r.objective == pytest.approx(best, rel=1e-9)
    built = build_search_milp(problem, absolute, reduce=True)
    if problem.compiled.is_forest:
        red = built.reduction
        assert red.bound >= best - 1e-9 and red.incumbent_value <= best + 1e-9
        assert built.model.n_vars <= build_search_milp(problem, absolute, reduce=False).model.n_vars


def test_random_chains_against_brute_force() -> None:
    rng = np.random.default_rng(7)
    for seed in range(12):
        sizes = tuple(int(v) for v in rng.integers(2, 7, rng.integers(2, 5)))
        problem = chain_problem(100 + seed, sizes=sizes)
        frac = float(rng.uniform(0.15, 0.9))
        absolute = problem.absolute_budgets({"params": frac})
        if absolute["params"] < minimum_resources(problem)["params"]:
            continue
        best = brute_force(problem, absolute)[1]
        assert solve_search(problem, {"params": frac}, mip_gap=1e-9).objective == pytest.approx(best, rel=1e-9)


def test_infeasible_budget_names_the_smallest_feasible_budget() -> None:
    groups = _groups((8, 8), 0, round_to=2, min_width=2)
    problem = SearchProblem(groups, tuple(chain_layers(["g0", "g1"], 10, 3)))
    smallest = (10 + 1) * 2 + (2 + 1) * 2 + (2 + 1) * 3  # every group at its minimum width 2
    assert minimum_resources(problem)["params"] == smallest
    with pytest.raises(InfeasibleBudgetError, match=f"smallest allowed widths need params={smallest}") as info:
        solve_search(problem, {"params": smallest - 1}, relative=False)
    assert info.value.smallest_feasible == smallest
    assert solve_search(problem, {"params": smallest}, relative=False).widths == {"g0": 2, "g1": 2}
    for method in ("uniform", "global"):
        with pytest.raises(InfeasibleBudgetError):
            solve_search(problem, {"params": smallest - 1}, relative=False, method=method)


def test_tied_groups_keep_equal_widths() -> None:
    scores = {"a": np.linspace(1, 2, 12), "b": np.linspace(5, 9, 12), "c": np.linspace(0.1, 0.2, 12)}
    free = search_widths(scores, {"input": 10, "output": 4}, {"params": 0.4}, mip_gap=1e-9)
    assert free.widths["a"] != free.widths["c"]  # without the tie the search separates them
    tied = search_widths(scores, {"input": 10, "output": 4}, {"params": 0.4}, ties=[("a", "c")], mip_gap=1e-9)
    assert tied.widths["a"] == tied.widths["c"]
    problem = chain_problem(4, ties=(("g0", "g2"),))
    r = solve_search(problem, {"params": 0.4}, mip_gap=1e-9)
    assert r.widths["g0"] == r.widths["g2"]
    for method in ("uniform", "global"):
        assert len({solve_search(problem, {"params": 0.4}, method=method).widths[g] for g in ("g0", "g2")}) == 1


def test_round_to_and_min_width_are_honoured() -> None:
    rng = np.random.default_rng(3)
    scores = [rng.gamma(2.0, 1.0, n) for n in (30, 22, 40)]
    for method in ("exact", "uniform", "global"):
        r = search_widths(scores, {"input": 16, "output": 5}, {"params": 0.35}, round_to=4, min_width=8, method=method)
        for name, width in r.widths.items():
            size = len(scores[int(name[1:])])
            assert width >= 8 and (width % 4 == 0 or width == size), (method, name, width)
    r = search_widths(scores, {"input": 16, "output": 5}, {"params": 0.5}, widths={"g1": [11, 22]})
    assert r.widths["g1"] in (11, 22)
    assert width_grid(10, 4, 0.5).tolist() == [8, 10]  # min 5 rounded up to a multiple of 4, full width kept


def test_kept_units_are_the_top_scores() -> None:
    scores = {"h": np.array([0.1, 5.0, 0.3, 4.0, 2.0, 0.0])}
    layers = chain_layers(["h"], 3, 2)
    r = search_widths(scores, layers, {"params": 0.55})
    k = r.widths["h"]
    assert r.kept["h"].tolist() == sorted(np.argsort(-scores["h"])[:k].tolist())
    assert r.objective == pytest.approx(np.sort(scores["h"])[::-1][:k].sum())


def test_search_widths_takes_layers_by_keyword_and_the_old_name_with_a_warning() -> None:
    scores = {"h": np.array([0.1, 5.0, 0.3, 4.0, 2.0, 0.0])}
    layers = chain_layers(["h"], 3, 2)
    new = search_widths(scores, layers=layers, budgets={"params": 0.55})
    deprecated = r"search_widths\(resources=...\) is deprecated; use search_widths\(layers=...\)"
    with pytest.warns(DeprecationWarning, match=deprecated):
        old = search_widths(scores, resources=layers, budgets={"params": 0.55})
    assert old.widths == new.widths
    with pytest.raises(InvalidParameterError, match="give 'layers' only"):
        search_widths(scores, layers, {"params": 0.5}, resources=layers)
    with pytest.raises(InvalidParameterError, match="parameter 'layers' is required"):
        search_widths(scores, budgets={"params": 0.5})
    with pytest.raises(InvalidParameterError, match=r"parameter 'layers' as a mapping must be \{'input': n_in"):
        search_widths(scores, {"inputs": 3, "output": 2}, {"params": 0.5})


def test_baselines_meet_the_budget_and_never_beat_the_exact_search() -> None:
    for seed in range(4):
        problem = synthetic_problem(6, min_units=16, max_units=48, round_to=4, min_width=4, input_size=20, seed=seed)
        for frac in (0.3, 0.5, 0.7):
            absolute = problem.absolute_budgets({"params": frac, "flops": frac + 0.05})
            exact = solve_search(problem, {"params": frac, "flops": frac + 0.05}, mip_gap=1e-9)
            for widths in (uniform_widths(problem, absolute), global_threshold_widths(problem, absolute)):
                use = problem.resources(widths)
                assert all(use[k] <= v + 1e-9 * v for k, v in absolute.items())
                assert problem.value(widths) <= exact.objective + 1e-9
    uni = uniform_widths(problem, problem.absolute_budgets({"params": 0.5}))
    ratios = [uni[g.name] / g.size for g in problem.groups]
    assert max(ratios) - min(ratios) < 0.2  # one ratio, snapped to multiples of 4


def test_table_cost_interpolates_and_clamps() -> None:
    t = Table([2, 4], [10, 20, 30], [[1.0, 2.0, 4.0], [3.0, 5.0, 9.0]])
    assert float(t(2, 20)) == 2.0 and float(t(4, 30)) == 9.0
    assert float(t(3, 15)) == pytest.approx(0.25 * (1 + 2 + 3 + 5))
    assert float(t(1, 5)) == 1.0 and float(t(9, 99)) == 9.0  # clamped to the ends
    with pytest.raises(Exception, match="strictly increasing"):
        Table([4, 2], [1], [[1.0], [2.0]])


def test_instance_json_round_trip(tmp_path) -> None:
    problem = residual_problem(1)
    path = save_instance(tmp_path / "res.json", problem, budgets={"params": 0.5, "latency": 0.8})
    loaded, budgets, relative = load_instance(path)
    assert relative and budgets == {"params": 0.5, "latency": 0.8}
    a = solve_search(problem, budgets, mip_gap=1e-9)
    b = solve_search(loaded, budgets, mip_gap=1e-9)
    assert a.widths == b.widths and a.objective == pytest.approx(b.objective)


def test_bad_inputs_are_named() -> None:
    problem = chain_problem(0)
    with pytest.raises(InvalidParameterError, match="unknown resource"):
        solve_search(problem, {"energy": 0.5})
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        solve_search(problem, {"params": 0.5}, method="greedy")
    with pytest.raises(InvalidParameterError, match="not one of the groups"):
        SearchProblem(problem.groups, (LayerCost("x", "nope", 3, linear_costs()),))
    with pytest.raises(InvalidParameterError, match="no allowed width in common"):
        solve_search(SearchProblem((WidthGroup("a", np.ones(6), [2, 4]), WidthGroup("b", np.ones(6), [3, 5])),
                                   tuple(chain_layers(["a", "b"], 2, 2)), (("a", "b"),)), {"params": 0.5})


def test_scale_hundred_layers_is_solved_to_optimality() -> None:
    problem = synthetic_problem(100, round_to=8, min_width=8, seed=0)
    r = solve_search(problem, {"params": 0.5}, mip_gap=1e-4, time_limit=120)
    assert r.status == Status.OPTIMAL
    assert r.resources["params"] <= r.budgets["params"]
    assert r.solver_stats["gap"] <= 1e-4 + 1e-12
    assert not math.isnan(r.objective)


def test_build_search_milp_checks_the_budgets_first() -> None:
    groups = _groups((8, 8), 0, round_to=2, min_width=2)
    problem = SearchProblem(groups, tuple(chain_layers(["g0", "g1"], 10, 3)))
    smallest = minimum_resources(problem)["params"]
    with pytest.raises(InfeasibleBudgetError, match=f"smallest allowed widths need params={smallest:g}") as info:
        build_search_milp(problem, {"params": smallest - 1})
    assert info.value.smallest_feasible == smallest
    with pytest.raises(InvalidParameterError, match=r"unknown resource\(s\) \['bogus'\]"):
        build_search_milp(problem, {"bogus": 1.0})
    assert build_search_milp(problem, {"params": smallest}).model.n_vars > 0
