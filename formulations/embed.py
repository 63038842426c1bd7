"""Embedding a trained network in a user's own model (constraint learning).

:func:`embed_network` is the public entry: it computes per-neuron bounds over
the box the user's input columns span and adds the big-M encoding of
:mod:`optprune.formulations.relu_milp` on top of those columns.
"""

from __future__ import annotations

import numpy as np

from optprune._validation import InstanceOf, Interval, Options, validate_params
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations._builder import Columns, ModelBuilder
from optprune.formulations.relu_milp import encode_network
from optprune.network import Network
from optprune.verification.bounds import BOUND_METHODS, Bounds, compute_bounds, interval_bounds

__all__ = ["embed_network", "BIG_M_LIMIT"]

BIG_M_LIMIT = 1e12
"""Largest magnitude allowed for an input bound and for every neuron's bound (a big-M constant).

The bounds become column bounds and matrix coefficients of the encoding; HiGHS refuses coefficients of
1e15 and above, and solvers take bounds of 1e20 and above as infinite. The margin leaves room for the
outward padding of :mod:`optprune.verification.bounds`.
"""

_EMBED_CONSTRAINTS = {
    "builder": [InstanceOf((ModelBuilder,))],
    "net": [InstanceOf((Network,))],
    "bound_method": [Options(BOUND_METHODS)],
    "bounds": [InstanceOf((list, tuple)), None],
    "name": [InstanceOf((str,)), None],
    "time_limit": [Interval(float, 0, None, closed="neither"), None],
}


def _listed(indices: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return f"[{shown}{', ...' if indices.size > limit else ''}] ({indices.size} in all)"


def _safe_input_range(net: Network) -> float:
    """``M`` such that every neuron's interval bound over the box ``[-M, M]^n`` is within ``BIG_M_LIMIT``.

    Interval arithmetic on ``|x| <= M``: a neuron of layer ``k`` is bounded by ``M g_k + c_k`` with
    ``g_{k+1} = |W_k| g_k`` (``g_0 = 1``) and ``c_{k+1} = |W_k| c_k + |b_k|`` (``c_0 = 0``); a ReLU
    never widens the range.
    """
    gain, const, allowed = np.ones(net.input_size), np.zeros(net.input_size), np.inf
    with np.errstate(over="ignore", invalid="ignore"):
        for layer in net.layers:
            absw = abs(layer.weight)
            gain = np.asarray(absw @ gain).reshape(-1)
            const = np.asarray(absw @ const).reshape(-1) + np.abs(layer.bias)
            g, c = float(gain.max(initial=0.0)), float(const.max(initial=0.0))
            if g > 0:
                allowed = min(allowed, (BIG_M_LIMIT - c) / g)
            elif c > BIG_M_LIMIT:
                allowed = 0.0
    return max(float(allowed), 0.0) if np.isfinite(allowed) else BIG_M_LIMIT


def _range_advice(net: Network) -> str:
    """The input range that is always small enough, as a phrase for a message."""
    safe = _safe_input_range(net)
    if safe > 0:
        return f"input bounds within +-{safe:.6g} are always small enough for this network"
    return "this network's weights and biases are too large for any input range to be guaranteed: rescale it"


def _check_bounds_magnitude(net: Network, bounds: Bounds, where: str, cols: np.ndarray, x_abs: np.ndarray) -> None:
    """Refuse neuron bounds that are not finite or beyond ``BIG_M_LIMIT``, naming the layer, neuron and inputs."""
    for k, (lower, upper) in enumerate(bounds):
        lower, upper = (np.asarray(b, dtype=np.float64).reshape(-1) for b in (lower, upper))
        with np.errstate(invalid="ignore"):
            bad = ~(np.abs(lower) <= BIG_M_LIMIT) | ~(np.abs(upper) <= BIG_M_LIMIT)
        if not bad.any():
            continue
        i = int(np.flatnonzero(bad)[0])
        widest = np.flatnonzero(x_abs == x_abs.max())
        raise InvalidParameterError(
            f"embed_network: {where}, neuron {i} of layer {k} ({net.layers[k].name or 'unnamed'!r}) has bounds "
            f"[{lower[i]:.6g}, {upper[i]:.6g}] ({int(bad.sum())} such neurons in this layer); every neuron's bounds "
            f"must be finite and within +-{BIG_M_LIMIT:g}, as they become big-M constants. The widest input bounds "
            f"(|x| up to {x_abs.max():.6g}) are on inputs {_listed(widest)} (columns {_listed(cols[widest])}); "
            f"{_range_advice(net)}"
        )


def embed_network(
    builder: ModelBuilder,
    net: Network,
    x,
    *,
    bound_method: str = "linear",
    bounds: Bounds | None = None,
    name: str | None = None,
    time_limit: float | None = None,
) -> np.ndarray:
    """Embed ``net`` in ``builder`` with ``x`` as its inputs; returns the column indices of its outputs.

    ``x`` are columns the user made (:meth:`ModelBuilder.add_vars`); their
    bounds are the input box over which per-neuron bounds are computed
    (``bound_method``: interval, linear or obbt, :func:`optprune.verification.bounds.compute_bounds`;
    ``time_limit`` caps OBBT), or taken from ``bounds`` when given (they must
    be valid over that box). The encoding is the big-M formulation of the
    module doc: one binary per unstable ReLU. Output neurons that are ReLUs
    fixed at 0 on the box get a column fixed at 0, so every output has an
    index. The groups ``<name>.input``, ``<name>.output`` and ``<name>.binaries``
    are recorded (``name`` defaults to ``net0``, ``net1``, ...), and the
    :class:`ReluEncoding` is kept in ``builder.encodings[name]``; several
    networks can share one model.
    """
    validate_params(
        "embed_network",
        {"builder": builder, "net": net, "bound_method": bound_method, "bounds": bounds, "name": name,
         "time_limit": time_limit},
        _EMBED_CONSTRAINTS,
    )
    cols = builder.check_columns("embed_network: x", x)
    if cols.size != net.input_size:
        raise ShapeMismatchError(
            f"embed_network: x has {cols.size} columns, "
            f"network {net.name or '(unnamed)'!r} takes {net.input_size} inputs"
        )
    name = f"net{len(builder.encodings)}" if name is None else str(name)
    if name in builder.encodings:
        raise InvalidParameterError(f"embed_network: a network named {name!r} is already embedded in this model")
    lower, upper = builder.column_bounds(cols)
    unbounded = np.flatnonzero(~np.isfinite(lower) | ~np.isfinite(upper))
    if unbounded.size:
        raise InvalidParameterError(
            f"embed_network: input {int(unbounded[0])} (column {int(cols[unbounded[0]])}) has bounds "
            f"[{lower[unbounded[0]]}, {upper[unbounded[0]]}]; the big-M encoding needs finite bounds on every input "
            f"({unbounded.size} unbounded): give add_vars finite lower and upper bounds"
        )
    x_abs = np.maximum(np.abs(lower), np.abs(upper))
    too_wide = np.flatnonzero(x_abs > BIG_M_LIMIT)
    if too_wide.size:
        j = int(too_wide[0])
        raise InvalidParameterError(
            f"embed_network: input bounds must be within +-{BIG_M_LIMIT:g} (they become big-M constants; "
            f"{_range_advice(net)}); inputs "
            f"{_listed(too_wide)} (columns {_listed(cols[too_wide])}) are wider, input {j} has bounds "
            f"[{lower[j]:.6g}, {upper[j]:.6g}]"
        )
    if bounds is None:
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused just below, naming the inputs
            box = interval_bounds(net, lower, upper)
        _check_bounds_magnitude(net, box, "over the input box", cols, x_abs)
        bounds = compute_bounds(net, lower, upper, bound_method, time_budget=time_limit)
    else:
        if len(bounds) != len(net.layers):
            raise ShapeMismatchError(
                f"embed_network: parameter 'bounds' must hold one (lower, upper) pair per layer "
                f"({len(net.layers)}); got {len(bounds)}"
            )
        _check_bounds_magnitude(net, bounds, "in the given bounds", cols, x_abs)
    enc = encode_network(builder, net, bounds, input_idx=cols)
    out = enc.output_idx.copy()
    removed = np.flatnonzero(out < 0)
    if removed.size:
        out[removed] = builder.add_columns(np.zeros(removed.size), np.zeros(removed.size))
    builder.encodings[name] = enc
    builder.add_group(f"{name}.input", cols)
    builder.add_group(f"{name}.output", out)
    builder.add_group(f"{name}.binaries", np.concatenate(enc.binary_idx) if enc.n_binaries else np.zeros(0, np.int64))
    return Columns(out, builder.id)
