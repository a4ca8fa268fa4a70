"""Fixtures for the research tests: the real recorded data in ``shared/data``.

Tests that need a file skip when it is absent, except under ``CI=true`` where a missing
file is a failure (CI must run them all).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from research.datasets import data_dir



@pytest.fixture(scope="session")
def real_file():
    """``real_file(relative_path) -> Path`` or skip (fail under CI=true) when absent."""

    def get(rel: str) -> Path:
        path = data_dir() / rel
        if not path.exists():
            msg = f"real data file {path} is absent"
            if os.environ.get("CI") == "true":
                pytest.fail(msg + " (CI=true: data tests must run)")
            pytest.skip(msg)
        return path

    return get
