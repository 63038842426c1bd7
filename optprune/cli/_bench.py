"""``optprune bench``: the before/after-pruning MIP benchmark (see :mod:`optprune.bench`)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from optprune.cli._core_commands import JSON_OPTION
from optprune.cli._output import emit
from optprune.cli._validate import check_number, check_output_dir

#: This module's commands; optprune.cli._app adds them to the app (a command module never imports the app).
commands = typer.Typer()


@commands.command("bench")
def bench_command(
    config: Path = typer.Argument(..., help="Benchmark config (TOML), e.g. instances/main.toml."),
    out: Path = typer.Option(..., "--out", help="Output folder: records.jsonl, summary.md/.csv, plots, cached networks."),
    workers: int = typer.Option(None, "--workers", help="Parallel tasks (default: CPU cores / solver threads)."),
    executor: str = typer.Option("local", "--executor", help="local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray cluster address (with --executor ray), e.g. auto."),
    surrogate: bool = typer.Option(False, "--surrogate", help="Pruned networks as surrogates for the dense one."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the PNG plots."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Live progress bar on stderr."),
    method: str = typer.Option(None, "--method", help="mip, bab or auto for every vnnlib query (default: the config's)."),
    allow_dirty: bool = typer.Option(False, "--allow-dirty",
                                     help="Write under results/ from a dirty working tree (stamped in the header)."),
    force: bool = typer.Option(False, "--force", help="Start OUT afresh when it holds a benchmark of another config "
                                                      "(deletes its records, summaries and cached networks)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Run or resume a benchmark: one JSON line per result, summary table and plots; a killed run resumes.

    OUT belongs to one config: another config there is refused unless --force (which starts OUT afresh).
    """
    from optprune.bench import run_bench
    from optprune.bench._executors import EXECUTORS, check_ray_address
    from optprune.errors import InvalidParameterError

    check_number("--workers", workers, low=1)
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"--executor must be one of {', '.join(EXECUTORS)}; got {executor!r}")
    if address is not None and executor != "ray":
        raise InvalidParameterError(f"--address is for --executor ray; got --executor {executor}")
    if method is not None and method not in ("mip", "bab", "auto"):
        raise InvalidParameterError(f"--method must be one of mip, bab, auto; got {method!r}")
    check_output_dir("--out", out)  # a folder (resumed when it holds a run), never a file
    if executor == "ray":
        check_ray_address(address)  # before networks are trained: an unreachable cluster fails in seconds
    result = run_bench(config, out, workers=workers, executor=executor, address=address, surrogate=surrogate,
                       progress=progress, plots=plots, method=method,
                       allow_dirty=allow_dirty, force=force)
    if as_json:
        print(result.markdown, file=sys.stderr)
        emit(result.to_dict(), True)
        return
    print(result.markdown)
    for key, path in result.files.items():
        print(f"{key}: {path}")
