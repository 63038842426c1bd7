"""Reconvene (structured pruning at initialisation) against unstructured PaI at the same size, over seeds (issue 27).

Eccles, Wong & Varghese's claim: the layers an unstructured pruning-at-
initialisation mask leaves sparse tolerate *structured* pruning, so the
channel-pruned network (physically smaller, so faster) is as accurate as the
unstructured one at the same parameter count. The network is the residual CNN
of ``benchmarks/bayes_pai.py`` (stem, a residual block tied to the stem's
channels, a strided convolution, a linear head; 25,130 parameters); per seed in
``--seeds``:

* ``dense``: trained ``--epochs`` epochs (Adam, lr 1e-3, batch 64, one thread)
  on the 6,000-image MNIST 'train' fold;
* per ratio in ``--ratios`` (fraction of the parameters removed; 0.8 is 5.2x
  fewer parameters, 0.9375 the paper's 16x smaller setting) and per saliency in
  ``--saliencies`` (``snip``; ``synflow_iterative``, Tanaka et al. 2020's
  Algorithm 1 with 100 rounds; ``synflow``, single shot): Reconvene prunes the
  seed's initialisation, re-initialises and trains ``--epochs`` epochs;
  unstructured PaI with the same saliency keeps the same parameter count
  (nonzero weights plus biases) on the same initialisation and trains its mask
  the same ``--epochs`` epochs.

Accuracy on the 2,000-image 'test' fold. Batch-1 (and batch-64) CPU latency,
one thread for every model: the Reconvene model, the unstructured model (dense
tensors with zeros, the masks made permanent) and the dense architecture are
timed round-robin in the same loop (``--repeats`` forward passes each, median),
so machine load hits all three alike. Tables: mean +- standard error over
seeds; the Reconvene - unstructured gap is paired per seed.

``--latency-only`` (into ``results/reconvene_latency``): Reconvene decides the
widths at initialisation, so the same seeds give the same architectures without
training; this mode times them (batch 1, one thread, round-robin, median) in
eager PyTorch and as frozen TorchScript (``torch.jit.freeze(torch.jit.trace)``,
less per-layer Python dispatch) against the dense architecture, whose
unstructured-masked twin costs the same (dense tensors).

Records go to ``OUT/records.jsonl`` as they arrive, one per (seed, dense) and
per (seed, ratio, saliency); a rerun keeps those whose settings match and
measures the rest (``--force`` starts afresh). ``OUT/summary.md`` starts with
the provenance header. For results/, from a clean commit::

    nice python benchmarks/reconvene.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _siblings import sibling

ROOT = Path(__file__).resolve().parent.parent


def paired_latency_ms(models: dict[str, Any], shape: tuple[int, ...], batch: int, repeats: int) -> dict[str, float]:
    """Median forward time (ms) of each model, one thread, no grad, the models timed round-robin ``repeats`` times."""
    import torch

    x = torch.randn(batch, *shape)
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for m in models.values():
            m.eval()
            for _ in range(20):
                m(x)
        for _ in range(repeats):
            for k, m in models.items():
                t = time.perf_counter()
                m(x)
                times[k].append(time.perf_counter() - t)
    return {k: 1e3 * float(np.median(v)) for k, v in times.items()}


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error (sample std / sqrt(n); 0 for one value)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), (float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.8, 0.9375])
    ap.add_argument("--saliencies", nargs="+", default=["snip", "synflow_iterative"])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2000, help="timed forward passes per model (batch 1)")
    ap.add_argument("--out", type=Path, default=None,
                    help="default results/reconvene (results/reconvene_latency with --latency-only)")
    ap.add_argument("--latency-only", action="store_true",
                    help="time the seeds' Reconvene architectures (untrained) eager and as frozen TorchScript")
    ap.add_argument("--force", action="store_true", help="discard the records already in OUT and start afresh")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write under results/ from a dirty working tree (stamped in the header)")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = ROOT / "results" / ("reconvene_latency" if args.latency_only else "reconvene")

    from optprune.bench import RecordStore
    from optprune.bench._provenance import script_command, start_run
    from optprune.errors import InvalidParameterError
    from optprune.scoring import WEIGHT_SCORERS

    for s in args.saliencies:
        WEIGHT_SCORERS.check(s, "--saliencies")
    if not all(0.0 < r < 1.0 for r in args.ratios):
        raise InvalidParameterError(f"--ratios must lie in (0, 1) (fractions of the parameters removed); got "
                                    f"{args.ratios}")
    run = start_run(args.out, script_command(None if argv is None else [__file__, *argv]), allow_dirty=args.allow_dirty)
    import torch

    from optprune.data import load_dataset
    from optprune.pai import Reconvene, UnstructuredPaI
    from optprune.pruning import count_parameters, remove_masks
    from optprune.training import accuracy, train_classifier

    torch.set_num_threads(1)
    res_cnn = sibling("bayes_pai").ResCNN
    shape = (1, 28, 28)
    X, y = load_dataset("mnist", "train")
    Xte, yte = load_dataset("mnist", "test")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "records.jsonl"
    if args.force and path.exists():
        path.unlink()
    settings = {"epochs": args.epochs, "repeats": args.repeats}
    if args.latency_only:
        return latency_only(args, run, res_cnn, (X, y), path)

    def init(seed: int):
        torch.manual_seed(seed)
        return res_cnn()

    units = [("dense", seed, None, None) for seed in args.seeds] + [
        ("pair", seed, ratio, sal) for seed in args.seeds for ratio in args.ratios for sal in args.saliencies]
    done_before = 0
    with RecordStore(path) as store:
        for kind, seed, ratio, sal in units:
            rid = json.dumps({"kind": kind, "seed": seed, "ratio": ratio, "saliency": sal, **settings}, sort_keys=True)
            if rid in store:
                done_before += 1
                continue
            t0 = time.perf_counter()
            if kind == "dense":
                model = train_classifier(init(seed), (X, y), epochs=args.epochs, seed=seed, progress=False)
                rec = {"id": rid, "kind": kind, "seed": seed, "params": count_parameters(model),
                       "accuracy": accuracy(model, Xte, yte), "train_s": time.perf_counter() - t0, **settings}
            else:
                model0 = init(seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("error")  # an untrained model: no TrainedModelWarning expected
                    rc = Reconvene(saliency=sal, ratio=ratio, seed=seed).fit(model0, (X, y))
                small = rc.transform()
                train_classifier(small, (X, y), epochs=args.epochs, seed=seed, progress=False)
                pai = UnstructuredPaI(saliency=sal, n_params=rc.n_params_after_, seed=seed,
                                      epochs=args.epochs).fit(model0, (X, y))
                masked = pai.transform()
                remove_masks(masked)
                nonzero = int(sum(int((p != 0).sum()) for p in masked.parameters()))
                dense_arch = init(seed)
                models = {"reconvene": small, "unstructured": masked, "dense": dense_arch}
                b1 = paired_latency_ms(models, shape, 1, args.repeats)
                b64 = paired_latency_ms(models, shape, 64, max(50, args.repeats // 10))
                rec = {"id": rid, "kind": kind, "seed": seed, "ratio": ratio, "saliency": sal,
                       "params_dense": count_parameters(dense_arch), "params_reconvene": rc.n_params_after_,
                       "params_unstructured": pai.n_params_after_, "nonzero_unstructured": nonzero,
                       "accuracy_reconvene": accuracy(small, Xte, yte),
                       "accuracy_unstructured": accuracy(masked, Xte, yte),
                       "latency_b1_ms": b1, "latency_b64_ms": b64, "produce_s_reconvene": rc.time_,
                       "produce_s_unstructured": pai.time_, "widths": rc.widths_,
                       "sensitivity": {k: round(v, 4) for k, v in rc.sensitivity_.items()},
                       "mask_density": {k: round(float(m.mean()), 4) for k, m in pai.masks_.items()},
                       "wall_s": time.perf_counter() - t0, **settings}
            store.append(rec)
            print(json.dumps({k: v for k, v in rec.items() if k != "id"}), file=sys.stderr, flush=True)
        records = [store.records[json.dumps({"kind": k, "seed": s, "ratio": r, "saliency": sal, **settings},
                                            sort_keys=True)] for k, s, r, sal in units]
    run.resumed(done_before, len(units))
    text = summary(records, args)
    (args.out / "summary.md").write_text(run.header() + "\n" + text)
    print(text)
    return 0


def latency_only(args, run, res_cnn, data, path: Path) -> int:
    """``--latency-only``: batch-1 latency of every (seed, ratio, saliency) architecture, eager and TorchScript."""
    import torch

    from optprune.bench import RecordStore
    from optprune.pai import Reconvene

    shape = (1, 28, 28)
    x = torch.randn(1, *shape)
    rows, done_before = [], 0
    units = [(s, r, sal) for s in args.seeds for r in args.ratios for sal in args.saliencies]
    with RecordStore(path) as store:
        for seed, ratio, sal in units:
            rid = json.dumps({"seed": seed, "ratio": ratio, "saliency": sal, "repeats": args.repeats}, sort_keys=True)
            if rid not in store:
                torch.manual_seed(seed)
                model0 = res_cnn()
                rc = Reconvene(saliency=sal, ratio=ratio, seed=seed).fit(model0, data)
                small, dense = rc.transform().eval(), res_cnn().eval()
                rec = {"id": rid, "seed": seed, "ratio": ratio, "saliency": sal, "widths": rc.widths_,
                       "params_reconvene": rc.n_params_after_, "params_dense": rc.n_params_before_}
                for mode in ("eager", "torchscript"):
                    with torch.no_grad():
                        models = {"reconvene": small, "dense": dense} if mode == "eager" else {
                            k: torch.jit.freeze(torch.jit.trace(m, x)) for k, m in (("reconvene", small),
                                                                                     ("dense", dense))}
                    rec[f"latency_b1_ms_{mode}"] = paired_latency_ms(models, shape, 1, args.repeats)
                store.append(rec)
                print(json.dumps({k: v for k, v in rec.items() if k != "id"}), file=sys.stderr, flush=True)
            else:
                done_before += 1
            rows.append(store.records[rid])
    run.resumed(done_before, len(units))
    lines = ["# Reconvene: batch-1 latency of the pruned architectures, eager and frozen TorchScript", "",
             f"The architectures Reconvene picks at initialisation for seeds {args.seeds} (the models of "
             "results/reconvene before training; widths depend only on the initialisation and the SNIP calibration "
             f"sample) against the dense architecture (the unstructured-masked model has its shapes). Median of "
             f"{args.repeats} batch-1 forward passes, one thread, no grad, the two models timed round-robin; "
             "TorchScript: torch.jit.freeze(torch.jit.trace(model)). Mean +- standard error over seeds.", "",
             "| ratio | saliency | params (x fewer) | eager ms Reconvene / dense | eager speed-up | TorchScript ms "
             "Reconvene / dense | TorchScript speed-up |", "|---:|---|---:|---:|---:|---:|---:|"]
    for ratio in args.ratios:
        for sal in args.saliencies:
            part = [r for r in rows if r["ratio"] == ratio and r["saliency"] == sal]
            cells = []
            for mode in ("eager", "torchscript"):
                lat = [r[f"latency_b1_ms_{mode}"] for r in part]
                sp = mean_se([v["dense"] / v["reconvene"] for v in lat])
                cells += [f"{np.mean([v['reconvene'] for v in lat]):.4f} / {np.mean([v['dense'] for v in lat]):.4f}",
                          f"{sp[0]:.2f}x +- {sp[1]:.2f}"]
            params = int(np.mean([r["params_reconvene"] for r in part]))
            lines.append(f"| {ratio:g} | {sal} | {params} ({part[0]['params_dense'] / params:.1f}x) | "
                         + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    (args.out / "summary.md").write_text(run.header() + "\n" + text)
    print(text)
    return 0


def summary(records: list[dict], args) -> str:
    dense = [r for r in records if r["kind"] == "dense"]
    d_mean, d_se = mean_se([100 * r["accuracy"] for r in dense])
    lines = [
        "# Reconvene vs unstructured pruning at initialisation (issue 27)", "",
        f"Residual CNN of benchmarks/bayes_pai.py ({dense[0]['params']} parameters), MNIST: {args.epochs} epochs "
        "(Adam, lr 1e-3, batch 64, one thread) on the 6,000-image 'train' fold for every model, accuracy on the "
        f"2,000-image 'test' fold; seeds {args.seeds} (initialisation, SNIP calibration sample and training order). "
        f"Dense: {d_mean:.2f} +- {d_se:.2f} %. Mean +- standard error over seeds; the gap is paired per seed. "
        f"Latency: median of {args.repeats} batch-1 forward passes (and {max(50, args.repeats // 10)} at batch 64), "
        "one thread, the three models timed round-robin in one loop; 'unstructured' is the masked model with dense "
        "tensors (its zeros cost as much as the dense weights).", "",
        "| ratio | saliency | params (x fewer) | Reconvene acc | unstructured acc | gap (points) | "
        "b1 ms Reconvene / unstr. / dense | b1 speed-up vs unstr. | b64 speed-up vs unstr. | widths (seed 0) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    targets = []
    for ratio in args.ratios:
        for sal in args.saliencies:
            rows = [r for r in records if r["kind"] == "pair" and r["ratio"] == ratio and r["saliency"] == sal]
            rc = mean_se([100 * r["accuracy_reconvene"] for r in rows])
            un = mean_se([100 * r["accuracy_unstructured"] for r in rows])
            gap = mean_se([100 * (r["accuracy_reconvene"] - r["accuracy_unstructured"]) for r in rows])
            params = int(np.mean([r["params_reconvene"] for r in rows]))
            fewer = rows[0]["params_dense"] / params
            lat = {k: float(np.mean([r["latency_b1_ms"][k] for r in rows])) for k in ("reconvene", "unstructured",
                                                                                    "dense")}
            sp1 = mean_se([r["latency_b1_ms"]["unstructured"] / r["latency_b1_ms"]["reconvene"] for r in rows])
            sp64 = mean_se([r["latency_b64_ms"]["unstructured"] / r["latency_b64_ms"]["reconvene"] for r in rows])
            lines.append(
                f"| {ratio:g} | {sal} | {params} ({fewer:.1f}x) | {rc[0]:.2f} +- {rc[1]:.2f} | "
                f"{un[0]:.2f} +- {un[1]:.2f} | {gap[0]:+.2f} +- {gap[1]:.2f} | "
                f"{lat['reconvene']:.4f} / {lat['unstructured']:.4f} / "
                f"{lat['dense']:.4f} | {sp1[0]:.2f}x +- {sp1[1]:.2f} | {sp64[0]:.2f}x +- {sp64[1]:.2f} | "
                f"{rows[0]['widths']} |")
            met = gap[0] >= -0.5 and fewer >= 5 and sp1[0] >= 2
            targets.append(
                f"- ratio {ratio:g}, {sal}: gap {gap[0]:+.2f} +- {gap[1]:.2f} points (within 0.5: "
                f"{'yes' if gap[0] >= -0.5 else 'no'}), {fewer:.1f}x fewer parameters (>= 5x: "
                f"{'yes' if fewer >= 5 else 'no'}), batch-1 {sp1[0]:.2f}x faster than the unstructured model "
                f"(>= 2x: {'yes' if sp1[0] >= 2 else 'no'}) -> target {'met' if met else 'missed'}")
    lines += ["", "Per seed (Reconvene / unstructured accuracy, %):", ""]
    for r in (r for r in records if r["kind"] == "pair"):
        lines.append(f"- ratio {r['ratio']:g} {r['saliency']} seed {r['seed']}: {100 * r['accuracy_reconvene']:.2f} / "
                     f"{100 * r['accuracy_unstructured']:.2f}; widths {r['widths']}; unstructured mask density per "
                     f"layer {r['mask_density']}")
    lines += ["", "## Targets (Reconvene within 0.5 points of unstructured at >= 5x fewer parameters, 2x faster at "
              "batch 1)", "", *targets, ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
