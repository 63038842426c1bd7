"""``optprune systolic cycles|prune|assign``: the systolic-array cycle model, block pruning under a cycle budget, multi-array assignment."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from optprune.cli._output import JSON_HELP, emit, stderr_console
from optprune.cli._validate import FORCE_HELP, TRUST_PICKLE_HELP, check_number, check_output_files
from optprune.errors import InvalidParameterError
from optprune.scoring import WEIGHT_SCORERS

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

systolic_app = typer.Typer(
    name="systolic",
    help="Systolic-array co-design: compute cycles (SCALE-Sim's closed forms), block pruning, multi-array assignment.",
    no_args_is_help=True,
)
commands.add_typer(systolic_app, name="systolic")

NET_HELP = "An .onnx file, a torch model file (.pt, .pth), or (cycles, assign) a .json list of [M, K, N]."


def _objective_names() -> tuple[str, ...]:
    from optprune.systolic._objectives import BLOCK_OBJECTIVES

    return BLOCK_OBJECTIVES.names()


def _dataflow(value: str) -> str:
    from optprune.systolic import DATAFLOWS

    if value not in DATAFLOWS:
        raise InvalidParameterError(f"--dataflow must be one of {', '.join(DATAFLOWS)}; got {value!r}")
    return value


@systolic_app.command("cycles")
def cycles_command(
    network: Annotated[Path, typer.Argument(help=NET_HELP)],
    array: Annotated[str, typer.Option("--array", help="Array size ROWSxCOLS (e.g. 32x32) or N.")] = "32x32",
    dataflow: Annotated[str, typer.Option("--dataflow", help="ws, os or is.")] = "ws",
    batch: Annotated[int, typer.Option("--batch", help="Rows M of a Linear layer's GEMM (ignored for a .json list).")] = 1,
    sram_kb: Annotated[float | None, typer.Option(
        "--sram-kb", help="Memory term: SRAM kB per operand (IFMAP, filter, OFMAP); with --bandwidth.")] = None,
    bandwidth: Annotated[float | None, typer.Option(
        "--bandwidth", help="Memory term: DRAM words per cycle per operand port; with --sram-kb.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Per-layer GEMM shape, folds and compute cycles (SCALE-Sim 3.0.0's "Total Cycles" without stalls).

    With --sram-kb and --bandwidth also each layer's SRAM accesses (SCALE-Sim's counts), DRAM words and stall
    cycles (a double-buffered bandwidth model, optprune.systolic._memory).

    Cycle counts are exact Python integers; dimensions and array sides are integers in [1, 2**31 - 1].
    """
    from optprune.systolic import MAX_DIM, exact_cycles, fold_counts, load_gemms, parse_array

    spec = parse_array(array, _dataflow(dataflow))
    check_number("--batch", batch, low=1, high=MAX_DIM)
    gemms = load_gemms(network, batch, trust_pickle=trust_pickle)
    shapes = [g.shape for g in gemms]
    folds, per_fold = fold_counts(shapes, spec)
    cycles = exact_cycles(shapes, spec)
    layers = [
        {"name": g.name, "kind": g.kind, "M": g.M, "K": g.K, "N": g.N, "folds": int(f), "cycles_per_fold": int(p),
         "cycles": c}
        for g, f, p, c in zip(gemms, folds, per_fold, cycles)
    ]
    payload = {"network": str(network), "array": [spec.rows, spec.cols], "dataflow": spec.dataflow,
               "batch": None if network.suffix.lower() == ".json" else batch, "layers": layers,
               "total_cycles": sum(cycles)}
    if (sram_kb is None) != (bandwidth is None):
        raise InvalidParameterError("the memory term needs both --sram-kb and --bandwidth (or neither)")
    if sram_kb is not None and bandwidth is not None:
        from optprune.systolic import MemorySpec, layer_memory

        check_number("--sram-kb", sram_kb, low=0, low_open=True)
        check_number("--bandwidth", bandwidth, low=0, low_open=True)
        mem = layer_memory(shapes, spec, MemorySpec(sram_kb, sram_kb, sram_kb, bandwidth))
        for i, row in enumerate(layers):
            row["memory"] = {k: int(v[i]) for k, v in mem.items() if k != "compute_cycles"}
        payload["memory"] = {"sram_kb": sram_kb, "bandwidth": bandwidth,
                             "stall_cycles": int(mem["stall_cycles"].sum()),
                             "total_cycles_with_stalls": int(mem["total_cycles"].sum())}
    human = "\n".join(
        [f"{'layer':<16}{'M':>7}{'K':>7}{'N':>7}{'folds':>8}{'cycles':>12}"]
        + [f"{r['name']:<16}{r['M']:>7}{r['K']:>7}{r['N']:>7}{r['folds']:>8}{r['cycles']:>12}" for r in layers]
        + [f"total_cycles: {payload['total_cycles']} on {spec.label}"]
    )
    emit(payload, as_json, human)


@systolic_app.command("prune")
def prune_command(
    network: Annotated[Path, typer.Argument(help="An .onnx file or a torch model file (.pt, .pth).")],
    array: Annotated[str, typer.Option("--array", help="Array size ROWSxCOLS (e.g. 32x32) or N.")] = "32x32",
    dataflow: Annotated[str, typer.Option("--dataflow", help="ws, os or is.")] = "ws",
    cycle_budget: Annotated[float, typer.Option("--cycle-budget", help="Fraction of the dense cycles, in (0, 1].")] = 0.7,
    scorer: Annotated[str, typer.Option(
        "--scorer", help="Per-weight scorer summed per block: " + ", ".join(WEIGHT_SCORERS.names()) + ".")] = "magnitude",
    solver: Annotated[str, typer.Option("--solver", help="Backend (optprune solvers), or 'greedy'.")] = "highs",
    objective: Annotated[str, typer.Option(
        "--objective", help="What the selection optimises: " + ", ".join(_objective_names()) + " (reconstruction: "
        "layer-output error with least-squares re-fit of the kept weights; Linear layers only).")] = "score",
    batch: Annotated[int, typer.Option("--batch", help="Rows M of a Linear layer's GEMM.")] = 1,
    min_keep_ratio: Annotated[float, typer.Option("--min-keep-ratio", help="Blocks each layer keeps at least.")] = 0.0,
    keep_each_row: Annotated[bool, typer.Option("--keep-each-row/--no-keep-each-row",
                                                help="Each output block-row keeps a block.")] = False,
    whole_rows: Annotated[bool, typer.Option("--whole-rows/--no-whole-rows",
                                             help="Prune whole output block-rows (neurons).")] = False,
    data: Annotated[str, typer.Option("--data", help="mnist or digits: calibration, fine-tuning and accuracy.")] = "mnist",
    finetune_epochs: Annotated[int, typer.Option("--finetune-epochs", help="Epochs of fine-tuning, mask held.")] = 0,
    calibration_size: Annotated[int | None, typer.Option(
        "--calibration-size", help="Train-fold images used for scoring (default 512; reconstruction: the whole "
        "train fold, its re-fit needs more rows than a layer has inputs).")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tuning learning rate (Adam).")] = 1e-4,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the calibration sample and of fine-tuning.")] = 0,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Solver time limit in seconds.")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the pruned network (.onnx or .pt); the mask "
                                                            "goes next to it as .mask.npz.")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Shared data folder (default: OPTPRUNE_DATA).")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Keep the weight blocks (array tiles) that maximise the retained score within a cycle budget."""

    from optprune.cli._prune import EXPORT_SUFFIXES, data_note, export_model, folds_and_calibration
    from optprune.io import load_torch_model
    from optprune.systolic import (
        BLOCK_OBJECTIVES,
        MAX_DIM,
        block_layout,
        finetune_masked,
        gemms_from_torch,
        parse_array,
        save_block_mask,
    )
    from optprune.training import accuracy

    spec = parse_array(array, _dataflow(dataflow))
    check_number("--cycle-budget", cycle_budget, low=0, high=1, low_open=True)
    check_number("--batch", batch, low=1, high=MAX_DIM)
    check_number("--min-keep-ratio", min_keep_ratio, low=0, high=1)
    check_number("--finetune-epochs", finetune_epochs, low=0)
    check_number("--calibration-size", calibration_size, low=1)
    check_number("--lr", lr, low=0, low_open=True)
    check_number("--time-limit", time_limit, low=0, low_open=True)
    WEIGHT_SCORERS.check(scorer, "--scorer")
    BLOCK_OBJECTIVES.check(objective, "--objective")
    if objective != "score" and (min_keep_ratio > 0 or keep_each_row or whole_rows):
        raise InvalidParameterError(
            f"--min-keep-ratio, --keep-each-row and --whole-rows apply to --objective score; got --objective {objective}"
        )
    if data not in ("mnist", "digits"):
        raise InvalidParameterError(f"--data must be 'mnist' or 'digits'; got {data!r}")
    if solver != "greedy":
        from optprune.solvers import get_backend

        get_backend(solver)  # an unknown name is an error before any work
    mask_path = None if out is None else out.with_suffix(".mask.npz")
    check_output_files([("--out", out, EXPORT_SUFFIXES), ("--out (its mask file)", mask_path, None)], force=force)
    model = load_torch_model(network, trust_pickle=trust_pickle)
    gemms = gemms_from_torch(model, batch=batch)
    layout = block_layout([g.shape for g in gemms], spec, [g.name for g in gemms])
    n_calib = calibration_size if calibration_size is not None else (512 if objective == "score" else 10**9)
    X_train, y_train, X_test, y_test, shape, calib = folds_and_calibration(
        model, data, data_dir, n_calib, seed)
    obj = BLOCK_OBJECTIVES.get(objective)(model, layout, (X_train[calib], y_train[calib]), scorer=scorer)
    structure = {} if objective != "score" else {"min_keep_ratio": min_keep_ratio, "whole_rows": whole_rows}
    if solver == "greedy":
        sel = obj.greedy(cycle_budget, **structure)
    else:
        if objective == "score":
            structure["keep_each_row"] = keep_each_row
        sel = obj.exact(cycle_budget, solver=solver, time_limit=time_limit, **structure)
    pruned, masks = obj.apply(sel)
    acc_before = accuracy(model, X_test, y_test)
    acc_pruned = accuracy(pruned, X_test, y_test)
    acc_after = acc_pruned
    if finetune_epochs > 0:
        finetune_masked(pruned, masks, (X_train, y_train), finetune_epochs, lr=lr, seed=seed)
        acc_after = accuracy(pruned, X_test, y_test)
    stderr_console.log(f"{network.name} on {spec.label}: accuracy {acc_before:.4f} -> {acc_after:.4f}")
    if out is not None:
        export_model(pruned, out, shape)
        save_block_mask(mask_path, layout, sel.keep, masks)
    dense = int(layout.dense_cycles().sum())
    payload = {
        "network": str(network), "array": [spec.rows, spec.cols], "dataflow": spec.dataflow, "batch": batch,
        "scorer": scorer, "objective": objective, "solver": solver, "cycle_budget": cycle_budget,
        "cycles_before": dense, "cycles_after": sel.cycles, "speedup": dense / max(1, sel.cycles),
        "accuracy_before": acc_before, "accuracy_after_prune": acc_pruned, "accuracy_after": acc_after,
        "finetune_epochs": finetune_epochs, "blocks_kept": int(sel.keep.sum()), "blocks": layout.n_blocks,
        "selection": sel.to_dict(), "data": data, "data_note": data_note(data),
        "out": str(out) if out is not None else None, "mask": str(mask_path) if mask_path is not None else None,
    }
    emit(payload, as_json)


@systolic_app.command("assign")
def assign_command(
    network: Annotated[Path, typer.Argument(help=NET_HELP)],
    arrays: Annotated[str, typer.Option("--arrays", help="Comma-separated array sizes, e.g. 32x32,16x16.")] = "32x32,16x16",
    dataflow: Annotated[str, typer.Option("--dataflow", help="ws, os or is (all arrays).")] = "ws",
    batch: Annotated[int, typer.Option("--batch", help="Rows M of a Linear layer's GEMM (ignored for a .json list).")] = 1,
    tile: Annotated[int | None, typer.Option("--tile", help="Output columns per tile (default: the widest array).")] = None,
    solver: Annotated[str, typer.Option("--solver", help="Backend for the exact assignment (cpsat works too).")] = "highs",
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Solver time limit in seconds.")] = None,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, typer.Option("--json", help=JSON_HELP)] = False,
) -> None:
    """Assign layer tiles to several arrays to minimise the makespan (layers in order); LPT for comparison."""
    from optprune.solvers import get_backend
    from optprune.systolic import MAX_DIM, assign_tiles, load_gemms, lpt_assign, parse_arrays, tile_durations

    specs = parse_arrays(arrays, _dataflow(dataflow))
    check_number("--batch", batch, low=1, high=MAX_DIM)
    check_number("--tile", tile, low=1, high=MAX_DIM)
    check_number("--time-limit", time_limit, low=0, low_open=True)
    get_backend(solver)
    gemms = load_gemms(network, batch, trust_pickle=trust_pickle)
    d, layer, widths = tile_durations([g.shape for g in gemms], specs, tile)
    exact = assign_tiles(d, layer, solver, time_limit=time_limit)
    lpt = lpt_assign(d, layer)
    tiles = [{"layer": gemms[int(lay)].name, "columns": int(w), "array": int(a), "cycles": int(d[i, a])}
             for i, (lay, w, a) in enumerate(zip(layer, widths, exact.array))]
    payload = {
        "network": str(network), "arrays": [[s.rows, s.cols] for s in specs], "dataflow": specs[0].dataflow,
        "assignment": tiles, "makespan": exact.makespan, "bound": exact.to_dict()["bound"], "status": exact.status,
        "solver": solver, "lpt_makespan": lpt.makespan,
        "lpt_gap": (lpt.makespan - exact.makespan) / max(1, exact.makespan),
        "single_array_makespans": {s.label: int(d[:, j].sum()) for j, s in enumerate(specs)},
    }
    emit(payload, as_json)
