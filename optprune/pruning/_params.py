"""Parameter constraints written as data, checked at ``fit`` (scikit-learn's estimator contract)."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optprune.errors import InvalidParameterError

__all__ = ["Interval", "Options", "InstanceOf", "IsCallable", "ShapeLike", "validate_params"]


@dataclass(frozen=True)
class Interval:
    """A real (or integer) number in ``[low, high]``; ``closed`` says which ends are included."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False
        if self.kind is int and not isinstance(value, numbers.Integral):
            return False
        if self.low is not None and (value < self.low or (value == self.low and self.closed in ("right", "neither"))):
            return False
        if self.high is not None and (value > self.high or (value == self.high and self.closed in ("left", "neither"))):
            return False
        return True

    def describe(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else self.low
        high = "inf" if self.high is None else self.high
        return f"{'an int' if self.kind is int else 'a float'} in {left}{low}, {high}{right}"


@dataclass(frozen=True)
class Options:
    values: tuple

    def accepts(self, value: Any) -> bool:
        return isinstance(value, str | int | float | bool | None) and value in self.values

    def describe(self) -> str:
        return "one of " + ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class InstanceOf:
    types: tuple[type, ...]

    def accepts(self, value: Any) -> bool:
        return isinstance(value, self.types) and not (bool not in self.types and isinstance(value, bool))

    def describe(self) -> str:
        return "an instance of " + " or ".join(t.__name__ for t in self.types)


@dataclass(frozen=True)
class IsCallable:
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
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v > 0 for v in value)
        )

    def describe(self) -> str:
        return "a tuple of positive ints"


Constraint = Interval | Options | InstanceOf | IsCallable | ShapeLike


def validate_params(
    owner: str, params: Mapping[str, Any], constraints: Mapping[str, Iterable[Constraint | Callable]]
) -> None:
    """Raise :class:`InvalidParameterError` naming owner, parameter, allowed values and the value received."""
    for name, allowed in constraints.items():
        allowed = list(allowed)
        value = params[name]
        if value is None and None in allowed:
            continue
        checks = [c for c in allowed if c is not None]
        if any(c.accepts(value) for c in checks):
            continue
        what = " or ".join([c.describe() for c in checks] + (["None"] if None in allowed else []))
        raise InvalidParameterError(f"{owner}: parameter {name!r} must be {what}; got {value!r}")
