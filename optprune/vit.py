"""A small vision transformer whose attention heads and MLP neurons the pruning engine can remove.

Architecture (Dosovitskiy et al. 2021, "An Image is Worth 16x16 Words", eqs. 1-4,
pre-norm blocks):

    z_0 = [x_cls; x_p^1 E; ...; x_p^N E] + E_pos          (patch embedding, class token)
    z'_l = z_{l-1} + MSA(LN(z_{l-1}))                     (l = 1..L)
    z_l  = z'_l + MLP(LN(z'_l)),  MLP(u) = W_2 GELU(W_1 u + b_1) + b_2
    y    = head(LN(z_L^0))                                (the class token)

Each block's attention is :class:`optprune.structure.MultiHeadSelfAttention`
(separate q/k/v projections, so a head is one dependency group) and its MLP is
two ``nn.Linear`` (``fc1`` rows = the neuron group). The residual stream is
frozen by the LayerNorms, so the embedding width is never pruned.

Why the forward pass is written the way it is: the dependency tracer
(:func:`optprune.structure.dependency_groups`) follows reshapes, broadcasting
element-wise products, sums over non-channel axes and ``cat``, but not
``permute``/``transpose``/``expand`` or tensor indexing. So

* the patch embedding ``x_p E`` is a broadcast product and a sum: the image
  ``(n, C, H, W)`` is viewed as ``(n, C, gh, p, gw, p, 1)``, multiplied by
  ``E`` of shape ``(C, 1, p, 1, p, D)`` and summed over ``C`` and both pixel
  axes, giving ``(n, gh, gw, D)`` (exactly a ``p x p`` stride-``p`` convolution);
* the class token is ``x_cls + 0 * mean_t(z)`` (broadcast to the batch), and
  the read-out takes token 0 as ``sum_t e_0[t] z_t`` with a fixed one-hot buffer.

Models are saved as ``.pt`` holding the configuration as plain data and the
state dict (loads with ``torch.load(weights_only=True)``; optprune's generic
``save_torch_model`` stores only ``nn.Sequential`` chains), and exported to
ONNX with :func:`export_vit_onnx`.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune._checkpoint import POSITIVE_INT, POSITIVE_INTS, build_model, check_config, read_checkpoint
from optprune._files import atomic_file
from optprune.errors import (
    InvalidParameterError,
    ShapeMismatchError,
    UnsupportedLayerError,
)
from optprune.structure import MultiHeadSelfAttention

__all__ = [
    "VIT_FORMAT",
    "VIT_PRESETS",
    "Block",
    "PatchEmbedding",
    "ViT",
    "ViTConfig",
    "check_inputs",
    "check_vit",
    "export_vit_onnx",
    "group_names",
    "load_vit",
    "make_vit",
    "per_block",
    "save_vit",
    "train_vit",
    "vit_accuracy",
]

VIT_FORMAT = "optprune.vit/1"


@dataclass(frozen=True)
class ViTConfig:
    """Hyper-parameters of a :class:`ViT`; ``heads`` and ``mlp`` are per block (pruning makes them differ)."""

    image_size: int
    patch: int
    channels: int
    dim: int
    head_dim: int
    heads: tuple[int, ...]
    mlp: tuple[int, ...]
    classes: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "heads", tuple(int(h) for h in self.heads))
        object.__setattr__(self, "mlp", tuple(int(m) for m in self.mlp))
        ints = {"image_size": self.image_size, "patch": self.patch, "channels": self.channels, "dim": self.dim,
                "head_dim": self.head_dim, "classes": self.classes}
        for name, value in ints.items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InvalidParameterError(f"ViTConfig: parameter {name!r} must be an integer >= 1; got {value!r}")
        if self.image_size % self.patch:
            raise InvalidParameterError(
                f"ViTConfig: image_size ({self.image_size}) must be a multiple of patch ({self.patch})"
            )
        if not self.heads or len(self.heads) != len(self.mlp):
            raise InvalidParameterError(
                f"ViTConfig: 'heads' and 'mlp' need one entry per block (>= 1 block); got {self.heads} and {self.mlp}"
            )
        if min(self.heads) < 1 or min(self.mlp) < 1:
            raise InvalidParameterError(
                f"ViTConfig: every block keeps >= 1 head and >= 1 MLP neuron; got heads={self.heads}, mlp={self.mlp}"
            )

    @property
    def depth(self) -> int:
        return len(self.heads)

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)


#: the reference models of ``instances/vit`` (dataset -> configuration and training settings)
VIT_PRESETS: dict[str, dict[str, Any]] = {
    "mnist": {"config": ViTConfig(28, 7, 1, 48, 12, (4,) * 4, (96,) * 4), "epochs": 12, "lr": 2e-3},
    "digits": {"config": ViTConfig(8, 2, 1, 32, 8, (4,) * 3, (64,) * 3), "epochs": 60, "lr": 2e-3},
}


class PatchEmbedding(nn.Module):
    """Non-overlapping ``p x p`` patches times ``E``: ``(n, C, H, W) -> (n, (H/p)(W/p), D)`` (row-major patches)."""

    def __init__(self, image_size: int, patch: int, channels: int, dim: int) -> None:
        super().__init__()
        self.grid = image_size // patch
        self.patch = patch
        self.channels = channels
        self.weight = nn.Parameter(torch.empty(channels, 1, patch, 1, patch, dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.weight, std=1.0 / math.sqrt(channels * patch * patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, p = self.grid, self.patch
        pixels = x.reshape(-1, self.channels, g, p, g, p, 1)
        z = (pixels * self.weight).sum(dim=(1, 3, 5)) + self.bias  # (n, g, g, D)
        return z.reshape(-1, g * g, self.weight.shape[-1])


class Block(nn.Module):
    """Pre-norm transformer block: ``z + MSA(LN z)`` then ``z + fc2(GELU(fc1(LN z)))``."""

    def __init__(self, dim: int, heads: int, head_dim: int, mlp: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, mlp)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        z = z + self.attn(self.norm1(z))
        return z + self.fc2(self.act(self.fc1(self.norm2(z))))


class ViT(nn.Module):
    """The small ViT described in the module docstring; ``input_shape`` is ``(C, H, W)``."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        c = config
        self.embed = PatchEmbedding(c.image_size, c.patch, c.channels, c.dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, c.tokens, c.dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(c.dim, h, c.head_dim, m) for h, m in zip(c.heads, c.mlp))
        self.norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, c.classes)
        select = torch.zeros(1, c.tokens, 1)
        select[0, 0, 0] = 1.0
        self.register_buffer("cls_select", select, persistent=False)
        self.input_shape = c.input_shape
        self._base = c

    @property
    def config(self) -> ViTConfig:
        """The configuration of the model as it is now (per-block heads and MLP widths read from the modules)."""
        heads = tuple(b.attn.q_proj.out_features // b.attn.head_dim for b in self.blocks)
        mlp = tuple(b.fc1.out_features for b in self.blocks)
        b = self._base
        return ViTConfig(b.image_size, b.patch, b.channels, b.dim, b.head_dim, heads, mlp, b.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x)
        cls = self.cls_token + 0.0 * patches.mean(dim=1, keepdim=True)  # (n, 1, D) without expand
        z = torch.cat([cls, patches], dim=1) + self.pos_embed
        for block in self.blocks:
            z = block(z)
        first = (self.norm(z) * self.cls_select).sum(dim=1)  # token 0 without indexing
        return self.head(first)


def make_vit(config: ViTConfig | str, seed: int = 0) -> ViT:
    """A freshly initialised ViT (``config`` a :class:`ViTConfig` or a preset name of :data:`VIT_PRESETS`)."""
    if isinstance(config, str):
        if config not in VIT_PRESETS:
            raise InvalidParameterError(f"make_vit: preset must be one of {sorted(VIT_PRESETS)}; got {config!r}")
        config = VIT_PRESETS[config]["config"]
    if not isinstance(config, ViTConfig):
        raise InvalidParameterError(f"make_vit: config must be a ViTConfig or a preset name; got {type(config).__name__}")
    torch.manual_seed(seed)
    return ViT(config)


_ALLOWED = (ViT, PatchEmbedding, Block, MultiHeadSelfAttention, nn.ModuleList, nn.LayerNorm, nn.Linear, nn.GELU)


def check_vit(model: Any) -> ViT:
    """``model`` if it is a :class:`ViT` built only from the supported modules, else a named error.

    Raises :class:`UnsupportedLayerError` naming the first module that is not
    supported (e.g. a ``torch.nn.MultiheadAttention`` swapped in, or a plain
    ``nn.Sequential`` MLP).
    """
    supported = [t.__name__ for t in _ALLOWED]
    if not isinstance(model, ViT):
        raise UnsupportedLayerError("(model)", type(model).__name__, ["ViT (optprune.vit)"])
    for name, module in model.named_modules():
        if type(module) not in _ALLOWED:
            raise UnsupportedLayerError(name or "(model)", type(module).__name__, supported)
    return model


def check_inputs(model: ViT, X: np.ndarray | torch.Tensor) -> None:
    """A named error when images ``X`` (n, C, H, W) do not have the model's input shape."""
    shape = tuple(int(d) for d in X.shape[1:])
    if shape != tuple(model.input_shape):
        raise ShapeMismatchError(
            f"the ViT takes images of shape {tuple(model.input_shape)} (C, H, W); the data has shape {shape}"
        )


def vit_accuracy(model: nn.Module, X: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on images ``X`` with labels ``y``."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            out = model(torch.as_tensor(X[i : i + batch_size], dtype=torch.float32))
            correct += int((out.argmax(1).numpy() == np.asarray(y[i : i + batch_size])).sum())
    return correct / max(len(X), 1)


def train_vit(
    dataset: str,
    *,
    seed: int = 0,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 64,
    config: ViTConfig | None = None,
    progress: bool = False,
) -> ViT:
    """Train a ViT on the ``"train"`` fold of ``dataset`` (``"mnist"`` or ``"digits"``), single-threaded.

    Adam with weight decay 0 over seeded shuffled batches
    (:func:`optprune.training.fit_epochs`); the defaults of :data:`VIT_PRESETS`
    produce the reference models of ``instances/vit``.
    """
    from optprune.data import load_dataset
    from optprune.training import fit_epochs

    if dataset not in VIT_PRESETS:
        raise InvalidParameterError(f"train_vit: dataset must be one of {sorted(VIT_PRESETS)}; got {dataset!r}")
    preset = VIT_PRESETS[dataset]
    model = make_vit(config or preset["config"], seed)
    X, y = load_dataset(dataset, "train")
    check_inputs(model, X)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def loss(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, yt[idx])

    return fit_epochs(model, Xt, yt, loss, epochs=epochs or preset["epochs"], lr=lr or preset["lr"],
                      batch_size=batch_size, seed=seed, progress=progress, title="train ViT", label=dataset)


def save_vit(model: ViT, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the configuration (plain data), the state dict and ``metadata`` to a ``.pt`` file (atomically)."""
    check_vit(model)
    path = Path(path)
    payload = {
        "format": VIT_FORMAT,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(model.config).items()},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)
    return path


#: the keys of a saved :class:`ViTConfig` and what each may hold
CONFIG_CONSTRAINTS = {**{k: POSITIVE_INT for k in ("image_size", "patch", "channels", "dim", "head_dim", "classes")},
                      "heads": POSITIVE_INTS, "mlp": POSITIVE_INTS}
VIT_TAKES = "a ViT written by optprune vit-train or optprune.vit.save_vit"


def load_vit(path: str | os.PathLike) -> ViT:
    """Read a model written by :func:`save_vit` (no unpickling of code: ``weights_only=True``).

    Checked by :mod:`optprune._checkpoint`: format tag, config keys and values,
    state-dict names and shapes against the config, finite weights.
    """
    path = Path(path)
    payload = read_checkpoint(path, VIT_FORMAT, VIT_TAKES)
    config = check_config(path, payload.get("config"), CONFIG_CONSTRAINTS,
                          required=[k for k in CONFIG_CONSTRAINTS if k != "classes"])
    return build_model(path, lambda c: ViT(ViTConfig(**c)), config, payload)


def export_vit_onnx(model: ViT, path: str | os.PathLike, opset: int = 17) -> Path:
    """ONNX export with a dynamic batch axis (input ``images`` (n, C, H, W), output ``logits``)."""
    path = Path(path)
    model.eval()
    dummy = torch.zeros((1, *model.input_shape))
    # the TorchScript exporter is deprecated, and the one that handles this graph
    with warnings.catch_warnings(), atomic_file(path) as tmp:
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return path


def per_block(model: ViT) -> dict[str, list[int]]:
    """Heads and MLP widths per block (for reports)."""
    c = check_vit(model).config
    return {"heads": list(c.heads), "mlp": list(c.mlp)}


def group_names(model: ViT) -> dict[str, Sequence[str]]:
    """The dependency-group names of the heads and MLP neurons of every block, in block order."""
    n = len(model.blocks)
    return {"heads": [f"blocks.{i}.attn.heads" for i in range(n)], "mlp": [f"blocks.{i}.fc1" for i in range(n)]}
