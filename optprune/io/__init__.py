"""Readers and writers: torch ``nn.Sequential`` and ONNX <-> :class:`optprune.network.Network`.

Torch is imported only when a torch reader or writer is used, so ``optprune.io``
can read ONNX files into a :class:`Network` without loading torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optprune.io._conv import conv_spec_matches, conv_spec_matrix, conv_to_sparse
from optprune.io._load import MODEL_SUFFIXES, TORCH_FORMAT, load_network, load_torch_model, save_torch_model
from optprune.io._onnx import SUPPORTED_ONNX_OPS, network_from_onnx, network_to_onnx

if TYPE_CHECKING:
    from optprune.io._torch import SUPPORTED_TORCH_MODULES, network_from_torch, network_to_torch

__all__ = [
    "MODEL_SUFFIXES",
    "SUPPORTED_ONNX_OPS",
    "SUPPORTED_TORCH_MODULES",
    "TORCH_FORMAT",
    "conv_spec_matches",
    "conv_spec_matrix",
    "conv_to_sparse",
    "load_network",
    "load_torch_model",
    "network_from_onnx",
    "network_from_torch",
    "network_to_onnx",
    "network_to_torch",
    "save_torch_model",
]

_TORCH_NAMES = ("SUPPORTED_TORCH_MODULES", "network_from_torch", "network_to_torch")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from optprune.io import _torch

        return getattr(_torch, name)
    raise AttributeError(f"module 'optprune.io' has no attribute {name!r}")
