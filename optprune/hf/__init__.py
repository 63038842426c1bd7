"""Hugging Face ``transformers`` models as first-class inputs and outputs of the pruning suite (issue 26).

Causal language models (LlamaForCausalLM, GPT2LMHeadModel, OPTForCausalLM) are trained here on the
project's arithmetic task, analysed for their structural dependency groups, pruned by every LM method
and saved again so that ``from_pretrained`` reads the pruned, heterogeneous model back. The vision side
(ViT/DeiT) lives in ``optprune.hf.vit*``; SPRINT on a larger LLaMA in ``optprune.hf.sprint*``.

``transformers`` is imported lazily by the submodules, so importing this package is cheap.
"""

from __future__ import annotations

__all__: list[str] = []
