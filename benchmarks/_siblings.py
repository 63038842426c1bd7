"""Import another benchmark script by name, so benchmarks reuse each other's models and method lists, not copy them.

``benchmarks/`` is not a package: scripts run as ``python benchmarks/NAME.py`` (their folder first on
``sys.path``, so ``from _siblings import sibling`` works) and tests load them by file path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

__all__ = ["sibling"]


def sibling(name: str) -> ModuleType:
    """The module of ``benchmarks/<name>.py``, executed once per call under the name ``_bench_<name>``."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", Path(__file__).with_name(f"{name}.py"))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load benchmarks/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
