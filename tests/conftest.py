"""Shared fixtures: the real recorded data in ../shared/data, and stores on tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TICKSTORE_DATA", REPO.parent / "shared" / "data"))


def _need_data() -> Path:
    if DATA.is_dir():
        return DATA
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the shared data folder {DATA} is missing")
    pytest.skip(f"shared data folder {DATA} is absent")


@pytest.fixture
def data_dir() -> Path:
    """../shared/data; skips when absent, except under CI where it must exist."""
    return _need_data()


@pytest.fixture
def clock():
    from tickstore import FrozenClock

    return FrozenClock("2025-01-01T00:00:00Z")


@pytest.fixture
def store(tmp_path, clock):
    from tickstore import Tickstore

    with Tickstore(tmp_path / "store", clock=clock) as s:
        yield s
