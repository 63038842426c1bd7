"""The ``optprune`` command line. Every command takes ``--json`` and then prints one JSON object."""

from optprune.cli._app import app, main

__all__ = ["app", "main"]
