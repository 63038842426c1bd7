"""Reconstruction-optimal pruning (issue 24): the problem against direct least squares, the searches against brute
force over all subsets, and the Pruner path (the pruned model computes what the re-fitted problem predicts)."""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from optprune.errors import InvalidParameterError, SolverNotAvailableError
from optprune.pruning import DECISIONS, Pruner
from optprune.pruning._reconstruct import reconstruct, refit_consumers
from optprune.reconstruction import (
    ReconstructionProblem,
    elimination_path,
    greedy_backward,
    local_search,
    solve_reconstruction,
)
from optprune.reconstruction._problem import GramAccumulator
from optprune.structure import MultiHeadSelfAttention


def _data(rng: np.random.Generator, N: int = 30, n: int = 8, m: int = 5) -> tuple[np.ndarray, np.ndarray]:
    X = rng.standard_normal((N, n)) @ rng.standard_normal((n, n)) * 0.5 + 0.3 * rng.standard_normal((N, n))
    return X, rng.standard_normal((n, m))


def _brute(problem: ReconstructionProblem, k: int) -> float:
    best = np.inf
    for kept in itertools.combinations(range(problem.n_blocks), k):
        mask = np.zeros(problem.n_blocks, dtype=bool)
        mask[list(kept)] = True
        best = min(best, problem.error(mask))
    return best


def _ridge_lstsq(X: np.ndarray, Y: np.ndarray, lam: float) -> np.ndarray:
    A = np.vstack([X, np.sqrt(lam) * np.eye(X.shape[1])])
    B = np.vstack([Y, np.zeros((X.shape[1], Y.shape[1]))])
    return np.linalg.lstsq(A, B, rcond=None)[0]


@pytest.mark.parametrize("lam", [0.0, 0.7])
def test_error_and_refit_equal_least_squares_on_every_subset(lam: float) -> None:
    rng = np.random.default_rng(1)
    X, W = _data(rng, n=6)
    Y = X @ W
    P = ReconstructionProblem.from_activations(X, W, ridge=lam)
    assert P.ridge == lam and np.allclose(P.gram, X.T @ X) and np.allclose(P.cross, X.T @ Y)
    for r in range(7):
        for kept in itertools.combinations(range(6), r):
            mask = np.zeros(6, dtype=bool)
            mask[list(kept)] = True
            V = _ridge_lstsq(X[:, mask], Y, lam) if r else np.zeros((0, Y.shape[1]))
            direct = np.sum((Y - X[:, mask] @ V) ** 2) + lam * np.sum(V**2)
            assert P.error(mask) == pytest.approx(direct, rel=1e-9, abs=1e-9)
            if r:
                assert np.allclose(P.refit(mask), V, atol=1e-9)
                plain = np.sum((Y - X[:, mask] @ V) ** 2)
                assert P.error_of_weights(V, mask) == pytest.approx(plain, rel=1e-9, abs=1e-9 * P.total)


def test_rank_deficient_refit_is_the_minimum_norm_solution() -> None:
    rng = np.random.default_rng(2)
    X, W = _data(rng, n=5)
    X[:, 4] = X[:, 0]  # collinear: G_SS singular with ridge 0
    P = ReconstructionProblem.from_activations(X, W, ridge=0.0)
    ref = np.linalg.lstsq(X, X @ W, rcond=None)[0]
    assert np.allclose(P.refit(np.ones(5, dtype=bool)), ref, atol=1e-8)
    assert P.error(np.ones(5, dtype=bool)) == pytest.approx(0.0, abs=1e-8)


def test_centred_statistics_refit_the_bias_like_a_constant_column() -> None:
    rng = np.random.default_rng(3)
    X, W = _data(rng, n=6)
    X = X + 2.0
    Y = X @ W + np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    acc = GramAccumulator()
    for part in np.array_split(np.arange(X.shape[0]), 4):  # batches give the same statistics
        acc.add(X[part], Y[part])
    P = acc.problem(ridge=0.0, center=True)
    mask = np.array([True, False, True, True, False, True])
    A = np.hstack([X[:, mask], np.ones((X.shape[0], 1))])
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    assert np.allclose(P.refit(mask), sol[:-1], atol=1e-9)
    assert np.allclose(P.refit_bias(mask), sol[-1], atol=1e-9)
    assert P.error(mask) == pytest.approx(np.sum((Y - A @ sol) ** 2), rel=1e-9)


def test_from_gram_matches_from_activations() -> None:
    rng = np.random.default_rng(4)
    X, W = _data(rng)
    a = ReconstructionProblem.from_activations(X, W)
    b = ReconstructionProblem.from_gram(X.T @ X, W)
    assert np.allclose(a.cross, b.cross) and a.total == pytest.approx(b.total) and a.ridge == pytest.approx(b.ridge)
    assert a.ridge == pytest.approx(1e-6 * np.trace(X.T @ X) / X.shape[1])


@pytest.mark.parametrize("block_size", [1, 2])
def test_searches_against_brute_force(block_size: int) -> None:
    rng = np.random.default_rng(10 + block_size)
    hits, cases = 0, 0
    for trial in range(12):
        X, W = _data(rng, n=10 if block_size == 1 else 10)
        blocks = None if block_size == 1 else np.repeat(np.arange(5), 2)
        P = ReconstructionProblem.from_activations(X, W, blocks=blocks, ridge=0.0 if trial % 2 else 0.1)
        k = int(rng.integers(1, P.n_blocks))
        best = _brute(P, k)
        tol = 1e-9 * P.total
        greedy = greedy_backward(P, k)
        local = local_search(P, k)
        assert greedy.objective >= best - tol and local.objective >= best - tol
        assert local.objective <= greedy.objective + tol
        assert local.keep.sum() == k * block_size and local.weights.shape == (k * block_size, W.shape[1])
        assert local.objective == pytest.approx(P.error(local.keep), rel=1e-12)
        hits += local.objective <= best + tol
        cases += 1
    assert hits >= cases - 2, (hits, cases)  # local search finds the optimum on (almost) every small case


def _naive_greedy(problem: ReconstructionProblem, k: int) -> list[int]:
    """Backward elimination by recomputing E for every candidate removal (the definition, no updates)."""
    kept = list(range(problem.n_blocks))
    order = []
    while len(kept) > k:
        costs = [problem.error(np.isin(np.arange(problem.n_blocks), [b for b in kept if b != c])) for c in kept]
        order.append(kept.pop(int(np.argmin(costs))))
    return order


@pytest.mark.parametrize("block_size", [1, 3])
def test_in_place_elimination_removes_what_the_definition_removes(block_size: int) -> None:
    from optprune.reconstruction._search import _eliminate

    rng = np.random.default_rng(40 + block_size)
    n = 24 if block_size == 1 else 18
    X, W = _data(rng, N=60, n=n, m=7)
    P = ReconstructionProblem.from_activations(X, W, blocks=np.repeat(np.arange(n // block_size), block_size),
                                               ridge=0.05)
    for refresh in (3, 50):  # compaction and exact refresh inside the run, or only at half
        path = _eliminate(P, 2, refresh=refresh, track=True)
        assert path.order == _naive_greedy(P, 2)
        for t in range(len(path.order)):
            kept = np.isin(np.arange(P.n_blocks), path.order[: t + 1], invert=True)
            assert path.errors[t] == pytest.approx(P.error(kept), rel=1e-8)
        assert sorted(path.state.blocks) == sorted(set(range(P.n_blocks)) - set(path.order))


@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_cheap_bound_is_valid_and_equals_the_monotone_and_spectral_bounds(ridge: float) -> None:
    from optprune.reconstruction._bound import bound_details

    rng = np.random.default_rng(9)
    X, W = _data(rng, N=40, n=9, m=12)  # outputs outnumber units: the spectral bound is informative
    P = ReconstructionProblem.from_activations(X, W, ridge=ridge)
    for k in range(1, P.n_blocks):
        best = _brute(P, k)
        for solve in (greedy_backward, local_search):
            r = solve(P, k, bound="cheap")
            d = bound_details(P, k, iterations=0)
            assert r.lower_bound <= best + 1e-12 * P.total and r.gap >= 0
            assert r.lower_bound == pytest.approx(max(d.monotone, np.nan_to_num(d.spectral, nan=0.0)) - 1e-9 * P.total,
                                                  rel=1e-6, abs=1e-9 * P.total)
            assert solve(P, k, bound="none").lower_bound is None
    with pytest.raises(InvalidParameterError, match="bound must be one of full, cheap, none"):
        local_search(P, 2, bound="tight")


def test_local_search_from_a_bad_start_never_goes_up() -> None:
    rng = np.random.default_rng(5)
    X, W = _data(rng, n=10)
    P = ReconstructionProblem.from_activations(X, W)
    worst = np.zeros(10, dtype=bool)
    worst[:4] = True
    r = local_search(P, 4, start=worst, strategy="first")
    assert r.objective <= min(P.error(worst), greedy_backward(P, 4).objective) + 1e-9 * P.total
    assert r.status in ("local_optimum", "max_rounds", "time_limit")
    assert local_search(P, 4, max_rounds=0).info["swaps"] == 0


@pytest.mark.parametrize("blocks", [None, np.repeat(np.arange(4), 2)])
def test_elimination_path_values_equal_the_objective_at_every_width(blocks) -> None:
    rng = np.random.default_rng(6)
    X, W = _data(rng)
    P = ReconstructionProblem.from_activations(X, W, blocks=blocks)
    path = elimination_path(P)
    assert path.errors.shape == (P.n_blocks + 1,) and sorted(path.order.tolist()) == list(range(P.n_blocks))
    assert path.errors[0] == pytest.approx(P.total)
    for k in range(P.n_blocks + 1):
        assert path.errors[k] == pytest.approx(P.error(path.keep(k)), rel=1e-7, abs=1e-9 * P.total)
        if 0 < k < P.n_blocks:
            assert path.errors[k] == pytest.approx(greedy_backward(P, k, bound=False).objective, rel=1e-7)


def test_solve_reconstruction_dispatch_and_errors() -> None:
    rng = np.random.default_rng(7)
    X, W = _data(rng)
    P = ReconstructionProblem.from_activations(X, W)
    assert solve_reconstruction(P, 3, "greedy").method == "greedy"
    assert solve_reconstruction(P, 3).method == "local"
    assert solve_reconstruction(P, 3, "auto").objective <= solve_reconstruction(P, 3, "greedy").objective + 1e-9
    with pytest.raises(InvalidParameterError, match="method must be one of"):
        solve_reconstruction(P, 3, "magic")
    with pytest.raises(InvalidParameterError, match="k_blocks must be an integer in 0..8"):
        greedy_backward(P, 9)
    if importlib.util.find_spec("optprune.reconstruction._exact") is None:
        with pytest.raises(SolverNotAvailableError, match="method 'exact'"):
            solve_reconstruction(P, 3, "exact")


def _calibration(shape: tuple[int, ...], n: int = 64) -> torch.Tensor:
    return torch.randn((n, *shape), generator=torch.Generator().manual_seed(0))


def _squared_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).sum())


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4)), (6,)),
    "conv": (lambda: nn.Sequential(nn.Conv2d(2, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 3, 3, padding=1)),
             (2, 5, 5)),
    "heads": (lambda: nn.Sequential(MultiHeadSelfAttention(8, 4)), (3, 8)),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_pruned_model_computes_what_the_refit_predicts(kind: str) -> None:
    make, shape = MODELS[kind]
    torch.manual_seed(0)
    model = make().double()
    X = _calibration(shape).double()
    pruned, decision, reports = reconstruct(model, (X, None), 0.5, shape, solver="local", ridge=0.0)
    assert len(reports) == 1 and reports[0]["kept"] == reports[0]["width"] // 2
    with torch.no_grad():
        err = _squared_error(pruned(X), model(X))
    assert err == pytest.approx(reports[0]["objective"], rel=1e-6, abs=1e-9)
    # the re-fit beats keeping the same units without it (masked consumer columns, original weights)
    from optprune.pruning import apply_decision

    with torch.no_grad():
        assert err <= _squared_error(apply_decision(model, decision)(X), model(X)) + 1e-9


def test_reconstruct_decision_through_the_registry_and_refit_after_a_scorer() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    X = _calibration((6,), 128)
    rule = DECISIONS.get("reconstruct")
    out = rule.prune(model, (X.numpy(), None), (6,), 0.5, solver="greedy", calibration_size=100)
    assert out.decision.new_widths == {"0": 8, "2": 6} and out.info["calibration_size"] == 100
    assert {"objective", "seconds", "groups"} <= set(out.info)
    with pytest.raises(InvalidParameterError, match="unknown option"):
        rule.prune(model, (X.numpy(), None), (6,), 0.5, bogus=1)
    pruner = Pruner("l1", ratio=0.5).fit(model, (X, None))
    plain = pruner.transform()
    refit, reports = refit_consumers(plain, model, (X, None), pruner.decision_, ridge=0.0)
    assert [r["layer"] for r in reports] == ["2", "4"]
    assert all(r["objective"] <= r["before"] + 1e-6 for r in reports)
    with torch.no_grad():
        assert _squared_error(refit(X), model(X)) < _squared_error(plain(X), model(X))


def test_cli_prune_reconstruct_json_keys(capsys, tmp_path) -> None:
    from optprune.cli import main
    from optprune.io import save_torch_model
    from optprune.training import digits_mlp

    path = tmp_path / "digits_24.pt"
    save_torch_model(digits_mlp([24], seed=0, epochs=3), path)
    main(["prune", str(path), "--scorer", "l1", "--ratio", "0.5", "--data", "digits", "--json"])
    plain = json.loads(capsys.readouterr().out)
    main(["prune", str(path), "--method", "reconstruct", "--ratio", "0.5", "--data", "digits", "--json"])
    captured = capsys.readouterr()
    rec = json.loads(captured.out)
    assert set(rec) == set(plain) and rec["group_widths"] == plain["group_widths"]
    assert rec["method_info"]["groups"][0]["kept"] == 12 and "objective" in captured.err
    err = " ".join(captured.err.split())  # per-group progress on stderr: layer, budget, objective, gap, seconds
    for g in rec["method_info"]["groups"]:
        assert f"group {g['group']}: keep {g['kept']}/{g['width']}" in err and "gap" in err
    main(["prune", str(path), "--scorer", "l1", "--ratio", "0.5", "--data", "digits", "--refit", "--json"])
    refit = json.loads(capsys.readouterr().out)
    assert refit["method_info"]["refit"][0]["layer"] and set(refit) == set(plain)


def test_cli_option_reaches_the_decision_and_is_checked_before_any_work(capsys, tmp_path) -> None:
    from optprune.cli import main
    from optprune.io import save_torch_model
    from optprune.training import digits_mlp

    path = tmp_path / "digits_24x16.pt"
    save_torch_model(digits_mlp([24, 16], seed=0, epochs=3), path)
    base = ["prune", str(path), "--method", "reconstruct", "--ratio", "0.5", "--data", "digits", "--json"]
    main([*base, "--option", "allocation=search"])
    searched = json.loads(capsys.readouterr().out)
    assert searched["method_info"]["allocation"] == "search"
    main(base)
    uniform = json.loads(capsys.readouterr().out)
    assert searched["params_after"] <= uniform["params_after"]  # the search keeps the uniform widths' budget
    for bad, says in (("bogus=1", "unknown option 'bogus'; allowed: solver, allocation"),
                      ("allocation=nope", "'allocation' must be one of 'uniform', 'search'; got 'nope'"),
                      ("noequals", "--option must read KEY=VALUE")):
        with pytest.raises(SystemExit) as exc:
            main([*base, "--option", bad])
        err = json.loads(capsys.readouterr().out)
        assert exc.value.code == 2 and says in err["error"], err
    with pytest.raises(SystemExit):
        main(["prune", str(path), "--scorer", "l1", "--ratio", "0.5", "--data", "digits", "--option", "a=1", "--json"])
    assert "takes a scorer" in json.loads(capsys.readouterr().out)["error"]
