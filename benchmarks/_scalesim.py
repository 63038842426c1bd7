"""SCALE-Sim v2 driven on one GEMM at a time, for the benchmarks that check the systolic cycle and memory models.

SCALE-Sim needs ``numpy<2``, so it lives in a side venv (:func:`ensure_venv`) and the benchmark scripts re-run
themselves there as a worker; this module imports nothing of optprune, so the worker can import it (the
script's folder is first on ``sys.path``). Defaults describe an array with SRAM and bandwidth large enough
that no stall occurs (compute cycles only); the memory benchmark passes small ones.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["config_text", "ensure_venv", "report_rows", "run_gemm"]

_CFG = """[general]
run_name = optprune
[architecture_presets]
ArrayHeight : {R}
ArrayWidth : {C}
IfmapSramSzkB: {kb}
FilterSramSzkB: {kb}
OfmapSramSzkB: {kb}
IfmapOffset: 0
FilterOffset: {filter_offset}
OfmapOffset: {ofmap_offset}
Bandwidth : {bw}
Dataflow : {df}
ReadRequestBuffer: 32
WriteRequestBuffer: 32
[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2
[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40
[run_presets]
InterfaceBandwidth: USER
UseRamulatorTrace: False
"""


def config_text(R: int, C: int, df: str, sram_kb: int = 1_000_000, bandwidth: int = 100_000,
                filter_offset: int = 100_000_000, ofmap_offset: int = 200_000_000) -> str:
    """SCALE-Sim's config for an ``R x C`` array with dataflow ``df`` and SRAM/DRAM bandwidth as given."""
    return _CFG.format(R=R, C=C, df=df, kb=sram_kb, bw=bandwidth, filter_offset=filter_offset,
                       ofmap_offset=ofmap_offset)


def run_gemm(folder: str, M: int, K: int, N: int, config: str) -> tuple[str, float]:
    """Simulate the GEMM ``(M x K) @ (K x N)`` under ``config`` in ``folder``; its output folder and seconds."""
    from scalesim.scale_sim import scalesim  # only in the side venv

    os.makedirs(folder, exist_ok=True)
    with open(f"{folder}/c.cfg", "w") as f:
        f.write(config)
    with open(f"{folder}/t.csv", "w") as f:
        f.write(f"Layer, M, N, K,\nL0, {M}, {N}, {K},\n")
    with open(f"{folder}/l.csv", "w") as f:  # SCALE-Sim reads a layout file even with custom layouts off
        f.write("Layer name," + ",".join(["x"] * 20) + ",\nL0," + ",".join(["1"] * 20) + ",\n")
    sim = scalesim(save_disk_space=True, verbose=False, config=f"{folder}/c.cfg", topology=f"{folder}/t.csv",
                   layout=f"{folder}/l.csv", input_type_gemm=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=f"{folder}/out")
    return f"{folder}/out", time.perf_counter() - start


def report_rows(out: str, name: str) -> tuple[list[str], list[str]]:
    """Header and first row of SCALE-Sim's report ``name`` (e.g. ``COMPUTE_REPORT``), stripped."""
    with open(glob.glob(f"{out}/**/{name}.csv", recursive=True)[0]) as f:
        head, values = f.read().splitlines()[:2]
    return [h.strip() for h in head.split(",")], [v.strip() for v in values.split(",")]


def ensure_venv(venv: Path) -> Path:
    """The side venv's python, created with ``scalesim`` and ``numpy<2`` if missing."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import scalesim, numpy; assert numpy.__version__ < '2'"]
    if py.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return py
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "scalesim", "numpy<2"], check=True)
    return py
