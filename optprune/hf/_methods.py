r"""Every LM pruning method of :data:`optprune.lm.LM_METHODS` on ``transformers`` causal LMs, LoRA through peft.

The units are the dependency groups of :func:`optprune.hf.hf_groups` (a KV head with its query heads, one
MLP neuron with its gate/up rows); masks act at the consumers' inputs (:func:`optprune.hf.unit_masks_hf`)
and the cut is :func:`optprune.hf.cut_model`, so every method ends in a pruned model that
``from_pretrained`` reads back. The budget: the pruned model keeps at most ``(1 - ratio)`` of the
parameters (tied embeddings counted once); a unit costs its ``unit_params``.

Scores (higher = keep), on ``n_calibration`` training problems (completion tokens and prompts, padding
excluded), with :math:`X_j` the consumer's input column ``j`` and :math:`W_{:,j}` its weight column:

* ``magnitude``: :math:`\|\theta_u\|_2` over the unit's producer rows and consumer columns;
* ``taylor``: first-order loss change of removing the unit, :math:`|\partial L / \partial m_u|` at mask
  :math:`m = 1` (Molchanov et al. 2019, CVPR; the group Taylor criterion of LLM-Pruner, Ma et al. 2023);
* ``wanda_sp``: structured Wanda (An et al. 2024, the Wanda-sp baseline of FLAP),
  :math:`\sum_{j \in u} \|X_j\|_2 \sum_i |W_{ij}|`;
* ``flap``: FLAP's fluctuation (An, Zhao, Yu, Tang, Wang 2024, AAAI, eq. 4-6),
  :math:`\sum_{j \in u} \operatorname{Var}(X_j) \|W_{:,j}\|_2^2`, standardised per kind (heads /
  neurons) over all layers and ranked *globally* (its adaptive structure), then the bias compensation
  :math:`b \leftarrow b + W_{:,R} \bar X_R` of the removed columns ``R`` (a bias is created where the
  consumer had none: ``optprune_shapes`` records it);
* ``bonsai``: forward-only perturbative importance (Dery et al. 2024, "Everybody Prune Now"):
  ``n_masks`` random sub-models keeping each unit with probability ``1 - ratio``, their calibration
  losses regressed on the masks (ridge), score = minus the coefficient;
* ``reconstruct``: per group in layer order the kept units and the consumer's re-fitted weights
  minimise :math:`\|X_{dense} W - X_S W'\|_F^2 + \lambda\|W'\|^2` (OSSCAR, Meng et al. 2024;
  :func:`optprune.reconstruction.solve_reconstruction`, local search), inputs from the model pruned so
  far, targets from the dense one;

with widths ``uniform`` (each heads group loses ``ratio`` of its units, whole KV groups, at least one;
then every MLP keeps the same number of neurons, as many as the budget allows), except FLAP (global).
Then the recovery: ``none``, ``lora`` (peft LoRA on every projection of the groups, merged) or ``full``.

:class:`HFLoRAShear` and :class:`HFCompresso` are the progressive and L0-gate methods with peft adapters
(module docs of :class:`optprune.lm.LoRAShear` and :class:`optprune.lm.Compresso`); Compresso here gates
heads and neurons only (no hidden-dimension gates: the residual width stays).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from optprune._estimator import BaseEstimator
from optprune._validation import Interval, Options
from optprune.errors import InvalidParameterError
from optprune.hf._models import CausalLMAdapter, check_supported
from optprune.hf._pruned import column_scale, cut_model, layer_widths_hf, unit_masks_hf
from optprune.hf._structure import HFGroup, hf_groups
from optprune.lm._data import PAD, ArithTask, lm_batch
from optprune.lm._eval import task_loss
from optprune.lm._prune import LoRAShear, _HardConcrete  # the TinyLM versions share gates and constraints
from optprune.lm._train import fit_lm
from optprune.pruning import keep_count

__all__ = ["HF_SCORERS", "HFCompresso", "HFLoRAShear", "HFOneShot", "hf_method", "hf_pruning_report", "lora_targets",
           "merge_peft",
           "n_params", "with_peft"]

HF_SCORERS = ("magnitude", "taylor", "wanda_sp", "flap", "bonsai", "reconstruct")
RECOVERIES = ("none", "lora", "full")


def n_params(model: nn.Module) -> int:
    """Parameters of ``model`` (a tied embedding and output head counted once)."""
    return int(sum(p.numel() for p in model.parameters()))


def lora_targets(groups: Sequence[HFGroup]) -> list[str]:
    """The leaf names of every projection in the groups (``q_proj``, ..., ``down_proj``; ``c_attn``, ``c_proj``)."""
    return sorted({m.module.rsplit(".", 1)[-1] for g in groups for m in g.members})


def with_peft(model: nn.Module, groups: Sequence[HFGroup], rank: int, alpha: float = 8.0) -> nn.Module:
    """``peft.get_peft_model`` with a LoraConfig on every projection of ``groups`` (in place on ``model``).

    ``alpha / rank`` scales the update as in the hand-written LoRA this replaces (alpha 8). GPT-2's
    ``Conv1D`` layers are adapted with ``fan_in_fan_out``. Returns the peft model; only adapters train.
    """
    import peft

    fan_in_fan_out = any(type(model.get_submodule(m.module)).__name__ == "Conv1D" for g in groups for m in g.members)
    cfg = peft.LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=0.0, target_modules=lora_targets(groups),
                          fan_in_fan_out=fan_in_fan_out, bias="none")
    import warnings

    with warnings.catch_warnings():  # peft asks transformers a deprecated gradient-checkpointing question
        warnings.simplefilter("ignore", FutureWarning)
        return peft.get_peft_model(model, cfg)


def merge_peft(peft_model: nn.Module) -> nn.Module:
    """The base model with the adapters merged into its weights (``merge_and_unload``), all parameters trainable."""
    base = peft_model.merge_and_unload()
    for p in base.parameters():
        p.requires_grad_(True)
    return base


def _inner(peft_model: nn.Module) -> nn.Module:
    """The transformers model inside a peft model (its projections are the LoRA wrappers)."""
    return peft_model.base_model.model  # type: ignore[return-value]


def _check_ratio(owner: str, ratio: Any) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise InvalidParameterError(f"{owner}: ratio must be a number in (0, 1) (fraction of parameters removed); "
                                    f"got {ratio!r}")


def _calibration(model: nn.Module, task: ArithTask, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    from optprune.hf._models import block_size_of

    problems = task.train_problems(n, np.random.default_rng([seed, 11]))
    return lm_batch(problems, block_size_of(model), "")


def _consumer_inputs(model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor,
                     masks: dict | None = None) -> dict[str, torch.Tensor]:
    """Inputs of every group's consumer on the non-padding tokens of ``ids``, shape (tokens, in)."""
    keep = (ids != PAD).reshape(-1)
    out: dict[str, torch.Tensor] = {}
    handles = []
    for g in groups:
        def grab(module: nn.Module, args: tuple, g: HFGroup = g) -> None:
            x = args[0].detach()
            out[g.name] = x.reshape(-1, x.shape[-1])[keep].double()

        handles.append(model.get_submodule(g.consumer).register_forward_pre_hook(grab))
    try:
        with torch.no_grad(), unit_masks_hf(model, groups, masks or {}):
            model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return out


def _consumer_weight(model: nn.Module, g: HFGroup) -> torch.Tensor:
    """The consumer's weight as (out, in) whatever its storage (Linear or transposed Conv1D)."""
    m = model.get_submodule(g.consumer)
    return m.weight.detach() if isinstance(m, nn.Linear) else m.weight.detach().T


def _per_unit(g: HFGroup, per_column: torch.Tensor) -> np.ndarray:
    return np.array([float(per_column[cols].sum()) for cols in g.consumer_member.units])


def _magnitude(model: nn.Module, groups: Sequence[HFGroup]) -> dict[str, np.ndarray]:
    scores = {}
    for g in groups:
        total = np.zeros(g.width)
        for m in g.members:
            mod = model.get_submodule(m.module)
            w = mod.weight.detach()
            linear = isinstance(mod, nn.Linear)
            rows = w if (linear == (m.role == "out")) else w.T  # units along dim 0
            for u, idx in enumerate(m.units):
                total[u] += float((rows[idx] ** 2).sum())
                if m.role == "out" and mod.bias is not None:
                    total[u] += float((mod.bias.detach()[idx] ** 2).sum())
        scores[g.name] = np.sqrt(total)
    return scores


def _taylor(model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor, tgt: torch.Tensor) -> dict:
    masks = {g.name: torch.ones(g.width, requires_grad=True) for g in groups}
    with unit_masks_hf(model, groups, masks):
        loss = task_loss(model(input_ids=ids, use_cache=False).logits, tgt)
    grads = torch.autograd.grad(loss, [masks[g.name] for g in groups])
    return {g.name: gr.abs().numpy().astype(np.float64) for g, gr in zip(groups, grads)}


def _wanda_sp(model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor) -> dict:
    X = _consumer_inputs(model, groups, ids)
    return {g.name: _per_unit(g, X[g.name].norm(dim=0) * _consumer_weight(model, g).abs().sum(0).double())
            for g in groups}


def _flap(model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor) -> tuple[dict, dict]:
    X = _consumer_inputs(model, groups, ids)
    scores = {g.name: _per_unit(g, X[g.name].var(dim=0) * (_consumer_weight(model, g).double() ** 2).sum(0))
              for g in groups}
    means = {g.name: X[g.name].mean(dim=0) for g in groups}
    return scores, means


def _bonsai(model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor, tgt: torch.Tensor, ratio: float,
            n_masks: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, 13])
    widths = [g.width for g in groups]
    total = sum(widths)
    Z = (rng.random((n_masks, total)) >= ratio).astype(np.float64)
    losses = np.empty(n_masks)
    with torch.no_grad():
        for i in range(n_masks):
            parts = np.split(Z[i], np.cumsum(widths)[:-1])
            for p in parts:
                if not p.any():
                    p[rng.integers(len(p))] = 1.0
            masks = {g.name: torch.as_tensor(p, dtype=torch.float32) for g, p in zip(groups, parts)}
            Z[i] = np.concatenate(parts)
            with unit_masks_hf(model, groups, masks):
                losses[i] = float(task_loss(model(input_ids=ids, use_cache=False).logits, tgt))
    A = np.hstack([Z, np.ones((n_masks, 1))])
    lam = 1e-3 * n_masks
    coef = np.linalg.solve(A.T @ A + lam * np.eye(total + 1), A.T @ losses)[:-1]
    return {g.name: -c for g, c in zip(groups, np.split(coef, np.cumsum(widths)[:-1]))}


def _uniform_widths(model: nn.Module, groups: Sequence[HFGroup], ratio: float) -> dict[str, int]:
    target = (1 - ratio) * n_params(model)
    heads = [g for g in groups if g.kind == "heads"]
    neurons = [g for g in groups if g.kind != "heads"]
    widths = {g.name: keep_count(g.width, ratio, 1) for g in heads}
    fixed = n_params(model) - sum(g.width * g.unit_params for g in groups)
    spare = target - fixed - sum(widths[g.name] * g.unit_params for g in heads)
    cost = sum(g.unit_params for g in neurons)
    per_layer = int(min(max(1, spare // max(cost, 1)), min(g.width for g in neurons))) if neurons else 0
    widths.update({g.name: per_layer for g in neurons})
    return widths


def _top(scores: np.ndarray, k: int) -> list[int]:
    return sorted(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")[:k].tolist())


def fill_budget(model: nn.Module, groups: Sequence[HFGroup], scores: dict[str, np.ndarray], target: float,
                masks: dict | None = None) -> dict[str, list[int]]:
    """Kept units by one global ranking of ``scores`` (every group keeps its best unit; then in decreasing score
    while the model fits ``target`` parameters). With ``masks`` only units still kept compete."""
    fixed = n_params(model) - sum(g.width * g.unit_params for g in groups)
    kept = {g.name: [int(np.argmax(np.where(_alive(g, masks), scores[g.name], -np.inf)))] for g in groups}
    used = fixed + sum(g.unit_params for g in groups)
    order = sorted(((float(s), gi, u) for gi, g in enumerate(groups) for u, s in enumerate(scores[g.name])
                    if _alive(g, masks)[u]), key=lambda t: -t[0])
    for _, gi, u in order:
        g = groups[gi]
        if u in kept[g.name]:
            continue
        if used + g.unit_params <= target:
            kept[g.name].append(u)
            used += g.unit_params
    return {k: sorted(v) for k, v in kept.items()}


def _alive(g: HFGroup, masks: dict | None) -> np.ndarray:
    return np.ones(g.width, bool) if masks is None else masks[g.name].numpy() > 0


def _standardise(groups: Sequence[HFGroup], scores: dict) -> dict:
    """FLAP's standardisation: per kind (heads, neurons) over all layers, zero mean and unit deviation."""
    out = {}
    for kind in ("heads", "neurons"):
        gs = [g for g in groups if g.kind == kind]
        if not gs:
            continue
        allv = np.concatenate([scores[g.name] for g in gs])
        mu, sd = float(allv.mean()), float(allv.std()) or 1.0
        out.update({g.name: (scores[g.name] - mu) / sd for g in gs})
    return out


class _HFPruner(BaseEstimator):
    """What the hf pruners share: the ratio rule, checks, fitted attributes, the recovery."""

    ratio: float
    seed: int
    lora_rank: int
    lr: float

    def _validate(self, model: nn.Module) -> nn.Module:
        self._validate_params()
        _check_ratio(type(self).__name__, self.ratio)
        check_supported(model)
        return model

    def _recover(self, pruned: nn.Module, groups: Sequence[HFGroup], task: ArithTask, recovery: str, steps: int,
                 seed: int) -> nn.Module:
        if recovery == "lora" and steps:
            peft_model = with_peft(pruned, groups, self.lora_rank)
            fit_lm(CausalLMAdapter(peft_model), task, steps, lr=self.lr, seed=seed, prefix="")
            pruned = merge_peft(peft_model)
        elif recovery == "full" and steps:
            fit_lm(CausalLMAdapter(pruned), task, steps, lr=self.lr / 2, seed=seed, prefix="")
        return pruned.eval()

    def _finish(self, model: nn.Module, pruned: nn.Module, groups: Sequence[HFGroup], target: float,
                started: float) -> None:
        self.model_ = pruned.eval()
        self.params_before_ = n_params(model)
        self.params_after_ = n_params(pruned)
        self.target_params_ = int(target)
        self.widths_ = layer_widths_hf(pruned, groups)
        self.seconds_ = time.time() - started

    def transform(self, model: nn.Module | None = None) -> nn.Module:
        self._check_fitted()
        return self.model_


class HFOneShot(_HFPruner):
    """One-shot structured pruning of a transformers causal LM by ``scorer`` (module doc), then the recovery."""

    _parameter_constraints = {
        "scorer": [Options(HF_SCORERS)],
        "recovery": [Options(RECOVERIES)],
        "steps": [Interval(int, 0, None)],
        "lora_rank": [Interval(int, 1, None)],
        "lr": [Interval(float, 0.0, None, closed="neither")],
        "n_calibration": [Interval(int, 1, None)],
        "n_masks": [Interval(int, 2, None)],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(self, scorer: str = "magnitude", ratio: float = 0.35, recovery: str = "lora", steps: int = 300,
                 lora_rank: int = 8, lr: float = 2e-3, n_calibration: int = 128, n_masks: int = 200,
                 seed: int = 0) -> None:
        self.scorer = scorer
        self.ratio = ratio
        self.recovery = recovery
        self.steps = steps
        self.lora_rank = lora_rank
        self.lr = lr
        self.n_calibration = n_calibration
        self.n_masks = n_masks
        self.seed = seed

    def fit(self, model: nn.Module, task: ArithTask) -> HFOneShot:
        started = time.time()
        model = self._validate(model).eval()
        torch.manual_seed(self.seed)
        groups = hf_groups(model)
        target = (1 - self.ratio) * n_params(model)
        ids, tgt = _calibration(model, task, self.n_calibration, self.seed)
        bias = None
        if self.scorer == "reconstruct":
            pruned = self._reconstruct(model, groups, ids)
        else:
            if self.scorer == "magnitude":
                scores = _magnitude(model, groups)
            elif self.scorer == "taylor":
                scores = _taylor(model, groups, ids, tgt)
            elif self.scorer == "wanda_sp":
                scores = _wanda_sp(model, groups, ids)
            elif self.scorer == "bonsai":
                scores = _bonsai(model, groups, ids, tgt, self.ratio, self.n_masks, self.seed)
            else:
                scores, means = _flap(model, groups, ids)
            if self.scorer == "flap":
                # the compensation adds a bias to consumers without one: its parameters come out of the budget
                extra = sum(_consumer_weight(model, g).shape[0] for g in groups
                            if getattr(model.get_submodule(g.consumer), "bias", None) is None)
                self.kept_ = fill_budget(model, groups, _standardise(groups, scores), target - extra)
                bias = {}
                for g in groups:
                    removed = sorted(set(range(g.width)) - set(self.kept_[g.name]))
                    cols = [c for u in removed for c in g.consumer_member.units[u]]
                    if cols:
                        W = _consumer_weight(model, g).double()
                        bias[g.consumer] = (W[:, cols] @ means[g.name][cols]).float()
            else:
                widths = _uniform_widths(model, groups, self.ratio)
                self.kept_ = {g.name: _top(scores[g.name], widths[g.name]) for g in groups}
            self.scores_ = scores
            pruned = cut_model(model, groups, self.kept_, bias=bias)
        self.one_shot_model_ = copy.deepcopy(pruned).eval()
        self.prune_seconds_ = time.time() - started
        pruned = self._recover(pruned, groups, task, self.recovery, self.steps, self.seed)
        self._finish(model, pruned, groups, target, started)
        return self

    def _reconstruct(self, model: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor) -> nn.Module:
        from optprune.reconstruction import ReconstructionProblem, solve_reconstruction

        widths = _uniform_widths(model, groups, self.ratio)
        dense_in = _consumer_inputs(model, groups, ids)
        work = copy.deepcopy(model)
        masks: dict[str, torch.Tensor] = {}
        self.kept_, self.reports_ = {}, []
        for g in groups:
            X = _consumer_inputs(work, [g], ids, masks)[g.name].numpy()
            W = _consumer_weight(work, g).double().numpy().T  # (in, out): rows are the units' columns
            blocks = np.empty(W.shape[0], dtype=np.int64)
            for u, cols in enumerate(g.consumer_member.units):
                blocks[cols] = u
            target = dense_in[g.name].numpy() @ W
            problem = ReconstructionProblem.from_activations(X, W, blocks, "auto", target=target, name=g.name)
            res = solve_reconstruction(problem, widths[g.name], "local", time_limit=10.0)
            keep_units = [u for u in range(g.width) if bool(res.keep[g.consumer_member.units[u][0]])] \
                if res.keep.size == W.shape[0] else [int(u) for u in np.nonzero(res.keep)[0]]
            self.kept_[g.name] = sorted(keep_units)
            cols = sorted(c for u in keep_units for c in g.consumer_member.units[u])
            new_w = np.zeros_like(W)
            new_w[cols] = res.weights
            mod = work.get_submodule(g.consumer)
            with torch.no_grad():
                t = torch.as_tensor(new_w, dtype=mod.weight.dtype)
                mod.weight.copy_(t.T if isinstance(mod, nn.Linear) else t)
            masks[g.name] = torch.zeros(g.width).index_fill_(0, torch.tensor(keep_units), 1.0)
            self.reports_.append({"group": g.name, "kept": len(keep_units), "objective": float(res.objective),
                                  "relative_error": float(res.objective / max(problem.total, 1e-30)),
                                  "seconds": float(res.seconds)})
        return cut_model(work, groups, self.kept_)


class HFCompresso(_HFPruner):
    r"""Compresso (Guo et al. 2023) on a transformers causal LM: L0 gates on units, peft LoRA, Lagrangian size.

    As :class:`optprune.lm.Compresso` without hidden-dimension gates: hard-concrete gates on every
    unit of :func:`hf_groups` (scaling the consumer columns), peft LoRA adapters on every projection,
    both trained on the task loss plus :math:`\lambda_1 (s - t) + \lambda_2 (s - t)^2` (``s`` the
    expected parameter fraction, ``t`` ramped to ``1 - ratio``; lambdas by gradient ascent). Then units
    are kept by ``log alpha`` within the budget, gate values folded into the consumer columns, LoRA
    merged, the cut made and ``recovery_steps`` of LoRA fine-tuning follow.
    """

    _parameter_constraints = {
        "steps": [Interval(int, 1, None)],
        "recovery_steps": [Interval(int, 0, None)],
        "lora_rank": [Interval(int, 1, None)],
        "lr": [Interval(float, 0.0, None, closed="neither")],
        "gate_lr": [Interval(float, 0.0, None, closed="neither")],
        "lambda_lr": [Interval(float, 0.0, None, closed="neither")],
        "gate_init": [Interval(float, None, None, finite=True)],
        "seed": [Interval(int, 0, None)],
    }

    def __init__(self, ratio: float = 0.35, steps: int = 300, recovery_steps: int = 60, lora_rank: int = 8,
                 lr: float = 2e-3, gate_lr: float = 0.05, lambda_lr: float = 0.05, gate_init: float = 3.0,
                 prompt: str | None = None, seed: int = 0) -> None:
        self.ratio = ratio
        self.steps = steps
        self.recovery_steps = recovery_steps
        self.lora_rank = lora_rank
        self.lr = lr
        self.gate_lr = gate_lr
        self.lambda_lr = lambda_lr
        self.gate_init = gate_init
        self.prompt = prompt
        self.seed = seed

    def fit(self, model: nn.Module, task: ArithTask) -> HFCompresso:
        started = time.time()
        model = self._validate(model).eval()
        if self.recovery_steps >= self.steps:
            raise InvalidParameterError(
                f"HFCompresso: recovery_steps must be smaller than steps ({self.steps}); got {self.recovery_steps}")
        torch.manual_seed(self.seed)
        groups = hf_groups(model)
        p0 = n_params(model)
        fixed = p0 - sum(g.width * g.unit_params for g in groups)
        gates = nn.ModuleList(_HardConcrete(g.width, self.gate_init) for g in groups)
        lambdas = nn.Parameter(torch.zeros(2))
        opt_lambda = torch.optim.Adam([lambdas], lr=self.lambda_lr, maximize=True)
        gate_steps = self.steps - self.recovery_steps
        peft_model = with_peft(copy.deepcopy(model), groups, self.lora_rank)
        lora = [p for p in peft_model.parameters() if p.requires_grad]
        state: dict[str, torch.Tensor] = {g.name: torch.ones(g.width) for g in groups}
        history: list[dict] = []

        def expected_fraction() -> torch.Tensor:
            kept = torch.stack([gate.prob_nonzero().sum() * g.unit_params for gate, g in zip(gates, groups)]).sum()
            return (fixed + kept) / p0

        def lagrangian(step: int) -> torch.Tensor:
            t = 1.0 - self.ratio * min(1.0, (step + 1) / max(1, gate_steps // 2))
            s = expected_fraction()
            gap = s - t
            if step % 10 == 0 or step == gate_steps - 1:
                history.append({"step": step, "expected_fraction": float(s.detach()), "target_fraction": t})
            return lambdas[0] * gap + lambdas[1] * gap * gap

        def before_step(step: int) -> None:
            gates.train()
            for g, gate in zip(groups, gates):
                state[g.name] = gate()

        def after_step(step: int) -> None:
            opt_lambda.step()
            opt_lambda.zero_grad(set_to_none=True)

        with unit_masks_hf(_inner(peft_model), groups, state):  # the gates sampled in before_step
            fit_lm(CausalLMAdapter(peft_model), task, gate_steps, params=[*lora, *gates.parameters()], lr=self.lr,
                   seed=self.seed, prefix=self.prompt or "", extra_loss=lagrangian, before_step=before_step,
                   after_step=after_step, param_lrs={id(p): self.gate_lr for p in gates.parameters()})
        gates.eval()
        self.history_ = history
        self.expected_fraction_ = float(expected_fraction().detach())
        target = (1 - self.ratio) * p0
        with torch.no_grad():
            scores = {g.name: gate.log_alpha.detach().numpy().astype(np.float64) for g, gate in zip(groups, gates)}
            z = {g.name: gate() for g, gate in zip(groups, gates)}
        merged = merge_peft(peft_model)
        self.kept_ = fill_budget(merged, groups, scores, target)
        with torch.no_grad():  # fold deterministic gate values of kept units into the consumer columns
            for g in groups:
                scale = column_scale(g, torch.where(z[g.name] > 0, z[g.name], 1.0))
                mod = merged.get_submodule(g.consumer)
                if isinstance(mod, nn.Linear):
                    mod.weight.mul_(scale[None, :])
                else:
                    mod.weight.mul_(scale[:, None])
        pruned = cut_model(merged, groups, self.kept_)
        self.prune_seconds_ = time.time() - started
        pruned = self._recover(pruned, groups, task, "lora", self.recovery_steps, self.seed + 1)
        self._finish(model, pruned, groups, target, started)
        return self


class HFLoRAShear(_HFPruner):
    r"""LoRAShear (Chen et al. 2023) on a transformers causal LM, LoRA through peft.

    In ``stages`` steps the parameter count goes down linearly to ``(1 - ratio)``; each step scores every
    remaining unit by first-order saliency on the LoRA-adapted weights, the mean over the unit's
    parameters of :math:`|w_{eff} \cdot \partial L / \partial w_{eff}|` (the peft model's weights with
    the adapters merged in for scoring), removes the least salient until the step's budget is met
    (masked), then fine-tunes peft adapters for ``steps // (stages + 1)`` steps under the masks; the
    adapters are merged, the final cut is physical and is followed by the last recovery share.
    """

    _parameter_constraints = LoRAShear._parameter_constraints  # the same constructor as the TinyLM LoRAShear

    def __init__(self, ratio: float = 0.35, steps: int = 300, stages: int = 4, lora_rank: int = 8, lr: float = 2e-3,
                 n_calibration: int = 128, seed: int = 0) -> None:
        self.ratio = ratio
        self.steps = steps
        self.stages = stages
        self.lora_rank = lora_rank
        self.lr = lr
        self.n_calibration = n_calibration
        self.seed = seed

    def _saliency(self, work: nn.Module, groups: Sequence[HFGroup], ids: torch.Tensor, tgt: torch.Tensor,
                  masks: dict) -> dict[str, np.ndarray]:
        params = {}
        for g in groups:
            for m in g.members:
                mod = work.get_submodule(m.module)
                params[m.module] = mod.weight
                if mod.bias is not None:
                    params[m.module + ".bias"] = mod.bias
        for p in params.values():
            p.requires_grad_(True)
        try:
            with unit_masks_hf(work, groups, masks):
                loss = task_loss(work(input_ids=ids, use_cache=False).logits, tgt)
            grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        finally:
            for p in params.values():
                p.requires_grad_(False)
        scores = {}
        for g in groups:
            total = np.zeros(g.width)
            for m in g.members:
                mod = work.get_submodule(m.module)
                sal = (mod.weight.detach() * grads[m.module]).abs()
                linear = isinstance(mod, nn.Linear)
                rows = sal if (linear == (m.role == "out")) else sal.T
                bsal = (mod.bias.detach() * grads[m.module + ".bias"]).abs() \
                    if m.role == "out" and mod.bias is not None else None
                for u, idx in enumerate(m.units):
                    total[u] += float(rows[idx].sum()) + (float(bsal[idx].sum()) if bsal is not None else 0.0)
            scores[g.name] = total / g.unit_params
        return scores

    def fit(self, model: nn.Module, task: ArithTask) -> HFLoRAShear:
        started = time.time()
        model = self._validate(model).eval()
        torch.manual_seed(self.seed)
        groups = hf_groups(model)
        p0 = n_params(model)
        target = (1 - self.ratio) * p0
        masks = {g.name: torch.ones(g.width) for g in groups}
        share = self.steps // (self.stages + 1)
        ids, tgt = _calibration(model, task, self.n_calibration, self.seed)
        work = copy.deepcopy(model)
        for p in work.parameters():
            p.requires_grad_(False)
        self.history_ = []
        for stage in range(1, self.stages + 1):
            budget = p0 - (p0 - target) * stage / self.stages
            sal = self._saliency(work, groups, ids, tgt, masks)
            kept = fill_budget(work, groups, sal, budget, masks)
            for g in groups:
                masks[g.name].zero_()[kept[g.name]] = 1.0
            losses: list[float] = []
            if share:
                peft_model = with_peft(work, groups, self.lora_rank)
                with unit_masks_hf(_inner(peft_model), groups, masks):
                    losses = fit_lm(CausalLMAdapter(peft_model), task, share, lr=self.lr, seed=self.seed + stage,
                                    prefix="")
                work = merge_peft(peft_model)
                for p in work.parameters():
                    p.requires_grad_(False)
            self.history_.append({"stage": stage, "budget": budget,
                                  "recovery_loss": float(np.mean(losses[-20:])) if losses else None})
        self.kept_ = kept
        for p in work.parameters():
            p.requires_grad_(True)
        pruned = cut_model(work, groups, self.kept_)
        self.prune_seconds_ = time.time() - started
        final = self.steps - share * self.stages
        pruned = self._recover(pruned, groups, task, "lora", final, self.seed + 99)
        self._finish(model, pruned, groups, target, started)
        return self


def hf_method(name: str, ratio: float, *, steps: int = 300, lora_rank: int = 8, seed: int = 0,
              recovery: str = "lora") -> Any:
    """The unfitted hf pruner of LM method ``name`` (the names of :data:`optprune.lm.LM_METHODS`, plus
    ``taylor``); the settings as :mod:`optprune.lm._methods` (Compresso: ``steps // 5`` recovery steps)."""
    one_shot = {"magnitude": "magnitude", "taylor": "taylor", "wanda_sp": "wanda_sp", "flap": "flap",
                "bonsai": "bonsai", "reconstruct": "reconstruct", "reconstruct-uniform": "reconstruct"}
    if name in one_shot:
        return HFOneShot(one_shot[name], ratio=ratio, recovery=recovery, steps=steps, lora_rank=lora_rank, seed=seed)
    if name == "lorashear":
        return HFLoRAShear(ratio=ratio, steps=steps, stages=4, lora_rank=lora_rank, seed=seed)
    if name in ("compresso", "compresso-hidden", "compresso-prompt"):
        from optprune.lm._prune import COMPRESSO_PROMPT

        return HFCompresso(ratio=ratio, steps=steps, recovery_steps=steps // 5, lora_rank=lora_rank, seed=seed,
                           prompt=COMPRESSO_PROMPT if name == "compresso-prompt" else None)
    known = sorted([*one_shot, "lorashear", "compresso", "compresso-hidden", "compresso-prompt"])
    raise InvalidParameterError(f"unknown LM method {name!r} for a transformers model; allowed: {known}")



def hf_pruning_report(dense: nn.Module, pruned: nn.Module, task: ArithTask, split: str = "test", prefix: str = "",
                      dense_report: dict | None = None, groups: Sequence[HFGroup] | None = None) -> dict:
    """``params``, ``exact_match`` and ``perplexity`` before/after and the kept widths per layer (as
    :func:`optprune.lm.pruning_report`), for transformers models; the pruned one evaluated with ``prefix``."""
    from optprune.lm._eval import exact_match, perplexity

    problems = task.problems(split)
    before = dense_report or {"params": n_params(dense), "exact_match": exact_match(CausalLMAdapter(dense), problems),
                              "perplexity": perplexity(CausalLMAdapter(dense), problems)}
    widths = layer_widths_hf(pruned, groups if groups is not None else hf_groups(dense))
    adapter = CausalLMAdapter(pruned)
    return {
        "params_before": int(before["params"]),
        "params_after": n_params(pruned),
        "exact_match_before": float(before["exact_match"]),
        "exact_match_after": float(exact_match(adapter, problems, prefix=prefix)),
        "perplexity_before": float(before["perplexity"]),
        "perplexity_after": float(perplexity(adapter, problems, prefix=prefix)),
        "heads_kept": widths["heads"],
        "kv_heads_kept": widths["kv_heads"],
        "neurons_kept": widths["neurons"],
        "split": split,
        "prefix": prefix,
    }
