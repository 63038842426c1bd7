"""VNN-COMP 2021 oval21: decide every CIFAR-10 convolutional instance and compare with the competition's verdicts.

Usage::

    python benchmarks/vnncomp_oval21.py [--nets base wide deep] [--method auto] [--scale 1.0 | --timeout S]
        [--threads 2] [--limit N] [--props NAME ...] [--out results/vnncomp_oval21] [--cactus]
        [--profile N] [--allow-dirty]

The 30 instances of ``instances.csv`` (three nets: ``cifar_base_kw``,
``cifar_wide_kw``, ``cifar_deep_kw``; 720 s each in the competition) run one at
a time through :func:`optprune.verification.verify_vnnlib` (the same path as
``optprune verify NET.onnx PROP.vnnlib --timeout T --threads N``), with the
competition's limit times ``--scale`` or ``--timeout`` seconds. Records are
appended to ``OUT/records.jsonl`` as they arrive; a rerun skips the instances
already recorded (resume). Every ``sat`` verdict's counterexample is checked
again here, independently of the verifier's own check: a float64 forward pass
of the network read from the ONNX file and an onnxruntime pass of the ONNX
file in its own precision must both put it in the property's unsafe set (the
record's ``cex_float64`` and ``cex_onnxruntime``). ``OUT/summary.md``
(``summary_<method>.md`` for a method other than ``auto``) has, under the
provenance header, per instance the verdict, time, what decided it, the
competition's verdict (``verdicts.csv``: a decided verdict that differs is
*wrong*) and its fastest 2021 tool, then per network the number decided.

``--cactus`` writes ``OUT/cactus.png`` (instances decided within each time).
``--no-conv`` runs the bound propagation on the unrolled dense matrices
(the path before :class:`optprune.verification.crown.ConvMap`), for
before/after comparisons. ``--profile N`` writes ``OUT/profile.md``
(``profile_dense.md`` with ``--no-conv``) and no records: for the first N
instances per network, one process (``threads=1``, so every stage runs in
this process and is seen), the cumulative seconds in each stage of the
pipeline under :mod:`cProfile` (loading and unrolling, CROWN intermediate
bounds, α-CROWN, attack, BaB's subdomain bounds, MIP), at the same limit.
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _siblings import sibling
from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verification import crown, verify_vnnlib
from optprune.verification.counterexample import CHECK_TOL, OnnxChecker, check_counterexample
from optprune.verification.engine_registry import ENGINES
from optprune.verification.vnnlib import read_vnnlib

console = Console(stderr=True)
_mnistfc = sibling("vnncomp_mnistfc")  # record keys, verdict CSV, summary table and cactus plot are shared

NETS = {"base": "cifar_base_kw", "wide": "cifar_wide_kw", "deep": "cifar_deep_kw"}
NOTE = ("Times are wall-clock per instance (reading the network and the property included, as `optprune verify` "
        "counts them); the competition's verdicts are from `verdicts.csv` (majority of the 2021 tools; `unknown`: no "
        "2021 tool decided it, so a verdict of ours is checked by nothing but our own soundness). The fastest 2021 "
        "tool's time was measured on the competition's hardware, not this machine. Every `sat` counterexample is "
        "checked again by the harness: a float64 forward pass of the network and an onnxruntime pass of the ONNX "
        "file (float32) both meet the property's output condition.")

#: Profile stages: (label, functions whose cumulative time it is), first match per function name.
STAGES = (
    ("reading the ONNX network (convolutions unrolled)", ("load_network", "network_from_onnx")),
    ("reading the VNN-LIB property", ("read_vnnlib",)),
    ("TorchNetwork.from_network (float64 tensors of every layer)", ("from_network",)),
    ("CROWN bounds of every layer at the root (layer_bounds)", ("layer_bounds",)),
    ("α-CROWN intermediate bounds at the root", ("alpha_intermediate_bounds",)),
    ("attack (PGD)", ("pgd_attack",)),
    ("BaB: branching (scores, FSB)", ("_split_relu",)),
    ("BaB: intermediate bounds of children", ("_recompute",)),
    ("BaB: α/β-CROWN bound of subdomains (_bound)", ("_bound",)),
    ("BaB: fully split leaves (LPs)", ("_close_leaves",)),
    ("MIP pipeline: OBBT", ("obbt_bounds",)),
    ("MIP pipeline: encoding", ("build_spec_milp",)),
    ("MIP pipeline: solver", ("solve",)),
)


def recheck(net, onnx_check: OnnxChecker, prop, x: np.ndarray) -> tuple[bool, bool]:
    """Whether ``x`` (unclipped, as reported) violates the property in a float64 pass of ``net`` and in the
    onnxruntime pass of the ONNX file (some case of the property, each)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    f64 = any(check_counterexample(net, case, x)[0] for case in prop.cases)
    y_ort = onnx_check(x)
    ort = any(case.violated_by(x, y_ort, tol=CHECK_TOL) for case in prop.cases)
    return f64, ort


def checked_summary(records: list[dict]) -> str:
    """How many sat verdicts passed both re-checks (a failure would make the verdict wrong), and the machine's
    load as the instances started (records that have it)."""
    sats = [r for r in records if r["verdict"] == "sat"]
    ok = sum(bool(r.get("cex_float64")) and bool(r.get("cex_onnxruntime")) for r in sats)
    text = (f"Counterexamples re-checked by the harness (float64 forward pass and onnxruntime): {ok} of {len(sats)} "
            "sat verdicts pass both.")
    loads = [r["load_1m"] for r in records if r.get("load_1m") is not None]
    if loads:
        text += (f" Machine load (1-minute average, 2 cores) as each instance started: median "
                 f"{statistics.median(loads):.1f}, max {max(loads):.1f} ({len(loads)} of {len(records)} records).")
    return text


def _stage_times(stats: pstats.Stats) -> list[tuple[str, float, int]]:
    """Cumulative seconds and calls of each :data:`STAGES` entry (the largest cumulative time among its names;
    recursive or nested calls are counted once by cProfile's cumulative time)."""
    rows = []
    table = stats.stats  # type: ignore[attr-defined]
    for label, names in STAGES:
        best, calls = 0.0, 0
        for (_file, _line, func), (_cc, nc, _tt, ct, _callers) in table.items():
            if func in names and "optprune" in _file and ct > best:
                best, calls = ct, nc
        rows.append((label, best, calls))
    return rows


def profile_report(folder: Path, selected: list[list[str]], n: int, limit_s: float, method: str) -> str:
    """``profile.md``'s body: per profiled instance, the stages' cumulative seconds (module doc)."""
    lines = ["# Where the time goes (oval21, one process)", "",
             f"`verify_vnnlib(..., method={method!r}, threads=1, time_limit={limit_s:g})` under cProfile, the first "
             f"{n} instance(s) of each network. Cumulative seconds per stage (a stage's time includes what it calls, "
             "so the BaB rows overlap the CROWN rows and the total is not their sum); cProfile's own overhead "
             "inflates many-call stages a little.", ""]
    for onnx_name, prop, _ in _mnistfc.first_per_network(selected, n):
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        res = verify_vnnlib(folder / onnx_name, folder / prop, time_limit=limit_s, method=method, threads=1)
        prof.disable()
        wall = time.perf_counter() - t
        stats = pstats.Stats(prof)
        lines += [f"## {onnx_name} {prop}", "",
                  f"verdict {res.verdict} in {wall:.1f} s wall (decided by {res.decided_by or '-'}; BaB subdomains "
                  f"{res.bab_domains}; stages reported by the verifier {res.to_dict()['stages']})", "",
                  "| stage | cumulative s | calls | share of wall |", "|---|---|---|---|"]
        for label, secs, calls in _stage_times(stats):
            lines.append(f"| {label} | {secs:.2f} | {calls} | {100 * secs / wall:.0f}% |")
        top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:8]  # type: ignore[attr-defined]
        lines += ["", "Largest own times (function: own s, calls):", ""]
        lines += [f"- `{Path(f).name}:{ln} {fn}`: {tt:.2f} s, {nc} calls" for (f, ln, fn), (_c, nc, tt, _ct, _) in top]
        lines.append("")
        console.log(f"profiled {onnx_name} {prop}: {res.verdict} in {wall:.1f}s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    ap.add_argument("--method", default="auto", choices=ENGINES.names())
    ap.add_argument("--solver", default="highs")
    limit = ap.add_mutually_exclusive_group()
    limit.add_argument("--scale", type=float, default=1.0, help="multiply the competition's limit (720 s)")
    limit.add_argument("--timeout", type=float, default=None, help="seconds per instance instead of the csv's")
    ap.add_argument("--threads", type=int, default=2, help="cores per instance (verify_property's threads)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N instances per network")
    ap.add_argument("--props", nargs="+", default=None, metavar="NAME",
                    help="only these properties (file names under vnnlib/, with or without .vnnlib)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/vnncomp_oval21"))
    ap.add_argument("--cactus", action="store_true", help="also write OUT/cactus.png from every record in the store")
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="only write OUT/profile.md: cProfile of the first N instances per network (no records)")
    ap.add_argument("--no-conv", action="store_true",
                    help="bound propagation on the unrolled dense matrices instead of convolutions (the earlier "
                         "path, for comparison; records keyed apart)")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.timeout is not None and not args.timeout > 0:
        ap.error(f"--timeout must be > 0 seconds, got {args.timeout}")
    if not args.scale > 0:
        ap.error(f"--scale must be > 0, got {args.scale}")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.no_conv:
        crown.CONV_DEFAULT = False  # read by TorchNetwork.from_network; forked race workers inherit it

    folder = data_dir(args.data_dir) / "vnncomp2021-oval21"
    with open(folder / "instances.csv") as fh:
        instances = [[c.strip() for c in row] for row in csv.reader(fh) if row]
    truth, fastest = _mnistfc.read_verdicts([folder / "verdicts.csv"])
    selected = [r for r in instances if any(f"/{NETS[n]}." in f"/{r[0]}" for n in args.nets)]
    if args.props:
        wanted = {p if p.endswith(".vnnlib") else f"{p}.vnnlib" for p in args.props}
        wanted = {p if p.startswith("vnnlib/") else f"vnnlib/{p}" for p in wanted}
        unknown = wanted - {row[1] for row in selected}
        if unknown:
            ap.error(f"--props: no such property on {', '.join(args.nets)}: {', '.join(sorted(unknown))}")
        selected = [row for row in selected if row[1] in wanted]
    if args.limit:
        selected = _mnistfc.first_per_network(selected, args.limit)

    def limit_of(row: list[str]) -> float:
        return float(args.timeout) if args.timeout is not None else float(row[2]) * args.scale

    if args.profile:
        limits = {limit_of(row) for row in selected}
        text = profile_report(folder, selected, args.profile, max(limits), args.method)
        text = text.replace("(oval21, one process)", "(oval21, one process, dense matrices)") if args.no_conv else text
        (args.out / ("profile_dense.md" if args.no_conv else "profile.md")).write_text(run.header() + "\n" + text)
        print(text)
        return 0

    store = RecordStore(args.out / "records.jsonl")  # resumable: a rerun skips recorded instances
    done: dict = {}
    done_before = 0
    nets: dict = {}
    with store:
        for i, (onnx_name, prop, _) in enumerate(selected, 1):
            limit_s = limit_of([onnx_name, prop, _])
            rid = _mnistfc.record_id(onnx_name, prop, args.solver, None, limit_s, args.method, args.threads)
            rid += "|dense" if args.no_conv else ""
            done_before += rid in store
            if rid not in store:
                load_1m = round(os.getloadavg()[0], 2)  # the machine's load as the instance starts
                t0 = time.perf_counter()
                res = verify_vnnlib(folder / onnx_name, folder / prop, solver=args.solver, time_limit=limit_s,
                                    method=args.method, threads=args.threads)
                wall = time.perf_counter() - t0
                rec = {"id": rid, "network": onnx_name, "property": prop, "solver": args.solver, "bounds": None,
                       "limit_s": limit_s, "method_asked": args.method, "threads": args.threads,
                       "conv": crown.CONV_DEFAULT, "load_1m": load_1m,
                       "wall_s": round(wall, 3), **res.to_dict()}
                if res.verdict == "sat":
                    if onnx_name not in nets:
                        nets[onnx_name] = (network_from_onnx(folder / onnx_name), OnnxChecker(folder / onnx_name))
                    net, onnx_check = nets[onnx_name]
                    parsed = read_vnnlib(folder / prop, net.input_size, net.output_size)
                    rec["cex_float64"], rec["cex_onnxruntime"] = recheck(net, onnx_check, parsed,
                                                                          res.counterexample)
                rec.pop("counterexample", None), rec.pop("output", None)
                store.append(rec)
            rec = done[(onnx_name, prop)] = store.records[rid]
            console.log(f"[{i}/{len(selected)}] {onnx_name} {prop}: {rec['verdict']} in {rec['time_s']:.1f}s "
                        f"({rec['decided_by']}; competition {truth.get((onnx_name, prop), '?')})")

    run.resumed(done_before, len(selected))
    text = _mnistfc.summary_markdown(selected, done, truth, run.header(), fastest, args.method, benchmark="oval21",
                                     note=NOTE + " " + checked_summary(list(done.values())))
    (args.out / ("summary.md" if args.method == "auto" else f"summary_{args.method}.md")).write_text(text)
    print(text)
    if args.cactus:
        _mnistfc.write_cactus(list(store.records.values()), args.out / "cactus.png", benchmark="oval21",
                              prefix="nets/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
