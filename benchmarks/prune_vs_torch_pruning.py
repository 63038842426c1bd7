"""optprune's scorers side by side with Torch-Pruning, at the same ratios and fine-tuning budget.

Networks: the VNN-COMP 2021 mnistfc nets 256x2 and 256x4 (shared data) and a
small CNN trained on scikit-learn digits (``optprune.training.digits_cnn``).
MNIST figures use the fixed folds of the 10,000-image MNIST *test* set (the
training set is not available): scores and fine-tuning on the ``train`` fold
(6,000), accuracy on the held-out ``test`` fold (2,000). Digits: its fixed
``train`` / ``test`` folds.

For every scorer and for Torch-Pruning's magnitude (``GroupMagnitudeImportance``,
p=2) and Taylor (``GroupTaylorImportance``) importances, every hidden layer /
convolution loses the same fraction (30/50/70%) of its neurons / channels
(uniform per-layer ratio; Torch-Pruning's ``MetaPruner`` with
``global_pruning=False`` does the same). Each pruned net is then fine-tuned
with the same budget (Adam, same epochs, learning rate, batches and seed).
Reported: parameters, test-fold accuracy after pruning and after fine-tuning,
and the mean number of unstable ReLUs (CROWN / linear bounds of
``optprune.verification.bounds``) over L∞ balls of radius 0.02 and 0.05 around test-fold
images, i.e. the binaries a MIP verifier needs. A second table gives each
scorer's Kendall τ against the exact leave-one-out loss change (mean over groups).

Scorer names and settings are in :data:`METHODS`; ``mip(w=...)`` is the MIP-aware
trade-off (Taylor z-scores minus ``w`` times the z-scored instability frequency at
eps 0.02). Run: ``.venv/bin/python benchmarks/prune_vs_torch_pruning.py [--quick] [--out results/prune_vs_torch_pruning]``

Writes ``OUT/records.jsonl`` (one row per network, ratio and method, appended
network by network as they finish) and ``OUT/summary.md`` (the tables printed,
under the provenance header: command, date, machine, versions). The default
output folder is ``results/prune_vs_torch_pruning`` (``..._quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from torch import nn

from optprune.data import data_dir, dataset_info, load_dataset
from optprune.errors import DataNotFoundError
from optprune.io import load_torch_model, network_from_torch
from optprune.pruning import PruningDecision, apply_decision, count_parameters, dependency_groups, finetune
from optprune.pruning._select import uniform_keep
from optprune.scoring import get_scorer, input_means
from optprune.training import accuracy, digits_cnn

log = Console(stderr=True)

_MIP = {"eps": 0.02, "mode": "tradeoff", "base": "taylor", "bound_method": "linear", "max_samples": 32}
#: label -> (registered scorer, constructor kwargs, FLAP bias compensation when removing)
METHODS: dict[str, tuple[str, dict, bool]] = {
    "l1": ("l1", {}, False),
    "l2": ("l2", {}, False),
    "activation_mean": ("activation_mean", {}, False),
    "apoz": ("apoz", {}, False),
    "random": ("random", {"seed": 0}, False),
    "taylor": ("taylor", {}, False),
    "fisher": ("fisher", {}, False),
    "wanda_sp": ("wanda_sp", {}, False),
    "flap+comp": ("flap", {"metric": "wifv"}, True),
    "bonsai": ("bonsai", {"n_masks": 400, "keep_prob": 0.5, "alpha": 1e-3}, False),
    "mip(w=0.1)": ("mip", {**_MIP, "weight": 0.1}, False),
    "mip(w=0.3)": ("mip", {**_MIP, "weight": 0.3}, False),
    "mip(unstable)": ("mip", {**_MIP, "mode": "unstable"}, False),
    "ablation": ("ablation", {}, False),
}
QUICK_METHODS = ["l1", "random", "taylor", "wanda_sp", "flap+comp", "mip(w=0.1)", "mip(w=0.3)"]
TP_METHODS = ["tp-magnitude", "tp-taylor"]
EPS = (0.02, 0.05)


def nets(quick: bool) -> list[dict]:
    out = []
    try:
        folder = data_dir() / "vnncomp2021-mnistfc"
    except DataNotFoundError as exc:
        log.print(f"[yellow]MNIST nets skipped: {exc}")
        folder = None
    for name in ("256x2", "256x4"):
        if folder is not None and (folder / f"mnist-net_{name}.onnx").exists():
            out.append({"name": f"mnist-{name}", "path": folder / f"mnist-net_{name}.onnx", "data": "mnist"})
    out.append({"name": "digits-cnn", "path": None, "data": "digits"})
    return out


def load(spec: dict) -> nn.Module:
    if spec["path"] is None:
        model = copy.deepcopy(digits_cnn(seed=0))
        model.input_shape = dataset_info("digits").input_shape
        return model.eval()
    return load_torch_model(spec["path"])


def unstable(model: nn.Module, shape: tuple[int, ...], X: np.ndarray, eps: float) -> float | None:
    """Mean number of unstable ReLUs (linear bounds) over eps-balls around ``X``; None without optprune.verification.bounds."""
    try:
        from optprune.verification.bounds import count_unstable, linear_bounds
    except ImportError:
        return None
    net = network_from_torch(model, shape)
    flat = X.reshape(X.shape[0], -1).astype(np.float64)
    counts = [
        count_unstable(net, linear_bounds(net, np.clip(x - eps, 0, 1), np.clip(x + eps, 0, 1))) for x in flat
    ]
    return float(np.mean(counts))


def kendall_tau(scores: dict, reference: dict) -> float:
    from scipy.stats import kendalltau

    taus = [kendalltau(scores[g], reference[g]).statistic for g in reference]
    taus = [t for t in taus if np.isfinite(t)]
    return float(np.mean(taus)) if taus else float("nan")


def torch_pruning_model(model: nn.Module, method: str, ratio: float, shape, Xc, yc) -> nn.Module:
    import torch_pruning as tp

    pruned = copy.deepcopy(model).eval()
    last = [m for m in pruned.modules() if isinstance(m, nn.Linear)][-1]
    if method == "tp-magnitude":
        imp = tp.importance.GroupMagnitudeImportance(p=2)
    else:
        imp = tp.importance.GroupTaylorImportance()
        pruned.zero_grad()
        nn.functional.cross_entropy(pruned(Xc), yc).backward()
    pruner = tp.pruner.MetaPruner(
        pruned, torch.zeros(1, *shape), importance=imp, pruning_ratio=ratio, global_pruning=False,
        ignored_layers=[last],
    )
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    return pruned.eval()


def evaluate(row: dict, pruned: nn.Module, ctx: dict, args) -> dict:
    shape, (Xt, yt) = ctx["shape"], ctx["test"]
    row["params"] = count_parameters(pruned)
    row["acc_pruned"] = accuracy(pruned, Xt, yt)
    tuned = finetune(copy.deepcopy(pruned), ctx["train"], args.epochs, lr=args.lr, batch_size=64, seed=0,
                     teacher=ctx["model"] if args.distill else None, progress=False)
    row["acc_finetuned"] = accuracy(tuned, Xt, yt)
    for eps in EPS:
        row[f"unstable@{eps}"] = unstable(pruned, shape, ctx["bound_inputs"], eps)
        row[f"unstable_tuned@{eps}"] = unstable(tuned, shape, ctx["bound_inputs"], eps)
    return row


def run_net(spec: dict, args) -> tuple[list[dict], dict]:
    model = load(spec)
    shape = tuple(model.input_shape)
    X_train, y_train = load_dataset(spec["data"], "train")
    X_test, y_test = load_dataset(spec["data"], "test")
    X_train = X_train.reshape(len(X_train), *shape)
    X_test = X_test.reshape(len(X_test), *shape)
    rng = np.random.default_rng(0)
    cal = rng.choice(len(X_train), size=args.calibration, replace=False)
    Xc, yc = torch.as_tensor(X_train[cal]), torch.as_tensor(y_train[cal])
    bound_idx = rng.choice(len(X_test), size=args.bound_images, replace=False)
    ctx = {"model": model, "shape": shape, "train": (X_train, y_train), "test": (X_test, y_test),
           "bound_inputs": X_test[bound_idx]}
    groups, _ = dependency_groups(model, shape)
    prunable = [g for g in groups if g.prunable]
    widths = {g.name: g.width for g in prunable}

    base = {"net": spec["name"], "ratio": 0.0, "method": "unpruned", "params": count_parameters(model),
            "acc_pruned": accuracy(model, X_test, y_test), "acc_finetuned": None, "score_s": None}
    for eps in EPS:
        base[f"unstable@{eps}"] = unstable(model, shape, ctx["bound_inputs"], eps)
        base[f"unstable_tuned@{eps}"] = None
    rows = [base]
    log.print(f"[bold]{spec['name']}[/]: {base['params']} params, acc {base['acc_pruned']:.4f}, "
              f"groups {widths}")

    scores, times = {}, {}
    for name in args.scorers:
        scorer, kwargs, _ = METHODS[name]
        t = time.perf_counter()
        scores[name] = get_scorer(scorer, **kwargs)(model, (Xc, yc), groups=groups)
        times[name] = time.perf_counter() - t
        log.print(f"  scored {name} in {times[name]:.2f}s")
    means = input_means(model, (Xc, yc), groups=groups)

    for ratio in args.ratios:
        for name in args.scorers:
            kept = uniform_keep(scores[name], prunable, ratio)
            decision = PruningDecision(kept, widths, shape)
            pruned = apply_decision(model, decision, means if METHODS[name][2] else None, groups=groups)
            rows.append(evaluate({"net": spec["name"], "ratio": ratio, "method": name, "score_s": times[name]},
                                 pruned, ctx, args))
        for method in args.tp:
            t = time.perf_counter()
            pruned = torch_pruning_model(model, method, ratio, shape, Xc, yc)
            rows.append(evaluate({"net": spec["name"], "ratio": ratio, "method": method,
                                  "score_s": time.perf_counter() - t}, pruned, ctx, args))
        log.print(f"  ratio {ratio} done")

    taus = {}
    if "ablation" in scores:
        taus = {name: kendall_tau(scores[name], scores["ablation"]) for name in args.scorers if name != "ablation"}
    return rows, taus


def fmt(v, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def print_tables(rows: list[dict], taus: dict, bounds_ok: bool) -> None:
    head = ["net", "ratio", "method", "params", "acc pruned", "acc fine-tuned", "unstable@0.02 pruned/tuned",
            "unstable@0.05 pruned/tuned", "score s"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["net"], fmt(r["ratio"], 1), r["method"], str(r["params"]), fmt(r["acc_pruned"]),
                 fmt(r["acc_finetuned"])]
        cells += [f"{fmt(r[f'unstable@{eps}'], 1)} / {fmt(r[f'unstable_tuned@{eps}'], 1)}" for eps in EPS]
        cells.append(fmt(r["score_s"], 2))
        print("| " + " | ".join(cells) + " |")
    if not bounds_ok:
        print("\nunstable-ReLU columns missing: optprune.verification.bounds was not importable")
    if taus:
        print("\nKendall tau of each scorer against leave-one-out ablation (mean over groups)\n")
        names = sorted({n for t in taus.values() for n in t})
        print("| net | " + " | ".join(names) + " |")
        print("|" + "---|" * (len(names) + 1))
        for net, t in taus.items():
            print(f"| {net} | " + " | ".join(fmt(t.get(n), 3) for n in names) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer scorers, 10 images for the bounds")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs over the train fold")
    parser.add_argument("--lr", type=float, default=5e-4, help="fine-tuning learning rate (Adam)")
    parser.add_argument("--distill", action="store_true", help="fine-tune with distillation from the unpruned net")
    parser.add_argument("--calibration", type=int, default=256, help="calibration images from the train fold")
    parser.add_argument("--bound-images", type=int, default=None, help="test images for unstable counts (20 / 10)")
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--nets", nargs="+", default=None, help="subset of mnist-256x2 mnist-256x4 digits-cnn")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default results/prune_vs_torch_pruning, ..._quick with --quick)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    from optprune.bench._provenance import script_command, start_run

    if args.out is None:
        args.out = Path("results") / ("prune_vs_torch_pruning_quick" if args.quick else "prune_vs_torch_pruning")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    records.write_text("")  # this benchmark does not resume: a run rewrites its records
    args.bound_images = args.bound_images or (10 if args.quick else 20)
    args.scorers = QUICK_METHODS if args.quick else list(METHODS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        import torch_pruning  # noqa: F401

        args.tp = TP_METHODS
    except ImportError:
        log.print("[yellow]torch-pruning not installed (pip install -c constraints.txt torch-pruning): skipped")
        args.tp = []
    try:
        import optprune.verification.bounds  # noqa: F401

        bounds_ok = True
    except ImportError:
        bounds_ok = False

    all_rows, taus = [], {}
    start = time.perf_counter()
    for spec in nets(args.quick):
        if args.nets and spec["name"] not in args.nets:
            continue
        rows, tau = run_net(spec, args)
        with open(records, "a") as fh:
            for row in rows:
                fh.write(json.dumps({"id": f"{row['net']}|{row['ratio']:g}|{row['method']}", **row}, default=str) + "\n")
        all_rows += rows
        if tau:
            taus[spec["name"]] = tau
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        print(f"fine-tuning: {args.epochs} epoch(s), Adam lr {args.lr}, batch 64, seed 0"
              f"{', distilled from the unpruned net' if args.distill else ''}; unstable ReLUs: mean over "
              f"{args.bound_images} test-fold images, linear (CROWN) bounds, inputs clipped to [0, 1]")
        print("MNIST: folds of the 10,000-image MNIST test set (train 6,000 for scores and fine-tuning, accuracy on the "
              "held-out test fold of 2,000); digits: its train/test folds\n")
        print_tables(all_rows, taus, bounds_ok)
        print(f"\ntotal {time.perf_counter() - start:.0f} s on {args.threads} thread(s)")
    print(text.getvalue(), end="")
    (args.out / "summary.md").write_text(run.header() + "\n" + text.getvalue())
    (args.out / "kendall_tau.json").write_text(json.dumps({"kendall_tau": taus, "args": {
        k: v for k, v in vars(args).items() if k != "out"}}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
