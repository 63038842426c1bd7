"""From a torch model to a structure-search problem, and the pruner's ``decision="search"`` hook.

The model is traced into dependency groups by :func:`optprune.structure.dependency_groups`
(units removed together; residual connections tie spaces into one group). Every
module with parameters contributes its exact cost in terms of the group widths.
A module's input and output widths are sums of group segments,
``in = sum_s f_s k_s + F_in`` (``f_s``: features per unit, ``H*W`` after a
flatten; ``F_in``: features owned by no prunable group), and likewise ``out``:

* ``nn.Linear``: parameters ``in * out + bias * out``; multiply-accumulates
  ``P * in * out`` with ``P`` output positions (tokens);
* ``nn.Conv2d`` (``groups=1``): parameters ``kh kw in out + bias * out``,
  MACs ``H' W' kh kw in out``; depthwise: ``kh kw C + bias * C``, MACs ``H' W' kh kw C``;
* ``BatchNorm``: ``2 C`` parameters (affine);
* :class:`~optprune.structure.MultiHeadSelfAttention`: its projections are
  Linear layers; the score and value products add ``2 T^2 d H`` MACs for ``H``
  kept heads of size ``d`` over ``T`` tokens;
* any other module with parameters must touch no prunable group (its
  parameters are a constant), else :class:`~optprune.errors.UnsupportedLayerError`.

The products expand into pairwise terms ``f_s f_t k_s k_t`` between groups,
one-group terms and constants, so the parameter count of the problem equals
``sum(p.numel() for p in model.parameters())`` at every plan: the budget a
plan meets is the budget the pruned model meets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations.structure_search import Bilinear, LayerCost, SearchProblem, WidthGroup, width_grid
from optprune.scoring import normalize as normalize_scores
from optprune.scoring import score_model
from optprune.search._core import solve_search
from optprune.search._latency import latency_layers
from optprune.search._specs import SUPPORTED_COST_MODULES, ModuleSpec, module_specs
from optprune.structure import MultiHeadSelfAttention

__all__ = [
    "ModuleSpec",
    "module_specs",
    "problem_from_model",
    "model_scores",
    "magnitude_scores",
    "search_decision",
    "SUPPORTED_COST_MODULES",
]

class _Terms:
    """Accumulates ``coef * (width of a) * (width of b)`` terms keyed by ends (group name or None)."""

    def __init__(self) -> None:
        self.coef: dict[tuple[str | None, str | None], dict[str, np.ndarray]] = defaultdict(
            lambda: defaultdict(lambda: np.zeros(4))
        )

    def product(self, resource: str, scale: float, left, right) -> None:
        """``scale * (sum_s f_s k_s + F_l) * (sum_t f_t k_t + F_r)``; left/right = (segments, fixed)."""
        (lseg, lfix), (rseg, rfix) = left, right
        for s, fs in lseg:
            for t, ft in rseg:
                self.coef[(s, t)][resource][0] += scale * fs * ft
            self.coef[(s, None)][resource][1] += scale * fs * rfix
        for t, ft in rseg:
            self.coef[(None, t)][resource][2] += scale * lfix * ft
        self.coef[(None, None)][resource][3] += scale * lfix * rfix

    def linear(self, resource: str, scale: float, side) -> None:
        segs, fixed = side
        self.product(resource, scale, (segs, fixed), ([], 1))

    def layers(self, prefix: str) -> list[LayerCost]:
        out = []
        for (a, b), per in self.coef.items():
            costs = {}
            for r, (io, i, o, c) in per.items():
                if io or i or o or c:
                    costs[r] = Bilinear(in_out=float(io), in_=float(i), out=float(o), const=float(c))
            if not costs:
                continue
            label = f"{prefix}[{a or '-'}->{b or '-'}]"
            out.append(LayerCost(label, a if a is not None else 0, b if b is not None else 0, costs))
        return out


def _cost_layers(specs: list[ModuleSpec]) -> list[LayerCost]:
    layers = []
    for spec in specs:
        terms = _Terms()
        mod = spec.module
        ins, outs = (spec.in_segments, spec.fixed_in), (spec.out_segments, spec.fixed_out)
        if isinstance(mod, nn.Linear) or (isinstance(mod, nn.Conv2d) and mod.groups == 1):
            k = 1 if isinstance(mod, nn.Linear) else int(np.prod(mod.kernel_size))
            terms.product("params", k, ins, outs)
            terms.product("flops", k * spec.positions, ins, outs)
            if mod.bias is not None:
                terms.linear("params", 1, outs)
        elif isinstance(mod, nn.Conv2d) and mod.groups == mod.in_channels == mod.out_channels:
            k = int(np.prod(mod.kernel_size))
            chans = (spec.channel_segments or spec.out_segments, spec.fixed_channels
                     if spec.channel_segments else spec.fixed_out)
            terms.linear("params", k + (mod.bias is not None), chans)
            terms.linear("flops", k * spec.positions, chans)
        elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            if mod.affine:
                terms.linear("params", 2, (spec.channel_segments, spec.fixed_channels))
        elif isinstance(mod, nn.Conv2d):  # grouped convolution: frozen by the dependency graph
            terms.coef[(None, None)]["params"][3] += sum(p.numel() for p in mod.parameters(recurse=False))
            terms.coef[(None, None)]["flops"][3] += (
                mod.weight.numel() * int(np.prod(spec.out_shape[1:])) if spec.out_shape else 0
            )
        else:
            terms.coef[(None, None)]["params"][3] += sum(p.numel() for p in mod.parameters(recurse=False))
        layers.extend(terms.layers(spec.name))
    return layers


def _attention_flops(model: nn.Module, specs: list[ModuleSpec]) -> list[LayerCost]:
    """``2 T^2 d H`` MACs of every MultiHeadSelfAttention (H from its heads group, or fixed)."""
    by_name = {s.name: s for s in specs}
    layers = []
    for name, module in model.named_modules():
        if not isinstance(module, MultiHeadSelfAttention):
            continue
        q = by_name.get(f"{name}.q_proj")
        if q is None or len(q.out_shape) < 2:
            continue
        tokens = int(np.prod(q.out_shape[:-1]))
        coef = 2.0 * tokens * tokens
        heads = [(s, f) for s, f in q.out_segments]
        if heads:
            for s, f in heads:  # f = head_dim features per head
                layers.append(LayerCost(f"{name}[attention]", 0, s, {"flops": Bilinear(out=coef * f)}))
        layers.append(LayerCost(f"{name}[attention-fixed]", 0, 0, {"flops": Bilinear(const=coef * q.fixed_out)}))
    return layers


def _per_group(value, name: str):
    """A per-group setting given as one value or a mapping (groups not in it get 1)."""
    return value.get(name, 1) if isinstance(value, Mapping) else value


def problem_from_model(
    model: nn.Module,
    scores: Mapping[str, np.ndarray],
    *,
    input_shape: Sequence[int] | None = None,
    round_to: int | Mapping[str, int] = 1,
    min_width: int | float | Mapping[str, int | float] = 1,
    widths: Mapping[str, Sequence[int]] | None = None,
    latency=None,
    name: str = "",
    values: Mapping[str, np.ndarray] | None = None,
) -> SearchProblem:
    """The structure-search problem of ``model`` with the given per-group ``scores``.

    ``scores`` keys are dependency-group names (as :func:`optprune.scoring.score_model`
    returns them); prunable groups without scores keep their full width. If
    the keys are not group names but there are as many as prunable groups,
    they are matched in forward order (sizes checked). ``latency``: None, a
    mapping ``module name -> LayerCost`` (from :func:`optprune.search.latency_layers`),
    or True to measure (cached) with the default settings. ``values``: per
    group, its value at every width ``0..n`` in place of the sum of kept
    scores (:class:`~optprune.search.WidthGroup`; the scores then rank the units).
    """
    groups, specs = module_specs(model, input_shape)
    scores = _match_scores(groups, scores)
    wgroups = []
    for g in groups:
        if g.name not in scores:
            continue
        sc = np.asarray(scores[g.name], dtype=np.float64).reshape(-1)
        if widths is not None and g.name in widths:
            grid = np.asarray(widths[g.name], dtype=np.int64)
        else:
            grid = width_grid(g.width, int(_per_group(round_to, g.name)), _per_group(min_width, g.name))
        wgroups.append(WidthGroup(g.name, sc, grid, None if values is None else values.get(g.name)))
    searched = {g.name for g in wgroups}
    # groups without scores are fixed at full width: fold them into the fixed features
    full = {g.name: g.width for g in groups}
    for spec in specs:
        for attr, fixed in (("in_segments", "fixed_in"), ("out_segments", "fixed_out"),
                            ("channel_segments", "fixed_channels")):
            segs = getattr(spec, attr)
            keep = [(s, f) for s, f in segs if s in searched]
            drop = sum(full[s] * f for s, f in segs if s not in searched)
            setattr(spec, attr, keep)
            setattr(spec, fixed, getattr(spec, fixed) + drop)
    layers = _cost_layers(specs) + _attention_flops(model, specs)
    if latency is not None and latency is not False:
        grids = {g.name: g.widths for g in wgroups}
        if latency is True:
            latency = latency_layers(model, input_shape=input_shape, grids=grids, specs=specs)
        layers += list(latency.values()) if isinstance(latency, Mapping) else list(latency)
    return SearchProblem(tuple(wgroups), tuple(layers), name=name or type(model).__name__)


def _match_scores(groups, scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [g.name for g in groups]
    if all(k in names for k in scores):
        out = dict(scores)
    elif len(scores) == len(groups):
        out = dict(zip(names, scores.values()))
    else:
        raise InvalidParameterError(
            f"scores are keyed {list(scores)[:6]}..., which are not the model's prunable groups {names}"
        )
    for g in groups:
        if g.name in out and np.asarray(out[g.name]).size != g.width:
            raise ShapeMismatchError(
                f"group {g.name!r} has {g.width} units but {np.asarray(out[g.name]).size} scores were given"
            )
    return out


def magnitude_scores(model: nn.Module, input_shape: Sequence[int] | None = None) -> dict[str, np.ndarray]:
    """L2 norm of each unit's outgoing-row weights and bias (its ``out`` members), per prunable group."""
    groups, _ = module_specs(model, input_shape)
    modules = dict(model.named_modules())
    out = {}
    for g in groups:
        total = torch.zeros(g.width)
        for m in g.members:
            if m.role != "out":
                continue
            mod = modules[m.module]
            w = mod.weight.detach().reshape(mod.weight.shape[0], -1)
            rows = w.pow(2).sum(1) + (mod.bias.detach().pow(2) if getattr(mod, "bias", None) is not None else 0)
            idx = m.indices(torch.arange(g.width))
            total += rows[idx].reshape(g.width, m.factor).sum(1)
        out[g.name] = total.sqrt().numpy().astype(np.float64)
    return out


def model_scores(model: nn.Module, scorer: str = "magnitude", calibration=None, *,
                 input_shape: Sequence[int] | None = None, normalize: str = "none") -> dict[str, np.ndarray]:
    """Scores per group from :func:`optprune.scoring.score_model`, normalised (``optprune.scoring.normalize``)."""
    scores = score_model(model, scorer, calibration, input_shape=input_shape)
    return normalize_scores(scores, normalize) if normalize != "none" else scores


def search_decision(
    model: nn.Module,
    scores: Mapping[str, np.ndarray],
    budgets: Mapping[str, float] | float,
    *,
    solver: str = "highs",
    method: str = "exact",
    input_shape: Sequence[int] | None = None,
    relative: bool = True,
    round_to: int | Mapping[str, int] = 1,
    min_width: int | float | Mapping[str, int | float] = 1,
    latency=None,
    time_limit: float | None = None,
    mip_gap: float = 1e-6,
    return_result: bool = False,
):
    """Kept unit indices per group (``{group name: sorted indices}``) for the pruner.

    ``budgets``: ``{"params": 0.5, "flops": ..., "latency": ...}`` (fractions of
    the unpruned model unless ``relative=False``) or one float, read as a
    parameter fraction. ``method``: ``exact`` (the MILP), ``uniform`` or
    ``global`` (baselines at the same budget). With ``return_result`` the full
    :class:`~optprune.search.SearchResult` is returned alongside.
    """
    if not isinstance(budgets, Mapping):
        budgets = {"params": float(budgets)}
    if "latency" in budgets and latency is None:
        latency = True
    problem = problem_from_model(model, scores, input_shape=input_shape, round_to=round_to, min_width=min_width,
                                 latency=latency)
    result = solve_search(problem, budgets, solver, relative=relative, method=method, time_limit=time_limit,
                          mip_gap=mip_gap)
    decision = {k: [int(i) for i in v] for k, v in result.kept.items()}
    return (decision, result) if return_result else decision
