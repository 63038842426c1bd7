"""End-to-end wall time of ``optprune verify`` from the command line, start-up included.

Usage::

    python benchmarks/verify_startup.py [--repeats 5] [--threads 1] [--data-dir DIR]
        [--out results/verify_startup] [--allow-dirty]

VNN-COMP counts the whole run of a tool on an instance, so an instance that the
bounds or the attack decide in a fraction of a second is dominated by start-up:
the interpreter, importing torch, scipy and the solver layer, reading the ONNX
graph and the VNN-LIB file. This benchmark runs ``optprune verify NET PROP
--json`` as a fresh process ``--repeats`` times on a few instances that are
decided early (by the bounds, by the attack, by a short BaB), and in the same
run two floors measured the same way: ``python -c pass`` (the interpreter) and
``python -c "import torch"`` (what any PyTorch-based verifier pays before it
reads a file). Statistic: the median wall time over the repeats (the machine
is shared, so the minimum and maximum are printed too); ``in-process`` is the
``time_s`` the tool reports for the verification itself (median), and the
ratio is the median wall time over the ``import torch`` floor's.

Records go to ``OUT/records.jsonl`` (one per timed process, resumable) and the
table to ``OUT/summary.md`` under the provenance header.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir

console = Console(stderr=True)

#: (label, folder under the data directory, network, property): instances decided early by different stages.
INSTANCES: tuple[tuple[str, str, str, str], ...] = (
    ("mnistfc 256x2 prop_0_0.03", "vnncomp2021-mnistfc", "mnist-net_256x2.onnx", "prop_0_0.03.vnnlib"),
    ("mnistfc 256x2 prop_7_0.03", "vnncomp2021-mnistfc", "mnist-net_256x2.onnx", "prop_7_0.03.vnnlib"),
    ("mnistfc 256x4 prop_4_0.03", "vnncomp2021-mnistfc", "mnist-net_256x4.onnx", "prop_4_0.03.vnnlib"),
    ("oval21 base img4549", "vnncomp2021-oval21", "nets/cifar_base_kw.onnx",
     "vnnlib/cifar_base_kw-img4549-eps0.00392156862745098.vnnlib"),
)

#: The floors, timed as fresh processes in the same run.
FLOORS: tuple[tuple[str, str], ...] = (
    ("python -c pass", "pass"),
    ("python -c 'import torch'", "import torch"),
)

TARGET_S = 2.5  # issue 25: an instance that the bounds decide, end to end
QUICK_S = 0.5  # in-process seconds under which an instance counts as decided early (the target's rows)


def _optprune_cli() -> list[str]:
    """The ``optprune`` console script beside this interpreter (the one a user runs), else ``-m optprune``."""
    script = Path(sys.executable).with_name("optprune")
    return [str(script)] if script.exists() else [sys.executable, "-m", "optprune"]


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, str, int]:
    """Wall seconds of one fresh process, its stdout and return code."""
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    return time.perf_counter() - t, proc.stdout, proc.returncode


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(records: list[dict], header: str, repeats: int) -> str:
    """The table: median/min/max wall per instance and floor, in-process time, ratio to the torch floor."""
    by_label: dict[str, list[dict]] = {}
    for rec in records:
        by_label.setdefault(rec["label"], []).append(rec)
    torch_floor = _median([r["wall_s"] for r in by_label.get(FLOORS[1][0], [])])
    lines = [header, "", f"Median over {repeats} fresh processes per row (min–max beside); "
             f"ratio = median wall / median `import torch` floor ({torch_floor:.2f} s), same run.", "",
             "| what | verdict (decided by) | wall median s | min–max s | in-process s | ratio to torch floor |",
             "|---|---|---|---|---|---|"]
    for label, recs in by_label.items():
        walls = [r["wall_s"] for r in recs]
        verdicts = sorted({f"{r.get('verdict', '')} ({r.get('decided_by', '')})" for r in recs if r.get("verdict")})
        inproc = [r["time_s"] for r in recs if r.get("time_s") is not None]
        lines.append(f"| {label} | {', '.join(verdicts) or '—'} | {_median(walls):.2f} | "
                     f"{min(walls):.2f}–{max(walls):.2f} | "
                     f"{'—' if not inproc else f'{_median(inproc):.2f}'} | {_median(walls) / torch_floor:.2f} |")
    quick = [_median([r["wall_s"] for r in recs]) for recs in by_label.values()
             if recs[0].get("kind") == "verify" and _median([r.get("time_s") or 1e9 for r in recs]) < QUICK_S]
    slowest = max(quick, default=float("nan"))
    lines += ["", f"Instances decided within {QUICK_S:g} s in-process: slowest median {slowest:.2f} s "
              f"end to end (target ≤ {TARGET_S} s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="fresh processes per instance and floor")
    ap.add_argument("--threads", type=int, default=None, help="optprune verify --threads (default: its own, all cores)")
    ap.add_argument("--timeout", type=float, default=60.0, help="optprune verify --timeout")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/verify_startup"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    if args.repeats < 1 or (args.threads is not None and args.threads < 1) or args.timeout <= 0:
        ap.error("--repeats and --threads must be >= 1 and --timeout > 0")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    root = data_dir(args.data_dir)
    env = dict(os.environ)
    threads = [] if args.threads is None else ["--threads", str(args.threads)]
    jobs: list[tuple[str, str, list[str]]] = [(label, "floor", [sys.executable, "-c", code]) for label, code in FLOORS]
    for label, folder, net, prop in INSTANCES:
        if not (root / folder / net).exists():
            console.log(f"skipping {label}: {root / folder / net} not found")
            continue
        jobs.append((label, "verify", [*_optprune_cli(), "verify", str(root / folder / net), str(root / folder / prop),
                                       "--timeout", f"{args.timeout:g}", *threads, "--json"]))
    store = RecordStore(args.out / "records.jsonl")
    before = 0
    with store:
        for rep in range(args.repeats):  # rounds over every job, so load drifts hit all rows alike
            for label, kind, cmd in jobs:
                rid = f"{label}|{rep}"
                if rid in store:
                    before += 1
                    continue
                wall, out, rc = _timed(cmd, env)
                rec: dict = {"id": rid, "label": label, "kind": kind, "repeat": rep, "wall_s": round(wall, 4), "rc": rc,
                             "loadavg_1m": os.getloadavg()[0]}
                if kind == "verify":
                    data = json.loads(out) if rc == 0 and out.strip() else {}
                    rec.update(verdict=data.get("verdict"), decided_by=data.get("decided_by"),
                               time_s=data.get("time_s"))
                store.append(rec)
                console.log(f"{label} #{rep}: {wall:.2f} s {rec.get('verdict') or ''}")
        records = [store.records[f"{label}|{rep}"] for rep in range(args.repeats) for label, _, _ in jobs]
    run.resumed(before, len(records))
    text = summary(records, run.header(), args.repeats)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
