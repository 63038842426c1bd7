"""Reading a ``torch.nn.Sequential`` into a :class:`Network` and writing one back.

Supported modules (in eval-mode semantics, whatever the module's ``training`` flag):

* ``Linear``: ``z = W x + b``;
* ``Conv2d`` (``groups=1``, ``dilation=1``, zero padding): unrolled to a sparse
  affine map (:mod:`optprune.io._conv`), geometry kept in a :class:`ConvSpec`;
* ``ReLU``; ``Flatten`` / ``Unflatten`` (they only reshape);
* ``BatchNorm1d`` / ``BatchNorm2d`` with running statistics:
  ``y = gamma (x - mu) / sqrt(var + eps) + beta``, i.e. ``s = gamma / sqrt(var + eps)``,
  ``t = beta - s mu``, folded as described in :mod:`optprune.io._builder`;
* ``Dropout`` variants and ``Identity``: skipped (identity at inference).

Nested ``Sequential`` containers are flattened; layer names are the dotted
module paths (``"features.0"``), as in ``named_modules()``. Anything else
raises :class:`UnsupportedLayerError` naming the module, its type and this list.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidWeightsError, ShapeMismatchError, UnsupportedLayerError
from optprune.io._builder import ChainBuilder
from optprune.io._conv import conv_spec_matches, conv_to_sparse
from optprune.network import ConvSpec, Network

__all__ = ["SUPPORTED_TORCH_MODULES", "network_from_torch", "network_to_torch"]

_SKIPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout, nn.Identity)
SUPPORTED_TORCH_MODULES: tuple[str, ...] = (
    "Sequential", "Linear", "Conv2d", "ReLU", "Flatten", "Unflatten", "BatchNorm1d", "BatchNorm2d",
    *(cls.__name__ for cls in _SKIPPED),
)


def _flatten_modules(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    if isinstance(module, nn.Sequential):
        out = []
        for child_name, child in module.named_children():
            out.extend(_flatten_modules(child, f"{prefix}.{child_name}" if prefix else child_name))
        return out
    return [(prefix or type(module).__name__, module)]


def _array(name: str, kind: str, label: str, tensor: torch.Tensor) -> np.ndarray:
    arr = tensor.detach().cpu().double().numpy()
    if not np.all(np.isfinite(arr)):
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        raise InvalidWeightsError(
            f"torch module {name!r} ({kind}): {label} has {bad} NaN/Inf entries of {arr.size}; "
            "all weights must be finite"
        )
    return arr


def _pair(value, name: str, kind: str, attr: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise UnsupportedLayerError(name, f"{kind}({attr}={value!r})", SUPPORTED_TORCH_MODULES)


def _conv_padding(module: nn.Conv2d, name: str) -> tuple[int, int]:
    pad = module.padding
    if pad == "valid":
        return 0, 0
    if pad == "same":
        kh, kw = module.kernel_size
        if kh % 2 == 0 or kw % 2 == 0:
            raise UnsupportedLayerError(name, f"Conv2d(padding='same', kernel_size={module.kernel_size})",
                                        SUPPORTED_TORCH_MODULES)
        return (kh - 1) // 2, (kw - 1) // 2
    return _pair(pad, name, "Conv2d", "padding")


def _flatten_shape(shape: tuple[int, ...], start: int, end: int, name: str) -> tuple[int, ...]:
    full = (1, *shape)
    nd = len(full)
    start, end = start % nd, end % nd
    if start == 0:
        raise UnsupportedLayerError(name, "Flatten(start_dim=0) (flattens the batch axis)", SUPPORTED_TORCH_MODULES)
    new = full[:start] + (int(np.prod(full[start : end + 1])),) + full[end + 1 :]
    return tuple(new[1:])


def network_from_torch(
    module: nn.Module, input_shape: tuple[int, ...] | None = None, name: str | None = None
) -> Network:
    """Read a ``torch.nn.Sequential`` (or one supported module) into a :class:`Network`.

    ``input_shape`` is one sample's shape without the batch axis; if omitted,
    ``module.input_shape`` is used when present (set by :func:`network_to_torch`),
    else it is inferred from the first ``Linear`` (a convolution needs it given).
    A ``Linear``/``Conv2d`` not followed by ``ReLU`` gets activation ``identity``.
    """
    modules = _flatten_modules(module)
    if input_shape is None:
        input_shape = getattr(module, "input_shape", None)
    if input_shape is None:
        input_shape = _infer_input_shape(modules)
    builder = ChainBuilder(tuple(int(v) for v in input_shape))
    for mod_name, mod in modules:
        kind = type(mod).__name__
        if isinstance(mod, nn.Linear):
            w = _array(mod_name, kind, "weight", mod.weight)
            b = _array(mod_name, kind, "bias", mod.bias) if mod.bias is not None else np.zeros(w.shape[0])
            builder.affine(w, b, mod_name, out_shape=(w.shape[0],))
        elif isinstance(mod, nn.Conv2d):
            _add_conv(builder, mod_name, mod)
        elif isinstance(mod, nn.ReLU):
            builder.relu(mod_name)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            s, t = _batchnorm_affine(mod_name, mod)
            shape = builder.shape
            if not shape or shape[0] != s.shape[0] or (isinstance(mod, nn.BatchNorm2d) and len(shape) != 3):
                raise ShapeMismatchError(
                    f"{kind} {mod_name!r} has {s.shape[0]} features, the tensor before it has shape {shape}"
                )
            bshape = (-1,) + (1,) * (len(shape) - 1)
            builder.elementwise(s.reshape(bshape), t.reshape(bshape), mod_name)
        elif isinstance(mod, nn.Flatten):
            builder.reshape(_flatten_shape(builder.shape, mod.start_dim, mod.end_dim, mod_name), mod_name)
        elif isinstance(mod, nn.Unflatten):
            dim = mod.dim if mod.dim >= 0 else mod.dim + len(builder.shape) + 1
            if dim < 1:
                raise UnsupportedLayerError(mod_name, "Unflatten(dim=0)", SUPPORTED_TORCH_MODULES)
            full = (1, *builder.shape)
            new = full[:dim] + tuple(mod.unflattened_size) + full[dim + 1 :]
            builder.reshape(tuple(new[1:]), mod_name)
        elif isinstance(mod, _SKIPPED):
            continue
        else:
            raise UnsupportedLayerError(mod_name, kind, SUPPORTED_TORCH_MODULES)
    return builder.build(name=name or type(module).__name__, metadata={"source": "torch"})


def _add_conv(builder: ChainBuilder, name: str, mod: nn.Conv2d) -> None:
    """Add a ``Conv2d`` to ``builder`` as a sparse affine layer with its :class:`ConvSpec`."""
    kind = "Conv2d"
    if mod.groups != 1:
        raise UnsupportedLayerError(name, f"Conv2d(groups={mod.groups})", SUPPORTED_TORCH_MODULES)
    if tuple(mod.dilation) != (1, 1):
        raise UnsupportedLayerError(name, f"Conv2d(dilation={mod.dilation})", SUPPORTED_TORCH_MODULES)
    if mod.padding_mode != "zeros":
        raise UnsupportedLayerError(name, f"Conv2d(padding_mode={mod.padding_mode!r})", SUPPORTED_TORCH_MODULES)
    if len(builder.shape) != 3:
        raise ShapeMismatchError(
            f"Conv2d {name!r} needs a (C, H, W) input, the tensor before it has shape {builder.shape}; "
            "pass input_shape=(C, H, W) to network_from_torch"
        )
    kernel = _array(name, kind, "weight", mod.weight)
    bias = _array(name, kind, "bias", mod.bias) if mod.bias is not None else np.zeros(kernel.shape[0])
    stride = _pair(tuple(mod.stride), name, kind, "stride")
    padding = _conv_padding(mod, name)
    matrix, out_shape = conv_to_sparse(kernel, builder.shape, stride, padding)
    spec = ConvSpec(kernel=kernel, bias=bias, in_shape=tuple(builder.shape), out_shape=out_shape, stride=stride,
                    padding=padding)
    builder.affine(matrix, np.repeat(bias, out_shape[1] * out_shape[2]), name, out_shape=out_shape, conv=spec)


def _batchnorm_affine(name: str, mod: nn.modules.batchnorm._BatchNorm) -> tuple[np.ndarray, np.ndarray]:
    kind = type(mod).__name__
    if mod.running_mean is None or mod.running_var is None:
        raise UnsupportedLayerError(name, f"{kind}(track_running_stats=False)", SUPPORTED_TORCH_MODULES)
    mean = _array(name, kind, "running_mean", mod.running_mean)
    var = _array(name, kind, "running_var", mod.running_var)
    n = mean.shape[0]
    gamma = _array(name, kind, "weight", mod.weight) if mod.weight is not None else np.ones(n)
    beta = _array(name, kind, "bias", mod.bias) if mod.bias is not None else np.zeros(n)
    denom = var + mod.eps
    if np.any(denom <= 0):
        raise InvalidWeightsError(f"torch module {name!r} ({kind}): running_var + eps must be positive")
    s = gamma / np.sqrt(denom)
    return s, beta - s * mean


def _infer_input_shape(modules: list[tuple[str, nn.Module]]) -> tuple[int, ...]:
    for mod_name, mod in modules:
        if isinstance(mod, nn.Linear):
            return (int(mod.in_features),)
        if isinstance(mod, nn.Conv2d):
            raise ShapeMismatchError(
                f"cannot infer the input shape: the first affine module {mod_name!r} is a Conv2d; "
                "pass input_shape=(C, H, W)"
            )
        if isinstance(mod, (nn.BatchNorm1d,)):
            return (int(mod.num_features),)
    raise ShapeMismatchError("cannot infer the input shape (no Linear or Conv2d found); pass input_shape")


def network_to_torch(net: Network, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    """An ``nn.Sequential`` computing ``net`` (``Linear``/``Conv2d`` per layer, ``ReLU`` where the activation is relu).

    Layers with a :class:`ConvSpec` become ``Conv2d``; an ``Unflatten`` / ``Flatten``
    is inserted where the tensor's shape must change. A layer whose ConvSpec no longer
    matches its weight matrix (edited after reading) is written as an exact ``Linear``
    with a warning. The result takes inputs of shape (N, *net.input_shape), is in eval
    mode, and carries ``input_shape`` as an attribute for :func:`network_from_torch`.
    """
    mods: list[nn.Module] = []
    shape = tuple(net.input_shape)
    for layer in net.layers:
        conv = layer.conv
        if conv is not None and not conv_spec_matches(layer):
            warnings.warn(
                f"layer {layer.name!r}: ConvSpec does not match the weight matrix; writing it as a Linear layer",
                stacklevel=2,
            )
            conv = None
        if conv is not None:
            if shape != tuple(conv.in_shape):
                if len(shape) != 1:
                    mods.append(nn.Flatten())
                mods.append(nn.Unflatten(1, tuple(conv.in_shape)))
            co, ci, kh, kw = conv.kernel.shape
            m = nn.Conv2d(ci, co, (kh, kw), stride=conv.stride, padding=conv.padding, dtype=dtype)
            with torch.no_grad():
                m.weight.copy_(torch.as_tensor(conv.kernel, dtype=dtype))
                m.bias.copy_(torch.as_tensor(conv.bias, dtype=dtype))
            shape = tuple(conv.out_shape)
        else:
            if len(shape) != 1:
                mods.append(nn.Flatten())
            m = nn.Linear(layer.in_features, layer.out_features, dtype=dtype)
            with torch.no_grad():
                m.weight.copy_(torch.as_tensor(layer.dense_weight(), dtype=dtype))
                m.bias.copy_(torch.as_tensor(layer.bias, dtype=dtype))
            shape = (layer.out_features,)
        mods.append(m)
        if layer.activation != "identity":
            mods.append({"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[layer.activation]())
    model = nn.Sequential(*mods)
    model.input_shape = tuple(net.input_shape)
    return model.eval()

