"""Generation (greedy, temperature, top-k), exact-match accuracy and perplexity on the arithmetic task."""

from __future__ import annotations

import numbers
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.lm._data import EOS, Problem, decode, encode, lm_batch

__all__ = ["answer_of", "exact_match", "generate", "perplexity", "task_loss"]


def _check_sampling(temperature: float, top_k: int | None) -> None:
    if not temperature >= 0:
        raise InvalidParameterError(f"generate: temperature must be >= 0 (0 = greedy); got {temperature}")
    if top_k is not None and top_k < 1:
        raise InvalidParameterError(f"generate: top_k must be >= 1 or None; got {top_k}")


@torch.no_grad()
def generate(
    model: nn.Module,
    prompts: Sequence[str],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> list[str]:
    """Continuations of ``prompts`` up to and including the end-of-line token (or ``max_new_tokens``).

    ``temperature == 0`` is greedy decoding; otherwise tokens are sampled from
    ``softmax(logits / temperature)`` restricted to the ``top_k`` most likely
    (all when ``None``), with a generator seeded by ``seed``. Prompts of equal
    length are decoded together with a key/value cache (one forward pass per new token).
    """
    _check_sampling(temperature, top_k)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidParameterError(f"generate: seed must be an integer >= 0; got {seed!r}")
    empty = [i for i, p in enumerate(prompts) if not p]
    if empty:
        raise InvalidParameterError(f"generate: every prompt needs at least one character (such as 047+285=); "
                                    f"prompt {empty[0]} is empty")
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(int(seed))
    out: list[str] = [""] * len(prompts)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    block = model.config.block_size
    try:
        for length, idx in sorted(by_len.items()):
            steps = min(max_new_tokens, block - length)
            for s in range(0, len(idx), batch_size):
                chunk = idx[s : s + batch_size]
                ids = torch.tensor([encode(prompts[i]) for i in chunk], dtype=torch.long)
                caches: list[dict] = [{} for _ in model.blocks]
                logits = model(ids, caches)[:, -1]
                new = torch.zeros(len(chunk), 0, dtype=torch.long)
                done = torch.zeros(len(chunk), dtype=torch.bool)
                for step in range(steps):
                    if temperature == 0:
                        tok = logits.argmax(dim=-1)
                    else:
                        z = logits / temperature
                        if top_k is not None and top_k < z.shape[-1]:
                            kth = torch.topk(z, top_k, dim=-1).values[:, -1:]
                            z = z.masked_fill(z < kth, float("-inf"))
                        tok = torch.multinomial(F.softmax(z, dim=-1), 1, generator=gen).reshape(-1)
                    new = torch.cat([new, tok[:, None]], dim=1)
                    done |= tok == EOS
                    if bool(done.all()) or step == steps - 1:
                        break
                    logits = model(tok[:, None], caches)[:, -1]
                for row, i in enumerate(chunk):
                    seq = new[row].tolist()
                    if EOS in seq:
                        seq = seq[: seq.index(EOS) + 1]
                    out[i] = decode(seq)
    finally:
        model.train(was_training)
    return out


def answer_of(completion: str) -> str:
    """The answer written after the last ``|`` (up to the end of line); empty when there is none."""
    if "|" not in completion:
        return ""
    return completion.rsplit("|", 1)[1].split("\n", 1)[0]


def exact_match(
    model: nn.Module,
    problems: Sequence[Problem],
    prefix: str = "",
    temperature: float = 0.0,
    top_k: int | None = None,
    seed: int = 0,
    return_correct: bool = False,
) -> float | tuple[float, np.ndarray]:
    """Fraction of problems whose generated answer equals ``a + b`` exactly (greedy by default)."""
    if not problems:
        raise InvalidParameterError("exact_match: no problems given")
    outs = generate(model, [prefix + p.prompt for p in problems], temperature=temperature, top_k=top_k, seed=seed)
    correct = np.array([answer_of(o) == p.answer for o, p in zip(outs, problems)])
    acc = float(correct.mean())
    return (acc, correct) if return_correct else acc


def task_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over target tokens (``-100`` ignored)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


@torch.no_grad()
def perplexity(model: nn.Module, problems: Sequence[Problem], prefix: str = "", batch_size: int = 256) -> float:
    """``exp`` of the mean cross-entropy per completion token (steps, answer and end of line) given the prompt."""
    if not problems:
        raise InvalidParameterError("perplexity: no problems given")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for s in range(0, len(problems), batch_size):
            ids, tgt = lm_batch(list(problems[s : s + batch_size]), model.config.block_size, prefix)
            logits = model(ids)
            n = int((tgt != -100).sum())
            total += float(task_loss(logits, tgt)) * n
            count += n
    finally:
        model.train(was_training)
    return float(np.exp(total / count))
