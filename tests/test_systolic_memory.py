"""The memory term: SCALE-Sim's SRAM access counts in closed form, the DRAM/stall model on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from optprune.errors import InvalidParameterError
from optprune.systolic import (
    ArraySpec,
    MemorySpec,
    block_layout,
    compute_cycles,
    layer_memory,
    pruned_memory,
    sram_accesses,
)


def test_sram_counts_equal_scalesim_on_a_measured_case() -> None:
    # SCALE-Sim 3.0.0, 33 x 17 x 9 on 4x4 ws: SRAM IFMAP reads 1683, filter reads 153, OFMAP writes 1485
    got = sram_accesses([[33, 17, 9]], ArraySpec(4, 4, "ws"))
    assert (int(got["ifmap_reads"][0]), int(got["filter_reads"][0]), int(got["ofmap_writes"][0])) == (1683, 153, 1485)


@pytest.mark.parametrize(("df", "expected"), [
    # M=5, K=6, N=7 on a 2x3 array
    ("ws", (3 * 5 * 6, 6 * 7, 3 * 5 * 7)),            # fc = ceil(7/3) = 3, fr = ceil(6/2) = 3
    ("os", (3 * 5 * 6, 3 * 6 * 7, 5 * 7 + 9 * 5)),     # fc = 3, fr = ceil(5/2) = 3, 9 folds x (R + C)
    ("is", (5 * 6, 2 * 6 * 7, 3 * 5 * 7)),            # fc = ceil(5/3) = 2, fr = ceil(6/2) = 3
])
def test_sram_counts_hand_computed(df, expected) -> None:
    got = sram_accesses([[5, 6, 7]], ArraySpec(2, 3, df))
    assert (int(got["ifmap_reads"][0]), int(got["filter_reads"][0]), int(got["ofmap_writes"][0])) == expected


def test_stalls_hand_computed() -> None:
    spec = ArraySpec(4, 4, "ws")
    compute = int(compute_cycles([[33, 17, 9]], spec)[0])          # 15 folds x 43 lines - 1 = 644
    assert compute == 644
    # 1 kB SRAMs of 1-byte words: active halves of 512 words; IFMAP 33*17 = 561 > 512 -> re-read 1683 words,
    # filter 153 fits -> 153, OFMAP writes 1485; slowest port at 1 word/cycle: 1683 -> 1683 - 644 stalls
    m = layer_memory([[33, 17, 9]], spec, MemorySpec(1, 1, 1, bandwidth=1))
    assert int(m["ifmap_dram_reads"][0]) == 1683 and int(m["filter_dram_reads"][0]) == 153
    assert int(m["stall_cycles"][0]) == 1683 - 644 and int(m["total_cycles"][0]) == 1683
    # large SRAMs and bandwidth: no stalls, footprints read once
    big = layer_memory([[33, 17, 9]], spec, MemorySpec(1000, 1000, 1000, bandwidth=100))
    assert int(big["stall_cycles"][0]) == 0 and int(big["ifmap_dram_reads"][0]) == 33 * 17


@pytest.mark.parametrize("df", ["ws", "os", "is"])
def test_pruned_memory_scales_the_traffic_and_matches_dense_when_all_kept(df) -> None:
    layout = block_layout([[17, 45, 48], [17, 48, 93]], ArraySpec(8, 8, df))
    mem = MemorySpec(2, 2, 2, bandwidth=1)
    dense = pruned_memory(layout, np.ones(layout.n_blocks, dtype=bool), mem)
    ref = layer_memory(layout.gemms, layout.spec, mem)
    for key in ref:
        np.testing.assert_array_equal(dense[key], ref[key])
    keep = np.zeros(layout.n_blocks, dtype=bool)
    keep[::2] = True
    half = pruned_memory(layout, keep, mem)
    assert np.all(half["filter_sram_reads"] < dense["filter_sram_reads"])
    assert np.all(half["compute_cycles"] == layout.layer_cycles(keep))
    assert np.all(half["total_cycles"] >= half["compute_cycles"])


def test_memory_spec_validation() -> None:
    with pytest.raises(InvalidParameterError, match="bandwidth must be a finite number > 0"):
        MemorySpec(bandwidth=0)
    with pytest.raises(InvalidParameterError, match="word_bytes"):
        MemorySpec(word_bytes=0)


def test_pruned_memory_ws_hand_computed() -> None:
    # M=3, K=4, N=4 on 2x2 ws: 4 blocks (folds) of 2x2; keep blocks 0 and 3 (the diagonal)
    layout = block_layout([[3, 4, 4]], ArraySpec(2, 2, "ws"))
    keep = np.array([True, False, False, True])
    m = pruned_memory(layout, keep, MemorySpec(1000, 1000, 1000, bandwidth=100))
    assert int(m["ifmap_sram_reads"][0]) == 2 * 3 * 2      # two folds, each M x h
    assert int(m["filter_sram_reads"][0]) == 2 * 2 * 2     # two 2x2 blocks
    assert int(m["ofmap_sram_writes"][0]) == 2 * 3 * 2     # two folds, each M x w
    assert int(m["compute_cycles"][0]) == 2 * (2 * 2 + 2 + 3 - 2) - 1
