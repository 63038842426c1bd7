"""``optprune solvers``, ``optprune solve``, ``optprune info``."""

from __future__ import annotations

from pathlib import Path

import typer

from optprune.cli._app import app
from optprune.cli._output import emit

JSON_OPTION = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


@app.command("solvers")
def solvers_command(as_json: bool = JSON_OPTION) -> None:
    """List every solver backend: name, available, version, capabilities."""
    from optprune.solvers import list_backends

    rows = list_backends()
    lines = []
    for row in rows:
        state = f"{row['version']}" if row["available"] else f"not installed ({row['install']})"
        caps = ", ".join(k for k, v in row["capabilities"].items() if v)
        lines.append(f"{row['name']:<8} {state:<60} {caps}")
    emit({"solvers": rows}, as_json, "\n".join(lines))


@app.command("solve")
def solve_command(
    model_file: Path = typer.Argument(..., help="An MPS or LP file."),
    solver: str = typer.Option("highs", "--solver", help="Backend name (see `optprune solvers`)."),
    time_limit: float = typer.Option(None, "--time-limit", help="Seconds."),
    mip_gap: float = typer.Option(None, "--mip-gap", help="Relative MIP gap."),
    threads: int = typer.Option(None, "--threads"),
    as_json: bool = JSON_OPTION,
) -> None:
    """Solve an MPS/LP file with any backend."""
    from optprune.milp import read_model
    from optprune.solvers import solve

    model = read_model(model_file)
    result = solve(model, solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads)
    payload = {
        "status": result.status.value,
        "objective": result.objective,
        "bound": result.bound,
        "gap": result.gap,
        "time_s": result.time_s,
        "nodes": result.nodes,
        "backend": result.backend,
        "version": result.version,
        "model": model.stats(),
    }
    emit(payload, as_json)


@app.command("info")
def info_command(
    network: Path = typer.Argument(..., help="An .onnx file or a saved torch model (.pt)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Layers, widths and parameter count of a network."""
    from optprune.io import load_network

    net = load_network(network)
    summary = net.summary()
    lines = [f"{net.name}: input {tuple(net.input_shape)}, {summary['n_params']} parameters"]
    for layer in summary["layers"]:
        lines.append(
            f"  {layer['name']:<20} {layer['type']:<7} {layer['in']:>6} -> {layer['out']:<6} "
            f"{layer['activation']:<9} {layer['params']} params"
        )
    emit(summary, as_json, "\n".join(lines))
