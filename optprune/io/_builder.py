"""Turning a chain of layer operations into a :class:`~optprune.network.Network` (shared by the readers).

Readers walk a model in order and call :meth:`ChainBuilder.affine`,
:meth:`~ChainBuilder.elementwise`, :meth:`~ChainBuilder.relu` and
:meth:`~ChainBuilder.reshape`. Element-wise affine maps ``x -> s * x + t``
(batch normalisation in eval mode, input normalisation such as ``(x - mu) /
sigma``) are folded away:

* right after an affine layer ``z = W x + b`` (before its activation) they
  fold into that layer: ``W' = diag(s) W``, ``b' = s * b + t``;
* anywhere else (at the input, after a ReLU) they fold into the *next* affine
  layer: ``W' = W diag(s)``, ``b' = b + W t``, so the network's input stays the
  raw input. With nothing affine after them (a trailing normalisation, or a
  ReLU right after one) they become a diagonal affine layer of their own.

A convolution keeps its :class:`ConvSpec` through a fold when ``s`` and ``t``
are constant per channel (and, for a fold into its input, the shift is zero
or the convolution has no padding: zero padding of ``s x + t`` is not
``s * 0 + t``); otherwise the exact sparse matrix is kept without a ConvSpec
and writers emit it as a fully connected layer. Consecutive affine layers with
no activation between them are kept as separate ``identity`` layers, never
merged.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from optprune.errors import ShapeMismatchError
from optprune.network import AffineLayer, ConvSpec, Network

__all__ = ["ChainBuilder"]


def _per_channel(vec: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """The per-channel values of ``vec`` (flat over ``shape`` = (C, H, W)), or None if not constant per channel."""
    if len(shape) != 3:
        return None
    per = vec.reshape(shape[0], -1)
    if np.all(per == per[:, :1]):
        return per[:, 0].copy()
    return None


class ChainBuilder:
    """Accumulates affine layers, activations and element-wise maps of one feed-forward chain."""

    def __init__(self, input_shape: tuple[int, ...]) -> None:
        self.input_shape = tuple(int(v) for v in input_shape)
        self.shape = self.input_shape
        self.layers: list[AffineLayer] = []
        self.folded: dict[str, list[str]] = {}
        self._open: dict | None = None  # affine layer whose activation is not known yet
        self._pending: tuple[np.ndarray, np.ndarray, list[str]] | None = None  # (s, t, names) on the next input

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    # ------------------------------------------------------------------ operations
    def affine(
        self, weight: np.ndarray | sp.spmatrix, bias: np.ndarray, name: str, out_shape: tuple[int, ...],
        conv: ConvSpec | None = None,
    ) -> None:
        """Start a new affine layer ``W x + b`` on the current (flattened) tensor; a layer of width 0 is refused."""
        if weight.shape[0] == 0 or int(np.prod(out_shape)) == 0:
            raise ShapeMismatchError(
                f"layer {name!r} has 0 output units (weight shape {tuple(weight.shape)}, output shape "
                f"{tuple(out_shape)}); every layer needs at least 1 unit"
            )
        if weight.shape[1] != self.size:
            raise ShapeMismatchError(
                f"layer {name!r} takes {weight.shape[1]} inputs, the tensor before it has shape {self.shape} "
                f"({self.size} values)"
            )
        self._close("identity")
        bias = np.asarray(bias, dtype=np.float64).reshape(-1)
        folded: list[str] = []
        if self._pending is not None:
            s, t, folded = self._pending
            self._pending = None
            weight, bias, conv = self._fold_input(weight, bias, conv, s, t)
        self._open = {"weight": weight, "bias": bias, "name": name, "conv": conv, "folded": list(folded)}
        self.shape = tuple(int(v) for v in out_shape)

    def elementwise(self, scale: np.ndarray | float, shift: np.ndarray | float, name: str) -> None:
        """Apply ``x -> scale * x + shift`` element-wise (arrays broadcast to the current shape)."""
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), self.shape).reshape(-1).copy()
        t = np.broadcast_to(np.asarray(shift, dtype=np.float64), self.shape).reshape(-1).copy()
        if self._open is not None:
            layer = self._open
            w = layer["weight"]
            layer["weight"] = sp.csr_matrix(sp.diags(s) @ w) if sp.issparse(w) else w * s[:, None]
            layer["bias"] = s * layer["bias"] + t
            conv = layer["conv"]
            if conv is not None:
                sc, tc = _per_channel(s, conv.out_shape), _per_channel(t, conv.out_shape)
                if sc is None or tc is None:
                    layer["conv"] = None
                else:
                    layer["conv"] = ConvSpec(
                        kernel=conv.kernel * sc[:, None, None, None], bias=sc * conv.bias + tc,
                        in_shape=conv.in_shape, out_shape=conv.out_shape, stride=conv.stride, padding=conv.padding,
                    )
            layer["folded"].append(name)
        elif self._pending is None:
            self._pending = (s, t, [name])
        else:
            s0, t0, names = self._pending
            self._pending = (s * s0, s * t0 + t, [*names, name])

    def relu(self, name: str) -> None:
        """Apply ReLU to the current tensor."""
        if self._open is not None:
            self._close("relu")
        elif self._pending is None and self.layers and self.layers[-1].activation == "relu":
            return  # relu(relu(x)) = relu(x)
        else:
            self._emit_diagonal(name, "relu")

    def activation(self, kind: str, name: str) -> None:
        """Apply a smooth activation ``kind`` (``sigmoid``, ``tanh``) to the current tensor."""
        if self._open is not None:
            self._close(kind)
        else:
            self._emit_diagonal(name, kind)

    def reshape(self, shape: tuple[int, ...], name: str) -> None:
        """Change the shape of the current tensor (its flattened C-order values are unchanged)."""
        shape = tuple(int(v) for v in shape)
        if int(np.prod(shape)) != self.size:
            raise ShapeMismatchError(
                f"{name!r} reshapes a tensor of shape {self.shape} ({self.size} values) to {shape}"
            )
        self.shape = shape

    def build(self, name: str = "", metadata: dict | None = None) -> Network:
        """The finished :class:`Network`."""
        self._close("identity")
        if self._pending is not None:
            self._emit_diagonal(self._pending[2][0], "identity")
        if not self.layers:
            raise ShapeMismatchError(f"model {name!r} has no affine layer (Linear/Gemm/MatMul/Conv)")
        meta = dict(metadata or {})
        meta["folded"] = {k: v for k, v in self.folded.items() if v}
        meta["output_shape"] = list(self.shape)
        return Network(layers=tuple(self.layers), input_shape=self.input_shape, name=name, metadata=meta)

    # ------------------------------------------------------------------ internals
    def _close(self, activation: str) -> None:
        if self._open is None:
            return
        layer, self._open = self._open, None
        self.layers.append(
            AffineLayer(weight=layer["weight"], bias=layer["bias"], activation=activation, name=layer["name"],
                        conv=layer["conv"])
        )
        self.folded[layer["name"]] = layer["folded"]

    def _emit_diagonal(self, name: str, activation: str) -> None:
        if self._pending is not None:
            s, t, names = self._pending
            self._pending = None
        else:
            s, t, names = np.ones(self.size), np.zeros(self.size), []
        self.layers.append(AffineLayer(weight=sp.diags(s, format="csr"), bias=t, activation=activation, name=name))
        self.folded[name] = [n for n in names if n != name]

    @staticmethod
    def _fold_input(weight, bias, conv, s, t):
        """``W diag(s)``, ``b + W t`` and the ConvSpec if it survives (see module docstring)."""
        if sp.issparse(weight):
            new_w = sp.csr_matrix(weight @ sp.diags(s))
        else:
            new_w = np.asarray(weight) * s[None, :]
        new_b = bias + np.asarray(weight @ t).reshape(-1)
        if conv is not None:
            sc, tc = _per_channel(s, conv.in_shape), _per_channel(t, conv.in_shape)
            if sc is None or tc is None or (np.any(tc != 0) and any(conv.padding)):
                conv = None
            else:
                kernel = conv.kernel * sc[None, :, None, None]
                conv_bias = conv.bias + np.einsum("ocpq,c->o", conv.kernel, tc)
                conv = ConvSpec(kernel=kernel, bias=conv_bias, in_shape=conv.in_shape, out_shape=conv.out_shape,
                                stride=conv.stride, padding=conv.padding)
        return new_w, new_b, conv
