"""Explicit solver tolerances (``mip_gap``, ``mip_abs_gap``, ``feasibility_tol``, ``integrality_tol``).

Each backend's native option object must receive the value (read back
through the solver's own API where it has one); a tolerance a backend cannot
apply warns; an import that fails becomes :class:`SolverNotAvailableError`.
"""

from __future__ import annotations

import importlib
import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from optprune.errors import InvalidParameterError, SolverNotAvailableError
from optprune.milp import MILP, Sense
from optprune.solvers import SolveOptions, Status, backend_names, get_backend, solve
from optprune.solvers.base import TOLERANCES

TOLS = SolveOptions(mip_gap=0.0, mip_abs_gap=3e-9, feasibility_tol=2e-7, integrality_tol=5e-7)


def _installed(name: str):
    backend = get_backend(name)
    if not backend.is_available():
        pytest.skip(f"backend {name!r} is not installed: {backend.install_hint}")
    return backend


def _near_tie_mip(n: int = 10) -> tuple[MILP, float]:
    """0/1 knapsack whose best solutions differ by multiples of 1e-7, and its brute-force optimum."""
    weights = np.array([3, 5, 7, 4, 6, 2, 8, 5, 3, 7][:n], dtype=float)
    values = weights + 1e-7 * np.arange(1, n + 1)  # value ~ weight: many near-ties
    capacity = 20.0
    model = MILP(c=values, A=sp.csr_matrix(weights.reshape(1, -1)), row_lower=None, row_upper=[capacity],
                 col_lower=0, col_upper=1, integrality=np.ones(n, bool), sense=Sense.MAXIMIZE)
    best = max(
        float(values @ np.array(bits)) for bits in itertools.product((0, 1), repeat=n)
        if weights @ np.array(bits) <= capacity
    )
    return model, best


@pytest.mark.parametrize("field", ["mip_abs_gap", "feasibility_tol", "integrality_tol"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0])
def test_tolerances_are_validated(field: str, value: float) -> None:
    with pytest.raises(InvalidParameterError, match=field):
        SolveOptions(**{field: value})


def test_zero_tolerance_only_for_the_gap() -> None:
    assert SolveOptions(mip_abs_gap=0.0).mip_abs_gap == 0.0
    with pytest.raises(InvalidParameterError, match="feasibility_tol"):
        SolveOptions(feasibility_tol=0.0)


def test_highs_honours_the_absolute_gap_exactly() -> None:
    model, best = _near_tie_mip()
    result = solve(model, "highs", mip_gap=0.0, mip_abs_gap=0.0)
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(best, abs=1e-9, rel=0)
    assert result.bound >= best - 1e-9  # a valid dual bound (HiGHS may leave it ~2e-7 above: pruning tolerance)


def test_highs_options_reach_the_solver() -> None:
    from optprune.solvers.highs import configure, new_highs

    h = new_highs()
    configure(h, TOLS)
    read = {key: h.getOptionValue(key)[1] for key in
            ("mip_rel_gap", "mip_abs_gap", "primal_feasibility_tolerance", "mip_feasibility_tolerance")}
    assert read == {"mip_rel_gap": 0.0, "mip_abs_gap": 3e-9, "primal_feasibility_tolerance": 2e-7,
                    "mip_feasibility_tolerance": 2e-7}  # the smaller of feasibility and integrality


def test_scip_options_reach_the_solver() -> None:
    _installed("scip")
    import pyscipopt

    from optprune.solvers.scip import scip_params

    scip = pyscipopt.Model()
    for key, value in scip_params(TOLS).items():
        scip.setParam(key, value)
    assert scip.getParam("limits/gap") == 0.0
    assert scip.getParam("limits/absgap") == 3e-9
    assert scip.getParam("numerics/feastol") == 2e-7


def test_cpsat_options_reach_the_solver() -> None:
    _installed("cpsat")
    from ortools.sat.python import cp_model

    from optprune.solvers.cpsat import set_parameters

    params = cp_model.CpSolver().parameters
    set_parameters(params, TOLS)
    assert params.relative_gap_limit == 0.0 and params.absolute_gap_limit == 3e-9


def test_gurobi_options_reach_the_solver() -> None:
    _installed("gurobi")
    from optprune.solvers.gurobi import gurobi_params, to_gurobi

    model, _ = _near_tie_mip()
    m, _, _ = to_gurobi(model)
    for key, value in gurobi_params(SolveOptions(mip_gap=0.0, mip_abs_gap=3e-9, feasibility_tol=2e-7,
                                                 integrality_tol=5e-7, cutoff=4.0, threads=1)).items():
        m.setParam(key, value)
    read = {key: m.getParamInfo(key)[2] for key in
            ("MIPGap", "MIPGapAbs", "FeasibilityTol", "IntFeasTol", "Cutoff", "Threads")}
    assert read == {"MIPGap": 0.0, "MIPGapAbs": 3e-9, "FeasibilityTol": 2e-7, "IntFeasTol": 5e-7, "Cutoff": 4.0,
                    "Threads": 1}


def test_ortools_sub_solvers_get_parameter_strings() -> None:
    _installed("ortools")
    from ortools.linear_solver import pywraplp

    from optprune.solvers.ortools import tolerance_params

    for sub in ("SCIP", "SAT", "GLOP"):
        lines, honoured = tolerance_params(sub, TOLS)
        assert lines, sub
        solver = pywraplp.Solver.CreateSolver(sub)
        assert solver.SetSolverSpecificParametersAsString("\n".join(lines)), (sub, lines)
    assert tolerance_params("SCIP", TOLS)[0] == ["limits/absgap = 3e-09", "numerics/feastol = 2e-07"]
    model, _ = _near_tie_mip()
    with pytest.warns(UserWarning, match="'ortools' ignores the option 'mip_abs_gap'"):
        solve(model, "ortools", mip_abs_gap=1e-9, extra={"ortools_solver": "CBC"})


def test_pyomo_options_reach_the_solver() -> None:
    backend = _installed("pyomo")
    import pyomo.environ as pyo

    model, _ = _near_tie_mip()
    opt = pyo.SolverFactory("appsi_highs")
    native = backend._configure(opt, "appsi_highs", TOLS, model)
    assert opt.config.mip_gap == 0.0
    assert native == {"mip_abs_gap": 3e-9, "primal_feasibility_tolerance": 2e-7, "mip_feasibility_tolerance": 2e-7}

    class NoConfig:
        pass

    with pytest.warns(UserWarning, match="'pyomo' ignores the option 'mip_abs_gap'"):
        backend._configure(NoConfig(), "glpk", TOLS, model)


def test_cvxpy_options_reach_the_solver() -> None:
    _installed("cvxpy")
    from optprune.solvers.cvxpy import solver_kwargs

    kw, missing = solver_kwargs("HIGHS", TOLS)
    assert kw == {"mip_rel_gap": 0.0, "mip_abs_gap": 3e-9, "primal_feasibility_tolerance": 2e-7,
                  "mip_feasibility_tolerance": 2e-7} and missing == []
    kw, missing = solver_kwargs("SCIP", TOLS)
    assert kw == {"scip_params": {"limits/gap": 0.0, "limits/absgap": 3e-9, "numerics/feastol": 2e-7}}
    assert solver_kwargs("SCIPY", TOLS)[1] == ["mip_abs_gap", "feasibility_tol", "integrality_tol"]


@pytest.mark.parametrize("name", backend_names())
def test_every_backend_reports_and_applies_its_tolerances(name: str) -> None:
    """Solving with every tolerance set: no warning for the ones the backend reports, the exact optimum."""
    backend = _installed(name)
    assert backend.supported_tolerances <= set(TOLERANCES)
    model, best = _near_tie_mip()
    assert backend.tolerances_for(model, TOLS) == frozenset(TOLERANCES)  # default sub-solvers honour all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = backend.solve(model, SolveOptions(mip_gap=0.0, mip_abs_gap=0.0, feasibility_tol=1e-7,
                                                   integrality_tol=1e-7))
    assert result.status == Status.OPTIMAL
    assert result.objective == pytest.approx(best, abs=1e-9, rel=0)


@pytest.mark.parametrize("name", backend_names())
@pytest.mark.parametrize("failure", [ImportError("libfoo.so: cannot open shared object file"),
                                     AttributeError("module 'numpy' has no attribute 'float'")])
def test_a_broken_install_is_solver_not_available(name: str, failure: Exception, monkeypatch) -> None:
    backend = _installed(name)
    import optprune.solvers.base as base

    real = importlib.import_module

    def broken(module: str, *args, **kwargs):
        if module.split(".")[0] == backend.package:
            raise failure
        return real(module, *args, **kwargs)

    monkeypatch.setattr(base.importlib, "import_module", broken)
    message = backend.import_error()
    assert message is not None and type(failure).__name__ in message and "install" in message
    model, _ = _near_tie_mip(4)
    with pytest.raises(SolverNotAvailableError, match=str(failure)[:10]):
        solve(model, name)
    with pytest.raises(SolverNotAvailableError, match="pip install"):
        backend.solve(model, SolveOptions())


def test_import_error_is_none_when_the_package_imports() -> None:
    assert get_backend("highs").import_error() is None


def test_highs_accepts_a_thread_count_after_a_default_solve():
    """HiGHS' process-wide scheduler once made a threads=1 solve after a default one fail with an error status."""
    import numpy as np

    from optprune.milp import MILP, Sense
    from optprune.solvers import SolveOptions, Status, solve

    model = MILP(np.array([1.0, 1.0]), np.array([[1.0, 2.0]]), [2.0], [np.inf], [0, 0], [5, 5],
                 np.array([True, False]), Sense.MINIMIZE)
    for threads in (None, 1, 2, 1):
        result = solve(model, "highs", SolveOptions(threads=threads))
        assert result.status == Status.OPTIMAL and abs(result.objective - 1.0) < 1e-9, (threads, result.message)
