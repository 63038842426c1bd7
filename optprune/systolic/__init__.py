"""Block-to-systolic co-design: a cycle model that matches SCALE-Sim, block pruning at array tile sizes, exact selection and assignment.

* :mod:`._cycles`: SCALE-Sim 3.0.0's compute cycles in closed form per
  dataflow (ws / os / is), per layer and per ``R x C`` weight block, vectorised
  (:func:`compute_cycles`, :func:`block_layout`).
* :mod:`._gemms`: the GEMMs ``M x K x N`` of a Network, a torch model or a
  JSON list.
* :mod:`._select`: keep blocks under a cycle budget, exactly (a MIP on any
  backend) or greedily; unstructured magnitude pruning at the same cycles.
* :mod:`._reconstruct`: the layer-output reconstruction error (least-squares
  re-fit) as the selection objective: per column-block error curves, exact
  allocation (MILP) vs greedy; :mod:`._objectives` names the objectives.
* :mod:`._memory`: the optional memory term: SRAM accesses per operand
  (SCALE-Sim's counts), DRAM traffic and bandwidth stalls (a double-buffered
  roofline), for dense and pruned layers.
* :mod:`._assign`: layer tiles on several arrays, MIP / CP-SAT vs LPT.
* :mod:`._blocks` (torch): block scores from per-weight importances, applying
  a decision with its mask, fine-tuning with the mask held.

The formulations live in :mod:`optprune.formulations.systolic`.
"""

from optprune.systolic._assign import Assignment, assign_tiles, lpt_assign, makespan, tile_durations
from optprune.systolic._cycles import (
    DATAFLOWS,
    MAX_BLOCKS,
    MAX_DIM,
    ArraySpec,
    BlockLayout,
    block_layout,
    block_sums,
    compute_cycles,
    exact_cycles,
    fold_counts,
    parse_array,
    parse_arrays,
)
from optprune.systolic._gemms import (
    SUPPORTED_LAYERS,
    GemmLayer,
    gemms_from_json,
    gemms_from_network,
    gemms_from_torch,
    load_gemms,
)
from optprune.systolic._memory import MemorySpec, layer_memory, pruned_memory, sram_accesses
from optprune.systolic._objectives import BLOCK_OBJECTIVES, ReconstructionObjective, ScoreObjective
from optprune.systolic._reconstruct import (
    BlockCurves,
    block_curves,
    greedy_reconstruction,
    refit_operands,
    select_blocks_reconstruction,
)
from optprune.systolic._select import (
    BlockSelection,
    budget_cycles,
    greedy_blocks,
    row_blocks,
    select_blocks,
    unstructured_at_cycles,
)

_TORCH_NAMES = ("apply_blocks", "apply_refit", "apply_weight_masks", "block_scores", "finetune_masked",
                "gemm_modules", "layer_biases", "layer_inputs", "operand_weights", "save_block_mask",
                "weight_importance")


def __getattr__(name: str):
    """Torch-side names load torch only when asked for."""
    if name in _TORCH_NAMES:
        from optprune.systolic import _blocks

        return getattr(_blocks, name)
    raise AttributeError(f"module 'optprune.systolic' has no attribute {name!r}")


__all__ = [
    "BLOCK_OBJECTIVES",
    "DATAFLOWS",
    "MAX_BLOCKS",
    "MAX_DIM",
    "MemorySpec",
    "SUPPORTED_LAYERS",
    "ArraySpec",
    "Assignment",
    "BlockCurves",
    "BlockLayout",
    "BlockSelection",
    "GemmLayer",
    "assign_tiles",
    "block_curves",
    "block_layout",
    "block_sums",
    "budget_cycles",
    "compute_cycles",
    "exact_cycles",
    "fold_counts",
    "gemms_from_json",
    "gemms_from_network",
    "gemms_from_torch",
    "greedy_blocks",
    "greedy_reconstruction",
    "load_gemms",
    "layer_memory",
    "lpt_assign",
    "makespan",
    "parse_array",
    "parse_arrays",
    "pruned_memory",
    "ReconstructionObjective",
    "refit_operands",
    "row_blocks",
    "ScoreObjective",
    "select_blocks",
    "select_blocks_reconstruction",
    "sram_accesses",
    "tile_durations",
    "unstructured_at_cycles",
    *_TORCH_NAMES,
]
