"""The typer application, assembled here from the command modules.

Each command module registers its commands on its own nameless ``commands``
(a ``typer.Typer()``); this module adds each of them to :data:`app` in
:data:`COMMANDS` order, the order ``optprune --help`` lists them. A
command module never imports this one, so the CLI has no import cycle.

Exit codes: 0 success, 2 for every usage error (unknown command or option,
missing argument, a value of the wrong type) and every named optprune error,
130 for a run interrupted by Ctrl-C (SIGINT), 1 for an aborted prompt. With
``--json`` an error is one JSON object ``{"error": ..., "error_type": ...}`` on
stdout; the human message goes to stderr. An interruption is the object
``{"error": "interrupted", "error_type": "KeyboardInterrupt"}`` (unless the
command had already printed its result).

typer turns a ``KeyboardInterrupt`` raised inside a command into exit code 130
(``typer.Exit(130)``), which :func:`main` receives as the return value of
``app(..., standalone_mode=False)``; no command returns 130 for any other reason.

typer >= 0.15 runs commands with its own copy of click (``typer._click``), so
its usage errors are not instances of ``click.ClickException``. :func:`main`
catches the exception classes of both copies (:func:`_click_classes`);
``tests/test_cli_errors.py`` pins this for every command.
"""

from __future__ import annotations

import importlib
import json
import sys

import typer

from optprune.cli._bench import commands as bench_commands
from optprune.cli._core_commands import commands as core_commands
from optprune.cli._gohsp import commands as gohsp_commands
from optprune.cli._lm import commands as lm_commands
from optprune.cli._output import emitted, reset_emitted
from optprune.cli._prune import commands as prune_commands
from optprune.cli._search import commands as search_commands
from optprune.cli._systolic import commands as systolic_commands
from optprune.cli._verify import commands as verify_commands
from optprune.errors import OptpruneError

__all__ = ["app", "main"]

app = typer.Typer(
    name="optprune",
    help="Pruning decisions by optimization; ReLU networks embedded in MIPs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Every command module's ``commands``, in the order ``optprune --help`` lists them.
COMMANDS = (core_commands, bench_commands, prune_commands, search_commands, verify_commands, gohsp_commands,
            systolic_commands, lm_commands)
for _commands in COMMANDS:
    app.add_typer(_commands)  # nameless: its commands and groups join the app's own
del _commands

USAGE_ERROR = "UsageError"
INTERRUPTED_CODE = 130  # 128 + SIGINT, as shells report it
INTERRUPTED = {"error": "interrupted", "error_type": "KeyboardInterrupt"}


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """The class ``name`` (``ClickException``, ``Abort``, ``Exit``) from every click copy that is importable."""
    found = []
    for module in ("typer._click.exceptions", "click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in found:
            found.append(cls)
    return tuple(found)


CLICK_ERRORS = _click_classes("ClickException")
ABORTS = _click_classes("Abort")
EXITS = (typer.Exit, *_click_classes("Exit"))


def _fail(message: str, error_type: str, as_json: bool, code: int = 2) -> None:
    if as_json:
        sys.stdout.write(json.dumps({"error": message, "error_type": error_type}) + "\n")
        sys.stdout.flush()
    raise SystemExit(code)


def _interrupted(as_json: bool) -> None:
    """Ctrl-C: "interrupted" on stderr, the one JSON object (unless the result is already out), exit 130."""
    print("interrupted", file=sys.stderr)
    if as_json and not emitted():
        _fail(INTERRUPTED["error"], INTERRUPTED["error_type"], True, INTERRUPTED_CODE)
    raise SystemExit(INTERRUPTED_CODE)


def main(argv: list[str] | None = None) -> None:
    """Entry point: a named error or a usage error becomes a message (and one JSON object) and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in args
    reset_emitted()
    try:
        code = app(args=args, standalone_mode=False)
    except OptpruneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        _fail(str(exc), type(exc).__name__, as_json)
    except EXITS as exc:
        raise SystemExit(getattr(exc, "exit_code", 0)) from None
    except CLICK_ERRORS as exc:
        exc.show()  # the usage line, a hint and "Error: ..." on stderr
        exit_code = int(getattr(exc, "exit_code", 2) or 2)
        # "optprune" alone prints the help and is not an error with --json absent
        name = type(exc).__name__
        error_type = USAGE_ERROR if name != "FileError" else "FileError"
        _fail(exc.format_message() if name != "NoArgsIsHelpError" else "no command given", error_type, as_json,
              exit_code if exit_code != 1 else 2)
    except ABORTS:
        print("aborted", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:  # outside typer's own handler (e.g. while parsing)
        _interrupted(as_json)
    if code == INTERRUPTED_CODE:
        _interrupted(as_json)
    if isinstance(code, int) and code:
        raise SystemExit(code)
