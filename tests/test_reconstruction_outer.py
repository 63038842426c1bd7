"""The exact selections (branch and bound, the "exact" method; outer approximation, "outer") against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from optprune.errors import InvalidParameterError
from optprune.formulations.reconstruction import build_outer_master
from optprune.reconstruction._bnb import _project_box, solve_bnb
from optprune.reconstruction._outer import PerspectiveOracle, perspective_split, solve_outer
from optprune.reconstruction._problem import ReconstructionProblem
from optprune.reconstruction._search import RECONSTRUCTION_METHODS, local_search, solve_reconstruction
from optprune.solvers import get_backend, solve


def _problem(seed: int, n: int, m: int, blocks=None, ridge="auto", relu: bool = True) -> ReconstructionProblem:
    """Activations of a random ReLU layer (dead units possible) and a random consumer."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * n + 5, n)) @ rng.normal(size=(n, n)) / np.sqrt(n) + 0.3 * rng.normal(size=(3 * n + 5, n))
    if relu:
        X = np.maximum(X + 0.2, 0.0)
    return ReconstructionProblem.from_activations(X, rng.normal(size=(n, m)), blocks=blocks, ridge=ridge)


def _brute_force(problem: ReconstructionProblem, k: int) -> float:
    with threadpool_limits(1, user_api="blas"):  # thousands of tiny factorisations: threads only contend
        return min(problem.error(np.isin(problem.block_ids, chosen))
                   for chosen in itertools.combinations(range(problem.n_blocks), k))


CASES = [  # seed, n, m, blocks, ridge
    (0, 8, 3, None, "auto"),
    (1, 9, 12, None, "auto"),
    (2, 10, 5, None, 1e-2),
    (3, 10, 4, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4], "auto"),
    (4, 9, 6, [0, 0, 0, 1, 1, 1, 2, 2, 2], 0.5),
    (5, 8, 2, [0, 0, 1, 1, 2, 2, 3, 3], "auto"),
    (6, 10, 7, None, 0.0),
]


@pytest.mark.parametrize("method", [solve_bnb, solve_outer], ids=["bnb", "outer"])
@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}_n{c[1]}_{'blocks' if c[3] else 'units'}" for c in CASES])
def test_exact_equals_brute_force(case, method) -> None:
    seed, n, m, blocks, ridge = case
    problem = _problem(seed, n, m, blocks, ridge, relu=seed % 2 == 0)
    B = problem.n_blocks
    for k in sorted({0, 1, B // 2, B - 1, B}):
        best = _brute_force(problem, k)
        result = method(problem, k, time_limit=10.0)
        assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12 * problem.total)
        assert result.objective == problem.error(result.keep)  # the package's objective, with its ridge
        assert result.status == "optimal" and result.method == ("exact" if method is solve_bnb else "outer")
        assert result.gap is not None and 0.0 <= result.gap <= 1e-6
        assert result.lower_bound <= best * (1 + 1e-9) + 1e-12
        heuristic = local_search(problem, k, bound=False)
        assert result.objective <= heuristic.objective * (1 + 1e-12) + 1e-12
        assert result.weights.shape == (int(result.keep.sum()), m)
        assert np.allclose(result.weights, problem.refit(result.keep))


def test_perspective_value_is_the_error_at_binary_points_and_the_cuts_underestimate() -> None:
    problem = _problem(7, 7, 4, blocks=[0, 0, 1, 1, 2, 3, 3])
    A = problem.gram + problem.ridge * np.eye(7)
    gamma = perspective_split(A)
    assert np.all(gamma >= 0) and np.linalg.eigvalsh(A - np.diag(gamma))[0] >= -1e-9 * np.trace(A)
    assert np.mean(gamma / np.diag(A)) > 0.05  # the max-trace split is far from the plain ridge
    oracle = PerspectiveOracle(problem, gamma)
    binary = [np.array(bits, dtype=bool) for bits in itertools.product([False, True], repeat=4)]
    cuts = [oracle.binary(z) for z in binary]
    for z, (value, grad) in zip(binary, cuts):
        assert value == pytest.approx(problem.error(z[problem.block_ids]), rel=1e-10, abs=1e-12)
        frac_value, frac_grad = oracle.fractional(z.astype(float))  # the general formula agrees
        assert frac_value == pytest.approx(value, rel=1e-8)
        assert np.allclose(frac_grad, grad, rtol=1e-6, atol=1e-8 * problem.total)
    for z_t, (value_t, grad_t) in zip(binary, cuts):  # every cut lies below E at every binary point
        for z, (value, _) in zip(binary, cuts):
            assert value_t + grad_t @ (z.astype(float) - z_t) <= value + 1e-9 * problem.total
    rng = np.random.default_rng(0)  # and below f (convexity) at fractional points
    for _ in range(20):
        z = rng.uniform(size=4)
        value, _ = oracle.fractional(z)
        for z_t, (value_t, grad_t) in zip(binary, cuts):
            assert value_t + grad_t @ (z - z_t) <= value + 1e-9 * problem.total


@pytest.mark.parametrize("method", [solve_bnb, solve_outer], ids=["bnb", "outer"])
def test_gap_is_never_negative_and_a_time_limit_reports_a_valid_bound(method) -> None:
    problem = _problem(8, 40, 6)
    result = method(problem, 20, time_limit=0.3)
    assert result.status in ("optimal", "time_limit")
    assert result.gap is not None and result.gap >= 0.0
    assert result.lower_bound <= result.objective
    assert result.objective <= local_search(problem, 20, bound=False).objective * (1 + 1e-12)
    if result.status == "time_limit":
        assert result.gap > 1e-6


def test_branch_and_bound_proves_a_group_of_sixteen_with_a_weak_root() -> None:
    problem = _problem(12, 16, 12)
    best = _brute_force(problem, 8)
    result = solve_bnb(problem, 8, time_limit=20.0)
    assert result.status == "optimal" and result.objective == pytest.approx(best, rel=1e-9)
    assert result.info["bound_root"] < best * (1 - 1e-3)  # the root alone did not prove it: the search did


def test_node_split_is_valid_and_its_certificate_underestimates_every_completion() -> None:
    from optprune.reconstruction._bnb import _node_bound, _node_split
    from optprune.reconstruction._outer import checked_split

    rng = np.random.default_rng(3)
    for seed, blocks in ((20, None), (21, np.repeat(np.arange(5), 2))):
        problem = _problem(seed, 10, 6, blocks=blocks)
        B, k = problem.n_blocks, problem.n_blocks // 2
        A, gamma = checked_split(problem, "test")
        raised = 0
        for _ in range(6):
            order = rng.permutation(B)
            lo, hi = np.zeros(B), np.ones(B)
            lo[order[:1]] = 1.0
            hi[order[1:3]] = 0.0
            lo_u, hi_u = lo[problem.block_ids], hi[problem.block_ids]
            node = _node_split(A, gamma, lo_u, hi_u, 1e-9)
            live = hi_u > 0
            free = (hi_u > lo_u)[live]
            M = A[np.ix_(live, live)] - np.diag(np.where(free, node[live], 0.0))
            assert np.linalg.eigvalsh(M)[0] >= -1e-9 * np.trace(A) and (node >= gamma).all()
            raised += bool((node > gamma).any())
            bound, _ = _node_bound(PerspectiveOracle(problem, node), k, lo, hi, np.full(B, k / B), 60)
            completions = [c for c in itertools.combinations(np.flatnonzero(hi > lo), k - 1)]
            best = min(problem.error(np.isin(problem.block_ids, [*np.flatnonzero(lo > 0), *c])) for c in completions)
            assert bound <= best * (1 + 1e-9) + 1e-12
        assert raised  # the shift is not void on these nodes


def test_projection_onto_the_capped_box() -> None:
    rng = np.random.default_rng(3)
    for size in (5, 300):  # the exact kink search and the bisection
        for _ in range(10):
            y = rng.normal(size=size) * 2.0
            lo = (rng.uniform(size=size) < 0.2).astype(float)
            hi = np.maximum(lo, (rng.uniform(size=size) > 0.2).astype(float))
            k = int(lo.sum()) + int(rng.integers(0, int((hi - lo).sum()) + 1))
            z = _project_box(y, k, lo, hi)
            assert np.all(z >= lo) and np.all(z <= hi) and z.sum() == pytest.approx(k, abs=1e-9)
            for _ in range(5):  # the projection is closer to y than other feasible points
                other = _project_box(rng.normal(size=size), k, lo, hi)
                assert np.sum((z - y) ** 2) <= np.sum((other - y) ** 2) + 1e-9


def test_master_milp_is_the_cut_model() -> None:
    points = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    values = np.array([5.0, 3.0])
    grads = np.array([[1.0, -2.0, -4.0], [-1.0, 0.0, 2.0]])
    model = build_outer_master(3, 2, points, values, grads, theta_lower=-100.0, scale=2.0)
    assert model.n_integer == 3 and model.groups["theta"].size == 1
    result = solve(model, "highs")
    best = min(max(float(values[t] + grads[t] @ (np.array(z) - points[t])) for t in range(2))
               for z in ([1, 1, 0], [1, 0, 1], [0, 1, 1]))
    assert result.objective * 2.0 == pytest.approx(best)
    with pytest.raises(InvalidParameterError, match="k"):
        build_outer_master(3, 4, points, values, grads)


def test_registry_and_errors() -> None:
    problem = _problem(9, 6, 3)
    assert RECONSTRUCTION_METHODS.get("exact", "test") is solve_bnb
    assert RECONSTRUCTION_METHODS.get("outer", "test") is solve_outer
    for method in ("exact", "outer"):
        assert solve_reconstruction(problem, 3, method).status == "optimal"
    assert solve_reconstruction(problem, 3, "auto", time_limit=5.0, max_rounds=100).objective == pytest.approx(
        _brute_force(problem, 3), rel=1e-9)
    for method in (solve_bnb, solve_outer):
        with pytest.raises(InvalidParameterError, match="k_blocks"):
            method(problem, 7)
        with pytest.raises(InvalidParameterError, match="time_limit"):
            method(problem, 3, time_limit=0.0)


def test_other_milp_backends_agree() -> None:
    problem = _problem(10, 8, 3)
    best = _brute_force(problem, 4)
    for name in ("scip", "gurobi"):
        if not get_backend(name).is_available():
            continue
        result = solve_outer(problem, 4, solver=name, time_limit=10.0)
        assert result.status == "optimal" and result.objective == pytest.approx(best, rel=1e-9)
