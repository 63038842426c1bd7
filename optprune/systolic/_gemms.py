"""The GEMMs ``M x K x N`` a model runs: from a :class:`~optprune.network.Network`, a torch model, or a JSON list.

* Linear ``y = W x + b`` on a batch of ``B`` inputs: ``M = B``, ``K`` inputs,
  ``N`` outputs.
* Conv2d as its im2col GEMM: ``M = B H' W'`` output positions, ``K = C_in k_h
  k_w`` values of one receptive field, ``N = C_out`` filters (SCALE-Sim's
  convolution-to-GEMM mapping).

Layers with weights the model does not cover (grouped convolutions, attention,
normalisation layers with affine weights, ...) are a named
:class:`~optprune.errors.UnsupportedLayerError`; parameter-free layers
(activations, flatten, dropout, pooling) run on other hardware and are skipped.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optprune.errors import DataNotFoundError, FileFormatError, InvalidParameterError, UnsupportedLayerError
from optprune.systolic._cycles import MAX_DIM

__all__ = ["GemmLayer", "SUPPORTED_LAYERS", "gemms_from_json", "gemms_from_network", "gemms_from_torch", "load_gemms"]

#: layer types the cycle model maps to a GEMM
SUPPORTED_LAYERS = ("Linear", "Conv2d (groups=1)")


@dataclass(frozen=True)
class GemmLayer:
    """One layer as a GEMM: ``name``, ``M``, ``K``, ``N`` and its kind (``linear``, ``conv`` or ``gemm``)."""

    name: str
    M: int
    K: int
    N: int
    kind: str = "gemm"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.M, self.K, self.N)


def _check_batch(batch: int) -> int:
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 1 <= batch <= MAX_DIM:
        raise InvalidParameterError(
            f"batch must be an integer in [1, {MAX_DIM}] (rows M of a Linear layer's GEMM); got {batch!r}"
        )
    return int(batch)


def gemms_from_network(net, batch: int = 1) -> list[GemmLayer]:
    """GEMMs of every affine layer of a :class:`~optprune.network.Network` (convolutions through their ConvSpec)."""
    batch = _check_batch(batch)
    out = []
    for i, layer in enumerate(net.layers):
        name = layer.name or f"layer{i}"
        if layer.conv is not None:
            cout, cin, kh, kw = layer.conv.kernel.shape
            _, h, w = layer.conv.out_shape
            out.append(GemmLayer(name, batch * h * w, cin * kh * kw, cout, "conv"))
        else:
            out.append(GemmLayer(name, batch, layer.in_features, layer.out_features, "linear"))
    return out


def gemms_from_torch(model, input_shape=None, batch: int = 1) -> list[GemmLayer]:
    """GEMMs of the Linear / Conv2d modules of a torch model, in forward order (one dummy forward pass).

    ``input_shape`` (without batch axis) defaults to the model's ``input_shape``
    attribute, else the first layer's input features. The dummy pass runs on
    one sample and each GEMM's ``M`` is scaled by ``batch`` (rows grow linearly
    with the batch), so no per-sample arrays of ``batch`` rows are ever built.
    """
    import torch
    from torch import nn

    batch = _check_batch(batch)
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    for name, m in leaves:
        if isinstance(m, nn.Linear):
            continue
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                raise UnsupportedLayerError(name, f"Conv2d(groups={m.groups})", SUPPORTED_LAYERS)
            continue
        if any(True for _ in m.parameters(recurse=False)):
            raise UnsupportedLayerError(name, type(m).__name__, SUPPORTED_LAYERS)
    for name, m in model.named_modules():  # containers with their own weights (e.g. MultiheadAttention)
        if list(m.children()) and any(True for _ in m.parameters(recurse=False)):
            raise UnsupportedLayerError(name, type(m).__name__, SUPPORTED_LAYERS)
    shape = tuple(input_shape) if input_shape is not None else tuple(getattr(model, "input_shape", ()) or ())
    if not shape:
        first = next((m for _, m in leaves if isinstance(m, (nn.Linear, nn.Conv2d))), None)
        if first is None or isinstance(first, nn.Conv2d):
            raise InvalidParameterError(
                "gemms_from_torch: the model has no input_shape attribute and does not start with a Linear "
                "layer; pass input_shape (without the batch axis)"
            )
        shape = (first.in_features,)
    found: list[GemmLayer] = []
    hooks = []

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, nn.Linear):
                rows = batch * int(np.prod(output.shape[:-1]))
                found.append(GemmLayer(name, rows, module.in_features, module.out_features, "linear"))
            else:
                kh, kw = module.kernel_size
                found.append(GemmLayer(name, batch * int(output.shape[0] * output.shape[2] * output.shape[3]),
                                       module.in_channels * kh * kw, module.out_channels, "conv"))
        return record

    for name, m in leaves:
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            hooks.append(m.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            dtype = next(model.parameters()).dtype
            model(torch.zeros((1, *shape), dtype=dtype))  # M scales with batch in the hook
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return found


def gemms_from_json(path: str | os.PathLike) -> list[GemmLayer]:
    """GEMMs from a JSON file holding a list of ``[M, K, N]`` (positive integers)."""
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"GEMM list {path} does not exist (expected a JSON list of [M, K, N])")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc}); expected a list of [M, K, N]") from None
    if not isinstance(data, list) or not data:
        raise FileFormatError(f"{path}: expected a non-empty JSON list of [M, K, N]; got {type(data).__name__}")
    out = []
    for i, row in enumerate(data):
        ok = (isinstance(row, list) and len(row) == 3
              and all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_DIM for v in row))
        if not ok:
            raise FileFormatError(
                f"{path}: entry {i} must be [M, K, N] with three integers in [1, {MAX_DIM}] (MAX_DIM); got {row!r}"
            )
        out.append(GemmLayer(f"gemm{i}", *row, "gemm"))
    return out


def load_gemms(path: str | os.PathLike, batch: int = 1, *, trust_pickle: bool = False) -> list[GemmLayer]:
    """GEMMs of a ``.json`` list (``batch`` ignored), an ``.onnx`` network or a torch model file."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return gemms_from_json(path)
    from optprune.io import load_torch_model

    model = load_torch_model(path, trust_pickle=trust_pickle)
    return gemms_from_torch(model, batch=batch)
