"""Small ``transformers`` causal LMs built from configs, and an adapter to the project's LM loops.

:func:`tiny_config` makes a LLaMA-, GPT-2- or OPT-shaped config over the arithmetic task's character
vocabulary (:data:`optprune.lm.VOCAB`, padding 0, end of line as EOS); nothing is downloaded
(``from_pretrained`` is always called with ``local_files_only=True``). :class:`CausalLMAdapter` gives a
``transformers`` model the interface :func:`optprune.lm.generate`, :func:`~optprune.lm.exact_match`,
:func:`~optprune.lm.perplexity` and :func:`~optprune.lm.fit_lm` use for :class:`optprune.lm.TinyLM`:
``forward(ids) -> logits``, ``forward(ids, caches)`` with a key/value cache kept in ``caches[0]``,
``config.block_size`` and ``blocks`` (one entry: the cache list has one dict).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from optprune.errors import FileFormatError, InvalidParameterError
from optprune.hf._archs import ARCHS, check_supported
from optprune.lm._data import EOS, PAD, VOCAB

__all__ = [
    "ARCHS", "CausalLMAdapter", "adapt", "build_model", "check_supported", "is_hf_folder", "load_hf", "tiny_config",
]


def tiny_config(
    arch: str, d_model: int = 64, n_layers: int = 4, n_heads: int = 4, n_kv_heads: int | None = None,
    d_ff: int | None = None, block_size: int = 80,
) -> Any:
    """A ``transformers`` config of ``arch`` (``llama``, ``gpt2``, ``opt``) over the task vocabulary.

    ``n_kv_heads`` (LLaMA only) < ``n_heads`` gives grouped-query attention; ``d_ff`` defaults to
    ``2 d_model`` for LLaMA's SwiGLU (three matrices) and ``4 d_model`` otherwise. Embeddings are tied
    to the output head, dropout is off, attention is torch's ``sdpa``.
    """
    import transformers

    if arch not in ARCHS:
        raise InvalidParameterError(f"unknown architecture {arch!r}; allowed: {sorted(ARCHS)}")
    if d_model % n_heads:
        raise InvalidParameterError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
    if n_kv_heads is not None and (arch != "llama" or n_heads % n_kv_heads):
        raise InvalidParameterError(
            f"n_kv_heads ({n_kv_heads}) is for llama only and must divide n_heads ({n_heads}); got arch {arch!r}")
    common = dict(vocab_size=len(VOCAB), pad_token_id=PAD, eos_token_id=EOS, bos_token_id=EOS,
                  tie_word_embeddings=True)
    if arch == "llama":
        cfg = transformers.LlamaConfig(
            hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads or n_heads, intermediate_size=d_ff or 2 * d_model,
            max_position_embeddings=block_size, rms_norm_eps=1e-6, **common)
    elif arch == "gpt2":
        cfg = transformers.GPT2Config(
            n_embd=d_model, n_layer=n_layers, n_head=n_heads, n_inner=d_ff or 4 * d_model, n_positions=block_size,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **common)
    else:
        cfg = transformers.OPTConfig(
            hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=n_heads, ffn_dim=d_ff or 4 * d_model,
            max_position_embeddings=block_size, word_embed_proj_dim=d_model, dropout=0.0, attention_dropout=0.0,
            enable_bias=True, do_layer_norm_before=True, **common)
    cfg._attn_implementation = "sdpa"
    return cfg


def build_model(arch: str, seed: int = 0, **sizes: Any) -> nn.Module:
    """A freshly initialised causal LM of ``arch`` (:func:`tiny_config` sizes), weights from ``seed``."""
    import transformers

    cfg = tiny_config(arch, **sizes)
    torch.manual_seed(seed)
    model = getattr(transformers, ARCHS[arch][1])(cfg)
    return model.eval()


def block_size_of(model: nn.Module) -> int:
    """Longest sequence the model takes: ``max_position_embeddings`` (``n_positions`` for GPT-2)."""
    cfg = model.config
    return int(getattr(cfg, "max_position_embeddings", None) or cfg.n_positions)


class CausalLMAdapter(nn.Module):
    """A ``transformers`` causal LM seen as the project's LM: ``forward(ids[, caches]) -> logits`` (module doc).

    The wrapped model is ``hf`` (same parameters, no copy); ``config.block_size`` is its maximum length.
    """

    def __init__(self, hf: nn.Module) -> None:
        super().__init__()
        self.hf = hf
        self.config = SimpleNamespace(block_size=block_size_of(hf))
        self.blocks = [None]  # one cache entry for the whole model

    def forward(self, ids: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        if caches is None:
            return self.hf(input_ids=ids, use_cache=False).logits
        cache = caches[0]
        out = self.hf(input_ids=ids, cache=cache.get("cache"), use_cache=True)
        cache["cache"] = out.cache
        return out.logits


def adapt(model: nn.Module) -> CausalLMAdapter:
    """``model`` itself when it is an adapter, else :class:`CausalLMAdapter` around it (a supported class)."""
    if isinstance(model, CausalLMAdapter):
        return model
    check_supported(model)
    return CausalLMAdapter(model)


def is_hf_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``save_pretrained`` (a ``config.json`` with a ``model_type``)."""
    import json

    p = Path(path)
    if not (p.is_dir() and (p / "config.json").is_file()):
        return False
    try:
        return "model_type" in json.loads((p / "config.json").read_text())
    except (OSError, ValueError):
        return False


def load_hf(path: str | Path) -> nn.Module:
    """A causal LM from a ``save_pretrained`` folder (dense or pruned), read locally only, in eval mode."""
    import transformers

    import optprune.hf._pruned  # noqa: F401  (registers the pruned classes with the Auto classes)

    transformers.utils.logging.disable_progress_bar()

    p = Path(path)
    if not is_hf_folder(p):
        raise FileFormatError(f"{p}: not a transformers model folder (expected config.json with a model_type, "
                              "as written by save_pretrained)")
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(str(p), local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise FileFormatError(f"{p}: transformers could not load the model: {exc}") from None
    check_supported(model)
    return model.eval()
