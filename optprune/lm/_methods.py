"""The LM pruning methods of :data:`optprune.lm.LM_METHODS`: factories of unfitted pruners from common settings.

Every factory takes ``(ratio, *, steps, lora_rank, seed, recovery)``:
Compresso spends ``steps - steps // 5`` steps on its gates and ``steps // 5`` on
LoRA recovery after the cut (``compresso-prompt``: with
:data:`~optprune.lm.COMPRESSO_PROMPT` in training and evaluation;
``compresso-hidden``: without hidden-dimension gates); LoRAShear prunes in 4
stages with LoRA recovery; the one-shot methods score with an engine scorer
and then recover (``recovery``: ``none``, ``lora`` or ``full`` fine-tuning,
``steps`` steps). Compresso and LoRAShear always recover with LoRA.
``reconstruct`` prunes by reconstruction with re-fit of ``out_proj``/``fc2``
(:class:`optprune.lm._reconstruct.Reconstruct`), widths from the exact width
search on the groups' error curves; ``reconstruct-uniform`` at the one-shot
heuristics' uniform widths; the same recoveries as the one-shot methods.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from optprune.lm._prune import COMPRESSO_PROMPT, Compresso, LoRAShear, OneShot
from optprune.lm._reconstruct import Reconstruct

__all__ = ["bonsai", "compresso", "compresso_hidden", "compresso_prompt", "flap", "lorashear", "magnitude",
           "reconstruct", "reconstruct_uniform", "wanda_sp"]


def compresso(ratio: float, *, steps: int = 300, lora_rank: int = 8, seed: int = 0, recovery: str = "lora",
              prompt: str | None = None, prune_hidden: bool = True) -> Any:
    return Compresso(ratio=ratio, steps=steps, recovery_steps=steps // 5, lora_rank=lora_rank, prompt=prompt,
                     prune_hidden=prune_hidden, seed=seed)


compresso_prompt = partial(compresso, prompt=COMPRESSO_PROMPT)
compresso_hidden = partial(compresso, prune_hidden=False)


def lorashear(ratio: float, *, steps: int = 300, lora_rank: int = 8, seed: int = 0, recovery: str = "lora") -> Any:
    return LoRAShear(ratio=ratio, steps=steps, stages=4, lora_rank=lora_rank, seed=seed)


def _one_shot(scorer: str, ratio: float, *, steps: int = 300, lora_rank: int = 8, seed: int = 0,
              recovery: str = "lora") -> Any:
    return OneShot(scorer, ratio=ratio, recovery=recovery, steps=steps, lora_rank=lora_rank, seed=seed)


magnitude = partial(_one_shot, "magnitude")
wanda_sp = partial(_one_shot, "wanda_sp")
flap = partial(_one_shot, "flap")
bonsai = partial(_one_shot, "bonsai")


def reconstruct(ratio: float, *, steps: int = 300, lora_rank: int = 8, seed: int = 0, recovery: str = "lora",
                allocation: str = "search") -> Any:
    return Reconstruct(ratio=ratio, allocation=allocation, recovery=recovery, steps=steps, lora_rank=lora_rank,
                       seed=seed)


reconstruct_uniform = partial(reconstruct, allocation="uniform")
