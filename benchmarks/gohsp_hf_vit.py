"""GOHSP vs the structured baselines on a transformers ViTForImageClassification (MNIST), several seeds, with SE.

The model is a ``ViTForImageClassification`` read with ``from_pretrained`` (default: the reference of
``instances/hf_vit``). It is converted exactly to the project's ViT (:func:`optprune.hf.vit.to_optprune_vit`;
the logit difference is recorded), pruned and fine-tuned there, and converted back to a transformers
``PrunedViTForImageClassification`` (per-layer heads / MLP widths in its config) whose accuracy is what
the table reports; every pruned model is saved with ``save_pretrained`` to a temporary folder, read
back with ``AutoModelForImageClassification.from_pretrained`` and its logits compared.

Methods (same parameter budget, same number of training epochs after pruning starts, all fine-tuning
distilled from the unpruned model, Adam lr 1e-3, batch 64), as in ``benchmarks/gohsp_vit.py``:

* ``gohsp``: graph head ranking -> exact structure search -> ADMM -> hard prune -> fine-tune (Yin et al. 2023);
* ``(a) magnitude+uniform``: group magnitude, one ratio in every block (smallest on a 2.5% grid meeting the budget);
* ``(b) taylor+search``: first-order Taylor importance (256 calibration images) with the exact structure search;
* ``(c) graph+search``: GOHSP without ADMM;
* ``(d) torch-pruning``: Torch-Pruning's MetaPruner, head pruning, group L2 magnitude, one ratio.

A seed fixes the calibration sample, the ADMM / fine-tuning batch order and GOHSP's own seed; the
reference model is the same for every seed. Table: mean accuracy after fine-tuning over the seeds and
its standard error (sample SD / sqrt(n)); GOHSP's lead over the best baseline uses the paired
per-seed differences. Records go to ``OUT/records.jsonl`` as they arrive; a rerun skips the
(budget, seed, method) rows already there::

    python benchmarks/gohsp_hf_vit.py [--budgets 0.5 0.7] [--seeds 0 1 2] [--finetune-epochs 1]
        [--admm-iterations 2] [--allow-dirty]

(3 training epochs after pruning by default, against 5 in ``benchmarks/gohsp_vit.py``: sized for a
2-core machine shared by many jobs.)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from optprune.bench._provenance import script_command, start_run
from optprune.data import load_dataset
from optprune.gohsp import GOHSP, search_keep
from optprune.hf.vit import analyse_hf_vit, from_optprune_vit, hf_logits, hf_vit_accuracy, to_optprune_vit
from optprune.pruning import Pruner, PruningDecision, apply_decision, count_parameters, dependency_groups, finetune
from optprune.scoring import score_model

GRID = np.round(np.arange(0.025, 0.976, 0.025), 3)
METHODS = ("gohsp", "(a) magnitude+uniform", "(b) taylor+search", "(c) graph+search", "(d) torch-pruning")


def _tp_prune(model, ratio: float):
    import torch_pruning as tp

    m = copy.deepcopy(model)
    num_heads, ignored = {}, [m.head]
    for b in m.blocks:
        h = b.attn.q_proj.out_features // b.attn.head_dim
        for p in (b.attn.q_proj, b.attn.k_proj, b.attn.v_proj):
            num_heads[p] = h
        ignored += [b.attn.out_proj, b.fc2]  # the residual stream stays whole
    x = torch.zeros(2, *model.input_shape)
    pruner = tp.pruner.MetaPruner(
        m, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio, num_heads=num_heads,
        prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio, ignored_layers=ignored,
        unwrapped_parameters=[(m.embed.weight, 5), (m.embed.bias, 0), (m.cls_token, 2), (m.pos_embed, 2)],
    )
    pruner.step()
    return m


def _smallest_ratio(build, limit: int, start: float | None = None):
    """The model of the smallest grid ratio meeting ``limit``; ``start``: that ratio, known from an earlier seed."""
    if start is not None:
        return build(start), start
    for r in GRID:
        m = build(float(r))
        if count_parameters(m) <= limit:
            return m, float(r)
    raise RuntimeError("no ratio on the grid meets the budget")


def _reload_diff(pruned_hf, X: np.ndarray) -> float:
    """Save with save_pretrained, read with AutoModelForImageClassification, max |logit difference|."""
    from transformers import AutoModelForImageClassification

    with tempfile.TemporaryDirectory() as d:
        pruned_hf.save_pretrained(d)
        again = AutoModelForImageClassification.from_pretrained(d)
    return float(np.abs(hf_logits(again, X) - hf_logits(pruned_hf, X)).max())


def run(args, records_path: Path, done: dict[tuple, dict], on_record=lambda: None) -> None:
    from transformers import AutoModelForImageClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    torch.set_num_threads(1)
    hf = AutoModelForImageClassification.from_pretrained(args.model).eval()
    model = to_optprune_vit(hf)
    Xtr, ytr = load_dataset("mnist", "train")
    Xte, yte = load_dataset("mnist", "test")
    conversion = float(np.abs(model(torch.as_tensor(Xte[:200])).detach().numpy() - hf_logits(hf, Xte[:200])).max())
    shape = tuple(model.input_shape)
    groups, _ = dependency_groups(model, shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    before = count_parameters(hf)
    acc0 = hf_vit_accuracy(hf, Xte, yte)
    train_epochs = args.finetune_epochs + args.admm_iterations * args.admm_epochs
    print(f"HF ViT {args.model}: {before} parameters, test accuracy {acc0:.4f}, conversion max |dlogit| "
          f"{conversion:.2e}", file=sys.stderr)

    def finish(method, budget, seed, pruned, t0, epochs, extra):
        acc_pruned = hf_vit_accuracy(from_optprune_vit(pruned, hf), Xte, yte)
        if epochs:
            finetune(pruned, (Xtr, ytr), epochs, teacher=model, lr=1e-3, batch_size=64, seed=seed, progress=False)
        out = from_optprune_vit(pruned, hf)
        s = analyse_hf_vit(out)
        row = {"method": method, "budget_kept": budget, "reduction": round(1 - budget, 3), "seed": seed,
               "params_before": before, "params_after": count_parameters(out), "accuracy_before": acc0,
               "accuracy_pruned": acc_pruned, "accuracy_after": hf_vit_accuracy(out, Xte, yte),
               "heads_kept": s.heads, "mlp_widths": s.mlp, "finetune_epochs": epochs,
               "conversion_max_abs_logit_diff": conversion, "reload_max_abs_logit_diff": _reload_diff(out, Xte[:200]),
               "seconds": round(time.time() - t0, 1), **extra}
        with open(records_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        done[(budget, seed, method)] = row
        on_record()
        print(json.dumps({k: row[k] for k in ("method", "reduction", "seed", "accuracy_after", "seconds")}),
              file=sys.stderr, flush=True)

    ratios: dict[tuple, float] = {}  # (method, budget) -> the ratio found (deterministic: the same for every seed)
    for budget in args.budgets:
        limit = int(budget * before)
        for seed in args.seeds:
            todo = [m for m in args.methods if (budget, seed, m) not in done]
            rng = np.random.default_rng(seed)
            calib = rng.choice(len(Xtr), 256, replace=False)
            for method in todo:
                t0 = time.time()
                if method == "gohsp":
                    est = GOHSP(budget, admm_iterations=args.admm_iterations, admm_epochs=args.admm_epochs,
                                rho=args.rho, rho_growth=args.rho_growth, finetune_epochs=0, seed=seed)
                    est.fit(model, (Xtr, ytr))
                    finish(method, budget, seed, est.model_, t0, args.finetune_epochs,
                           {"admm": [{k: h[k] for k in ("rho", "primal_residual", "dual_residual")}
                                     for h in est.admm_history_]})
                elif method == "(c) graph+search":
                    est = GOHSP(budget, admm_iterations=0, finetune_epochs=0, seed=seed).fit(model, (Xtr, ytr))
                    finish(method, budget, seed, est.model_, t0, train_epochs, {})
                elif method == "(b) taylor+search":
                    scores = score_model(model, "taylor", (Xtr[calib], ytr[calib]), groups=groups)
                    kept, _ = search_keep(model, scores, groups, budget, shape)
                    pruned = apply_decision(model, PruningDecision(kept, widths, shape), groups=groups)
                    finish(method, budget, seed, pruned, t0, train_epochs, {})
                elif method == "(a) magnitude+uniform":
                    pruned, ratio = _smallest_ratio(lambda r: Pruner(scorer="magnitude", ratio=r, decision="uniform",
                                                                     input_shape=shape).fit(model).transform(), limit,
                                                    ratios.get((method, budget)))
                    ratios[(method, budget)] = ratio
                    finish(method, budget, seed, pruned, t0, train_epochs, {"ratio": ratio})
                elif method == "(d) torch-pruning":
                    pruned, ratio = _smallest_ratio(lambda r: _tp_prune(model, r), limit, ratios.get((method, budget)))
                    ratios[(method, budget)] = ratio
                    finish(method, budget, seed, pruned, t0, train_epochs, {"ratio": ratio})


def _se(values: list[float]) -> float:
    return float(np.std(values, ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def summary(rows: list[dict], args, header: str) -> str:
    seeds = sorted({r["seed"] for r in rows})
    lines = [header, "", "# GOHSP on a transformers ViTForImageClassification (MNIST)", "",
             f"Model `{args.model}` (transformers ViTForImageClassification, read with from_pretrained; timm is "
             "not used: it imports torchvision, which has no CPU wheel for this torch). Accuracy of the pruned "
             "transformers model (PrunedViTForImageClassification) on the held-out MNIST test fold (2,000 images); "
             f"training on the 6,000-image train fold. Seeds {seeds}; mean +- standard error over seeds. Training "
             f"budget after pruning starts: {args.finetune_epochs + args.admm_iterations * args.admm_epochs} epochs "
             f"for every method (GOHSP: {args.admm_iterations} ADMM iterations x {args.admm_epochs} epoch + "
             f"{args.finetune_epochs} fine-tuning), fine-tuning distilled from the unpruned model, "
             "single-threaded.",
             "", "| reduction | method | params after | acc. pruned (mean) | acc. after: mean +- SE | per seed "
             "| heads per block (seed 0) | MLP per block (seed 0) | s (mean) |",
             "|---|---|---|---|---|---|---|---|---|"]
    budgets = sorted({r["budget_kept"] for r in rows})
    for budget in budgets:
        for method in args.methods:
            rs = sorted((r for r in rows if r["budget_kept"] == budget and r["method"] == method),
                        key=lambda r: r["seed"])
            if not rs:
                continue
            acc = [r["accuracy_after"] for r in rs]
            share = rs[0]["params_after"] / rs[0]["params_before"]
            lines.append(
                f"| {1 - budget:.0%} | {method} | {rs[0]['params_after']} ({share:.1%}) "
                f"| {np.mean([r['accuracy_pruned'] for r in rs]):.4f} | {np.mean(acc):.4f} +- {_se(acc):.4f} "
                f"| {', '.join(f'{a:.4f}' for a in acc)} | {rs[0]['heads_kept']} | {rs[0]['mlp_widths']} "
                f"| {np.mean([r['seconds'] for r in rs]):.0f} |")
    if rows:
        lines += ["", f"Dense model: accuracy {rows[0]['accuracy_before']:.4f}, {rows[0]['params_before']} parameters. "
                  f"Conversion to the project's ViT: max |logit difference| "
                  f"{max(r['conversion_max_abs_logit_diff'] for r in rows):.1e}; pruned models saved with "
                  f"save_pretrained and reloaded by AutoModelForImageClassification.from_pretrained: max |logit "
                  f"difference| {max(r['reload_max_abs_logit_diff'] for r in rows):.1e}."]
    lines += ["", "GOHSP's lead over the best baseline (paired by seed; SE of the mean paired difference):", ""]
    for budget in budgets:
        g = {r["seed"]: r["accuracy_after"] for r in rows if r["budget_kept"] == budget and r["method"] == "gohsp"}
        base = {}
        for method in args.methods:
            if method == "gohsp":
                continue
            acc = {r["seed"]: r["accuracy_after"] for r in rows if r["budget_kept"] == budget and r["method"] == method}
            common = sorted(set(acc) & set(g))
            if common:
                base[method] = (np.mean([acc[s] for s in common]), acc)
        if not g or not base:
            continue
        best = max(base, key=lambda m: base[m][0])
        common = sorted(set(base[best][1]) & set(g))
        diffs = [100 * (g[s] - base[best][1][s]) for s in common]
        lead, se = float(np.mean(diffs)), _se(diffs)
        verdict = ("one seed: no SE" if not np.isfinite(se)
                   else "GOHSP ahead, significant (lead > 2 SE)" if lead > 2 * se
                   else "GOHSP behind, significant (lead < -2 SE)" if lead < -2 * se
                   else "not significant (|lead| <= 2 SE)")
        lines.append(f"- {1 - budget:.0%} fewer parameters: best baseline {best}; GOHSP lead {lead:+.2f} points, "
                     f"SE {se:.2f} points over {len(common)} seeds: {verdict}.")
    acc = rows[0]["accuracy_before"] if rows else 0.95
    lines += ["", "(a) and (d) search the smallest ratio meeting the budget for the first seed only (the pruning does "
              "not depend on the seed; only fine-tuning does), so their mean seconds understate the search."]
    lines += ["", f"The test fold is fixed (2,000 images): seeds measure the spread of pruning and fine-tuning, not "
              f"the sampling error of the test set (binomial SE of one accuracy about "
              f"{100 * np.sqrt(acc * (1 - acc) / 2000):.2f} points)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="instances/hf_vit/mnist_vit")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.5, 0.7], help="fractions of parameters kept")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--admm-iterations", type=int, default=2)
    parser.add_argument("--admm-epochs", type=int, default=1)
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--rho-growth", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("results/gohsp_hf_vit"))
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    prov = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                     allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = args.out / "records.jsonl"
    done: dict[tuple, dict] = {}
    if records.exists():
        for line in records.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[(row["budget_kept"], row["seed"], row["method"])] = row
    earlier = set(done)

    def write_summary() -> None:  # after every record, so an interrupted run leaves a summary of what it has
        wanted = [r for r in done.values() if r["budget_kept"] in args.budgets and r["seed"] in args.seeds
                  and r["method"] in args.methods]
        prov.resumed(sum(1 for r in wanted if (r["budget_kept"], r["seed"], r["method"]) in earlier), len(wanted))
        expected = len(args.budgets) * len(args.seeds) * len(args.methods)
        text = summary(wanted, args, prov.header())
        if len(wanted) < expected:
            text += f"\nIncomplete: {len(wanted)} of {expected} (budget, seed, method) rows so far.\n"
        (args.out / "summary.md").write_text(text)

    run(args, records, done, write_summary)
    write_summary()


if __name__ == "__main__":
    main()
