"""The typer application; each command group lives in its own module and registers here."""

from __future__ import annotations

import json
import sys

import typer

from optprune.errors import OptpruneError

app = typer.Typer(
    name="optprune",
    help="Pruning decisions by optimization; ReLU networks embedded in MIPs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Command modules register themselves on ``app`` when imported.
from optprune.cli import _bench, _core_commands, _prune, _search, _verify  # noqa: E402,F401,I001


def main(argv: list[str] | None = None) -> None:
    """Entry point: a named optprune error becomes one line (or one JSON object) and exit code 2."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, standalone_mode=False)
    except OptpruneError as exc:
        if "--json" in args:
            sys.stdout.write(json.dumps({"error": str(exc), "error_type": type(exc).__name__}) + "\n")
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            raise SystemExit(exc.exit_code) from None
        if isinstance(exc, click.exceptions.Abort):
            raise SystemExit(1) from None
        raise
