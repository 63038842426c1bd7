"""The exact selection (the reconstruction MIQP) and the certified lower bound, against brute force over subsets."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from optprune.errors import InvalidParameterError
from optprune.formulations.reconstruction import big_m, build_reconstruction_miqp, compress_cross
from optprune.reconstruction._bound import bound_details, lower_bound
from optprune.reconstruction._exact import solve_miqp
from optprune.reconstruction._problem import ReconstructionProblem
from optprune.solvers import QuadraticObjectiveError, get_backend

MIQP_BACKENDS = ["scip", "gurobi"]


def _problem(seed: int, n: int, m: int, blocks=None, ridge="auto", relu: bool = False) -> ReconstructionProblem:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(3 * n + 5, n)) @ rng.normal(size=(n, n)) / np.sqrt(n) + 0.3 * rng.normal(size=(3 * n + 5, n))
    if relu:
        X = np.maximum(X, 0.0)
    return ReconstructionProblem.from_activations(X, rng.normal(size=(n, m)), blocks=blocks, ridge=ridge)


def _brute_force(problem: ReconstructionProblem, k: int) -> tuple[float, np.ndarray]:
    best, keep = np.inf, None
    for chosen in itertools.combinations(range(problem.n_blocks), k):
        mask = np.isin(problem.block_ids, chosen)
        value = problem.error(mask)
        if value < best:
            best, keep = value, mask
    return best, keep


def _available(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


CASES = [  # seed, n, m, blocks, k
    (0, 6, 4, None, 3),
    (1, 7, 12, None, 3),  # m > n: the cross term is compressed to n columns
    (2, 8, 3, [0, 0, 1, 1, 2, 2, 3, 3], 2),
    (3, 9, 5, [0, 0, 0, 1, 1, 1, 2, 2, 2], 1),
]


@pytest.mark.parametrize("solver", MIQP_BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[f"n{c[1]}_m{c[2]}_{'blocks' if c[3] else 'units'}" for c in CASES])
def test_exact_equals_brute_force(solver: str, case) -> None:
    _available(solver)
    seed, n, m, blocks, k = case
    problem = _problem(seed, n, m, blocks, relu=seed % 2 == 1)
    best, keep = _brute_force(problem, k)
    result = solve_miqp(problem, k, solver=solver, time_limit=60.0)  # margin for a loaded machine
    assert result.objective == pytest.approx(best, rel=1e-9, abs=1e-12)
    assert result.status == "optimal"
    assert result.gap is not None and 0.0 <= result.gap <= 1e-6
    assert result.lower_bound <= best * (1 + 1e-6)
    assert result.weights.shape == (int(result.keep.sum()), m)
    assert np.array_equal(result.keep, keep) or problem.error(keep) == pytest.approx(best)


def test_the_miqp_optimum_is_the_subset_optimum_with_and_without_compression() -> None:
    _available("scip")
    from optprune.solvers import solve

    problem = _problem(4, 5, 9)
    best, _ = _brute_force(problem, 2)
    for cross in (problem.cross, compress_cross(problem.cross)):
        model = build_reconstruction_miqp(problem.gram, cross, problem.total, 2, ridge=problem.ridge)
        assert model.is_quadratic and model.n_integer == 5
        result = solve(model, "scip", time_limit=10.0, mip_gap=1e-9)
        assert result.objective == pytest.approx(best, rel=1e-6)
        keep = model.group("keep", result.x) > 0.5
        assert problem.error(keep) == pytest.approx(best, rel=1e-9)


def test_big_m_holds_for_every_subset() -> None:
    problem = _problem(5, 7, 4)
    M = big_m(problem.gram, problem.cross, problem.ridge)
    for size in range(1, 8):
        for chosen in itertools.combinations(range(7), size):
            mask = np.isin(np.arange(7), chosen)
            assert np.all(np.abs(problem.refit(mask)) <= M[mask] * (1 + 1e-9))


def test_big_m_needs_a_positive_definite_gram() -> None:
    G = np.zeros((3, 3))
    G[:2, :2] = np.eye(2)
    with pytest.raises(InvalidParameterError, match="ridge"):
        big_m(G, np.ones((3, 2)), 0.0)


def test_compressed_cross_has_the_same_errors() -> None:
    problem = _problem(6, 5, 11)
    small = ReconstructionProblem(problem.gram, compress_cross(problem.cross), problem.total, None, problem.ridge)
    assert small.n_outputs == 5
    for chosen in itertools.combinations(range(5), 2):
        mask = np.isin(np.arange(5), chosen)
        assert small.error(mask) == pytest.approx(problem.error(mask), rel=1e-9)


@pytest.mark.parametrize("seed", range(12))
def test_lower_bound_is_valid_against_brute_force(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(4, 10))
    m = int(rng.integers(1, 14))
    blocks = np.repeat(np.arange(n // 2 + n % 2), 2)[:n] if seed % 3 == 0 else None
    ridge = ["auto", 0.5, 1e-3][seed % 3]
    problem = _problem(seed, n, m, blocks, ridge=ridge, relu=seed % 2 == 0)
    for k in range(0, problem.n_blocks + 1):
        best, _ = _brute_force(problem, k) if k else (problem.total, None)
        details = bound_details(problem, k)
        assert 0.0 <= details.value <= best + 1e-12 * problem.total, (k, details, best)
        for part in (details.monotone, details.spectral, details.perspective):
            assert not part > best + 1e-8 * problem.total


def test_lower_bound_is_informative() -> None:
    problem = _problem(7, 10, 6)
    best, _ = _brute_force(problem, 3)
    value = lower_bound(problem, 3)
    assert value > 0.1 * best  # well above the monotone bound E(all units) of a well-determined problem
    assert value > problem.error(np.ones(10, dtype=bool))
    many_outputs = _problem(8, 8, 30)  # m > kept units: the spectral bound alone is informative
    best_many, _ = _brute_force(many_outputs, 2)
    details = bound_details(many_outputs, 2)
    assert details.spectral > 0.3 * best_many


def test_gap_is_never_negative_and_k_edges() -> None:
    _available("scip")
    problem = _problem(9, 6, 3)
    for k in (0, 6):
        result = solve_miqp(problem, k)
        assert result.status == "optimal" and result.gap == pytest.approx(0.0, abs=1e-12)
        assert result.objective == pytest.approx(problem.error(np.full(6, k == 6)))
    with pytest.raises(InvalidParameterError, match="k_blocks"):
        solve_miqp(problem, 7)


def test_a_backend_without_miqp_is_refused_by_name() -> None:
    with pytest.raises(QuadraticObjectiveError, match="scip"):
        solve_miqp(_problem(10, 5, 2), 2, solver="highs")


def test_relaxation_is_a_convex_qp_for_highs() -> None:
    from optprune.solvers import solve

    problem = _problem(11, 6, 3)
    model = build_reconstruction_miqp(problem.gram, problem.cross, problem.total, 3, ridge=problem.ridge)
    relaxed = solve(model.relaxed(), "highs")
    best, _ = _brute_force(problem, 3)
    assert relaxed.status.value == "optimal" and relaxed.objective <= best * (1 + 1e-6)
