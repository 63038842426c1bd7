"""A tiny ONNX ReLU network and a VNN-LIB box property on it, for CLI tests (shared by several test files)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from optprune.io import network_from_torch, network_to_onnx


def tiny_onnx_and_property(folder: Path, n_in: int, hidden: int, n_out: int, output_assert: str
                           ) -> tuple[Path, Path]:
    """``n_in -> hidden -> n_out`` (seed 0) as ``tiny.onnx``, and ``prop.vnnlib``: inputs in [0, 0.1], then
    ``output_assert`` (one VNN-LIB ``assert`` on the outputs)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, n_out))
    onnx_path = folder / "tiny.onnx"
    network_to_onnx(network_from_torch(model, (n_in,), name="tiny"), onnx_path)
    lines = [f"(declare-const X_{i} Real)" for i in range(n_in)] + [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    lines += [f"(assert (>= X_{i} 0.0))\n(assert (<= X_{i} 0.1))" for i in range(n_in)]
    lines += [output_assert]
    prop = folder / "prop.vnnlib"
    prop.write_text("\n".join(lines) + "\n")
    return onnx_path, prop
