"""Branching heuristics of branch and bound, side by side: BaBSR against filtered smart branching (FSB).

Usage::

    python benchmarks/bab_branching.py [--nets 256x4] [--limit-s 20] [--first N] [--fsb-k 3]
        [--out results/bab_branching] [--allow-dirty]

On the VNN-COMP 2021 mnistfc instances (``instances.csv`` order, the first
``--first`` per network), runs :func:`optprune.verification.bab.bab_verify_case`
alone (no MIP) at ``--limit-s`` seconds per instance, once with BaBSR (Bunel et
al. 2020, the intercept score; ``BaBSettings(fsb_k=0)``) and once with FSB (De
Palma et al. 2021: the ``fsb_k`` best BaBSR candidates per layer, each split
bounded once with the parent's slopes, the best worse child chosen;
``BaBSettings(fsb_k=k)``); every other setting is the default. Records go to
``OUT/records.jsonl`` as they arrive (resumable); ``OUT/summary.md`` gives, per
instance and heuristic, the verdict (checked against the competition's), the
subdomains bounded, the subdomains per second of the branch-and-bound loop and
the time (wall; records also hold the process's CPU seconds, ``cpu_s``, for a
shared machine); and per heuristic the instances decided and the ratio of FSB's figures
to BaBSR's measured in the same run. Instances closed at the root (no branching)
are listed but decide nothing between the two.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from _siblings import sibling
from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verification.bab import BaBSettings, bab_verify_case
from optprune.verification.bounds import compute_bounds
from optprune.verification.counterexample import OnnxChecker, case_confirm
from optprune.verification.vnnlib import read_vnnlib

console = Console(stderr=True)


def heuristics(fsb_k: int) -> dict[str, BaBSettings]:
    return {"babsr": BaBSettings(fsb_k=0), f"fsb{fsb_k}": BaBSettings(fsb_k=fsb_k)}


def run_one(folder: Path, onnx_name: str, prop: str, settings: BaBSettings, limit_s: float, nets: dict) -> dict:
    net = nets.setdefault(onnx_name, network_from_onnx(folder / onnx_name))
    checker = nets.setdefault(("onnx", onnx_name), OnnxChecker(folder / onnx_name))
    start, cpu = time.perf_counter(), time.process_time()
    parsed = read_vnnlib(folder / prop, net.input_size, net.output_size)
    verdicts, domains, bab_s, by = [], 0, 0.0, []
    for case in parsed.cases:
        left = limit_s - (time.perf_counter() - start)
        if left <= 0:
            verdicts.append("unknown")
            break
        bounds = compute_bounds(net, case.lower, case.upper, "linear")
        res = bab_verify_case(net, case, deadline=time.perf_counter() + left, bounds=bounds,
                              confirm=case_confirm(net, checker, case), settings=settings)
        verdicts.append(res.verdict)
        domains += res.domains
        bab_s += res.stages["bab"]
        by.append(res.decided_by)
        if res.verdict == "sat":
            break
    verdict = "sat" if "sat" in verdicts else ("unknown" if "unknown" in verdicts else "unsat")
    return {"verdict": verdict, "domains": domains, "bab_s": round(bab_s, 4),
            "decided_by": ",".join(b for b in by if b), "time_s": round(time.perf_counter() - start, 4),
            "domains_per_s": round(domains / bab_s, 1) if bab_s > 0 else None,
            "cpu_s": round(time.process_time() - cpu, 4)}


def summary(rows: list, names: list[str], header: str, truth: dict) -> str:
    lines = [header.rstrip(), "", "# Branch and bound: BaBSR against filtered smart branching (BaB alone)", "",
             "| network | property | competition | " + " | ".join(
                 f"{n} verdict | {n} subdomains | {n} subdomains/s | {n} time (s)" for n in names) + " |",
             "|---|---|---|" + "---|---|---|---|" * len(names)]
    decided = {n: 0 for n in names}
    wrong = {n: 0 for n in names}
    rates: dict[str, list] = {n: [] for n in names}
    for (onnx_name, prop), recs in rows:
        comp = truth.get((onnx_name, prop), "?")
        cells = []
        for n in names:
            r = recs[n]
            cells += [r["verdict"], str(r["domains"]), str(r["domains_per_s"] or "-"), f"{r['time_s']:.2f}"]
            if r["verdict"] != "unknown":
                decided[n] += 1
                wrong[n] += comp in ("sat", "unsat") and r["verdict"] != comp
            if r["domains_per_s"] and r["bab_s"] > 1.0:  # instances that branched for a while
                rates[n].append(r["domains_per_s"])
        lines.append(f"| {onnx_name} | {prop} | {comp} | " + " | ".join(cells) + " |")
    lines += ["", "| heuristic | decided | wrong | mean subdomains/s (instances branching > 1 s) |",
              "|---|---|---|---|"]
    for n in names:
        mean = sum(rates[n]) / len(rates[n]) if rates[n] else float("nan")
        lines.append(f"| {n} | {decided[n]}/{len(rows)} | {wrong[n]} | {mean:.1f} |")
    base, other = names
    if rates[base] and rates[other]:
        ratio = (sum(rates[other]) / len(rates[other])) / (sum(rates[base]) / len(rates[base]))
        lines += ["", f"{other} / {base}: decided {decided[other]} vs {decided[base]}; "
                      f"subdomains/s ratio {ratio:.2f} (same run, same instances)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["256x4"])
    ap.add_argument("--limit-s", type=float, default=20.0, help="seconds per instance and heuristic")
    ap.add_argument("--first", type=int, default=None, help="only the first N instances per network")
    ap.add_argument("--props", nargs="+", default=None, help="only these properties (with or without .vnnlib)")
    ap.add_argument("--fsb-k", type=int, default=3, help="FSB candidates per layer")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/bab_branching"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    if args.limit_s <= 0 or args.fsb_k < 1:
        ap.error("--limit-s must be > 0 and --fsb-k >= 1")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    with open(folder / "instances.csv") as fh:
        instances = [row for row in csv.reader(fh) if row]
    truth = {}
    for name in ("verdicts_256x2.csv", "verdicts_256x4.csv"):
        if (folder / name).exists():
            with open(folder / name) as fh:
                truth.update({(r["network"], r["property"]): r["verdict"] for r in csv.DictReader(fh)})
    selected = [r for r in instances if any(f"_{n}." in r[0] for n in args.nets)]
    if args.props:
        wanted = {p if p.endswith(".vnnlib") else f"{p}.vnnlib" for p in args.props}
        selected = [r for r in selected if r[1] in wanted]
    if args.first:
        selected = sibling("vnncomp_mnistfc").first_per_network(selected, args.first)
    settings = heuristics(args.fsb_k)
    store = RecordStore(args.out / "records.jsonl")
    nets: dict = {}
    rows, before = [], 0
    with store:
        for onnx_name, prop, _ in selected:
            recs = {}
            for name, s in settings.items():
                rid = f"{onnx_name}|{prop}|{name}|{args.limit_s:g}"
                before += rid in store
                if rid not in store:
                    rec = {"id": rid, "network": onnx_name, "property": prop, "heuristic": name,
                           "limit_s": args.limit_s, **run_one(folder, onnx_name, prop, s, args.limit_s, nets)}
                    store.append(rec)
                recs[name] = store.records[rid]
                r = recs[name]
                console.log(f"{onnx_name} {prop} {name}: {r['verdict']} {r['domains']} subdomains "
                            f"({r['domains_per_s']}/s) in {r['time_s']:.1f}s")
            rows.append(((onnx_name, prop), recs))
    run.resumed(before, len(selected) * len(settings))
    text = summary(rows, list(settings), run.header(), truth)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
