"""A small language model of the project's own, and structured pruning of it with LoRA.

:mod:`optprune.lm` holds a character-level decoder-only transformer
(:class:`TinyLM`) trained on a synthetic addition task written with its carry
steps (:class:`ArithTask`), generation and exact-match evaluation, LoRA
adapters, and two pruners that train only adapters: :class:`Compresso`
(hard-concrete L0 gates with a Lagrangian size constraint) and
:class:`LoRAShear` (progressive pruning with knowledge recovery).

The pruning methods are chosen by name from :data:`LM_METHODS` (importable
without torch); every other name loads its module (and torch) when first asked for.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from optprune.lm._registry import LM_METHODS

if TYPE_CHECKING:
    from optprune.lm._data import DATASETS, SPLITS, VOCAB, ArithTask, Problem, decode, encode, get_task, lm_batch
    from optprune.lm._eval import answer_of, exact_match, generate, perplexity, task_loss
    from optprune.lm._lora import LoRALinear, add_lora, merge_lora, prune_lora
    from optprune.lm._model import (
        CausalSelfAttention,
        LMConfig,
        TinyLM,
        export_onnx,
        layer_widths,
        lm_groups,
        load_lm,
        prune_hidden,
        prune_lm,
        save_lm,
        unit_masks,
    )
    from optprune.lm._prune import COMPRESSO_PROMPT, Compresso, LoRAShear, OneShot, lm_parameters, pruning_report
    from optprune.lm._sprint import HeadSelector, Sprint, best_of_n, load_selector
    from optprune.lm._train import fit_lm, train_reference

#: module -> the names it defines (loaded on first access, with torch)
_MODULES = {
    "optprune.lm._data": (
        "DATASETS", "SPLITS", "VOCAB", "ArithTask", "Problem", "decode", "encode", "get_task", "lm_batch",
    ),
    "optprune.lm._eval": ("answer_of", "exact_match", "generate", "perplexity", "task_loss"),
    "optprune.lm._lora": ("LoRALinear", "add_lora", "merge_lora", "prune_lora"),
    "optprune.lm._model": (
        "CausalSelfAttention", "LMConfig", "TinyLM", "export_onnx", "layer_widths", "lm_groups", "load_lm",
        "prune_hidden", "prune_lm", "save_lm", "unit_masks",
    ),
    "optprune.lm._prune": ("COMPRESSO_PROMPT", "Compresso", "LoRAShear", "OneShot", "lm_parameters", "pruning_report"),
    "optprune.lm._sprint": ("HeadSelector", "Sprint", "best_of_n", "load_selector"),
    "optprune.lm._train": ("fit_lm", "train_reference"),
}
_LAZY = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Torch-side names load their module (and torch) only when asked for."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'optprune.lm' has no attribute {name!r}")


__all__ = [
    "COMPRESSO_PROMPT",
    "LM_METHODS",
    "DATASETS",
    "SPLITS",
    "VOCAB",
    "ArithTask",
    "CausalSelfAttention",
    "Compresso",
    "HeadSelector",
    "LMConfig",
    "LoRALinear",
    "LoRAShear",
    "OneShot",
    "Problem",
    "Sprint",
    "TinyLM",
    "add_lora",
    "answer_of",
    "best_of_n",
    "decode",
    "encode",
    "exact_match",
    "export_onnx",
    "fit_lm",
    "generate",
    "get_task",
    "layer_widths",
    "lm_batch",
    "lm_groups",
    "lm_parameters",
    "load_lm",
    "load_selector",
    "merge_lora",
    "perplexity",
    "prune_hidden",
    "prune_lm",
    "prune_lora",
    "pruning_report",
    "save_lm",
    "task_loss",
    "train_reference",
    "unit_masks",
]
