"""Exact reconstruction selection (issue 24 target: proven optimal on every group of <= 64 units within 10 s).

Synthetic groups: ReLU activations ``X`` (N = 2048 samples) of the last hidden layer (n units) of a random MLP
(32 Gaussian inputs, one hidden ReLU layer of 64, then n ReLU units with small random biases), consumer weight
``W`` (n x m) Gaussian / sqrt(n), ridge ``auto``, keep k = n/2. For each method (``exact``: branch and bound on the
perspective relaxation; ``outer``: outer approximation with its master MILP on HiGHS; ``miqp``: the big-M MIQP on
SCIP) one record: seconds, status, objective, lower bound, certified gap, and the method's own counters; the local
search (``local``, same group, its objective) is run next to it, so ``local vs exact`` is measured where both run.
One BLAS thread.

Writes ``OUT/records.jsonl`` (one JSON line per run, as they arrive) and ``OUT/summary.md`` (provenance header, a
table, the target's count). Run from a clean commit for results/ (``--allow-dirty`` otherwise)::

    nice python benchmarks/reconstruction_exact.py --out results/reconstruction_exact
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def mlp_problem(n: int, m: int, seed: int = 0, samples: int = 2048, inputs: int = 32, width: int = 64):
    """The synthetic group of the module doc."""
    from optprune.reconstruction import ReconstructionProblem

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, inputs))
    h = np.maximum(x @ rng.normal(size=(inputs, width)) / np.sqrt(inputs) + 0.1 * rng.normal(size=width), 0.0)
    X = np.maximum(h @ rng.normal(size=(width, n)) * np.sqrt(2.0 / width) + 0.1 * rng.normal(size=n), 0.0)
    return ReconstructionProblem.from_activations(X, rng.normal(size=(n, m)) / np.sqrt(n))


def _summary(rows: list[dict], time_limit: float, load: tuple[float, float]) -> str:
    lines = [f"Exact selection on synthetic ReLU groups (k = n/2, N = 2048, ridge auto), time limit {time_limit:g} s "
             "per run, one BLAS thread; `local` = the swap local search's objective on the same group, "
             "`local vs best` = (local - best known) / best known, best known = the smaller of the two. "
             f"1-minute load average of the machine at the start / end: {load[0]:.1f} / {load[1]:.1f} "
             f"({os.cpu_count()} logical cores): the time limits are wall clock, so other jobs cost nodes.", "",
             "| n | m | seed | method | status | seconds | objective | lower bound | certified gap | nodes "
             "| local | local vs best |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        best = min(r["objective"], r["local_objective"])
        lines.append(f"| {r['n']} | {r['m']} | {r['seed']} | {r['method']} | {r['status']} | {r['seconds']:.2f} "
                     f"| {r['objective']:.6g} | {r['lower_bound']:.6g} | {r['gap']:.2%} | {r.get('nodes', '')} "
                     f"| {r['local_objective']:.6g} | {(r['local_objective'] - best) / best:.2%} |")
    lines.append("")
    for method in sorted({r["method"] for r in rows}):
        for n in sorted({r["n"] for r in rows}):
            part = [r for r in rows if r["method"] == method and r["n"] == n]
            proven = sum(r["status"] == "optimal" for r in part)
            worst = max(r["gap"] for r in part)
            seconds = max(r["seconds"] for r in part)
            lines.append(f"- {method}, n = {n}: proven optimal in {proven}/{len(part)} within {time_limit:g} s "
                         f"(largest certified gap {worst:.2%}, slowest {seconds:.2f} s)")
    solved = [r for r in rows if r["status"] == "optimal"]
    if solved:
        worst = max((r["local_objective"] - r["objective"]) / r["objective"] for r in solved)
        lines.append(f"- local search vs the proven optimum (where both run): worst {worst:.3%} above it")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16,32,64")
    parser.add_argument("--outputs", default="10,64")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="exact")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=Path("results/reconstruction_exact"))
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    from optprune.bench._provenance import script_command, start_run
    from optprune.reconstruction._search import local_search, solve_reconstruction

    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    records.write_text("")
    rows: list[dict] = []
    load_start = os.getloadavg()[0]
    for n in map(int, args.sizes.split(",")):
        for m in map(int, args.outputs.split(",")):
            for seed in map(int, args.seeds.split(",")):
                problem = mlp_problem(n, m, seed)
                local = local_search(problem, n // 2, bound=False)
                for method in args.methods.split(","):
                    result = solve_reconstruction(problem, n // 2, method, time_limit=args.time_limit)
                    row = {"n": n, "m": m, "k": n // 2, "seed": seed, **result.to_dict(),
                           "local_objective": local.objective, "local_seconds": local.seconds}
                    row = {key: (round(v, 6) if isinstance(v, float) else v) for key, v in row.items()}
                    rows.append(row)
                    with open(records, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
                    print(json.dumps(row), file=sys.stderr, flush=True)
    text = _summary(rows, args.time_limit, (load_start, os.getloadavg()[0]))
    print(text)
    (args.out / "summary.md").write_text(run.header() + "\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
