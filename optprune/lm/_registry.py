"""The registry of LM pruning methods (``optprune lm prune --method``, ``benchmarks/lm_pruning.py``).

Torch-free: built-ins are registered lazily (``"module:attribute"``). An entry is
a factory ``make(ratio, *, steps=300, lora_rank=8, seed=0, recovery="lora")``
returning an unfitted LM pruner (:mod:`optprune.lm._methods`); its ``prompt``
attribute, when set, is the prefix the pruned model is evaluated with.
Adding a method is one factory plus one line here.
"""

from __future__ import annotations

from typing import Any

from optprune.registry import Registry

__all__ = ["LM_METHODS"]

#: LM pruning methods: name -> factory of an unfitted pruner
LM_METHODS: Registry[Any] = Registry("LM pruning method")

_M = "optprune.lm._methods:"
LM_METHODS.register("compresso", _M + "compresso", "L0 gates on heads, neurons, hidden dims + LoRA")
LM_METHODS.register("compresso-prompt", _M + "compresso_prompt", "compresso with the collaborative prompt")
LM_METHODS.register("compresso-hidden", _M + "compresso_hidden", "compresso without hidden-dimension gates")
LM_METHODS.register("lorashear", _M + "lorashear", "progressive pruning with LoRA knowledge recovery")
LM_METHODS.register("magnitude", _M + "magnitude", "one shot, group magnitude; then the recovery")
LM_METHODS.register("wanda_sp", _M + "wanda_sp", "one shot, structured Wanda; then the recovery")
LM_METHODS.register("flap", _M + "flap", "one shot, FLAP fluctuation; then the recovery")
LM_METHODS.register("bonsai", _M + "bonsai", "one shot, Bonsai; then the recovery")
LM_METHODS.register("reconstruct", _M + "reconstruct",
                    "one shot, reconstruction with re-fit (OSSCAR), widths searched on error curves; then the recovery")
LM_METHODS.register("reconstruct-uniform", _M + "reconstruct_uniform",
                    "one shot, reconstruction with re-fit at uniform widths; then the recovery")
