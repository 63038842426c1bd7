"""The quadratic objective ``1/2 x^T Q x`` of the solver protocol, on every registered backend.

Known optima (derived in the comments) for a convex QP, a concave maximisation, a small MIQP and a binary MIQP
checked against enumeration; a non-convex ``Q`` refused with :class:`NonConvexObjectiveError`; backends without
the capability refuse with :class:`QuadraticObjectiveError` naming those that have it. Backends whose package is
not installed skip with the install hint.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from optprune.errors import CapabilityError, ShapeMismatchError
from optprune.formulations import ModelBuilder
from optprune.milp import MILP, Sense
from optprune.solvers import backend_names, get_backend, read_model, solve, write_model
from optprune.solvers.base import NonConvexObjectiveError, QuadraticObjectiveError, quadratic_backends

INF = np.inf
TOL = 1e-5
BACKENDS = backend_names()


def _backend(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


def _solve(model: MILP, name: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return solve(model, name, **kw)


def _qp(integer=(False, False), sense=Sense.MINIMIZE) -> MILP:
    """min x^2 + xy + y^2 - 3x + 0.75, x in [-5, 1.5], y in [-5, 5], x + y <= 0.6 (optima below)."""
    Q = np.array([[2.0, 1.0], [1.0, 2.0]])  # 1/2 x^T Q x = x^2 + xy + y^2
    c = np.array([-3.0, 0.0])
    sign = -1.0 if sense == Sense.MAXIMIZE else 1.0
    return MILP(c=sign * c, A=sp.csr_matrix([[1.0, 1.0]]), row_lower=[-INF], row_upper=[0.6],
                col_lower=[-5, -5], col_upper=[1.5, 5], integrality=np.array(integer), sense=sense,
                offset=sign * 0.75, Q=sign * Q, name="qp")


# x = 1.5: 2.25 + 1.5 y + y^2 - 4.5 + 0.75 minimised at y = -0.75 (x + y = 0.75 > 0.6: the row binds).
# On x + y = 0.6 with x <= 1.5: f(x) = x^2 + x(0.6 - x) + (0.6 - x)^2 - 3x + 0.75 = x^2 - 3.6x + 1.11,
# minimised at x = 1.8 > 1.5, so x = 1.5, y = -0.9: 2.25 - 1.35 + 0.81 - 4.5 + 0.75 = -2.04.
_QP_OPT, _QP_X = -2.04, np.array([1.5, -0.9])
# x integer: x = 1, y = -0.4 on the row (unconstrained y = -0.5 gives x + y = 0.5 <= 0.6: the row is slack),
# so y = -0.5: 1 - 0.5 + 0.25 - 3 + 0.75 = -1.5.
_MIQP_OPT, _MIQP_X = -1.5, np.array([1.0, -0.5])


def _binary_miqp(seed: int = 0) -> tuple[MILP, float]:
    """min 1/2 b^T Q b + c b over 5 binaries with sum(b) = 2 and one continuous y (y - b_0 = 0.5 fixes it).

    The optimum is found by enumerating the 10 pairs.
    """
    rng = np.random.default_rng(seed)
    F = rng.normal(size=(6, 6))
    Q = F @ F.T + 0.1 * np.eye(6)  # over (b_0..b_4, y): PSD
    c = rng.normal(size=6) * 3
    A = sp.csr_matrix(np.array([[1, 1, 1, 1, 1, 0], [-1, 0, 0, 0, 0, 1]], dtype=float))
    model = MILP(c=c, A=A, row_lower=[2, 0.5], row_upper=[2, 0.5], col_lower=np.zeros(6),
                 col_upper=[1, 1, 1, 1, 1, 10], integrality=np.array([True] * 5 + [False]), Q=Q, name="miqp5")
    best = math.inf
    for pair in itertools.combinations(range(5), 2):
        x = np.zeros(6)
        x[list(pair)] = 1
        x[5] = x[0] + 0.5
        best = min(best, model.objective_value(x))
    return model, best


def _check(model: MILP, result, objective: float, x=None) -> None:
    assert result.status.value == "optimal", result.message
    assert result.objective == pytest.approx(objective, abs=TOL)
    assert model.objective_value(result.x) == pytest.approx(objective, abs=TOL)
    assert model.max_violation(result.x) <= 1e-6
    if x is not None:
        np.testing.assert_allclose(result.x, x, atol=1e-3)
    if math.isfinite(result.bound):
        slack = TOL * (1 + abs(objective))
        maximise = model.sense == Sense.MAXIMIZE
        assert (result.bound >= objective - slack) if maximise else (result.bound <= objective + slack)


# ------------------------------------------------------------------ the model


def test_linear_models_are_unchanged_and_q_is_stored_symmetric() -> None:
    linear = MILP(c=[1.0], A=None, row_lower=[], row_upper=[], col_lower=[0], col_upper=[1], integrality=None)
    assert linear.Q is None and not linear.is_quadratic
    model = MILP(c=[0.0, 0.0], A=None, row_lower=[], row_upper=[], col_lower=[-1, -1], col_upper=[1, 1],
                 integrality=None, Q=np.array([[2.0, 2.0], [0.0, 2.0]]))
    np.testing.assert_allclose(model.Q.toarray(), [[2.0, 1.0], [1.0, 2.0]])
    assert model.is_quadratic and model.objective_value(np.array([1.0, 1.0])) == pytest.approx(3.0)
    wider, cols = model.with_columns([0.0], [1.0])
    assert wider.Q.shape == (3, 3) and cols.tolist() == [2]
    assert model.relaxed().is_quadratic
    with pytest.raises(ShapeMismatchError, match="shape"):
        MILP(c=[0.0], A=None, row_lower=[], row_upper=[], col_lower=[0], col_upper=[1], integrality=None,
             Q=np.eye(2))


def test_builder_places_q_on_its_columns() -> None:
    b = ModelBuilder()
    b.add_vars(1, name="unused")
    x = b.add_vars(2, lower=-5, upper=[1.5, 5])
    b.add_rows([[1.0, 1.0]], x, upper=0.6)
    b.set_objective([-3.0, 0.0], x, offset=0.75)
    b.set_quadratic_objective(sp.csr_matrix([[2.0, 1.0], [1.0, 2.0]]), x)
    model = b.build()
    assert model.Q.shape == (3, 3) and model.Q[0].nnz == 0
    result = _solve(model, "highs")
    _check(model, result, _QP_OPT)
    with pytest.raises(ShapeMismatchError, match="expected \\(2, 2\\)"):
        b.set_quadratic_objective(np.eye(3), x)


def test_quadratic_backends_are_named() -> None:
    assert {"highs", "scip", "gurobi", "cvxpy"} <= set(quadratic_backends())
    assert "highs" not in quadratic_backends(miqp=True) and "scip" in quadratic_backends(miqp=True)
    caps = get_backend("highs").capabilities()
    assert caps["quadratic"] is True and caps["miqp"] is False


# ------------------------------------------------------------------ every backend


@pytest.mark.parametrize("name", BACKENDS)
def test_convex_qp(name: str) -> None:
    backend = _backend(name)
    model = _qp()
    if not backend.supports_quadratic:
        with pytest.raises(CapabilityError):
            _solve(model, name)
        return
    _check(model, _solve(model, name), _QP_OPT, _QP_X)


@pytest.mark.parametrize("name", BACKENDS)
def test_concave_maximisation(name: str) -> None:
    backend = _backend(name)
    if not backend.supports_quadratic:
        pytest.skip(f"{name} takes no quadratic objective")
    model = _qp(sense=Sense.MAXIMIZE)
    _check(model, _solve(model, name), -_QP_OPT, _QP_X)


@pytest.mark.parametrize("name", BACKENDS)
def test_small_miqp(name: str) -> None:
    backend = _backend(name)
    model = _qp(integer=(True, False))
    if not backend.supports_miqp:
        with pytest.raises(CapabilityError):
            _solve(model, name)
        return
    _check(model, _solve(model, name), _MIQP_OPT, _MIQP_X)


@pytest.mark.parametrize("name", BACKENDS)
def test_binary_miqp_matches_enumeration(name: str) -> None:
    backend = _backend(name)
    if not backend.supports_miqp:
        pytest.skip(f"{name} solves no MIQP")
    for seed in range(3):
        model, best = _binary_miqp(seed)
        _check(model, _solve(model, name), best)


@pytest.mark.parametrize("name", BACKENDS)
def test_non_convex_q_is_refused_by_name(name: str) -> None:
    backend = _backend(name)
    if not backend.supports_quadratic:
        pytest.skip(f"{name} takes no quadratic objective")
    indefinite = _qp().replace(Q=np.array([[2.0, 3.0], [3.0, 2.0]]))  # eigenvalues 5 and -1
    with pytest.raises(NonConvexObjectiveError, match="eigenvalue -1"):
        _solve(indefinite, name)
    convex_but_maximised = _qp().replace(sense=Sense.MAXIMIZE)  # maximising a convex function
    with pytest.raises(NonConvexObjectiveError, match="negative semidefinite"):
        _solve(convex_but_maximised, name)


@pytest.mark.parametrize("name", BACKENDS)
def test_capability_error_names_what_can(name: str) -> None:
    backend = _backend(name)
    if backend.supports_miqp:
        pytest.skip(f"{name} takes quadratic objectives, also with integers")
    model = _qp(integer=(True, True)) if backend.supports_quadratic else _qp()
    with pytest.raises(QuadraticObjectiveError) as info:
        _solve(model, name)
    message = str(info.value)
    assert name in message and "scip" in message and "pip install" in message


@pytest.mark.parametrize("name", ["scip", "gurobi"])
def test_mip_start_and_cutoff_on_a_miqp(name: str) -> None:
    _backend(name)
    model, best = _binary_miqp(1)
    start = np.array([1, 1, 0, 0, 0, 1.5])
    _check(model, _solve(model, name, start=start), best)
    assert _solve(model, name, cutoff=best - 1.0).status.value == "infeasible"


def test_cutoff_without_a_native_cutoff_is_refused() -> None:
    with pytest.raises(QuadraticObjectiveError, match="cutoff"):
        _solve(_qp(), "highs", cutoff=0.0)


def test_mps_round_trip_keeps_q(tmp_path) -> None:
    model = _qp()
    path = write_model(model, tmp_path / "qp.mps")
    back = read_model(path)
    np.testing.assert_allclose(back.Q.toarray(), model.Q.toarray())
    _check(back, _solve(back, "highs"), _QP_OPT)
