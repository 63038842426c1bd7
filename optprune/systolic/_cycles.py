"""Compute cycles of a GEMM on an R x C systolic array: SCALE-Sim 3.0.0's closed forms, per layer and per block.

A layer is a GEMM ``M x K x N``: an input operand of ``M`` rows and ``K``
columns (batch rows for a Linear; output positions times batch for a
convolution, its im2col matrix) times a weight operand ``K x N`` (``W^T``;
``N`` outputs). SCALE-Sim (Samajdar et al., "A systematic methodology for
characterizing scalability of DNN accelerators using SCALE-Sim", ISPASS 2020;
package ``scalesim`` 3.0.0, ``compute/systolic_compute_{ws,os,is}.py``) folds
the operands into array-sized tiles and builds, per fold, a demand matrix whose
number of lines is the fold's cycles. Reading those files gives, per dataflow
(``Sr``, ``Sc`` the operand extents folded over rows and columns, ``T`` the
extent streamed through the array):

* **ws** (weight stationary): ``Sr = K``, ``Sc = N``, ``T = M``. The OFMAP
  demand of one fold is ``2R - 1`` prefix lines (weights load, then inputs
  reach the bottom row) plus ``T`` output rows, skewed over ``C`` columns
  (``+ C - 1``): ``2R + C + M - 2`` lines; ``ceil(K/R) ceil(N/C)`` folds.
* **os** (output stationary): ``Sr = M``, ``Sc = N``, ``T = K``. The IFMAP
  demand of a fold is ``T`` lines plus ``C - 1`` drain lines, skewed over ``R``
  rows (``+ R - 1``): ``R + C + K - 2`` lines; ``ceil(M/R) ceil(N/C)`` folds.
* **is** (input stationary): ``Sr = K``, ``Sc = M``, ``T = N``. As ws with
  the roles of the operands swapped: ``2R + C + N - 2`` lines per fold;
  ``ceil(K/R) ceil(M/C)`` folds.

Edge folds are padded with null requests, so every fold has the same length.
The memory model then serves the demand lines one per cycle (no stalls when
the SRAMs hold the operands and the bandwidth suffices) and reports the cycle
index of the last OFMAP write, which is the number of lines minus one::

    Total Cycles = folds x lines_per_fold - 1

``benchmarks/systolic_codesign.py`` checks this against SCALE-Sim itself on
a sweep of shapes, array sizes and all three dataflows (equal on every case,
``tests/data/scalesim_cycles.json``).

**Skipping pruned blocks.** A prunable block is an ``R x C`` tile of the
weight operand ``K x N`` (``R`` rows of ``K``, ``C`` columns of ``N``).

* ws: the tile *is* a fold's stationary weights; a zero tile skips its fold,
  so a block costs ``2R + C + M - 2`` cycles.
* os: the weights of output column-block ``j`` stream through the array, one
  ``K`` row per cycle, in each of the ``ceil(M/R)`` row folds; a zero block
  shortens that stream by its height ``h``: the block costs ``ceil(M/R) h``
  and the column-block, if any of its blocks is kept, a fixed
  ``ceil(M/R) (R + C - 2)``; a column-block with no block kept skips its folds.
* is: the weights stream one ``N`` column per cycle through the folds of
  ``K`` row-block ``i``; a zero block shortens the stream by its width ``w``:
  the block costs ``ceil(M/C) w`` and the row-block, if any block is kept, a
  fixed ``ceil(M/C) (2R + C - 2)``.

Summed over all blocks of a dense layer each reproduces the closed form above.
Cycles after pruning = ``sum(kept block costs) + sum(fixed costs of opened
groups) - 1`` per layer that keeps a block (a layer keeping none costs 0).

**Ranges.** Every GEMM dimension ``M``, ``K``, ``N`` and every array side ``R``,
``C`` is an integer in ``[1, MAX_DIM]`` (``MAX_DIM = 2**31 - 1``); anything else
is an :class:`~optprune.errors.InvalidParameterError`. In that range folds
(``< 2**62``) and lines per fold (``< 2**33``) fit in int64, so
:func:`fold_counts` never wraps; their product may not, so :func:`exact_cycles`
multiplies Python integers (the CLI's answer, exact for every shape in range)
and :func:`compute_cycles`, which returns int64 arrays, refuses a layer whose
cycles pass ``2**63 - 1`` instead of wrapping around. A layout or tiling of more
than ``MAX_BLOCKS`` blocks or tiles is refused before it is built.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from optprune.errors import InvalidParameterError, ShapeMismatchError

__all__ = [
    "DATAFLOWS",
    "MAX_BLOCKS",
    "MAX_DIM",
    "ArraySpec",
    "BlockLayout",
    "block_layout",
    "compute_cycles",
    "exact_cycles",
    "fold_counts",
    "parse_array",
    "parse_arrays",
]

#: dataflows of SCALE-Sim: weight, output and input stationary
DATAFLOWS = ("ws", "os", "is")

#: largest GEMM dimension (M, K, N) and array side (rows, cols): folds and lines per fold then fit in int64
MAX_DIM = 2**31 - 1

#: most blocks of a :func:`block_layout` (or tiles of an assignment) built in memory
MAX_BLOCKS = 10_000_000

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ArraySpec:
    """An ``rows x cols`` processing-element array with one dataflow (``ws``, ``os`` or ``is``)."""

    rows: int
    cols: int
    dataflow: str = "ws"

    def __post_init__(self) -> None:
        for label, value in (("rows", self.rows), ("cols", self.cols)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= MAX_DIM:
                raise InvalidParameterError(
                    f"ArraySpec: {label} must be an integer in [1, {MAX_DIM}] (processing elements); got {value!r}"
                )
        object.__setattr__(self, "rows", int(self.rows))
        object.__setattr__(self, "cols", int(self.cols))
        if self.dataflow not in DATAFLOWS:
            raise InvalidParameterError(
                f"ArraySpec: dataflow must be one of {', '.join(DATAFLOWS)}; got {self.dataflow!r}"
            )

    @property
    def label(self) -> str:
        return f"{self.rows}x{self.cols}-{self.dataflow}"


_SIZE = re.compile(r"^\s*([^x×*]+?)\s*(?:[x×*]\s*([^x×*]+?)\s*)?$", re.IGNORECASE)


def _positive_int(text: str, what: str, given: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise InvalidParameterError(
            f"array size {given!r}: {what} must be a positive integer (e.g. 32x32 or 32); got {text!r}"
        ) from None
    if value < 1:
        raise InvalidParameterError(f"array size {given!r}: {what} must be a positive integer >= 1; got {value}")
    if value > MAX_DIM:
        raise InvalidParameterError(f"array size {given!r}: {what} must be an integer in [1, {MAX_DIM}]; got {value}")
    return value


def parse_array(text: str, dataflow: str = "ws") -> ArraySpec:
    """``"32x32"`` (rows x cols) or ``"32"`` (square) as an :class:`ArraySpec`; a named error otherwise."""
    match = _SIZE.match(str(text))
    if match is None:
        raise InvalidParameterError(f"array size must look like ROWSxCOLS (e.g. 32x32) or N; got {text!r}")
    rows = _positive_int(match.group(1), "rows", text)
    cols = _positive_int(match.group(2), "cols", text) if match.group(2) is not None else rows
    return ArraySpec(rows, cols, dataflow)


def parse_arrays(text: str, dataflow: str = "ws") -> list[ArraySpec]:
    """A comma-separated list of array sizes (``"32x32,16x16"``)."""
    parts = [p for p in str(text).split(",") if p.strip()]
    if not parts:
        raise InvalidParameterError(f"--arrays must list at least one array size such as 32x32,16x16; got {text!r}")
    return [parse_array(p, dataflow) for p in parts]


def _dims_error(row, index: int, names) -> InvalidParameterError:
    where = f"layer {names[index]!r}" if names is not None and index < len(names) else f"GEMM {index}"
    return InvalidParameterError(
        f"{where}: GEMM shapes [M, K, N] must be integers in [1, {MAX_DIM}] (MAX_DIM); got {row!r}"
    )


def _as_gemms(gemms, names=None) -> np.ndarray:
    """An ``(L, 3)`` int64 array of ``[M, K, N]``, every entry an integer in ``[1, MAX_DIM]`` (module doc)."""
    arr = np.asarray(gemms)
    if arr.ndim == 1 and arr.size == 3:
        arr = arr.reshape(1, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ShapeMismatchError(f"GEMM shapes must be an (L, 3) array of [M, K, N]; got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind in "iuf":  # vectorised: NaN, infinities, fractions and out-of-range values in one test
        with np.errstate(invalid="ignore"):
            good = np.isfinite(arr) & (arr >= 1) & (arr <= MAX_DIM) & (np.mod(arr, 1) == 0)
        bad = np.flatnonzero(~good.all(axis=1))
        if bad.size:
            raise _dims_error(arr[bad[0]].tolist(), int(bad[0]), names)
        return arr.astype(np.int64)
    for i, row in enumerate(arr.tolist()):  # Python integers past int64, or mixed objects
        ok = all(
            not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v == int(v)
            and 1 <= v <= MAX_DIM
            for v in row
        )
        if not ok:
            raise _dims_error(row, i, names)
    return arr.astype(np.int64)


def _cdiv(a, b):
    return -(-np.asarray(a, dtype=np.int64) // b)


def fold_counts(gemms, spec: ArraySpec) -> tuple[np.ndarray, np.ndarray]:
    """Per GEMM row ``[M, K, N]``: (number of folds, lines per fold) on ``spec`` (module docstring).

    Both fit in int64 for every shape in range (``folds < 2**62``, ``lines < 2**33``).
    """
    g = _as_gemms(gemms)
    M, K, N = g[:, 0], g[:, 1], g[:, 2]
    R, C = spec.rows, spec.cols
    if spec.dataflow == "ws":
        return _cdiv(K, R) * _cdiv(N, C), 2 * R + C + M - 2
    if spec.dataflow == "os":
        return _cdiv(M, R) * _cdiv(N, C), R + C + K - 2
    return _cdiv(K, R) * _cdiv(M, C), 2 * R + C + N - 2


def exact_cycles(gemms, spec: ArraySpec) -> list[int]:
    """``folds x lines_per_fold - 1`` of each GEMM as Python integers: exact for every shape in range."""
    folds, per_fold = fold_counts(gemms, spec)
    return [int(f) * int(p) - 1 for f, p in zip(folds.tolist(), per_fold.tolist())]


def compute_cycles(gemms, spec: ArraySpec) -> np.ndarray:
    """SCALE-Sim's compute cycles (its "Total Cycles" without stalls) of each GEMM, vectorised, as int64.

    A GEMM whose cycles pass ``2**63 - 1`` is an :class:`InvalidParameterError` (never a wrapped-around
    number); :func:`exact_cycles` gives its count as a Python integer.
    """
    folds, per_fold = fold_counts(gemms, spec)
    too_many = np.flatnonzero(folds > _INT64_MAX // per_fold)
    if too_many.size:
        i = int(too_many[0])
        raise InvalidParameterError(
            f"GEMM {i} {_as_gemms(gemms)[i].tolist()} on {spec.label}: {int(folds[i]) * int(per_fold[i]) - 1} "
            f"compute cycles do not fit in int64 (at most {_INT64_MAX}); use exact_cycles for Python integers"
        )
    return folds * per_fold - 1


@dataclass(frozen=True)
class BlockLayout:
    """Every prunable ``R x C`` weight block of a model on one array, with its cycle cost (module docstring).

    Block ``b`` belongs to layer ``layer[b]``, covers rows ``krow[b]`` (of
    ``K``, height ``height[b]``) and columns ``ncol[b]`` (of ``N``, width
    ``width[b]``) of that layer's ``K x N`` weight operand. Blocks of one layer
    are consecutive, ordered ``krow``-major. ``cost[b]`` cycles are saved when
    it is pruned; ``group[b]`` (-1 for ws) is the os column-block or is
    row-block that pays ``group_fixed[group]`` once if any of its blocks is kept.
    """

    spec: ArraySpec
    gemms: np.ndarray
    names: tuple[str, ...]
    layer: np.ndarray
    krow: np.ndarray
    ncol: np.ndarray
    height: np.ndarray
    width: np.ndarray
    cost: np.ndarray
    group: np.ndarray
    group_fixed: np.ndarray
    group_layer: np.ndarray
    grid: tuple[tuple[int, int], ...] = field(default=())  # (K blocks, N blocks) per layer

    @property
    def n_blocks(self) -> int:
        return int(self.layer.size)

    @property
    def n_layers(self) -> int:
        return int(self.gemms.shape[0])

    @property
    def layer_offsets(self) -> np.ndarray:
        """Index of each layer's first block (length ``n_layers + 1``)."""
        counts = np.array([a * b for a, b in self.grid], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(counts)])

    def dense_cycles(self) -> np.ndarray:
        """Per-layer cycles with every block kept (equals :func:`compute_cycles`)."""
        return self.layer_cycles(np.ones(self.n_blocks, dtype=bool))

    def layer_cycles(self, keep) -> np.ndarray:
        """Per-layer compute cycles when only the blocks with ``keep[b]`` true run (zero blocks skipped)."""
        keep = np.asarray(keep, dtype=bool).reshape(-1)
        if keep.size != self.n_blocks:
            raise ShapeMismatchError(f"keep has {keep.size} entries; this layout has {self.n_blocks} blocks")
        lines = np.bincount(self.layer[keep], weights=self.cost[keep], minlength=self.n_layers)
        if self.group_fixed.size:
            opened = np.zeros(self.group_fixed.size, dtype=bool)
            opened[self.group[keep]] = True
            lines = lines + np.bincount(self.group_layer[opened], weights=self.group_fixed[opened],
                                        minlength=self.n_layers)
        kept_any = np.bincount(self.layer[keep], minlength=self.n_layers) > 0
        return np.where(kept_any, lines - 1, 0).astype(np.int64)

    def cycles(self, keep) -> int:
        """Total compute cycles of the model when only the kept blocks run."""
        return int(self.layer_cycles(keep).sum())

    def keep_from_weights(self, weights: list[np.ndarray]) -> np.ndarray:
        """Blocks with any nonzero weight, from each layer's ``K x N`` weight operand (unstructured masks)."""
        if len(weights) != self.n_layers:
            raise ShapeMismatchError(f"{len(weights)} weight matrices for {self.n_layers} layers")
        return np.concatenate([
            block_sums(np.abs(w) > 0, self.spec, name=self.names[i]).reshape(-1) > 0
            for i, w in enumerate(weights)
        ])


def block_sums(matrix: np.ndarray, spec: ArraySpec, name: str = "") -> np.ndarray:
    """Sums of a ``K x N`` array over its ``R x C`` blocks, as a ``(K blocks, N blocks)`` array (vectorised)."""
    a = np.asarray(matrix, dtype=np.float64)
    if a.ndim != 2:
        raise ShapeMismatchError(f"layer {name!r}: block sums need a 2-D K x N array; got shape {a.shape}")
    K, N = a.shape
    R, C = spec.rows, spec.cols
    kb, nb = -(-K // R), -(-N // C)
    padded = np.zeros((kb * R, nb * C))
    padded[:K, :N] = a
    return padded.reshape(kb, R, nb, C).sum(axis=(1, 3))


def block_layout(gemms, spec: ArraySpec, names=None) -> BlockLayout:
    """The blocks of every GEMM ``[M, K, N]`` on ``spec`` with their costs, vectorised over layers and blocks."""
    g = _as_gemms(gemms, None if names is None else tuple(names))
    L = g.shape[0]
    names = tuple(names) if names is not None else tuple(f"layer{i}" for i in range(L))
    if len(names) != L:
        raise ShapeMismatchError(f"{len(names)} names for {L} GEMMs")
    R, C = spec.rows, spec.cols
    M, K, N = g[:, 0], g[:, 1], g[:, 2]
    kb, nb = _cdiv(K, R), _cdiv(N, C)
    counts = kb * nb
    total = sum(int(c) for c in counts.tolist())
    if total > MAX_BLOCKS:
        raise InvalidParameterError(
            f"block_layout: {total} blocks of {R}x{C} on these GEMMs; at most MAX_BLOCKS = {MAX_BLOCKS} are built "
            "(use a larger array or smaller layers)"
        )
    layer = np.repeat(np.arange(L), counts)
    start = np.concatenate([[0], np.cumsum(counts)])[:-1]
    local = np.arange(layer.size) - start[layer]
    krow, ncol = local // nb[layer], local % nb[layer]
    height = np.minimum(R, K[layer] - krow * R)
    width = np.minimum(C, N[layer] - ncol * C)
    Ml = M[layer]
    if spec.dataflow == "ws":
        cost = 2 * R + C + Ml - 2
        group = np.full(layer.size, -1, dtype=np.int64)
        fixed = np.zeros(0, dtype=np.int64)
        glayer = np.zeros(0, dtype=np.int64)
    elif spec.dataflow == "os":
        mf = _cdiv(Ml, R)
        cost = mf * height
        gstart = np.concatenate([[0], np.cumsum(nb)])[:-1]
        group = gstart[layer] + ncol
        glayer = np.repeat(np.arange(L), nb)
        fixed = _cdiv(M[glayer], R) * (R + C - 2)
    else:
        mf = _cdiv(Ml, C)
        cost = mf * width
        gstart = np.concatenate([[0], np.cumsum(kb)])[:-1]
        group = gstart[layer] + krow
        glayer = np.repeat(np.arange(L), kb)
        fixed = _cdiv(M[glayer], C) * (2 * R + C - 2)
    return BlockLayout(
        spec=spec, gemms=g, names=names, layer=layer, krow=krow, ncol=ncol,
        height=height.astype(np.int64), width=width.astype(np.int64), cost=np.asarray(cost, dtype=np.int64),
        group=np.asarray(group, dtype=np.int64), group_fixed=np.asarray(fixed, dtype=np.int64),
        group_layer=np.asarray(glayer, dtype=np.int64),
        grid=tuple((int(a), int(b)) for a, b in zip(kb, nb)),
    )
