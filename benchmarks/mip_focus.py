"""Decision MIPs with the solver's primal heuristics on (HiGHS' default) against ``focus="bound"`` (off).

The MIP pipeline (``--method mip``: bounds, attack, OBBT, one decision MIP per
open conjunction) is run twice on each named VNN-COMP 2021 mnistfc instance,
once per setting, with the same limit and threads, the order of the two
alternating from one instance to the next:

* ``plain``: ``DecisionTolerances(focus=None)``, the solver's own balance
  between finding points and proving bounds;
* ``bound``: ``DecisionTolerances(focus="bound")`` (the default since measured
  here), primal heuristics off (:attr:`optprune.solvers.SolveOptions.focus`).

Only the solver's effort differs; the tolerances, the proof margin and the
stages before the MIPs are the same. Records go to ``OUT/records.jsonl`` as
they arrive (resumable); ``OUT/summary.md`` gives per instance both verdicts
(checked against the competition's), the seconds in the MIP stage and in
total, the MIPs solved, and the ratio plain / bound of the MIP-stage seconds;
per setting the decided count and wrong verdicts, and the geometric mean of
the ratios over the instances both settings decide.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from _siblings import sibling
from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.verification import verify_vnnlib
from optprune.verification.verdicts import DECISION_TOLERANCES

console = Console(stderr=True)
SETTINGS = {"plain": replace(DECISION_TOLERANCES, focus=None), "bound": replace(DECISION_TOLERANCES, focus="bound")}
DEFAULT_INSTANCES = ["256x2:prop_1_0.03", "256x2:prop_3_0.03", "256x2:prop_0_0.05", "256x4:prop_0_0.03",
                     "256x4:prop_5_0.03"]


def run_one(folder: Path, onnx_name: str, prop: str, setting: str, limit_s: float, threads: int) -> dict:
    """One run of the MIP pipeline under ``setting``: what the record keeps."""
    result = verify_vnnlib(folder / onnx_name, folder / prop, method="mip", threads=threads, time_limit=limit_s,
                           tolerances=SETTINGS[setting])
    return {"verdict": result.verdict, "decided_by": result.decided_by,
            "time_s": round(result.time_s, 4), "mip_s": round(result.stages.get("mip", 0.0), 4),
            "mips_solved": result.mips_solved, "message": result.message}


def summary(rows: list[tuple[str, str, dict]], truth: dict, header: str, limit_s: float, threads: int) -> str:
    lines = [header, "# Decision MIPs: primal heuristics on (plain) against focus=\"bound\"", "",
             f"Method `mip`, limit {limit_s:g} s per instance and setting, {threads} thread(s), one run at a time, "
             "the two settings alternating first. MIP s: seconds in the MIP stage (the decision MIPs); total: the "
             "whole run, parsing included.", "",
             "| network | property | competition | plain | plain MIP s | plain MIPs | bound | bound MIP s | bound MIPs "
             "| plain / bound (MIP s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    ratios, decided, wrong = [], {s: 0 for s in SETTINGS}, {s: 0 for s in SETTINGS}
    for onnx_name, prop, recs in rows:
        comp = truth.get((onnx_name, prop), "?")
        for s, r in recs.items():
            decided[s] += r["verdict"] != "unknown"
            wrong[s] += r["verdict"] != "unknown" and comp in ("sat", "unsat") and r["verdict"] != comp
        both = all(r["verdict"] != "unknown" for r in recs.values())
        p, b = recs["plain"], recs["bound"]
        ratio = p["mip_s"] / b["mip_s"] if both and b["mip_s"] > 0 and p["mip_s"] > 0 else None
        if ratio is not None:
            ratios.append(ratio)
        cell = {s: f"{r['verdict']} {r['time_s']:.1f} s" for s, r in recs.items()}
        lines.append(f"| {onnx_name} | {prop} | {comp} | {cell['plain']} | {p['mip_s']:.1f} | {p['mips_solved']} | "
                     f"{cell['bound']} | {b['mip_s']:.1f} | {b['mips_solved']} | "
                     f"{'-' if ratio is None else f'{ratio:.2f}'} |")
    lines += ["", "| setting | decided | wrong |", "|---|---|---|"]
    lines += [f"| {s} | {decided[s]}/{len(rows)} | {wrong[s]} |" for s in SETTINGS]
    mean = statistics.geometric_mean(ratios) if ratios else math.nan
    lines += ["", f"plain / bound, MIP-stage seconds, geometric mean over the {len(ratios)} instances both decide: "
              f"{mean:.2f} (same run, same instances, limit and threads)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", nargs="+", default=DEFAULT_INSTANCES, metavar="NET:PROP",
                    help="mnistfc instances as 256x2:prop_1_0.03 (default: %(default)s)")
    ap.add_argument("--limit-s", type=float, default=300.0, help="seconds per instance and setting")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", type=Path, default=Path("results/mip_focus"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    if args.limit_s <= 0 or args.threads < 1:
        ap.error("--limit-s must be > 0 and --threads >= 1")
    folder = data_dir(args.data_dir) / "vnncomp2021-mnistfc"
    instances = []
    for item in args.instances:
        net, _, prop = item.partition(":")
        onnx_name, prop = f"mnist-net_{net}.onnx", prop if prop.endswith(".vnnlib") else f"{prop}.vnnlib"
        if not ((folder / onnx_name).is_file() and (folder / prop).is_file()):
            ap.error(f"--instances {item!r}: expected NET:PROP with {folder}/mnist-net_NET.onnx and PROP.vnnlib")
        instances.append((onnx_name, prop))
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    truth, _ = sibling("vnncomp_mnistfc").read_verdicts(
        [folder / "verdicts_256x2.csv", folder / "verdicts_256x4.csv"])
    store = RecordStore(args.out / "records.jsonl")
    rows, before = [], 0
    with store:
        for k, (onnx_name, prop) in enumerate(instances):
            order = list(SETTINGS) if k % 2 == 0 else list(SETTINGS)[::-1]
            recs = {}
            for setting in order:
                rid = f"{onnx_name}|{prop}|{setting}|{args.limit_s:g}|threads={args.threads}"
                before += rid in store
                if rid not in store:
                    store.append({"id": rid, "network": onnx_name, "property": prop, "setting": setting,
                                  "limit_s": args.limit_s, "threads": args.threads,
                                  **run_one(folder, onnx_name, prop, setting, args.limit_s, args.threads)})
                recs[setting] = r = store.records[rid]
                console.log(f"{onnx_name} {prop} {setting}: {r['verdict']} in {r['time_s']:.1f} s "
                            f"(MIPs {r['mip_s']:.1f} s, {r['mips_solved']} solved)")
            rows.append((onnx_name, prop, {s: recs[s] for s in SETTINGS}))
    run.resumed(before, len(instances) * len(SETTINGS))
    text = summary(rows, truth, run.header(), args.limit_s, args.threads)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
