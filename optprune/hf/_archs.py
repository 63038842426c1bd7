"""The causal-LM families optprune.hf supports, and the check that a model is one of them.

Its own module so that the structure analysis and the pruned classes can check a model without importing
:mod:`optprune.hf._models` (whose loader imports the pruned classes to register them).
"""

from __future__ import annotations

from torch import nn

from optprune.errors import UnsupportedLayerError

__all__ = ["ARCHS", "check_supported"]

#: architecture name -> transformers (config class, causal-LM class) names
ARCHS = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "gpt2": ("GPT2Config", "GPT2LMHeadModel"),
    "opt": ("OPTConfig", "OPTForCausalLM"),
}


def check_supported(model: nn.Module) -> None:
    """A named error unless ``model`` is a ``transformers`` causal LM of a supported family."""
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    family = getattr(cfg, "optprune_base_model_type", kind)
    if family not in ARCHS:
        raise UnsupportedLayerError(
            type(model).__name__, f"{type(model).__name__} (model_type {kind!r})",
            [ARCHS[a][1] for a in ARCHS] + ["their pruned forms (optprune.hf.Pruned*)"])
