"""One-shot reconstruction-optimal pruning vs the heuristics on MNIST 256x4 (issue 24), no fine-tuning.

For each ratio (fraction of the 1024 hidden units removed), every method prunes the VNN-COMP mnistfc 256x4 network
on the calibration sample ``optprune prune`` uses (seeded, from the MNIST 'train' fold) and is scored on the held-out
'test' fold: magnitude (uniform, global), Taylor, Wanda-sp (uniform), FLAP (wifv) with bias compensation and its
adaptive structure (decision ``adaptive``) and with a global threshold, then the ``reconstruct`` decision with greedy
elimination and with local search (uniform widths), and local search with the width search at the parameters of
the best heuristic (``allocation=search``, ``params`` = that heuristic's parameter fraction). Columns: accuracy,
parameters, time to prune (one thread, model already loaded), summed objective (the reconstruct decision's
least-squares error of the consumers, relative to each consumer's output energy, summed over groups).

Writes ``OUT/records.jsonl`` (one row per ratio and method) and ``OUT/summary.md`` (tables under the provenance
header). Run from a clean commit for results/ (``--allow-dirty`` otherwise)::

    nice python benchmarks/reconstruction.py --out results/reconstruction
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import io
import itertools
import json
import time
from pathlib import Path

NET = "vnncomp2021-mnistfc/mnist-net_256x4.onnx"
HEURISTICS = {  # name -> Pruner arguments
    "magnitude uniform": {"scorer": "magnitude", "decision": "uniform"},
    "magnitude global": {"scorer": "magnitude", "decision": "global"},
    "taylor uniform": {"scorer": "taylor", "decision": "uniform"},
    "taylor global": {"scorer": "taylor", "decision": "global"},
    "wanda-sp uniform": {"scorer": "wanda_sp", "decision": "uniform"},
    "flap adaptive + comp.": {"scorer": "flap", "decision": "adaptive", "compensate": True},
    "flap global + comp.": {"scorer": "flap", "decision": "global", "compensate": True},
}


def _row(method, ratio, model, pruned, seconds, X_test, y_test, info=None) -> dict:
    from optprune.pruning import count_parameters
    from optprune.training import accuracy

    return {"method": method, "ratio": ratio, "accuracy": accuracy(pruned, X_test, y_test),
            "params": count_parameters(pruned), "params_before": count_parameters(model), "seconds": seconds,
            **(info or {})}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7, 0.85])
    parser.add_argument("--calibration", type=int, nargs="+", default=[512, 2048],
                        help="calibration sizes, every method at each (512: optprune prune's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/reconstruction"))
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)

    from optprune.bench._provenance import script_command, start_run

    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    import torch

    from optprune.cli._prune import folds_and_calibration
    from optprune.data import data_dir
    from optprune.io import load_torch_model
    from optprune.pruning import DECISIONS, Pruner

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    records.write_text("")
    model = load_torch_model(data_dir() / NET)
    rule = DECISIONS.get("reconstruct")
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        with open(records, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"{row['calibration']:>5} {row['ratio']:.2f} {row['method']:<34} acc {row['accuracy']:.4f} "
              f"params {row['params']:>6} {row['seconds']:.2f} s", flush=True)

    for size, ratio in itertools.product(args.calibration, args.ratios):
        X_train, y_train, X_test, y_test, shape, calib = folds_and_calibration(model, "mnist", None, size, args.seed)
        calibration = (X_train[calib], y_train[calib])
        for name, kwargs in HEURISTICS.items():
            started = time.perf_counter()
            pruner = Pruner(ratio=ratio, input_shape=shape, **kwargs).fit(model, calibration)
            pruned = pruner.transform()
            record(_row(name, ratio, model, pruned, time.perf_counter() - started, X_test, y_test,
                        {"calibration": size}))
        heur = [r for r in rows if r["ratio"] == ratio and r["calibration"] == size and r["method"] in HEURISTICS]
        best = max(heur, key=lambda r: r["accuracy"])
        variants = {
            "reconstruct greedy (uniform)": {"solver": "greedy"},
            "reconstruct local (uniform)": {"solver": "local"},
            f"reconstruct local (search, params of {best['method']})": {
                "solver": "local", "allocation": "search", "params": best["params"] / best["params_before"]},
        }
        for name, opts in variants.items():
            started = time.perf_counter()
            out = rule.prune(model, (X_train, y_train), shape, ratio, seed=args.seed,
                             calibration_size=size, **opts)
            seconds = time.perf_counter() - started
            info = {"calibration": size, "objective": out.info["relative_objective"], "widths": out.decision.new_widths,
                    "best_heuristic": best["method"], "gaps": [g["gap"] for g in out.info["groups"]]}
            record(_row(name, ratio, model, out.model, seconds, X_test, y_test, info))

    text = io.StringIO()
    text.write("One-shot pruning of mnistfc 256x4 (no fine-tuning), every method on the same seeded calibration sample "
               "of the MNIST 'train' fold, "
               "accuracy on the MNIST 'test' fold (2000 images); objective = summed relative reconstruction error "
               "of the consumers (reconstruct only); time = prune wall seconds, one thread.\n\n")
    for size, ratio in itertools.product(args.calibration, args.ratios):
        part = [r for r in rows if r["ratio"] == ratio and r["calibration"] == size]
        heur = [r for r in part if r["method"] in HEURISTICS]
        best = max(heur, key=lambda r: r["accuracy"])
        flap = next(r for r in part if r["method"] == "flap adaptive + comp.")
        text.write(f"## {ratio:.0%} of hidden units removed, {size} calibration images (best heuristic: "
                   f"{best['method']}, {best['accuracy']:.2%}, {best['params']} parameters)\n\n")
        text.write("| method | accuracy | vs best heuristic (points) | params | time (s) | x FLAP time | objective |"
                   " widths |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
        for r in part:
            obj = f"{r['objective']:.4f}" if "objective" in r else ""
            widths = "/".join(str(v) for v in r["widths"].values()) if "widths" in r else ""
            text.write(f"| {r['method']} | {r['accuracy']:.2%} | {100 * (r['accuracy'] - best['accuracy']):+.2f} | "
                       f"{r['params']} | {r['seconds']:.2f} | {r['seconds'] / flap['seconds']:.1f} | {obj} | "
                       f"{widths} |\n")
        text.write("\n")
    print(text.getvalue())
    (args.out / "summary.md").write_text(run.header() + "\n" + text.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
