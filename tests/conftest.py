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
