"""SPRINT on a transformers LLaMA with many heads: does masking one attention head help some questions?

The project's SPRINT (:mod:`optprune.lm._sprint`, after Nguyen et al., "SPRINT") was measured on a
4-layer, 4-head TinyLM where masking a head helps on 2.1% of question-head pairs and hurts on 72.9%:
no redundancy. Here the same method runs on a ``LlamaForCausalLM`` of 8 layers x 8 heads (64 heads,
head dim 6, hidden 48, SwiGLU 96, RMSNorm, RoPE; :func:`optprune.hf.build_model`) trained on the
same arithmetic task, stopped where the hard split still leaves room.

* :func:`train_sprint_llama`: :func:`optprune.lm.fit_lm` (the project's LM loop, as
  :func:`optprune.hf.train_hf`), the held-out validation problems of the most digits scored
  greedily every ``eval_every`` steps; training stops once that accuracy exceeds ``high`` and the
  checkpoint kept is the last one inside ``[low, high]`` (selected on validation, never on test).
* :func:`head_mask`: one query head masked by a forward pre-hook on ``o_proj`` zeroing its ``head_dim``
  input columns (the head's context vector never reaches the residual stream); no copy of the model.
* :func:`collect_head_outcomes_hf`, :func:`question_features_hf`, :func:`sample_answers_hf`: the
  transformers twins of the TinyLM functions of :mod:`optprune.lm._sprint`; the selector
  (:class:`~optprune.lm.HeadSelector`, InfoNCE) and the majority vote are shared.
* :func:`phenomenon`: the fractions of (question, head) pairs where masking helps / hurts.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError
from optprune.hf._models import CausalLMAdapter, build_model
from optprune.lm._data import ArithTask, Problem, encode
from optprune.lm._eval import answer_of, generate
from optprune.lm._sprint import HeadSelector, answers_by_head, choose_heads, majority_vote
from optprune.lm._train import fit_lm

__all__ = [
    "SPRINT_LLAMA",
    "accuracy_at",
    "collect_head_outcomes_hf",
    "head_list_hf",
    "head_mask",
    "phenomenon",
    "question_features_hf",
    "sample_answers_hf",
    "train_sprint_llama",
]

#: the model of the SPRINT benchmark: 8 layers x 8 heads (head dim 6), no grouped-query attention; sized so that
#: training fits a 2-core machine shared by many jobs
SPRINT_LLAMA: dict[str, int] = {"d_model": 48, "n_layers": 8, "n_heads": 8, "n_kv_heads": 8, "d_ff": 96}


class _Stop(Exception):
    """Raised from the step callback to end training early (accuracy past the window)."""


def _greedy_accuracy(model: nn.Module, problems: Sequence[Problem]) -> float:
    outs = generate(CausalLMAdapter(model), [p.prompt for p in problems], temperature=0.0)
    return float(np.mean([answer_of(o) == p.answer for o, p in zip(outs, problems)]))


def train_sprint_llama(
    steps: int = 3000, seed: int = 0, lr: float = 3e-3, batch_size: int = 32, eval_every: int = 100,
    low: float = 0.4, high: float = 0.7, progress: bool = False, **sizes: int,
) -> tuple[nn.Module, dict[str, Any]]:
    """A LlamaForCausalLM (:data:`SPRINT_LLAMA`, or ``sizes``) trained until validation-hard accuracy passes ``high``.

    Schedule as :func:`optprune.hf.train_hf` (``steps`` sets the cosine horizon). Every ``eval_every`` steps
    the greedy exact match on the validation problems with the most digits is measured; the model
    returned is the last checkpoint with accuracy in ``[low, high]`` (training stops at the first
    evaluation above ``high``). Raises :class:`InvalidParameterError` when no checkpoint fell in the window.
    Returns the model (eval mode) and a log (``evaluations``: step, accuracy, seconds; ``chosen_step``).
    """
    if not 0 <= low < high <= 1:
        raise InvalidParameterError(f"train_sprint_llama: need 0 <= low < high <= 1; got {low}, {high}")
    task = ArithTask(seed=0)
    val_hard = [p for p in task.problems("val") if p.digits == task.max_digits]
    model = build_model("llama", seed=seed, **{**SPRINT_LLAMA, **sizes})
    model.train()
    evaluations: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    t0 = time.time()

    def after(step: int) -> None:
        if (step + 1) % eval_every:
            return
        acc = _greedy_accuracy(model, val_hard)
        model.train()
        evaluations.append({"step": step + 1, "val_hard_accuracy": acc, "seconds": round(time.time() - t0, 1)})
        if progress:
            print(f"  step {step + 1}: validation-hard accuracy {acc:.3f} ({time.time() - t0:.0f} s)", flush=True)
        if low <= acc <= high:
            best.update(step=step + 1, accuracy=acc, state=copy.deepcopy(model.state_dict()))
        if acc > high:
            raise _Stop

    with contextlib.suppress(_Stop):
        fit_lm(CausalLMAdapter(model), task, steps, lr=lr, batch_size=batch_size, seed=seed,
               warmup=min(200, steps // 10), weight_decay=0.01, after_step=after)
    if not best:
        raise InvalidParameterError(
            f"train_sprint_llama: no checkpoint had validation-hard accuracy in [{low}, {high}]; "
            f"measured {[round(e['val_hard_accuracy'], 3) for e in evaluations]} (steps {steps}, every {eval_every})")
    model.load_state_dict(best["state"])
    log = {"evaluations": evaluations, "chosen_step": best["step"], "chosen_val_hard_accuracy": best["accuracy"],
           "val_hard_questions": len(val_hard), "seconds": round(time.time() - t0, 1), "steps_horizon": steps,
           "seed": seed, "batch_size": batch_size, "lr": lr, "sizes": {**SPRINT_LLAMA, **sizes}}
    return model.eval(), log


# --------------------------------------------------------------------------------------------
# heads of a LlamaForCausalLM


def _attn_layers(model: nn.Module) -> list[Any]:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not all(hasattr(layer, "self_attn") for layer in layers):
        raise InvalidParameterError(f"SPRINT on transformers takes a LlamaForCausalLM-shaped model "
                                    f"(model.layers[i].self_attn.o_proj); got {type(model).__name__}")
    return list(layers)


def _head_dim(model: nn.Module) -> int:
    cfg = model.config
    return int(getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)


def head_list_hf(model: nn.Module) -> list[tuple[int, int]]:
    """Every ``(layer, query head)`` of the model, in order (widths read from each ``o_proj``)."""
    d = _head_dim(model)
    return [(i, h) for i, layer in enumerate(_attn_layers(model))
            for h in range(layer.self_attn.o_proj.in_features // d)]


@contextlib.contextmanager
def head_mask(model: nn.Module, head: tuple[int, int] | None) -> Iterator[None]:
    """Within the block, query head ``head = (layer, h)`` of ``model`` contributes nothing (``None``: no mask).

    A forward pre-hook on that layer's ``o_proj`` multiplies columns ``h*d:(h+1)*d`` of its input by 0.
    """
    if head is None:
        yield
        return
    layers, d = _attn_layers(model), _head_dim(model)
    layer, h = head
    if not 0 <= layer < len(layers) or not 0 <= h < layers[layer].self_attn.o_proj.in_features // d:
        raise InvalidParameterError(f"head_mask: head must be one of the model's (layer, head) pairs; got {head}")
    mask = torch.ones(layers[layer].self_attn.o_proj.in_features)
    mask[h * d:(h + 1) * d] = 0.0

    def hook(module: nn.Module, args: tuple) -> tuple:
        return (args[0] * mask, *args[1:])

    handle = layers[layer].self_attn.o_proj.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def _answers(model: nn.Module, problems: Sequence[Problem], head: tuple[int, int] | None, temperature: float,
             seed: int) -> list[str]:
    with head_mask(model, head):
        outs = generate(CausalLMAdapter(model), [p.prompt for p in problems], temperature=temperature, seed=seed)
    return [answer_of(o) for o in outs]


def collect_head_outcomes_hf(model: nn.Module, problems: Sequence[Problem], n_samples: int = 2,
                             temperature: float = 0.7, cache: str | Path | None = None,
                             progress: bool = False) -> np.ndarray:
    """Success rate (greedy + ``n_samples`` samples) per question and per masked head; column 0 = no head masked.

    Same definition and seeds as :func:`optprune.lm.collect_head_outcomes` (greedy seed 0, sample ``s``
    seed ``s + 1``); shape ``(questions, 1 + heads)``. With ``cache`` the table is written after every
    column in the same checked format (questions, weight digest, settings) and resumed from there.
    """
    from optprune._checkpoint import state_digest
    from optprune.lm._sprint import CACHE_VERSION, _read_cache, _write_cache

    model.eval()
    heads = head_list_hf(model)
    truth = [p.answer for p in problems]
    keys = np.array([[p.a, p.b, p.digits] for p in problems], dtype=np.int64).reshape(-1, 3)
    table = np.full((len(problems), 1 + len(heads)), np.nan)
    settings = {"version": CACHE_VERSION, "model": state_digest(model), "n_samples": int(n_samples),
                "temperature": float(temperature)}
    path = Path(cache) if cache is not None else None
    if path is not None and path.exists():
        table = _read_cache(path, keys, settings, table.shape[1])
    t0 = time.time()
    for col, head in enumerate([None, *heads]):
        if not np.isnan(table[:, col]).any():
            continue
        hits = np.array([a == t for a, t in zip(_answers(model, problems, head, 0.0, 0), truth)], dtype=float)
        for s in range(n_samples):
            hits += np.array([a == t for a, t in zip(_answers(model, problems, head, temperature, s + 1), truth)])
        table[:, col] = hits / (1 + n_samples)
        if path is not None:
            _write_cache(path, table, keys, settings)
        if progress and (col + 1) % 8 == 0:
            print(f"  head outcomes: column {col + 1}/{len(heads) + 1} ({time.time() - t0:.0f} s)", flush=True)
    return table


def phenomenon(outcomes: np.ndarray) -> dict[str, float]:
    """Fractions of (question, head) pairs where masking the head raises / lowers / keeps the success rate.

    ``outcomes`` is :func:`collect_head_outcomes_hf`'s table; also the mean success unpruned and with the
    best head per question (the oracle SPRINT aims at), and the fraction of questions some head helps.
    """
    base, masked = outcomes[:, :1], outcomes[:, 1:]
    return {"help": float((masked > base).mean()), "hurt": float((masked < base).mean()),
            "same": float((masked == base).mean()), "mean_unpruned": float(base.mean()),
            "mean_best_candidate": float(outcomes.max(1).mean()),
            "questions_some_head_helps": float((masked > base).any(1).mean())}


@torch.no_grad()
def question_features_hf(model: nn.Module, problems: Sequence[Problem]) -> torch.Tensor:
    """Mean over prompt tokens of the model's last hidden state (after its final RMSNorm), (questions, hidden)."""
    model.eval()
    feats = torch.zeros(len(problems), model.config.hidden_size)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(problems):
        by_len.setdefault(len(p.prompt), []).append(i)
    for _, idx in sorted(by_len.items()):
        ids = torch.tensor([encode(problems[i].prompt) for i in idx])
        hidden = model.model(input_ids=ids).last_hidden_state
        feats[idx] = hidden.mean(1)
    return feats


def sample_answers_hf(
    model: nn.Module, problems: Sequence[Problem], n: int, mode: str, selector: HeadSelector | None = None,
    top_k: int = 4, temperature: float = 0.7, seed: int = 0, fixed_head: tuple[int, int] | None = None,
) -> np.ndarray:
    """Answers (questions, ``n``) as :func:`optprune.lm.sample_answers` (same modes, seeds), on a transformers model."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameterError(f"sample_answers_hf: n must be an integer >= 1; got {n!r}")
    heads = head_list_hf(model)
    scores = None
    if mode == "sprint" and selector is not None:
        with torch.no_grad():
            scores = selector(question_features_hf(model, problems))
    choice = choose_heads("sample_answers_hf", mode, heads, len(problems), n, scores=scores, top_k=top_k, seed=seed,
                          fixed_head=fixed_head)
    return answers_by_head(choice, heads, lambda rows, head, col: _answers(
        model, [problems[int(r)] for r in rows], head, temperature, seed * 1000 + col + 1))


def accuracy_at(answers: np.ndarray, problems: Sequence[Problem], ns: Sequence[int]) -> dict[int, float]:
    """Majority-vote accuracy using the first ``n`` samples, for every ``n`` of ``ns``."""
    return {int(n): float(majority_vote(answers[:, :n], problems).mean()) for n in ns}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m optprune.hf.sprint --out DIR [--seed S] [--steps N] [--force]``: train, save the SPRINT LLaMA."""
    import argparse
    import json

    from optprune.hf._train import save_hf

    parser = argparse.ArgumentParser(prog="python -m optprune.hf.sprint", description=main.__doc__)
    parser.add_argument("--out", required=True, help="folder for save_pretrained (+ optprune.json: the training log)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=3000, help="cosine horizon (training stops earlier)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, log = train_sprint_llama(args.steps, seed=args.seed, batch_size=args.batch_size, eval_every=args.eval_every,
                                    progress=not args.json)
    task = ArithTask(seed=0)
    log["test_hard_greedy_accuracy"] = _greedy_accuracy(model, task.problems("hard"))
    log["test_greedy_accuracy"] = _greedy_accuracy(model, task.problems("test"))
    save_hf(model, args.out, force=args.force, metadata=log)
    summary = {k: v for k, v in log.items() if k != "evaluations"}
    print(json.dumps(summary) if args.json else "\n".join(f"{k}: {v}" for k, v in summary.items()))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
