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

**Pruned blocks.** A pruned weight block is neither read from SRAM nor fetched
from DRAM: the filter traffic of a layer scales with its kept weights
(:func:`layer_memory` with ``kept_weights``), its compute with the kept blocks
(:meth:`BlockLayout.layer_cycles`).
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


def layer_memory(gemms, spec: ArraySpec, memory: MemorySpec, *, compute=None, kept_weights=None
                 ) -> dict[str, np.ndarray]:
    """Per GEMM: SRAM accesses, DRAM words per operand, stall cycles and total cycles (module docstring).

    ``compute``: the compute cycles to overlap with (default the dense :func:`compute_cycles`; pass a pruned
    layout's :meth:`~optprune.systolic.BlockLayout.layer_cycles`). ``kept_weights``: kept weights per GEMM
    (default ``K N``): the filter's SRAM and DRAM traffic scale with it.
    """
    g = _as_gemms(gemms)
    M, K, N = (g[:, i].astype(np.float64) for i in range(3))
    sram = sram_accesses(g, spec)
    frac = np.ones(len(g)) if kept_weights is None else np.asarray(kept_weights, dtype=np.float64) / (K * N)
    filter_reads = sram["filter_reads"] * frac
    ifmap_foot, filter_foot = M * K, K * N * frac
    ifmap_dram = np.where(ifmap_foot <= memory.words(memory.ifmap_kb) / 2, ifmap_foot, sram["ifmap_reads"])
    filter_dram = np.where(filter_foot <= memory.words(memory.filter_kb) / 2, filter_foot, filter_reads)
    ofmap_dram = sram["ofmap_writes"].astype(np.float64)
    cycles = compute_cycles(g, spec) if compute is None else np.asarray(compute, dtype=np.int64)
    transfer = np.ceil(np.maximum.reduce([ifmap_dram, filter_dram, ofmap_dram]) / memory.bandwidth)
    stalls = np.where(cycles > 0, np.maximum(transfer - cycles, 0), 0).astype(np.int64)
    return {"ifmap_sram_reads": sram["ifmap_reads"], "filter_sram_reads": np.rint(filter_reads).astype(np.int64),
            "ofmap_sram_writes": sram["ofmap_writes"], "ifmap_dram_reads": np.rint(ifmap_dram).astype(np.int64),
            "filter_dram_reads": np.rint(filter_dram).astype(np.int64),
            "ofmap_dram_writes": np.rint(ofmap_dram).astype(np.int64), "compute_cycles": cycles,
            "stall_cycles": stalls, "total_cycles": cycles + stalls}


def pruned_memory(layout, keep, memory: MemorySpec) -> dict[str, np.ndarray]:
    """:func:`layer_memory` of every layer of ``layout`` with only the kept blocks running and stored."""
    keep = np.asarray(keep, dtype=bool).reshape(-1)
    kept_weights = np.bincount(layout.layer[keep], weights=(layout.height * layout.width)[keep],
                               minlength=layout.n_layers)
    return layer_memory(layout.gemms, layout.spec, memory, compute=layout.layer_cycles(keep),
                        kept_weights=kept_weights)
