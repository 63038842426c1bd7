"""A torch-free network definition shared by every formulation.

A network is a chain of affine layers ``z = W x + b`` each followed by an
activation (``relu`` or ``identity``; ``sigmoid`` and ``tanh`` too, which only
bound propagation and the attack of :mod:`optprune.verification` handle: every
MIP encoding accepts the :data:`PIECEWISE_LINEAR` ones alone). Convolutions are unrolled into sparse
affine maps (their kernel geometry is kept in :class:`ConvSpec` so writers can
emit a convolution again). Input normalisation constants found in a model are
folded into the first affine layer, so the network's input is always the raw
input (e.g. pixels in [0, 1]) and properties are stated on that domain.

This mirrors OMLT's split between a plain network definition and the
formulations that encode it: one network, several formulations.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from optprune.errors import InvalidWeightsError, ShapeMismatchError

__all__ = ["ACTIVATIONS", "PIECEWISE_LINEAR", "activate", "ConvSpec", "AffineLayer", "Network"]

ACTIVATIONS = ("relu", "identity", "sigmoid", "tanh")
Activation = Literal["relu", "identity", "sigmoid", "tanh"]
#: The activations a MIP can encode exactly; a network with any other is refused by the encodings.
PIECEWISE_LINEAR = ("relu", "identity")


def activate(name: str, z: np.ndarray) -> np.ndarray:
    """The activation ``name`` of :data:`ACTIVATIONS` applied elementwise (float64)."""
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow for large |z|
    if name == "tanh":
        return np.tanh(z)
    return z


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of a 2-D convolution that an :class:`AffineLayer` was unrolled from.

    ``kernel`` has shape (out_channels, in_channels, kh, kw); ``in_shape`` is
    (C, H, W) and ``out_shape`` (C', H', W'), both in NCHW order without batch.
    """

    kernel: np.ndarray
    bias: np.ndarray
    in_shape: tuple[int, int, int]
    out_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class AffineLayer:
    """``activation(weight @ x + bias)``; ``weight`` is dense or ``scipy.sparse``."""

    weight: np.ndarray | sp.csr_matrix
    bias: np.ndarray
    activation: Activation = "relu"
    name: str = ""
    conv: ConvSpec | None = None

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"layer {self.name!r}: activation must be one of {ACTIVATIONS}, got {self.activation!r}"
            )
        w = self.weight
        if w.ndim != 2:
            raise ShapeMismatchError(f"layer {self.name!r}: weight must be 2-D, got shape {w.shape}")
        bias = np.asarray(self.bias, dtype=np.float64).reshape(-1)
        if bias.shape[0] != w.shape[0]:
            raise ShapeMismatchError(
                f"layer {self.name!r}: bias has {bias.shape[0]} entries, weight has {w.shape[0]} rows"
            )
        object.__setattr__(self, "bias", bias)
        if sp.issparse(w):
            object.__setattr__(self, "weight", sp.csr_matrix(w, dtype=np.float64))
            values = self.weight.data
        else:
            object.__setattr__(self, "weight", np.asarray(w, dtype=np.float64))
            values = self.weight
        for label, arr in (("weight", values), ("bias", bias)):
            if not np.all(np.isfinite(arr)):
                bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise InvalidWeightsError(
                    f"layer {self.name!r}: {label} has {bad} NaN/Inf entries; all weights must be finite"
                )

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def n_params(self) -> int:
        """Parameters of the original layer (kernel + bias for a convolution)."""
        if self.conv is not None:
            return int(self.conv.kernel.size + self.conv.bias.size)
        return int(self.weight.shape[0] * self.weight.shape[1] + self.bias.size)

    def dense_weight(self) -> np.ndarray:
        return self.weight.toarray() if sp.issparse(self.weight) else self.weight

    def pre_activation(self, x: np.ndarray) -> np.ndarray:
        """``W x + b`` for a batch ``x`` of shape (n, in_features)."""
        return np.asarray(self.weight @ x.T).T + self.bias


@dataclass(frozen=True)
class Network:
    """A feed-forward chain of :class:`AffineLayer`.

    ``input_shape`` is the shape of one input without the batch axis as the
    original model expects it (e.g. (1, 28, 28)); the network itself works on
    the flattened vector of ``input_size`` entries.
    """

    layers: tuple[AffineLayer, ...]
    input_shape: tuple[int, ...] = ()
    name: str = ""
    metadata: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ShapeMismatchError("a network needs at least one affine layer")
        object.__setattr__(self, "layers", layers)
        if not self.input_shape:
            object.__setattr__(self, "input_shape", (layers[0].in_features,))
        if int(np.prod(self.input_shape)) != layers[0].in_features:
            raise ShapeMismatchError(
                f"input shape {self.input_shape} has {int(np.prod(self.input_shape))} entries, "
                f"first layer takes {layers[0].in_features}"
            )
        for prev, nxt in zip(layers, layers[1:]):
            if prev.out_features != nxt.in_features:
                raise ShapeMismatchError(
                    f"layer {prev.name!r} outputs {prev.out_features} values, "
                    f"next layer {nxt.name!r} takes {nxt.in_features}"
                )

    @property
    def input_size(self) -> int:
        return self.layers[0].in_features

    @property
    def output_size(self) -> int:
        return self.layers[-1].out_features

    @property
    def widths(self) -> list[int]:
        """Input size followed by every layer's output size."""
        return [self.input_size] + [layer.out_features for layer in self.layers]

    @property
    def n_params(self) -> int:
        return sum(layer.n_params for layer in self.layers)

    def forward(self, x: np.ndarray, return_all: bool = False) -> np.ndarray | list[np.ndarray]:
        """Float64 forward pass of a batch (n, input_size) or one input.

        With ``return_all`` the list of pre-activations of every layer is returned.
        """
        x = np.asarray(x, dtype=np.float64)
        single = x.ndim == 1 or (x.ndim == len(self.input_shape) and x.shape == self.input_shape)
        h = x.reshape(1 if single else x.shape[0], -1)
        if h.shape[1] != self.input_size:
            raise ShapeMismatchError(
                f"input has {h.shape[1]} features per sample, network {self.name!r} takes {self.input_size}"
            )
        pre = []
        for layer in self.layers:
            z = layer.pre_activation(h)
            pre.append(z)
            h = activate(layer.activation, z)
        if return_all:
            return [p[0] for p in pre] if single else pre
        return h[0] if single else h

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Arg-max class of each input."""
        out = self.forward(x)
        return np.argmax(out, axis=-1)

    def with_layers(self, layers: list[AffineLayer] | tuple[AffineLayer, ...]) -> Network:
        return replace(self, layers=tuple(layers))

    def summary(self) -> dict:
        """Layers, widths and parameter count, as plain JSON-able data."""
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "widths": self.widths,
            "n_params": self.n_params,
            "layers": [
                {
                    "name": layer.name,
                    "type": "conv2d" if layer.conv is not None else "dense",
                    "in": layer.in_features,
                    "out": layer.out_features,
                    "activation": layer.activation,
                    "params": layer.n_params,
                }
                for layer in self.layers
            ],
        }
