"""BMRS (both priors) and Reconvene against unstructured PaI and the engine's scorers, on MNIST folds.

Two models: the MNIST MLP 784-256x4-10 (BMRS and the engine's scorers) and a
small residual CNN (stem, one residual block, strided conv, linear head; both
methods). Every method gets the same training budget of ``--epochs`` epochs
(Adam, lr 1e-3, batch 64, one thread) on the 6,000-image "train" fold:

* dense reference: ``--epochs`` epochs;
* BMRS_N, BMRS_U-8, BMRS_U-4: ``--epochs`` variational epochs, pruning every
  ``--prune-every`` epochs and once at the end (Delta F >= 0, no threshold);
* Reconvene (SNIP, SynFlow) and unstructured SNIP PaI at Reconvene's
  parameter count: pruned at initialisation, then ``--epochs`` epochs;
* magnitude / Taylor / FLAP (``optprune.pruning.Pruner``): the dense model after
  ``epochs - finetune`` epochs is pruned to the parameter count of the matched
  method (bisection on the ratio), then fine-tuned ``--finetune`` epochs.

Accuracies on the 2,000-image "test" fold; CPU latency (one thread, median of
repeated forward passes) at batch 1 and batch 64 in the same run; the time to
produce the pruned model (training excluded for Reconvene/PaI, whose claim is
"seconds"; BMRS's decision is part of its training). Writes ``records.jsonl``,
``summary.md`` (provenance header first) and ``accuracy_vs_params.png`` under
``results/bayes_pai/``.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from optprune.bayes import BMRS, precision_bounds
from optprune.bench._provenance import Run, start_run
from optprune.data import load_dataset
from optprune.pai import Reconvene, UnstructuredPaI
from optprune.pruning import Pruner, count_parameters, finetune, remove_masks
from optprune.training import accuracy, make_mlp, train_classifier

ROOT = Path(__file__).resolve().parents[1]


class ResCNN(nn.Module):
    """Conv(1,16,s2)-ReLU, residual block of two 3x3 convs (16), Conv(16,32,s2)-ReLU, Linear(32*7*7, 10)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, stride=2, padding=1)
        self.c1 = nn.Conv2d(16, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.head = nn.Linear(32 * 7 * 7, 10)
        self.input_shape = (1, 28, 28)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.stem(x))
        h = torch.relu(h + self.c2(torch.relu(self.c1(h))))
        h = torch.relu(self.down(h))
        return self.head(h.flatten(1))


def make_model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return make_mlp([784, 256, 256, 256, 256, 10], (1, 28, 28)) if kind == "mlp" else ResCNN()


def latency_ms(model: nn.Module, shape: tuple[int, ...], batch: int, repeats: int) -> float:
    """Median wall time of one forward pass (eval, no grad, one thread)."""
    model.eval()
    x = torch.randn(batch, *shape)
    times = []
    with torch.no_grad():
        for _ in range(10):
            model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def nonzero_params(model: nn.Module) -> int:
    return int(sum(int((p != 0).sum()) for p in model.parameters()))


def match_pruner(dense: nn.Module, scorer: str, target: int, calib, shape) -> Pruner:
    """The uniform (global for FLAP) Pruner whose pruned model has the most parameters <= target."""
    kw = {"decision": "global", "compensate": True} if scorer == "flap" else {}
    lo, hi, best = 0.0, 0.99, None
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        p = Pruner(scorer=scorer, ratio=mid, input_shape=shape, **kw).fit(dense, calib)
        if p.n_params_after_ <= target:
            best, hi = p, mid
        else:
            lo = mid
    if best is None:
        best = Pruner(scorer=scorer, ratio=0.99, input_shape=shape, **kw).fit(dense, calib)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--finetune", type=int, default=2)
    ap.add_argument("--prune-every", type=int, default=4)
    ap.add_argument("--reconvene-ratio", type=float, default=0.8)
    ap.add_argument("--models", default="mlp,cnn")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "bayes_pai")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args()
    run = start_run(args.out, allow_dirty=args.allow_dirty)
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    X, y = load_dataset("mnist", "train")
    Xte, yte = load_dataset("mnist", "test")
    rng = np.random.default_rng(args.seed)
    cal = rng.choice(len(X), 512, replace=False)
    calib = (X[cal], y[cal])
    E, F = args.epochs, args.finetune
    records: list[dict] = []
    t_all = time.perf_counter()

    def record(kind, method, model, produce_s, note="", params=None, matched_to=None):
        shape = (1, 28, 28)
        rec = {
            "model": kind, "method": method, "params": int(params if params is not None else count_parameters(model)),
            "accuracy": accuracy(model, Xte, yte), "latency_ms_b1": latency_ms(model, shape, 1, args.repeats),
            "latency_ms_b64": latency_ms(model, shape, 64, max(5, args.repeats // 3)),
            "produce_s": produce_s, "epochs": E, "matched_to": matched_to, "note": note,
        }
        records.append(rec)
        print(json.dumps(rec), flush=True)
        return rec

    for kind in args.models.split(","):
        shape = (1, 28, 28)
        dense_full = make_model(kind, args.seed)
        dense_early = copy.deepcopy(dense_full)
        t = time.perf_counter()
        train_classifier(dense_early, (X, y), epochs=E - F, seed=args.seed, progress=False)
        dense_full = copy.deepcopy(dense_early)
        train_classifier(dense_full, (X, y), epochs=F, seed=args.seed + 1, progress=False)
        dense_rec = record(kind, "dense", dense_full, time.perf_counter() - t)
        dense_rec["params_dense"] = dense_rec["params"]
        n_dense = dense_rec["params"]

        bmrs = {}
        for label, prior, reduced in (("BMRS_N", "normal", None), ("BMRS_U-8", "uniform", precision_bounds(8)),
                                      ("BMRS_U-4", "uniform", precision_bounds(4))):
            t = time.perf_counter()
            est = BMRS(prior=prior, reduced=reduced, epochs=E, prune_every=args.prune_every,
                       seed=args.seed).fit(make_model(kind, args.seed), (X, y))
            small = est.transform()
            r = record(kind, label, small, time.perf_counter() - t,
                       note=f"pruned {sum(h['pruned'] for h in est.history_)} units; history {est.history_}")
            bmrs[label] = (est, r)
        targets = {}
        best = min(bmrs, key=lambda k: bmrs[k][1]["params"])
        if bmrs[best][1]["params"] < n_dense:
            targets[best] = bmrs[best][1]["params"]
        elif kind == "mlp":  # no BMRS compression to match: the engine's scorers at half the parameters instead
            targets["50% of dense"] = n_dense // 2

        if kind == "cnn":
            for sal in ("snip", "synflow"):
                init = make_model(kind, args.seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    rc = Reconvene(saliency=sal, ratio=args.reconvene_ratio, seed=args.seed).fit(init, (X, y))
                model = rc.transform()
                train_classifier(model, (X, y), epochs=E, seed=args.seed, progress=False)
                label = f"Reconvene-{sal}"
                record(kind, label, model, rc.time_, note=f"widths {rc.widths_}; sensitivity "
                       + json.dumps({k: round(v, 3) for k, v in rc.sensitivity_.items()}))
                targets.setdefault(label, rc.n_params_after_)
                pai = UnstructuredPaI(saliency=sal, n_params=rc.n_params_after_, seed=args.seed,
                                      epochs=E).fit(init, (X, y))
                model = pai.transform()
                remove_masks(model)
                record(kind, f"unstructured PaI-{sal}", model, pai.time_, params=nonzero_params(model),
                       matched_to=label, note="nonzero parameters; same dense tensors")

        for label, target in targets.items():
            for scorer in ("magnitude", "taylor", "flap"):
                t = time.perf_counter()
                pruner = match_pruner(dense_early, scorer, target, calib, shape)
                model = pruner.transform()
                produce = time.perf_counter() - t
                finetune(model, (X, y), F, seed=args.seed, lr=1e-3)
                record(kind, f"{scorer}", model, produce, matched_to=label,
                       note=f"pruned after {E - F} epochs, fine-tuned {F}")

    total = time.perf_counter() - t_all
    with open(args.out / "records.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    plot(records, args.out / "accuracy_vs_params.png")
    write_summary(records, args, total, run)


def plot(records: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["model"] for r in records}, reverse=True)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6 * len(kinds), 4.5), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for r in (r for r in records if r["model"] == kind):
            ax.scatter(r["params"], 100 * r["accuracy"], s=30)
            ax.annotate(r["method"] + (f" (@{r['matched_to']})" if r["matched_to"] else ""),
                        (r["params"], 100 * r["accuracy"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters (nonzero for unstructured PaI)")
        ax.set_ylabel("test-fold accuracy (%)")
        ax.set_title({"mlp": "MNIST MLP 784-256x4-10", "cnn": "MNIST residual CNN"}.get(kind, kind))
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def write_summary(records: list[dict], args, total: float, run: Run) -> None:
    lines = [run.header(), "", "# BMRS and Reconvene on MNIST folds", "",
             f"Training budget: {args.epochs} epochs for every method (Adam, lr 1e-3, batch 64, one thread) on the "
             f"6,000-image 'train' fold; engine scorers pruned after {args.epochs - args.finetune} epochs and "
             f"fine-tuned {args.finetune}; BMRS prunes every {args.prune_every} epochs and at the end; Reconvene "
             f"ratio {args.reconvene_ratio}. Accuracy on the 2,000-image 'test' fold (one seed, {args.seed}). "
             f"Latency: median forward pass, one thread, batch 1 ({args.repeats} repeats) and batch 64, measured "
             f"in this run. Whole run {total / 60:.1f} min.", "",
             "| model | method | matched to | params | accuracy | latency b1 (ms) | latency b64 (ms) | produce (s) |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['model']} | {r['method']} | {r['matched_to'] or ''} | {r['params']} | "
                     f"{100 * r['accuracy']:.2f} | {r['latency_ms_b1']:.3f} | {r['latency_ms_b64']:.2f} | "
                     f"{r['produce_s']:.2f} |")
    lines += ["", "Notes per row (BMRS pruning history, Reconvene widths and layer sensitivities):", ""]
    lines += [f"- {r['model']} {r['method']}: {r['note']}" for r in records if r["note"]]
    lines += ["", "![accuracy vs parameters](accuracy_vs_params.png)", ""]
    by = {(r["model"], r["method"]): r for r in records}
    checks = []
    for kind in sorted({r["model"] for r in records}):
        d = by.get((kind, "dense"))
        n = by.get((kind, "BMRS_N"))
        if d and n:
            checks.append(f"- {kind}: BMRS_N keeps {n['params']}/{d['params']} parameters "
                          f"({100 * (1 - n['params'] / d['params']):.1f}% compression), accuracy "
                          f"{100 * n['accuracy']:.2f} vs dense {100 * d['accuracy']:.2f} "
                          f"(target: within 1 point, with compression)")
        for sal in ("snip", "synflow"):
            rc, pai = by.get((kind, f"Reconvene-{sal}")), by.get((kind, f"unstructured PaI-{sal}"))
            if rc and pai:
                checks.append(
                    f"- {kind}: Reconvene-{sal} {100 * rc['accuracy']:.2f} vs unstructured PaI "
                    f"{100 * pai['accuracy']:.2f} (target within 0.5 points: "
                    f"{'met' if rc['accuracy'] >= pai['accuracy'] - 0.005 else 'missed'}); produced in "
                    f"{rc['produce_s']:.2f} s; {d['params'] / rc['params']:.1f}x fewer parameters than dense; "
                    f"latency b1 {pai['latency_ms_b1'] / rc['latency_ms_b1']:.2f}x, b64 "
                    f"{pai['latency_ms_b64'] / rc['latency_ms_b64']:.2f}x faster than the unstructured model")
    lines += ["## Targets", "", *checks, ""]
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
