"""Block-to-systolic co-design: SCALE-Sim agreement of the cycle model; block pruning under cycle budgets on MNIST.

Part 1 (``--part scalesim``): SCALE-Sim 3.0.0 needs numpy<2, so this script
makes its own virtual environment (``--scalesim-venv``, default
``/tmp/optprune-scalesim-venv``; ``pip install scalesim 'numpy<2'``) and runs
itself there as a worker (``--worker``, which imports nothing of optprune) on
a sweep of GEMM shapes x array sizes x the three dataflows, with SRAMs and
bandwidth large enough that there are no stalls. Each "Total Cycles" is
compared with :func:`optprune.systolic.compute_cycles`; the per-layer time of
both is recorded. ``--write-test-data`` also writes the measured cycles to
``tests/data/scalesim_cycles.json`` (the test suite checks the model against
them without installing anything).

Part 2 (``--part mnist``): the VNN-COMP 2021 mnistfc nets 256x2 and 256x4
(shared data), batch 1, arrays 8/16/32/64 (square), dataflows ws/os, cycle
budgets 90/80/70/60% of the dense cycles. Methods at equal cycle budget:
``exact`` (block-selection MIP, HiGHS), ``greedy`` (HALP-style ratio
greedy), ``unstructured`` (global per-weight magnitude pruning made sparse
enough that its all-zero blocks meet the budget). Block scores: Taylor on 512
images of the MNIST ``train`` fold. Each pruned net is fine-tuned
``--finetune-epochs`` epochs (Adam, lr 1e-3, mask held) on the ``train`` fold
(6,000 images of the MNIST test set: the training set is not available);
accuracy on the held-out ``test`` fold (2,000 images). Also: every installed
backend on one selection instance (same optimum?), multi-array assignment
(MIP, CP-SAT, LPT gap) and the Pareto front (cycles, accuracy) over arrays.

Run: ``.venv/bin/python benchmarks/systolic_codesign.py [--part all|scalesim|mnist] [--quick] [--allow-dirty]``.
Writes ``OUT/records.jsonl`` and ``OUT/summary.md`` (provenance header first)
under ``results/systolic_codesign`` by default; one command (``--part all``)
makes the whole folder. The magnitude-score variant has its own folder:
``--part mnist --scorer magnitude --normalize mean --skip-extras --out results/systolic_codesign_magnitude``.
The reconstruction objective (issue 24: exact allocation vs greedy on the layer-output reconstruction error
with least-squares re-fit, :mod:`optprune.systolic._reconstruct`):
``--part mnist --objective reconstruction --seeds 3 --out results/systolic_codesign_reconstruction``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from _scalesim import config_text, ensure_venv, report_rows, run_gemm

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- SCALE-Sim worker (runs in the side venv)

SWEEP_SHAPES = [(1, 784, 256), (1, 256, 10), (5, 10, 7), (33, 17, 9), (64, 64, 64), (100, 300, 50),
                (49, 27, 16), (128, 96, 40)]
SWEEP_ARRAYS = [(4, 4), (8, 8), (16, 8), (32, 32)]
DATAFLOWS = ("ws", "os", "is")



def worker(cases_json: str, work: str) -> None:
    """Run SCALE-Sim on every case ``[M, K, N, R, C, df]``; print one JSON list of results."""
    out = []
    for i, (M, K, N, R, C, df) in enumerate(json.loads(cases_json)):
        report, seconds = run_gemm(os.path.join(work, f"case{i}"), M, K, N, config_text(R, C, df))
        values = report_rows(report, "COMPUTE_REPORT")[1]
        out.append({"M": M, "K": K, "N": N, "R": R, "C": C, "dataflow": df, "total_cycles": int(values[2]),
                    "stall_cycles": int(values[3]), "seconds": seconds})
    print(json.dumps(out))


def scalesim_part(args, records: list[dict]) -> list[str]:
    import numpy as np

    from optprune.systolic import ArraySpec, compute_cycles

    py = ensure_venv(Path(args.scalesim_venv))
    shapes = SWEEP_SHAPES[:4] if args.quick else SWEEP_SHAPES
    cases = [[M, K, N, R, C, df] for (M, K, N) in shapes for (R, C) in SWEEP_ARRAYS for df in DATAFLOWS]
    work = Path("/tmp/optprune-scalesim-work")
    work.mkdir(exist_ok=True)
    proc = subprocess.run([str(py), __file__, "--worker", json.dumps(cases), str(work)], capture_output=True,
                          text=True, check=True)
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    rows, equal = [], 0
    for m in measured:
        spec = ArraySpec(m["R"], m["C"], m["dataflow"])
        g = np.array([[m["M"], m["K"], m["N"]]])
        reps = 2000
        start = time.perf_counter()
        for _ in range(reps):
            ours = int(compute_cycles(g, spec)[0])
        ours_s = (time.perf_counter() - start) / reps
        equal += ours == m["total_cycles"]
        row = {**m, "ours": ours, "ours_seconds": ours_s, "ratio": m["seconds"] / ours_s, "part": "scalesim"}
        rows.append(row)
        records.append(row)
    # the vectorised model on all cases in one call
    start = time.perf_counter()
    for (R, C) in SWEEP_ARRAYS:
        for df in DATAFLOWS:
            compute_cycles(np.array(shapes), ArraySpec(R, C, df))
    vec_s = (time.perf_counter() - start) / len(cases)
    if args.write_test_data:
        path = ROOT / "tests" / "data" / "scalesim_cycles.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps({"scalesim": "3.0.0", "note": "Total Cycles (no stalls: large SRAM and "
                                    "bandwidth), written by benchmarks/systolic_codesign.py --write-test-data",
                                    "cases": [{k: r[k] for k in ("M", "K", "N", "R", "C", "dataflow",
                                                                 "total_cycles", "stall_cycles")} for r in rows]},
                                   indent=1) + "\n")
    sims = np.array([r["seconds"] for r in rows])
    ratios = np.array([r["ratio"] for r in rows])
    lines = [
        "## SCALE-Sim 3.0.0 agreement (compute cycles)",
        "",
        f"{equal} of {len(rows)} cases equal exactly (shapes {len(shapes)} x arrays {len(SWEEP_ARRAYS)} x "
        f"dataflows {len(DATAFLOWS)}; stall cycles reported by SCALE-Sim: {sum(r['stall_cycles'] for r in rows)}).",
        "",
        "| M | K | N | array | df | SCALE-Sim | ours | equal | SCALE-Sim s | ours µs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['M']} | {r['K']} | {r['N']} | {r['R']}x{r['C']} | {r['dataflow']} | {r['total_cycles']} | "
              f"{r['ours']} | {'yes' if r['ours'] == r['total_cycles'] else 'NO'} | {r['seconds']:.3f} | "
              f"{r['ours_seconds'] * 1e6:.1f} |" for r in rows]
    lines += ["", f"Speed (per layer): SCALE-Sim median {np.median(sims):.3f} s; our closed form median "
              f"{np.median([r['ours_seconds'] for r in rows]) * 1e6:.1f} µs per single-layer call; ratio median "
              f"{np.median(ratios):,.0f}x, min {ratios.min():,.0f}x; vectorised over {len(shapes)} layers "
              f"{vec_s * 1e6:.2f} µs per layer ({np.median(sims) / vec_s:,.0f}x).", ""]
    return lines


# --------------------------------------------------------------------------- MNIST part


def mnist_objective_part(args, records: list[dict], out: Path) -> list[str]:
    """The 64 settings with a registered block objective other than ``score``: exact vs greedy on that objective.

    The objective is built once per (net, array) (the reconstruction curves depend on the block size, not on the
    dataflow) and shared by both dataflows; each selection is applied with the objective's :meth:`apply` (re-fitted
    weights) and fine-tuned with ``--seeds`` seeds (a setting where exact and greedy keep the same blocks has the
    same fine-tuned model for a seed: it is fine-tuned once and recorded for both).
    """
    from dataclasses import replace

    import numpy as np
    import torch

    from optprune.data import data_dir, load_dataset
    from optprune.io import load_torch_model
    from optprune.systolic import BLOCK_OBJECTIVES, ArraySpec, block_layout, finetune_masked, gemms_from_torch
    from optprune.training import accuracy

    torch.set_num_threads(max(1, args.threads))
    folder = data_dir() / "vnncomp2021-mnistfc"
    X_train, y_train = load_dataset("mnist", "train")
    X_test, y_test = load_dataset("mnist", "test")
    X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    # The re-fit needs more calibration rows than a layer has inputs (784): with 512 images G is singular and the
    # least-squares re-fit fits the calibration set (measured: 95.5% vs 97.95% right after pruning, 256x2, 32x32 ws,
    # 80%). Only the Gram is kept, so the whole train fold (6,000 images) costs no memory.
    n_calib = args.calibration_size or (len(X_train) if args.objective == "reconstruction" else 512)
    calib = np.random.default_rng(0).choice(len(X_train), min(n_calib, len(X_train)), replace=False)
    nets = ["256x2"] if args.quick else ["256x2", "256x4"]
    arrays = [8, 32] if args.quick else [8, 16, 32, 64]
    budgets = [0.8, 0.6] if args.quick else [0.9, 0.8, 0.7, 0.6]
    seeds = list(range(args.seeds))
    done = {(r["net"], r["array"], r["dataflow"], r["budget"], r["method"]) for r in records
            if r.get("part") == "mnist"}
    rows = [r for r in records if r.get("part") == "mnist"]
    for net in nets:
        model = load_torch_model(folder / f"mnist-net_{net}.onnx")
        acc0 = accuracy(model, X_test, y_test)
        gemms = gemms_from_torch(model, batch=1)
        shapes, names = [g.shape for g in gemms], [g.name for g in gemms]
        for size in arrays:
            if all((net, size, df, b, "exact") in done for df in ("ws", "os") for b in budgets):
                continue
            t0 = time.perf_counter()
            base = BLOCK_OBJECTIVES.get(args.objective)(model, block_layout(shapes, ArraySpec(size, size, "ws"), names),
                                                        (X_train[calib], y_train[calib]))
            build_s = time.perf_counter() - t0
            print(f"{net} {size}x{size}: objective built in {build_s:.1f} s", file=sys.stderr)
            for df in ("ws", "os"):
                layout = block_layout(shapes, ArraySpec(size, size, df), names)
                obj = base
                if hasattr(base, "curves"):  # the curves are the block size's; the costs are the dataflow's
                    obj = copy.copy(base)
                    obj.layout = layout
                    obj.curves = replace(base.curves, layout=layout)
                dense = int(layout.dense_cycles().sum())
                for budget in budgets:
                    if (net, size, df, budget, "exact") in done:
                        continue
                    t0 = time.perf_counter()
                    exact = obj.exact(budget, solver="highs", time_limit=60)
                    t_exact = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    greedy = obj.greedy(budget)
                    t_greedy = time.perf_counter() - t0
                    same = bool(np.array_equal(exact.keep, greedy.keep))
                    accs: dict[str, tuple[float, list[float]]] = {}
                    for name, sel in (("exact", exact), ("greedy", greedy)):
                        if name == "greedy" and same:
                            accs[name] = accs["exact"]
                            continue
                        pruned, masks = obj.apply(sel)
                        acc_p = accuracy(pruned, X_test, y_test)
                        state = {k: v.clone() for k, v in pruned.state_dict().items()}
                        tuned = []
                        for seed in seeds:
                            pruned.load_state_dict(state)
                            finetune_masked(pruned, masks, (X_train, y_train), args.finetune_epochs, lr=1e-3, seed=seed)
                            tuned.append(accuracy(pruned, X_test, y_test))
                        accs[name] = (acc_p, tuned)
                    for name, sel, secs in (("exact", exact, t_exact), ("greedy", greedy, t_greedy)):
                        acc_p, tuned = accs[name]
                        row = {"part": "mnist", "objective": args.objective, "net": net, "array": size,
                               "dataflow": df, "budget": budget, "method": name, "dense_cycles": dense,
                               "cycles": sel.cycles, "speedup": dense / max(1, sel.cycles), "score": sel.score,
                               "blocks_kept": int(sel.keep.sum()), "blocks": layout.n_blocks, "acc_dense": acc0,
                               "acc_pruned": acc_p, "acc_finetuned": float(np.mean(tuned)),
                               "acc_finetuned_seeds": tuned, "same_selection": same, "select_s": secs,
                               "objective_build_s": build_s, "status": sel.status, "selector": sel.method,
                               **{k: v for k, v in sel.extra.items() if k != "objective"}}
                        rows.append(row)
                        records.append(row)
                    print(f"{net} {size}x{size} {df} {budget}: exact {rows[-2]['acc_finetuned']:.4f} "
                          f"greedy {rows[-1]['acc_finetuned']:.4f} same {same} gap {exact.extra.get('gap')}",
                          file=sys.stderr)
                    _write(out, records)
    return _objective_tables(rows, nets, args)


def _objective_tables(rows: list[dict], nets: list[str], args) -> list[str]:
    import numpy as np

    key = lambda r: (r["net"], r["array"], r["dataflow"], r["budget"])
    grouped: dict = {}
    for r in rows:
        grouped.setdefault(key(r), {})[r["method"]] = r
    lines = [f"## Exact vs greedy on the {args.objective} objective (test fold; fine-tuned {args.finetune_epochs} "
             f"epoch(s), mask held, mean over {args.seeds} fine-tuning seed(s))", "",
             "Objective: per output column-block error curves (backward elimination with least-squares re-fit of the "
             "kept weights and the bias, calibration on the train fold), each layer's error divided by its output "
             "energy; exact = the allocation MILP over the curves (HiGHS, started from greedy, 60 s limit); "
             "greedy = least value lost per cycle saved, on the same curves. Both selections are installed with "
             "their re-fitted weights.", "",
             "Cells: fine-tuned accuracy % (right after pruning and re-fit %); value = summed explained fraction of "
             "each layer's output energy (higher is better); error = summed lost fraction.", "",
             "| net | array | df | budget | exact | greedy | same blocks | value exact / greedy | error exact / greedy "
             "| MIP gap | cycles exact/greedy |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for k, by in grouped.items():
        e, g = by["exact"], by["greedy"]
        gap = e.get("gap")
        lines.append(
            f"| {k[0]} | {k[1]}x{k[1]} | {k[2]} | {k[3]:.0%} | {100 * e['acc_finetuned']:.2f} "
            f"({100 * e['acc_pruned']:.2f}) | {100 * g['acc_finetuned']:.2f} ({100 * g['acc_pruned']:.2f}) | "
            f"{'yes' if e['same_selection'] else 'no'} | {e['score']:.6f} / {g['score']:.6f} | "
            f"{e.get('error', float('nan')):.6f} / {g.get('error', float('nan')):.6f} | "
            f"{'-' if gap is None else f'{gap:.1e}'} | {e['cycles'] / e['dense_cycles']:.1%}/"
            f"{g['cycles'] / g['dense_cycles']:.1%} |")
    n = len(grouped)
    diffs = np.array([by["exact"]["acc_finetuned"] - by["greedy"]["acc_finetuned"] for by in grouped.values()])
    score_wins = sum(by["exact"]["score"] >= by["greedy"]["score"] - 1e-9 * max(1.0, abs(by["greedy"]["score"]))
                     for by in grouped.values())
    same = sum(by["exact"]["same_selection"] for by in grouped.values())
    differ = [by for by in grouped.values() if not by["exact"]["same_selection"]]
    lines += ["", f"Exact objective value >= greedy's in {score_wins} of {n} settings; the two keep the same blocks in "
              f"{same} of {n}.", "",
              f"**Exact >= greedy after fine-tuning in {int(np.sum(diffs >= -1e-12))} of {n} settings** (ties "
              f"included: a tie is the same model); mean fine-tuned accuracy exact minus greedy "
              f"{100 * diffs.mean():+.3f} points."]
    if differ:
        dd = np.array([by["exact"]["acc_finetuned"] - by["greedy"]["acc_finetuned"] for by in differ])
        per_seed = np.array([np.subtract(by["exact"]["acc_finetuned_seeds"], by["greedy"]["acc_finetuned_seeds"])
                             for by in differ])
        se = per_seed.std(axis=1, ddof=1) / np.sqrt(per_seed.shape[1]) if per_seed.shape[1] > 1 else None
        lines += ["", f"Where the selections differ ({len(differ)} settings): exact >= greedy in "
                  f"{int(np.sum(dd >= -1e-12))}, mean difference {100 * dd.mean():+.3f} points"
                  + ("" if se is None else f"; per-setting standard error over the {per_seed.shape[1]} seeds "
                     f"median {100 * np.median(se):.3f} points; settings where |difference| > 2 standard errors: "
                     f"{int(np.sum(np.abs(dd) > 2 * se))}") + "."]
    lines += ["", "## Speed-up at <= 1.5 points accuracy loss (exact selection)", "",
              "| net | array | df | best speed-up | budget | accuracy loss |", "|---|---|---|---|---|---|"]
    for net in nets:
        for (n_, a, df) in sorted({(r["net"], r["array"], r["dataflow"]) for r in rows if r["net"] == net}):
            cands = [r for r in rows if (r["net"], r["array"], r["dataflow"]) == (n_, a, df)
                     and r["method"] == "exact" and r["acc_dense"] - r["acc_finetuned"] <= 0.015]
            if cands:
                best = max(cands, key=lambda r: r["speedup"])
                lines.append(f"| {n_} | {a}x{a} | {df} | {best['speedup']:.2f}x | {best['budget']:.0%} | "
                             f"{100 * (best['acc_dense'] - best['acc_finetuned']):.2f} |")
            else:
                lines.append(f"| {n_} | {a}x{a} | {df} | none within 1.5 points | | |")
    lines.append("")
    return lines


def mnist_part(args, records: list[dict], out: Path) -> list[str]:
    import numpy as np
    import torch

    from optprune.data import data_dir, load_dataset
    from optprune.io import load_torch_model
    from optprune.solvers import list_backends
    from optprune.systolic import (
        ArraySpec,
        apply_blocks,
        apply_weight_masks,
        assign_tiles,
        block_layout,
        block_scores,
        finetune_masked,
        gemms_from_torch,
        greedy_blocks,
        lpt_assign,
        operand_weights,
        select_blocks,
        tile_durations,
        unstructured_at_cycles,
        weight_importance,
    )
    from optprune.training import accuracy

    torch.set_num_threads(max(1, args.threads))
    folder = data_dir() / "vnncomp2021-mnistfc"
    X_train, y_train = load_dataset("mnist", "train")
    X_test, y_test = load_dataset("mnist", "test")
    X_train, X_test = X_train.reshape(len(X_train), -1), X_test.reshape(len(X_test), -1)
    rng = np.random.default_rng(0)
    calib = rng.choice(len(X_train), 512, replace=False)
    nets = ["256x2"] if args.quick else ["256x2", "256x4"]
    arrays = [8, 32] if args.quick else [8, 16, 32, 64]
    budgets = [0.8, 0.6] if args.quick else [0.9, 0.8, 0.7, 0.6]
    dataflows = ["ws", "os"]
    lines = []
    rows = []
    for net in nets:
        model = load_torch_model(folder / f"mnist-net_{net}.onnx")
        acc0 = accuracy(model, X_test, y_test)
        gemms = gemms_from_torch(model, batch=1)
        shapes = [g.shape for g in gemms]
        imp = weight_importance(model, args.scorer, (X_train[calib], y_train[calib]))
        if args.normalize == "mean":  # each layer's importances divided by their mean: layers compare on one scale
            imp = [i / max(float(i.mean()), 1e-300) for i in imp]
        weights = operand_weights(model)
        # the same fine-tuning for the dense net (what fine-tuning alone gives)
        for size in arrays:
            for df in dataflows:
                layout = block_layout(shapes, ArraySpec(size, size, df), [g.name for g in gemms])
                scores = block_scores(layout, imp)
                dense = int(layout.dense_cycles().sum())
                for budget in budgets:
                    t0 = time.perf_counter()
                    exact = select_blocks(layout, scores, budget, solver="highs", time_limit=60)
                    t_exact = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    greedy = greedy_blocks(layout, scores, budget)
                    t_greedy = time.perf_counter() - t0
                    masks_u, unstr = unstructured_at_cycles(layout, weights, budget)
                    for name, sel, secs in (("exact", exact, t_exact), ("greedy", greedy, t_greedy),
                                            ("unstructured", unstr, 0.0)):
                        if name == "unstructured":
                            pruned, masks = apply_weight_masks(model, masks_u)
                        else:
                            pruned, masks = apply_blocks(model, layout, sel.keep)
                        acc_p = accuracy(pruned, X_test, y_test)
                        finetune_masked(pruned, masks, (X_train, y_train), args.finetune_epochs, lr=1e-3, seed=0)
                        acc_f = accuracy(pruned, X_test, y_test)
                        row = {"part": "mnist", "net": net, "array": size, "dataflow": df, "budget": budget,
                               "method": name, "dense_cycles": dense, "cycles": sel.cycles,
                               "speedup": dense / max(1, sel.cycles), "score": sel.score,
                               "blocks_kept": int(sel.keep.sum()), "blocks": layout.n_blocks,
                               "acc_dense": acc0, "acc_pruned": acc_p, "acc_finetuned": acc_f,
                               "select_s": secs, "status": sel.status, **sel.extra}
                        rows.append(row)
                        records.append(row)
                    print(f"{net} {size}x{size} {df} {budget}: exact {rows[-3]['acc_finetuned']:.4f} "
                          f"greedy {rows[-2]['acc_finetuned']:.4f} unstr {rows[-1]['acc_finetuned']:.4f}",
                          file=sys.stderr)
        _write(out, records)
    lines += _mnist_tables(rows, nets, args.scorer + ("" if args.normalize == "none" else ", layer-mean normalised"))
    if args.skip_extras:
        return lines
    # every backend on one selection instance
    model = load_torch_model(folder / "mnist-net_256x2.onnx")
    gemms = gemms_from_torch(model, batch=1)
    layout = block_layout([g.shape for g in gemms], ArraySpec(32, 32, "ws"), [g.name for g in gemms])
    scores = block_scores(layout, weight_importance(model, "taylor", (X_train[calib], y_train[calib])))
    lines += ["## Every backend on one selection (256x2, 32x32 ws, budget 70%, Taylor block scores)", "",
              "| backend | status | retained score | cycles | time s |", "|---|---|---|---|---|"]
    for b in list_backends():
        if not b["available"]:
            continue
        try:
            sel = select_blocks(layout, scores, 0.7, solver=b["name"], time_limit=60)
            lines.append(f"| {b['name']} | {sel.status} | {sel.score:.6f} | {sel.cycles} | {sel.time_s:.2f} |")
            records.append({"part": "backends", "backend": b["name"], **sel.to_dict()})
        except Exception as exc:
            lines.append(f"| {b['name']} | error: {type(exc).__name__}: {str(exc)[:80]} | | | |")
    g = greedy_blocks(layout, scores, 0.7)
    lines += [f"| greedy | - | {g.score:.6f} | {g.cycles} | - |", ""]
    # multi-array assignment
    lines += ["## Multi-array assignment (tiles of each layer's outputs; layers in order)", "",
              "| net | arrays | df | MIP (highs) | bound | CP-SAT | LPT | LPT gap | best single array |",
              "|---|---|---|---|---|---|---|---|---|"]
    for net in nets:
        model = load_torch_model(folder / f"mnist-net_{net}.onnx")
        shapes = [g.shape for g in gemms_from_torch(model, batch=8)]
        for combo in ([32, 16], [32, 16, 8], [16, 16, 8, 8]):
            for df in ("ws", "os"):
                specs = [ArraySpec(s, s, df) for s in combo]
                d, layer, _ = tile_durations(shapes, specs, tile=8)
                mip = assign_tiles(d, layer, "highs", time_limit=60)
                cp = assign_tiles(d, layer, "cpsat", time_limit=60)
                lpt = lpt_assign(d, layer)
                gap = (lpt.makespan - mip.makespan) / mip.makespan
                single = int(d.sum(axis=0).min())
                lines.append(f"| {net} (batch 8) | {'+'.join(f'{s}x{s}' for s in combo)} | {df} | {mip.makespan} "
                             f"({mip.status}) | {mip.bound:.0f} | {cp.makespan} ({cp.status}) | {lpt.makespan} | "
                             f"{gap:.2%} | {single} |")
                records.append({"part": "assign", "net": net, "arrays": combo, "dataflow": df, "mip": mip.to_dict(),
                                "cpsat": cp.to_dict(), "lpt": lpt.to_dict(), "lpt_gap": gap, "single": single})
    lines.append("")
    return lines


def _mnist_tables(rows: list[dict], nets: list[str], scorer: str) -> list[str]:
    import numpy as np

    lines = [f"## Accuracy at equal cycle budget ({scorer} block scores; test fold, after fine-tuning with the "
             "mask held)", "",
             "Cells: fine-tuned accuracy % (accuracy right after pruning %); cycles as % of dense.", "",
             "| net | array | df | budget | exact | greedy | unstructured (weights kept) | cycles exact/greedy/unstr |",
             "|---|---|---|---|---|---|---|---|"]
    key = lambda r: (r["net"], r["array"], r["dataflow"], r["budget"])
    grouped: dict = {}
    for r in rows:
        grouped.setdefault(key(r), {})[r["method"]] = r
    for k, by in grouped.items():
        e, g, u = by["exact"], by["greedy"], by["unstructured"]
        if u["weights_kept"] == 0:  # no global magnitude threshold meets the budget with every layer running
            unstr, ucyc = "none meets it", "-"
        else:
            unstr = (f"{100 * u['acc_finetuned']:.2f} ({100 * u['acc_pruned']:.2f}; "
                     f"{u['weights_kept'] / u['weights']:.1%})")
            ucyc = f"{u['cycles'] / u['dense_cycles']:.1%}"
        lines.append(
            f"| {k[0]} | {k[1]}x{k[1]} | {k[2]} | {k[3]:.0%} | {100 * e['acc_finetuned']:.2f} "
            f"({100 * e['acc_pruned']:.2f}) | {100 * g['acc_finetuned']:.2f} ({100 * g['acc_pruned']:.2f}) | "
            f"{unstr} | {e['cycles'] / e['dense_cycles']:.1%}/{g['cycles'] / g['dense_cycles']:.1%}/{ucyc} |")
    # HiGHS stops at its default relative gap 1e-4, so "exact" is optimal within that gap
    wins = sum(by["exact"]["score"] >= by["greedy"]["score"] * (1 - 1e-4) - 1e-9 for by in grouped.values())
    better = np.mean([by["exact"]["acc_finetuned"] - by["greedy"]["acc_finetuned"] for by in grouped.values()])
    lines += ["", f"Exact retained score >= greedy's (within the MIP's relative gap 1e-4) in {wins} of {len(grouped)} "
              "settings; mean fine-tuned accuracy "
              f"exact minus greedy: {100 * better:+.2f} points.", ""]
    # Palacios in miniature
    lines += ["## Speed-up at <= 1.5 points accuracy loss (exact selection; Palacios et al. report up to 26% "
              "system speed-up at 1.4 points WER)", "", "| net | array | df | best speed-up | budget | accuracy loss |",
              "|---|---|---|---|---|---|"]
    for net in nets:
        for (n, a, df) in sorted({(r["net"], r["array"], r["dataflow"]) for r in rows if r["net"] == net}):
            cands = [r for r in rows if (r["net"], r["array"], r["dataflow"]) == (n, a, df) and r["method"] == "exact"
                     and r["acc_dense"] - r["acc_finetuned"] <= 0.015]
            if cands:
                best = max(cands, key=lambda r: r["speedup"])
                lines.append(f"| {n} | {a}x{a} | {df} | {best['speedup']:.2f}x | {best['budget']:.0%} | "
                             f"{100 * (best['acc_dense'] - best['acc_finetuned']):.2f} |")
            else:
                lines.append(f"| {n} | {a}x{a} | {df} | none within 1.5 points | | |")
    # Pareto front over arrays
    lines += ["", "## Co-design Pareto front (absolute cycles at batch 1 vs accuracy; exact selection, every "
              "array, dataflow and budget)", ""]
    for net in nets:
        pts = sorted([r for r in rows if r["net"] == net and r["method"] == "exact"], key=lambda r: (r["cycles"],
                                                                                                      -r["acc_finetuned"]))
        front, best_acc = [], -1.0
        for r in pts:
            if r["acc_finetuned"] > best_acc:
                front.append(r)
                best_acc = r["acc_finetuned"]
        lines += [f"{net}:", "", "| cycles | accuracy % | array | df | budget |", "|---|---|---|---|---|"]
        lines += [f"| {r['cycles']} | {100 * r['acc_finetuned']:.2f} | {r['array']}x{r['array']} | {r['dataflow']} | "
                  f"{r['budget']:.0%} |" for r in front]
        lines.append("")
    return lines


def _write(out: Path, records: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "records.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["all", "scalesim", "mnist"], default="all")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--finetune-epochs", type=int, default=1)
    from optprune.scoring import WEIGHT_SCORERS

    parser.add_argument("--scorer", default="taylor", choices=WEIGHT_SCORERS.names(), help="per-weight block scorer")
    parser.add_argument("--normalize", choices=["none", "mean"], default="none",
                        help="divide each layer's per-weight importances by their mean before summing per block")
    from optprune.systolic import BLOCK_OBJECTIVES

    parser.add_argument("--objective", default="score", choices=BLOCK_OBJECTIVES.names(),
                        help="what the block selection optimises (score: summed per-weight scores; reconstruction: "
                        "layer-output reconstruction error with least-squares re-fit)")
    parser.add_argument("--seeds", type=int, default=1, help="fine-tuning seeds per selection (non-score objectives)")
    parser.add_argument("--calibration-size", type=int, default=None,
                        help="train-fold images for the objective (non-score objectives; default: 512 for score, the "
                        "whole train fold for reconstruction, whose re-fit needs more rows than a layer's inputs)")
    parser.add_argument("--resume", action="store_true", help="keep the records already in OUT and skip their "
                        "settings (non-score objectives)")
    parser.add_argument("--skip-extras", action="store_true", help="only the accuracy tables (no backends/assign)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scalesim-venv", default="/tmp/optprune-scalesim-venv")
    parser.add_argument("--write-test-data", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--allow-dirty", action="store_true",
                        help="write under results/ from a dirty working tree (stamped in the header)")
    args = parser.parse_args()
    from optprune.bench._provenance import start_run

    out = args.out or ROOT / "results" / ("systolic_codesign" + ("_quick" if args.quick else ""))
    run = start_run(out, allow_dirty=args.allow_dirty)
    records: list[dict] = []
    started = time.perf_counter()
    lines = ["# Block-to-systolic co-design", "", "(header)"]
    if args.part in ("all", "scalesim"):
        lines += scalesim_part(args, records)
        _write(out, records)
    if args.part in ("all", "mnist"):
        if args.objective == "score":
            lines += mnist_part(args, records, out)
        else:
            if args.resume and (out / "records.jsonl").exists():
                records += [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines() if x.strip()]
            lines += mnist_objective_part(args, records, out)
    lines += [f"Wall time: {time.perf_counter() - started:.0f} s.", ""]
    lines[2] = run.header()
    _write(out, records)
    (out / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
