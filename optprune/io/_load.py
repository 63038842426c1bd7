"""Loading a network or a torch model from a file, by suffix; saving a torch model without pickled code.

``.pt``/``.pth`` files are read with ``torch.load(weights_only=True)``: only
tensors and plain Python values are unpickled, so a hostile file cannot run
code on load. Two kinds of files load this way:

* optprune's own torch format, written by :func:`save_torch_model` (and by
  ``optprune prune --out model.pt``): ``{"format": "optprune-torch-sequential",
  "version": 1, "modules": <architecture as plain data>, "state_dict": ...,
  "input_shape": [...]}``;
* nothing else: a bare ``state_dict`` has no architecture and is refused with
  a message saying how to save a loadable file.

A whole ``nn.Sequential`` saved with ``torch.save(model, path)`` is a pickle
of Python objects; unpickling it runs whatever the file says. It loads only
with ``trust_pickle=True`` (``--trust-pickle`` on the command line), which a
user should pass only for files they trust.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from optprune.errors import DataNotFoundError, FileFormatError, UnsupportedLayerError
from optprune.network import Network

__all__ = ["MODEL_SUFFIXES", "TORCH_FORMAT", "load_network", "load_torch_model", "save_torch_model"]

MODEL_SUFFIXES = (".onnx", ".pt", ".pth")
TORCH_FORMAT = "optprune-torch-sequential"

# module type -> constructor keyword arguments stored in the file (all plain ints, floats, bools, strings, tuples)
_MODULE_ARGS: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features"),
    "Conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
               "padding_mode"),
    "ReLU": (),
    "Flatten": ("start_dim", "end_dim"),
    "Unflatten": ("dim", "unflattened_size"),
    "BatchNorm1d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "BatchNorm2d": ("num_features", "eps", "momentum", "affine", "track_running_stats"),
    "Dropout": ("p",),
    "Dropout1d": ("p",),
    "Dropout2d": ("p",),
    "Identity": (),
}
_HAS_BIAS = ("Linear", "Conv2d")


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise FileFormatError(
            f"cannot load {path}: unknown suffix {path.suffix or '(none)'!r}; allowed suffixes: "
            f"{', '.join(MODEL_SUFFIXES)}"
        )
    if path.is_dir():
        raise FileFormatError(f"cannot load {path}: it is a directory; give a model file ({', '.join(MODEL_SUFFIXES)})")
    if not path.is_file():
        raise DataNotFoundError(f"network file not found: {path}")
    if path.stat().st_size == 0:
        raise FileFormatError(f"cannot load {path}: the file is empty (0 bytes)")
    return path


# ---------------------------------------------------------------------------------------------- saving
def _describe(module) -> dict:
    """The architecture of ``module`` as plain data (module doc); an unsupported module is a named error."""
    from torch import nn

    kind = type(module).__name__
    if isinstance(module, nn.Sequential) and type(module) is nn.Sequential:
        return {"type": "Sequential", "children": [[name, _describe(child)] for name, child in module.named_children()]}
    if kind not in _MODULE_ARGS or type(module) is not getattr(nn, kind):
        raise UnsupportedLayerError(
            type(module).__name__, f"{type(module).__module__}.{kind} (optprune's .pt format stores only these; "
            "save as .onnx or torch.save it yourself)", ("Sequential", *_MODULE_ARGS),
        )
    spec: dict[str, Any] = {"type": kind}
    for arg in _MODULE_ARGS[kind]:
        value = getattr(module, arg)
        spec[arg] = tuple(value) if isinstance(value, (tuple, list)) else value
    if kind in _HAS_BIAS:
        spec["bias"] = module.bias is not None
    return spec


def save_torch_model(model, path: str | os.PathLike) -> Path:
    """Write an ``nn.Sequential`` of supported modules so that it loads without unpickling code.

    The file holds the architecture as plain data, the ``state_dict`` and the
    model's ``input_shape`` attribute (if any); :func:`load_torch_model` reads
    it with ``torch.load(weights_only=True)``.
    """
    import torch

    path = Path(path)
    shape = getattr(model, "input_shape", None)
    payload = {
        "format": TORCH_FORMAT,
        "version": 1,
        "modules": _describe(model),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "input_shape": None if shape is None else [int(v) for v in shape],
    }
    torch.save(payload, path)
    return path


# ---------------------------------------------------------------------------------------------- loading
def _build(spec: Any, path: Path):
    from torch import nn

    if not isinstance(spec, dict) or not isinstance(spec.get("type"), str):
        raise FileFormatError(f"{path}: module description {spec!r} is not a dict with a 'type'")
    kind = spec["type"]
    if kind == "Sequential":
        children = spec.get("children")
        if not isinstance(children, (list, tuple)):
            raise FileFormatError(f"{path}: Sequential without a 'children' list")
        seq = nn.Sequential()
        for item in children:
            if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)):
                raise FileFormatError(f"{path}: Sequential child {item!r} is not a [name, module] pair")
            seq.add_module(item[0], _build(item[1], path))
        return seq
    if kind not in _MODULE_ARGS:
        raise UnsupportedLayerError(str(kind), str(kind), ("Sequential", *_MODULE_ARGS))
    kwargs = {arg: spec[arg] for arg in _MODULE_ARGS[kind] if arg in spec}
    if kind in _HAS_BIAS:
        kwargs["bias"] = bool(spec.get("bias", True))
    try:
        return getattr(nn, kind)(**kwargs)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{path}: cannot build {kind}({kwargs}): {exc}") from None


def _from_payload(obj: dict, path: Path):
    import torch

    if obj.get("version") != 1:
        raise FileFormatError(f"{path}: {TORCH_FORMAT} version {obj.get('version')!r}; this optprune reads version 1")
    model = _build(obj.get("modules"), path)
    from torch import nn

    if not isinstance(model, nn.Sequential):
        model = nn.Sequential(model)
    state = obj.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FileFormatError(f"{path}: 'state_dict' must map names to tensors")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FileFormatError(f"{path}: the weights do not fit the stored architecture: {exc}") from None
    shape = obj.get("input_shape")
    if shape is not None:
        model.input_shape = tuple(int(v) for v in shape)
    return model


def _torch_load(path: Path, trust_pickle: bool):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        if trust_pickle:
            raise FileFormatError(f"{path} could not be read by torch.load: {exc}") from None
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it refers to {names[0]})" if names else ""
        if names and names[0].startswith("torch.nn."):
            raise FileFormatError(
                f"{path} holds a whole pickled torch model{what}; loading it would run code stored in the file. "
                "If you trust the file, pass --trust-pickle (trust_pickle=True in Python); otherwise save the model "
                "with optprune.io.save_torch_model(model, path) (weights and architecture, no code) or as ONNX"
            ) from None
        if names:
            raise FileFormatError(
                f"{path} holds pickled Python objects{what} that a weights-only load refuses; it was not unpickled. "
                "Pass --trust-pickle (trust_pickle=True) only if you trust the file: unpickling runs code from it"
            ) from None
        # torch wraps the unpickler's own complaint ("Unsupported operand 110") in advice to drop weights_only
        detail = [line.strip() for line in str(exc).splitlines()
                  if line.strip() and not line.startswith(("Weights only load failed", "Please file", "Check the"))]
        raise FileFormatError(
            f"{path} could not be read by torch.load: {detail[0] if detail else type(exc).__name__} "
            "(not a file written by torch.save?)"
        ) from None
    except Exception as exc:  # zip, magic-number and truncation errors come in many types
        raise FileFormatError(f"{path} could not be read by torch.load: {exc}") from None


def _load_torch_file(path: Path, trust_pickle: bool):
    from torch import nn

    obj = _torch_load(path, trust_pickle)
    if isinstance(obj, dict) and obj.get("format") == TORCH_FORMAT:
        return _from_payload(obj, path).eval()
    if isinstance(obj, nn.Sequential):
        return obj.eval()
    if isinstance(obj, dict):
        raise FileFormatError(
            f"{path} holds a dict (a bare state_dict or checkpoint) without the architecture; save the model with "
            "optprune.io.save_torch_model(model, path) (loads without --trust-pickle) or export it to ONNX"
        )
    raise FileFormatError(
        f"{path} holds a {type(obj).__module__}.{type(obj).__name__}; an nn.Sequential saved with "
        "optprune.io.save_torch_model (or, with --trust-pickle, torch.save(model, path)) is required"
    )


def load_torch_model(path: str | os.PathLike, *, trust_pickle: bool = False):
    """A ``torch.nn.Sequential`` in eval mode from ``.onnx`` or ``.pt``/``.pth`` (module doc).

    ``trust_pickle=True`` also accepts a whole model saved with ``torch.save(model, path)``;
    unpickling runs code stored in the file, so pass it only for files you trust.
    """
    path = _check_path(path)
    if path.suffix.lower() == ".onnx":
        from optprune.io._onnx import network_from_onnx
        from optprune.io._torch import network_to_torch

        return network_to_torch(network_from_onnx(path))
    return _load_torch_file(path, trust_pickle)


def load_network(
    path: str | os.PathLike, input_shape: tuple[int, ...] | None = None, *, trust_pickle: bool = False
) -> Network:
    """A :class:`Network` from ``.onnx`` or a torch model file (``.pt``/``.pth``, see :func:`load_torch_model`).

    ``input_shape`` (without batch axis) is needed for a torch model that starts with a
    convolution and has no ``input_shape`` attribute; ONNX files carry their own.
    """
    path = _check_path(path)
    if path.suffix.lower() == ".onnx":
        from optprune.io._onnx import network_from_onnx

        return network_from_onnx(path)
    from optprune.io._torch import network_from_torch

    return network_from_torch(_load_torch_file(path, trust_pickle), input_shape=input_shape, name=path.stem)
