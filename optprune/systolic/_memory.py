r"""The optional memory term of the cycle model: SRAM accesses per operand (SCALE-Sim's counts) and DRAM stalls.

SCALE-Sim (Samajdar et al., ISPASS 2020; package ``scalesim`` 3.0.0) reports,
besides the compute cycles of :mod:`._cycles`, the SRAM reads of the IFMAP and
filter operands, the OFMAP SRAM writes, the DRAM traffic of each operand and
the stall cycles of its double-buffered scratchpads. Our own formulas:

**SRAM accesses** (exact: they count the non-null entries of SCALE-Sim's demand
matrices, ``compute/systolic_compute_{ws,os,is}.py``). With ``fr``, ``fc`` the
row and column folds of :func:`fold_counts`:

=====  ==================  ==================  ================================
df     IFMAP reads         filter reads        OFMAP writes
=====  ==================  ==================  ================================
ws     ``fc * M * K``      ``K * N``           ``fr * M * N``
os     ``fc * M * K``      ``fr * K * N``      ``M * N + fr * fc * (R + C)``
is     ``M * K``           ``fc * K * N``      ``fr * M * N``
=====  ==================  ==================  ================================

(ws: ``fr = ceil(K/R)``, ``fc = ceil(N/C)``; os: ``fr = ceil(M/R)``,
``fc = ceil(N/C)``; is: ``fr = ceil(K/R)``, ``fc = ceil(M/C)``. os's OFMAP
count includes SCALE-Sim's ``R + C`` per fold, which it adds as written.)

**DRAM traffic and stalls** (a model, not SCALE-Sim's cycle-by-cycle buffer
simulation). Each operand's SRAM is double-buffered: half of it is filled from
DRAM while the array reads the other half. An operand whose words fit in the
active half (``size / 2``) is read from DRAM once (its footprint: ``M K``,
``K N``); one that does not is re-read on every sweep the array makes over it,
i.e. as often as its SRAM is read. OFMAP words are written back as they are
produced (its SRAM writes). Every operand has its own DRAM port of ``bandwidth``
words per cycle (SCALE-Sim's ``Bandwidth``), transfers overlap compute, and
the layer stalls when the slowest port needs longer than the compute::

    stalls = max(0, max_op ceil(dram_words_op / bandwidth) - compute_cycles)

The initial fill of the first buffers (SCALE-Sim's "incl. prefetch" cycles) is
not counted, as in SCALE-Sim's "Total Cycles". ``benchmarks/systolic_memory.py``
compares both parts with SCALE-Sim on hold-out shapes (SRAM counts: exact;
stalls: the model's error is reported there).

**Pruned blocks** (:func:`pruned_memory`). A pruned block is neither read from
SRAM nor fetched from DRAM, and the array work it skips skips its operand
traffic too: in ws a zero block is a skipped fold (no IFMAP reads, no partial
sums written); in os / is it shortens a weight stream (the IFMAP rows / OFMAP
columns it would meet). With every block kept the counts are the dense ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from optprune.errors import InvalidParameterError
from optprune.systolic._cycles import ArraySpec, _as_gemms, _cdiv, compute_cycles

__all__ = ["MemorySpec", "layer_memory", "pruned_memory", "sram_accesses"]


@dataclass(frozen=True)
class MemorySpec:
    """SRAM sizes (kB per operand) and DRAM bandwidth (words per cycle per operand port); ``word_bytes`` per word."""

    ifmap_kb: float = 64.0
    filter_kb: float = 64.0
    ofmap_kb: float = 64.0
    bandwidth: float = 10.0
    word_bytes: int = 1

    def __post_init__(self) -> None:
        for label in ("ifmap_kb", "filter_kb", "ofmap_kb", "bandwidth"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise InvalidParameterError(f"MemorySpec: {label} must be a finite number > 0; got {value!r}")
        if isinstance(self.word_bytes, bool) or not isinstance(self.word_bytes, int) or self.word_bytes < 1:
            raise InvalidParameterError(f"MemorySpec: word_bytes must be an integer >= 1; got {self.word_bytes!r}")

    def words(self, kb: float) -> float:
        """Words held by ``kb`` kilobytes (SCALE-Sim's kB are 1024 bytes)."""
        return kb * 1024.0 / self.word_bytes


def sram_accesses(gemms, spec: ArraySpec) -> dict[str, np.ndarray]:
    """SCALE-Sim's SRAM counts per GEMM (module table): ``ifmap_reads``, ``filter_reads``, ``ofmap_writes``."""
    g = _as_gemms(gemms)
    M, K, N = (g[:, i].astype(np.int64) for i in range(3))
    R, C = spec.rows, spec.cols
    if spec.dataflow == "ws":
        fr, fc = _cdiv(K, R), _cdiv(N, C)
        return {"ifmap_reads": fc * M * K, "filter_reads": K * N, "ofmap_writes": fr * M * N}
    if spec.dataflow == "os":
        fr, fc = _cdiv(M, R), _cdiv(N, C)
        return {"ifmap_reads": fc * M * K, "filter_reads": fr * K * N, "ofmap_writes": M * N + fr * fc * (R + C)}
    fr, fc = _cdiv(K, R), _cdiv(M, C)
    return {"ifmap_reads": M * K, "filter_reads": fc * K * N, "ofmap_writes": fr * M * N}


def _traffic(sram: dict, ifmap_foot, filter_foot, cycles, memory: MemorySpec) -> dict[str, np.ndarray]:
    """DRAM words, stalls and totals from SRAM counts and operand footprints (module docstring)."""
    ifmap_foot, filter_foot = np.asarray(ifmap_foot, dtype=np.float64), np.asarray(filter_foot, dtype=np.float64)
    ifmap_dram = np.where(ifmap_foot <= memory.words(memory.ifmap_kb) / 2, ifmap_foot, sram["ifmap_reads"])
    filter_dram = np.where(filter_foot <= memory.words(memory.filter_kb) / 2, filter_foot, sram["filter_reads"])
    ofmap_dram = np.asarray(sram["ofmap_writes"], dtype=np.float64)
    cycles = np.asarray(cycles, dtype=np.int64)
    transfer = np.ceil(np.maximum.reduce([ifmap_dram, filter_dram, ofmap_dram]) / memory.bandwidth)
    stalls = np.where(cycles > 0, np.maximum(transfer - cycles, 0), 0).astype(np.int64)
    as_int = lambda a: np.rint(np.asarray(a, dtype=np.float64)).astype(np.int64)
    return {"ifmap_sram_reads": as_int(sram["ifmap_reads"]), "filter_sram_reads": as_int(sram["filter_reads"]),
            "ofmap_sram_writes": as_int(sram["ofmap_writes"]), "ifmap_dram_reads": as_int(ifmap_dram),
            "filter_dram_reads": as_int(filter_dram), "ofmap_dram_writes": as_int(ofmap_dram),
            "compute_cycles": cycles, "stall_cycles": stalls, "total_cycles": cycles + stalls}


def layer_memory(gemms, spec: ArraySpec, memory: MemorySpec) -> dict[str, np.ndarray]:
    """Per dense GEMM: SRAM accesses, DRAM words per operand, stall cycles and total cycles (module docstring)."""
    g = _as_gemms(gemms)
    M, K, N = (g[:, i].astype(np.float64) for i in range(3))
    return _traffic(sram_accesses(g, spec), M * K, K * N, compute_cycles(g, spec), memory)


def pruned_memory(layout, keep, memory: MemorySpec) -> dict[str, np.ndarray]:
    """:func:`layer_memory` of every layer of ``layout`` with only the kept blocks running and stored.

    SRAM counts from the kept blocks (``h x w`` each, ``M`` rows of the layer, ``fr = ceil(M/R)``,
    ``fc = ceil(M/C)``); with every block kept they are the dense counts of :func:`sram_accesses`:

    * ws (a block is a fold): IFMAP ``sum M h``, filter ``sum h w``, OFMAP ``sum M w``;
    * os (a column-block's weight stream shortened by its pruned heights): IFMAP ``sum M h``, filter
      ``fr sum h w``, OFMAP ``sum over opened column-blocks (M w_j + fr (R + C))``;
    * is (a row-block's stream shortened by its pruned widths): IFMAP ``sum over opened row-blocks M h_i``,
      filter ``fc sum h w``, OFMAP ``sum M w``.

    Footprints: the filter's kept weights; the IFMAP's rows of ``K`` that some kept block reads (``M`` each).
    """
    lay = layout
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    L = lay.n_layers
    M = lay.gemms[:, 0].astype(np.float64)
    R, C = lay.spec.rows, lay.spec.cols
    h, w = lay.height.astype(np.float64), lay.width.astype(np.float64)
    Mb = M[lay.layer]

    def per_layer(values, mask=keep):
        return np.bincount(lay.layer[mask], weights=np.asarray(values, dtype=np.float64)[mask], minlength=L)

    hw = per_layer(h * w)
    # rows of K read by some kept block: per (layer, K row-block) any kept block
    nb = np.array([g[1] for g in lay.grid], dtype=np.int64)
    kb = np.array([g[0] for g in lay.grid], dtype=np.int64)
    rstart = np.concatenate([[0], np.cumsum(kb)])[:-1]
    row_id = rstart[lay.layer] + lay.krow
    row_open = np.zeros(int(kb.sum()), dtype=bool)
    row_open[row_id[keep]] = True
    row_height = np.zeros(int(kb.sum()))
    row_height[row_id] = h
    row_layer = np.repeat(np.arange(L), kb)
    k_used = np.bincount(row_layer[row_open], weights=row_height[row_open], minlength=L)
    df = lay.spec.dataflow
    if df == "ws":
        sram = {"ifmap_reads": per_layer(Mb * h), "filter_reads": hw, "ofmap_writes": per_layer(Mb * w)}
    elif df == "os":
        fr = np.ceil(M / R)
        cstart = np.concatenate([[0], np.cumsum(nb)])[:-1]
        col_id = cstart[lay.layer] + lay.ncol
        col_open = np.zeros(int(nb.sum()), dtype=bool)
        col_open[col_id[keep]] = True
        col_width = np.zeros(int(nb.sum()))
        col_width[col_id] = w
        col_layer = np.repeat(np.arange(L), nb)
        ofmap = np.bincount(col_layer[col_open], weights=(M[col_layer] * col_width + fr[col_layer] * (R + C))[col_open],
                            minlength=L)
        sram = {"ifmap_reads": per_layer(Mb * h), "filter_reads": fr * hw, "ofmap_writes": ofmap}
    else:
        fc = np.ceil(M / C)
        sram = {"ifmap_reads": M * k_used, "filter_reads": fc * hw, "ofmap_writes": per_layer(Mb * w)}
    return _traffic(sram, M * k_used, hw, lay.layer_cycles(keep), memory)
