"""Shared by the soak benchmarks: ending a child process the way a service manager does."""

from __future__ import annotations

import signal
import subprocess


def stop_child(proc: subprocess.Popen, timeout: float) -> str:
    """SIGTERM ``proc`` (a collector stops cleanly on it), wait up to ``timeout`` seconds,
    then SIGKILL; returns what it printed on stdout."""
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out
