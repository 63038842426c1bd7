"""Where a benchmark figure came from: command, code, date, wall time, machine and library versions.

Every folder a benchmark writes (``optprune bench``'s, each script's in
``benchmarks/``) goes through one code path: :func:`start_run` at the start of
the measurement, :meth:`Run.header` when the summary is written. The header
states

- the command, exactly as it remakes the folder (one command, output into that folder);
- the optprune git commit and whether the working tree was clean (tracked and
  untracked files outside ``results/``; ``optprune.formulations`` and
  ``optprune.solvers`` must come from the same checkout as ``optprune``);
- the date the measurement started (UTC) and the run's wall time; a run that
  resumed records from an earlier invocation says how many;
- the machine (hostname, CPU model from ``/proc/cpuinfo``, logical cores, RAM);
- Python and the versions of :data:`PACKAGES`, read from the installed
  distributions' metadata (no solver is imported), gurobipy included; a package
  that is not installed is listed as ``not installed``, never dropped.

A run whose output folder lies under the checkout's ``results/`` is refused
from a dirty tree (:class:`~optprune.errors.InvalidParameterError`) unless
``allow_dirty`` (``--allow-dirty``) is given, and then the header says so.
"""

from __future__ import annotations

import datetime
import importlib.util
import os
import platform
import shlex
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from optprune.errors import InvalidParameterError

__all__ = ["PACKAGES", "ROOT", "Run", "provenance", "provenance_header", "script_command", "start_run"]

#: Distributions whose versions every summary states: the numerical stack, the readers, and every solver
#: package a backend or a comparison may use.
PACKAGES: tuple[str, ...] = (
    "optprune", "numpy", "scipy", "torch", "highspy", "onnx", "onnxruntime",
    "pyscipopt", "ortools", "pyomo", "cvxpy", "omlt", "gurobipy", "gurobi-machinelearning", "torch-pruning",
)

#: The checkout optprune runs from (``optprune/bench/_provenance.py`` -> the repository root).
ROOT = Path(__file__).resolve().parents[2]

#: Paths the clean-tree check ignores: what benchmarks write.
_OUTPUTS = "results"


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


def _foreign_packages() -> list[str]:
    """``optprune.formulations`` / ``optprune.solvers`` imported from outside :data:`ROOT` (another checkout)."""
    foreign = []
    for name in ("optprune.formulations", "optprune.solvers"):
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin is not None and ROOT not in origin.parents:
            foreign.append(f"{name} from {origin.parent}")
    return foreign


def _git_state(root: Path = ROOT) -> dict | None:
    """``{"commit": sha, "dirty": bool, "changes": [...]}`` of the checkout at ``root``; None outside git.

    ``changes`` are ``git status --porcelain`` lines (tracked and untracked files, ``results/`` excluded),
    plus any package of optprune imported from another checkout.
    """
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", ".",
                                 f":(exclude){_OUTPUTS}"], capture_output=True, text=True, timeout=10,
                                check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if not sha:
        return None
    changes = [line for line in status.splitlines() if line.strip()]
    if root == ROOT:
        changes += _foreign_packages()
    return {"commit": sha, "dirty": bool(changes), "changes": changes}


def _versions(packages: tuple[str, ...]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def script_command(argv: list[str] | None = None) -> list[str]:
    """``python SCRIPT ARGS`` of this process (default ``sys.argv``), the script relative to :data:`ROOT`.

    The form the headers state, so it can be pasted back in the repository root.
    """
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve() if argv else Path("?")
    try:
        name = str(script.relative_to(ROOT))
    except ValueError:
        name = argv[0] if argv else "?"
    return ["python", name, *argv[1:]]


def provenance(command: list[str] | None = None) -> dict:
    """Command line (default: ``sys.argv``), UTC date, machine, code, Python and package versions, as a dict.

    ``packages`` maps each name of :data:`PACKAGES` to its installed version,
    or None when it is not installed; ``git`` is :func:`_git_state` (None
    outside a git checkout).
    """
    cmd = list(sys.argv if command is None else command)
    return {
        "command": shlex.join(cmd),
        "date_utc": _now_utc(),
        "hostname": socket.gethostname(),
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": _versions(PACKAGES),
        "git": _git_state(),
    }


def _wall(seconds: float) -> str:
    return f"{seconds:.0f} s" + (f" ({seconds / 60:.1f} min)" if seconds >= 60 else "")


def provenance_header(command: list[str] | None = None, info: dict | None = None) -> str:
    """The Markdown block every benchmark summary starts with (see module doc).

    ``command`` is the command line to state (default: :func:`script_command`);
    ``info`` a dict from :func:`provenance` (or :meth:`Run.info`) to render
    instead of measuring now. The wall-time line appears when ``info`` has
    ``wall_s``; the tree line says ``clean`` or ``dirty``.
    """
    if info is None:
        info = provenance(script_command() if command is None else command)
    packages = info.get("packages", {})
    installed = ", ".join(f"{k} {v}" for k, v in packages.items() if v)
    missing = ", ".join(k for k, v in packages.items() if not v)
    ram = info.get("ram_gib")
    git = info.get("git")
    lines = [f"- command: `{info['command']}`"]
    if git:
        lines.append(f"- optprune commit: {git['commit']}")
        if git["dirty"]:
            changes = git.get("changes", [])
            shown = "; ".join(c.strip() for c in changes[:5]) + ("; ..." if len(changes) > 5 else "")
            lines.append(f"- working tree: dirty ({len(changes)} changes outside results/"
                         + (f": {shown}" if shown else "") + ")"
                         + (", written with --allow-dirty" if info.get("allow_dirty") else ""))
        else:
            lines.append("- working tree: clean")
    else:
        lines.append("- optprune commit: unknown (not a git checkout)")
    lines.append(f"- date (UTC, start of the measurement): {info['date_utc']}")
    if info.get("wall_s") is not None:
        lines.append(f"- wall time: {_wall(info['wall_s'])}")
    if info.get("resumed"):
        done, total = info["resumed"]
        lines.append(f"- resumed: {done} of {total} records were measured by an earlier invocation (not included "
                     "in the date and wall time above)")
    lines += [
        f"- machine: {info['hostname']}, {info['cpu']}, {info['logical_cores']} logical cores"
        + (f", {ram:g} GiB RAM" if ram is not None else "") + f" ({info['platform']})",
        f"- Python {info['python']}; {installed}" + (f"; not installed: {missing}" if missing else ""),
    ]
    return "\n".join(lines) + "\n"


def _under_results(out: Path, root: Path = ROOT) -> bool:
    target = Path(out).resolve()
    results = (root / _OUTPUTS).resolve()
    return target == results or results in target.parents


class Run:
    """One benchmark run: its provenance taken at the start, its wall time at :meth:`header`.

    Made by :func:`start_run`; every benchmark writes its summary's header with
    :meth:`header` (measured when called, so call it when the summary is written).
    """

    def __init__(self, out: Path, command: list[str], allow_dirty: bool = False) -> None:
        self.out = Path(out)
        self.allow_dirty = allow_dirty
        self._started = time.perf_counter()
        self._info = provenance(command)
        self._info["allow_dirty"] = allow_dirty
        self._resumed: tuple[int, int] | None = None

    def check(self) -> Run:
        """Refuse a dirty (or non-git) tree when ``out`` lies under ``results/``, unless ``allow_dirty``."""
        git = self._info["git"]
        if self.allow_dirty or not _under_results(self.out):
            return self
        if git is None:
            raise InvalidParameterError(f"writing into {str(self.out)!r} (under results/) needs a git checkout "
                                        "to name the commit; got none (pass --allow-dirty to write anyway)")
        if git["dirty"]:
            raise InvalidParameterError(
                f"writing into {str(self.out)!r} (under results/) needs a clean working tree at commit "
                f"{git['commit'][:12]}; got {len(git['changes'])} changes outside results/ "
                f"({'; '.join(c.strip() for c in git['changes'][:5])}); commit them, or pass --allow-dirty "
                "(stamped in the header)")
        return self

    def resumed(self, done_before: int, total: int) -> None:
        """Note that ``done_before`` of ``total`` records come from an earlier invocation (stated in the header)."""
        self._resumed = (int(done_before), int(total)) if done_before else None

    @property
    def wall_s(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self._started

    def info(self) -> dict:
        """:func:`provenance`'s dict for this run, with ``wall_s`` (so far), ``allow_dirty`` and ``resumed``."""
        return {**self._info, "wall_s": self.wall_s, "resumed": self._resumed}

    def header(self) -> str:
        """:func:`provenance_header` of this run, wall time measured now."""
        return provenance_header(info=self.info())


def start_run(out: Path | str, command: list[str] | None = None, *, allow_dirty: bool = False) -> Run:
    """Start a run writing into ``out``: provenance now, and the clean-tree check (module doc).

    ``command`` is the command that remakes ``out`` (default: :func:`script_command`).
    Raises :class:`~optprune.errors.InvalidParameterError` for a dirty tree under ``results/``
    without ``allow_dirty``.
    """
    return Run(Path(out), script_command() if command is None else list(command), allow_dirty).check()
