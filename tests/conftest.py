"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def mnistfc():
    """The VNN-COMP 2021 mnistfc folder of the shared data, or a skip that says why it is absent."""
    from optprune.data import data_dir
    from optprune.errors import DataNotFoundError

    try:
        folder = data_dir() / "vnncomp2021-mnistfc"
    except DataNotFoundError as exc:
        pytest.skip(f"shared data folder absent: {exc}")
    if not folder.is_dir():
        pytest.skip(f"{folder} absent")
    return folder


@pytest.fixture(scope="session")
def benchmark_script():
    """A loader of ``benchmarks/<name>.py`` as a module (scripts import their siblings as top-level modules)."""
    import importlib.util
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "benchmarks"

    def load(name: str):
        sys.path.insert(0, str(bench))
        try:
            spec = importlib.util.spec_from_file_location(f"bench_{name}", bench / f"{name}.py")
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(bench))
        return module

    return load
