"""Where a benchmark figure came from: command, date, machine and library versions.

Every summary a benchmark writes (``optprune bench``'s ``summary.md``, each
script in ``benchmarks/``) starts with :func:`provenance_header`, so anyone
reading a figure in ``results/`` knows how to re-make it and on what it was
measured. The machine is described by what changes timings: hostname, CPU
model (``/proc/cpuinfo``), logical cores and RAM. The code is named by its git
commit (and whether the checkout had uncommitted changes) when optprune runs
from a git checkout. Versions are read from the
installed distributions' metadata (no solver is imported); a package that is
not installed is listed as ``not installed``, never silently dropped.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import socket
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["PACKAGES", "provenance", "provenance_header"]

#: Distributions whose versions every summary states: the numerical stack, the readers, and every solver
#: package a backend or a comparison may use.
PACKAGES: tuple[str, ...] = (
    "optprune", "numpy", "scipy", "torch", "highspy", "onnx", "onnxruntime",
    "pyscipopt", "ortools", "pyomo", "cvxpy", "omlt", "torch-pruning",
)


def _cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (Linux), else :func:`platform.processor`."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _ram_gib() -> float | None:
    """Total physical memory in GiB (``/proc/meminfo``, else ``sysconf``), None when neither answers."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def _git_commit() -> dict | None:
    """``{"commit": sha, "dirty": bool}`` of the checkout optprune runs from, None outside a git checkout."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha, "dirty": bool(dirty)} if sha else None


def _versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def provenance(command: list[str] | None = None) -> dict:
    """Command line (default: ``sys.argv``), UTC date, machine, Python and package versions, as a dict.

    ``packages`` maps each name of :data:`PACKAGES` to its installed version,
    or None when it is not installed.
    """
    cmd = list(sys.argv if command is None else command)
    return {
        "command": shlex.join(cmd),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _versions(PACKAGES),
        "git": _git_commit(),
    }


def provenance_header(command: list[str] | None = None, info: dict | None = None) -> str:
    """The Markdown block every benchmark summary starts with (see module doc).

    ``command`` is the command line to state (default: ``sys.argv`` with the
    interpreter's name in front); ``info`` a dict from :func:`provenance` to
    render instead of measuring now (e.g. the one stored with the records).
    """
    if info is None:
        info = provenance([Path(sys.executable).name, *sys.argv] if command is None else command)
    packages = info.get("packages", {})
    installed = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    missing = ", ".join(k for k, v in packages.items() if not v)
    ram = info.get("ram_gib")
    git = info.get("git")
    code = []
    if git:
        code.append(f"- optprune commit: {git['commit']}" + (" (with uncommitted changes)" if git["dirty"] else ""))
    lines = [
        f"- command: `{info['command']}`",
        *code,
        f"- date (UTC): {info['date_utc']}",
        f"- machine: {info['hostname']}, {info['cpu']}, {info['logical_cores']} logical cores"
        + (f", {ram:g} GiB RAM" if ram is not None else "") + f" ({info['platform']})",
        f"- Python {info['python']}; {installed}" + (f"; not installed: {missing}" if missing else ""),
    ]
    return "\n".join(lines) + "\n"
