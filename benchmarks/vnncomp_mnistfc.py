"""VNN-COMP 2021 mnistfc: decide every instance and compare with the competition's verdicts.

Usage::

    python benchmarks/vnncomp_mnistfc.py [--nets 256x2 256x4] [--solver highs] [--bounds obbt]
        [--scale 1.0] [--out results/vnncomp_mnistfc]

Time limits come from ``instances.csv`` (120 s for 256x2, 300 s for 256x4),
multiplied by ``--scale``. Records are appended to ``OUT/records.jsonl`` as
they arrive; a rerun skips instances already recorded (resume). Prints, and
writes to ``OUT/summary.md`` under the provenance header (command, date,
machine, versions), per instance verdict, time and what decided it, the
number decided, what decided them, and the agreement with
``verdicts_256x2.csv`` (a verdict that differs from it is *wrong*).
The README's figure is ``--nets 256x2`` (the competition's 120 s per instance).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from optprune.bench import RecordStore
from optprune.bench._provenance import provenance_header
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verify import DEFAULT_BOUNDS, verify_vnnlib

console = Console(stderr=True)


DECIDERS = ("bounds", "attack", "mip")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def summary_markdown(selected: list[list[str]], done: dict, truth: dict, header: str) -> str:
    """Per-instance table and per-network summary (decided, sat/unsat, agreement, what decided, median times)."""
    lines = [header.rstrip(), "", "# VNN-COMP 2021 mnistfc", "",
             "| network | property | verdict | competition | time (s) | limit (s) | decided by |", "|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for onnx_name, prop, _ in selected:
        rec = done[(onnx_name, prop)]
        expected = truth.get((onnx_name, prop), "")
        lines.append(f"| {onnx_name} | {prop} | {rec['verdict']} | {expected or '-'} | {rec['time_s']:.2f} | "
                     f"{rec['limit_s']:g} | {rec['decided_by'] or '-'} |")
        s = summary.setdefault(onnx_name, {"n": 0, "decided": 0, "sat": 0, "unsat": 0, "wrong": 0, "agree": 0,
                                           "times": [], "by": {k: [] for k in DECIDERS}, "limit": rec["limit_s"]})
        s["n"] += 1
        if rec["verdict"] in ("sat", "unsat"):
            s["decided"] += 1
            s[rec["verdict"]] += 1
            s["times"].append(rec["time_s"])
            s["by"].setdefault(rec["decided_by"] or "?", []).append(rec["time_s"])
            if expected:
                s["agree" if expected == rec["verdict"] else "wrong"] += 1
    lines += ["", "| network | limit (s) | decided | sat | unsat | agree with competition | wrong | "
              "median time of decided (s) | decided by bounds: n, median s | by attack: n, median s | by MIP: n, median s |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        known = any(k[0] == name for k in truth)
        by = [f"{len(s['by'][k])}, {_median(s['by'][k])}" for k in DECIDERS]
        lines.append(f"| {name} | {s['limit']:g} | {s['decided']}/{s['n']} | {s['sat']} | {s['unsat']} | "
                     f"{s['agree'] if known else 'n/a'} | {s['wrong'] if known else 'n/a'} | {_median(s['times'])} | "
                     + " | ".join(by) + " |")
    lines += ["", "Times are wall-clock per instance (parsing excluded, bounds, attack and MIPs included); the "
              "competition's verdicts are from `verdicts_256x2.csv` (256x2 only)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["256x2", "256x4"])
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--bounds", default=DEFAULT_BOUNDS)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the competition's time limits")
    ap.add_argument("--limit", type=int, default=None, help="only the first N instances per network")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/vnncomp_mnistfc"))
    args = ap.parse_args(argv)
    header = provenance_header([Path(sys.executable).name, *sys.argv] if argv is None else ["python", __file__, *argv])

    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    with open(folder / "instances.csv") as fh:
        instances = [row for row in csv.reader(fh) if row]
    with open(folder / "verdicts_256x2.csv") as fh:
        truth = {(r["network"], r["property"]): r["verdict"] for r in csv.DictReader(fh)}
    store = RecordStore(args.out / "records.jsonl")  # resumable: a rerun skips recorded instances
    selected = [r for r in instances if any(f"_{n}." in r[0] for n in args.nets)]
    if args.limit:
        seen: dict[str, int] = {}
        kept = []
        for row in selected:
            seen[row[0]] = seen.get(row[0], 0) + 1
            if seen[row[0]] <= args.limit:
                kept.append(row)
        selected = kept
    nets = {}
    done = {}
    with Progress(console=console) as progress, store:
        task = progress.add_task("mnistfc", total=len(selected))
        for onnx_name, prop, limit in selected:
            limit_s = float(limit) * args.scale
            rid = f"{onnx_name}|{prop}|{args.solver}|{args.bounds}|{limit_s:g}"
            if rid not in store:
                net = nets.setdefault(onnx_name, network_from_onnx(folder / onnx_name))
                res = verify_vnnlib(net, folder / prop, solver=args.solver, timeout=limit_s, bounds=args.bounds)
                rec = {"id": rid, "network": onnx_name, "property": prop, "solver": args.solver, "bounds": args.bounds,
                       "limit_s": limit_s, **res.to_dict()}
                rec.pop("counterexample", None), rec.pop("output", None)
                store.append(rec)
            rec = done[(onnx_name, prop)] = store.records[rid]
            progress.advance(task)
            console.log(f"{onnx_name} {prop}: {rec['verdict']} in {rec['time_s']:.1f}s ({rec['decided_by']})")

    text = summary_markdown(selected, done, truth, header)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
