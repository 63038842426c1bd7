"""``optprune verify`` (VNN-LIB properties) and ``optprune attack`` (adversarial examples by MIP)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import typer

from optprune.bench._store import atomic_file as atomic_target
from optprune.cli._core_commands import JSON_OPTION, TRUST_PICKLE_OPTION
from optprune.cli._output import emit, stderr_console, to_jsonable
from optprune.cli._validate import FORCE_HELP, check_number, check_output_dir, check_output_files
from optprune.verification.bounds import BOUND_METHODS, DEFAULT_BOUNDS

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

MODEL_SUFFIXES = (".mps", ".lp")  # what --export-mps writes (optprune.solvers.write_model)
BOUNDS_HELP = (f"Bound method: {', '.join(BOUND_METHODS.names())} (default: each engine's own; the MIP pipeline's "
               f"is {DEFAULT_BOUNDS}, BaB's linear then its alpha-CROWN root).")


@commands.command("verify")
def verify_command(
    network: Path = typer.Argument(..., help="Network: .onnx, or a torch model file (.pt, .pth)."),
    prop: Path = typer.Argument(..., help="A VNN-LIB property."),
    solver: str = typer.Option("highs", "--solver", help="MIP backend (see `optprune solvers`)."),
    timeout: float = typer.Option(
        120.0, "--timeout", help="Seconds (> 0) for the whole query, loading the network and parsing included."
    ),
    bounds: str = typer.Option(None, "--bounds", help=BOUNDS_HELP),
    no_attack: bool = typer.Option(False, "--no-attack", help="Skip the gradient attack before the MIP."),
    method: str = typer.Option(
        "auto", "--method",
        help="A verification engine: auto (BaB, then the MIP pipeline on the time left; the default), mip (bounds, "
             "attack, decision MIPs), bab (branch and bound on alpha/beta-CROWN bounds) or bounds (bounds only).",
    ),
    threads: int = typer.Option(
        None, "--threads",
        help="CPU cores to use (>= 1; default: all). With 2 or more, --method auto runs BaB and the MIP pipeline "
             "side by side in two processes (first verdict wins; BaB's process turns to the MIPs at a tenth of the "
             "time), or BaB alone on every core when the network has too many unstable ReLUs for the MIP; --method mip "
             "gives them to the MIP solver, --method bab to its bound computations.",
    ),
    out: Path = typer.Option(None, "--out", help="Write the VNN-COMP result file here."),
    export_mps: Path = typer.Option(
        None, "--export-mps", help="Also write the first output conjunction's MILP as MPS (.mps) or CPLEX LP (.lp)."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Decide a VNN-LIB property: sat (checked counterexample), unsat (robust) or unknown.

    ``--timeout`` counts from the start of the command: the time spent loading
    the network and parsing the property is taken off the verification's share;
    when nothing is left the verdict is ``unknown`` and the message says why.
    """
    from optprune.io import load_network
    from optprune.verification import VerificationResult, format_vnncomp_result, verify_property
    from optprune.verification.engine_registry import ENGINES
    from optprune.verification.vnnlib import read_vnnlib

    start = time.perf_counter()
    check_number("--timeout", timeout, low=0, low_open=True)
    if threads is None:
        threads = os.cpu_count() or 1
    check_number("--threads", threads, low=1)
    ENGINES.check(method, "--method")
    if bounds is not None:
        BOUND_METHODS.check(bounds, "--bounds")
    check_output_files([("--out", out, None), ("--export-mps", export_mps, MODEL_SUFFIXES)], force=force)
    net = load_network(network, trust_pickle=trust_pickle)
    parsed = read_vnnlib(prop, net.input_size, net.output_size)
    load_s = time.perf_counter() - start
    remaining = timeout - load_s
    if remaining > 0:
        onnx_model = network if network.suffix.lower() == ".onnx" else None  # float32 re-check of counterexamples
        result = verify_property(net, parsed, solver=solver, time_limit=remaining, bound_method=bounds,
                                 attack=not no_attack, onnx_model=onnx_model, method=method, threads=threads)
    else:
        result = VerificationResult(
            verdict="unknown", time_s=0.0,
            message=f"the time limit (--timeout {timeout:g} s) was spent loading the network and parsing the "
                    f"property ({load_s:.3f} s); nothing was left for verification",
        )
    if out is not None:
        with atomic_target(out) as tmp:
            tmp.write_text(format_vnncomp_result(result))
    if export_mps is not None:
        with atomic_target(export_mps) as tmp:  # same suffix: the writer picks MPS or LP from it
            _export_first_conjunction(net, parsed, bounds or DEFAULT_BOUNDS, tmp)
    payload = {"network": str(network), "property": str(prop), "solver": solver, "load_s": round(load_s, 4),
               **result.to_dict()}
    decided_by = result.decided_by or "-"
    human = f"{result.verdict} in {result.time_s:.2f}s (decided by {decided_by}; stages {payload['stages']})"
    if result.message:
        human += f": {result.message}"
    emit(payload, as_json, human)


def _export_first_conjunction(net, prop, bounds: str, path: Path) -> None:
    """The MILP of ``prop``'s first input box and first output conjunction, written as MPS to ``path``."""
    from optprune.formulations.relu_milp import build_spec_milp
    from optprune.solvers import write_model
    from optprune.verification.bounds import compute_bounds

    case = prop.cases[0]
    b = compute_bounds(net, case.lower, case.upper, bounds)
    conj = case.disjuncts[0]
    model, _ = build_spec_milp(net, b, case.lower, case.upper, conj.C, conj.d)
    write_model(model, path)


ATTACK_FILES = ("adversarial.npz", "adversarial.png", "summary.json")


@commands.command("attack")
def attack_command(
    network: Path = typer.Argument(..., help="Network: .onnx, .pt or .pth."),
    data: str = typer.Option("mnist", "--data", help="mnist or digits (test split)."),
    eps: float = typer.Option(0.02, "--eps", help="L-inf radius on inputs, in [0, 1]."),
    count: int = typer.Option(10, "--count", help="Number (>= 1) of correctly classified test images."),
    out: Path = typer.Option(Path("attack_out"), "--out", help="Output folder (adversarial.npz/.png, summary.json)."),
    solver: str = typer.Option("highs", "--solver"),
    time_limit: float = typer.Option(60.0, "--time-limit", help="Seconds (> 0) per image (all targets)."),
    bounds: str = typer.Option(
        DEFAULT_BOUNDS, "--bounds", help=f"Bound method: {', '.join(BOUND_METHODS.names())} (default {DEFAULT_BOUNDS})."
    ),
    data_dir: Path = typer.Option(
        None, "--data-dir", help="Folder holding mnist/ (default: $OPTPRUNE_DATA or ../shared/data)."
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Max-margin adversarial examples by MIP: .npz, a PNG grid and a JSON summary in OUT."""
    from rich.progress import Progress

    from optprune.data import load_dataset
    from optprune.errors import ShapeMismatchError
    from optprune.io import load_network
    from optprune.verification import max_margin

    check_number("--eps", eps, low=0, high=1)
    BOUND_METHODS.check(bounds, "--bounds")
    check_number("--count", count, low=1)
    check_number("--time-limit", time_limit, low=0, low_open=True)
    check_output_dir("--out", out, force=force, files=ATTACK_FILES)
    net = load_network(network, trust_pickle=trust_pickle)
    X, y = load_dataset(data, "test", data_dir=data_dir)
    flat = X.reshape(len(X), -1).astype(np.float64)
    if flat.shape[1] != net.input_size:
        raise ShapeMismatchError(
            f"--data {data} gives {flat.shape[1]} inputs per image, network {network.name} takes {net.input_size}"
        )
    correct = np.flatnonzero(net.predict(flat) == y)[:count]
    records, originals, adversarials = [], [], []
    with Progress(console=stderr_console) as progress:
        task = progress.add_task(f"attack eps={eps}", total=len(correct))
        for i in correct:
            res = max_margin(net, flat[i], int(y[i]), eps, solver=solver, time_limit=time_limit, bound_method=bounds)
            rec = {"index": int(i), **res.to_dict()}
            records.append(rec)
            originals.append(flat[i])
            adversarials.append(res.x if res.x is not None else flat[i])
            progress.advance(task)
    adv = np.array(adversarials)
    preds = net.predict(adv) if len(adv) else np.zeros(0, dtype=int)
    with atomic_target(out / "adversarial.npz") as tmp:
        _save_adversarial(tmp, originals, adv, y[correct], preds, correct, records, eps, X.shape[1:])
    with atomic_target(out / "adversarial.png") as tmp:
        _plot_grid(np.array(originals), adv, y[correct], preds, X.shape[1:], tmp, eps)
    n_adv = int(sum(r["adversarial"] for r in records))
    summary = {
        "network": str(network), "data": data, "eps": eps, "count": len(records), "adversarial": n_adv,
        "proven_robust": int(sum(r["proven_robust"] for r in records)),
        "solver": solver, "out": str(out), "records": records,
    }
    with atomic_target(out / "summary.json") as tmp:
        tmp.write_text(json.dumps(to_jsonable(summary), indent=1))
    emit(summary, as_json, f"{n_adv}/{len(records)} adversarial at eps={eps}; files in {out}")


def _save_adversarial(path: Path, originals, adv, labels, preds, correct, records, eps: float, shape) -> None:
    np.savez_compressed(
        path, originals=np.array(originals), adversarials=adv, labels=labels,
        predicted=preds, indices=correct, margins=np.array([r["objective"] for r in records]),
        eps=eps, input_shape=np.array(shape),
    )


def _plot_grid(originals, adversarials, labels, preds, shape, path: Path, eps: float) -> None:
    """Originals (top) above their adversarial versions (bottom), titled with the predicted classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(len(originals), 1)
    side = int(np.sqrt(np.prod(shape)))
    fig, axes = plt.subplots(2, n, figsize=(1.4 * n, 3.2), squeeze=False)
    for j in range(n):
        top = f"y={labels[j]}" if len(labels) else ""
        bottom = f"pred={preds[j]}" if len(preds) else ""
        for row, images, title in ((0, originals, top), (1, adversarials, bottom)):
            ax = axes[row][j]
            ax.axis("off")
            if j < len(images):
                ax.imshow(images[j].reshape(side, side), cmap="gray", vmin=0, vmax=1)
                ax.set_title(title, fontsize=8)
    fig.suptitle(f"originals (top) and max-margin adversarial examples (bottom), eps={eps}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
