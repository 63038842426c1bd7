"""Hugging Face ``ViTForImageClassification`` / ``DeiTForImageClassification`` as inputs and outputs of pruning.

timm's VisionTransformer is not supported: timm imports torchvision, which has no CPU wheel for the
torch build of this project, so the vision side of issue 26 uses the transformers classes (the same
architecture: Dosovitskiy et al. 2021, eqs. 1-4; DeiT adds a distillation token, Touvron et al. 2021).

What is here, and why:

* :func:`analyse_hf_vit` reads the module graph of a ViT/DeiT into the prunable groups of every
  encoder layer: one group per attention head (rows ``h*d:(h+1)*d`` of the separate ``q_proj``,
  ``k_proj``, ``v_proj`` and the same columns of ``o_proj``) and one group per MLP neuron (row of
  ``fc1``, column of ``fc2``). The residual stream (hidden size), the class / distillation tokens,
  the position embeddings and the LayerNorms are frozen: every layer reads and writes it. A module
  it does not know (a LayerScale, a fused qkv, a custom block) is a named
  :class:`~optprune.errors.UnsupportedLayerError`. (transformers' ViT/DeiT have no LayerScale;
  Dinov2 has one and is refused by name.)
* :func:`to_optprune_vit` / :func:`from_optprune_vit` convert exactly between a ViT and the
  project's :class:`optprune.vit.ViT` (equal logits), so the project's dependency tracer finds the
  groups (cross-checked against :func:`analyse_hf_vit`), and GOHSP and the structured scorers run
  unchanged (:func:`gohsp_hf_vit`).
* :func:`prune_hf_vit` cuts heads and neurons out of the transformers model and returns a
  :class:`PrunedViTForImageClassification` (or the DeiT twin) whose configuration carries the
  per-layer head counts and MLP widths (``heads_per_layer``, ``intermediate_per_layer``); the classes
  are registered with ``AutoConfig`` / ``AutoModelForImageClassification``, so
  ``save_pretrained`` + ``from_pretrained`` round-trip a heterogeneous model.
  :func:`mask_hf_vit` zeroes the same heads and neurons in place: the masked and the pruned model
  compute the same logits.
* :func:`train_hf_vit` trains a small ViT on the project's MNIST folds (the reference in
  ``instances/hf_vit``), :func:`export_hf_vit_onnx` writes ONNX.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune._files import atomic_file
from optprune.errors import InvalidParameterError, ShapeMismatchError, UnsupportedLayerError

try:
    from transformers import (
        AutoConfig,
        AutoModelForImageClassification,
        DeiTConfig,
        DeiTForImageClassification,
        ViTConfig,
        ViTForImageClassification,
    )
except ImportError as exc:  # pragma: no cover - the [hf] extra is installed in CI
    raise ImportError("optprune.hf.vit needs transformers: pip install 'optprune[hf]'") from exc

__all__ = [
    "HF_VIT_PRESET",
    "HFLayerGroups",
    "HFViTStructure",
    "PrunedDeiTConfig",
    "PrunedDeiTForImageClassification",
    "PrunedViTConfig",
    "PrunedViTForImageClassification",
    "analyse_hf_vit",
    "export_hf_vit_onnx",
    "from_optprune_vit",
    "gohsp_hf_vit",
    "hf_logits",
    "hf_vit_accuracy",
    "kept_from_scores",
    "load_hf_vit",
    "mask_hf_vit",
    "prune_hf_vit",
    "to_optprune_vit",
    "train_hf_vit",
]


# --------------------------------------------------------------------------------------------
# pruned configuration and model classes (registered with the Auto classes)


class PrunedViTConfig(ViTConfig):
    """A ViT configuration with per-layer head counts and MLP widths (``None`` = the uniform ones)."""

    model_type = "optprune_pruned_vit"

    def __init__(self, heads_per_layer: Sequence[int] | None = None,
                 intermediate_per_layer: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads_per_layer = [int(h) for h in heads_per_layer] if heads_per_layer is not None else None
        self.intermediate_per_layer = ([int(m) for m in intermediate_per_layer]
                                       if intermediate_per_layer is not None else None)


class PrunedDeiTConfig(DeiTConfig):
    """A DeiT configuration with per-layer head counts and MLP widths (``None`` = the uniform ones)."""

    model_type = "optprune_pruned_deit"

    def __init__(self, heads_per_layer: Sequence[int] | None = None,
                 intermediate_per_layer: Sequence[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads_per_layer = [int(h) for h in heads_per_layer] if heads_per_layer is not None else None
        self.intermediate_per_layer = ([int(m) for m in intermediate_per_layer]
                                       if intermediate_per_layer is not None else None)


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _resize_layers(layers: nn.ModuleList, config: Any) -> None:
    """Give every encoder layer the head count and MLP width of the configuration's per-layer lists."""
    heads = config.heads_per_layer or [config.num_attention_heads] * config.num_hidden_layers
    inter = config.intermediate_per_layer or [config.intermediate_size] * config.num_hidden_layers
    if len(heads) != len(layers) or len(inter) != len(layers):
        raise InvalidParameterError(
            f"{type(config).__name__}: heads_per_layer and intermediate_per_layer need one entry per layer "
            f"({len(layers)}); got {len(heads)} and {len(inter)}")
    if min(heads) < 1 or min(inter) < 1:
        raise InvalidParameterError(
            f"{type(config).__name__}: every layer keeps >= 1 head and >= 1 MLP neuron; got {heads} and {inter}")
    d, hidden = _head_dim(config), config.hidden_size
    for layer, h, m in zip(layers, heads, inter):
        att: Any = layer.attention
        mlp: Any = layer.mlp
        for name in ("q_proj", "k_proj", "v_proj"):
            setattr(att, name, nn.Linear(hidden, h * d, bias=config.qkv_bias))
        att.o_proj = nn.Linear(h * d, hidden, bias=True)
        att.num_attention_heads = h
        mlp.fc1 = nn.Linear(hidden, m)
        mlp.fc2 = nn.Linear(m, hidden)


class PrunedViTForImageClassification(ViTForImageClassification):
    """``ViTForImageClassification`` whose layers have the head counts / MLP widths of a :class:`PrunedViTConfig`."""

    config_class = PrunedViTConfig

    def __init__(self, config: PrunedViTConfig) -> None:
        super().__init__(config)
        _resize_layers(self.vit.layers, config)


class PrunedDeiTForImageClassification(DeiTForImageClassification):
    """``DeiTForImageClassification`` whose layers have the head counts / MLP widths of a :class:`PrunedDeiTConfig`."""

    config_class = PrunedDeiTConfig

    def __init__(self, config: PrunedDeiTConfig) -> None:
        super().__init__(config)
        _resize_layers(self.deit.layers, config)


def _register() -> None:
    for config_cls, model_cls in ((PrunedViTConfig, PrunedViTForImageClassification),
                                  (PrunedDeiTConfig, PrunedDeiTForImageClassification)):
        try:
            AutoConfig.register(config_cls.model_type, config_cls)
        except ValueError:  # already registered (module reloaded)
            pass
        try:
            AutoModelForImageClassification.register(config_cls, model_cls)
        except ValueError:
            pass


_register()

#: (base class, its encoder attribute, the pruned config class, the pruned model class)
_FAMILIES: dict[type, tuple[str, type, type]] = {
    ViTForImageClassification: ("vit", PrunedViTConfig, PrunedViTForImageClassification),
    DeiTForImageClassification: ("deit", PrunedDeiTConfig, PrunedDeiTForImageClassification),
}
_SUPPORTED = ["ViTForImageClassification", "DeiTForImageClassification",
              "PrunedViTForImageClassification", "PrunedDeiTForImageClassification"]


def _family(model: Any) -> tuple[str, type, type]:
    for base, family in _FAMILIES.items():
        if isinstance(model, base):
            return family
    raise UnsupportedLayerError("(model)", type(model).__name__, _SUPPORTED)


# --------------------------------------------------------------------------------------------
# structure analysis


@dataclass(frozen=True)
class HFLayerGroups:
    """The prunable groups of one encoder layer: ``heads`` heads of ``head_dim`` rows, ``mlp`` neurons."""

    index: int
    heads: int
    head_dim: int
    mlp: int
    q: str
    k: str
    v: str
    o: str
    fc1: str
    fc2: str

    @property
    def head_members(self) -> tuple[tuple[str, str], ...]:
        """(module, axis) that one head spans: rows of q/k/v, columns of o."""
        return ((self.q, "out"), (self.k, "out"), (self.v, "out"), (self.o, "in"))


@dataclass(frozen=True)
class HFViTStructure:
    """What :func:`analyse_hf_vit` found: per-layer groups plus the frozen parts."""

    architecture: str
    hidden_size: int
    layers: tuple[HFLayerGroups, ...]
    special_tokens: tuple[str, ...]  # class token (and DeiT's distillation token): frozen, residual stream
    layer_scale: bool
    frozen: tuple[str, ...]

    @property
    def heads(self) -> list[int]:
        return [g.heads for g in self.layers]

    @property
    def mlp(self) -> list[int]:
        return [g.mlp for g in self.layers]


_LEAF_OK = (nn.Linear, nn.LayerNorm, nn.Dropout, nn.Conv2d, nn.Identity)


def analyse_hf_vit(model: Any) -> HFViTStructure:
    """The prunable dependency groups of a transformers ViT/DeiT, read from its module graph.

    Every encoder layer must hold exactly: ``attention`` with separate ``q_proj``/``k_proj``/``v_proj``
    (``hidden -> H*d``) and ``o_proj`` (``H*d -> hidden``), ``mlp`` with ``fc1`` (``hidden -> m``) and
    ``fc2`` (``m -> hidden``), two LayerNorms and dropout. Widths are read from the modules (so a
    pruned model analyses to its own per-layer widths) and checked against each other; any other
    module inside a layer (LayerScale, fused qkv, an adapter) raises :class:`UnsupportedLayerError`
    naming it.
    """
    prefix, _, _ = _family(model)
    encoder = getattr(model, prefix)
    hidden = int(model.config.hidden_size)
    d = _head_dim(model.config)
    layers = []
    expected = {"attention", "attention.q_proj", "attention.k_proj", "attention.v_proj", "attention.o_proj",
                "mlp", "mlp.fc1", "mlp.fc2", "mlp.activation_fn", "layernorm_before", "layernorm_after", "dropout"}
    layer: Any
    for i, layer in enumerate(encoder.layers):
        base = f"{prefix}.layers.{i}"
        for name, module in layer.named_modules():
            if not name or name in expected and (isinstance(module, _LEAF_OK) or name in ("attention", "mlp")
                                                 or name == "mlp.activation_fn"):
                continue
            supported = sorted(expected)
            raise UnsupportedLayerError(f"{base}.{name}", type(module).__name__, supported)
        att, mlp = layer.attention, layer.mlp
        width = att.q_proj.out_features
        if width % d or att.k_proj.out_features != width or att.v_proj.out_features != width \
                or att.o_proj.in_features != width:
            raise ShapeMismatchError(
                f"{base}.attention: q/k/v outputs and o_proj input must be equal multiples of head_dim {d}; got "
                f"{att.q_proj.out_features}, {att.k_proj.out_features}, {att.v_proj.out_features}, "
                f"{att.o_proj.in_features}")
        if mlp.fc1.out_features != mlp.fc2.in_features or mlp.fc1.in_features != hidden:
            raise ShapeMismatchError(f"{base}.mlp: fc1 {tuple(mlp.fc1.weight.shape)} does not feed fc2 "
                                     f"{tuple(mlp.fc2.weight.shape)} (hidden {hidden})")
        layers.append(HFLayerGroups(i, width // d, d, mlp.fc1.out_features, f"{base}.attention.q_proj",
                                    f"{base}.attention.k_proj", f"{base}.attention.v_proj",
                                    f"{base}.attention.o_proj", f"{base}.mlp.fc1", f"{base}.mlp.fc2"))
    tokens = ["cls_token"] + (["distillation_token"] if hasattr(encoder.embeddings, "distillation_token") else [])
    frozen = (f"{prefix}.embeddings", f"{prefix}.layernorm", "classifier", "layernorm_before/after (every layer)")
    return HFViTStructure(type(model).__name__, hidden, tuple(layers), tuple(tokens), False, frozen)


# --------------------------------------------------------------------------------------------
# masking and pruning


def _check_keep(structure: HFViTStructure, heads: Sequence[Sequence[int]],
                neurons: Sequence[Sequence[int]]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    n = len(structure.layers)
    if len(heads) != n or len(neurons) != n:
        raise InvalidParameterError(
            f"prune_hf_vit: heads and neurons need one list per layer ({n}); got {len(heads)} and {len(neurons)}")
    out_h, out_m = [], []
    for g, h, m in zip(structure.layers, heads, neurons):
        hh, mm = np.unique(np.asarray(h, dtype=np.int64)), np.unique(np.asarray(m, dtype=np.int64))
        if hh.size < 1 or mm.size < 1:
            raise InvalidParameterError(f"prune_hf_vit: layer {g.index} must keep >= 1 head and >= 1 neuron")
        if hh.min() < 0 or hh.max() >= g.heads or mm.min() < 0 or mm.max() >= g.mlp:
            raise InvalidParameterError(
                f"prune_hf_vit: layer {g.index} keeps heads in [0, {g.heads}) and neurons in [0, {g.mlp}); "
                f"got heads {hh.tolist()} and neurons outside it")
        out_h.append(hh)
        out_m.append(mm)
    return out_h, out_m


def mask_hf_vit(model: Any, heads: Sequence[Sequence[int]], neurons: Sequence[Sequence[int]]) -> nn.Module:
    """A copy of ``model`` with every head / neuron not listed zeroed (``o_proj`` columns, ``fc1``/``fc2``).

    A removed head's context vector only reaches the residual stream through its ``o_proj`` columns,
    a removed neuron through its ``fc2`` column (its ``fc1`` row and bias are zeroed too, GELU(0)=0),
    so this model computes what :func:`prune_hf_vit` computes, at full size.
    """
    structure = analyse_hf_vit(model)
    hh, mm = _check_keep(structure, heads, neurons)
    masked = copy.deepcopy(model)
    modules = dict(masked.named_modules())
    with torch.no_grad():
        for g, h, m in zip(structure.layers, hh, mm):
            cols = torch.zeros(g.heads * g.head_dim, dtype=torch.bool)
            for j in h:
                cols[j * g.head_dim:(j + 1) * g.head_dim] = True
            modules[g.o].weight[:, ~cols] = 0.0
            dead = torch.ones(g.mlp, dtype=torch.bool)
            dead[torch.as_tensor(m)] = False
            modules[g.fc1].weight[dead] = 0.0
            modules[g.fc1].bias[dead] = 0.0
            modules[g.fc2].weight[:, dead] = 0.0
    return masked


def prune_hf_vit(model: Any, heads: Sequence[Sequence[int]], neurons: Sequence[Sequence[int]]) -> nn.Module:
    """A :class:`PrunedViTForImageClassification` (or DeiT twin) keeping only the listed heads and neurons per layer.

    ``heads[l]`` / ``neurons[l]`` are the indices kept in layer ``l`` (of the model as given). The
    embeddings, LayerNorms and classifier are copied unchanged; the returned model's configuration
    holds ``heads_per_layer`` / ``intermediate_per_layer`` and reloads with ``from_pretrained``.
    """
    structure = analyse_hf_vit(model)
    hh, mm = _check_keep(structure, heads, neurons)
    prefix, config_cls, model_cls = _family(model)
    cfg = model.config.to_dict()
    for key in ("model_type", "architectures", "heads_per_layer", "intermediate_per_layer", "transformers_version"):
        cfg.pop(key, None)
    cfg["head_dim"] = structure.layers[0].head_dim
    config = config_cls(heads_per_layer=[len(h) for h in hh], intermediate_per_layer=[len(m) for m in mm], **cfg)
    config._attn_implementation = model.config._attn_implementation
    pruned = model_cls(config)
    state = model.state_dict()
    new = {}
    for g, h, m in zip(structure.layers, hh, mm):
        rows = torch.as_tensor(np.concatenate([np.arange(j * g.head_dim, (j + 1) * g.head_dim) for j in h]))
        mi = torch.as_tensor(m)
        for name in (g.q, g.k, g.v):
            new[f"{name}.weight"] = state[f"{name}.weight"][rows]
            if f"{name}.bias" in state:
                new[f"{name}.bias"] = state[f"{name}.bias"][rows]
        new[f"{g.o}.weight"] = state[f"{g.o}.weight"][:, rows]
        new[f"{g.fc1}.weight"] = state[f"{g.fc1}.weight"][mi]
        new[f"{g.fc1}.bias"] = state[f"{g.fc1}.bias"][mi]
        new[f"{g.fc2}.weight"] = state[f"{g.fc2}.weight"][:, mi]
    merged = {k: new.get(k, v) for k, v in state.items()}
    pruned.load_state_dict(merged, strict=True)
    return pruned.eval()


# --------------------------------------------------------------------------------------------
# exact conversion to and from the project's ViT (optprune.vit)


def to_optprune_vit(model: Any) -> Any:
    """The project's :class:`optprune.vit.ViT` computing the same logits as a transformers ViT.

    Only ViT (one class token) converts; DeiT's distillation token has no counterpart in
    :class:`optprune.vit.ViT` (named error). The LayerNorm ``eps`` must be 1e-5 (the project's);
    the patch convolution weight ``(D, C, p, p)`` becomes the broadcast weight ``(C, 1, p, 1, p, D)``.
    """
    from optprune.vit import ViT
    from optprune.vit import ViTConfig as OptViTConfig

    prefix, _, _ = _family(model)
    if prefix != "vit":
        raise UnsupportedLayerError("(model)", type(model).__name__,
                                    ["ViTForImageClassification", "PrunedViTForImageClassification"])
    c = model.config
    if abs(float(c.layer_norm_eps) - 1e-5) > 1e-12 or c.hidden_act != "gelu" or not c.qkv_bias:
        raise InvalidParameterError(
            "to_optprune_vit: the project's ViT uses LayerNorm eps 1e-5, exact GELU and q/k/v biases; got "
            f"layer_norm_eps={c.layer_norm_eps}, hidden_act={c.hidden_act!r}, qkv_bias={c.qkv_bias}")
    s = analyse_hf_vit(model)
    d = s.layers[0].head_dim
    image = c.image_size if isinstance(c.image_size, int) else c.image_size[0]
    patch = c.patch_size if isinstance(c.patch_size, int) else c.patch_size[0]
    out: Any = ViT(OptViTConfig(image, patch, c.num_channels, c.hidden_size, d, tuple(s.heads), tuple(s.mlp),
                           c.num_labels))
    m: Any = model.vit
    with torch.no_grad():
        conv = m.embeddings.patch_embeddings.projection
        out.embed.weight.copy_(conv.weight.permute(1, 2, 3, 0)[:, None, :, None, :, :])
        out.embed.bias.copy_(conv.bias)
        out.cls_token.copy_(m.embeddings.cls_token)
        out.pos_embed.copy_(m.embeddings.position_embeddings)
        for src, dst in zip(m.layers, out.blocks):
            pairs = [(src.layernorm_before, dst.norm1), (src.layernorm_after, dst.norm2),
                     (src.attention.q_proj, dst.attn.q_proj), (src.attention.k_proj, dst.attn.k_proj),
                     (src.attention.v_proj, dst.attn.v_proj), (src.attention.o_proj, dst.attn.out_proj),
                     (src.mlp.fc1, dst.fc1), (src.mlp.fc2, dst.fc2)]
            for a, b in pairs:
                b.load_state_dict(a.state_dict())
        out.norm.load_state_dict(m.layernorm.state_dict())
        out.head.load_state_dict(model.classifier.state_dict())
    return out.eval()


def from_optprune_vit(vit: Any, like: Any) -> PrunedViTForImageClassification:
    """A :class:`PrunedViTForImageClassification` with the weights and per-block widths of a project ViT.

    ``like`` (a transformers ViT model or its configuration) gives the settings the project's ViT
    does not carry (dropout rates, attention implementation, label names).
    """
    from optprune.vit import check_vit

    check_vit(vit)
    base: Any = like.config if isinstance(like, nn.Module) else like
    c = vit.config
    cfg = base.to_dict()
    for key in ("model_type", "architectures", "heads_per_layer", "intermediate_per_layer", "transformers_version"):
        cfg.pop(key, None)
    cfg.update(image_size=c.image_size, patch_size=c.patch, num_channels=c.channels, hidden_size=c.dim,
               head_dim=c.head_dim, num_hidden_layers=c.depth, num_attention_heads=max(c.heads),
               intermediate_size=max(c.mlp), num_labels=c.classes, layer_norm_eps=1e-5, hidden_act="gelu",
               qkv_bias=True)
    if cfg.get("id2label") and len(cfg["id2label"]) != c.classes:
        cfg.pop("id2label")
        cfg.pop("label2id", None)
    config = PrunedViTConfig(heads_per_layer=list(c.heads), intermediate_per_layer=list(c.mlp), **cfg)
    config._attn_implementation = getattr(base, "_attn_implementation", None) or "eager"
    model = PrunedViTForImageClassification(config)
    m: Any = model.vit
    with torch.no_grad():
        conv = m.embeddings.patch_embeddings.projection
        conv.weight.copy_(vit.embed.weight[:, 0, :, 0, :, :].permute(3, 0, 1, 2))
        conv.bias.copy_(vit.embed.bias)
        m.embeddings.cls_token.copy_(vit.cls_token)
        m.embeddings.position_embeddings.copy_(vit.pos_embed)
        for dst, src in zip(m.layers, vit.blocks):
            pairs = [(src.norm1, dst.layernorm_before), (src.norm2, dst.layernorm_after),
                     (src.attn.q_proj, dst.attention.q_proj), (src.attn.k_proj, dst.attention.k_proj),
                     (src.attn.v_proj, dst.attention.v_proj), (src.attn.out_proj, dst.attention.o_proj),
                     (src.fc1, dst.mlp.fc1), (src.fc2, dst.mlp.fc2)]
            for a, b in pairs:
                b.load_state_dict(a.state_dict())
        m.layernorm.load_state_dict(vit.norm.state_dict())
        model.classifier.load_state_dict(vit.head.state_dict())
    return model.eval()


def load_hf_vit(path: str | os.PathLike) -> nn.Module:
    """A ViT/DeiT (dense or pruned) from a ``save_pretrained`` folder, read locally only, in eval mode.

    The pruned classes of this module are registered with the Auto classes, so a folder written from
    :func:`prune_hf_vit` / :func:`gohsp_hf_vit` reads back with its per-layer widths. A folder that
    transformers cannot read, or a model of another class, is a named
    :class:`~optprune.errors.FileFormatError` / :class:`~optprune.errors.UnsupportedLayerError`.
    """
    from transformers.utils import logging as hf_logging

    from optprune.errors import FileFormatError

    hf_logging.disable_progress_bar()
    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file()):
        raise FileFormatError(f"{p}: not a transformers model folder (expected config.json, as written by "
                              "save_pretrained)")
    try:
        model = AutoModelForImageClassification.from_pretrained(str(p), local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise FileFormatError(f"{p}: transformers could not load an image classifier: {exc}") from None
    _family(model)  # a ViT / DeiT (or a pruned one), else the named error
    return model.eval()


# --------------------------------------------------------------------------------------------
# training, evaluation, export


#: the reference model of instances/hf_vit: the same shape as optprune.vit's MNIST preset
HF_VIT_PRESET: dict[str, Any] = {
    "config": dict(image_size=28, patch_size=7, num_channels=1, hidden_size=48, num_hidden_layers=4,
                   num_attention_heads=4, intermediate_size=96, hidden_act="gelu", layer_norm_eps=1e-5,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, qkv_bias=True, num_labels=10),
    "epochs": 12, "lr": 2e-3, "batch_size": 64,
}


class _Logits(nn.Module):
    """``pixel_values -> logits`` of a transformers classifier (for the training loop and ONNX)."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def hf_logits(model: Any, X: np.ndarray | torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Logits of a transformers image classifier on images ``X`` (n, C, H, W), evaluation mode, no gradient."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(X), batch_size):
            x = torch.as_tensor(np.asarray(X[i:i + batch_size]), dtype=torch.float32)
            outs.append(model(pixel_values=x).logits.numpy())
    return np.concatenate(outs) if outs else np.zeros((0, 0), dtype=np.float32)


def hf_vit_accuracy(model: Any, X: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a transformers image classifier."""
    return float((hf_logits(model, X).argmax(1) == np.asarray(y)).mean()) if len(X) else 0.0


def train_hf_vit(*, seed: int = 0, epochs: int | None = None, lr: float | None = None,
                 config: dict[str, Any] | None = None, progress: bool = False) -> ViTForImageClassification:
    """Train a ``ViTForImageClassification`` from :data:`HF_VIT_PRESET` on the MNIST ``"train"`` fold, one thread.

    Adam over seeded shuffled batches by the project's one training loop
    (:func:`optprune.training.fit_epochs`); nothing is downloaded.
    """
    from optprune.data import load_dataset
    from optprune.training import fit_epochs

    torch.manual_seed(seed)
    cfg = ViTConfig(**{**HF_VIT_PRESET["config"], **(config or {})})
    cfg._attn_implementation = "eager"
    model = ViTForImageClassification(cfg)
    X, y = load_dataset("mnist", "train")
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)

    def loss(out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(out, yt[idx])

    fit_epochs(_Logits(model), Xt, yt, loss, epochs=epochs or HF_VIT_PRESET["epochs"],
               lr=lr or HF_VIT_PRESET["lr"], batch_size=HF_VIT_PRESET["batch_size"], seed=seed,
               progress=progress, title="train HF ViT", label="mnist")
    return model.eval()


def export_hf_vit_onnx(model: Any, path: str | os.PathLike, opset: int = 17) -> Path:
    """ONNX export (input ``pixel_values`` (n, C, H, W) with a dynamic batch axis, output ``logits``), atomically."""
    path = Path(path)
    model.eval()
    c = model.config
    image = c.image_size if isinstance(c.image_size, int) else c.image_size[0]
    dummy = torch.zeros(1, c.num_channels, image, image)
    with warnings.catch_warnings(), atomic_file(path) as tmp:
        warnings.simplefilter("ignore")
        torch.onnx.export(_Logits(model), (dummy,), str(tmp), input_names=["pixel_values"],
                          output_names=["logits"], opset_version=opset, dynamo=False,
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    return path


# --------------------------------------------------------------------------------------------
# scorers and GOHSP on the transformers model


def kept_from_scores(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest scores, ascending (ties to the lower index)."""
    if not 1 <= k <= len(scores):
        raise InvalidParameterError(f"kept_from_scores: k must be in [1, {len(scores)}]; got {k}")
    order = np.lexsort((np.arange(len(scores)), -np.asarray(scores, dtype=float)))
    return sorted(int(i) for i in order[:k])


def gohsp_hf_vit(model: Any, budget: float, data: tuple[np.ndarray, np.ndarray],
                 **gohsp_params: Any) -> tuple[PrunedViTForImageClassification, Any]:
    """GOHSP (Yin et al. 2023) on a transformers ViT: convert exactly, run :class:`optprune.gohsp.GOHSP`, convert back.

    Returns the pruned transformers model and the fitted estimator (its ``admm_history_`` etc.).
    ``budget`` is the fraction of parameters kept, as for :class:`~optprune.gohsp.GOHSP`.
    """
    from optprune.gohsp import GOHSP

    vit = to_optprune_vit(model)
    est = GOHSP(budget, **gohsp_params).fit(vit, data)
    return from_optprune_vit(est.model_, model), est


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m optprune.hf.vit --out DIR [--seed S] [--force] [--json]``: train, ``save_pretrained``."""
    import argparse
    import json
    import shutil
    import sys
    import time

    from optprune.data import load_dataset

    parser = argparse.ArgumentParser(prog="python -m optprune.hf.vit", description=main.__doc__)
    parser.add_argument("--out", type=Path, required=True, help="folder for save_pretrained")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        parser.error(f"{args.out} exists; pass --force to replace it")
    torch.set_num_threads(1)
    t0 = time.time()
    model = train_hf_vit(seed=args.seed, epochs=args.epochs, progress=not args.json)
    seconds = time.time() - t0
    splits: tuple[Any, ...] = ("train", "val", "test")
    acc = {split: hf_vit_accuracy(model, *load_dataset("mnist", split)) for split in splits}
    tmp = args.out.with_name(args.out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    if args.out.exists():
        shutil.rmtree(args.out)
    tmp.rename(args.out)
    result = {"out": str(args.out), "seed": args.seed, "params": sum(p.numel() for p in model.parameters()),
              "accuracy": acc, "train_seconds": round(seconds, 1)}
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()), file=sys.stdout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
