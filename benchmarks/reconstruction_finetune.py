"""Does reconstruction-optimal pruning's one-shot lead survive the same short fine-tuning? (issue 24, benchmark 2).

Every method prunes the dense model one-shot, then every pruned model gets the *same* fine-tuning budget: the
project's :func:`optprune.pruning.finetune` (what ``optprune prune --finetune-epochs`` calls; Adam, cross-entropy,
no distillation), ``--epochs`` passes over the whole 6,000-image MNIST 'train' fold, batch 64, learning rate
``--lr``, fine-tuning seed = the run's seed. Accuracy on the held-out 2,000-image 'test' fold before and after.
Each seed draws its own calibration sample (seeded, from the train fold) and fine-tunes with that seed, so the
spread over ``--seeds`` covers both; tables give the mean, the standard error over seeds, and the paired
difference (per seed) to the heuristic with the best mean accuracy in that column among those with at most 3% more
parameters than the row (``PARAM_SLACK``), and, in the closing answers, also to the best heuristic of any size.

Models (``--models``):

* ``mlp``: VNN-COMP mnistfc 256x4, at ``--ratios`` of the 1024 hidden units removed; the methods of
  ``benchmarks/reconstruction.py`` (magnitude / Taylor uniform and global, Wanda-sp uniform, FLAP adaptive and
  global with bias compensation; ``reconstruct`` greedy and local search with uniform widths, and local search with
  the width search at the parameter fraction of the seed's best one-shot heuristic), 512 calibration images;
* ``cnn``: the residual CNN of ``benchmarks/bayes_pai.py`` (stem, a residual block of two 3x3 convolutions tied to
  the stem's channels, a strided convolution, a linear head), trained here for ``--cnn-train-epochs`` epochs (Adam,
  lr 1e-3, batch 64, seed 0) on the train fold, at ``--cnn-ratios``; the same methods as the MLP (conv channels:
  the consumer is the next convolution, its input patches unfolded, or the head with 49 columns per channel);
* ``vit``: ``instances/vit/mnist_vit.pt`` at ``--vit-budgets`` (fractions of the parameters kept); the methods of
  ``benchmarks/reconstruction_vit.py`` (magnitude uniform; Taylor, Wanda-sp, FLAP with the exact structure search;
  GOHSP's graph ranking with search, no ADMM; ``reconstruct`` uniform and with the width search), 256 images.

A row ``dense`` (the unpruned model with the same fine-tuning) shows what the budget does to the dense model.
Records go to ``OUT/records.jsonl`` as they arrive (one row per model, setting, seed and method); a rerun keeps
the rows already there whose settings match and measures only the missing ones (``--force`` starts afresh).
``OUT/summary.md`` starts with the provenance header. Run from a clean commit for results/::

    nice python benchmarks/reconstruction_finetune.py --out results/reconstruction_finetune
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import copy
import io
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from _siblings import sibling

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("mlp", "cnn", "vit")
RECONSTRUCT_PREFIX = "reconstruct"
BATCH_SIZE = 64
EXPECTED = {"mlp": 10, "cnn": 10, "vit": 7}  # methods per model, setting and seed
PARAM_SLACK = 1.03  # a heuristic counts as "at no more parameters" when it keeps at most 3% more than the row


Pruned = tuple[str, Any, float, dict]  # method, pruned model, seconds to prune, extra fields


def chain_methods(model, folds, shape, ratio: float, seed: int, size: int) -> Iterator[Pruned]:
    """MLP / CNN: the heuristics of ``benchmarks/reconstruction.py``, then the ``reconstruct`` variants."""
    from optprune.pruning import DECISIONS, Pruner, count_parameters

    heuristics = sibling("reconstruction").HEURISTICS
    X_train, y_train, X_test, y_test = folds
    rng = np.random.default_rng(seed)  # the sample optprune prune and the reconstruct decision draw for this seed
    calib = rng.choice(len(X_train), size=min(size, len(X_train)), replace=False)
    calibration = (X_train[calib], y_train[calib])
    best: tuple[float, str, int] | None = None
    from optprune.training import accuracy

    for name, kwargs in heuristics.items():
        started = time.perf_counter()
        pruned = Pruner(ratio=ratio, input_shape=shape, **kwargs).fit(model, calibration).transform()
        seconds = time.perf_counter() - started
        acc = accuracy(pruned, X_test, y_test)
        if best is None or acc > best[0]:
            best = (acc, name, count_parameters(pruned))
        yield name, pruned, seconds, {}
    assert best is not None
    rule = DECISIONS.get("reconstruct")
    variants: dict[str, dict[str, Any]] = {
        "reconstruct greedy (uniform)": {"solver": "greedy"},
        "reconstruct local (uniform)": {"solver": "local"},
        "reconstruct local (search, params of the best one-shot heuristic)": {
            "solver": "local", "allocation": "search", "params": best[2] / count_parameters(model)},
    }
    for name, opts in variants.items():
        started = time.perf_counter()
        out = rule.prune(model, (X_train, y_train), shape, ratio, seed=seed, calibration_size=size, **opts)
        extra = {"objective": out.info["relative_objective"], "widths": out.decision.new_widths}
        if "params" in opts:
            extra["matched_to"] = best[1]
        yield name, out.model, time.perf_counter() - started, extra


def vit_methods(model, folds, shape, budget: float, seed: int, size: int) -> Iterator[Pruned]:
    """ViT: the methods of ``benchmarks/reconstruction_vit.py`` at ``budget`` (fraction of parameters kept)."""
    from optprune.gohsp import GOHSP, search_keep
    from optprune.pruning import (
        Pruner,
        PruningDecision,
        apply_decision,
        count_parameters,
        dependency_groups,
        reconstruct,
    )
    from optprune.scoring import score_model

    vit_bench = sibling("reconstruction_vit")
    X_train, y_train, _, _ = folds
    groups, _ = dependency_groups(model, shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    limit = int(budget * count_parameters(model))
    calib = np.random.default_rng(seed).choice(len(X_train), size, replace=False)
    calibration = (X_train[calib], y_train[calib])
    started = time.perf_counter()
    ratio = pruned = None
    for r in vit_bench.GRID:
        pruned = Pruner(scorer="magnitude", ratio=float(r), decision="uniform", input_shape=shape).fit(model) \
            .transform()
        if count_parameters(pruned) <= limit:
            ratio = float(r)
            break
    if ratio is None or pruned is None:
        raise RuntimeError("no uniform ratio on the grid meets the budget")
    yield "magnitude+uniform", pruned, time.perf_counter() - started, {"ratio": ratio}
    for scorer in vit_bench.SEARCHED_SCORERS:
        started = time.perf_counter()
        scores = score_model(model, scorer, calibration, groups=groups)
        kept, _ = search_keep(model, scores, groups, budget, shape)
        pruned = apply_decision(model, PruningDecision(kept, widths, shape), groups=groups)
        yield f"{scorer}+search", pruned, time.perf_counter() - started, {}
    started = time.perf_counter()
    est = GOHSP(budget, admm_iterations=0, finetune_epochs=0, seed=seed, calibration_size=size) \
        .fit(model, (X_train, y_train))
    yield "graph+search", est.model_, time.perf_counter() - started, {}
    for allocation in ("uniform", "search"):
        started = time.perf_counter()
        pruned, _, reports = reconstruct(model, calibration, ratio, shape, allocation=allocation,
                                         params=budget if allocation == "search" else None)
        yield f"reconstruct+{allocation}", pruned, time.perf_counter() - started, \
            {"objective": float(sum(r["relative"] for r in reports))}


def load_model(kind: str, args) -> tuple[Any, tuple, tuple[int, ...], Callable]:
    """The dense model, its folds ``(X_train, y_train, X_test, y_test)``, input shape and accuracy function."""
    import torch

    from optprune.cli._prune import folds_and_calibration
    from optprune.data import data_dir, load_dataset
    from optprune.training import accuracy, train_classifier

    if kind == "vit":
        from optprune.vit import load_vit, vit_accuracy

        model = load_vit(args.vit_model)
        X_train, y_train = load_dataset("mnist", "train")
        X_test, y_test = load_dataset("mnist", "test")
        return model, (X_train, y_train, X_test, y_test), tuple(model.input_shape), vit_accuracy
    if kind == "mlp":
        from optprune.io import load_torch_model

        model = load_torch_model(data_dir() / sibling("reconstruction").NET)
    else:
        torch.manual_seed(0)
        model = sibling("bayes_pai").ResCNN()
        train_classifier(model, "mnist", epochs=args.cnn_train_epochs, seed=0, lr=1e-3, batch_size=BATCH_SIZE,
                         progress=False)
    X_train, y_train, X_test, y_test, shape, _ = folds_and_calibration(model, "mnist", None, 1, 0)
    return model.eval(), (X_train, y_train, X_test, y_test), tuple(shape), accuracy


def settings(kind: str, args) -> list[float]:
    return {"mlp": args.ratios, "cnn": args.cnn_ratios, "vit": args.vit_budgets}[kind]


def _key(row: dict) -> tuple:
    return row["model"], row["setting"], row["seed"], row["method"]


def _tune(pruned, seed: int, folds: tuple, acc_fn: Callable, args) -> dict[str, float]:
    """Test accuracy after each fine-tuning budget of ``args.epochs``, each from the same pruned model."""
    from optprune.pruning import finetune

    X_train, y_train, X_test, y_test = folds
    out = {}
    for epochs in args.epochs:
        work = copy.deepcopy(pruned)
        finetune(work, (X_train, y_train), epochs, lr=args.lr, batch_size=BATCH_SIZE, seed=seed, progress=False)
        out[str(epochs)] = acc_fn(work, X_test, y_test)
    return out


def _record(row: dict, records: Path, done: dict[tuple, dict]) -> None:
    """Append one row to the records (as it arrives) and log it on stderr."""
    done[_key(row)] = row
    with open(records, "a") as fh:
        fh.write(json.dumps(row) + "\n")
    after = " ".join(f"ft{e} {a:.4f}" for e, a in row["accuracy_finetuned"].items())
    print(f"{row['model']} {row['setting']:.2f} seed {row['seed']} {row['method']:<40} one-shot "
          f"{row['accuracy_pruned']:.4f} {after} params {row['params']} ({row['prune_seconds']:.1f} s)",
          file=sys.stderr, flush=True)


def run(args, records: Path, done: dict[tuple, dict]) -> None:
    import torch

    from optprune.pruning import count_parameters

    torch.set_num_threads(1)
    for kind in args.models:
        model, folds, shape, acc_fn = load_model(kind, args)
        X_test, y_test = folds[2:]
        dense_acc = acc_fn(model, X_test, y_test)
        print(f"{kind}: {count_parameters(model)} parameters, test accuracy {dense_acc:.4f}", file=sys.stderr,
              flush=True)
        size = args.vit_calibration if kind == "vit" else args.calibration
        methods = vit_methods if kind == "vit" else chain_methods
        base = {"model": kind, "lr": args.lr, "calibration": size, "params_before": count_parameters(model),
                "accuracy_dense": dense_acc}
        for seed in args.seeds:
            if (kind, 0.0, seed, "dense") not in done:
                _record({**base, "setting": 0.0, "seed": seed, "method": "dense", "params": count_parameters(model),
                         "accuracy_pruned": dense_acc, "accuracy_finetuned": _tune(model, seed, folds, acc_fn, args),
                         "prune_seconds": 0.0}, records, done)
        for setting in settings(kind, args):
            for seed in args.seeds:
                if sum(1 for k in done if k[:3] == (kind, setting, seed)) >= EXPECTED[kind]:
                    continue
                for name, pruned, seconds, extra in methods(model, folds, shape, setting, seed, size):
                    if (kind, setting, seed, name) in done:
                        continue
                    _record({**base, "setting": setting, "seed": seed, "method": name,
                             "params": count_parameters(pruned), "accuracy_pruned": acc_fn(pruned, X_test, y_test),
                             "accuracy_finetuned": _tune(pruned, seed, folds, acc_fn, args), "prune_seconds": seconds,
                             **extra}, records, done)


def _mean_se(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else float("nan")
    return float(arr.mean()), se


def _fmt(values: list[float], scale: float = 100.0, sign: bool = False) -> str:
    mean, se = _mean_se(values)
    text = f"{scale * mean:+.2f}" if sign else f"{scale * mean:.2f}"
    return text if np.isnan(se) else f"{text} ± {scale * se:.2f}"


class _Setting:
    """The rows of one model and setting, indexed by (method, seed), with the comparisons the summary reports."""

    def __init__(self, rows: list[dict], epochs: list[int]) -> None:
        methods = list(dict.fromkeys(r["method"] for r in rows))
        self.seeds = sorted({r["seed"] for r in rows})
        self.by = {(r["method"], r["seed"]): r for r in rows}
        self.methods = [m for m in methods if all((m, s) in self.by for s in self.seeds)]
        self.params = {m: float(np.mean([self.by[(m, s)]["params"] for s in self.seeds])) for m in self.methods}
        self.heuristics = [m for m in self.methods if not m.startswith(RECONSTRUCT_PREFIX)]
        self.ours = [m for m in self.methods if m.startswith(RECONSTRUCT_PREFIX)]
        self.columns: list[tuple[str, str | None]] = [("one-shot", None)] + [(f"after {e} ep.", str(e))
                                                                              for e in epochs]

    def values(self, method: str, column: str | None) -> list[float]:
        rows = [self.by[(method, s)] for s in self.seeds]
        return [r["accuracy_pruned"] if column is None else r["accuracy_finetuned"][column] for r in rows]

    def mean(self, method: str, column: str | None) -> float:
        return float(np.mean(self.values(method, column)))

    def reference(self, column: str | None, cap: float | None) -> str | None:
        """The heuristic with the best mean in ``column`` among those with at most ``PARAM_SLACK * cap``
        parameters (any size without ``cap``); None when none is that small."""
        pool = [h for h in self.heuristics if cap is None or self.params[h] <= PARAM_SLACK * cap]
        return max(pool, key=lambda h: self.mean(h, column)) if pool else None

    def diffs(self, method: str, ref: str, column: str | None) -> list[float]:
        return [a - b for a, b in zip(self.values(method, column), self.values(ref, column))]


def summary(rows: list[dict], args) -> str:
    """Per model and setting: one-shot and fine-tuned accuracy (mean ± SE over seeds) and the paired difference
    to the best heuristic at no more parameters; then the answer per setting."""
    text = io.StringIO()
    budget = ", ".join(str(e) for e in args.epochs)
    text.write(f"Every pruned model fine-tuned with the same budget: optprune.pruning.finetune, {budget} epoch(s) over "
               f"the 6,000-image MNIST 'train' fold, Adam lr {args.lr:g}, batch {BATCH_SIZE}, cross-entropy, no "
               "distillation, one thread. Accuracy (%) on the 2,000-image 'test' fold; mean ± standard error over "
               f"seeds {args.seeds} (each seed: its own calibration sample and fine-tuning order). 'vs heuristic' = "
               "the per-seed paired difference (points, mean ± SE) to the heuristic with the best mean accuracy in "
               f"that column among those with at most {PARAM_SLACK:.2f}x the row's parameters (named in brackets; "
               "'-' where none is that small). MLP/CNN settings: fraction of hidden units/channels removed; ViT: "
               "fraction of parameters removed. Params: mean over seeds (global decisions and reconstruct's width "
               "search, which follows each seed's best one-shot heuristic, vary with the calibration sample).\n\n")
    answers = []
    for kind in args.models:
        part = [r for r in rows if r["model"] == kind]
        if not part:
            continue
        dense = [r for r in part if r["method"] == "dense"]
        text.write(f"# {kind}: dense {100 * part[0]['accuracy_dense']:.2f}%, {part[0]['params_before']} parameters; "
                   f"dense after the same fine-tuning: "
                   + ", ".join(f"{e} ep. {_fmt([r['accuracy_finetuned'][str(e)] for r in dense])}"
                               for e in args.epochs) + "\n\n")
        for setting in settings(kind, args):
            table = _Setting([r for r in part if r["setting"] == setting and r["method"] != "dense"], args.epochs)
            if not table.methods:
                continue
            what = "parameters" if kind == "vit" else "channels" if kind == "cnn" else "hidden units"
            text.write(f"## {kind}, {setting:.0%} of {what} removed ({len(table.seeds)} seeds)\n\n")
            text.write("| method | params | " + " | ".join(f"{c} | vs heuristic" for c, _ in table.columns)
                       + " | prune s |\n|" + " --- |" * (3 + 2 * len(table.columns)) + "\n")
            for m in table.methods:
                cells = []
                for _, col in table.columns:
                    ref = table.reference(col, table.params[m])
                    cells += [_fmt(table.values(m, col)),
                              "-" if ref is None else f"{_fmt(table.diffs(m, ref, col), sign=True)} ({ref})"]
                secs = np.mean([table.by[(m, s)]["prune_seconds"] for s in table.seeds])
                text.write(f"| {m} | {table.params[m]:.0f} | " + " | ".join(cells) + f" | {secs:.2f} |\n")
            text.write("\n")
            if not (table.ours and table.heuristics):
                continue
            for c, col in table.columns:
                top = max(table.ours, key=lambda m: table.mean(m, col))
                for label, ref in (("at no more parameters", table.reference(col, table.params[top])),
                                   ("of any size", table.reference(col, None))):
                    head = f"- {kind} {setting:.0%}, {c}: {top} ({table.params[top]:.0f} params, " \
                           f"{100 * table.mean(top, col):.2f}%)"
                    if ref is None:
                        answers.append(f"{head}: no heuristic {label}")
                        continue
                    diffs = table.diffs(top, ref, col)
                    mu, se = _mean_se(diffs)
                    verdict = ("ahead" if mu > 2 * se else "behind" if mu < -2 * se else "within 2 SE") \
                        if not np.isnan(se) else ("ahead" if mu > 0 else "behind")
                    answers.append(f"{head} vs best heuristic {label}, {ref} ({table.params[ref]:.0f} params, "
                                   f"{100 * table.mean(ref, col):.2f}%): {_fmt(diffs, sign=True)} points ({verdict})")
    text.write("# Does the advantage survive fine-tuning?\n\nBest reconstruct variant (by mean) vs the best "
               f"heuristic at no more parameters (at most {PARAM_SLACK:.2f}x) and of any size; paired difference "
               "per seed, mean ± SE in points; 'ahead'/'behind' = by more than two standard errors:\n\n")
    text.write("\n".join(answers) + "\n")
    return text.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.85, 0.7, 0.5, 0.3],
                        help="MLP: fractions of hidden units removed (default: %(default)s)")
    parser.add_argument("--cnn-ratios", type=float, nargs="+", default=[0.7, 0.5, 0.3],
                        help="residual CNN: fractions of channels removed (default: %(default)s)")
    parser.add_argument("--vit-budgets", type=float, nargs="+", default=[0.5, 0.7],
                        help="ViT: fractions of the parameters kept (default: %(default)s)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1], help="fine-tuning budgets in epochs")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tuning learning rate (Adam)")
    parser.add_argument("--calibration", type=int, default=512, help="MLP/CNN calibration images")
    parser.add_argument("--vit-calibration", type=int, default=256, help="ViT calibration images")
    parser.add_argument("--cnn-train-epochs", type=int, default=12, help="training epochs of the dense CNN")
    parser.add_argument("--vit-model", default=str(ROOT / "instances/vit/mnist_vit.pt"))
    parser.add_argument("--out", type=Path, default=ROOT / "results/reconstruction_finetune")
    parser.add_argument("--force", action="store_true", help="discard the records already in OUT")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    if min(args.epochs) < 1:
        parser.error(f"--epochs: every budget must be >= 1 epoch; got {args.epochs}")

    from optprune.bench._provenance import script_command, start_run

    run_ = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                     allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    config = {"lr": args.lr}
    done: dict[tuple, dict] = {}
    if records.exists() and not args.force:
        for line in records.read_text().splitlines():
            row = json.loads(line)
            same = row["lr"] == config["lr"] and set(row["accuracy_finetuned"]) == {str(e) for e in args.epochs} \
                and row["calibration"] == (args.vit_calibration if row["model"] == "vit" else args.calibration)
            if same:
                done[_key(row)] = row
    records.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
    earlier = set(done)
    run(args, records, done)
    wanted = [r for r in done.values() if r["model"] in args.models and r["seed"] in args.seeds
              and (r["method"] == "dense" or r["setting"] in settings(r["model"], args))]
    run_.resumed(sum(1 for r in wanted if _key(r) in earlier), len(wanted))
    text = summary(wanted, args)
    print(text)
    tmp = args.out / "summary.md.tmp"
    tmp.write_text(run_.header() + "\n" + text)
    tmp.replace(args.out / "summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
