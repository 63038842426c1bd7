"""One shared set of small LPs and MILPs with known answers, run on every registered backend.

Backends whose package is not installed skip with the install hint. CP-SAT
runs the pure-integer problems only and must refuse a continuous model.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from optprune.errors import (
    CapabilityError,
    FileFormatError,
    InvalidParameterError,
    SolverNotAvailableError,
    UnknownSolverError,
)
from optprune.milp import MILP, Sense
from optprune.solvers import (
    BackendBase,
    SolveOptions,
    Status,
    backend_names,
    get_backend,
    read_model,
    register,
    solve,
    write_model,
)
from optprune.solvers import registry as _registry

INF = np.inf
TOL = 1e-6


@dataclass(frozen=True)
class Case:
    name: str
    model: MILP
    status: Status
    objective: float | None = None
    pure_integer: bool = False  # integer variables, integer coefficients, finite bounds (CP-SAT can take it)


def _milp(c, A, rl, ru, cl, cu, integ=None, sense=Sense.MINIMIZE, offset=0.0, name="case") -> MILP:
    n = len(c)
    A = sp.csr_matrix(np.asarray(A, dtype=float).reshape(-1, n))
    return MILP(c=c, A=A, row_lower=rl, row_upper=ru, col_lower=cl, col_upper=cu,
                integrality=integ, sense=sense, offset=offset, name=name)


CASES = [
    # min x + 2y, x + y >= 2, x - y <= 1, x, y >= 0  ->  (1.5, 0.5), 2.5
    Case("lp_2var", _milp([1, 2], [[1, 1], [1, -1]], [2, -INF], [INF, 1], 0, INF), Status.OPTIMAL, 2.5),
    # free x1, x2: x1 - x2 = 1, x2 + x3 = 2, 0 <= x3 <= 5; min x1 + x2 + x3 = 3 + x2, x2 >= -3  ->  0
    Case("lp_equality_free", _milp([1, 1, 1], [[1, -1, 0], [0, 1, 1]], [1, 2], [1, 2], [-INF, -INF, 0], [INF, INF, 5]),
         Status.OPTIMAL, 0.0),
    # max 3x + 2y, x + y <= 4, x + 3y <= 6, 0 <= x <= 3, y >= 0  ->  (3, 1), 11
    Case("lp_maximize", _milp([3, 2], [[1, 1], [1, 3]], -INF, [4, 6], 0, [3, INF], sense=Sense.MAXIMIZE),
         Status.OPTIMAL, 11.0),
    # 0/1 knapsack: values 10, 13, 7, 8; weights 3, 4, 2, 3; capacity 7  ->  items 1, 2: 23
    Case("milp_knapsack", _milp([10, 13, 7, 8], [[3, 4, 2, 3]], -INF, 7, 0, 1, [1, 1, 1, 1], Sense.MAXIMIZE),
         Status.OPTIMAL, 23.0, pure_integer=True),
    # general integers with negative bounds (enumerated: (-1, -3), -7; LP relaxation -8.73)
    Case("milp_general_negative",
         _milp([1, 2], [[3, 2], [1, -1], [-1, 4]], [-11.5, -INF, -13.3], [INF, 2.5, INF], [-5, -4], [5, 3], [1, 1]),
         Status.OPTIMAL, -7.0, pure_integer=True),
    Case("lp_infeasible", _milp([1, 1], [[1, 1], [1, 1]], [-INF, 2], [1, INF], 0, INF), Status.INFEASIBLE),
    # 2x + 2y = 3 has a fractional solution but no integer one
    Case("milp_infeasible", _milp([1, 1], [[2, 2]], 3, 3, 0, 5, [1, 1]), Status.INFEASIBLE, pure_integer=True),
    # min -x, x - y <= 1, x, y >= 0: x = 1 + y grows without limit
    Case("lp_unbounded", _milp([-1, 0], [[1, -1]], -INF, 1, 0, INF), Status.UNBOUNDED),
    # min x + y + 7.5, x + y >= 1, integers in [0, 3]  ->  8.5
    Case("milp_offset", _milp([1, 1], [[1, 1]], 1, INF, 0, 3, [1, 1], offset=7.5), Status.OPTIMAL, 8.5,
         pure_integer=True),
    Case("lp_offset_max", _milp([1, -1], [[1, 1]], -INF, 4, 0, [2.5, 3], sense=Sense.MAXIMIZE, offset=-1.25),
         Status.OPTIMAL, 1.25),
    # no rows at all: min x - y, x in [1, 3], y in [0, 2]  ->  -1
    Case("no_rows", _milp([1, -1], np.zeros((0, 2)), [], [], [1, 0], [3, 2], [1, 1]), Status.OPTIMAL, -1.0,
         pure_integer=True),
    # an all-zero row with 0 inside its bounds and one with 0 outside them
    Case("empty_row_feasible", _milp([1, 1], [[0, 0], [1, 1]], [-1, 1], [1, INF], 0, 3, [1, 1]), Status.OPTIMAL, 1.0,
         pure_integer=True),
    Case("empty_row_infeasible", _milp([1, 1], [[0, 0], [1, 1]], [1, 1], [2, INF], 0, 3, [1, 1]), Status.INFEASIBLE,
         pure_integer=True),
]


def _stored_zero_row(lo: float, hi: float, integer: bool) -> MILP:
    """min x, x in [0, 3], one row ``lo <= 0 * x <= hi`` whose zero coefficient is stored explicitly."""
    A = sp.csr_matrix((np.array([0.0]), np.array([0]), np.array([0, 1])), shape=(1, 1))
    return MILP(c=[1.0], A=A, row_lower=[lo], row_upper=[hi], col_lower=[0], col_upper=[3], integrality=[integer],
                name="zero_row")


def _no_columns(row_lower: list[float], row_upper: list[float]) -> MILP:
    return MILP(c=np.zeros(0), A=sp.csr_matrix((len(row_lower), 0)), row_lower=row_lower, row_upper=row_upper,
                col_lower=None, col_upper=None, integrality=None, offset=2.5, name="empty")


CASES += [
    # x1 is free (infinite bounds), in no row and has zero objective: some interfaces never pass it on
    Case("free_column_in_no_row", _milp([1, 0], [[1, 0]], 1, INF, [0, -INF], [INF, INF]), Status.OPTIMAL, 1.0),
    Case("unused_integer_column", _milp([1, 0], [[1, 0]], 1, INF, [0, 2], [5, 5], [1, 1]), Status.OPTIMAL, 1.0,
         pure_integer=True),
    Case("zero_objective_lp", _milp([0, 0], [[1, 1]], 1, INF, 0, 3), Status.OPTIMAL, 0.0),
    Case("zero_objective_milp", _milp([0, 0], [[1, 1]], 1, INF, 0, 3, [1, 1]), Status.OPTIMAL, 0.0,
         pure_integer=True),
    # 0 <= 0*x <= 1 holds, 1 <= 0*x <= 2 cannot (the zero is a stored entry of A)
    Case("stored_zero_row_feasible_lp", _stored_zero_row(0, 1, False), Status.OPTIMAL, 0.0),
    Case("stored_zero_row_infeasible_lp", _stored_zero_row(1, 2, False), Status.INFEASIBLE),
    Case("stored_zero_row_feasible_milp", _stored_zero_row(0, 1, True), Status.OPTIMAL, 0.0, pure_integer=True),
    Case("stored_zero_row_infeasible_milp", _stored_zero_row(1, 2, True), Status.INFEASIBLE, pure_integer=True),
    # no columns at all: OPTIMAL, objective = offset, x = [] on every backend (rows need 0 in their range)
    Case("empty_model", _no_columns([], []), Status.OPTIMAL, 2.5, pure_integer=True),
    Case("no_columns_rows_hold", _no_columns([-1.0], [0.0]), Status.OPTIMAL, 2.5, pure_integer=True),
    Case("no_columns_row_fails", _no_columns([1.0], [2.0]), Status.INFEASIBLE, pure_integer=True),
]
CASE_IDS = [case.name for case in CASES]
BACKENDS = backend_names()


def _backend(name: str) -> BackendBase:
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


def _check_consistent(model: MILP, result) -> None:
    """The solution is feasible, its objective is the reported one, and the bound is on the right side."""
    assert result.x is not None and result.x.shape == (model.n_vars,)
    assert model.max_violation(result.x) <= TOL
    assert result.objective == pytest.approx(model.objective_value(result.x), abs=TOL, rel=TOL)
    if math.isfinite(result.bound):
        slack = TOL * (1 + abs(result.objective))
        if model.sense == Sense.MAXIMIZE:
            assert result.bound >= result.objective - slack
        else:
            assert result.bound <= result.objective + slack


def _solve_quiet(model: MILP, name: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return solve(model, name, **kw)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("name", BACKENDS)
def test_known_answers(name: str, case: Case) -> None:
    backend = _backend(name)
    if not backend.supports_continuous and not case.pure_integer:
        pytest.skip(f"{name} takes pure-integer models only")
    result = _solve_quiet(case.model, name)
    assert result.backend == name
    assert result.status == case.status, result.message
    if case.status == Status.OPTIMAL:
        assert result.objective == pytest.approx(case.objective, abs=1e-6)
        _check_consistent(case.model, result)
        if not case.model.is_mip:
            assert result.bound == pytest.approx(case.objective, abs=1e-6)
    else:
        assert result.x is None
        assert math.isnan(result.objective)


@pytest.mark.parametrize("name", BACKENDS)
def test_cutoff_excludes_and_keeps_solutions(name: str) -> None:
    """A cutoff worse than the optimum keeps it; one better than the optimum leaves no solution."""
    _backend(name)
    knapsack = CASES[CASE_IDS.index("milp_knapsack")].model  # maximise, optimum 23
    kept = _solve_quiet(knapsack, name, cutoff=21.5)
    assert kept.status == Status.OPTIMAL and kept.objective == pytest.approx(23.0)
    none = _solve_quiet(knapsack, name, cutoff=23.5)
    assert none.status == Status.INFEASIBLE and none.x is None


def _hard_knapsack(n: int = 60, m: int = 5, seed: int = 0) -> MILP:
    """A multi-dimensional 0/1 knapsack (capacity half of each weight row): hard enough to branch."""
    rng = np.random.default_rng(seed)
    W = rng.integers(5, 60, size=(m, n))
    values = W.sum(axis=0) // m + rng.integers(0, 20, size=n)
    return MILP(c=values.astype(float), A=sp.csr_matrix(W.astype(float)), row_lower=None,
                row_upper=W.sum(axis=1) // 2, col_lower=0, col_upper=1, integrality=np.ones(n, bool),
                sense=Sense.MAXIMIZE, name="mknap")


@pytest.mark.parametrize("name", BACKENDS)
def test_time_limit_returns_consistent_solution(name: str) -> None:
    _backend(name)
    model = _hard_knapsack()
    result = _solve_quiet(model, name, time_limit=1.0)
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE), result.message
    _check_consistent(model, result)
    assert result.objective > 0


@pytest.mark.parametrize("name", BACKENDS)
def test_mps_round_trip(name: str, tmp_path) -> None:
    _backend(name)
    for case_name in ("milp_knapsack", "milp_general_negative", "milp_offset", "lp_offset_max", "lp_equality_free"):
        case = CASES[CASE_IDS.index(case_name)]
        if not get_backend(name).supports_continuous and not case.pure_integer:
            continue
        path = write_model(case.model, tmp_path / f"{case_name}.mps")
        again = read_model(path)
        assert again.sense == case.model.sense and again.offset == pytest.approx(case.model.offset)
        result = _solve_quiet(again, name)
        assert result.status == Status.OPTIMAL, (case_name, result.message)
        assert result.objective == pytest.approx(case.objective, abs=1e-6), case_name


def test_cpsat_refuses_continuous_and_fractional_models() -> None:
    _backend("cpsat")
    with pytest.raises(CapabilityError, match=r"2 of 2 variables are continuous"):
        solve(CASES[0].model, "cpsat")
    fractional = _milp([1, 1], [[1.5, 1]], 1, INF, 0, 3, [1, 1])
    with pytest.raises(CapabilityError, match=r"not integers \(e\.g\. A\[0, 0\] = 1\.5\)"):
        solve(fractional, "cpsat")
    unbounded = _milp([1, 1], [[1, 1]], 1, INF, 0, INF, [1, 1])
    with pytest.raises(CapabilityError, match=r"2 infinite upper"):
        solve(unbounded, "cpsat")


def test_cpsat_rounds_fractional_row_bounds_exactly() -> None:
    _backend("cpsat")
    # 2x + 2y in [2.5, 5.5] -> in [3, 5]: even activity 4 is the only choice; min x + 3y -> x = 2, y = 0
    model = _milp([1, 3], [[2, 2]], 2.5, 5.5, 0, 4, [1, 1])
    result = solve(model, "cpsat")
    assert result.status == Status.OPTIMAL and result.objective == pytest.approx(2.0)


@pytest.mark.parametrize("name", BACKENDS)
def test_target_stops_or_solves(name: str) -> None:
    """With a target every backend still returns a feasible, consistent answer (stopping early where it can)."""
    backend = _backend(name)
    model = _hard_knapsack(n=40)
    result = _solve_quiet(model, name, target=1.0, time_limit=5.0)
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE)
    _check_consistent(model, result)
    assert result.objective >= 1.0
    if backend.supports_callbacks:
        # an unreachable target is disproved by the bound (or the search ends at the optimum)
        high = _solve_quiet(model, name, target=1e9, time_limit=5.0)
        assert high.status in (Status.OPTIMAL, Status.FEASIBLE, Status.TIME_LIMIT)


@pytest.mark.parametrize("name", BACKENDS)
def test_unsupported_options_warn(name: str) -> None:
    backend = _backend(name)
    model = CASES[CASE_IDS.index("milp_knapsack")].model
    with pytest.warns(UserWarning, match=name):
        solve(model, name, extra={"no_such_option_xyz": 1})
    if not backend.supports_callbacks:
        with pytest.warns(UserWarning, match="stop_rule"):
            solve(model, name, stop_rule=lambda progress: False)


def test_stop_rule_sees_progress_and_stops() -> None:
    """SCIP's and CP-SAT's event callbacks pass (primal, bound, time) to the rule and honour True."""
    for name in ("scip", "cpsat"):
        if not get_backend(name).is_available():
            continue
        seen = []

        def rule(progress, seen=seen) -> bool:
            seen.append(progress)
            return math.isfinite(progress.primal)

        model = _hard_knapsack()
        result = solve(model, name, stop_rule=rule, time_limit=10.0)
        assert seen, name
        assert result.status in (Status.FEASIBLE, Status.OPTIMAL)
        assert result.status == Status.OPTIMAL or "stopped early" in result.message, (name, result.message)
        _check_consistent(model, result)


def test_unknown_solver_lists_names() -> None:
    with pytest.raises(UnknownSolverError) as info:
        solve(CASES[0].model, "nope")
    message = str(info.value)
    assert "'nope'" in message
    for name in BACKENDS:
        assert name in message


class _AbsentBackend(BackendBase):
    name = "absent_xyz"
    package = "no_such_pkg_xyz"
    extra = "absent"

    def solve(self, model: MILP, options: SolveOptions):
        self.require()
        raise AssertionError("unreachable: the package is missing")


def test_missing_package_names_pip_install() -> None:
    register(_AbsentBackend())
    try:
        rows = {row["name"]: row for row in _registry.list_backends()}
        assert rows["absent_xyz"]["available"] is False
        assert "pip install" in rows["absent_xyz"]["install"]
        with pytest.raises(SolverNotAvailableError, match=r"pip install 'optprune\[absent\]'"):
            solve(CASES[0].model, "absent_xyz")
    finally:
        _registry._BACKENDS.pop("absent_xyz", None)


_BUILDERS = {"scip": "to_scip", "ortools": "to_mpmodel_proto", "cpsat": "to_cp_model", "pyomo": "to_pyomo",
             "cvxpy": "to_cvxpy", "gurobi": "to_gurobi", "highs": "to_highs"}


@pytest.mark.parametrize("name", sorted(_BUILDERS))
def test_solver_errors_are_wrapped(name: str, monkeypatch) -> None:
    """An exception raised inside a solver package becomes SolverError naming the backend."""
    import importlib

    from optprune.errors import SolverError

    _backend(name)
    module = importlib.import_module(f"optprune.solvers.{name}")

    def broken(*args, **kwargs):
        raise RuntimeError("native failure")

    monkeypatch.setattr(module, _BUILDERS[name], broken)
    with pytest.raises(SolverError, match=rf"'{name}' failed: RuntimeError: native failure"):
        _solve_quiet(CASES[CASE_IDS.index("milp_knapsack")].model, name)


def test_to_pyomo_is_equivalent() -> None:
    _backend("pyomo")
    import pyomo.environ as pyo

    from optprune.solvers.pyomo import to_pyomo

    case = CASES[CASE_IDS.index("milp_general_negative")]
    pm, x = to_pyomo(case.model)
    assert len(x) == case.model.n_vars and len(pm.rows) == case.model.n_rows
    assert x[0].is_integer() and x[0].bounds == (-5, 5)
    for j, value in enumerate((-1, -3)):
        x[j].value = value
    assert pyo.value(pm.objective) == pytest.approx(-7.0)
    assert all(pm.rows[i].lslack() >= -TOL and pm.rows[i].uslack() >= -TOL for i in pm.rows)


def test_listing_backends_imports_no_solver_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, optprune.solvers as s; s.list_backends(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pyscipopt', 'ortools', 'pyomo', 'cvxpy', 'highspy'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("where", ["c", "A", "row_lower", "row_upper", "col_lower", "col_upper", "offset"])
def test_nan_in_a_milp_is_refused_with_its_place(where: str) -> None:
    data = {"c": [1.0, 2.0], "A": np.array([[1.0, 1.0]]), "row_lower": [0.0], "row_upper": [4.0],
            "col_lower": [0.0, 0.0], "col_upper": [1.0, 1.0], "offset": 0.0}
    if where == "A":
        data["A"] = np.array([[1.0, np.nan]])
    elif where == "offset":
        data["offset"] = np.nan
    else:
        data[where] = list(data[where])
        data[where][-1] = np.nan
    index = {"A": r"A\[0, 1\]", "offset": "offset", "row_lower": r"row_lower\[0\]", "row_upper": r"row_upper\[0\]"}
    with pytest.raises(InvalidParameterError, match=index.get(where, rf"{where}\[1\] is nan")):
        MILP(c=data["c"], A=sp.csr_matrix(data["A"]), row_lower=data["row_lower"], row_upper=data["row_upper"],
             col_lower=data["col_lower"], col_upper=data["col_upper"], integrality=None, offset=data["offset"])


@pytest.mark.parametrize("where", ["c", "A"])
def test_infinity_in_objective_or_matrix_is_refused(where: str) -> None:
    c = [1.0, np.inf] if where == "c" else [1.0, 1.0]
    A = np.array([[1.0, -np.inf]]) if where == "A" else np.array([[1.0, 1.0]])
    with pytest.raises(InvalidParameterError, match="must be finite"):
        MILP(c=c, A=sp.csr_matrix(A), row_lower=[0], row_upper=[INF], col_lower=0, col_upper=INF, integrality=None)
    # infinity in bounds is "no bound" and fine
    MILP(c=[1.0], A=sp.csr_matrix([[1.0]]), row_lower=[-INF], row_upper=[INF], col_lower=[-INF], col_upper=[INF],
         integrality=None)


_NAN_MPS = """NAME          T
ROWS
 N  OBJ
 L  R1
COLUMNS
    X1        OBJ       1.0        R1        NaN
RHS
    RHS       R1        4.0
BOUNDS
 UP BND       X1        4.0
ENDATA
"""


def test_read_model_refuses_a_nan_coefficient_with_its_line(tmp_path) -> None:
    path = tmp_path / "nan.mps"
    path.write_text(_NAN_MPS)
    with pytest.raises(InvalidParameterError, match=r"nan\.mps' \(line 6\).*A\[0, 0\] is nan"):
        read_model(path)


def test_read_model_errors_say_what_highs_said_and_where(tmp_path) -> None:
    mps = tmp_path / "bad.mps"
    mps.write_text("NAME T\nROWS\n N OBJ\nGARBAGE\n X1 OBJ 1\nENDATA\n")
    with pytest.raises(FileFormatError, match=r"\(line 5\).*HiGHS said: .*unidentified"):
        read_model(mps)
    lp = tmp_path / "bad.lp"
    lp.write_text("max\n obj: x +\nst\n c1: x <= 3\nend\n")
    with pytest.raises(FileFormatError, match=r"\(line 3, column 1\).*HiGHS said"):
        read_model(lp)
