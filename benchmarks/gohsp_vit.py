"""GOHSP vs four baselines on the MNIST ViT at 30/40/50% fewer parameters (one run, one seed).

Methods, all at the same parameter budget and with the same number of training
epochs after pruning starts (GOHSP spends ``admm_iterations * admm_epochs`` of
them in ADMM and the rest fine-tuning; the others fine-tune for all of them),
every fine-tuning distilled from the unpruned model (Adam, lr 1e-3, batch 64):

* ``gohsp``: graph head ranking -> exact structure search -> ADMM -> hard prune -> fine-tune;
* ``gohsp, rec. budgets``: the same with the per-layer budgets from the exact width allocation on the layers'
  reconstruction error curves (``GOHSP(budgets="reconstruction")``, issue 24) instead of the search on the scores;
* ``(a) magnitude+uniform``: group magnitude, the same ratio of heads and MLP
  neurons removed in every block (smallest ratio on a 2.5% grid meeting the budget);
* ``(b) taylor+search``: first-order Taylor importance with the exact structure search;
* ``(c) graph+search``: GOHSP without ADMM;
* ``(c) graph+rec. budgets``: GOHSP without ADMM, budgets from the reconstruction curves;
* ``(d) torch-pruning``: Torch-Pruning's MetaPruner with head pruning
  (``prune_num_heads``), group L2 magnitude, one ratio for heads and MLP
  neurons (smallest on the grid meeting the budget); residual stream excluded.

Accuracy on the held-out MNIST test fold (2,000 images); training on the train
fold (6,000). Writes ``records.jsonl`` and ``summary.md`` (provenance header
first) to ``results/gohsp_vit/``::

    python benchmarks/gohsp_vit.py [--budgets 0.7 0.6 0.5] [--finetune-epochs 2] [--admm-iterations 3] [--allow-dirty]

Every budget runs in this one process, one after the other, so the command in
the summary's header remakes the whole folder.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch

from optprune.bench._provenance import script_command, start_run
from optprune.data import load_dataset
from optprune.gohsp import GOHSP, search_keep
from optprune.pruning import Pruner, PruningDecision, apply_decision, count_parameters, dependency_groups, finetune
from optprune.scoring import score_model
from optprune.vit import load_vit, vit_accuracy

GRID = np.round(np.arange(0.025, 0.976, 0.025), 3)


def _tp_prune(model, ratio: float):
    import torch_pruning as tp

    m = copy.deepcopy(model)
    num_heads, ignored = {}, [m.head]
    for b in m.blocks:
        h = b.attn.q_proj.out_features // b.attn.head_dim
        for p in (b.attn.q_proj, b.attn.k_proj, b.attn.v_proj):
            num_heads[p] = h
        ignored += [b.attn.out_proj, b.fc2]  # their outputs are the residual stream, which stays whole
    x = torch.zeros(2, *model.input_shape)
    pruner = tp.pruner.MetaPruner(
        m, x, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio, num_heads=num_heads,
        prune_num_heads=True, prune_head_dims=False, head_pruning_ratio=ratio, ignored_layers=ignored,
        unwrapped_parameters=[(m.embed.weight, 5), (m.embed.bias, 0), (m.cls_token, 2), (m.pos_embed, 2)],
    )
    pruner.step()
    return m


def _smallest_ratio(build, limit: int):
    for r in GRID:
        m = build(float(r))
        if count_parameters(m) <= limit:
            return m, float(r)
    raise RuntimeError("no ratio on the grid meets the budget")


def run(args) -> list[dict]:
    torch.set_num_threads(1)
    model = load_vit(args.model)
    Xtr, ytr = load_dataset("mnist", "train")
    Xte, yte = load_dataset("mnist", "test")
    shape = tuple(model.input_shape)
    groups, _ = dependency_groups(model, shape)
    widths = {g.name: g.width for g in groups if g.prunable}
    before = count_parameters(model)
    acc0 = vit_accuracy(model, Xte, yte)
    rng = np.random.default_rng(0)
    calib = rng.choice(len(Xtr), 256, replace=False)
    train_epochs = args.finetune_epochs + args.admm_iterations * args.admm_epochs
    records = []

    def finish(method: str, budget: float, pruned, t0: float, epochs: int, extra: dict) -> dict:
        acc_pruned = vit_accuracy(pruned, Xte, yte)
        if epochs:
            finetune(pruned, (Xtr, ytr), epochs, teacher=model, lr=1e-3, batch_size=64, seed=0, progress=False)
        cfg = pruned.config
        rec = {"method": method, "budget_kept": budget, "reduction": round(1 - budget, 3), "params_before": before,
               "params_after": count_parameters(pruned), "accuracy_before": acc0,
               "accuracy_pruned": acc_pruned, "accuracy_after": vit_accuracy(pruned, Xte, yte),
               "heads_kept": list(cfg.heads), "mlp_widths": list(cfg.mlp), "finetune_epochs": epochs,
               "seconds": round(time.time() - t0, 1), **extra}
        print(json.dumps(rec), flush=True)
        return rec

    for budget in args.budgets:
        limit = int(budget * before)
        # GOHSP
        t0 = time.time()
        est = GOHSP(budget, admm_iterations=args.admm_iterations, admm_epochs=args.admm_epochs, rho=args.rho,
                    rho_growth=args.rho_growth, finetune_epochs=0).fit(model, (Xtr, ytr))
        records.append(finish("gohsp", budget, est.model_, t0, args.finetune_epochs,
                              {"admm": [{k: h[k] for k in ("rho", "primal_residual", "dual_residual")}
                                        for h in est.admm_history_]}))
        # GOHSP with the per-layer budgets from the reconstruction error curves
        t0 = time.time()
        est = GOHSP(budget, admm_iterations=args.admm_iterations, admm_epochs=args.admm_epochs, rho=args.rho,
                    rho_growth=args.rho_growth, finetune_epochs=0, budgets="reconstruction").fit(model, (Xtr, ytr))
        records.append(finish("gohsp, rec. budgets", budget, est.model_, t0, args.finetune_epochs,
                              {"admm": [{k: h[k] for k in ("rho", "primal_residual", "dual_residual")}
                                        for h in est.admm_history_]}))
        # (c) graph ranking + search, no ADMM; and with the reconstruction budgets
        for name, budgets in (("(c) graph+search", "search"), ("(c) graph+rec. budgets", "reconstruction")):
            t0 = time.time()
            est = GOHSP(budget, admm_iterations=0, finetune_epochs=0, budgets=budgets).fit(model, (Xtr, ytr))
            records.append(finish(name, budget, est.model_, t0, train_epochs, {}))
        # (b) Taylor + search
        t0 = time.time()
        scores = score_model(model, "taylor", (Xtr[calib], ytr[calib]), groups=groups)
        kept, _ = search_keep(model, scores, groups, budget, shape)
        pruned = apply_decision(model, PruningDecision(kept, widths, shape), groups=groups)
        records.append(finish("(b) taylor+search", budget, pruned, t0, train_epochs, {}))
        # (a) magnitude + uniform ratio
        t0 = time.time()
        pruned, ratio = _smallest_ratio(
            lambda r: Pruner(scorer="magnitude", ratio=r, decision="uniform", input_shape=shape).fit(model).transform(),
            limit)
        records.append(finish("(a) magnitude+uniform", budget, pruned, t0, train_epochs, {"ratio": ratio}))
        # (d) Torch-Pruning head pruning
        t0 = time.time()
        try:
            pruned, ratio = _smallest_ratio(lambda r: _tp_prune(model, r), limit)
            records.append(finish("(d) torch-pruning", budget, pruned, t0, train_epochs, {"ratio": ratio}))
        except Exception as exc:  # recorded, not hidden: the baseline's failure is a result
            error = f"{type(exc).__name__}: {exc}"
            records.append({"method": "(d) torch-pruning", "budget_kept": budget, "error": error})
    return records


def summary(records: list[dict], args, header: str) -> str:
    lines = [header, "", "# GOHSP on the MNIST ViT", "",
             f"Reference ViT `{args.model}`; accuracy on the MNIST test fold (2,000 images of the official test "
             "set, held out); training on the 6,000-image train fold. One run, seed 0. Training budget after "
             f"pruning starts: {args.finetune_epochs + args.admm_iterations * args.admm_epochs} epochs for every "
             f"method (GOHSP: {args.admm_iterations} ADMM iterations x {args.admm_epochs} epoch + "
             f"{args.finetune_epochs} fine-tuning epochs; rho {args.rho} x{args.rho_growth} per iteration), all "
             "fine-tuning distilled from the unpruned model (Adam, lr 1e-3, batch 64), single-threaded.", "",
             "| reduction | method | params after | acc. before | acc. pruned | acc. after | delta (points) "
             "| heads per block | MLP per block | s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        if "error" in r:
            lines.append(f"| {1 - r['budget_kept']:.0%} | {r['method']} | error: {r['error']} | | | | | | | |")
            continue
        delta = 100 * (r["accuracy_after"] - r["accuracy_before"])
        share = r["params_after"] / r["params_before"]
        lines.append(
            f"| {r['reduction']:.0%} | {r['method']} | {r['params_after']} ({share:.1%}) "
            f"| {r['accuracy_before']:.4f} | {r['accuracy_pruned']:.4f} | {r['accuracy_after']:.4f} | {delta:+.2f} "
            f"| {r['heads_kept']} | {r['mlp_widths']} | {r['seconds']} |")
    lines += ["", "The uniform-ratio methods (a) and (d) remove the same fraction of heads in every block, and heads "
              "come four to a block, so the smallest ratio that meets the budget can overshoot it (30%: they keep "
              "63.4% of the parameters, not 70%)."]
    lines.append("")
    for budget in sorted({r["budget_kept"] for r in records}, reverse=True):
        rows = [r for r in records if r["budget_kept"] == budget and "error" not in r]
        if rows:
            best = max(rows, key=lambda r: r["accuracy_after"])
            lines.append(f"- {1 - budget:.0%} fewer parameters: best after fine-tuning is {best['method']} "
                         f"({best['accuracy_after']:.4f}).")
    pairs = [("gohsp", "gohsp, rec. budgets"), ("(c) graph+search", "(c) graph+rec. budgets")]
    lines += ["", "Per-layer budgets from the reconstruction error curves vs the paper's search on the scores "
              "(points; acc. pruned = before fine-tuning, after ADMM for gohsp; acc. after = after it):", ""]
    for budget in sorted({r["budget_kept"] for r in records}, reverse=True):
        for base, rec in pairs:
            a = next((r for r in records if r["budget_kept"] == budget and r["method"] == base and "error" not in r),
                     None)
            b = next((r for r in records if r["budget_kept"] == budget and r["method"] == rec and "error" not in r),
                     None)
            if a and b:
                lines.append(f"- {1 - budget:.0%}, {rec} vs {base}: pruned "
                             f"{100 * (b['accuracy_pruned'] - a['accuracy_pruned']):+.2f}, after "
                             f"{100 * (b['accuracy_after'] - a['accuracy_after']):+.2f}")
    gohsp = [r for r in records if r["method"] == "gohsp"]
    lines += ["", "Targets of the issue:", ""]
    at40 = [r for r in gohsp if abs(r["budget_kept"] - 0.6) < 1e-9]
    if at40:
        loss = 100 * (at40[0]["accuracy_before"] - at40[0]["accuracy_after"])
        lines.append(f"- 40% fewer parameters with <= 0.3 points accuracy loss: {'met' if loss <= 0.3 else 'missed'} "
                     f"(GOHSP loses {loss:+.2f} points; negative = gain).")
    at50 = [r for r in records if abs(r["budget_kept"] - 0.5) < 1e-9 and "error" not in r]
    if at50 and any(r["method"] == "gohsp" for r in at50):
        g = next(r for r in at50 if r["method"] == "gohsp")
        others = [r for r in at50 if r["method"] not in ("gohsp", "gohsp, rec. budgets", "(c) graph+rec. budgets")]
        ahead = all(g["accuracy_after"] > r["accuracy_after"] for r in others)
        margin = min((g["accuracy_after"] - r["accuracy_after"]) * 100 for r in others) if others else float("nan")
        lines.append(f"- GOHSP ahead of every baseline at 50%: {'yes' if ahead else 'no'} "
                     f"(smallest margin {margin:+.2f} points).")
    if records:
        acc = records[0].get("accuracy_before", 0.94)
        se = 100 * float(np.sqrt(acc * (1 - acc) / 2000))
        lines.append(f"- One run on 2,000 test images: the binomial standard error of one accuracy is about {se:.2f} "
                     "points, so differences below about 1 point between methods are within noise.")
    if gohsp:
        lines += ["", "GOHSP ADMM residuals (primal ||W - Z||, dual rho ||Z - Z_prev||) per iteration:", ""]
        for r in gohsp:
            hist = ", ".join(f"{h['primal_residual']:.2f}/{h['dual_residual']:.2f}" for h in r["admm"])
            lines.append(f"- {r['reduction']:.0%}: {hist}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="instances/vit/mnist_vit.pt")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.7, 0.6, 0.5])
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--admm-iterations", type=int, default=3)
    parser.add_argument("--admm-epochs", type=int, default=1)
    parser.add_argument("--rho", type=float, default=0.1)
    parser.add_argument("--rho-growth", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("results/gohsp_vit"))
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args(argv)
    prov = start_run(args.out, script_command(None if argv is None else [__file__, *argv]),
                     allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    records = run(args)
    with open(args.out / "records.jsonl", "w") as fh:
        for r in records:
            fh.write(json.dumps(r) + "\n")
    (args.out / "summary.md").write_text(summary(records, args, prov.header()))


if __name__ == "__main__":
    main()
