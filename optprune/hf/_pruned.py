"""Masks, physical cuts and the pruned model classes that ``from_pretrained`` reads back.

A pruned model keeps a different number of heads and MLP neurons in every layer, which the stock
configs cannot say (LLaMA's ``num_attention_heads``/``intermediate_size`` are one number for all
layers). The pruned model is therefore an instance of a small subclass per family,
:class:`PrunedLlamaForCausalLM`, :class:`PrunedGPT2LMHeadModel`, :class:`PrunedOPTForCausalLM`, with
config subclasses of ``model_type`` ``optprune_llama``/``optprune_gpt2``/``optprune_opt`` registered
with ``AutoConfig`` and ``AutoModelForCausalLM`` when :mod:`optprune.hf` loads this module. Their
config carries, besides every field of the dense config:

* ``optprune_shapes``: ``{module path: [in_features, out_features, has_bias]}`` of every projection
  the cut changed (a consumer may gain a bias: FLAP's compensation);
* ``optprune_attrs``: ``{attention path: {attribute: value}}`` (``num_heads``, ``split_size``: what
  the family's attention forward reads, :data:`optprune.hf._structure.HEAD_ATTRIBUTES`);
* ``optprune_layer_heads`` / ``optprune_layer_kv_heads`` / ``optprune_layer_mlp``: the kept query
  heads, KV heads and MLP neurons per layer (for people; the shapes are what is read);
* ``optprune_base_model_type``: the dense family.

The model class builds the dense model, then replaces the listed projections by ones of the
recorded shapes and sets the attributes, before the weights are loaded: so
``AutoModelForCausalLM.from_pretrained(folder)`` (after ``import optprune.hf``) and
``PrunedLlamaForCausalLM.from_pretrained(folder)`` both return the pruned model with its weights.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers
from torch import nn
from transformers.pytorch_utils import Conv1D

from optprune.errors import InvalidParameterError
from optprune.hf._archs import ARCHS, check_supported
from optprune.hf._structure import HEAD_ATTRIBUTES, HFGroup

__all__ = [
    "PrunedGPT2Config",
    "PrunedGPT2LMHeadModel",
    "PrunedLlamaConfig",
    "PrunedLlamaForCausalLM",
    "PrunedOPTConfig",
    "PrunedOPTForCausalLM",
    "column_scale",
    "cut_model",
    "export_onnx_hf",
    "layer_widths_hf",
    "unit_masks_hf",
]


def _apply_shapes(model: nn.Module, config: object) -> None:
    """Replace the projections of ``config.optprune_shapes`` and set ``config.optprune_attrs`` (module doc)."""
    for path, (n_in, n_out, bias) in (getattr(config, "optprune_shapes", None) or {}).items():
        old = model.get_submodule(path)
        ref = old.weight
        if isinstance(old, nn.Linear):
            new: nn.Module = nn.Linear(int(n_in), int(n_out), bias=bool(bias), device=ref.device, dtype=ref.dtype)
        else:
            new = Conv1D(int(n_out), int(n_in)).to(device=ref.device, dtype=ref.dtype)
        parent, _, name = path.rpartition(".")
        setattr(model.get_submodule(parent), name, new)
    for path, attrs in (getattr(config, "optprune_attrs", None) or {}).items():
        module = model.get_submodule(path)
        for name, value in attrs.items():
            setattr(module, name, int(value))


class PrunedLlamaConfig(transformers.LlamaConfig):
    """LlamaConfig of a pruned model: per-layer shapes in ``optprune_shapes`` (module doc)."""

    model_type = "optprune_llama"


class PrunedLlamaForCausalLM(transformers.LlamaForCausalLM):
    """LlamaForCausalLM with per-layer head counts and MLP widths read from its config (module doc)."""

    config_class = PrunedLlamaConfig

    def __init__(self, config: PrunedLlamaConfig) -> None:
        super().__init__(config)
        _apply_shapes(self, config)


class PrunedGPT2Config(transformers.GPT2Config):
    """GPT2Config of a pruned model: per-layer shapes in ``optprune_shapes`` (module doc)."""

    model_type = "optprune_gpt2"


class PrunedGPT2LMHeadModel(transformers.GPT2LMHeadModel):
    """GPT2LMHeadModel with per-layer head counts and MLP widths read from its config (module doc)."""

    config_class = PrunedGPT2Config

    def __init__(self, config: PrunedGPT2Config) -> None:
        super().__init__(config)
        _apply_shapes(self, config)


class PrunedOPTConfig(transformers.OPTConfig):
    """OPTConfig of a pruned model: per-layer shapes in ``optprune_shapes`` (module doc)."""

    model_type = "optprune_opt"


class PrunedOPTForCausalLM(transformers.OPTForCausalLM):
    """OPTForCausalLM with per-layer head counts and MLP widths read from its config (module doc)."""

    config_class = PrunedOPTConfig

    def __init__(self, config: PrunedOPTConfig) -> None:
        super().__init__(config)
        _apply_shapes(self, config)


#: dense family -> (pruned config class, pruned model class)
PRUNED = {"llama": (PrunedLlamaConfig, PrunedLlamaForCausalLM), "gpt2": (PrunedGPT2Config, PrunedGPT2LMHeadModel),
          "opt": (PrunedOPTConfig, PrunedOPTForCausalLM)}
for _cfg, _cls in PRUNED.values():
    transformers.AutoConfig.register(getattr(_cfg, "model_type"), _cfg, exist_ok=True)  # noqa: B009
    transformers.AutoModelForCausalLM.register(_cfg, _cls, exist_ok=True)


def family(model: nn.Module) -> str:
    """The dense family (``llama``, ``gpt2``, ``opt``) of a dense or pruned model."""
    check_supported(model)
    cfg = model.config
    return str(getattr(cfg, "optprune_base_model_type", None) or cfg.model_type)


def column_scale(group: HFGroup, mask: torch.Tensor) -> torch.Tensor:
    """The scale of each input column of the group's consumer: unit ``u``'s columns get ``mask[u]``."""
    cols = group.consumer_member.units
    index = torch.empty(sum(len(c) for c in cols), dtype=torch.long)
    for u, c in enumerate(cols):
        index[torch.as_tensor(c)] = u
    return mask[index]


@contextmanager
def unit_masks_hf(model: nn.Module, groups: Sequence[HFGroup],
                  masks: Mapping[str, torch.Tensor]) -> Iterator[nn.Module]:
    """Run ``model`` with the units of ``groups`` scaled by ``masks[group.name]`` (one value per unit).

    The mask multiplies the unit's columns at the consumer's input (a forward pre-hook), which for a
    0/1 mask is exactly the model with those units removed (:func:`cut_model`); masks may carry
    gradients (Compresso's gates); ``masks[name]`` is read at every pass, so it may be replaced or changed
    in place between passes. No copy is made.
    """
    handles = []
    try:
        for g in groups:
            if g.name not in masks:
                continue
            module = model.get_submodule(g.consumer)

            def hook(module: nn.Module, args: tuple, g: HFGroup = g) -> tuple:
                return (args[0] * column_scale(g, masks[g.name]).to(args[0]), *args[1:])  # read at every pass

            handles.append(module.register_forward_pre_hook(hook))
        yield model
    finally:
        for h in handles:
            h.remove()


def _index(module: nn.Module, axis_out: bool, idx: torch.Tensor) -> None:
    """Keep output (``axis_out``) or input channels ``idx`` of a Linear/Conv1D, in place."""
    w = module.weight.detach()
    linear = isinstance(module, nn.Linear)
    if axis_out:
        w = w.index_select(0 if linear else 1, idx)
        if module.bias is not None:
            module.bias = nn.Parameter(module.bias.detach().index_select(0, idx).clone())
    else:
        w = w.index_select(1 if linear else 0, idx)
    module.weight = nn.Parameter(w.clone())
    if linear:
        module.in_features, module.out_features = int(module.weight.shape[1]), int(module.weight.shape[0])
    else:
        module.nx, module.nf = int(module.weight.shape[0]), int(module.weight.shape[1])


def cut_model(model: nn.Module, groups: Sequence[HFGroup], kept: Mapping[str, Sequence[int]],
              bias: Mapping[str, torch.Tensor] | None = None) -> nn.Module:
    """A pruned copy of ``model`` (an instance of the family's ``Pruned*`` class) keeping ``kept[group]`` units.

    Groups not in ``kept`` keep every unit; every group keeps at least one. ``bias[consumer path]`` is
    added to that consumer's bias (created when it has none): FLAP's compensation for removed units.
    The result's logits equal the model's under :func:`unit_masks_hf` with the same 0/1 masks.
    """
    fam = family(model)
    cfg_cls, model_cls = PRUNED[fam]
    work = copy.deepcopy(model)
    shapes: dict = dict(getattr(model.config, "optprune_shapes", None) or {})
    attrs: dict = {k: dict(v) for k, v in (getattr(model.config, "optprune_attrs", None) or {}).items()}
    for g in groups:
        if g.name not in kept:
            continue
        units = sorted({int(u) for u in kept[g.name]})
        if not units or units[0] < 0 or units[-1] >= g.width:
            raise InvalidParameterError(f"cut_model: group {g.name!r} must keep a non-empty subset of "
                                        f"0..{g.width - 1}; got {list(kept[g.name])!r}")
        for m in g.members:
            idx = torch.as_tensor(sorted(c for u in units for c in m.units[u]), dtype=torch.long)
            _index(work.get_submodule(m.module), m.role == "out", idx)
        if g.kind == "heads" and g.attention is not None:
            attn = work.get_submodule(g.attention)
            q_heads = len(units) * int(g.query_heads_per_unit or 1)
            values = {"query_heads": q_heads, "kv_heads": len(units), "query_width": q_heads * int(g.head_dim or 1)}
            for name, what in HEAD_ATTRIBUTES.items():
                if isinstance(getattr(attn, name, None), int):
                    setattr(attn, name, values[what])
                    attrs.setdefault(g.attention, {})[name] = values[what]
    for path, b in (bias or {}).items():
        module = work.get_submodule(path)
        out = module.weight.shape[0] if isinstance(module, nn.Linear) else module.weight.shape[1]
        old = module.bias.detach() if module.bias is not None else torch.zeros(out, dtype=module.weight.dtype)
        module.bias = nn.Parameter(old + b.detach().to(old))
    for name, module in work.named_modules():
        if isinstance(module, (nn.Linear, Conv1D)) and name != "lm_head":
            ref = model.get_submodule(name)
            n_in, n_out = (module.weight.shape[1], module.weight.shape[0]) if isinstance(module, nn.Linear) \
                else (module.weight.shape[0], module.weight.shape[1])
            has_bias = module.bias is not None
            if name in shapes or tuple(ref.weight.shape) != tuple(module.weight.shape) or \
                    has_bias != (ref.bias is not None):
                shapes[name] = [int(n_in), int(n_out), bool(has_bias)]
    d = model.config.to_dict()
    d.pop("model_type", None)
    d.pop("architectures", None)
    d.update(optprune_shapes=shapes, optprune_attrs=attrs, optprune_base_model_type=fam)
    new_cfg = cfg_cls(**d)
    new_cfg._attn_implementation = model.config._attn_implementation
    widths = layer_widths_hf(work, groups)
    new_cfg.optprune_layer_heads = widths["heads"]
    new_cfg.optprune_layer_kv_heads = widths["kv_heads"]
    new_cfg.optprune_layer_mlp = widths["neurons"]
    pruned = model_cls(new_cfg)
    pruned.load_state_dict(work.state_dict(), strict=True)
    return pruned.eval()


def layer_widths_hf(model: nn.Module, groups: Sequence[HFGroup]) -> dict[str, list[int]]:
    """Query heads, KV heads and MLP neurons per layer of ``model`` (dense or cut), from the consumers' inputs.

    ``groups`` are the dense model's (they give ``head_dim`` and query heads per KV head).
    """
    heads: list[int] = []
    kv: list[int] = []
    neurons: list[int] = []
    for g in groups:
        m = model.get_submodule(g.consumer)
        n_in = m.weight.shape[1] if isinstance(m, nn.Linear) else m.weight.shape[0]
        if g.kind == "heads":
            hd = int(g.head_dim or 1)
            heads.append(int(n_in) // hd)
            kv.append(int(n_in) // (hd * int(g.query_heads_per_unit or 1)))
        else:
            neurons.append(int(n_in))
    return {"heads": heads, "kv_heads": kv, "neurons": neurons}


class _LogitsOnly(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # an explicit all-ones mask: without one transformers looks for packed sequences (aten::diff, no ONNX op)
        return self.model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits


def export_onnx_hf(model: nn.Module, path: str | Path, seq_len: int = 8) -> Path:
    """Write ``ids (batch, tokens) -> logits (batch, tokens, vocab)`` as ONNX (opset 17, dynamic batch and length).

    Exported with eager attention (the sdpa path's mask helpers do not trace) on a copy; the
    model itself is unchanged. Checked against onnxruntime in the tests.
    """
    import warnings

    from optprune._files import atomic_file

    check_supported(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    work = copy.deepcopy(model).eval()
    work.config._attn_implementation = "eager"
    for m in work.modules():
        if hasattr(m, "config") and hasattr(m.config, "_attn_implementation"):
            m.config._attn_implementation = "eager"
    ids = torch.zeros(2, seq_len, dtype=torch.long)
    with warnings.catch_warnings(), atomic_file(path) as tmp:
        warnings.simplefilter("ignore")
        torch.onnx.export(_LogitsOnly(work), (ids,), str(tmp), input_names=["ids"], output_names=["logits"],
                          dynamic_axes={"ids": {0: "batch", 1: "tokens"}, "logits": {0: "batch", 1: "tokens"}},
                          opset_version=17, dynamo=False)
    return path


assert set(PRUNED) == set(ARCHS)
