r"""Global width allocation: per-group error curves as the objective of the exact width search.

Given, for every prunable group ``g``, the error ``E_g(k)`` of its consumer
layer when it keeps ``k`` units (``k = 0..n_g``; e.g. the least-squares
reconstruction error of :func:`optprune.reconstruction.elimination_path`, whose
kept sets are nested along an elimination order), the widths minimise the
summed relative error under the budgets of the structure search
(:mod:`optprune.formulations.structure_search`: parameters, FLOPs, measured
latency, expected unstable ReLUs):

.. math::

    \min_k \sum_g \frac{E_g(k_g)}{T_g}\quad\text{s.t.}\quad R_r(k) \le B_r\ \ \forall r,\qquad k_g \in K_g,
    \qquad T_g = \operatorname{tr}(W_g^\top G_g W_g),

solved as the search's MILP with the value of width ``k`` given directly,
``v_g(k) = (E_g(0) - E_g(k)) / T_g`` (the fraction of the consumer's output
energy the kept units still explain; the constant ``E_g(0) / T_g`` does not
move the optimum). This is the exact version of FLAP's adaptive structure
(An et al., AAAI 2024, section 3.2: per-layer standardised scores cut by one
global threshold) and of OSSCAR's layer-wise budgets (Meng et al., ICML 2024),
with the objective a sum of per-group curves instead of a sum of unit scores,
so interactions between a group's kept units (redundancy, compensation by the
re-fit) count.

Why normalise (``normalize=True``, the default): the curves are squared errors
of different layers, whose outputs have different scales (784 input pixels vs
10 logits, a conv map of 28x28 positions vs a pooled one, weights of different
norms); summed as they are, the layer with the largest output energy takes the
whole budget whatever its relative loss. Divided by ``T_g`` (the consumer's
output energy on the calibration set, ``E_g(0)`` when nothing is kept: then
nothing is left to re-fit), every curve is the fraction of its layer's output
lost, invariant to rescaling the layer (``W -> cW`` scales both by ``c^2``), the
way FLAP's standardisation makes its fluctuation scores comparable across
layers. ``normalize=False`` sums the raw errors, for curves already in one unit
(e.g. all measured at the network's output).

Here rather than in :mod:`optprune.reconstruction`: the allocation needs only
arrays (curves, orders) and the search's cost model, and any per-width
objective can use it (measured accuracy by width, another pruner's loss); the
reconstruction package computes curves and the pruner composes the two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError
from optprune.formulations.structure_search import LayerCost, SearchProblem, WidthGroup, width_grid
from optprune.search._core import SearchResult, chain_layers, solve_search
from optprune.search._unstable import unstable_layers

__all__ = ["allocate_widths", "error_values"]


def error_values(
    curves: Mapping[str, np.ndarray], *, energy: Mapping[str, float] | None = None, normalize: bool = True
) -> dict[str, np.ndarray]:
    r"""The search's value per width of each group: ``v_g(k) = (E_g(0) - E_g(k)) / T_g`` (module docstring).

    ``curves[g][k]`` is the error at width ``k = 0..n_g``. ``energy[g]`` is
    ``T_g = tr(W^T G W)`` of the consumer; missing groups (or ``energy=None``)
    use ``E_g(0)``. A group with no output energy (``T_g <= 0``) is worth 0 at
    every width. ``normalize=False``: ``T_g = 1``.
    """
    out = {}
    for name, curve in curves.items():
        e = np.asarray(curve, dtype=np.float64).reshape(-1)
        if e.size < 2:
            raise ShapeMismatchError(
                f"allocate_widths: the error curve of group {name!r} needs one entry per width 0..n (n >= 1); "
                f"got {e.size}"
            )
        if not np.all(np.isfinite(e)):
            raise ShapeMismatchError(f"allocate_widths: the error curve of group {name!r} has non-finite entries")
        total = 1.0
        if normalize:
            total = float(energy[name]) if energy is not None and name in energy else float(e[0])
        out[name] = np.zeros_like(e) if total <= 0 else (e[0] - e) / total
    return out


def _orders(curves: Mapping[str, np.ndarray], orders: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    out = {}
    for name, curve in curves.items():
        n = np.asarray(curve).size - 1
        if orders is None or name not in orders:
            out[name] = np.arange(n)
            continue
        o = np.asarray(orders[name], dtype=np.int64).reshape(-1)
        if o.size != n or not np.array_equal(np.sort(o), np.arange(n)):
            raise ShapeMismatchError(
                f"allocate_widths: orders[{name!r}] must be a permutation of the group's {n} units "
                f"(its curve has {n + 1} entries); got {o.size} entries"
            )
        out[name] = o
    return out


def _rank_scores(order: np.ndarray) -> np.ndarray:
    scores = np.empty(order.size)
    scores[order] = np.arange(order.size, 0, -1, dtype=np.float64)
    return scores


def _clamped(min_width: Any, sizes: Mapping[str, int]) -> Any:
    """Per group: a whole-unit ``min_width`` above the group's size is its size (it keeps every unit)."""
    def one(value: Any, n: int) -> Any:
        return min(int(value), n) if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else value

    if isinstance(min_width, Mapping):
        return {name: one(v, sizes[name]) if name in sizes else v for name, v in min_width.items()}
    return {name: one(min_width, n) for name, n in sizes.items()}


def _per_group(value: Any, name: str, what: str) -> Any:
    if isinstance(value, Mapping):
        if name not in value:
            raise InvalidParameterError(
                f"allocate_widths: {what} has no entry for group {name!r}; got entries for {sorted(value)}"
            )
        return value[name]
    return value


def allocate_widths(
    curves: Mapping[str, np.ndarray],
    structure: Any,
    budgets: Mapping[str, float] | float,
    solver: str = "highs",
    *,
    orders: Mapping[str, np.ndarray] | None = None,
    energy: Mapping[str, float] | None = None,
    normalize: bool = True,
    relative: bool = True,
    widths: Mapping[str, Sequence[int]] | None = None,
    round_to: int | Mapping[str, int] = 1,
    min_width: int | float | Mapping[str, int | float] = 1,
    ties: Sequence[Sequence[str]] = (),
    frequencies: Mapping[str, np.ndarray] | None = None,
    input_shape: Sequence[int] | None = None,
    latency: Any = None,
    method: str = "exact",
    time_limit: float | None = None,
    mip_gap: float = 1e-6,
    return_result: bool = False,
) -> dict[str, int] | tuple[dict[str, int], SearchResult]:
    """Kept width per group minimising the summed (relative) error of ``curves`` under ``budgets``.

    ``curves``: ``{group: E[0..n]}``, the error when the group keeps ``k``
    units (module docstring). ``structure``: the costs, as for
    :func:`optprune.search.search_widths` (a list of :class:`LayerCost` whose
    ends name the groups, or ``{"input": n_in, "output": n_out}`` for an MLP
    chaining the groups in the order of ``curves``), or a torch model, whose
    dependency groups (named as :func:`optprune.structure.dependency_groups`
    names them) are costed exactly by :func:`optprune.search.problem_from_model`
    (groups without a curve keep their full width; ``input_shape`` and
    ``latency`` go there). ``budgets``: ``{"params": 0.5, "flops": ...,
    "latency": ..., "unstable": ...}``, fractions of the unpruned model unless
    ``relative=False``, or one float, a parameter fraction. ``orders[g]``: the
    units by decreasing priority (the reverse of the elimination order; default
    ``0..n-1``), which decides the kept units of a width, the expected unstable
    ReLUs of ``frequencies`` (:func:`optprune.search.unstable_layers`) and
    ``SearchResult.kept``. ``energy`` / ``normalize``: :func:`error_values`.
    ``method``: ``exact`` (the MILP on backend ``solver``), ``uniform`` or
    ``global`` (the baselines: a threshold on the curves' standardised marginal
    gains). ``widths``, ``round_to``, ``min_width``, ``ties``, ``time_limit``
    and ``mip_gap`` are those of :func:`optprune.search.search_widths`; a
    whole-unit ``min_width`` above a group's size keeps the whole group.

    Returns ``{group: width}``, and the :class:`SearchResult` with ``return_result``
    (its ``objective`` is ``sum_g v_g(k_g)``).
    """
    if not curves:
        raise InvalidParameterError("allocate_widths: curves is empty; give one error curve per prunable group")
    if not isinstance(budgets, Mapping):
        budgets = {"params": float(budgets)}
    values = error_values(curves, energy=energy, normalize=normalize)
    order = _orders(curves, orders)
    min_width = _clamped(min_width, {name: v.size - 1 for name, v in values.items()})
    scores = {name: _rank_scores(o) for name, o in order.items()}
    extra: list[LayerCost] = unstable_layers(scores, frequencies) if frequencies is not None else []
    if hasattr(structure, "named_modules"):  # a torch model: its exact costs, torch-facing half of the search
        if ties:
            raise InvalidParameterError(
                "allocate_widths: ties are given by the model's dependency groups; pass ties only with a list of "
                f"LayerCost; got {list(ties)}"
            )
        from optprune.search._torch import problem_from_model

        base = problem_from_model(structure, scores, input_shape=input_shape, round_to=round_to,
                                  min_width=min_width, widths=widths, latency=latency, values=values)
        problem = SearchProblem(base.groups, (*base.layers, *extra), name=base.name)
    else:
        groups = []
        for name, v in values.items():
            n = v.size - 1
            if widths is not None and name in widths:
                grid = np.asarray(widths[name], dtype=np.int64)
            else:
                grid = width_grid(n, int(_per_group(round_to, name, "round_to")),
                                  _per_group(min_width, name, "min_width"))
            groups.append(WidthGroup.from_curve(name, v, order[name], grid))
        if isinstance(structure, Mapping):
            if set(structure) != {"input", "output"}:
                raise InvalidParameterError(
                    "allocate_widths: parameter 'structure' as a mapping must be {'input': n_in, 'output': n_out} "
                    f"(an MLP chain); got keys {sorted(structure)}"
                )
            layers = chain_layers([g.name for g in groups], structure["input"], structure["output"])
        else:
            layers = list(structure)
        problem = SearchProblem(tuple(groups), (*layers, *extra), tuple(tuple(t) for t in ties))
    result = solve_search(problem, budgets, solver, relative=relative, method=method, time_limit=time_limit,
                          mip_gap=mip_gap)
    return (dict(result.widths), result) if return_result else dict(result.widths)

