"""Branch and bound at depth: the plain race of BaB and the MIP against the cooperative race (MIP on BaB's subdomains).

Usage::

    python benchmarks/bab_depth.py --net 256x4 --limit-s 60 \\
        [--open-in results/vnncomp_mnistfc_256x4_60s_threads2/records.jsonl | --props prop_0_0.03 ...] \\
        [--threads 2] [--settings race coop] [--out results/bab_depth_256x4_60s] [--allow-dirty]

On VNN-COMP 2021 mnistfc instances, or oval21's (``--net cifar_base_kw`` etc.; ``instances.csv``
order; ``--open-in``: only those a committed record left ``unknown``, a selection by this project's own
failures; ``--props``: a named list), runs engine ``auto`` with ``--threads``
cores (BaB and the MIP pipeline in two processes), one instance at a time, at
``--limit-s`` seconds, twice:

* ``race``: the two engines side by side, each deciding every conjunction alone
  (:class:`optprune.verification.engines.AutoEngine` with ``coop=False, relay=None``; the
  earlier default);
* ``coop``: the same two processes sharing a board
  (:mod:`optprune.verification.coop`): each conjunction closed by either is
  dropped by the other, the MIP's whole-conjunction solves are time-sliced and
  it then solves BaB's open subdomains one at a time
  (:mod:`optprune.verification.subdomain_mip`), BaB dropping every subtree the
  MIP closes;
* ``coop_whole``: ``coop`` with unsliced whole-conjunction MIPs; ``coop_deep``:
  ``coop`` handing BaB's deepest subdomain instead of its worst-bounded one;
  ``race_recompute`` / ``coop_recompute``: BaB recomputing the children's
  intermediate bounds (CROWN, ``BaBSettings.intermediate="crown"``) above each split;
  ``workers_beta``: ``workers`` with those bounds optimised per child as in β-CROWN (``intermediate="beta"``);
* ``relay`` (engine ``auto``'s default since measured here): the plain race, but BaB's process gives up BaB
  after ``AUTO_RELAY_SHARE`` of the time and runs a second MIP pipeline on the conjunctions the first has not
  claimed
  (:class:`optprune.verification.engines.RelayEngine`, :mod:`optprune.verification.claims`);
  ``relay_half`` / ``relay_tenth``: the same, BaB's process turning at half / a tenth of the time;
* ``threads`` (engine ``auto`` as it is) against ``workers``: where BaB runs alone (more unstable ReLUs than
  ``AUTO_MIP_MAX_UNSTABLE``), one search on torch's intra-op threads against one forked search per core with
  the root's open conjunctions dealt out (``BaBSettings.parallel``, :mod:`optprune.verification.bab_workers`;
  the subdomains/s of ``workers`` count every worker's subdomains against the wall time of the loop).

Records go to ``OUT/records.jsonl`` as they arrive (resumable); ``OUT/summary.md``
gives per instance and setting the verdict (checked against the competition's),
what decided it, the subdomains BaB bounded and per second of its loop, the
largest bound still open at the time limit (lower: closer to a proof), the
conjunctions proved by BaB or a whole-conjunction MIP (in ``race`` the union of
two proofs that no process combines), the
subdomains handed to the MIP and closed by it, and the time; per setting the
decided count, wrong verdicts, the mean subdomains/s, where BaB's time goes per
subdomain (branching: scores and FSB; bounding: α/β optimisation; the rest), and
the ratios of ``coop`` to ``race`` measured in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.solvers import get_backend
from optprune.verification.api import decide_cases
from optprune.verification.counterexample import OnnxChecker
from optprune.verification.deadline import Deadline
from optprune.verification.engines import AUTO_RELAY_SHARE, AutoEngine, CaseContext
from optprune.verification.vnnlib import read_vnnlib

console = Console(stderr=True)
SETTINGS = {
    "race": AutoEngine(coop=False, relay=None),  # BaB to the end beside one MIP pipeline
    "coop": AutoEngine(coop=True),
    "coop_whole": AutoEngine(coop=True, coop_options={"conj_share": 1.0}),  # whole-conjunction MIPs first
    "coop_sliced": AutoEngine(coop=True, coop_options={"conj_share": 0.3}),  # ... each on 30% of the time left
    "coop_deep": AutoEngine(coop=True, coop_options={"handoff": "deep"}),
    "race_recompute": AutoEngine(coop=False, relay=None, bab_options={"intermediate": "crown"}),  # CROWN above splits
    "coop_recompute": AutoEngine(coop=True, bab_options={"intermediate": "crown"}),
    "relay": AutoEngine(coop=False, relay=AUTO_RELAY_SHARE),  # BaB's process turns to the MIPs at the share
    "relay_half": AutoEngine(coop=False, relay=0.5),  # ... at half the time (the default before relay_tenth won)
    "relay_tenth": AutoEngine(coop=False, relay=0.1),  # ... at a tenth of the time
    "threads": AutoEngine(),  # the default; where BaB runs alone, one search on torch's threads
    "workers": AutoEngine(bab_options={"parallel": "workers"}),  # ... one forked search per core (conjunctions)
    "workers_beta": AutoEngine(bab_options={"parallel": "workers", "intermediate": "beta"}),  # β-CROWN above splits
}


def run_one(folder: Path, onnx_name: str, prop: str, engine: AutoEngine, limit_s: float, threads: int,
            cache: dict) -> dict:
    """One instance with one engine, as ``optprune verify`` runs it (reading counted in the time)."""
    start, cpu = time.perf_counter(), time.process_time()
    net = cache.setdefault(onnx_name, network_from_onnx(folder / onnx_name))
    checker = cache.setdefault(("onnx", onnx_name), OnnxChecker(folder / onnx_name))
    parsed = read_vnnlib(folder / prop, net.input_size, net.output_size)
    get_backend("highs").require()
    deadline = Deadline(limit_s - (time.perf_counter() - start))
    ctx = CaseContext(reference=net, deadline=deadline, onnx_check=checker, threads=threads)
    result = decide_cases(engine, net, parsed, ctx, "auto")
    d = result.to_dict()
    bab = d["bab"]
    stages = {k: sum(b["stages"].get(k, 0.0) for b in bab) for k in ("bab", "bab_branch", "bab_bound", "bab_share")}
    domains = sum(b["domains"] for b in bab)
    wall = sum(b.get("loop_wall_s", b["stages"]["bab"]) for b in bab)  # workers: the loop's wall time, not CPU s
    subs = [c for c in d["conjunctions"] if c.get("subdomain")]
    whole = [c for c in d["conjunctions"] if not c.get("subdomain")]
    return {
        "verdict": result.verdict, "decided_by": d["decided_by"], "method": d["method"],
        "time_s": round(time.perf_counter() - start, 4), "cpu_s": round(time.process_time() - cpu, 4),
        "bab_reported": bool(bab), "domains": domains,
        "open_bound": max((b["open_bound"] for b in bab if b.get("open_bound") is not None), default=None),
        # conjunctions of the (single-case) property proved by BaB or by a whole-conjunction MIP, and of all
        "closed_conjunctions": len({i for b in bab for i in b.get("closed_conjunctions", [])}
                                   | {c["index"] for c in whole if c.get("verdict") == "unsat"}),
        "conjunctions": sum(len(case.disjuncts) for case in parsed.cases),
        "domains_per_s": round(domains / wall, 1) if wall > 0 else None,
        "bab_stages": {k: round(v, 4) for k, v in stages.items()},
        "handed": sum(b.get("handed", 0) for b in bab), "helper_closed": sum(b.get("helper_closed", 0) for b in bab),
        "helper_conjunctions": sum(b.get("helper_conjunctions", 0) for b in bab),
        "subdomain_mips": len(subs), "subdomain_closed": sum(c["verdict"] == "closed" for c in subs),
        "subdomain_mip_s": round(sum(c["time_s"] for c in subs), 4),
        "whole_mips": [(c["index"], c.get("status"), c.get("verdict"), c.get("time_s")) for c in whole],
        "message": d["message"],
    }


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")


def summary(rows: list, names: list[str], header: str, truth: dict, selection: str) -> str:
    lines = [header.rstrip(), "", "# Branch and bound at depth: the plain race against the cooperative race", "",
             selection, "",
             "| property | competition | " + " | ".join(
                 f"{n} verdict | {n} by | {n} subdomains | {n} /s | {n} open bound | {n} conj. closed | "
                 f"{n} handed / closed by MIP | {n} time (s)" for n in names) + " |",
             "|---|---|" + "---|---|---|---|---|---|---|---|" * len(names)]
    decided = {n: 0 for n in names}
    wrong = {n: 0 for n in names}
    rates: dict[str, list] = {n: [] for n in names}
    per: dict[str, dict] = {n: {"bab": 0.0, "bab_branch": 0.0, "bab_bound": 0.0, "bab_share": 0.0, "domains": 0}
                            for n in names}
    for (onnx_name, prop), recs in rows:
        comp = truth.get((onnx_name, prop), "?")
        cells = []
        for n in names:
            r = recs[n]
            bound = r.get("open_bound")
            cells += [r["verdict"], r["decided_by"] or "-", str(r["domains"]), str(r["domains_per_s"] or "-"),
                      "-" if bound is None else f"{bound:.4g}",
                      f"{r.get('closed_conjunctions', '?')}/{r.get('conjunctions', '?')}",
                      f"{r['handed']} / {r['helper_closed']}", f"{r['time_s']:.1f}"]
            if r["verdict"] != "unknown":
                decided[n] += 1
                wrong[n] += comp in ("sat", "unsat") and r["verdict"] != comp
            if r["domains_per_s"] and r["bab_stages"]["bab"] > 1.0:
                rates[n].append(r["domains_per_s"])
            if r["domains"]:
                for k in ("bab", "bab_branch", "bab_bound", "bab_share"):
                    per[n][k] += r["bab_stages"][k]
                per[n]["domains"] += r["domains"]
        lines.append(f"| {prop} | {comp} | " + " | ".join(cells) + " |")
    lines += ["", "| setting | decided | wrong | mean subdomains/s (BaB loop > 1 s) | "
                  "ms per subdomain (process time, workers summed): all | "
                  "branching | bounding | board | other |", "|---|---|---|---|---|---|---|---|---|"]
    for n in names:
        p = per[n]
        ms = {k: 1000.0 * p[k] / p["domains"] if p["domains"] else float("nan")
              for k in ("bab", "bab_branch", "bab_bound", "bab_share")}
        other = ms["bab"] - ms["bab_branch"] - ms["bab_bound"] - ms["bab_share"]
        lines.append(f"| {n} | {decided[n]}/{len(rows)} | {wrong[n]} | {_mean(rates[n]):.1f} | {ms['bab']:.2f} | "
                     f"{ms['bab_branch']:.2f} | {ms['bab_bound']:.2f} | {ms['bab_share']:.2f} | {other:.2f} |")
    base, other_name = names
    if rates[base] and rates[other_name]:
        lines += ["", f"{other_name} / {base}: decided {decided[other_name]} vs {decided[base]}; subdomains/s ratio "
                      f"{_mean(rates[other_name]) / _mean(rates[base]):.2f} (same run, same instances, same limit "
                      "and threads)"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--net", default="256x4", help="256x2 or 256x4 (mnistfc), or an oval21 net: cifar_base_kw, "
                    "cifar_wide_kw, cifar_deep_kw")
    ap.add_argument("--limit-s", type=float, default=60.0, help="seconds per instance and setting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--open-in", type=Path, default=None,
                    help="a records.jsonl of benchmarks/vnncomp_mnistfc.py: only the instances it left unknown")
    ap.add_argument("--props", nargs="+", default=None, help="only these properties (with or without .vnnlib)")
    ap.add_argument("--settings", nargs=2, default=["race", "coop"], choices=list(SETTINGS),
                    help="the baseline and the setting measured against it")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/bab_depth"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    if args.limit_s <= 0 or args.threads < 2:
        ap.error("--limit-s must be > 0 and --threads >= 2 (the race needs two processes)")
    if args.open_in is not None and not args.open_in.is_file():
        ap.error(f"--open-in {args.open_in}: no such file")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    oval = args.net.startswith("cifar_")
    folder = data_dir(args.data_dir) / ("vnncomp2021-oval21" if oval else "vnncomp2021-mnistfc")
    onnx_name = f"nets/{args.net}.onnx" if oval else f"mnist-net_{args.net}.onnx"
    with open(folder / "instances.csv") as fh:
        props = [row[1] for row in csv.reader(fh) if row and row[0] == onnx_name]
    if not props:
        ap.error(f"--net {args.net}: no instances of {onnx_name} in {folder / 'instances.csv'}")
    truth = {}
    for name in ("verdicts_256x2.csv", "verdicts_256x4.csv", "verdicts.csv"):
        if (folder / name).exists():
            with open(folder / name) as fh:
                truth.update({(r["network"], r["property"]): r["verdict"] for r in csv.DictReader(fh)})
    selection = f"Instances: every {onnx_name} instance."
    if args.open_in is not None:
        with open(args.open_in) as fh:
            earlier = [json.loads(line) for line in fh if line.strip()]
        left = {r["property"] for r in earlier if r.get("network") == onnx_name and r.get("verdict") == "unknown"}
        props = [p for p in props if p in left]
        selection = (f"Instances: the {len(props)} {onnx_name} instances that `{args.open_in}` left unknown "
                     "(a selection by this project's own failures).")
    if args.props:
        wanted = {p if p.endswith(".vnnlib") else f"{p}.vnnlib" for p in args.props}
        props = [p for p in props if Path(p).name in wanted]
        selection = f"Instances: {', '.join(props)} (named on the command line)."
    selection += (f" Limit {args.limit_s:g} s per instance and setting, {args.threads} threads, one instance at a "
                  f"time; machine load at the start {os.getloadavg()[0]:.1f}.")
    store = RecordStore(args.out / "records.jsonl")
    cache: dict = {}
    rows, before = [], 0
    with store:
        for prop in props:
            recs = {}
            for name in args.settings:
                engine = SETTINGS[name]
                rid = f"{onnx_name}|{prop}|{name}|{args.limit_s:g}|threads={args.threads}"
                before += rid in store
                if rid not in store:
                    rec = {"id": rid, "network": onnx_name, "property": prop, "setting": name,
                           "limit_s": args.limit_s, "threads": args.threads,
                           **run_one(folder, onnx_name, prop, engine, args.limit_s, args.threads, cache)}
                    store.append(rec)
                recs[name] = store.records[rid]
                r = recs[name]
                console.log(f"{prop} {name}: {r['verdict']} by {r['decided_by'] or '-'}, {r['domains']} subdomains "
                            f"({r['domains_per_s']}/s), handed {r['handed']} closed {r['helper_closed']}, "
                            f"{r['time_s']:.1f}s")
            rows.append(((onnx_name, prop), recs))
    run.resumed(before, len(props) * len(args.settings))
    text = summary(rows, list(args.settings), run.header(), truth, selection)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
