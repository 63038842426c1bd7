"""Scaling of reconstruction-optimal pruning (issue 24, benchmark 4): time to prune one group vs width and
calibration size, greedy vs local search vs exact, with the objective and the certified gap.

One group per (width ``n``, calibration size ``N``): the synthetic group of ``benchmarks/reconstruction_exact.py``
(ReLU activations ``X``, N x n, of the last hidden layer of a random two-layer MLP, so the units are correlated;
consumer weight ``W``, n x m, Gaussian / sqrt(n); ridge ``auto``), keeping ``k = n/2`` units, ``m = --outputs``
consumer outputs; pairs with ``N < n`` are skipped (the Gram is singular there: the kept half of the units fits
the ``N`` samples almost exactly, so the objective says nothing). For each group:

The activations come from :func:`synthetic_activations`; no real layer is 4096 units wide in the project's models.

* ``gram``: seconds to form ``G = X^T X`` and ``C = X^T X W`` (:class:`optprune.reconstruction.GramAccumulator`;
  the only step that grows with ``N``);
* ``greedy`` (backward elimination with rank-one updates), ``local`` (swap local search from greedy, with the
  ``reconstruct`` decision's per-group limit ``--local-time-limit``) and, for ``n <= --exact-max``, ``exact``
  (branch and bound on the perspective relaxation, ``--exact-time-limit``): solve seconds (bound excluded),
  objective relative to ``||Y||^2``, status;
* the lower bound of :func:`optprune.reconstruction._bound.bound_details` (monotone, spectral and perspective
  relaxation bounds; ``--bound-time-limit`` on the perspective part), its seconds, and every method's certified gap
  ``(E - bound) / E``; ``exact`` reports the larger of its own bound and this one.

Times are wall seconds on one thread. Records go to ``OUT/records.jsonl`` as they arrive (a rerun keeps rows
whose settings match and measures the rest; ``--force`` starts afresh); ``OUT/summary.md`` starts with the
provenance header::

    nice python benchmarks/reconstruction_scaling.py --out results/reconstruction_scaling
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = ("outputs", "local_time_limit", "exact_time_limit", "bound_time_limit", "bound_iterations")


def synthetic_activations(n: int, samples: int, seed: int = 0, inputs: int = 32, width: int = 64) -> np.ndarray:
    """ReLU activations (samples x n) of the last hidden layer of a random MLP (``inputs`` Gaussian inputs, a ReLU
    layer of ``width``, then ``n`` ReLU units with small random biases): the generator of
    ``benchmarks/reconstruction_exact.py``'s ``mlp_problem``, returning ``X`` instead of the problem."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(samples, inputs))
    h = np.maximum(x @ rng.normal(size=(inputs, width)) / np.sqrt(inputs) + 0.1 * rng.normal(size=width), 0.0)
    return np.maximum(h @ rng.normal(size=(width, n)) * np.sqrt(2.0 / width) + 0.1 * rng.normal(size=n), 0.0)


def measure(n: int, samples: int, args, emit) -> None:
    """Every row of one group (module doc), each passed to ``emit`` as it is measured."""
    from optprune.reconstruction import solve_reconstruction
    from optprune.reconstruction._bound import bound_details
    from optprune.reconstruction._problem import GramAccumulator

    rng = np.random.default_rng(10_000 + n)
    X = synthetic_activations(n, samples, seed=0)
    W = rng.normal(size=(n, args.outputs)) / np.sqrt(n)
    base = {"n": n, "calibration": samples, "k": n // 2, **{s: getattr(args, s) for s in SETTINGS}}
    started = time.perf_counter()
    problem = GramAccumulator().add(X, X @ W).problem()
    emit({**base, "method": "gram", "seconds": time.perf_counter() - started})
    del X
    k = n // 2
    bound = bound_details(problem, k, iterations=args.bound_iterations, time_limit=args.bound_time_limit)
    emit({**base, "method": "bound", "seconds": bound.seconds, "lower_bound": bound.value,
          "relative_bound": problem.relative(bound.value), "monotone": bound.monotone, "spectral": bound.spectral,
          "perspective": bound.perspective, "iterations": bound.iterations})
    runs = {"greedy": {"bound": False}, "local": {"time_limit": args.local_time_limit, "bound": False}}
    if n <= args.exact_max:
        runs["exact"] = {"time_limit": args.exact_time_limit}
    for method, options in runs.items():
        result = solve_reconstruction(problem, k, method, **options)
        lower = max(bound.value, result.lower_bound or 0.0)
        gap = (result.objective - lower) / max(result.objective, 1e-300)
        emit({**base, "method": method, "seconds": result.seconds, "status": result.status,
              "objective": result.objective, "relative": problem.relative(result.objective),
              "own_bound": result.lower_bound, "lower_bound": lower, "gap": gap})


def _key(row: dict) -> tuple:
    return row["n"], row["calibration"], row["method"]


def summary(rows: list[dict], args) -> str:
    text = io.StringIO()
    text.write(f"One synthetic group per width n and calibration size N (correlated ReLU activations, module doc of "
               f"benchmarks/reconstruction_scaling.py), m = {args.outputs} consumer outputs, keep k = n/2; one "
               f"thread. Local search limit {args.local_time_limit:g} s (the reconstruct decision's default per "
               f"group), exact (branch and bound) {args.exact_time_limit:g} s for n <= {args.exact_max}, bound: "
               f"{args.bound_iterations} projected-gradient steps at most, {args.bound_time_limit:g} s. Objective "
               "relative to ||Y||^2; gap = (E - lower bound) / E with the best certified bound (status "
               "'optimal' = exact proved it).\n\n")
    text.write("| n | N | Gram s | bound s | relative bound | greedy s | greedy rel. E | greedy gap | local s | "
               "local rel. E | local gap | local status | local vs greedy | exact s | exact rel. E | exact gap | "
               "exact status | local vs exact |\n|" + " --- |" * 18 + "\n")
    by = {_key(r): r for r in rows}
    for n in args.widths:
        for samples in args.calibration:
            got = {m: by.get((n, samples, m)) for m in ("gram", "bound", "greedy", "local", "exact")}
            if got["gram"] is None:
                continue
            cells = [str(n), str(samples), f"{got['gram']['seconds']:.2f}"]
            b = got["bound"]
            cells += [f"{b['seconds']:.2f}", f"{b['relative_bound']:.4g}"] if b else ["", ""]
            for m in ("greedy", "local", "exact"):
                r = got[m]
                if r is None:
                    cells += ["", "", ""] + ([""] if m != "greedy" else [])
                else:
                    cells += [f"{r['seconds']:.2f}", f"{r['relative']:.4g}", f"{r['gap']:.2%}"]
                    if m != "greedy":
                        cells.append(r["status"])
                if m == "local":
                    g, loc = got["greedy"], got["local"]
                    cells.append(f"{(loc['objective'] - g['objective']) / g['objective']:+.2%}" if g and loc
                                 and g["objective"] > 0 else "")
            ex, loc = got["exact"], got["local"]
            cells.append(f"{(loc['objective'] - ex['objective']) / ex['objective']:+.2%}" if ex and loc
                         and ex["objective"] > 0 else "")
            text.write("| " + " | ".join(cells) + " |\n")
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--calibration", type=int, nargs="+", default=[2048, 8192],
                        help="calibration sizes N; pairs with N < n are skipped (default: %(default)s)")
    parser.add_argument("--outputs", type=int, default=256, help="consumer outputs m (default: %(default)s)")
    parser.add_argument("--local-time-limit", type=float, default=10.0)
    parser.add_argument("--exact-max", type=int, default=256, help="largest width the exact method runs on")
    parser.add_argument("--exact-time-limit", type=float, default=10.0)
    parser.add_argument("--bound-time-limit", type=float, default=30.0)
    parser.add_argument("--bound-iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, default=ROOT / "results/reconstruction_scaling")
    parser.add_argument("--force", action="store_true", help="discard the records already in OUT")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    if min(args.widths) < 2 or min(args.calibration) < 1 or args.outputs < 1:
        parser.error("--widths must be >= 2, --calibration and --outputs >= 1")

    from optprune.bench._provenance import script_command, start_run

    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                    allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    done: dict[tuple, dict] = {}
    if records.exists() and not args.force:
        for line in records.read_text().splitlines():
            row = json.loads(line)
            if all(row.get(s) == getattr(args, s) for s in SETTINGS):
                done[_key(row)] = row
    records.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    earlier = set(done)

    def emit(row: dict) -> None:
        done[_key(row)] = row
        with open(records, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items() if k not in SETTINGS}
        print(" ".join(f"{k}={v}" for k, v in shown.items()), file=sys.stderr, flush=True)

    for n in args.widths:
        for samples in args.calibration:
            if samples < n:  # keeping n/2 >= N/2 units: the Gram is singular and the fit nearly exact
                continue
            if (n, samples, "gram") in done and all((n, samples, m) in done for m in ("bound", "greedy", "local")):
                continue
            measure(n, samples, args, emit)
    wanted = [r for r in done.values() if r["n"] in args.widths and r["calibration"] in args.calibration]
    run.resumed(sum(1 for r in wanted if _key(r) in earlier), len(wanted))
    text = summary(wanted, args)
    print(text)
    tmp = args.out / "summary.md.tmp"
    tmp.write_text(run.header() + "\n" + text)
    tmp.replace(args.out / "summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
