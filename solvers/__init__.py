"""Solver backends behind one protocol: ``solve(model, solver="highs")``.

Backends: ``highs`` (default, embedded), ``scip``, ``ortools`` / ``cpsat``,
``pyomo``, ``cvxpy``, ``gurobi``. Only HiGHS is a core dependency; the others are extras
(``pip install 'optprune[scip]'`` ...). Importing this package imports none of
them.
"""

from optprune.solvers.base import (
    FOCUSES,
    Backend,
    BackendBase,
    LPSession,
    NativeRun,
    NonConvexObjectiveError,
    Outcome,
    Progress,
    QuadraticObjectiveError,
    SolveOptions,
    SolveResult,
    Status,
    quadratic_backends,
)
from optprune.solvers.cpsat import CpsatBackend
from optprune.solvers.cvxpy import CvxpyBackend
from optprune.solvers.gurobi import GurobiBackend, GurobiLicenseLimitError
from optprune.solvers.highs import HighsBackend, read_model, write_model
from optprune.solvers.ortools import OrtoolsBackend
from optprune.solvers.pyomo import PyomoBackend, to_pyomo
from optprune.solvers.registry import backend_names, get_backend, list_backends, register, solve
from optprune.solvers.scip import ScipBackend

register(HighsBackend())
for _backend in (ScipBackend(), OrtoolsBackend(), CpsatBackend(), PyomoBackend(), CvxpyBackend(), GurobiBackend()):
    register(_backend)
del _backend

__all__ = [
    "Backend",
    "BackendBase",
    "FOCUSES",
    "LPSession",
    "NativeRun",
    "Outcome",
    "Progress",
    "SolveOptions",
    "SolveResult",
    "Status",
    "QuadraticObjectiveError",
    "NonConvexObjectiveError",
    "quadratic_backends",
    "HighsBackend",
    "ScipBackend",
    "OrtoolsBackend",
    "CpsatBackend",
    "PyomoBackend",
    "CvxpyBackend",
    "GurobiBackend",
    "GurobiLicenseLimitError",
    "backend_names",
    "get_backend",
    "list_backends",
    "register",
    "solve",
    "to_pyomo",
    "read_model",
    "write_model",
]
