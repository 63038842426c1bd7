"""Global width allocation from per-group error curves (issue 24): exact against brute force under every budget
kind, the budget holds on a pruned torch model, normalisation by output energy, value curves in the search."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from optprune.errors import InfeasibleBudgetError, ShapeMismatchError
from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups
from optprune.search import (
    Bilinear,
    LayerCost,
    SearchProblem,
    Table,
    WidthGroup,
    allocate_widths,
    chain_layers,
    error_values,
    linear_costs,
    problem_from_dict,
    problem_to_dict,
    solve_search,
)
from optprune.search._unstable import expected_unstable_of_widths
from optprune.solvers import backend_names, get_backend
from optprune.training import make_mlp


def convex_curve(n: int, energy: float, rng: np.random.Generator) -> np.ndarray:
    """A hand-made convex, decreasing error curve E[0..n] with E[0] = energy and E[n] >= 0."""
    gains = np.sort(rng.gamma(1.5, 1.0, n))[::-1]
    gains *= rng.uniform(0.6, 1.0) * energy / gains.sum()  # the full group explains 60-100% of the energy
    return energy - np.concatenate([[0.0], np.cumsum(gains)])


def curves_for(sizes, seed, energies=None):
    rng = np.random.default_rng(seed)
    energies = energies or [float(rng.uniform(0.5, 50.0)) for _ in sizes]
    return {f"g{i}": convex_curve(n, e, rng) for i, (n, e) in enumerate(zip(sizes, energies))}


def brute(curves, layers, budgets, *, normalize=True):
    """Best widths by enumeration: min sum_g E_g(k_g) / T_g over widths 1..n_g meeting the relative budgets."""
    names = list(curves)
    groups = tuple(WidthGroup(n, np.ones(curves[n].size - 1)) for n in names)  # only for the resource counts
    problem = SearchProblem(groups, tuple(layers))
    full = problem.full_resources()
    best, best_err = None, np.inf
    for ks in itertools.product(*[range(1, curves[n].size) for n in names]):
        widths = dict(zip(names, ks))
        use = problem.resources(widths)
        if any(use[r] > frac * full[r] * (1 + 1e-12) for r, frac in budgets.items()):
            continue
        err = sum(curves[n][k] / (curves[n][0] if normalize else 1.0) for n, k in widths.items())
        if err < best_err - 1e-12:
            best, best_err = widths, err
    return best, best_err


def relative_error(curves, widths, normalize=True):
    return sum(curves[n][k] / (curves[n][0] if normalize else 1.0) for n, k in widths.items())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("frac", [0.3, 0.5, 0.7])
@pytest.mark.parametrize("normalize", [True, False])
def test_parameter_budget_equals_brute_force(seed: int, frac: float, normalize: bool) -> None:
    curves = curves_for((5, 6, 4), seed)
    layers = chain_layers(list(curves), 7, 3)
    widths, result = allocate_widths(curves, {"input": 7, "output": 3}, {"params": frac}, normalize=normalize,
                                     return_result=True)
    expect, expect_err = brute(curves, layers, {"params": frac}, normalize=normalize)
    assert result.resources["params"] <= frac * result.full_resources["params"] + 1e-9
    assert relative_error(curves, widths, normalize) == pytest.approx(expect_err, abs=1e-9)
    assert widths == expect  # random continuous curves: the optimum is unique
    assert result.objective == pytest.approx(sum(error_values(curves, normalize=normalize)[n][k]
                                                 for n, k in widths.items()))


def conv_layers(names):
    """A conv chain: 3x3 kernels on shrinking maps, so FLOPs weigh early layers far more than parameters do."""
    hw = [16, 8, 4]
    ends = [3, *names, 5]
    out = []
    for i, (a, b) in enumerate(zip(ends, ends[1:])):
        if i < len(names):
            out.append(LayerCost(f"conv{i}", a, b, {"params": Bilinear(in_out=9, out=1),
                                                    "flops": Bilinear(in_out=9 * hw[i] ** 2)}))
        else:
            out.append(LayerCost("head", a, b, linear_costs(spatial_in=hw[-1] ** 2)))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("budgets", [{"flops": 0.4}, {"flops": 0.6}, {"params": 0.5, "flops": 0.5}])
def test_flop_budget_equals_brute_force(seed: int, budgets: dict) -> None:
    curves = curves_for((6, 5, 6), 10 + seed)
    layers = conv_layers(list(curves))
    widths = allocate_widths(curves, layers, budgets)
    expect, expect_err = brute(curves, layers, budgets)
    assert relative_error(curves, widths) == pytest.approx(expect_err, abs=1e-9)
    assert widths == expect


def test_flop_and_parameter_budgets_allocate_differently() -> None:
    """FLOPs make the early (large-map) layers expensive, parameters the wide late ones: the optimum moves."""
    curves = curves_for((6, 5, 6), 3, energies=[10.0, 10.0, 10.0])
    layers = conv_layers(list(curves))
    by_params = allocate_widths(curves, layers, {"params": 0.4})
    by_flops = allocate_widths(curves, layers, {"flops": 0.4})
    assert by_params != by_flops
    assert by_flops["g0"] < by_params["g0"]


@pytest.mark.parametrize("seed", range(3))
def test_latency_table_and_unstable_budgets_equal_brute_force(seed: int) -> None:
    """Every other budget kind: a measured latency table and expected unstable ReLUs along the kept order."""
    rng = np.random.default_rng(seed)
    curves = curves_for((5, 4, 5), 20 + seed)
    layers = chain_layers(list(curves), 6, 2)
    layers.append(LayerCost("lat", "g0", "g1", {"latency": Table([1, 3, 5], [1, 4], rng.uniform(0.5, 2.0, (3, 2)))}))
    orders = {n: rng.permutation(c.size - 1) for n, c in curves.items()}
    freqs = {n: rng.uniform(0, 1, c.size - 1) for n, c in curves.items()}
    rank = {n: np.argsort(o) * -1.0 for n, o in orders.items()}  # scores whose decreasing order is orders[n]
    budgets = {"params": 0.7, "latency": 0.8, "unstable": 0.5}
    widths, result = allocate_widths(curves, layers, budgets, orders=orders, frequencies=freqs, return_result=True)
    full_unstable = sum(f.sum() for f in freqs.values())
    expect, expect_err = brute_with_unstable(curves, layers, freqs, rank, budgets)
    assert relative_error(curves, widths) == pytest.approx(expect_err, abs=1e-9)
    assert widths == expect
    assert result.resources["unstable"] == pytest.approx(expected_unstable_of_widths(rank, freqs, widths))
    assert result.resources["unstable"] <= 0.5 * full_unstable + 1e-9
    for n, w in widths.items():  # the kept units follow the given order
        assert result.kept[n].tolist() == sorted(orders[n][:w].tolist())


def brute_with_unstable(curves, layers, freqs, rank, budgets):
    names = list(curves)
    problem = SearchProblem(tuple(WidthGroup(n, np.ones(curves[n].size - 1)) for n in names), tuple(layers))
    full = problem.full_resources()
    full["unstable"] = sum(f.sum() for f in freqs.values())
    best, best_err = None, np.inf
    for ks in itertools.product(*[range(1, curves[n].size) for n in names]):
        widths = dict(zip(names, ks))
        use = problem.resources(widths)
        use["unstable"] = expected_unstable_of_widths(rank, freqs, widths)
        if any(use[r] > frac * full[r] * (1 + 1e-12) for r, frac in budgets.items()):
            continue
        err = relative_error(curves, widths)
        if err < best_err - 1e-12:
            best, best_err = widths, err
    return best, best_err


def parallel_layers():
    """Two groups of 8 on parallel branches with identical costs: only the curves can tell them apart."""
    return [
        LayerCost("a_in", 10, "a", linear_costs()), LayerCost("a_out", "a", 4, linear_costs()),
        LayerCost("b_in", 10, "b", linear_costs()), LayerCost("b_out", "b", 4, linear_costs()),
    ]


def test_normalisation_makes_layers_of_different_scales_comparable() -> None:
    """Same relative curve, outputs 100x apart: normalised, the even split; raw, the loud layer takes the budget."""
    shape = convex_curve(8, 1.0, np.random.default_rng(5))
    curves = {"a": 100.0 * shape, "b": shape.copy()}
    normalised = allocate_widths(curves, parallel_layers(), {"params": 0.52})  # 4 + 4 units fit
    raw = allocate_widths(curves, parallel_layers(), {"params": 0.52}, normalize=False)
    assert normalised["a"] == normalised["b"] == 4  # strictly convex and symmetric: the even split is optimal
    assert raw["a"] > raw["b"]
    assert raw["a"] + raw["b"] == 8
    # a given output energy replaces E(0): declaring b's output 100x louder gives it the budget instead
    louder_b = allocate_widths(curves, parallel_layers(), {"params": 0.52}, energy={"a": 100.0, "b": 0.01})
    assert louder_b["b"] > louder_b["a"]
    # scale invariance: rescaling one layer's curve changes nothing once normalised
    scaled = allocate_widths({"a": 7.0 * curves["a"], "b": curves["b"]}, parallel_layers(), {"params": 0.52})
    assert scaled == normalised


def test_error_values() -> None:
    curves = {"a": np.array([4.0, 2.0, 1.0, 0.0]), "dead": np.zeros(3)}
    v = error_values(curves)
    np.testing.assert_allclose(v["a"], [0.0, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(v["dead"], 0.0)  # no output energy: every width is worth nothing
    np.testing.assert_allclose(error_values(curves, normalize=False)["a"], [0.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(error_values(curves, energy={"a": 8.0})["a"], [0.0, 0.25, 0.375, 0.5])
    with pytest.raises(ShapeMismatchError, match="width 0..n"):
        error_values({"a": np.array([1.0])})
    with pytest.raises(ShapeMismatchError, match="permutation"):
        allocate_widths({"a": np.array([2.0, 1.0, 0.0])}, {"input": 3, "output": 2}, 0.5, orders={"a": [0, 0]})


def test_infeasible_budget_is_named() -> None:
    curves = curves_for((4, 4), 0)
    with pytest.raises(InfeasibleBudgetError):
        allocate_widths(curves, {"input": 5, "output": 2}, {"params": 0.01})


def test_value_curve_groups_round_trip_and_baselines() -> None:
    rng = np.random.default_rng(1)
    curves = curves_for((5, 6, 4), 1)
    values = error_values(curves)
    orders = {n: rng.permutation(c.size - 1) for n, c in curves.items()}
    groups = tuple(WidthGroup.from_curve(n, values[n], orders[n]) for n in curves)
    problem = SearchProblem(groups, tuple(chain_layers(list(curves), 7, 3)))
    again, _, _ = problem_from_dict(problem_to_dict(problem))
    for g, h in zip(problem.groups, again.groups):
        np.testing.assert_array_equal(g.values, h.values)
        np.testing.assert_array_equal(g.order, orders[g.name])
        np.testing.assert_array_equal(h.order, orders[g.name])
    # the gains along the order are the unit scores a threshold compares
    g0 = problem.groups[0]
    np.testing.assert_allclose(g0.unit_scores[orders["g0"]], np.diff(values["g0"]))
    best = solve_search(problem, {"params": 0.5}).objective
    for method in ("uniform", "global"):
        res = solve_search(problem, {"params": 0.5}, method=method)
        assert res.resources["params"] <= 0.5 * res.full_resources["params"] + 1e-9
        assert res.objective <= best + 1e-12
    with pytest.raises(ShapeMismatchError, match="one value per width"):
        WidthGroup("x", np.ones(3), values=np.ones(3))


# ----------------------------------------------------------------------------- a real torch model
def _curves_by_least_squares(model: torch.nn.Module, shape, n_samples: int = 64):
    """Error curves of every hidden group of an MLP: its consumer re-fitted by least squares along a greedy
    backward elimination (a small, independent stand-in for optprune.reconstruction.elimination_path)."""
    torch.manual_seed(1)
    x = torch.randn(n_samples, *shape)
    groups, _ = dependency_groups(model, shape)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    acts, h = [], x
    with torch.no_grad():
        for lin in linears[:-1]:
            h = torch.relu(lin(h))
            acts.append(h.double().numpy())
    curves, orders = {}, {}
    for g, a, consumer in zip([g for g in groups if g.prunable], acts, linears[1:]):
        w = consumer.weight.detach().double().numpy().T  # (n, m)
        target = a @ w
        kept, removed = list(range(a.shape[1])), []

        def err(cols, a=a, target=target):
            if not cols:
                return float((target**2).sum())
            sol = np.linalg.lstsq(a[:, cols], target, rcond=None)[0]
            return float(((target - a[:, cols] @ sol) ** 2).sum())

        e = {len(kept): err(kept)}
        while kept:
            drop = min(kept, key=lambda j: err([i for i in kept if i != j]))
            kept.remove(drop)
            removed.append(drop)
            e[len(kept)] = err(kept)
        curves[g.name] = np.array([e[k] for k in range(a.shape[1] + 1)])
        orders[g.name] = np.array(removed[::-1])
    return curves, orders


@pytest.mark.parametrize("frac", [0.35, 0.6])
def test_budget_holds_on_a_pruned_torch_model(frac: float) -> None:
    torch.manual_seed(0)
    shape = (12,)
    model = make_mlp([12, 10, 8, 6, 3])
    curves, orders = _curves_by_least_squares(model, shape)
    assert all(np.all(np.diff(c) <= 1e-9 * c[0]) for c in curves.values())  # non-increasing in the width
    widths, result = allocate_widths(curves, model, {"params": frac}, orders=orders, input_shape=shape,
                                     return_result=True)
    groups, _ = dependency_groups(model, shape)
    full = {g.name: g.width for g in groups if g.prunable}
    kept = {n: result.kept[n].tolist() for n in widths}
    pruned = apply_decision(model, PruningDecision(kept, full, shape))
    assert count_parameters(pruned) == result.resources["params"]
    assert count_parameters(pruned) <= frac * count_parameters(model)
    assert {n: len(k) for n, k in kept.items()} == widths
    for n, w in widths.items():
        assert kept[n] == sorted(orders[n][:w].tolist())
    # and it is the best plan under that budget (enumeration, parameters counted by hand)
    names = list(curves)
    best = np.inf
    for ks in itertools.product(*[range(1, curves[n].size) for n in names]):
        w = dict(zip(names, ks))
        params = _mlp_params([12, *ks, 3])
        if params <= frac * count_parameters(model):
            best = min(best, relative_error(curves, w))
    assert relative_error(curves, widths) == pytest.approx(best, abs=1e-12)
    assert result.status.value == "optimal"


def _mlp_params(sizes) -> int:
    return int(sum((a + 1) * b for a, b in zip(sizes, sizes[1:])))



def test_min_width_above_a_group_size_keeps_the_group() -> None:
    """As the reconstruct decision's ``min_keep``: a floor above a group's size keeps that group whole."""
    torch.manual_seed(0)
    shape = (12,)
    model = make_mlp([12, 10, 8, 3, 3])
    curves, _ = _curves_by_least_squares(model, shape)
    widths = allocate_widths(curves, model, {"params": 0.8}, min_width=4, input_shape=shape)
    sizes = {n: c.size - 1 for n, c in curves.items()}
    assert all(w >= min(4, sizes[n]) for n, w in widths.items())
    assert widths[[n for n in sizes if sizes[n] == 3][0]] == 3
    chain = allocate_widths(curves_for((5, 2), 0), {"input": 6, "output": 2}, 0.9, min_width={"g0": 2, "g1": 3})
    assert chain["g1"] == 2 and chain["g0"] >= 2


def test_reconstruct_decision_with_search_allocation() -> None:
    """``allocation="search"`` in the reconstruct decision: no more parameters than uniform at the same ratio,
    widths = allocate_widths on the dense model's elimination curves."""
    from optprune.pruning._reconstruct import consumer_problem, reconstruct
    from optprune.reconstruction import elimination_path
    from optprune.scoring import as_batches

    torch.manual_seed(0)
    shape = (12,)
    model = make_mlp([12, 10, 8, 6, 3])
    calibration = (torch.randn(96, 12), torch.zeros(96, dtype=torch.long))
    uniform, _, _ = reconstruct(model, calibration, 0.5, shape, solver="greedy")
    searched, decision, _ = reconstruct(model, calibration, 0.5, shape, solver="greedy", allocation="search")
    assert count_parameters(searched) <= count_parameters(uniform)
    groups = [g for g in dependency_groups(model, shape)[0] if g.prunable]
    batches = as_batches(calibration)
    curves = {g.name: elimination_path(consumer_problem(model, model, g, batches, "auto")[0]).errors for g in groups}
    expect = allocate_widths(curves, model, {"params": count_parameters(uniform) / count_parameters(model)},
                             input_shape=shape)
    assert decision.new_widths == expect


@pytest.mark.parametrize("solver", backend_names())
def test_every_backend_allocates_the_brute_force_optimum(solver: str) -> None:
    backend = get_backend(solver)
    if not backend.is_available():
        pytest.skip(f"backend {solver!r} is not installed: {backend.install_hint}")
    curves = curves_for((5, 6, 4), 7)
    layers = conv_layers(list(curves))
    widths, result = allocate_widths(curves, layers, {"params": 0.5, "flops": 0.45}, solver, mip_gap=1e-9,
                                     return_result=True)
    _, best = brute(curves, layers, {"params": 0.5, "flops": 0.45})
    assert result.resources["params"] <= 0.5 * result.full_resources["params"] + 1e-9
    assert result.resources["flops"] <= 0.45 * result.full_resources["flops"] + 1e-9
    # integer-only backends solve a scaled model: optimal up to its reported rounding of the values
    tolerance = 1e-9 if backend.supports_continuous else 1e-5 * len(curves)
    assert relative_error(curves, widths) == pytest.approx(best, abs=tolerance)
