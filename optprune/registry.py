"""One small registry class for every kind of pluggable method: name -> factory, listed before it is imported.

Scorers, pruning decisions, LM pruning methods, pruning-at-initialisation
methods, block scorers, bound methods and verification engines each keep one
:class:`Registry`. The CLI's choices, bench config validation, benchmark
scripts and error messages read the registry's :meth:`~Registry.names`, so
adding a method is one new module plus one registration line::

    SCORERS.register("my_scorer", "optprune.scoring._mine:MyScorer")   # lazy: imported on first use
    SCORERS.register("other", OtherScorer)                              # eager: the object itself

Lazy entries (``"module:attribute"``) keep every built-in listed without
importing it (no torch import to print ``--help``, no import cycles between a
registry and the modules it lists).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from optprune.errors import InvalidParameterError

__all__ = ["Registered", "Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names of one kind of method (``kind``, e.g. ``"scorer"``) mapped to objects or lazy ``"module:attr"`` paths."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, target: T | str, help: str = "", *, replace: bool = False) -> None:
        """Add ``name``; ``target`` is the object or ``"module:attribute"`` to import on first :meth:`get`."""
        if not isinstance(name, str) or not name:
            raise InvalidParameterError(f"{self.kind} registry: a name must be a non-empty string, got {name!r}")
        if name in self._entries and not replace:
            raise InvalidParameterError(f"{self.kind} {name!r} is already registered (pass replace=True to override)")
        if isinstance(target, str) and ":" not in target:
            raise InvalidParameterError(
                f"{self.kind} {name!r}: a lazy target must read 'module:attribute', got {target!r}"
            )
        self._entries[name] = target
        self._help[name] = help

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register toy methods clean up with this)."""
        self._entries.pop(name, None)
        self._help.pop(name, None)

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order (what the CLI offers and error messages list)."""
        return tuple(self._entries)

    def help(self, name: str) -> str:
        return self._help.get(name, "")

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: Any, parameter: str | None = None) -> str:
        """``name`` if registered, else an :class:`InvalidParameterError` naming the allowed names."""
        if isinstance(name, str) and name in self._entries:
            return name
        label = parameter or self.kind
        raise InvalidParameterError(f"{label} must be one of {', '.join(self.names())}; got {name!r}")

    def get(self, name: Any, parameter: str | None = None) -> T:
        """The object registered as ``name`` (imported now if it was registered lazily)."""
        target = self._entries[self.check(name, parameter)]
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            loaded = getattr(importlib.import_module(module), attribute)
            self._entries[name] = loaded
            return loaded
        return target

    def constraint(self) -> Registered:
        """A parameter constraint (:mod:`optprune._validation`) accepting the names registered when it checks."""
        return Registered(self)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


class Registered:
    """Constraint: a name of ``registry`` (read when checked, so methods registered later are accepted)."""

    def __init__(self, registry: Registry[Any]) -> None:
        self.registry = registry

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str) and value in self.registry

    def describe(self) -> str:
        return "one of " + ", ".join(repr(n) for n in self.registry.names())
