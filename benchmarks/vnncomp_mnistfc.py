"""VNN-COMP 2021 mnistfc: decide every instance and compare with the competition's verdicts.

Usage::

    python benchmarks/vnncomp_mnistfc.py [--nets 256x2 256x4] [--solver highs] [--bounds linear]
        [--scale 1.0] [--out results/vnncomp.jsonl]

Time limits come from ``instances.csv`` (120 s for 256x2, 300 s for 256x4),
multiplied by ``--scale``. Results are appended to a JSONL file as they
arrive; a rerun skips instances already recorded (resume). Prints per
instance verdict and time, the number decided, and the agreement with
``verdicts_256x2.csv`` (a verdict that differs from it is *wrong*).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys

from rich.console import Console
from rich.progress import Progress

from optprune.bench import RecordStore
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verify import DEFAULT_BOUNDS, verify_vnnlib

console = Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["256x2", "256x4"])
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--bounds", default=DEFAULT_BOUNDS)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the competition's time limits")
    ap.add_argument("--limit", type=int, default=None, help="only the first N instances per network")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default="results/vnncomp_mnistfc.jsonl")
    args = ap.parse_args(argv)

    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    with open(folder / "instances.csv") as fh:
        instances = [row for row in csv.reader(fh) if row]
    with open(folder / "verdicts_256x2.csv") as fh:
        truth = {(r["network"], r["property"]): r["verdict"] for r in csv.DictReader(fh)}
    store = RecordStore(args.out)  # resumable: a rerun skips recorded instances
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
                rec.pop("counterexample"), rec.pop("output")
                store.append(rec)
            rec = done[(onnx_name, prop)] = store.records[rid]
            progress.advance(task)
            console.log(f"{onnx_name} {prop}: {rec['verdict']} in {rec['time_s']:.1f}s ({rec['decided_by']})")

    print(f"{'network':<22} {'property':<22} {'verdict':<8} {'expected':<8} {'time_s':>8}  by")
    summary = {}
    for onnx_name, prop, _ in selected:
        rec = done[(onnx_name, prop)]
        expected = truth.get((onnx_name, prop), "")
        print(f"{onnx_name:<22} {prop:<22} {rec['verdict']:<8} {expected or '-':<8} {rec['time_s']:>8.2f}  {rec['decided_by']}")
        s = summary.setdefault(onnx_name, {"n": 0, "decided": 0, "sat": 0, "unsat": 0, "wrong": 0, "agree": 0, "times": []})
        s["n"] += 1
        if rec["verdict"] in ("sat", "unsat"):
            s["decided"] += 1
            s[rec["verdict"]] += 1
            s["times"].append(rec["time_s"])
            if expected:
                s["agree" if expected == rec["verdict"] else "wrong"] += 1
    print()
    print(f"{'network':<22} {'decided':>8} {'sat':>5} {'unsat':>6} {'agree':>6} {'wrong':>6} {'median_s':>9}")
    for name, s in summary.items():
        med = statistics.median(s["times"]) if s["times"] else float("nan")
        agree = f"{s['agree']}" if any(k[0] == name for k in truth) else "n/a"
        wrong = f"{s['wrong']}" if any(k[0] == name for k in truth) else "n/a"
        print(f"{name:<22} {s['decided']:>4}/{s['n']:<3} {s['sat']:>5} {s['unsat']:>6} {agree:>6} {wrong:>6} {med:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
