"""Hugging Face ``transformers`` models as first-class inputs and outputs of the pruning suite (issue 26).

Causal language models (LlamaForCausalLM, GPT2LMHeadModel, OPTForCausalLM) are built from configs
(:func:`tiny_config`, nothing downloaded), trained here on the project's arithmetic task
(:func:`train_hf`), analysed for their structural dependency groups (:func:`hf_groups`), pruned by every
LM method and saved again so that ``from_pretrained`` reads the pruned, heterogeneous model back
(:mod:`optprune.hf._pruned`). The vision side (ViT/DeiT) lives in ``optprune.hf.vit*``; SPRINT on a
larger LLaMA in ``optprune.hf.sprint*``.

``transformers`` and torch are imported lazily: names load their module when first asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

#: module -> the names it defines (loaded on first access)
_MODULES = {
    "optprune.hf._models": ("ARCHS", "CausalLMAdapter", "adapt", "build_model", "is_hf_folder", "load_hf",
                            "tiny_config"),
    "optprune.hf._train": ("save_hf", "train_hf"),
    "optprune.hf._structure": ("HFGroup", "Member", "UnsupportedArchitectureError", "hf_groups"),
    "optprune.hf._pruned": ("PrunedGPT2LMHeadModel", "PrunedLlamaForCausalLM", "PrunedOPTForCausalLM", "cut_model",
                            "export_onnx_hf", "layer_widths_hf", "unit_masks_hf"),
    "optprune.hf._methods": ("HFCompresso", "HFLoRAShear", "HFOneShot", "hf_method", "merge_peft", "n_params",
                             "with_peft"),
    "optprune.hf.sprint": ("SPRINT_LLAMA", "collect_head_outcomes_hf", "head_mask", "phenomenon",
                           "sample_answers_hf", "train_sprint_llama"),
    "optprune.hf.vit": ("PrunedDeiTForImageClassification", "PrunedViTForImageClassification", "analyse_hf_vit",
                        "export_hf_vit_onnx", "from_optprune_vit", "gohsp_hf_vit", "mask_hf_vit", "prune_hf_vit",
                        "to_optprune_vit", "train_hf_vit"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Names load their module (and torch, transformers) only when asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optprune.hf' has no attribute {name!r}")


__all__ = sorted(_LAZY)
