"""Backends by name. Listing them imports no native library."""

from __future__ import annotations

from dataclasses import fields, replace

from optprune._validation import InstanceOf, Predicate, validate_params
from optprune.errors import InvalidParameterError, UnknownSolverError
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
    validate_params("get_backend", {"name": name}, {"name": [_backend_name()]})
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
    validate_params(
        "solve", {"model": model, "solver": solver, "options": options},
        {"model": [InstanceOf((MILP,))], "solver": [_backend_name()], "options": [InstanceOf((SolveOptions,)), None]},
    )
    allowed = [f.name for f in fields(SolveOptions)]
    unknown = [key for key in kwargs if key not in allowed]
    if unknown:
        raise InvalidParameterError(
            f"solve: unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"the options (SolveOptions fields) are {', '.join(allowed)}"
        )
    backend = get_backend(solver)
    backend.require()
    if options is None:
        options = SolveOptions(**kwargs)
    elif kwargs:
        options = replace(options, **kwargs)
    return backend.solve(model, options)


def _backend_name() -> Predicate:
    """A backend name: a string (one of the registered backends, checked by :func:`get_backend`)."""
    return Predicate(lambda value: isinstance(value, str), f"a backend name (one of {', '.join(map(repr, _BACKENDS))})")
