"""Solver backends behind one protocol: ``solve(model, solver="highs")``.

Backends: ``highs`` (default, embedded), ``scip``, ``ortools`` / ``cpsat``,
``pyomo``, ``cvxpy``. Only HiGHS is a core dependency; the others are extras
(``pip install 'optprune[scip]'`` ...). Importing this package imports none of
them.
"""

from optprune.solvers.base import Backend, BackendBase, Progress, SolveOptions, SolveResult, Status
from optprune.solvers.highs import HighsBackend
from optprune.solvers.registry import backend_names, get_backend, list_backends, register, solve

register(HighsBackend())

__all__ = [
    "Backend",
    "BackendBase",
    "Progress",
    "SolveOptions",
    "SolveResult",
    "Status",
    "HighsBackend",
    "backend_names",
    "get_backend",
    "list_backends",
    "register",
    "solve",
]
