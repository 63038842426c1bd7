"""Loading a network or a torch model from a file, by suffix."""

from __future__ import annotations

import os
from pathlib import Path

from optprune.errors import DataNotFoundError, FileFormatError
from optprune.network import Network

__all__ = ["MODEL_SUFFIXES", "load_network", "load_torch_model"]

MODEL_SUFFIXES = (".onnx", ".pt", ".pth")


def _check_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise FileFormatError(
            f"cannot load {path}: unknown suffix {path.suffix or '(none)'!r}; allowed suffixes: "
            f"{', '.join(MODEL_SUFFIXES)}"
        )
    if not path.is_file():
        raise DataNotFoundError(f"network file not found: {path}")
    return path


def _load_pickled_sequential(path: Path):
    import torch
    from torch import nn

    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling errors come in many types
        raise FileFormatError(f"{path} could not be read by torch.load: {exc}") from exc
    if isinstance(obj, nn.Sequential):
        return obj.eval()
    if isinstance(obj, dict):
        raise FileFormatError(
            f"{path} holds a dict (a state_dict or checkpoint), not a model; save the whole nn.Sequential with "
            "torch.save(model, path), or build the model and call model.load_state_dict yourself"
        )
    raise FileFormatError(
        f"{path} holds a {type(obj).__module__}.{type(obj).__name__}; a torch.nn.Sequential saved with "
        "torch.save(model, path) is required"
    )


def load_torch_model(path: str | os.PathLike):
    """A ``torch.nn.Sequential`` in eval mode from ``.pt``/``.pth`` (``torch.save``'d Sequential) or ``.onnx``.

    ``.pt``/``.pth`` files are unpickled with ``weights_only=False``: only load files you trust.
    """
    path = _check_path(path)
    if path.suffix.lower() == ".onnx":
        from optprune.io._onnx import network_from_onnx
        from optprune.io._torch import network_to_torch

        return network_to_torch(network_from_onnx(path))
    return _load_pickled_sequential(path)


def load_network(path: str | os.PathLike, input_shape: tuple[int, ...] | None = None) -> Network:
    """A :class:`Network` from ``.onnx`` or a ``torch.save``'d ``nn.Sequential`` (``.pt``/``.pth``).

    ``input_shape`` (without batch axis) is needed for a torch model that starts with a
    convolution and has no ``input_shape`` attribute; ONNX files carry their own.
    """
    path = _check_path(path)
    if path.suffix.lower() == ".onnx":
        from optprune.io._onnx import network_from_onnx

        return network_from_onnx(path)
    from optprune.io._torch import network_from_torch

    return network_from_torch(_load_pickled_sequential(path), input_shape=input_shape, name=path.stem)
