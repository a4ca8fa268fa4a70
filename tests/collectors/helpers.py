"""Shared helpers of the collector tests."""

from __future__ import annotations

import time


def wait_until(pred, timeout: float, what: str, *, poll: float = 0.02) -> None:
    """Poll ``pred`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
