"""Structured pruning of :class:`TinyLM` with LoRA: Compresso, LoRAShear, and one-shot baselines.

All three end in the same place: a kept-unit decision per dependency group of
:func:`lm_groups` (heads, MLP neurons), applied by the engine
(:func:`optprune.pruning.apply_decision` through :func:`prune_lm`), plus, for
Compresso, a hidden-width cut (:func:`prune_hidden`). Parameter counts treat the
tied output head once.

Cost of one unit at hidden width ``d`` and head size ``h``: a head owns ``h``
rows of q, k, v (with biases) and ``h`` columns of ``out_proj``,
``c_head = 4 h d + 3 h``; a neuron owns one row of ``fc1`` (with bias) and one
column of ``fc2``, ``c_neuron = 2 d + 1``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import InstanceOf, Interval, Options
from optprune.errors import InvalidParameterError
from optprune.lm._data import ArithTask, lm_batch
from optprune.lm._eval import exact_match, perplexity, task_loss
from optprune.lm._lora import LoRALinear, add_lora, lora_parameters, merge_lora, prune_lora
from optprune.lm._model import (
    TinyLM,
    _check_lm,
    layer_widths,
    lm_groups,
    masked_layernorm_hook,
    prune_hidden,
    prune_lm,
)
from optprune.lm._train import fit_lm
from optprune.pruning import count_parameters, keep_count
from optprune.scoring import get_scorer
from optprune.structure import Group

__all__ = [
    "COMPRESSO_PROMPT",
    "ONE_SHOT_SCORERS",
    "RECOVERIES",
    "Compresso",
    "LoRAShear",
    "OneShot",
    "lm_parameters",
    "max_ratio",
    "pruning_report",
    "uniform_widths",
]

#: Compresso's collaborative prompt, in miniature: a fixed instruction prefix telling the model it is pruned.
COMPRESSO_PROMPT = "pruned model carry:"
#: what follows a one-shot cut: nothing, LoRA adapters or full fine-tuning
RECOVERIES = ("none", "lora", "full")
#: Engine scorers usable for one-shot pruning of the LM (name -> constructor keyword arguments).
ONE_SHOT_SCORERS: dict[str, dict] = {"magnitude": {}, "wanda_sp": {}, "flap": {}, "bonsai": {"n_masks": 100}}


def _unit_costs(model: TinyLM, hidden: int | float | None = None) -> tuple[float, float]:
    d = model.config.d_model if hidden is None else hidden
    h = model.config.head_dim
    return 4 * h * d + 3 * h, 2 * d + 1


def lm_parameters(
    model: TinyLM, heads: Sequence[Any], neurons: Sequence[Any], hidden: Any = None
) -> float | torch.Tensor:
    """Parameters of ``model``'s architecture with ``heads[l]``/``neurons[l]`` kept per layer and ``hidden`` width.

    Exact for integer widths (tested against :func:`optprune.pruning.count_parameters`
    of the cut model); with expected widths (Compresso's gate probabilities) it is
    the expected size, the gates being independent (a tensor with gradients
    when the widths are tensors).
    """
    c = model.config
    d = c.d_model if hidden is None else hidden
    c_head, c_neuron = _unit_costs(model, d)
    per_hidden = c.vocab_size + c.block_size + 2 * (2 * c.n_layers + 1) + 2 * c.n_layers  # emb, LNs, out/fc2 biases
    total = d * per_hidden + sum(heads) * c_head + sum(neurons) * c_neuron
    return total if isinstance(total, torch.Tensor) else float(total)


def max_ratio(model: TinyLM, hidden: bool = False) -> float:
    """The largest fraction of parameters structured pruning can remove from ``model``.

    Every layer keeps at least one head and one MLP neuron; the hidden width is
    kept unless ``hidden`` (Compresso), which may cut it down to one dimension.
    """
    layers = len(model.blocks)
    smallest = lm_parameters(model, [1] * layers, [1] * layers, 1 if hidden else None)
    return 1.0 - float(smallest) / count_parameters(model)


def _calibration(model: TinyLM, task: ArithTask, n: int, seed: int, prefix: str = "") -> tuple[torch.Tensor, ...]:
    problems = task.train_problems(n, np.random.default_rng([seed, 11]))
    ids, tgt = lm_batch(problems, model.config.block_size, prefix)
    return ids, tgt


def _check_ratio(owner: str, ratio: Any) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise InvalidParameterError(f"{owner}: ratio must be a number in (0, 1) (fraction of parameters removed); "
                                    f"got {ratio!r}")


def _prunable(groups: Sequence[Group]) -> tuple[list[Group], list[Group]]:
    heads = [g for g in groups if g.prunable and g.kind == "heads"]
    neurons = [g for g in groups if g.prunable and g.kind != "heads"]
    return heads, neurons


def _unit_order(head_scores: Sequence[torch.Tensor], neuron_scores: Sequence[torch.Tensor],
                masks: dict | None = None) -> list[tuple[float, int, int, int]]:
    """``(score, kind 0=head 1=neuron, layer, unit)`` of every unit (with ``masks``: of every unit still kept)."""
    order = []
    for kind, (scores, key) in enumerate(((head_scores, "heads"), (neuron_scores, "neurons"))):
        order += [(float(v), kind, layer, j) for layer, sc in enumerate(scores) for j, v in enumerate(sc.tolist())
                  if masks is None or masks[key][layer][j] > 0]
    return order


def _fill_budget(
    model: TinyLM, order: list[tuple[float, int, int, int]], n_groups: tuple[int, int], target: float,
    hidden: int | None = None,
) -> tuple[list[list[int]], list[list[int]]]:
    """Keep units in order of decreasing score while the model fits in ``target`` parameters (>= 1 per group).

    ``order`` lists ``(score, kind 0=head 1=neuron, layer, unit)`` (:func:`_unit_order`); ``n_groups``: the
    number of head and of neuron groups.
    """
    c_head, c_neuron = _unit_costs(model, hidden)
    kept: tuple[list[list[int]], list[list[int]]] = ([[] for _ in range(n_groups[0])], [[] for _ in range(n_groups[1])])
    best = {}
    for score, kind, layer, unit in order:
        key = (kind, layer)
        if key not in best or score > best[key][0]:
            best[key] = (score, unit)
    for (kind, layer), (_, unit) in best.items():
        kept[kind][layer].append(unit)
    used = lm_parameters(model, [len(k) for k in kept[0]], [len(k) for k in kept[1]], hidden)
    for _score, kind, layer, unit in sorted(order, key=lambda t: -t[0]):
        if unit in kept[kind][layer]:
            continue
        cost = c_head if kind == 0 else c_neuron
        if used + cost <= target:
            kept[kind][layer].append(unit)
            used += cost
    return [sorted(k) for k in kept[0]], [sorted(k) for k in kept[1]]


def uniform_widths(model: TinyLM, groups: Sequence[Group], ratio: float) -> dict[str, int]:
    """Kept width per group at ``(1 - ratio)`` of the parameters, the same in every layer: heads lose ``ratio``
    of each layer (whole heads, at least one kept), then every MLP keeps the same number of neurons, as many as
    the budget allows (at least one)."""
    heads, neurons = _prunable(groups)
    target = (1 - ratio) * count_parameters(model)
    kh = {g.name: keep_count(g.width, ratio, 1) for g in heads}
    _, c_neuron = _unit_costs(model)
    spare = target - lm_parameters(model, list(kh.values()), [0] * len(neurons))
    per_layer = int(min(max(1, spare // (c_neuron * len(neurons))), min(g.width for g in neurons)))
    return {**kh, **{g.name: per_layer for g in neurons}}


def _kept_dict(heads: list[Group], neurons: list[Group], kh: list[list[int]], kn: list[list[int]]) -> dict:
    return {**{g.name: k for g, k in zip(heads, kh)}, **{g.name: k for g, k in zip(neurons, kn)}}


def pruning_report(
    dense: TinyLM, pruned: TinyLM, task: ArithTask, split: str = "test", prefix: str = "",
    dense_report: dict | None = None,
) -> dict:
    """``params_before/after``, ``exact_match_before/after``, ``perplexity_before/after`` and widths per layer.

    The pruned model is evaluated with ``prefix`` (Compresso's prompt), the dense one without.
    """
    problems = task.problems(split)
    before = dense_report or {"params": count_parameters(dense), "exact_match": exact_match(dense, problems),
                              "perplexity": perplexity(dense, problems)}
    widths = layer_widths(pruned)
    return {
        "params_before": int(before["params"]),
        "params_after": count_parameters(pruned),
        "exact_match_before": float(before["exact_match"]),
        "exact_match_after": exact_match(pruned, problems, prefix=prefix),
        "perplexity_before": float(before["perplexity"]),
        "perplexity_after": perplexity(pruned, problems, prefix=prefix),
        "heads_kept": widths["heads"],
        "neurons_kept": widths["neurons"],
        "hidden_kept": widths["hidden"],
        "split": split,
        "prefix": prefix,
    }


class _LMPruner(BaseEstimator):
    """What the LM pruners share: the ratio rule, checks of the model, fitted attributes, ``transform``."""

    ratio: float

    def _validate_params(self) -> None:
        _check_ratio(type(self).__name__, self.ratio)
        super()._validate_params()

    def _validate(self, model: nn.Module) -> TinyLM:
        self._validate_params()
        model = _check_lm(model)
        for b in model.blocks:
            if any(isinstance(m, LoRALinear) for m in b.modules()):
                raise InvalidParameterError(f"{type(self).__name__}: the model already carries LoRA adapters; "
                                            "merge them first (merge_lora)")
        hidden = bool(getattr(self, "prune_hidden", False))
        reachable = max_ratio(model, hidden=hidden)
        if self.ratio > reachable:
            raise InvalidParameterError(
                f"{type(self).__name__}: ratio {self.ratio} cannot be reached: every layer keeps at least one head "
                f"and one MLP neuron{' (and the model one hidden dimension)' if hidden else ''}, so at most "
                f"{reachable:.4f} of the {count_parameters(model)} parameters can be removed; "
                f"choose a ratio <= {reachable:.4f}"
            )
        return model

    def transform(self, model: nn.Module | None = None) -> TinyLM:
        """The pruned model from :meth:`fit` (the adapters were trained for that model only)."""
        self._check_fitted()
        return self.model_

    def _finish(self, model: TinyLM, pruned: TinyLM, target: float) -> None:
        self.model_ = pruned.eval()
        self.params_before_ = count_parameters(model)
        self.params_after_ = count_parameters(pruned)
        self.target_params_ = int(target)
        self.widths_ = layer_widths(pruned)


class OneShot(_LMPruner):
    """One-shot structured pruning with an engine scorer, then optional recovery (LoRA or full fine-tuning).

    Heads lose ``ratio`` of each layer (rounded to whole heads, at least one
    kept); MLP neurons are then kept uniformly per layer, highest scores first,
    so that the model has at most ``(1 - ratio)`` of its parameters. Scores come
    from :func:`optprune.scoring.get_scorer` on :meth:`TinyLM.trunk` with
    calibration (embeddings, next tokens) and the task loss. FLAP is its
    fluctuation score with this allocation rule, without its bias compensation
    and without its adaptive global structure search.
    """

    _parameter_constraints = {
        "scorer": [Options(tuple(ONE_SHOT_SCORERS))],
        "recovery": [Options(RECOVERIES)],
        "steps": [Interval(int, 0, None)],
        "lora_rank": [Interval(int, 1, None)],
        "lr": [Interval(float, 0.0, None, closed="neither")],
        "n_calibration": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(self, scorer: str = "magnitude", ratio: float = 0.35, recovery: str = "lora", steps: int = 300,
                 lora_rank: int = 8, lr: float = 2e-3, n_calibration: int = 128, seed: int = 0) -> None:
        self.scorer = scorer
        self.ratio = ratio
        self.recovery = recovery
        self.steps = steps
        self.lora_rank = lora_rank
        self.lr = lr
        self.n_calibration = n_calibration
        self.seed = seed

    def fit(self, model: TinyLM, task: ArithTask) -> OneShot:
        model = self._validate(model)
        target = (1 - self.ratio) * count_parameters(model)
        pruned = self._cut(model, task, lm_groups(model))
        self.one_shot_model_ = copy.deepcopy(pruned).eval()
        if self.recovery == "lora" and self.steps:
            add_lora(pruned, rank=self.lora_rank)
            fit_lm(pruned, task, self.steps, lr=self.lr, seed=self.seed, prefix="")
            pruned = merge_lora(pruned)
        elif self.recovery == "full" and self.steps:
            fit_lm(pruned, task, self.steps, lr=self.lr / 2, seed=self.seed, prefix="")
        self._finish(model, pruned, target)
        return self

    def _cut(self, model: TinyLM, task: ArithTask, groups: list[Group]) -> TinyLM:
        """The one-shot cut (before recovery): the scorer's top units at :func:`uniform_widths`."""
        heads, neurons = _prunable(groups)
        ids, tgt = _calibration(model, task, self.n_calibration, self.seed)
        with torch.no_grad():
            X = model.embed(ids)
        kwargs = dict(ONE_SHOT_SCORERS[self.scorer])
        if self.scorer == "bonsai":
            kwargs.update(loss_fn=task_loss, seed=self.seed)
        scorer = get_scorer(self.scorer, **kwargs)
        scores = scorer(model.trunk().eval(), (X, tgt), groups=groups, batch_size=64)
        widths = uniform_widths(model, groups, self.ratio)
        kh, kn = ([sorted(np.argsort(-scores[g.name], kind="stable")[: widths[g.name]].tolist()) for g in gs]
                  for gs in (heads, neurons))
        self.scores_ = scores
        self.kept_ = _kept_dict(heads, neurons, kh, kn)
        return prune_lm(model, self.kept_, groups)


class _HardConcrete(nn.Module):
    r"""Hard-concrete gates (Louizos, Welling & Kingma 2018, "Learning Sparse Neural Networks through L0
    Regularization", ICLR, eq. 10-12): with ``u ~ U(0, 1)``,

    .. math:: s = \sigma((\log u - \log(1 - u) + \log\alpha) / \beta),\quad
              z = \min(1, \max(0, s (\zeta - \gamma) + \gamma)),\quad
              P(z \ne 0) = \sigma(\log\alpha - \beta \log(-\gamma / \zeta)).

    ``beta = 2/3``, ``(gamma, zeta) = (-0.1, 1.1)``; at evaluation ``s = sigma(log alpha)``.
    """

    beta, gamma, zeta = 2.0 / 3.0, -0.1, 1.1

    def __init__(self, width: int, init: float) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.full((width,), float(init)) + 0.01 * torch.randn(width))

    def forward(self) -> torch.Tensor:
        if self.training:
            u = torch.rand_like(self.log_alpha).clamp(1e-6, 1 - 1e-6)
            s = torch.sigmoid((u.log() - (1 - u).log() + self.log_alpha) / self.beta)
        else:
            s = torch.sigmoid(self.log_alpha)
        return (s * (self.zeta - self.gamma) + self.gamma).clamp(0.0, 1.0)

    def prob_nonzero(self) -> torch.Tensor:
        return torch.sigmoid(self.log_alpha - self.beta * math.log(-self.gamma / self.zeta))


class Compresso(_LMPruner):
    r"""Compresso (Guo, Xu, Zhang, Yang 2023, "Compresso: Structured Pruning with Collaborative Prompting
    Learns Compact Large Language Models"), in miniature.

    Hard-concrete L0 gates on every head, MLP neuron and hidden dimension; base
    weights frozen, only LoRA adapters (rank ``lora_rank`` on q/k/v/out/fc1/fc2)
    and gates are trained on the task loss plus the Lagrangian size constraint

    .. math:: \lambda_1 (s - t) + \lambda_2 (s - t)^2

    where ``s`` is the expected parameter fraction from the gates' ``P(z != 0)``
    (:func:`lm_parameters` of the expected widths) and ``t`` the target fraction,
    ramped from 1 to ``1 - ratio`` over the first half of the gate steps; the
    lambdas follow gradient *ascent* (max over lambda, min over the rest).
    After ``steps - recovery_steps`` gate steps the gates become a decision:
    the hidden width keeps its ``round(E[kept])`` dimensions of largest
    ``log alpha``; heads and neurons are kept in order of ``log alpha`` while the
    model fits the budget (so every method lands on the same size); deterministic
    gate values are folded into ``out_proj``/``fc2`` columns, LoRA merged, the cut
    applied by the engine, then ``recovery_steps`` of LoRA fine-tuning.
    ``prompt`` (the collaborative prompt) is prepended to every problem in
    training and evaluation when given.
    """

    _parameter_constraints = {
        "steps": [Interval(int, 1, None)],
        "recovery_steps": [Interval(int, 0, None)],
        "lora_rank": [Interval(int, 1, None)],
        "lr": [Interval(float, 0.0, None, closed="neither")],
        "gate_lr": [Interval(float, 0.0, None, closed="neither")],
        "lambda_lr": [Interval(float, 0.0, None, closed="neither")],
        "gate_init": [Interval(float, None, None, finite=True)],
        "prune_hidden": [InstanceOf((bool,))],
        "prompt": [InstanceOf((str,)), None],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(self, ratio: float = 0.35, steps: int = 300, recovery_steps: int = 60, lora_rank: int = 8,
                 lr: float = 2e-3, gate_lr: float = 0.1, lambda_lr: float = 0.5, gate_init: float = 2.0,
                 prune_hidden: bool = True, prompt: str | None = None, seed: int = 0) -> None:
        self.ratio = ratio
        self.steps = steps
        self.recovery_steps = recovery_steps
        self.lora_rank = lora_rank
        self.lr = lr
        self.gate_lr = gate_lr
        self.lambda_lr = lambda_lr
        self.gate_init = gate_init
        self.prune_hidden = prune_hidden
        self.prompt = prompt
        self.seed = seed

    def fit(self, model: TinyLM, task: ArithTask) -> Compresso:
        model = self._validate(model)
        if self.recovery_steps >= self.steps:
            raise InvalidParameterError(
                f"Compresso: recovery_steps must be smaller than steps ({self.steps}); got {self.recovery_steps}"
            )
        torch.manual_seed(self.seed)
        prefix = self.prompt or ""
        groups = lm_groups(model)
        heads, neurons = _prunable(groups)
        work = copy.deepcopy(model)
        lora = add_lora(work, rank=self.lora_rank)
        gh = nn.ModuleList(_HardConcrete(g.width, self.gate_init) for g in heads)
        gn = nn.ModuleList(_HardConcrete(g.width, self.gate_init) for g in neurons)
        gd = _HardConcrete(model.config.d_model, self.gate_init)
        gates = nn.ModuleList([gh, gn, gd])
        lambdas = nn.Parameter(torch.zeros(2))
        opt_lambda = torch.optim.Adam([lambdas], lr=self.lambda_lr, maximize=True)
        p0 = count_parameters(model)
        gate_steps = self.steps - self.recovery_steps
        state: dict[str, Any] = {}
        history: list[dict] = []

        def sample() -> None:
            state["heads"] = [g() for g in gh]
            state["neurons"] = [g() for g in gn]
            state["hidden"] = gd() if self.prune_hidden else None

        def expected_fraction() -> torch.Tensor:
            eh = [g.prob_nonzero().sum() for g in gh]
            en = [g.prob_nonzero().sum() for g in gn]
            ed = gd.prob_nonzero().sum() if self.prune_hidden else None
            return lm_parameters(model, eh, en, ed) / p0

        def lagrangian(step: int) -> torch.Tensor:
            t = 1.0 - self.ratio * min(1.0, (step + 1) / max(1, gate_steps // 2))
            s = expected_fraction()
            gap = s - t
            term = lambdas[0] * gap + lambdas[1] * gap * gap
            if step % 10 == 0 or step == gate_steps - 1:
                history.append({"step": step, "expected_fraction": float(s.detach()), "target_fraction": t,
                                "lambda1": float(lambdas[0].detach()), "lambda2": float(lambdas[1].detach())})
            return term

        def before_step(step: int) -> None:
            gates.train()
            sample()

        def after_step(step: int) -> None:
            opt_lambda.step()
            opt_lambda.zero_grad(set_to_none=True)

        handles = _gate_hooks(work, state)
        try:
            fit_lm(work, task, gate_steps, params=[*lora, *gates.parameters()], lr=self.lr, seed=self.seed,
                   prefix=prefix, extra_loss=lagrangian, before_step=before_step, after_step=after_step,
                   param_lrs={id(p): self.gate_lr for p in gates.parameters()})
        finally:
            for h in handles:
                h.remove()
        gates.eval()
        self.history_ = history
        self.expected_fraction_ = float(expected_fraction().detach())
        with torch.no_grad():
            la_h = [g.log_alpha.detach() for g in gh]
            la_n = [g.log_alpha.detach() for g in gn]
            z_h = [g() for g in gh]
            z_n = [g() for g in gn]
            if self.prune_hidden:
                d_keep = max(1, int(round(float(gd.prob_nonzero().sum()))))
                hidden_idx = torch.argsort(-gd.log_alpha.detach(), stable=True)[:d_keep].sort().values
            else:
                hidden_idx = torch.arange(model.config.d_model)
        target = (1 - self.ratio) * p0
        kh, kn = _fill_budget(model, _unit_order(la_h, la_n), (len(heads), len(neurons)), target,
                              hidden=int(hidden_idx.numel()))
        merged = merge_lora(work)
        with torch.no_grad():  # fold the deterministic gate values of kept units into their consumers
            for b, zh, zn in zip(merged.blocks, z_h, z_n):
                # a unit whose gate closed but that the budget fill keeps returns with its own weights (z = 1)
                b.attn.out_proj.weight.mul_(torch.where(zh > 0, zh, 1.0).repeat_interleave(b.attn.head_dim))
                b.mlp.fc2.weight.mul_(torch.where(zn > 0, zn, 1.0))
        self.kept_ = _kept_dict(heads, neurons, kh, kn)
        self.hidden_kept_ = hidden_idx.tolist()
        pruned = prune_lm(merged, self.kept_, groups)
        if self.prune_hidden and hidden_idx.numel() < model.config.d_model:
            pruned = prune_hidden(pruned, hidden_idx)
        if self.recovery_steps:
            add_lora(pruned, rank=min(self.lora_rank, int(hidden_idx.numel())))
            fit_lm(pruned, task, self.recovery_steps, lr=self.lr, seed=self.seed + 1, prefix=prefix)
            pruned = merge_lora(pruned)
        self._finish(model, pruned, target)
        return self


def _gate_hooks(model: TinyLM, state: dict) -> list:
    """Hooks that scale heads/neurons/hidden dimensions by the gates currently in ``state`` (resampled per step)."""
    handles = []
    for i, block in enumerate(model.blocks):
        hd = block.attn.head_dim

        def head_hook(module: nn.Module, args: tuple, i: int = i, hd: int = hd) -> tuple:
            return (args[0] * state["heads"][i].repeat_interleave(hd), *args[1:])

        def neuron_hook(module: nn.Module, args: tuple, i: int = i) -> tuple:
            return (args[0] * state["neurons"][i], *args[1:])

        def hidden_hook(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
            return out if state.get("hidden") is None else out * state["hidden"]

        handles.append(block.attn.out_proj.register_forward_pre_hook(head_hook))
        handles.append(block.mlp.fc2.register_forward_pre_hook(neuron_hook))
        handles.append(block.attn.register_forward_hook(hidden_hook))
        handles.append(block.mlp.register_forward_hook(hidden_hook))
    for emb in (model.tok_emb, model.pos_emb):
        handles.append(emb.register_forward_hook(
            lambda module, args, out: out if state.get("hidden") is None else out * state["hidden"]))
    for ln in [model.ln_f] + [m for b in model.blocks for m in (b.ln1, b.ln2)]:
        handles.append(ln.register_forward_hook(masked_layernorm_hook(lambda: state.get("hidden"))))
    return handles


class LoRAShear(_LMPruner):
    r"""LoRAShear (Chen, Ding, Yadav, Zharkov, Liang 2023, "LoRAShear: Efficient Large Language Model
    Structured Pruning and Knowledge Recovery"), in miniature.

    LoRA adapters on q/k/v/out/fc1/fc2 (base frozen). The minimally removable
    structures are the engine's dependency groups over base + LoRA modules: a
    head is its q/k/v rows with the matching rows of their ``B`` factors and its
    ``out_proj`` columns with the columns of ``A``; a neuron likewise over
    ``fc1``/``fc2`` (:func:`prune_lora`). In ``stages`` progressive steps the
    parameter count goes down linearly to ``(1 - ratio)``; each step scores
    every remaining unit by first-order saliency on the LoRA-adapted weights,

    .. math:: S_j = \frac{1}{|j|} \sum_{w \in j} |w_{\text{eff}} \cdot \partial L / \partial w_{\text{eff}}|,
              \quad W_{\text{eff}} = W + (\alpha/r) B A,

    (mean over the unit's parameters, so heads and neurons of different sizes
    compete on one scale), removes the least salient until the step's budget is
    met (masked), then fine-tunes the adapters for ``steps // (stages + 1)``
    steps (knowledge recovery on the task data); the final cut is physical
    (base and LoRA factors together) and followed by the last recovery share.
    The paper's dynamic mix of general and instruction data is not modelled:
    there is only the task's data here.
    """

    _parameter_constraints = {
        "steps": [Interval(int, 0, None)],
        "stages": [Interval(int, 1, None)],
        "lora_rank": [Interval(int, 1, None)],
        "lr": [Interval(float, 0.0, None, closed="neither")],
        "n_calibration": [Interval(int, 1, None)],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(self, ratio: float = 0.35, steps: int = 300, stages: int = 4, lora_rank: int = 8, lr: float = 2e-3,
                 n_calibration: int = 128, seed: int = 0) -> None:
        self.ratio = ratio
        self.steps = steps
        self.stages = stages
        self.lora_rank = lora_rank
        self.lr = lr
        self.n_calibration = n_calibration
        self.seed = seed

    def _saliency(self, work: TinyLM, ids: torch.Tensor, tgt: torch.Tensor, masks: dict) -> tuple[list, list]:
        weights = []
        for b in work.blocks:
            for lin in (b.attn.q_proj, b.attn.k_proj, b.attn.v_proj, b.attn.out_proj, b.mlp.fc1, b.mlp.fc2):
                weights += [lin.weight, lin.bias]
        for w in weights:
            w.requires_grad_(True)
        try:
            with _fixed_masks(work, masks):
                loss = task_loss(work(ids), tgt)
            grads = torch.autograd.grad(loss, weights)
        finally:
            for w in weights:
                w.requires_grad_(False)
        g = iter(grads)
        sal_h, sal_n = [], []
        c_head, c_neuron = _unit_costs(work)
        with torch.no_grad():
            for b in work.blocks:
                hd, parts = b.attn.head_dim, {}
                for name in ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"):
                    lin = getattr(b.attn, name) if name.endswith("proj") else getattr(b.mlp, name)
                    w_eff = lin.merged_weight() if isinstance(lin, LoRALinear) else lin.weight
                    parts[name] = ((w_eff * next(g)).abs(), (lin.bias * next(g)).abs())
                rows = sum(parts[n][0].sum(1) + parts[n][1] for n in ("q_proj", "k_proj", "v_proj"))
                head = rows.reshape(-1, hd).sum(1) + parts["out_proj"][0].sum(0).reshape(-1, hd).sum(1)
                neuron = parts["fc1"][0].sum(1) + parts["fc1"][1] + parts["fc2"][0].sum(0)
                sal_h.append(head / c_head)
                sal_n.append(neuron / c_neuron)
        return sal_h, sal_n

    def fit(self, model: TinyLM, task: ArithTask) -> LoRAShear:
        model = self._validate(model)
        torch.manual_seed(self.seed)
        groups = lm_groups(model)
        heads, neurons = _prunable(groups)
        work = copy.deepcopy(model)
        add_lora(work, rank=self.lora_rank)
        p0 = count_parameters(model)
        target = (1 - self.ratio) * p0
        masks = {"heads": [torch.ones(g.width) for g in heads], "neurons": [torch.ones(g.width) for g in neurons]}
        share = self.steps // (self.stages + 1)
        ids, tgt = _calibration(model, task, self.n_calibration, self.seed)
        self.history_ = []
        for stage in range(1, self.stages + 1):
            budget = p0 - (p0 - target) * stage / self.stages
            sal_h, sal_n = self._saliency(work, ids, tgt, masks)
            kh, kn = _fill_budget(model, _unit_order(sal_h, sal_n, masks), (len(heads), len(neurons)), budget)
            for layer, k in enumerate(kh):
                masks["heads"][layer].zero_()[k] = 1.0
            for layer, k in enumerate(kn):
                masks["neurons"][layer].zero_()[k] = 1.0
            params = lm_parameters(model, [len(k) for k in kh], [len(k) for k in kn])
            steps = share if stage < self.stages else 0
            losses = []
            if steps:
                with _fixed_masks(work, masks):
                    losses = fit_lm(work, task, steps, params=lora_parameters(work), lr=self.lr,
                                    seed=self.seed + stage, prefix="")
            self.history_.append({"stage": stage, "budget": budget, "params": params,
                                  "recovery_loss": float(np.mean(losses[-20:])) if losses else None})
        self.kept_ = _kept_dict(heads, neurons, kh, kn)
        widths = {g.name: g.width for g in heads + neurons}
        removed = {name: sorted(set(range(widths[name])) - set(k)) for name, k in self.kept_.items()}
        cut = prune_lm(work, self.kept_, groups)  # base rows/columns through the engine ...
        prune_lora(cut, removed, groups)  # ... and the LoRA factors with them
        final = self.steps - share * (self.stages - 1)
        if final:
            fit_lm(cut, task, final, params=lora_parameters(cut), lr=self.lr, seed=self.seed + 99, prefix="")
        self._finish(model, merge_lora(cut), target)
        return self


class _fixed_masks:
    """Context: heads and neurons of ``model`` scaled by fixed 0/1 masks (LoRAShear's removed units)."""

    def __init__(self, model: TinyLM, masks: dict) -> None:
        self.model, self.masks, self.handles = model, masks, []

    def __enter__(self) -> TinyLM:
        state = {"heads": self.masks["heads"], "neurons": self.masks["neurons"], "hidden": None}
        self.handles = _gate_hooks(self.model, state)
        return self.model

    def __exit__(self, *exc: object) -> None:
        for h in self.handles:
            h.remove()
