"""Block pruning of the MNIST ViT on a systolic array, end to end: system cycles (compute + memory) vs accuracy.

Model: ``instances/vit/mnist_vit.pt`` (dim 48, 4 blocks x 4 heads of 12, MLP
96, 17 tokens). GEMMs at batch 1 (``M`` = 17 tokens): the prunable ones are
every block's ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``fc1``,
``fc2``; the fixed ones (run dense) the patch embedding (16 x 49 x 48), each
head's ``Q K^T`` (17 x 12 x 17) and ``A V`` (17 x 17 x 12), and the
classifier (1 x 48 x 10). System cycles = compute cycles
(:mod:`optprune.systolic._cycles`, pruned blocks skipped) + memory stalls
(:func:`optprune.systolic.pruned_memory`: a pruned block is neither read nor
fetched) of every GEMM, for two memory systems (``--memory``: SRAM kB per
operand and DRAM words/cycle). Speed-up = dense system cycles / pruned.

Selections at cycle budgets on the prunable layers' compute cycles
(``--budgets``), array ``--array`` with dataflows ws and os: ``exact`` and
``greedy`` on the reconstruction objective (least-squares re-fit installed;
calibration: the whole train fold), and ``taylor`` (exact knapsack on summed
Taylor scores, the score objective). Each pruned model is fine-tuned
``--finetune-epochs`` epoch(s) with the mask held, distilled from the dense
model (Adam, lr 1e-3, batch 64: the GOHSP benchmark's fine-tuning); accuracy
on the test fold. Reported: the largest system speed-up within 1.5 points of
the dense accuracy, per dataflow, memory system and method.

Run: ``.venv/bin/python benchmarks/systolic_vit.py [--allow-dirty]``; writes ``results/systolic_vit``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--array", type=int, default=8)
    parser.add_argument("--budgets", default="0.6,0.4")
    parser.add_argument("--dataflows", default="ws,os")
    parser.add_argument("--memory", default="64:10,8:1",
                        help="memory systems SRAM_KB:BANDWIDTH (kB per operand, DRAM words per cycle), comma-separated")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "systolic_vit")
    parser.add_argument("--allow-dirty", action="store_true")
    args = parser.parse_args()

    import numpy as np
    import torch

    from optprune.bench._provenance import start_run
    from optprune.data import load_dataset
    from optprune.pruning import attach_masks, finetune, remove_masks
    from optprune.systolic import (
        BLOCK_OBJECTIVES,
        ArraySpec,
        MemorySpec,
        block_layout,
        layer_memory,
        pruned_memory,
    )
    from optprune.vit import load_vit, vit_accuracy

    torch.set_num_threads(1)
    run = start_run(args.out, allow_dirty=args.allow_dirty)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model = load_vit(ROOT / "instances" / "vit" / "mnist_vit.pt")
    cfg = model.config
    shape = tuple(model.input_shape)
    X_train, y_train = load_dataset("mnist", "train")
    X_test, y_test = load_dataset("mnist", "test")
    X_train, X_test = X_train.reshape(-1, *shape), X_test.reshape(-1, *shape)
    acc0 = vit_accuracy(model, X_test, y_test)
    T = cfg.tokens
    layers, shapes = [], []
    for i, blk in enumerate(model.blocks):
        for name in ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.out_proj", "fc1", "fc2"):
            mod = blk.get_submodule(name)
            layers.append(f"blocks.{i}.{name}")
            shapes.append((T, mod.in_features, mod.out_features))
    g = cfg.image_size // cfg.patch
    fixed = [(g * g, cfg.channels * cfg.patch * cfg.patch, cfg.dim), (1, cfg.dim, cfg.classes)]
    for heads in cfg.heads:
        fixed += [(T, cfg.head_dim, T), (T, T, cfg.head_dim)] * heads
    memories = []
    for item in args.memory.split(","):
        kb, bw = item.split(":")
        memories.append(MemorySpec(float(kb), float(kb), float(kb), float(bw)))
    budgets = [float(b) for b in args.budgets.split(",")]
    records: list[dict] = []

    def system_cycles(layout, keep, mem) -> tuple[int, int, int]:
        """(system cycles, compute cycles, stall cycles) of prunable + fixed GEMMs."""
        p = pruned_memory(layout, keep, mem)
        f = layer_memory(fixed, layout.spec, mem)
        compute = int(p["compute_cycles"].sum() + f["compute_cycles"].sum())
        stalls = int(p["stall_cycles"].sum() + f["stall_cycles"].sum())
        return compute + stalls, compute, stalls

    def tune(pruned, masks) -> float:
        attach_masks(pruned, masks)
        try:
            finetune(pruned, (X_train, y_train), args.finetune_epochs, teacher=model, lr=1e-3, batch_size=64, seed=0,
                     progress=False)
        finally:
            remove_masks(pruned)
        return vit_accuracy(pruned, X_test, y_test)

    for df in args.dataflows.split(","):
        layout = block_layout(shapes, ArraySpec(args.array, args.array, df), layers)
        dense_keep = np.ones(layout.n_blocks, dtype=bool)
        t0 = time.perf_counter()
        rec = BLOCK_OBJECTIVES.get("reconstruction")(model, layout, (X_train, y_train), layers=layers)
        taylor = BLOCK_OBJECTIVES.get("score")(model, layout, (X_train[:512], y_train[:512]), scorer="taylor",
                                               layers=layers)
        print(f"{df}: objectives built in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for budget in budgets:
            done: dict[str, tuple] = {}
            for method, obj, pick in (("exact", rec, "exact"), ("greedy", rec, "greedy"), ("taylor", taylor, "exact")):
                sel = obj.exact(budget, time_limit=60) if pick == "exact" else obj.greedy(budget)
                if method == "greedy" and np.array_equal(sel.keep, done["exact"][0]):
                    acc_p, acc_f = done["exact"][1:]  # the same blocks and re-fit: the same fine-tuned model
                else:
                    pruned, masks = obj.apply(sel)
                    acc_p = vit_accuracy(pruned, X_test, y_test)
                    acc_f = tune(pruned, masks)
                done[method] = (sel.keep, acc_p, acc_f)
                row = {"dataflow": df, "array": args.array, "budget": budget, "method": method,
                       "blocks_kept": int(sel.keep.sum()), "blocks": layout.n_blocks, "acc_dense": acc0,
                       "acc_pruned": acc_p, "acc_finetuned": acc_f, "selection": sel.to_dict(),
                       "same_as_exact": bool(method != "exact" and np.array_equal(sel.keep, done["exact"][0]))}
                for mem in memories:
                    key = f"{mem.ifmap_kb:g}kB_bw{mem.bandwidth:g}"
                    dense_sys, dense_c, dense_s = system_cycles(layout, dense_keep, mem)
                    sys_c, comp_c, stall_c = system_cycles(layout, sel.keep, mem)
                    row[key] = {"dense_cycles": dense_sys, "dense_compute": dense_c, "dense_stalls": dense_s,
                                "cycles": sys_c, "compute": comp_c, "stalls": stall_c, "speedup": dense_sys / sys_c}
                records.append(row)
                print(f"{df} {budget} {method}: acc {acc_p:.4f} -> {acc_f:.4f} (dense {acc0:.4f}); "
                      + "; ".join(f"{k} {row[k]['speedup']:.3f}x" for k in row if "kB" in k), file=sys.stderr)
                with open(args.out / "records.jsonl", "w") as f:
                    f.writelines(json.dumps(r) + "\n" for r in records)
    keys = [f"{m.ifmap_kb:g}kB_bw{m.bandwidth:g}" for m in memories]
    lines = ["# Block pruning of the MNIST ViT on a systolic array: system cycles (compute + memory)", "",
             run.header(), "",
             f"Dense test accuracy {100 * acc0:.2f}%; array {args.array}x{args.array}; fine-tuning "
             f"{args.finetune_epochs} epoch(s), distilled, mask held. Memory systems: "
             + ", ".join(f"`{k}` (SRAM kB per operand, DRAM words/cycle)" for k in keys) + ".", "",
             "| df | budget | method | accuracy % (after pruning) | " + " | ".join(f"speed-up {k}" for k in keys)
             + " | stalls share (dense / pruned) |", "|---|---|---|---|" + "---|" * len(keys) + "---|"]
    for r in records:
        shares = "; ".join(f"{r[k]['dense_stalls'] / r[k]['dense_cycles']:.1%} / {r[k]['stalls'] / r[k]['cycles']:.1%}"
                           for k in keys)
        lines.append(f"| {r['dataflow']} | {r['budget']:.0%} | {r['method']} | {100 * r['acc_finetuned']:.2f} "
                     f"({100 * r['acc_pruned']:.2f}) | " + " | ".join(f"{r[k]['speedup']:.3f}x" for k in keys)
                     + f" | {shares} |")
    lines += ["", "## Largest system speed-up within 1.5 points of the dense accuracy", "",
              "| df | memory | exact | greedy | taylor |", "|---|---|---|---|---|"]
    for df in args.dataflows.split(","):
        for k in keys:
            cells = []
            for method in ("exact", "greedy", "taylor"):
                ok = [r for r in records if r["dataflow"] == df and r["method"] == method
                      and acc0 - r["acc_finetuned"] <= 0.015]
                best = max(ok, key=lambda r: r[k]["speedup"]) if ok else None
                loss = None if best is None else 100 * (acc0 - best["acc_finetuned"])
                cells.append("none" if best is None
                             else f"{best[k]['speedup']:.2f}x ({best['budget']:.0%}, -{loss:.2f})")
            lines.append(f"| {df} | {k} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall time: {time.perf_counter() - started:.0f} s.", ""]
    (args.out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
