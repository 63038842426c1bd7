"""The solver protocol beyond ``solve``: MIP starts, incumbent callbacks, LP sessions, the lifecycle, the
Gurobi license limit, and no private solver module imported from outside ``solvers/``."""

from __future__ import annotations

import ast
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

from optprune.errors import InvalidParameterError
from optprune.milp import MILP, Sense
from optprune.solvers import (
    BackendBase,
    GurobiLicenseLimitError,
    NativeRun,
    Outcome,
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
from optprune.verification.obbt import obbt_bounds, safe_lp_lower_bound

ROOT = Path(__file__).resolve().parents[1]


def _installed(name: str) -> BackendBase:
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


def _knapsack(n: int = 30, seed: int = 1) -> MILP:
    rng = np.random.default_rng(seed)
    w = rng.integers(5, 40, size=(3, n)).astype(float)
    v = w.sum(axis=0) / 3 + rng.integers(0, 10, size=n)
    return MILP(c=v, A=sp.csr_matrix(w), row_lower=None, row_upper=w.sum(axis=1) // 2, col_lower=0, col_upper=1,
                integrality=np.ones(n, bool), sense=Sense.MAXIMIZE, name="knap")


INCUMBENT_BACKENDS = [n for n in backend_names() if get_backend(n).supports_incumbent_callback]
START_BACKENDS = [n for n in backend_names() if get_backend(n).supports_start]


@pytest.mark.parametrize("name", INCUMBENT_BACKENDS)
def test_incumbent_callback_sees_feasible_improving_points(name: str) -> None:
    _installed(name)
    model = _knapsack()
    seen: list[tuple[np.ndarray, float, float]] = []
    result = solve(model, name, on_incumbent=lambda x, obj, t: seen.append((x.copy(), obj, t)), time_limit=20)
    assert result.status == Status.OPTIMAL
    assert seen, "no incumbent reported"
    for x, obj, t in seen:
        assert x.shape == (model.n_vars,)
        assert model.max_violation(x) <= 1e-6
        assert obj == pytest.approx(model.objective_value(x), abs=1e-6)
        assert t >= 0
    objectives = [obj for _, obj, _ in seen]
    assert objectives == sorted(objectives)  # improving, in the model's (maximising) sense
    assert objectives[-1] == pytest.approx(result.objective, abs=1e-6)


@pytest.mark.parametrize("name", INCUMBENT_BACKENDS)
def test_an_incumbent_callback_error_is_raised(name: str) -> None:
    _installed(name)

    def broken(x, obj, t):
        raise RuntimeError("callback failed on purpose")

    with pytest.raises(Exception, match="callback failed on purpose"):
        solve(_knapsack(), name, on_incumbent=broken, time_limit=20)


@pytest.mark.parametrize("name", START_BACKENDS)
def test_mip_start_is_the_first_incumbent_or_better(name: str) -> None:
    """With an optimal start and a node limit of 0 work, the solver keeps (at least) the start's objective."""
    backend = _installed(name)
    model = _knapsack()
    best = solve(model, "highs")
    seen: list[float] = []
    callback = (lambda x, obj, t: seen.append(obj)) if backend.supports_incumbent_callback else None
    result = solve(model, name, start=best.x, on_incumbent=callback, time_limit=20)
    assert result.objective == pytest.approx(best.objective, abs=1e-6)
    if seen and name in ("highs", "gurobi"):
        assert seen[0] == pytest.approx(best.objective, abs=1e-6)  # the start is taken as the first incumbent


def test_a_start_of_the_wrong_length_or_with_nan_is_refused() -> None:
    model = _knapsack()
    with pytest.raises(InvalidParameterError, match=r"start \(a MIP start\) has 3 values; the model has 30 columns"):
        solve(model, "highs", start=np.zeros(3))
    with pytest.raises(InvalidParameterError, match="NaN at 1"):
        SolveOptions(start=np.array([0.0, np.nan]))
    with pytest.raises(InvalidParameterError, match="on_incumbent must be callable"):
        SolveOptions(on_incumbent=3)


@pytest.mark.parametrize("name", [n for n in backend_names() if not get_backend(n).supports_incumbent_callback])
def test_backends_without_the_options_warn(name: str) -> None:
    _installed(name)
    model = _knapsack(8)
    with pytest.warns(UserWarning, match="on_incumbent"):
        solve(model, name, on_incumbent=lambda *a: None)
    if not get_backend(name).supports_start:
        with pytest.warns(UserWarning, match="'start'"):
            solve(model, name, start=np.zeros(model.n_vars))


@pytest.mark.parametrize("name", [n for n in backend_names() if get_backend(n).supports_focus])
def test_bound_focus_keeps_the_optimum_without_a_warning(name: str) -> None:
    """``focus="bound"`` only moves the solver's effort: the optimum and its proof are unchanged."""
    _installed(name)
    model = _knapsack()
    best = solve(model, "highs")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a backend that claims the switch must not warn about it
        focused = solve(model, name, focus="bound", time_limit=20)
    assert focused.status == Status.OPTIMAL
    assert focused.objective == pytest.approx(best.objective, abs=1e-6)
    assert focused.bound == pytest.approx(best.objective, abs=1e-4)
    assert get_backend(name).capabilities()["focus"] is True  # what `optprune solvers --json` reports


def test_bound_focus_switches_off_every_highs_heuristic_it_names() -> None:
    import highspy

    from optprune.solvers.highs import configure

    plain, focused = highspy.Highs(), highspy.Highs()
    configure(plain, SolveOptions())
    configure(focused, SolveOptions(focus="bound"))
    for name in ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_feasibility_jump",
                 "mip_heuristic_run_root_reduced_cost"):
        assert plain.getOptionValue(name)[1] is True, name  # HiGHS' default, so the switch changes something
        assert focused.getOptionValue(name)[1] is False, name
    assert focused.getOptionValue("mip_heuristic_effort")[1] == 0.0


@pytest.mark.parametrize("name", [n for n in backend_names() if not get_backend(n).supports_focus])
def test_backends_without_a_heuristics_switch_warn_for_focus_on_a_mip(name: str) -> None:
    _installed(name)
    assert get_backend(name).capabilities()["focus"] is False
    with pytest.warns(UserWarning, match="ignores the option 'focus'"):
        solve(_knapsack(8), name, focus="bound")


def test_an_unknown_focus_is_refused_with_the_allowed_values() -> None:
    with pytest.raises(InvalidParameterError, match=r"focus.*'bound'"):
        SolveOptions(focus="speed")


def _random_lp(seed: int = 0, n: int = 8, m: int = 6) -> MILP:
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, n))
    x0 = rng.uniform(-1, 1, size=n)
    act = A @ x0
    lower = np.where(rng.random(m) < 0.5, act - rng.uniform(0.1, 1, m), -np.inf)
    upper = np.where(rng.random(m) < 0.7, act + rng.uniform(0.1, 1, m), np.inf)
    upper[0], lower[0] = act[0] + 0.5, act[0] - 0.5  # a ranged row
    lower[1] = upper[1] = act[1]  # an equality row
    return MILP(c=np.zeros(n), A=sp.csr_matrix(A), row_lower=lower, row_upper=upper, col_lower=-2.0, col_upper=2.0,
                integrality=None, name="lp")


@pytest.mark.parametrize("name", ["highs", "gurobi", "scip"])
def test_lp_sessions_give_the_optimum_and_safe_multipliers(name: str) -> None:
    """minimize(cost) again and again: the optimum of scipy's linprog, and multipliers whose safe bound is tight."""
    backend = _installed(name)
    model = _random_lp()
    session = backend.lp_session(model)
    rng = np.random.default_rng(1)
    A = model.A.toarray()
    for _ in range(6):
        cost = rng.normal(size=model.n_vars)
        status, value, duals = session.minimize(cost)
        lo, hi = model.row_lower, model.row_upper
        ref = linprog(cost, A_ub=np.vstack([A[np.isfinite(hi)], -A[np.isfinite(lo)]]),
                      b_ub=np.concatenate([hi[np.isfinite(hi)], -lo[np.isfinite(lo)]]), bounds=(-2, 2))
        assert status == Status.OPTIMAL
        assert value == pytest.approx(ref.fun, abs=1e-6)
        if duals is None:
            assert not hasattr(session, "_h") and name == "scip"  # the generic session: SCIP gives no duals
            continue
        safe = safe_lp_lower_bound(model, cost, duals)
        assert safe <= ref.fun + 1e-9
        assert safe == pytest.approx(ref.fun, abs=1e-5)


def test_obbt_on_gurobi_matches_highs() -> None:
    """OBBT through the protocol gives the same bounds on HiGHS' and Gurobi's LP sessions (both warm-started)."""
    _installed("gurobi")
    from optprune.network import AffineLayer, Network
    from optprune.verification.bounds import count_unstable, linear_bounds

    rng = np.random.default_rng(3)
    layers = [AffineLayer(rng.normal(size=(12, 4)), rng.normal(size=12) * 0.3, "relu", name="l0"),
              AffineLayer(rng.normal(size=(10, 12)) / 3, rng.normal(size=10) * 0.3, "relu", name="l1"),
              AffineLayer(rng.normal(size=(3, 10)) / 3, np.zeros(3), "identity", name="out")]
    net = Network(layers)
    lo, hi = -np.ones(4), np.ones(4)
    lin = linear_bounds(net, lo, hi)
    a = obbt_bounds(net, lo, hi, lin, solver="highs")
    b = obbt_bounds(net, lo, hi, lin, solver="gurobi")
    assert count_unstable(net, a) == count_unstable(net, b) <= count_unstable(net, lin)
    for (la, ua), (lb, ub) in zip(a, b):
        np.testing.assert_allclose(la, lb, atol=1e-6)
        np.testing.assert_allclose(ua, ub, atol=1e-6)


class _TableBackend(BackendBase):
    """A backend that fills in only run_native: the lifecycle around it is the base class's."""

    name = "table_xyz"
    package = "numpy"
    extra = "none"
    STATUS_MAP = {"done": Status.OPTIMAL, "stopped": Outcome.LIMIT, "cut": Outcome.CUTOFF,
                  "either": Outcome.INFEASIBLE_OR_UNBOUNDED}

    def __init__(self, answer: str, x=None, probe_status: Status = Status.INFEASIBLE) -> None:
        self.answer, self.x, self.probe_status, self.built = answer, x, probe_status, None

    def run_native(self, model: MILP, built: MILP, options: SolveOptions) -> NativeRun:
        self.built = built
        return NativeRun(self.answer, x=None if self.x is None else np.asarray(self.x, float), time_s=0.5)

    def probe(self, model: MILP, options: SolveOptions) -> Status:
        return self.probe_status


@pytest.mark.parametrize(("answer", "x", "probe", "expected"), [
    ("done", [1.0, 0.0], Status.INFEASIBLE, Status.OPTIMAL),
    ("stopped", [1.0, 0.0], Status.INFEASIBLE, Status.FEASIBLE),
    ("stopped", None, Status.INFEASIBLE, Status.TIME_LIMIT),
    ("cut", None, Status.INFEASIBLE, Status.INFEASIBLE),
    ("either", None, Status.INFEASIBLE, Status.INFEASIBLE),
    ("either", None, Status.FEASIBLE, Status.UNBOUNDED),
    ("no such status", [1.0, 0.0], Status.INFEASIBLE, Status.ERROR),
    ("done", None, Status.INFEASIBLE, Status.ERROR),  # "optimal" without a point is an error
])
def test_status_table_drives_the_shared_status(answer, x, probe, expected) -> None:
    backend = _TableBackend(answer, x, probe)
    model = MILP(c=[1.0, 1.0], A=sp.csr_matrix([[1.0, 1.0]]), row_lower=[1.0], row_upper=[np.inf], col_lower=0,
                 col_upper=1, integrality=None)
    result = backend.solve(model, SolveOptions(cutoff=5.0))
    assert result.status == expected, result.message
    assert backend.built.n_rows == 2  # no native cutoff: the lifecycle added the cutoff row
    if expected == Status.INFEASIBLE:
        assert result.message == "no solution better than the objective cutoff"
    if expected == Status.ERROR and answer == "done":
        assert "reported optimal but returned no solution" in result.message


def test_gurobi_over_the_size_limited_license_is_a_named_error() -> None:
    _installed("gurobi")
    n = 2001
    model = MILP(c=np.ones(n), A=sp.csr_matrix(np.ones((1, n))), row_lower=[1.0], row_upper=[np.inf], col_lower=0,
                 col_upper=1, integrality=np.ones(n, bool))
    try:
        result = solve(model, "gurobi")
    except GurobiLicenseLimitError as exc:
        message = str(exc)
        assert "2001 variables" in message and "size-limited license" in message and "2000" in message
        assert "full license" in message
    else:  # a machine with a full license solves it
        assert result.status == Status.OPTIMAL and result.objective == pytest.approx(1.0)


def test_model_files_go_through_the_public_solver_functions(tmp_path) -> None:
    model = _knapsack(6)
    path = write_model(model, tmp_path / "k.mps")
    again = read_model(path)
    assert again.n_vars == 6 and solve(again).objective == pytest.approx(solve(model).objective)
    with pytest.raises(InvalidParameterError, match="must end in .mps or .lp"):
        write_model(model, tmp_path / "k.txt")


def test_a_registered_backend_with_only_run_native_is_listed_and_solves() -> None:
    register(_TableBackend("done", [1.0, 0.0]))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            model = MILP(c=[1.0, 1.0], A=sp.csr_matrix([[1.0, 1.0]]), row_lower=[1.0], row_upper=[np.inf],
                         col_lower=0, col_upper=1, integrality=None)
            result = solve(model, "table_xyz")
        assert result.status == Status.OPTIMAL and result.objective == 1.0 and result.time_s == 0.5
        assert math.isclose(result.bound, 1.0)  # an LP's optimum is its bound
    finally:
        _registry._BACKENDS.pop("table_xyz", None)


def _private_solver_imports(path: Path, root: Path = ROOT) -> list[str]:
    """``optprune.solvers._x`` imports in ``path`` (module-level and function-level alike)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["optprune", "solvers"] and any(p.startswith("_") for p in parts[2:3]):
                found.append(f"{path.relative_to(root)}:{node.lineno}: {name}")
                break
    return found


def test_no_module_outside_solvers_imports_a_private_solver_module() -> None:
    """Code outside ``solvers/`` goes through the protocol (``optprune.solvers`` and its public modules) only."""
    folders = ["optprune", "formulations", "benchmarks", "tests"]
    files = [p for folder in folders for p in (ROOT / folder).rglob("*.py")]
    assert len(files) > 20
    offending = [hit for p in files for hit in _private_solver_imports(p)]
    assert offending == []


def test_the_scan_finds_a_private_import(tmp_path) -> None:
    path = tmp_path / "m.py"
    path.write_text("import optprune.solvers.highs\n\n\ndef f():\n"
                    "    from optprune.solvers._highs_model import to_highs\n    return to_highs\n")
    assert _private_solver_imports(path, tmp_path) == ["m.py:5: optprune.solvers._highs_model"]
