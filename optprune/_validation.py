"""Parameter constraints written as data, checked in one place (scikit-learn's ``_param_validation``).

A class lists its parameters' constraints as a mapping ``{name: [constraint,
...]}``; a value is valid when any constraint accepts it (``None`` in the list
accepts ``None``). :func:`validate_params` raises one
:class:`~optprune.errors.InvalidParameterError` naming the class, the
parameter, what is allowed and the value received. Numbers are never NaN:
NaN compares false with both ends of every interval and would otherwise slip
through a range check.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from optprune.errors import InvalidParameterError

__all__ = [
    "Constraint",
    "InstanceOf",
    "Interval",
    "IsCallable",
    "Options",
    "Predicate",
    "ShapeLike",
    "validate_params",
]


class Constraint(Protocol):
    """What a constraint offers: a test and a phrase for the error message."""

    def accepts(self, value: Any) -> bool: ...

    def describe(self) -> str: ...


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Interval:
    """A real (``kind=float``) or integer (``kind=int``) number in ``[low, high]``, never NaN.

    ``closed`` says which ends are included: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``;
    ``None`` for an end means unbounded on that side. Infinity passes an unbounded end unless
    ``finite`` is set.
    """

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"
    finite: bool = False

    def __post_init__(self) -> None:
        if self.closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"Interval.closed must be 'both', 'left', 'right' or 'neither', got {self.closed!r}")

    def accepts(self, value: Any) -> bool:
        if not _is_real(value):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        v = float(value)
        if math.isnan(v) or (self.finite and not math.isfinite(v)):
            return False
        if self.low is not None and (v < self.low or (v == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (v > self.high or (v == self.high and self.closed in ("left", "neither"))):
            return False
        return True

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        what = "an int" if self.kind is int else ("a finite float" if self.finite else "a float")
        return f"{what} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    """One of a fixed set of values (strings, numbers, booleans)."""

    values: tuple

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | int | float | bool) and value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class InstanceOf:
    """An instance of one of ``types`` (a bool is not an int here unless ``bool`` is listed)."""

    types: tuple[type, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (bool not in self.types and isinstance(value, bool))

    def describe(self) -> str:
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class IsCallable:
    """A callable that is not a class."""

    def accepts(self, value: Any) -> bool:
        return callable(value) and not isinstance(value, type)

    def describe(self) -> str:
        return "a callable"


@dataclass(frozen=True)
class ShapeLike:
    """A non-empty sequence of positive integers (an input shape without the batch axis)."""

    def accepts(self, value: Any) -> bool:
        return (
            isinstance(value, (tuple, list))
            and len(value) > 0
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and int(v) > 0 for v in value)
        )

    def describe(self) -> str:
        return "a tuple of positive ints"


@dataclass(frozen=True)
class Predicate:
    """Any test written as a function, with the phrase that names what it allows."""

    test: Callable[[Any], bool]
    description: str

    def accepts(self, value: Any) -> bool:
        return bool(self.test(value))

    def describe(self) -> str:
        return self.description


def validate_params(
    owner: str, params: Mapping[str, Any], constraints: Mapping[str, Iterable[Constraint | None]]
) -> None:
    """Check every ``params[name]`` against ``constraints[name]``.

    Raises :class:`InvalidParameterError` ``"{owner}: parameter {name!r} must be {allowed}; got {value!r}"``
    for the first parameter no constraint accepts.
    """
    for name, allowed in constraints.items():
        options = list(allowed)
        value = params[name]
        if value is None and None in options:
            continue
        checks = [c for c in options if c is not None]
        if any(c.accepts(value) for c in checks):
            continue
        what = " or ".join([c.describe() for c in checks] + (["None"] if None in options else []))
        raise InvalidParameterError(f"{owner}: parameter {name!r} must be {what}; got {value!r}")
