"""VNN-COMP 2021 mnistfc: decide every instance and compare with the competition's verdicts.

Usage::

    python benchmarks/vnncomp_mnistfc.py [--nets 256x2 256x4] [--method mip bab auto] [--solver highs]
        [--bounds obbt] [--scale 1.0] [--limit N] [--props prop_0_0.03 ...] [--threads 1]
        [--out results/vnncomp_mnistfc]
        [--bound-report N] [--cactus] [--allow-dirty]

Time limits come from ``instances.csv`` (120 s for 256x2, 300 s for 256x4),
multiplied by ``--scale``. ``--method`` is :func:`optprune.verification.verify_property`'s
(``mip``: bounds, attack, decision MIPs; ``bab``: branch and bound on
α/β-CROWN bounds; ``auto``: BaB, then the MIP pipeline); several methods run
one after the other, so one command makes a whole folder. Records are appended
to ``OUT/records.jsonl`` as they arrive; a rerun skips instances already
recorded (resume; records of several methods share one store). Prints, and
writes to ``OUT/summary.md`` (``OUT/summary_bab.md``, ``OUT/summary_auto.md``
for the other methods) under the provenance header (command, date,
machine, versions), per instance verdict, time and what decided it, the
number decided, what decided them, and the agreement with
``verdicts_256x2.csv`` / ``verdicts_256x4.csv`` (a verdict that differs from
the competition's is *wrong*; on 256x4 some instances were decided by no tool).

``--cactus`` also writes ``OUT/cactus.png``: instances decided within each
time, one curve per method (and network) found in the store.
``--bound-report N`` writes ``OUT/bounds.md``: for the first N instances per
network, the unstable neurons and the root upper bound of the property's
slack (the largest over its disjuncts; < 0 proves it) for interval, linear
(CROWN), α-CROWN and OBBT bounds, with their times.
The README's figures are ``--nets 256x2 --method mip auto bab --cactus --bound-report 2``
(the competition's 120 s per instance) into ``results/vnncomp_mnistfc``; the
header of each summary names the command that remakes its folder.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verification import DEFAULT_BOUNDS, verify_vnnlib
from optprune.verification.engine_registry import ENGINES

console = Console(stderr=True)


DECIDERS = ("bounds", "attack", "mip", "bab")


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}" if values else "-"


def record_id(onnx_name: str, prop: str, solver: str, bounds: str, limit_s: float, method: str,
              threads: int = 1) -> str:
    """The store key; ``mip`` records keep the key they had before methods existed, one-thread records the key
    they had before ``--threads``."""
    rid = f"{onnx_name}|{prop}|{solver}|{bounds}|{limit_s:g}"
    rid = rid if method == "mip" else f"{rid}|{method}"
    return rid if threads == 1 else f"{rid}|threads={threads}"


MNISTFC_NOTE = ("Times are wall-clock per instance (parsing excluded; bounds, attack, MIPs and BaB included); the "
                "competition's verdicts are from `verdicts_256x2.csv` and `verdicts_256x4.csv` (`unknown` there: no "
                "2021 tool decided it, so a verdict of ours is checked by nothing but our own soundness). The fastest "
                "2021 tool's time was measured on the competition's hardware, not this machine.")


def read_verdicts(paths: list[Path]) -> tuple[dict, dict]:
    """The competition's verdict and its fastest tool ("TOOL SECONDS", or "") per (network, property), from the
    verdict CSVs among ``paths`` that exist (columns network, property, verdict, fastest_tool, fastest_s)."""
    truth, fastest = {}, {}
    for path in paths:
        if path.exists():
            with open(path) as fh:
                for r in csv.DictReader(fh):
                    truth[(r["network"], r["property"])] = r["verdict"]
                    fastest[(r["network"], r["property"])] = (f"{r['fastest_tool']} {r['fastest_s']}"
                                                              if r.get("fastest_tool") else "")
    return truth, fastest


def summary_markdown(selected: list[list[str]], done: dict, truth: dict, header: str, fastest: dict | None = None,
                     method: str = "mip", benchmark: str = "mnistfc", note: str = MNISTFC_NOTE) -> str:
    """Per-instance table and per-network summary (decided, sat/unsat, agreement, what decided, median times).

    ``benchmark`` names the category in the title, ``note`` is the closing paragraph (where the verdicts came
    from); ``benchmarks/vnncomp_oval21.py`` passes its own."""
    fastest = fastest or {}
    lines = [header.rstrip(), "", f"# VNN-COMP 2021 {benchmark} (method {method})", "",
             "| network | property | verdict | competition | time (s) | limit (s) | decided by | method | BaB subdomains "
             "| fastest 2021 tool (s, their hardware) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for onnx_name, prop, _ in selected:
        rec = done[(onnx_name, prop)]
        expected = truth.get((onnx_name, prop), "")
        fast = fastest.get((onnx_name, prop), "")
        lines.append(f"| {onnx_name} | {prop} | {rec['verdict']} | {expected or '-'} | {rec['time_s']:.2f} | "
                     f"{rec['limit_s']:g} | {rec['decided_by'] or '-'} | {rec.get('method') or 'mip'} | "
                     f"{rec.get('bab_domains', 0)} | {fast or '-'} |")
        s = summary.setdefault(onnx_name, {"n": 0, "decided": 0, "sat": 0, "unsat": 0, "wrong": 0, "agree": 0,
                                           "times": [], "by": {k: [] for k in DECIDERS}, "limit": rec["limit_s"]})
        s["n"] += 1
        if rec["verdict"] in ("sat", "unsat"):
            s["decided"] += 1
            s[rec["verdict"]] += 1
            s["times"].append(rec["time_s"])
            s["by"].setdefault(rec["decided_by"] or "?", []).append(rec["time_s"])
            if expected in ("sat", "unsat"):
                s["agree" if expected == rec["verdict"] else "wrong"] += 1
    lines += ["", "| network | limit (s) | decided | sat | unsat | agree with competition | wrong | "
              "median time of decided (s) | decided by bounds: n, median s | by attack: n, median s | "
              "by MIP: n, median s | by BaB: n, median s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, s in summary.items():
        known = any(k[0] == name for k in truth)
        by = [f"{len(s['by'][k])}, {_median(s['by'][k])}" for k in DECIDERS]
        lines.append(f"| {name} | {s['limit']:g} | {s['decided']}/{s['n']} | {s['sat']} | {s['unsat']} | "
                     f"{s['agree'] if known else 'n/a'} | {s['wrong'] if known else 'n/a'} | {_median(s['times'])} | "
                     + " | ".join(by) + " |")
    lines += ["", note]
    return "\n".join(lines) + "\n"


def write_cactus(records: list[dict], path: Path, benchmark: str = "mnistfc", prefix: str = "mnist-net_") -> None:
    """Instances decided within each time, one curve per (network, method) in ``records`` (network names without
    ``prefix`` and ``.onnx``; ``benchmark`` in the title)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict = {}
    for rec in records:
        key = (rec["network"].replace(prefix, "").replace(".onnx", ""), rec.get("method_asked") or "mip",
               rec["limit_s"])
        curves.setdefault(key, [])
        if rec["verdict"] in ("sat", "unsat"):
            curves[key].append(rec["time_s"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for (net, method, limit), times in sorted(curves.items()):
        times = sorted(times)
        ax.step([0.0, *times], list(range(len(times) + 1)), where="post", label=f"{net} {method} ({limit:g} s)")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances decided")
    ax.set_title(f"VNN-COMP 2021 {benchmark} on this machine")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def first_per_network(selected: list[list[str]], n: int) -> list[list[str]]:
    """The first ``n`` rows of each network (column 0) in ``selected``, in order."""
    count: dict[str, int] = {}
    kept = []
    for row in selected:
        count[row[0]] = count.get(row[0], 0) + 1
        if count[row[0]] <= n:
            kept.append(row)
    return kept


def bound_report(folder: Path, selected: list[list[str]], n: int, header: str) -> str:
    """Unstable neurons and the root upper bound of the slack for each bound level (module doc)."""
    from optprune.verification.alpha_crown import alpha_spec_upper_bound
    from optprune.verification.bounds import compute_bounds, count_unstable, linear_upper_bound
    from optprune.verification.obbt import obbt_bounds
    from optprune.verification.vnnlib import read_vnnlib

    lines = [header.rstrip(), "", "# Bound quality at the root", "",
             "Per instance and bound level: unstable ReLUs, and the largest over the property's disjuncts of the "
             "upper bound of its slack `min_i (C_i y + d_i)` (negative proves the property); time of the level "
             "(OBBT and α-CROWN start from CROWN; their times exclude it).", "",
             "| network | property | level | unstable | root slack bound | time (s) |", "|---|---|---|---|---|---|"]
    for onnx_name, prop, _ in first_per_network(selected, n):
        net = network_from_onnx(folder / onnx_name)
        case = read_vnnlib(folder / prop, net.input_size, net.output_size).cases[0]
        lo, hi = case.lower, case.upper

        def slack(b, net=net, case=case) -> float:
            return max(float(np.min(linear_upper_bound(net, b, c.C, c.d, case.lower, case.upper)))
                       for c in case.disjuncts)

        t = time.perf_counter()
        interval = compute_bounds(net, lo, hi, "interval")
        rows = [("interval", count_unstable(net, interval), slack(interval), time.perf_counter() - t)]
        t = time.perf_counter()
        linear = compute_bounds(net, lo, hi, "linear")
        rows.append(("linear (CROWN)", count_unstable(net, linear), slack(linear), time.perf_counter() - t))
        t = time.perf_counter()
        C = np.vstack([c.C for c in case.disjuncts])  # every row its own slopes; a conjunction is its rows' min
        ub, b_alpha = alpha_spec_upper_bound(net, lo, hi, C, np.concatenate([c.d for c in case.disjuncts]),
                                             bounds=linear)
        ends = np.cumsum([c.C.shape[0] for c in case.disjuncts])
        best = max(float(np.min(part)) for part in np.split(ub, ends[:-1]))
        rows.append(("α-CROWN", count_unstable(net, b_alpha), best, time.perf_counter() - t))
        t = time.perf_counter()
        obbt = obbt_bounds(net, lo, hi, linear, time_budget=60.0)
        rows.append(("OBBT (60 s budget)", count_unstable(net, obbt), slack(obbt), time.perf_counter() - t))
        for level, unstable, bound, secs in rows:
            lines.append(f"| {onnx_name} | {prop} | {level} | {unstable} | {bound:.4f} | {secs:.2f} |")
            console.log(f"{onnx_name} {prop} {level}: {unstable} unstable, slack <= {bound:.4f} ({secs:.2f} s)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", nargs="+", default=["256x2", "256x4"])
    ap.add_argument("--method", nargs="+", default=["mip"], choices=ENGINES.names(),
                    help="one or more methods, run one after the other (one summary each)")
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--bounds", default=None, help=f"bound method (default: each engine's own; MIP: {DEFAULT_BOUNDS})")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply the competition's time limits")
    ap.add_argument("--limit", type=int, default=None, help="only the first N instances per network")
    ap.add_argument("--props", nargs="+", default=None, metavar="NAME",
                    help="only these properties (file names with or without .vnnlib), on every net of --nets")
    ap.add_argument("--threads", type=int, default=1,
                    help="cores per instance (verify_property's threads; >= 2: auto races BaB and the MIP in two "
                         "processes; default 1, as the earlier records)")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/vnncomp_mnistfc"))
    ap.add_argument("--cactus", action="store_true", help="also write OUT/cactus.png from every record in the store")
    ap.add_argument("--bound-report", type=int, default=0, metavar="N",
                    help="also write OUT/bounds.md for the first N instances per network")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)

    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    with open(folder / "instances.csv") as fh:
        instances = [row for row in csv.reader(fh) if row]
    truth, fastest = read_verdicts([folder / "verdicts_256x2.csv", folder / "verdicts_256x4.csv"])
    store = RecordStore(args.out / "records.jsonl")  # resumable: a rerun skips recorded instances
    selected = [r for r in instances if any(f"_{n}." in r[0] for n in args.nets)]
    if args.threads < 1:
        ap.error(f"--threads must be >= 1, got {args.threads}")
    if args.props:
        wanted = {p if p.endswith(".vnnlib") else f"{p}.vnnlib" for p in args.props}
        unknown = wanted - {row[1] for row in selected}
        if unknown:
            ap.error(f"--props: no such property on {', '.join(args.nets)}: {', '.join(sorted(unknown))}")
        selected = [row for row in selected if row[1] in wanted]
    if args.limit:
        selected = first_per_network(selected, args.limit)
    nets = {}
    done: dict = {method: {} for method in args.method}
    done_before = 0
    with Progress(console=console) as progress, store:
        task = progress.add_task("mnistfc", total=len(selected) * len(args.method))
        for method in args.method:
            for onnx_name, prop, limit in selected:
                limit_s = float(limit) * args.scale
                rid = record_id(onnx_name, prop, args.solver, args.bounds, limit_s, method, args.threads)
                done_before += rid in store
                if rid not in store:
                    net = nets.setdefault(onnx_name, network_from_onnx(folder / onnx_name))
                    res = verify_vnnlib(net, folder / prop, solver=args.solver, time_limit=limit_s,
                                        bound_method=args.bounds, method=method, onnx_model=folder / onnx_name,
                                        threads=None if args.threads == 1 else args.threads)
                    rec = {"id": rid, "network": onnx_name, "property": prop, "solver": args.solver,
                           "bounds": args.bounds, "limit_s": limit_s, "method_asked": method,
                           "threads": args.threads, **res.to_dict()}
                    rec.pop("counterexample", None), rec.pop("output", None)
                    store.append(rec)
                rec = done[method][(onnx_name, prop)] = store.records[rid]
                progress.advance(task)
                console.log(f"{onnx_name} {prop} ({method}): {rec['verdict']} in {rec['time_s']:.1f}s "
                            f"({rec['decided_by']})")

    run.resumed(done_before, len(selected) * len(args.method))
    for method in args.method:
        text = summary_markdown(selected, done[method], truth, run.header(), fastest, method)
        (args.out / ("summary.md" if method == "mip" else f"summary_{method}.md")).write_text(text)
        print(text)
    if args.cactus:
        write_cactus(list(store.records.values()), args.out / "cactus.png")
    if args.bound_report:
        report = bound_report(folder, selected, args.bound_report, "")
        (args.out / "bounds.md").write_text(run.header() + report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
