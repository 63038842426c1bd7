r"""Global structure search (per-group kept widths under resource budgets) as an exact MILP.

A package of its parts: ``_costs`` (layer costs), ``_problem`` (the problem and
its compilation on decision classes), ``_forest`` (belief propagation),
``_reduction`` (Lagrangian reduction), ``_assembly`` (the MILP, built with
:class:`~optprune.formulations.ModelBuilder`) and ``_milp``
(:func:`build_search_milp`). Nothing here solves: the smallest feasible budgets
(:func:`optprune.search.minimum_resources`) and the solves are in :mod:`optprune.search`.

The problem
-----------
A network has prunable *groups* ``g`` (a hidden layer's neurons, a convolution's
output channels, the channels of a residual stream, ...), each with ``n_g``
units and one importance score per unit ``s_{g,1..n_g}`` (any scorer, after any
normaliser). The decision is how many units each group keeps, ``k_g``, from an
allowed grid ``K_g`` (a minimum width, multiples of ``round_to``, head counts
divisible by the key/value groups, ...).

Every resource below depends on the *counts* ``k`` only, never on which units
are kept, so for a fixed width the best units are the ``k`` highest-scoring
ones and keeping width ``k`` is worth the prefix sum of the sorted scores

.. math::  v_g(k) = \sum_{i \le k} s_{g,(i)},\qquad s_{g,(1)} \ge s_{g,(2)} \ge \dots

A group may instead be given its value at every width directly, ``v_g(k) =
values_g[k]`` (:meth:`WidthGroup.from_curve`): any per-width objective, e.g.
minus the error of re-fitting the consumer layer when ``k`` units stay
(:func:`optprune.search.allocate_widths`), which models the interactions
between kept units that no sum of per-unit scores can. Nothing below depends on
where ``v_g`` comes from: the MILP reads it at the allowed widths only.

A resource ``r`` (parameters, FLOPs, latency, ...) is a sum over *layers*
``l``, each reading an input width and writing an output width, where each end
is a group's width or a fixed width (the network input, the classes):

.. math::  R_r(k) = D_r + \sum_l c_{l,r}\big(k_{\mathrm{in}(l)}, k_{\mathrm{out}(l)}\big)

with ``c`` :class:`Bilinear` for parameters and FLOPs (``(k_in + 1) k_out`` for
``nn.Linear``, ``k_in k_out kh kw + k_out`` for ``nn.Conv2d``, ``k_in k_out kh kw
H' W'`` multiply-accumulates) or a :class:`Table` (measured latency). The
structure search of HALP (Shen et al., NeurIPS 2022, greedy latency knapsack)
and of the global threshold of FLAP (An et al., AAAI 2024) / Torch-Pruning
(Fang et al., CVPR 2023) is, solved exactly:

.. math::

    \max_k \sum_g v_g(k_g)\quad\text{s.t.}\quad R_r(k) \le B_r\ \ \forall r,\qquad
    k_g \in K_g,\qquad k_g = k_h\ \text{for tied groups } (g, h).

The MILP
--------
Tied groups form one *decision class* ``c`` (union-find over the ties) with the
grid ``K_c`` = intersection of its members' grids and the value the sum of
their values: they share one set of selection variables, which is the same as
the equality rows ``y_{g,i} = y_{h,i}`` between their node selections, with the
duplicate columns substituted out. Variables: ``y_{c,i} \in \{0,1\}`` (class
``c`` keeps width ``K_c[i]``); for every pair of distinct classes ``(c, d)``
joined by some layer (parallel layers merged, their costs added),
``x_{cd,ij} \in [0, 1]`` (``c`` keeps ``K_c[i]`` and ``d`` keeps ``K_d[j]``):

.. math::

    \max\ & \sum_c \sum_i v_c(K_c[i])\, y_{c,i} \\
    \text{s.t. } & \textstyle\sum_i y_{c,i} = 1 && \text{(one width per class)} \\
    & \textstyle\sum_j x_{cd,ij} = y_{c,i}\ \ \forall i, \qquad \sum_i x_{cd,ij} = y_{d,j}\ \ \forall j
      && \text{(marginals)} \\
    & \textstyle\sum_c u_{c,r}^\top y_c + \sum_{(c,d)} \langle C_{cd,r}, x_{cd}\rangle \le B_r - D_r
      && \text{(budget rows)}

where ``u_{c,r}`` collects the layers with one class end (the other fixed, or
both ends the same class) and ``C_{cd,r}[i, j]`` is the exact cost of the pair
of widths ``(K_c[i], K_d[j])`` summed over the layers joining ``c`` and ``d``.

Why it is exact (no relaxation of the bilinear terms): for integral ``y`` the
marginal rows force ``x_{cd} = y_c y_d^\top``. Row ``i^*`` (the chosen width of
``c``) of ``x_{cd}`` sums to 1 and every other row to 0, column ``j^*`` sums to
1 and every other column to 0, and ``x \ge 0``, so ``x_{cd,i^*j^*} = 1`` is the
only nonzero. Hence every budget row evaluates the true cost
``c_{l,r}(K_c[i^*], K_d[j^*])`` of the chosen widths, whatever the form of
``c`` (bilinear, table), and ``x`` need not be declared integer. For a chain
(an MLP, a plain CNN) this is the layered graph of the resource-constrained
longest-path problem: nodes (layer, width), arcs between consecutive layers'
widths carrying the pair's cost, the marginal rows are flow conservation for
one unit of flow from the first layer to the last (Adams & Johnson's
linearisation of a pairwise 0-1 program; on a path its constraint matrix without
the budget rows is a network matrix, so the LP relaxation is tight but for the
budget rows).

Exact reduction (optional, on by default)
-----------------------------------------
Dualising the budget rows with multipliers ``\lambda \ge 0`` leaves, when the
class graph is a forest (chains, trees), a pairwise problem max-product belief
propagation solves exactly, together with the *max-marginal* of every node and
arc: the best Lagrangian value of any width vector using that node/arc. For a
feasible ``k`` with value ``V(k)``:
``V(k) \le V(k) + \lambda^\top (B - R(k)) \le \mathrm{maxmarginal}_\lambda(a)``
for each node/arc ``a`` it uses. Given a feasible incumbent of value
``V_{inc}`` (from the Lagrangian primal solutions, a greedy fill, or supplied
by the caller), any node/arc whose bound (the minimum over every multiplier
vector tried) is below ``V_{inc}`` lies in no solution at least as good as the
incumbent, hence in no optimal solution, and is dropped (a relative tolerance of
1e-9 guards against rounding). The incumbent's own nodes and arcs always stay,
so the reduced MILP keeps every optimal solution and the incumbent. This is
reduced-cost fixing in Lagrangian form (Beasley & Christofides, Networks 1989,
for the resource-constrained shortest path).
"""

from optprune.formulations.structure_search._assembly import Assembly, StructureSearchModel
from optprune.formulations.structure_search._costs import (
    Bilinear,
    Cost,
    LayerCost,
    Table,
    conv_costs,
    cost_from_dict,
    linear_costs,
)
from optprune.formulations.structure_search._milp import build_search_milp
from optprune.formulations.structure_search._problem import CompiledProblem, SearchProblem, WidthGroup, width_grid
from optprune.formulations.structure_search._reduction import ReductionResult, lagrangian_reduction

__all__ = [
    "Assembly",
    "Bilinear",
    "CompiledProblem",
    "Cost",
    "LayerCost",
    "ReductionResult",
    "SearchProblem",
    "StructureSearchModel",
    "Table",
    "WidthGroup",
    "build_search_milp",
    "conv_costs",
    "cost_from_dict",
    "lagrangian_reduction",
    "linear_costs",
    "width_grid",
]
