"""``optprune search`` (global structure search) and ``optprune latency-table``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from optprune.cli._output import JSON_HELP, emit, stderr_console
from optprune.cli._validate import FORCE_HELP, TRUST_PICKLE_HELP, check_number, check_output_file
from optprune.errors import InvalidParameterError

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

JSON_OPTION = typer.Option("--json", help=JSON_HELP)


def parse_budgets(items: list[str]) -> dict[str, float]:
    """``["params=0.5", "latency=0.6"]`` -> ``{"params": 0.5, "latency": 0.6}``.

    A resource given twice is an error (never "the last one wins"); a value
    must be a finite number > 0.
    """
    out: dict[str, float] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            if not sep or not key:
                raise ValueError
            amount = float(value)
        except ValueError:
            raise InvalidParameterError(
                f"--budget must look like RESOURCE=VALUE (e.g. params=0.5, latency=0.6, flops=0.4); got {item!r}"
            ) from None
        if key in out:
            raise InvalidParameterError(
                f"--budget {key} is given twice ({key}={out[key]:g} and {item!r}); give each resource once"
            )
        check_number(f"--budget {key}", amount, low=0, low_open=True)
        out[key] = amount
    return out


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise InvalidParameterError(f"--input-shape must be comma-separated integers like 1,28,28; got {text!r}") from None
    if not shape or min(shape) < 1:
        raise InvalidParameterError(f"--input-shape must be positive integers; got {text!r}")
    return shape


def _dataset_for(model, input_shape, dataset: str) -> str | None:
    if dataset != "auto":
        return dataset
    import numpy as np

    from optprune.pruning import infer_input_shape

    shape = input_shape or getattr(model, "input_shape", None)
    if shape is None:
        try:
            shape = infer_input_shape(model)
        except Exception:  # noqa: BLE001 - only used to guess a dataset
            return None
    size = int(np.prod(shape))
    return {784: "mnist", 64: "digits"}.get(size)


def _calibration(model, scorer: str, input_shape, dataset: str, samples: int):
    """Calibration (X, y) from the dataset's train fold when the scorer needs data."""
    from optprune.scoring import get_scorer

    if not get_scorer(scorer).needs_data:
        return None
    name = _dataset_for(model, input_shape, dataset)
    if name is None:
        raise InvalidParameterError(
            f"scorer {scorer!r} needs calibration data; pass --dataset mnist or digits (could not guess it from the "
            "input size)"
        )
    from optprune.data import load_dataset

    X, y = load_dataset(name, "train")
    X = X[:samples]
    shape = input_shape or getattr(model, "input_shape", None)
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        X = X.reshape((X.shape[0], *shape))
    return X, y[:samples]


@commands.command("search")
def search_command(
    target: Annotated[Path, typer.Argument(help="A network (.onnx, .pt) or a structure-search instance (.json).")],
    budget: Annotated[list[str] | None, typer.Option("--budget", help="RESOURCE=VALUE, repeatable: params, flops, latency (fractions of the full model).")] = None,
    absolute: Annotated[bool, typer.Option("--absolute", help="Budgets are absolute amounts, not fractions.")] = False,
    scorer: Annotated[str, typer.Option("--scorer", help="Importance scorer (see optprune.scoring).")] = "magnitude",
    normalize: Annotated[str, typer.Option("--normalize", help="Per-group normaliser: mean, zscore, lamp, none.")] = "mean",
    solver: Annotated[str, typer.Option("--solver", help="Backend name (see `optprune solvers`).")] = "highs",
    method: Annotated[str, typer.Option("--method", help="exact (the MILP), uniform or global (baselines).")] = "exact",
    round_to: Annotated[int, typer.Option("--round-to", help="Kept widths are multiples of this.")] = 1,
    min_width: Annotated[int, typer.Option("--min-width", help="Smallest kept width per group.")] = 1,
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="One sample's shape, e.g. 1,28,28.")] = None,
    dataset: Annotated[str, typer.Option("--dataset", help="Calibration data for data-driven scorers: auto, mnist, digits.")] = "auto",
    samples: Annotated[int, typer.Option("--calibration-samples", help="Calibration samples (train fold).")] = 512,
    latency_table: Annotated[Path | None, typer.Option("--latency-table", help="Latency table JSON (else measured and cached).")] = None,
    time_limit: Annotated[float | None, typer.Option("--time-limit", help="Solver time limit, seconds.")] = None,
    mip_gap: Annotated[float, typer.Option("--mip-gap", help="Relative MIP gap for 'optimal'.")] = 1e-6,
    no_reduce: Annotated[bool, typer.Option("--no-reduce", help="Skip the exact Lagrangian reduction.")] = False,
    kept: Annotated[bool, typer.Option("--kept", help="Also list the kept unit indices per group.")] = False,
    save_instance: Annotated[Path | None, typer.Option("--save-instance", help="Write the problem as an instance JSON.")] = None,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Per-group kept widths maximising retained score under parameter / FLOP / latency budgets (exact MILP)."""
    from optprune.search import load_instance, solve_search
    from optprune.search import save_instance as _save

    budgets = parse_budgets(budget)
    shape = parse_shape(input_shape)
    check_number("--round-to", round_to, low=1)
    check_number("--min-width", min_width, low=1)
    check_number("--calibration-samples", samples, low=1)
    check_number("--time-limit", time_limit, low=0, low_open=True)
    check_number("--mip-gap", mip_gap, low=0)
    check_output_file("--save-instance", save_instance, force=force)
    relative = not absolute
    source = None
    if target.suffix.lower() == ".json":
        problem, stored, stored_relative = load_instance(target)
        if not budgets:
            budgets, relative = stored, stored_relative
    else:
        from optprune.io import load_torch_model
        from optprune.search import model_scores, problem_from_model

        model = load_torch_model(target, trust_pickle=trust_pickle)
        model.eval()
        calibration = _calibration(model, scorer, shape, dataset, samples)
        scores = model_scores(model, scorer, calibration, input_shape=shape, normalize=normalize)
        latency = None
        if latency_table is not None:
            from optprune.search import load_latency_layers

            latency = load_latency_layers(latency_table)
        elif "latency" in budgets:
            stderr_console.print("measuring the latency table (cached for next time)...")
            latency = True
        problem = problem_from_model(model, scores, input_shape=shape, round_to=round_to, min_width=min_width,
                                     latency=latency, name=target.stem)
        source = {"network": target.name, "scorer": scorer, "normalize": normalize, "round_to": round_to,
                  "min_width": min_width}
    if not budgets:
        raise InvalidParameterError("give at least one --budget RESOURCE=VALUE (e.g. --budget params=0.5)")
    if save_instance is not None:
        _save(save_instance, problem, budgets=budgets, relative=relative, source=source)
        stderr_console.print(f"instance written to {save_instance}")
    result = solve_search(problem, budgets, solver, relative=relative, method=method, time_limit=time_limit,
                          mip_gap=mip_gap, reduce=not no_reduce)
    payload = result.to_dict(include_kept=kept)
    lines = [f"{result.method} ({result.status.value}) retained score {result.objective:.6g} in {result.time_s:.3f}s"]
    lines += [f"  {name:<24} {width:>6} / {problem.group(name).size}" for name, width in result.widths.items()]
    for key, row in payload["resources"].items():
        frac = row["fraction"]
        lines.append(f"  {key:<10} {row['used']:.6g} (budget {row['budget']}, {frac:.3f} of full)" if frac is not None
                     else f"  {key:<10} {row['used']:.6g}")
    emit(payload, as_json, "\n".join(lines))


@commands.command("latency-table")
def latency_table_command(
    network: Annotated[Path, typer.Argument(help="A network (.onnx, .pt).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the table JSON.")],
    input_shape: Annotated[str | None, typer.Option("--input-shape", help="One sample's shape, e.g. 1,8,8.")] = None,
    round_to: Annotated[int, typer.Option("--round-to", help="Grid of allowed widths: multiples of this.")] = 1,
    min_width: Annotated[int, typer.Option("--min-width")] = 1,
    points: Annotated[int, typer.Option("--points", help="Widths measured per axis (>= 2: both ends).")] = 6,
    repeats: Annotated[int, typer.Option("--repeats", help="Timings per point, median taken (>= 1).")] = 5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Inputs per timed call (>= 1).")] = 1,
    refresh: Annotated[bool, typer.Option("--refresh", help="Measure again even if cached.")] = False,
    force: Annotated[bool, typer.Option("--force", help=FORCE_HELP)] = False,
    trust_pickle: Annotated[bool, typer.Option("--trust-pickle", help=TRUST_PICKLE_HELP)] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Measure (or reuse from the cache) the CPU latency of every Linear/Conv2d over a grid of widths."""
    from optprune.io import load_torch_model
    from optprune.search import measure_latency_tables, save_latency_tables, width_grid
    from optprune.search._torch import module_specs

    check_number("--round-to", round_to, low=1)
    check_number("--min-width", min_width, low=1)
    check_number("--points", points, low=2)
    check_number("--repeats", repeats, low=1)
    check_number("--batch-size", batch_size, low=1)
    check_output_file("--out", out, force=force)
    shape = parse_shape(input_shape)
    model = load_torch_model(network, trust_pickle=trust_pickle)
    model.eval()
    groups, specs = module_specs(model, shape)
    grids = {g.name: width_grid(g.width, round_to, min_width) for g in groups}
    data = measure_latency_tables(model, input_shape=shape, grids=grids, specs=specs, points=points, repeats=repeats,
                                  batch_size=batch_size, refresh=refresh)
    save_latency_tables(data, out)
    full = sum(t["values"][-1][-1] for t in data["tables"].values())
    payload = {"out": str(out), "key": data["key"], "cached": data["cached"], "layers": len(data["tables"]),
               "full_latency_s": full, "measurements": sum(len(t["in_widths"]) * len(t["out_widths"])
                                                            for t in data["tables"].values())}
    emit(payload, as_json, f"{payload['layers']} layer tables -> {out} (cached: {data['cached']}, "
                           f"full model {full * 1e6:.1f} us)")
