r"""Big-M MILP encoding of a ReLU network, and the queries built on it.

For a neuron with pre-activation ``z = w^T h_prev + b`` and bounds ``l <= z <= u``
(Tjeng, Xiao & Tedrake 2019, "Evaluating Robustness of Neural Networks with
Mixed Integer Programming", eq. 5; Fischetti & Jo 2018, "Deep neural networks
and mixed integer linear optimization"):

* stably inactive (``u <= 0``): ``h = 0``, a column fixed at 0 with no row
  (the next layer's rows leave it out), so every layer's output is a
  full-length vector of columns;
* stably active (``l >= 0``): ``h = z`` (one equality row, no binary);
* unstable (``l < 0 < u``), one binary ``delta``::

      h >= z,               h >= 0,
      h <= z - l (1 - delta),
      h <= u delta,         delta in {0, 1}.

Only unstable neurons get a binary, so tighter bounds (``optprune.verification.bounds``)
make a smaller and stronger model. Every block of rows is built from the
layer's sparse weight matrix in one vectorised step.

Queries (all maximise or minimise over the same encoding):

* :func:`build_spec_milp`: maximise ``min_i (C_i y + d_i)`` over an input box —
  a VNN-LIB conjunction is violated (``sat``) iff the optimum is ``>= 0``; with
  one row ``C = e_t - e_y`` this is the max-margin adversarial example;
* :func:`build_min_distortion_milp`: MIPVerify's minimal adversarial distortion
  (minimise ``||x - x0||_inf`` or ``||x - x0||_1`` such that ``C y + d >= margin``);
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from optprune.errors import InvalidParameterError, ShapeMismatchError, UnsupportedLayerError
from optprune.formulations._builder import ModelBuilder
from optprune.milp import MILP
from optprune.network import PIECEWISE_LINEAR, Network

if TYPE_CHECKING:  # annotations only: optprune.verification.bounds (OBBT) builds on this encoding
    from optprune.verification.bounds import Bounds

__all__ = [
    "ReluEncoding",
    "check_piecewise_linear",
    "encode_network",
    "build_spec_milp",
    "build_min_distortion_milp",
    "forward_assignment",
]


@dataclass(frozen=True)
class ReluEncoding:
    """Where the network lives in the model's columns.

    ``neuron_idx[k][i]`` is the column of neuron ``i``'s output in layer ``k``,
    for every neuron (a stably inactive one has a column fixed at 0, so
    ``output_idx`` has one column per output); ``binary_idx[k]`` are the
    binaries of layer ``k``'s unstable neurons.
    """

    input_idx: np.ndarray
    neuron_idx: list[np.ndarray]
    binary_idx: list[np.ndarray]
    n_unstable: int
    n_stable_active: int
    n_stable_inactive: int
    extra: dict = field(default_factory=dict)

    @property
    def output_idx(self) -> np.ndarray:
        return self.neuron_idx[-1]

    @property
    def n_binaries(self) -> int:
        return int(sum(b.size for b in self.binary_idx))

    def stats(self) -> dict:
        return {
            "unstable": self.n_unstable,
            "stable_active": self.n_stable_active,
            "stable_inactive": self.n_stable_inactive,
            "binaries": self.n_binaries,
        }


def _affine_rows(weight, rows: np.ndarray, prev_idx: np.ndarray, prev_zero: np.ndarray):
    """COO entries of ``-W[rows, kept] h_prev`` with columns mapped to model columns.

    ``kept`` leaves out the previous layer's neurons flagged ``prev_zero`` (fixed at 0).
    """
    kept = np.flatnonzero(~prev_zero)
    sub = sp.csr_matrix(weight)[rows][:, kept].tocoo()
    return sub.row, prev_idx[kept][sub.col], -sub.data


def check_piecewise_linear(net: Network, n_layers: int | None = None) -> None:
    """Raise :class:`UnsupportedLayerError` for a layer (of the first ``n_layers``) whose activation a MIP
    cannot encode exactly (sigmoid, tanh: :data:`optprune.network.PIECEWISE_LINEAR` are the ones it can)."""
    for layer in net.layers[: len(net.layers) if n_layers is None else n_layers]:
        if layer.activation not in PIECEWISE_LINEAR:
            raise UnsupportedLayerError(
                layer.name, f"{layer.activation} activation (a MIP encodes piecewise-linear activations only; "
                            "bounds and the attack handle it: optprune verify --method bounds or auto)",
                PIECEWISE_LINEAR)


def encode_network(
    builder: ModelBuilder,
    net: Network,
    bounds: Bounds,
    x_lower=None,
    x_upper=None,
    *,
    input_idx=None,
    relax: bool = False,
    n_layers: int | None = None,
) -> ReluEncoding:
    """Add the big-M encoding of the first ``n_layers`` layers of ``net`` to ``builder``.

    The inputs are the existing columns ``input_idx``, or new columns with
    bounds ``[x_lower, x_upper]``. With ``relax`` the binaries are continuous
    in [0, 1] (the LP relaxation, used for OBBT). ``bounds`` must be valid for
    the input columns' box. Users call :func:`embed_network` instead.
    """
    if len(bounds) != len(net.layers):
        raise ShapeMismatchError(f"{len(bounds)} bound pairs for a network of {len(net.layers)} layers")
    n_layers = len(net.layers) if n_layers is None else n_layers
    check_piecewise_linear(net, n_layers)
    if input_idx is None:
        x_lower = np.asarray(x_lower, dtype=np.float64).reshape(-1)
        x_upper = np.asarray(x_upper, dtype=np.float64).reshape(-1)
        input_idx = builder.add_columns(x_lower, x_upper)
    prev_idx = np.asarray(input_idx, dtype=np.int64)
    prev_zero = np.zeros(prev_idx.size, dtype=bool)
    input_idx = prev_idx
    neuron_idx, binary_idx = [], []
    counts = {"unstable": 0, "active": 0, "inactive": 0}
    for k in range(n_layers):
        layer = net.layers[k]
        lower, upper = (np.asarray(b, dtype=np.float64) for b in bounds[k])
        if np.any(lower > upper + 1e-9):
            raise ShapeMismatchError(f"layer {layer.name!r}: lower bound above upper bound")
        n = layer.out_features
        idx = np.full(n, -1, dtype=np.int64)
        if layer.activation == "relu":
            inactive = upper <= 0
            active = (lower >= 0) & ~inactive  # l = u = 0 counts as inactive
            unstable = ~inactive & ~active
        else:
            inactive = np.zeros(n, dtype=bool)
            active = np.ones(n, dtype=bool)
            unstable = np.zeros(n, dtype=bool)
        counts["unstable"] += int(unstable.sum())
        if layer.activation == "relu":
            counts["active"] += int(active.sum())
            counts["inactive"] += int(inactive.sum())

        # Stably inactive neurons: h = 0, a fixed column and no row.
        if inactive.any():
            idx[inactive] = builder.add_columns(np.zeros(int(inactive.sum())), np.zeros(int(inactive.sum())))
        # Stably active (or identity) neurons: h = W h_prev + b.
        act = np.flatnonzero(active)
        if act.size:
            lo = np.maximum(lower[act], 0.0) if layer.activation == "relu" else lower[act]
            cols = builder.add_columns(lo, upper[act])
            idx[act] = cols
            r, c, v = _affine_rows(layer.weight, act, prev_idx, prev_zero)
            rows = np.concatenate([np.arange(act.size), r])
            builder.add_coo_rows(
                rows, np.concatenate([cols, c]), np.concatenate([np.ones(act.size), v]),
                layer.bias[act], layer.bias[act],
            )
        # Unstable neurons: three rows and one binary each (module doc).
        uns = np.flatnonzero(unstable)
        binaries = np.zeros(0, dtype=np.int64)
        if uns.size:
            m = uns.size
            l_u, u_u, b_u = lower[uns], upper[uns], layer.bias[uns]
            cols = builder.add_columns(np.zeros(m), u_u)
            binaries = builder.add_columns(np.zeros(m), np.ones(m), integer=not relax)
            idx[uns] = cols
            r, c, v = _affine_rows(layer.weight, uns, prev_idx, prev_zero)
            ones = np.ones(m)
            local = np.arange(m)
            # h - W h_prev >= b
            builder.add_coo_rows(
                np.concatenate([local, r]), np.concatenate([cols, c]), np.concatenate([ones, v]), b_u, np.inf,
            )
            # h - W h_prev - l delta <= b - l
            builder.add_coo_rows(
                np.concatenate([local, r, local]), np.concatenate([cols, c, binaries]),
                np.concatenate([ones, v, -l_u]), -np.inf, b_u - l_u,
            )
            # h - u delta <= 0
            builder.add_coo_rows(
                np.concatenate([local, local]), np.concatenate([cols, binaries]), np.concatenate([ones, -u_u]),
                -np.inf, np.zeros(m),
            )
        neuron_idx.append(idx)
        binary_idx.append(binaries)
        prev_idx, prev_zero = idx, inactive
    return ReluEncoding(
        input_idx=input_idx, neuron_idx=neuron_idx, binary_idx=binary_idx, n_unstable=counts["unstable"],
        n_stable_active=counts["active"], n_stable_inactive=counts["inactive"],
    )


def _spec_arrays(net: Network, C, d) -> tuple[np.ndarray, np.ndarray]:
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    if C.shape[1] != net.output_size:
        raise ShapeMismatchError(
            f"output specification has {C.shape[1]} columns, network has {net.output_size} outputs"
        )
    d = np.broadcast_to(np.asarray(d, dtype=np.float64), (C.shape[0],)).copy()
    return C, d


def build_spec_milp(
    net: Network, bounds: Bounds, x_lower, x_upper, C, d, *, spec_upper: np.ndarray | None = None, name: str = "spec"
) -> tuple[MILP, ReluEncoding]:
    """Maximise ``min_i (C_i y + d_i)`` over the box; ``>= 0`` means the conjunction can hold.

    With a single row the objective is ``C y + d`` itself (no auxiliary
    variable): the max-margin adversarial example for ``C = e_t - e_y``.
    ``spec_upper`` (upper bounds of each row, e.g. from
    :func:`optprune.verification.bounds.linear_upper_bound`) bounds the auxiliary variable.
    """
    C, d = _spec_arrays(net, C, d)
    builder = ModelBuilder()
    enc = encode_network(builder, net, bounds, x_lower, x_upper)
    out = enc.output_idx
    for key, idx in _groups(enc).items():
        builder.add_group(key, idx)
    if C.shape[0] == 1:
        builder.set_objective(C[0], out, "max", offset=float(d[0]))
        return builder.build(name=name), enc
    upper = np.inf if spec_upper is None else np.asarray(spec_upper, dtype=np.float64).max()
    t = builder.add_vars(1, -np.inf, upper, name="spec")
    # t - C_i y <= d_i
    builder.add_rows(np.hstack([np.ones((C.shape[0], 1)), -C]), np.concatenate([t, out]), upper=d)
    builder.set_objective([1.0], t, "max")
    return builder.build(name=name), enc


def build_min_distortion_milp(
    net: Network,
    bounds: Bounds,
    x0,
    domain_lower,
    domain_upper,
    C,
    d,
    *,
    norm: str = "linf",
    margin: float = 1e-4,
    name: str = "min_distortion",
) -> tuple[MILP, ReluEncoding]:
    """MIPVerify's minimal adversarial distortion (Tjeng et al. 2019, Sec. 3).

    Minimise ``eps`` (``norm="linf"``: ``|x - x0| <= eps``) or ``sum_j e_j``
    (``norm="l1"``: ``e_j >= |x_j - x0_j|``) subject to every row of
    ``C y + d >= margin`` (e.g. ``y_t - y_y >= margin`` for a target ``t``),
    with ``x`` in the domain box over which ``bounds`` hold.
    """
    if norm not in ("linf", "l1"):
        raise InvalidParameterError(f"norm must be 'linf' or 'l1', got {norm!r}")
    C, d = _spec_arrays(net, C, d)
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    builder = ModelBuilder()
    enc = encode_network(builder, net, bounds, domain_lower, domain_upper)
    xi = enc.input_idx
    n = x0.size
    span = np.asarray(domain_upper, dtype=np.float64) - np.asarray(domain_lower, dtype=np.float64)
    if norm == "linf":
        e = builder.add_columns([0.0], [float(span.max())])
        e_cols = np.full(n, e[0])
    else:
        e = builder.add_columns(np.zeros(n), span)
        e_cols = e
    local = np.arange(n)
    # x - e <= x0  and  x + e >= x0
    builder.add_coo_rows(np.concatenate([local, local]), np.concatenate([xi, e_cols]),
                     np.concatenate([np.ones(n), -np.ones(n)]), -np.inf, x0)
    builder.add_coo_rows(np.concatenate([local, local]), np.concatenate([xi, e_cols]),
                     np.concatenate([np.ones(n), np.ones(n)]), x0, np.inf)
    out = enc.output_idx
    builder.add_rows(C, out, lower=margin - d)
    for key, idx in {**_groups(enc), "distortion": e}.items():
        builder.add_group(key, idx)
    builder.set_objective(np.ones(e.size), e, "min")
    return builder.build(name=name), enc


def _groups(enc: ReluEncoding) -> dict[str, np.ndarray]:
    groups = {"input": enc.input_idx, "output": enc.output_idx}
    if enc.n_binaries:
        groups["binaries"] = np.concatenate(enc.binary_idx)
    return groups


def forward_assignment(net: Network, enc: ReluEncoding, bounds: Bounds, x: np.ndarray, n_cols: int) -> np.ndarray:
    """Every column of the big-M encoding at input ``x`` (a float64 forward pass); other columns 0.

    Inputs, neuron outputs ``h = relu(z)`` (or ``z`` for identity layers) and
    the binaries ``delta = [z > 0]`` of the unstable neurons, in the order
    :func:`encode_network` adds them. Used as a MIP start, and to check that a
    model accepts a real point (:func:`optprune.verification.verdicts.check_encoding`).
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    v = np.zeros(n_cols)
    v[enc.input_idx] = x
    pre = net.forward(x, return_all=True)
    for k, layer in enumerate(net.layers[: len(enc.neuron_idx)]):
        z = np.asarray(pre[k], dtype=np.float64).reshape(-1)
        h = np.maximum(z, 0.0) if layer.activation == "relu" else z
        v[enc.neuron_idx[k]] = h
        if enc.binary_idx[k].size:
            lower, upper = (np.asarray(b, dtype=np.float64) for b in bounds[k])
            unstable = np.flatnonzero((lower < 0) & (upper > 0))
            v[enc.binary_idx[k]] = (z[unstable] > 0).astype(np.float64)
    return v
