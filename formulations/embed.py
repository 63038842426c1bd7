"""Embedding a trained network in a user's own model (constraint learning).

:func:`embed_network` is the public entry: it computes per-neuron bounds over
the box the user's input columns span and adds the big-M encoding of
:mod:`optprune.formulations.relu_milp` on top of those columns.
"""

from __future__ import annotations

import numpy as np

from optprune.bounds import Bounds, compute_bounds
from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations._builder import Columns, ModelBuilder
from optprune.formulations.relu_milp import encode_network
from optprune.network import Network

__all__ = ["embed_network"]


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
    (``bound_method``: interval, linear or obbt, :func:`optprune.bounds.compute_bounds`;
    ``time_limit`` caps OBBT), or taken from ``bounds`` when given (they must
    be valid over that box). The encoding is the big-M formulation of the
    module doc: one binary per unstable ReLU. Output neurons that are ReLUs
    fixed at 0 on the box get a column fixed at 0, so every output has an
    index. The groups ``<name>.input``, ``<name>.output`` and ``<name>.binaries``
    are recorded (``name`` defaults to ``net0``, ``net1``, ...), and the
    :class:`ReluEncoding` is kept in ``builder.encodings[name]``; several
    networks can share one model.
    """
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
    if bounds is None:
        bounds = compute_bounds(net, lower, upper, bound_method, time_budget=time_limit)
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
