"""``optprune solvers``, ``optprune solve``, ``optprune info``."""

from __future__ import annotations

import importlib
from pathlib import Path

import typer

from optprune.cli._output import JSON_HELP, emit
from optprune.cli._validate import TRUST_PICKLE_HELP, check_number

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()

JSON_OPTION = typer.Option(False, "--json", help=JSON_HELP)
TRUST_PICKLE_OPTION = typer.Option(False, "--trust-pickle", help=TRUST_PICKLE_HELP)


def import_problem(backend) -> str | None:
    """None when the backend's package really imports, else why not and how to install it.

    Uses ``backend.import_error()`` where the solver protocol offers it; otherwise
    imports ``backend.package`` here. A package that is found but broken (a
    missing shared library, an incompatible build) fails here, not in ``is_available``.
    """
    method = getattr(backend, "import_error", None)
    if callable(method):
        return method()
    try:
        importlib.import_module(backend.package)
    except Exception as exc:  # noqa: BLE001 - any failure of a third-party import is reported, not raised
        return f"import {backend.package} failed: {type(exc).__name__}: {exc}; reinstall with: {backend.install_hint}"
    return None


@commands.command("solvers")
def solvers_command(
    check: bool = typer.Option(False, "--check", help="Import every backend's package for real and report broken ones."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List every solver backend: name, available, version, capabilities.

    With ``--check`` each available backend is imported; one that is found but
    fails to import is reported with its error and the command exits 2.
    """
    from optprune.solvers import get_backend, list_backends

    rows = list_backends()
    broken = []
    if check:
        for row in rows:
            problem = import_problem(get_backend(row["name"])) if row["available"] else None
            row["import_ok"] = row["available"] and problem is None
            row["import_error"] = problem
            if problem is not None:
                broken.append(row["name"])
    lines = []
    for row in rows:
        state = f"{row['version']}" if row["available"] else f"not installed ({row['install']})"
        if check and row.get("import_error"):
            state = f"BROKEN: {row['import_error']}"
        caps = ", ".join(k for k, v in row["capabilities"].items() if v)
        lines.append(f"{row['name']:<8} {state:<60} {caps}")
    payload = {"solvers": rows}
    if check:
        payload["broken"] = broken
    emit(payload, as_json, "\n".join(lines))
    if broken:
        raise typer.Exit(2)


@commands.command("solve")
def solve_command(
    model_file: Path = typer.Argument(..., help="An MPS or LP file."),
    solver: str = typer.Option("highs", "--solver", help="Backend name (see `optprune solvers`)."),
    time_limit: float = typer.Option(None, "--time-limit", help="Seconds (> 0)."),
    mip_gap: float = typer.Option(None, "--mip-gap", help="Relative MIP gap (>= 0)."),
    threads: int = typer.Option(None, "--threads", help="Solver threads (>= 1)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Solve an MPS/LP file with any backend."""
    from optprune.solvers import read_model, solve

    check_number("--time-limit", time_limit, low=0, low_open=True)
    check_number("--mip-gap", mip_gap, low=0)
    check_number("--threads", threads, low=1)
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
        "message": getattr(result, "message", "") or "",
        "model": model.stats(),
    }
    emit(payload, as_json)


@commands.command("info")
def info_command(
    network: Path = typer.Argument(..., help="An .onnx file or a torch model file (.pt, .pth)."),
    trust_pickle: bool = TRUST_PICKLE_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Layers, widths and parameter count of a network."""
    from optprune.io import load_network

    net = load_network(network, trust_pickle=trust_pickle)
    summary = net.summary()
    lines = [f"{net.name}: input {tuple(net.input_shape)}, {summary['n_params']} parameters"]
    for layer in summary["layers"]:
        lines.append(
            f"  {layer['name']:<20} {layer['type']:<7} {layer['in']:>6} -> {layer['out']:<6} "
            f"{layer['activation']:<9} {layer['params']} params"
        )
    emit(summary, as_json, "\n".join(lines))
