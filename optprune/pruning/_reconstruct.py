r"""Reconstruction-optimal structured pruning of a torch model, and the least-squares re-fit after any selection.

For every prunable dependency group, in trace order, the inputs of the group's consumers (every ``in`` member:
the next Linear, the next convolution unfolded into patches, the output projection of attention) are collected
on calibration data *in the model pruned so far*, the targets are the consumers' outputs in the *dense* model
(error correction: later layers repair what earlier ones lost), and :func:`optprune.reconstruction.
solve_reconstruction` chooses the kept units of

.. math:: \min_{|S| = k} \; \min_{W', b'} \|Y - X_{S} W' - 1 b'^\top\|_F^2 + \lambda \|W'\|_F^2 ,

(Meng et al., OSSCAR, ICML 2024; the re-fit of SparseGPT/OBC). Units are blocks of the consumer's columns (one
column per neuron, ``head_dim`` per head, ``kh*kw`` per input channel of a convolution, ``factor`` per channel
flattened into a Linear); a group with several consumers stacks them block-diagonally. The consumers' kept
columns *and bias* are re-fitted: the bias by least squares with a constant column (centred statistics,
:class:`optprune.reconstruction.GramAccumulator`), which contains FLAP's bias compensation as the case of
unchanged weights. A consumer without a bias gets none. Columns of a consumer owned by another group are held
fixed (their contribution is subtracted from the target).

:func:`refit_consumers` is the same re-fit as a step after *any* selection (``optprune prune --refit``).
Per-group widths come from an allocation in :data:`WIDTH_ALLOCATIONS` (``uniform``: every group keeps
``floor((1 - ratio) width)``); an allocation is ``f(curves, groups, ratio, min_keep) -> {group: width}`` with
``curves[g][k]`` the greedy error of group ``g`` at ``k`` kept units (:func:`optprune.reconstruction.
elimination_path` on the dense model).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optprune._validation import Constraint, Interval, Options
from optprune.errors import InvalidParameterError, UnsupportedLayerError
from optprune.pruning._apply import apply_decision, count_parameters, parameters_after
from optprune.pruning._decision import PruningDecision
from optprune.pruning._decisions import MethodDecision, MethodOutcome
from optprune.pruning._select import keep_count
from optprune.reconstruction._problem import GramAccumulator, ReconstructionProblem, ReconstructionResult
from optprune.reconstruction._search import BOUNDS, METHODS, elimination_path, solve_reconstruction
from optprune.registry import Registry
from optprune.scoring import as_batches
from optprune.search import allocate_widths
from optprune.structure import Group, Member, dependency_groups

__all__ = [
    "RECONSTRUCT",
    "WIDTH_ALLOCATIONS",
    "AllocationContext",
    "ReconstructDecision",
    "consumer_problem",
    "error_curves",
    "reconstruct",
    "refit_consumers",
    "searched_widths",
    "uniform_widths",
]

CONSUMERS = ("Linear", "Conv2d (groups=1, zero padding)")
Progress = Callable[[dict], None]


@dataclass(frozen=True)
class AllocationContext:
    """What a width allocation may read besides the curves: the dense model, its prunable groups, ``ratio``,
    ``min_keep``, ``input_shape`` and ``params`` (fraction of the parameters to keep; None: as uniform)."""

    model: nn.Module
    groups: Sequence[Group]
    ratio: float
    min_keep: int
    input_shape: tuple[int, ...]
    params: float | None = None


Allocation = Callable[[Mapping[str, np.ndarray], AllocationContext], Mapping[str, int]]


def uniform_widths(curves: Mapping[str, np.ndarray], context: AllocationContext) -> dict[str, int]:
    """Every group keeps ``max(min_keep, floor((1 - ratio) width))`` units (the curves are not read)."""
    if context.params is not None:
        raise InvalidParameterError("allocation 'uniform' takes its widths from ratio; params must be None, got "
                                    f"{context.params!r} (use allocation 'search' for a parameter budget)")
    return {g.name: keep_count(g.width, context.ratio, context.min_keep) for g in context.groups}


def searched_widths(curves: Mapping[str, np.ndarray], context: AllocationContext) -> dict[str, int]:
    """The exact width search on the curves (:func:`optprune.search.allocate_widths`) under a parameter budget:
    ``context.params``, or the parameter fraction the uniform widths at ``ratio`` keep."""
    budget = context.params
    if budget is None:
        uniform = {g.name: keep_count(g.width, context.ratio, context.min_keep) for g in context.groups}
        budget = parameters_after(context.model, context.groups, uniform) / count_parameters(context.model)
    widths = allocate_widths(curves, context.model, {"params": float(budget)}, input_shape=context.input_shape,
                             min_width=context.min_keep)
    assert isinstance(widths, dict)
    return {str(k): int(v) for k, v in widths.items()}


#: per-group widths from error curves: name -> f(curves, context) -> {group: kept width}
WIDTH_ALLOCATIONS: Registry[Allocation] = Registry("width allocation")
WIDTH_ALLOCATIONS.register("uniform", uniform_widths, "every group keeps floor((1 - ratio) width) units")
WIDTH_ALLOCATIONS.register("search", searched_widths,
                           "exact width search on the greedy error curves under a parameter budget")


# ---------------------------------------------------------------------------------------------- consumer columns
def _check_consumer(module: nn.Module, name: str) -> None:
    if isinstance(module, nn.Linear):
        return
    if isinstance(module, nn.Conv2d) and module.groups == 1 and module.padding_mode == "zeros":
        return
    raise UnsupportedLayerError(name, type(module).__name__, CONSUMERS)


def _input_columns(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as the rows its weight multiplies: (samples, columns); a convolution's patches unfolded."""
    if isinstance(module, nn.Conv2d):
        cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (B, C*k, L)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return x.reshape(-1, x.shape[-1])


def _output_rows(module: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The layer's output as (samples, outputs), samples ordered as in :func:`_input_columns`."""
    if isinstance(module, nn.Conv2d):
        return y.reshape(y.shape[0], y.shape[1], -1).transpose(1, 2).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


def _weight_columns(module: nn.Module) -> torch.Tensor:
    """Weight as (input columns, outputs): ``W^T`` of a Linear, ``(C kh kw) x O`` of a convolution."""
    w = module.weight.detach().double()
    return w.reshape(w.shape[0], -1).t()


def _set_weight_columns(module: nn.Module, cols: torch.Tensor, values: torch.Tensor) -> None:
    with torch.no_grad():
        flat = module.weight.view(module.weight.shape[0], -1)
        flat[:, cols] = values.t().to(flat.dtype)


def _kernel(module: nn.Module) -> int:
    return int(np.prod(module.kernel_size)) if isinstance(module, nn.Conv2d) else 1


def _member_columns(module: nn.Module, member: Member, units: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Weight columns the member's ``units`` own, unit after unit."""
    k = _kernel(module)
    channels = member.indices(units)
    return (channels.reshape(-1, 1) * k + torch.arange(k).reshape(1, -1)).reshape(-1)


# ---------------------------------------------------------------------------------------------- statistics
def _model_batches(model: nn.Module, calibration: Any) -> list:
    """Calibration batches in the dtype of the model's parameters."""
    batches = as_batches(calibration)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return [(X.to(dtype), y) for X, y in batches]


class _Captured(Exception):
    """Raised by the last consumer's input hook: the rest of the forward pass is not needed."""


#: at most this many bytes of dense consumer outputs are cached for the whole run (else recomputed per group)
TARGET_CACHE_BYTES = 256 * 2**20


def _dense_targets(dense: nn.Module, batches: list, consumers: Sequence[str]) -> dict[str, list[torch.Tensor]] | None:
    """Every consumer's output in ``dense``, per batch, from one forward pass per batch (the targets do not change
    while the model is pruned); None when they would take more than :data:`TARGET_CACHE_BYTES`."""
    out: dict[str, list[torch.Tensor]] = {n: [] for n in consumers}
    size = 0

    def hook(mod: nn.Module, args: tuple, y: torch.Tensor, n: str) -> None:
        nonlocal size
        rows = _output_rows(mod, y.detach())
        size += rows.numel() * rows.element_size()
        if size > TARGET_CACHE_BYTES:
            raise _Captured
        out[n].append(rows)

    handles = [dense.get_submodule(n).register_forward_hook(lambda m, a, y, n=n: hook(m, a, y, n))
               for n in dict.fromkeys(consumers)]
    try:
        with torch.no_grad():
            for i, (X, _) in enumerate(batches):
                dense(X)
                if any(len(v) != i + 1 for v in out.values()):  # a consumer called twice (or never): no cache
                    return None
    except _Captured:
        return None
    finally:
        for h in handles:
            h.remove()
    return out


def _collect(
    dense: nn.Module, work: nn.Module, batches: list, consumers: Sequence[str], columns: Mapping[str, torch.Tensor],
    rows: Mapping[str, torch.Tensor | None], center: Mapping[str, bool],
    targets: Mapping[str, list[torch.Tensor]] | None = None,
) -> dict[str, GramAccumulator]:
    """Per consumer: Gram statistics of ``work``'s inputs on ``columns`` against ``dense``'s outputs on ``rows``,
    minus what the consumer's other columns (held fixed) contribute in ``work``. ``targets``: the dense outputs
    per batch (:func:`_dense_targets`); then ``dense`` is not run and ``work``'s forward pass stops once every
    consumer has its input."""
    acc = {n: GramAccumulator() for n in consumers}
    inputs: dict[str, torch.Tensor] = {}
    outputs: dict[str, torch.Tensor] = {}
    handles = []
    cached = targets is not None and all(n in targets for n in consumers)
    for n in consumers:
        def pre_hook(mod: nn.Module, args: tuple, n: str = n) -> None:
            inputs[n] = _input_columns(mod, args[0].detach()).double()
            if cached and len(inputs) == len(consumers):
                raise _Captured

        def out_hook(mod: nn.Module, args: tuple, out: torch.Tensor, n: str = n) -> None:
            outputs[n] = _output_rows(mod, out.detach()).double()

        handles.append(work.get_submodule(n).register_forward_pre_hook(pre_hook))
        if not cached:
            handles.append(dense.get_submodule(n).register_forward_hook(out_hook))
    try:
        with torch.no_grad():
            for i, (X, _) in enumerate(batches):
                if cached:
                    assert targets is not None
                    for n in consumers:
                        outputs[n] = targets[n][i].double()
                    try:
                        work(X)
                    except _Captured:
                        pass
                else:
                    dense(X)
                    work(X)
                for n in consumers:
                    module = work.get_submodule(n)
                    cols_in = inputs.pop(n)
                    target = outputs.pop(n)
                    r = rows[n]
                    if r is not None:
                        target = target[:, r]
                    own = columns[n]
                    other = torch.ones(cols_in.shape[1], dtype=torch.bool)
                    other[own] = False
                    if other.any():  # columns of other groups stay as they are in work
                        target = target - cols_in[:, other] @ _weight_columns(module)[other]
                    acc[n].add(cols_in[:, own].numpy(), target.numpy())
    finally:
        for h in handles:
            h.remove()
    return acc


def _stack(problems: list[ReconstructionProblem], blocks: list[np.ndarray], name: str) -> ReconstructionProblem:
    """One problem from several consumers: G and C block-diagonal, blocks united by unit."""
    if len(problems) == 1:
        p = problems[0]
        return ReconstructionProblem(p.gram, p.cross, p.total, blocks[0], p.ridge, p.input_mean, p.target_mean, name)
    from scipy.linalg import block_diag

    G = block_diag(*[p.gram for p in problems])
    C = block_diag(*[p.cross for p in problems])
    ridge = float(np.mean([p.ridge for p in problems]))
    means = None
    if any(p.input_mean is not None for p in problems):
        means = (np.concatenate([p.input_mean if p.input_mean is not None else np.zeros(p.n_units) for p in problems]),
                 np.concatenate([p.target_mean if p.target_mean is not None else np.zeros(p.n_outputs)
                                 for p in problems]))
    return ReconstructionProblem(G, C, sum(p.total for p in problems), np.concatenate(blocks), ridge,
                                 None if means is None else means[0], None if means is None else means[1], name)


@dataclass
class _Plan:
    """How one group's consumers enter its problem: module names, their columns and rows, centring."""

    consumers: list[str]
    members: list[Member]
    columns: dict[str, torch.Tensor]
    rows: dict[str, torch.Tensor | None]
    center: dict[str, bool]


def _plan(model: nn.Module, group: Group, kept_rows: Mapping[str, torch.Tensor | None]) -> _Plan:
    members = [m for m in group.members if m.role == "in"]
    names = [m.module for m in members]
    if len(set(names)) != len(names):
        raise InvalidParameterError(f"reconstruct: group {group.name!r} feeds module {names[0]!r} twice")
    plan = _Plan(names, members, {}, {}, {})
    for m in members:
        module = model.get_submodule(m.module)
        _check_consumer(module, m.module)
        plan.columns[m.module] = _member_columns(module, m, torch.arange(group.width))
        plan.rows[m.module] = kept_rows.get(m.module)
        plan.center[m.module] = getattr(module, "bias", None) is not None
    return plan


def consumer_problem(
    dense: nn.Module, work: nn.Module, group: Group, batches: list, ridge: float | str = "auto",
    kept_rows: Mapping[str, torch.Tensor | None] | None = None,
    targets: Mapping[str, list[torch.Tensor]] | None = None,
) -> tuple[ReconstructionProblem, _Plan]:
    """The reconstruction problem of ``group``: ``work``'s consumer inputs against ``dense``'s consumer outputs
    (``targets``: those outputs cached by :func:`_dense_targets`)."""
    plan = _plan(work, group, kept_rows or {})
    acc = _collect(dense, work, batches, plan.consumers, plan.columns, plan.rows, plan.center, targets)
    problems, blocks = [], []
    for n in plan.consumers:
        per_unit = plan.columns[n].numel() // group.width
        problems.append(acc[n].problem(None, ridge, center=plan.center[n]))
        blocks.append(np.repeat(np.arange(group.width), per_unit))
    return _stack(problems, blocks, group.name), plan


def _write_back(work: nn.Module, group: Group, plan: _Plan, result: ReconstructionResult) -> None:
    """Zero the removed units' consumer columns; write the re-fitted columns and bias of the kept ones.

    ``result`` is over the stacked problem: units consumer after consumer, outputs likewise (block-diagonal).
    """
    offset_u, offset_o, offset_r = 0, 0, 0
    for n in plan.consumers:
        module = work.get_submodule(n)
        cols = plan.columns[n]
        mask = torch.as_tensor(result.keep[offset_u : offset_u + cols.numel()])
        n_out = int(module.weight.shape[0])
        n_kept = int(mask.sum())
        values = torch.zeros(cols.numel(), n_out, dtype=torch.float64)
        values[mask] = torch.as_tensor(result.weights[offset_r : offset_r + n_kept, offset_o : offset_o + n_out])
        _set_weight_columns(module, cols, values)
        if plan.center[n] and result.bias is not None:
            with torch.no_grad():
                module.bias.copy_(torch.as_tensor(result.bias[offset_o : offset_o + n_out]).to(module.bias.dtype))
        offset_u += cols.numel()
        offset_o += n_out
        offset_r += n_kept


def error_curves(model: nn.Module, calibration: Any, input_shape: Sequence[int] | None = None, *,
                 ridge: float | str = "auto", groups: Sequence[Group] | None = None) -> dict[str, np.ndarray]:
    """Per prunable group of ``model`` (unchanged): ``curve[k]``, the greedy reconstruction error of its consumers
    when the group keeps ``k`` units (:func:`optprune.reconstruction.elimination_path` on the dense model's
    statistics), what :func:`optprune.search.allocate_widths` reads to choose the widths by optimisation."""
    batches = _model_batches(model, calibration)
    if not batches:
        raise InvalidParameterError("error_curves: calibration data is needed; got none")
    shape = tuple(input_shape or getattr(model, "input_shape", None) or batches[0][0].shape[1:])
    if groups is None:
        groups, _ = dependency_groups(model, shape)
    prunable = [g for g in groups if g.prunable]
    was_training = model.training
    model.eval()
    try:
        targets = _dense_targets(model, batches, [m.module for g in prunable for m in g.members if m.role == "in"])
        return {g.name: elimination_path(consumer_problem(model, model, g, batches, ridge, targets=targets)[0]).errors
                for g in prunable}
    finally:
        model.train(was_training)


def reconstruct(
    model: nn.Module, calibration: Any, ratio: float, input_shape: Sequence[int] | None = None, *,
    solver: str = "local", allocation: str | Allocation = "uniform", widths: Mapping[str, int] | None = None,
    ridge: float | str = "auto", min_keep: int = 1, params: float | None = None, progress: Progress | None = None,
    **solver_options: Any,
) -> tuple[nn.Module, PruningDecision, list[dict]]:
    """Prune every prunable group of ``model`` (unchanged) by reconstruction; returns the smaller model, its
    decision and one report per group (``group``, ``width``, ``kept``, ``objective``, ``relative``,
    ``lower_bound``, ``gap``, ``status``, ``seconds``). ``widths`` overrides the allocation."""
    batches = _model_batches(model, calibration)
    if not batches:
        raise InvalidParameterError("reconstruct: calibration data is needed; got none")
    shape = tuple(input_shape or getattr(model, "input_shape", None) or batches[0][0].shape[1:])
    groups, _ = dependency_groups(model, shape)
    prunable = [g for g in groups if g.prunable]
    if not prunable:
        raise InvalidParameterError("reconstruct: the model has no prunable group; groups: "
                                    + "; ".join(f"{g.name} ({g.reason})" for g in groups))
    was_training = model.training
    dense = model.eval()
    work = copy.deepcopy(model).eval()
    try:
        targets = _dense_targets(dense, batches, [m.module for g in prunable for m in g.members if m.role == "in"])
        if widths is None:
            rule = WIDTH_ALLOCATIONS.get(allocation, "allocation") if isinstance(allocation, str) else allocation
            curves: dict[str, np.ndarray] = {}
            if rule is not uniform_widths:
                for g in prunable:
                    problem = consumer_problem(dense, dense, g, batches, ridge, targets=targets)[0]
                    curves[g.name] = elimination_path(problem).errors
            widths = dict(rule(curves, AllocationContext(dense, prunable, ratio, min_keep, shape, params)))
        kept: dict[str, list[int]] = {}
        reports = []
        for g in prunable:
            started = time.perf_counter()
            k = int(widths.get(g.name, g.width))
            problem, plan = consumer_problem(dense, work, g, batches, ridge, targets=targets)
            result = solve_reconstruction(problem, k, solver, **solver_options)
            _write_back(work, g, plan, result)
            units = np.unique(problem.block_ids[result.keep])
            kept[g.name] = [int(u) for u in units]
            report = {"group": g.name, "width": g.width, "kept": int(units.size), "objective": result.objective,
                      "relative": problem.relative(result.objective), "lower_bound": result.lower_bound,
                      "gap": result.gap, "status": result.status, "method": result.method,
                      "seconds": time.perf_counter() - started}
            reports.append(report)
            if progress is not None:
                progress(report)
    finally:
        model.train(was_training)
    decision = PruningDecision(kept, {g.name: g.width for g in prunable}, shape,
                               {"decision": "reconstruct", "solver": solver, "ratio": ratio})
    return apply_decision(work, decision, groups=groups), decision, reports


# ------------------------------------------------------------------------------------ re-fit after any selection
def _kept_rows(decision: PruningDecision, groups: Sequence[Group], dense: nn.Module) -> dict[str, torch.Tensor]:
    """For every module that lost output rows: the dense rows it keeps (sorted)."""
    by_name = {g.name: g for g in groups}
    drop: dict[str, set[int]] = {}
    for name in decision.kept:
        removed = decision.removed(name)
        if not removed:
            continue
        for m in by_name[name].members:
            if m.role == "out":
                drop.setdefault(m.module, set()).update(int(i) for i in m.indices(removed))
    out = {}
    for module_name, rows in drop.items():
        total = dense.get_submodule(module_name).weight.shape[0]
        out[module_name] = torch.tensor([i for i in range(total) if i not in rows], dtype=torch.long)
    return out


def refit_consumers(
    pruned: nn.Module, dense: nn.Module, calibration: Any, decision: PruningDecision, *,
    ridge: float | str = "auto", progress: Progress | None = None,
) -> tuple[nn.Module, list[dict]]:
    """A copy of ``pruned`` whose consumer layers (those that lost inputs under ``decision``) are re-fitted by
    least squares, one after the other, so that they reproduce the dense model's outputs on ``calibration``:
    ``W', b' = argmin ||Y_dense - X_pruned W' - 1 b'^T||^2 + λ||W'||^2`` (bias re-fitted where the layer has
    one). Works after any selection (scores, search, reconstruction); ``pruned`` and ``dense`` share module names.
    """
    batches = _model_batches(dense, calibration)
    if not batches:
        raise InvalidParameterError("refit_consumers: calibration data is needed; got none")
    groups, _ = dependency_groups(dense, decision.input_shape)
    decision.check(groups)
    by_name = {g.name: g for g in groups}
    consumers: dict[str, None] = {}
    for name in decision.kept:
        if decision.removed(name):
            for m in by_name[name].members:
                if m.role == "in":
                    consumers.setdefault(m.module)
    order = [n for n, _ in dense.named_modules() if n in consumers]
    rows = _kept_rows(decision, groups, dense)
    was = (pruned.training, dense.training)
    work = copy.deepcopy(pruned).eval()
    dense.eval()
    reports = []
    try:
        for n in order:
            started = time.perf_counter()
            module = work.get_submodule(n)
            _check_consumer(module, n)
            cols = torch.arange(_weight_columns(module).shape[0])
            center = getattr(module, "bias", None) is not None
            acc = _collect(dense, work, batches, [n], {n: cols}, {n: rows.get(n)}, {n: center})[n]
            problem = acc.problem(None, ridge, center=center, name=n)
            keep = np.ones(problem.n_units, dtype=bool)
            before = problem.error_of_weights(_weight_columns(module).numpy())
            weights = problem.refit(keep)
            _set_weight_columns(module, cols, torch.as_tensor(weights))
            bias = problem.refit_bias(keep, weights)
            if bias is not None:
                with torch.no_grad():
                    module.bias.copy_(torch.as_tensor(bias).to(module.bias.dtype))
            report = {"layer": n, "inputs": problem.n_units, "objective": problem.error(keep), "before": before,
                      "relative": problem.relative(problem.error(keep)), "seconds": time.perf_counter() - started}
            reports.append(report)
            if progress is not None:
                progress(report)
    finally:
        pruned.train(was[0])
        dense.train(was[1])
    return work, reports


# ---------------------------------------------------------------------------------------------- the decision
class ReconstructDecision(MethodDecision):
    """``reconstruct``: kept units and re-fitted consumers (weights and bias) of every group by
    :func:`reconstruct`, on ``calibration_size`` inputs sampled (seeded) from the data it is given.

    Options: ``solver`` (local, greedy, exact, auto), ``allocation`` (a :data:`WIDTH_ALLOCATIONS` name),
    ``calibration_size``, ``ridge`` (>= 0; the default is relative, see :mod:`optprune.reconstruction._problem`),
    ``time_limit`` and ``max_rounds`` (per group, local search), ``min_keep``, ``bound`` (the certified lower
    bound of the heuristic solvers, :data:`optprune.reconstruction._search.BOUNDS`: ``cheap``, the default, is the
    monotone and spectral bounds from the inverse the elimination starts from; ``full`` adds the perspective
    relaxation's certificate, often tighter where outputs are few, at several linear solves per group).
    """

    fixed_scorer = None
    options: ClassVar[dict[str, tuple[Any, list[Constraint | None]]]] = {
        "solver": ("local", [Options(METHODS)]),
        "allocation": ("uniform", [Options(WIDTH_ALLOCATIONS.names())]),
        "calibration_size": (512, [Interval(int, 1, None)]),
        "ridge": ("auto", [Options(("auto",)), Interval(float, 0.0, None)]),
        "time_limit": (10.0, [Interval(float, 0.0, None, closed="neither")]),
        "max_rounds": (1000, [Interval(int, 0, None)]),
        "min_keep": (1, [Interval(int, 1, None)]),
        "params": (None, [Interval(float, 0.0, 1.0, closed="right"), None]),
        "bound": ("cheap", [Options(BOUNDS)]),
    }

    def prune(self, model: nn.Module, data: Any, input_shape: Sequence[int], ratio: float, *, seed: int = 0,
              progress: Progress | None = None, **options: Any) -> MethodOutcome:
        opts = self.check_options(options, "decision 'reconstruct'")
        X, y = data if isinstance(data, tuple) else (data, None)
        rng = np.random.default_rng(seed)
        calib = rng.choice(len(X), size=min(opts["calibration_size"], len(X)), replace=False)
        calibration = (X[calib], None if y is None else y[calib])
        solver_options: dict[str, Any] = {}
        if opts["solver"] in ("local", "auto"):
            solver_options = {"time_limit": opts["time_limit"], "max_rounds": opts["max_rounds"]}
        if opts["solver"] in ("local", "greedy", "auto"):
            solver_options["bound"] = opts["bound"]
        started = time.perf_counter()
        pruned, decision, reports = reconstruct(
            model, calibration, ratio, input_shape, solver=opts["solver"], allocation=opts["allocation"],
            ridge=opts["ridge"], min_keep=opts["min_keep"], params=opts["params"], progress=progress,
            **solver_options,
        )
        info = {"solver": opts["solver"], "allocation": opts["allocation"], "calibration_size": len(calib),
                "objective": float(sum(r["objective"] for r in reports)),
                "relative_objective": float(sum(r["relative"] for r in reports)),
                "seconds": time.perf_counter() - started, "groups": reports}
        return MethodOutcome(pruned, decision, info)


RECONSTRUCT = ReconstructDecision()
