"""Training loops: the reference model from scratch, and fine-tuning of chosen parameters (LoRA or all)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.lm._data import ArithTask, lm_batch
from optprune.lm._eval import task_loss
from optprune.lm._model import LMConfig, TinyLM
from optprune.training import fit_epochs

__all__ = ["fit_lm", "train_reference"]


def fit_lm(
    model: nn.Module,
    task: ArithTask,
    steps: int,
    params: Iterable[nn.Parameter] | None = None,
    lr: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    prefix: str = "random",
    weight_decay: float = 0.0,
    warmup: int = 0,
    extra_loss: Callable[[int], torch.Tensor] | None = None,
    before_step: Callable[[int], None] | None = None,
    after_step: Callable[[int], None] | None = None,
    param_lrs: dict[int, float] | None = None,
    log_every: int = 0,
) -> list[float]:
    """``steps`` AdamW steps on fresh training problems (cosine learning rate after ``warmup``).

    ``params`` are the trained parameters (default: all that require gradients),
    ``param_lrs`` maps ``id(parameter)`` to its own learning rate;
    ``before_step(step)`` runs before the forward pass (Compresso samples its
    gates there), ``extra_loss(step)`` is added to the task loss (Compresso's
    Lagrangian), ``after_step(step)`` runs after each update. Returns the task
    loss per step.

    The loop is :func:`optprune.training.fit_epochs` with one fresh batch per
    epoch (so its epochs are these steps): AdamW over the parameter groups,
    the schedule as ``lr_lambda``, gradient norm clipped to 1, ``extra_loss`` as
    its loss hook and ``after_step`` as its per-epoch callback; torch's global
    generator and thread count are left alone (the batches come from a numpy
    generator seeded with ``(seed, 7)``).
    """
    if steps < 0 or batch_size < 1 or not lr > 0:
        raise InvalidParameterError(
            f"fit_lm: steps >= 0, batch_size >= 1 and lr > 0 required; got {steps}, {batch_size}, {lr}"
        )
    params = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if steps == 0:
        return []
    if not params:
        raise InvalidParameterError("fit_lm: no trainable parameter (all have requires_grad=False)")
    lrs = param_lrs or {}
    plain = [p for p in params if id(p) not in lrs]
    groups: list[dict[str, Any]] = [{"params": plain, "lr": lr}] if plain else []
    groups += [{"params": [p], "lr": lrs[id(p)], "weight_decay": 0.0} for p in params if id(p) in lrs]
    rng = np.random.default_rng([seed, 7])
    block = model.config.block_size
    losses: list[float] = []
    t0 = time.time()

    def one_batch(step: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if before_step is not None:
            before_step(step)
        problems = task.train_problems(batch_size, rng)
        yield lm_batch(problems, block, prefix, rng)

    def schedule(step: int) -> float:
        frac = (step + 1) / warmup if step < warmup else 0.5 * (
            1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))
        )
        return max(frac, 0.02)

    def plus_extra(loss: torch.Tensor, step: int) -> torch.Tensor:
        losses.append(float(loss.detach()))
        return loss if extra_loss is None else loss + extra_loss(step)

    def end_of_step(step: int, logs: dict) -> None:
        if after_step is not None:
            after_step(step)
        if log_every and (step + 1) % log_every == 0:
            print(f"step {step + 1}/{steps} loss {np.mean(losses[-log_every:]):.4f} ({time.time() - t0:.0f} s)",
                  flush=True)

    fit_epochs(model, None, None, task_loss, epochs=int(steps), lr=lr, weight_decay=weight_decay,
               batch_size=int(batch_size), seed=None, progress=False, num_threads=None, param_groups=groups,
               optimizer="adamw", lr_lambda=schedule, clip_grad_norm=1.0, loss_hook=plus_extra,
               on_epoch_end=end_of_step, batches=one_batch)
    return losses


def train_reference(
    config: LMConfig | None = None, steps: int = 3000, seed: int = 0, lr: float = 3e-3, batch_size: int = 64,
    log_every: int = 0,
) -> tuple[TinyLM, list[float]]:
    """The reference model: ``TinyLM(config)`` trained from seed ``seed`` on the ``arith`` task of seed 0."""
    from optprune.lm._data import VOCAB

    torch.manual_seed(seed)
    config = config or LMConfig(vocab_size=len(VOCAB))
    model = TinyLM(config)
    task = ArithTask(seed=0)
    losses = fit_lm(model, task, steps, lr=lr, batch_size=batch_size, seed=seed, warmup=min(200, steps // 10),
                    weight_decay=0.01, log_every=log_every)
    return model, losses
