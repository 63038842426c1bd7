"""Resource costs of one layer as a function of its input and output widths: bilinear forms and measured tables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError

__all__ = ["Bilinear", "Table", "Cost", "LayerCost", "cost_from_dict", "linear_costs", "conv_costs"]


# ----------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Bilinear:
    """``cost(k_in, k_out) = in_out * k_in * k_out + in_ * k_in + out * k_out + const``.

    ``nn.Linear(k_in, k_out)``: parameters ``in_out=1, out=1`` (bias); an input
    flattened from ``k_in`` channels of ``H x W`` pixels has ``in_out=H*W``.
    ``nn.Conv2d`` with a ``kh x kw`` kernel: parameters ``in_out=kh*kw, out=1``,
    multiply-accumulates ``in_out=kh*kw*H'*W'``. ``BatchNorm``: ``out=2``.
    """

    in_out: float = 0.0
    in_: float = 0.0
    out: float = 0.0
    const: float = 0.0

    def __call__(self, k_in, k_out) -> np.ndarray:
        k_in = np.asarray(k_in, dtype=np.float64)
        k_out = np.asarray(k_out, dtype=np.float64)
        return self.in_out * k_in * k_out + self.in_ * k_in + self.out * k_out + self.const

    @property
    def monotone(self) -> bool:
        """Nondecreasing in both widths (all coefficients nonnegative)."""
        return min(self.in_out, self.in_, self.out) >= 0

    def to_dict(self) -> dict:
        return {"type": "bilinear", "in_out": self.in_out, "in": self.in_, "out": self.out, "const": self.const}


def _axis(name: str, values) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size == 0 or np.any(np.diff(arr) <= 0):
        raise ShapeMismatchError(f"table axis {name} must be non-empty and strictly increasing, got {arr.tolist()}")
    arr.setflags(write=False)
    return arr


def _interp(axis: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices ``lo, hi`` and weight ``t`` of ``k`` on ``axis`` (clamped to the ends)."""
    if axis.size == 1:
        zero = np.zeros(k.shape, dtype=np.int64)
        return zero, zero, np.zeros(k.shape)
    lo = np.clip(np.searchsorted(axis, k, side="right") - 1, 0, axis.size - 2)
    t = np.clip((k - axis[lo]) / (axis[lo + 1] - axis[lo]), 0.0, 1.0)
    return lo, lo + 1, t


@dataclass(frozen=True, eq=False)
class Table:
    """A cost measured on a grid of (input width, output width), bilinearly interpolated.

    ``values[i, j]`` is the cost at ``(in_widths[i], out_widths[j])``; widths
    between grid points are interpolated, widths outside are clamped to the
    nearest end. A fixed end has a one-point axis.
    """

    in_widths: np.ndarray
    out_widths: np.ndarray
    values: np.ndarray

    def __post_init__(self) -> None:
        a_in, a_out = _axis("in_widths", self.in_widths), _axis("out_widths", self.out_widths)
        vals = np.asarray(self.values, dtype=np.float64)
        if vals.shape != (a_in.size, a_out.size):
            raise ShapeMismatchError(f"table values have shape {vals.shape}, axes need {(a_in.size, a_out.size)}")
        if not np.all(np.isfinite(vals)):
            raise ShapeMismatchError("table values must be finite")
        vals.setflags(write=False)
        object.__setattr__(self, "in_widths", a_in)
        object.__setattr__(self, "out_widths", a_out)
        object.__setattr__(self, "values", vals)

    def __call__(self, k_in, k_out) -> np.ndarray:
        k_in, k_out = np.broadcast_arrays(np.asarray(k_in, dtype=np.float64), np.asarray(k_out, dtype=np.float64))
        i0, i1, ti = _interp(self.in_widths, k_in)
        o0, o1, to = _interp(self.out_widths, k_out)
        v = self.values
        return (
            (1 - ti) * (1 - to) * v[i0, o0] + (1 - ti) * to * v[i0, o1]
            + ti * (1 - to) * v[i1, o0] + ti * to * v[i1, o1]
        )

    @property
    def monotone(self) -> bool:
        return bool(np.all(np.diff(self.values, axis=0) >= 0) and np.all(np.diff(self.values, axis=1) >= 0))

    def to_dict(self) -> dict:
        return {
            "type": "table",
            "in_widths": self.in_widths.tolist(),
            "out_widths": self.out_widths.tolist(),
            "values": self.values.tolist(),
        }


Cost = Bilinear | Table


def cost_from_dict(data: Mapping) -> Cost:
    """The inverse of ``to_dict`` of :class:`Bilinear` / :class:`Table`."""
    kind = data.get("type", "bilinear")
    if kind == "bilinear":
        return Bilinear(
            float(data.get("in_out", 0.0)), float(data.get("in", 0.0)), float(data.get("out", 0.0)),
            float(data.get("const", 0.0)),
        )
    if kind == "table":
        return Table(data["in_widths"], data["out_widths"], data["values"])
    raise InvalidParameterError(f"cost type must be 'bilinear' or 'table', got {kind!r}")


def linear_costs(*, bias: bool = True, spatial_in: int = 1) -> dict[str, Bilinear]:
    """Parameters and multiply-accumulates ("flops") of ``nn.Linear``.

    ``spatial_in`` is the number of input features per input unit (``H*W`` when
    the input was flattened from channels).
    """
    return {
        "params": Bilinear(in_out=float(spatial_in), out=float(bias)),
        "flops": Bilinear(in_out=float(spatial_in)),
    }


def conv_costs(kh: int, kw: int, out_hw: tuple[int, int], *, bias: bool = True, groups: int = 1) -> dict[str, Bilinear]:
    """Parameters and multiply-accumulates of ``nn.Conv2d`` (``groups`` divides the input channels)."""
    per = float(kh * kw) / groups
    return {
        "params": Bilinear(in_out=per, out=float(bias)),
        "flops": Bilinear(in_out=per * out_hw[0] * out_hw[1]),
    }


@dataclass(frozen=True, eq=False)
class LayerCost:
    """One layer's resource costs; ``input`` / ``output`` are a group name or a fixed width."""

    name: str
    input: str | int
    output: str | int
    costs: Mapping[str, Cost] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for end in ("input", "output"):
            value = getattr(self, end)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
                raise InvalidParameterError(
                    f"layer {self.name!r}: {end} must be a group name or a fixed width, got {value!r}"
                )
            if not isinstance(value, str):
                if value < 0:
                    raise InvalidParameterError(f"layer {self.name!r}: fixed {end} width must be >= 0, got {value}")
                object.__setattr__(self, end, int(value))
        costs = {}
        for key, cost in dict(self.costs).items():
            if isinstance(cost, Mapping):
                cost = cost_from_dict(cost)
            if not isinstance(cost, (Bilinear, Table)):
                raise InvalidParameterError(
                    f"layer {self.name!r}: cost {key!r} must be Bilinear or Table, got {type(cost).__name__}"
                )
            costs[str(key)] = cost
        object.__setattr__(self, "costs", MappingProxyType(costs))

    def to_dict(self) -> dict:
        return {
            "name": self.name, "input": self.input, "output": self.output,
            "costs": {k: c.to_dict() for k, c in self.costs.items()},
        }
