"""The evidence behind ``AUTO_MIP_MAX_UNSTABLE``: root CROWN unstable ReLUs per instance, beside who decided it.

Usage::

    python benchmarks/auto_policy.py [--data-dir DIR] [--out results/auto_policy] [--allow-dirty]
        [--records results/vnncomp_mnistfc/records.jsonl ...]

Engine ``auto`` on two or more threads computes the root CROWN bounds once and
counts the unstable ReLUs (each one a binary of the MIP). Above
:data:`optprune.verification.engines.AUTO_MIP_MAX_UNSTABLE` it gives branch and
bound every thread instead of racing the MIP pipeline on the second core. This
script computes that count (the same function, the same bounds) for every
instance of the VNN-COMP 2021 ``mnistfc`` and ``oval21`` benchmarks, and joins
it with the committed records of earlier runs (``--records``): which engine
decided each instance, and with how many binaries the MIP did (its own count,
after OBBT). The summary states the largest CROWN count among the instances
the MIP decided, and how many instances fall on each side of the threshold.

Records go to ``OUT/records.jsonl`` (one per instance, resumable) and the table
to ``OUT/summary.md`` under the provenance header.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from rich.console import Console

from optprune.bench import RecordStore
from optprune.bench._provenance import script_command, start_run
from optprune.data import data_dir
from optprune.io import network_from_onnx
from optprune.verification.bounds import compute_bounds, count_unstable
from optprune.verification.engines import AUTO_MIP_MAX_UNSTABLE
from optprune.verification.vnnlib import read_vnnlib

console = Console(stderr=True)

BENCHMARKS = ("vnncomp2021-mnistfc", "vnncomp2021-oval21")
DEFAULT_RECORDS = (
    "results/vnncomp_mnistfc/records.jsonl",
    "results/vnncomp_mnistfc_256x2_threads2/records.jsonl",
    "results/vnncomp_mnistfc_256x4_threads2/records.jsonl",
    "results/vnncomp_oval21_300s/records.jsonl",
)


def _decisions(paths: list[Path]) -> dict[tuple[str, str], list[dict]]:
    """(network file name, property file name) -> the decided records of earlier runs (engine, binaries)."""
    out: dict[tuple[str, str], list[dict]] = {}
    for path in paths:
        if not path.exists():
            console.log(f"no records at {path}: skipped")
            continue
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec.get("verdict") in ("sat", "unsat"):
                key = (Path(rec["network"]).name, Path(rec["property"]).name)
                out.setdefault(key, []).append({"run": path.parent.name, "decided_by": rec.get("decided_by"),
                                                "binaries": rec.get("binaries"), "time_s": rec.get("time_s")})
    return out


def summary(records: list[dict], header: str) -> str:
    by_mip = [r for r in records if any(d["decided_by"] == "mip" for d in r["decided"])]
    top = max((r["crown_unstable"] for r in by_mip), default=0)
    mip_binaries = max((d["binaries"] or 0 for r in by_mip for d in r["decided"] if d["decided_by"] == "mip"),
                       default=0)
    above = [r for r in records if r["crown_unstable"] > AUTO_MIP_MAX_UNSTABLE]
    mip_above = sum(r["crown_unstable"] > AUTO_MIP_MAX_UNSTABLE for r in by_mip)
    lines = [header, "", f"Threshold `AUTO_MIP_MAX_UNSTABLE` = {AUTO_MIP_MAX_UNSTABLE} (root CROWN unstable ReLUs).",
             "", f"- instances: {len(records)}; above the threshold (BaB alone, every thread): {len(above)}",
             f"- decided by the MIP in any earlier run: {len(by_mip)}; their largest root CROWN count: {top} "
             f"(the MIP's own binaries after OBBT: {mip_binaries})",
             f"- decided by the MIP above the threshold: {mip_above}",
             "", "| benchmark | network | property | root CROWN unstable | side | decided before (run: engine) |",
             "|---|---|---|---|---|---|"]
    for r in sorted(records, key=lambda r: (r["benchmark"], r["network"], -r["crown_unstable"])):
        seen = "; ".join(sorted({f"{d['run']}: {d['decided_by']}" for d in r["decided"]})) or "—"
        side = "BaB alone" if r["crown_unstable"] > AUTO_MIP_MAX_UNSTABLE else "race"
        lines.append(f"| {r['benchmark']} | {r['network']} | {r['property']} | {r['crown_unstable']} | {side} "
                     f"| {seen} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--records", nargs="*", type=Path, default=[Path(p) for p in DEFAULT_RECORDS])
    ap.add_argument("--out", type=Path, default=Path("results/auto_policy"))
    ap.add_argument("--allow-dirty", action="store_true")
    args = ap.parse_args(argv)
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    root = data_dir(args.data_dir)
    decided = _decisions(args.records)
    store = RecordStore(args.out / "records.jsonl")
    before, nets = 0, {}
    with store:
        for bench in BENCHMARKS:
            folder = root / bench
            if not (folder / "instances.csv").exists():
                console.log(f"skipping {bench}: {folder / 'instances.csv'} not found")
                continue
            for row in csv.reader((folder / "instances.csv").read_text().splitlines()):
                net_rel, prop_rel = row[0].strip(), row[1].strip()
                rid = f"{bench}|{net_rel}|{prop_rel}"
                if rid in store:
                    before += 1
                    continue
                if net_rel not in nets:
                    nets[net_rel] = network_from_onnx(folder / net_rel)
                net = nets[net_rel]
                case = read_vnnlib(folder / prop_rel, net.input_size, net.output_size).cases[0]
                t = time.perf_counter()
                bounds = compute_bounds(net, case.lower, case.upper, "linear")
                n = count_unstable(net, bounds)
                store.append({"id": rid, "benchmark": bench, "network": Path(net_rel).name,
                              "property": Path(prop_rel).name, "crown_unstable": n,
                              "seconds": round(time.perf_counter() - t, 3),
                              "decided": decided.get((Path(net_rel).name, Path(prop_rel).name), [])})
                console.log(f"{bench} {net_rel} {prop_rel}: {n} unstable")
        records = list(store.records.values())
    run.resumed(before, len(records))
    text = summary(records, run.header())
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
