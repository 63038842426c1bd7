"""Backends by name. Listing them imports no native library."""

from __future__ import annotations

from optprune.errors import UnknownSolverError
from optprune.milp import MILP
from optprune.solvers.base import BackendBase, SolveOptions, SolveResult

__all__ = ["register", "get_backend", "backend_names", "list_backends", "solve"]

_BACKENDS: dict[str, BackendBase] = {}


def register(backend: BackendBase) -> BackendBase:
    """Add a backend under ``backend.name`` (users may register their own)."""
    _BACKENDS[backend.name] = backend
    return backend


def backend_names() -> list[str]:
    return list(_BACKENDS)


def get_backend(name: str) -> BackendBase:
    """The backend called ``name``; an unknown name lists the registered ones."""
    key = name.lower()
    if key not in _BACKENDS:
        raise UnknownSolverError(f"unknown solver {name!r}; available backends: {', '.join(_BACKENDS)}")
    return _BACKENDS[key]


def list_backends() -> list[dict]:
    """Name, availability, version and capabilities of every registered backend."""
    rows = []
    for backend in _BACKENDS.values():
        available = backend.is_available()
        rows.append(
            {
                "name": backend.name,
                "available": available,
                "version": backend.version() if available else None,
                "capabilities": backend.capabilities(),
                "install": None if available else backend.install_hint,
            }
        )
    return rows


def solve(model: MILP, solver: str = "highs", options: SolveOptions | None = None, **kwargs) -> SolveResult:
    """Solve ``model`` with the backend named ``solver``.

    Keyword arguments are :class:`SolveOptions` fields (``time_limit=``, ``mip_gap=``, ...).
    """
    backend = get_backend(solver)
    backend.require()
    if options is None:
        options = SolveOptions(**kwargs)
    elif kwargs:
        from dataclasses import replace

        options = replace(options, **kwargs)
    return backend.solve(model, options)
