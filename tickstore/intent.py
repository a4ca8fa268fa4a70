"""Writes in progress: the intent file of a (table, symbol), recovery, and what readers make of it.

A writer holds the table lock and, before creating or deleting any file, writes
``<root>/<table>/_index/<sym>.intent`` (JSON)::

    {"kind": "commit" | "merge" | "prune",
     "pid": writer pid, "started": its start time (from /proc, to tell a reused pid),
     "floor": knowledge time the commit will be at or after (commit only),
     "new": [paths the write creates], "drop": [paths it deletes once committed]}

then writes its files, replaces the index (the commit point), deletes ``drop`` and removes
the intent. **Recovery** (the next writer of the symbol, lock held) applies one rule: every
listed path that the current index does not name is deleted, then the intent. That rolls
back a write that died before its commit point (its new files are not indexed, the files
it meant to drop still are) and finishes one that died after it (what it dropped is no
longer indexed)::

    kill -9 at:    intent written | files written | index replaced | drops deleted
    recovery:      nothing listed | new deleted   | drops deleted  | (nothing left)

**Readers** never lock. A ``commit`` intent announces a knowledge time >= ``floor`` that is
not published yet; a read as of T >= floor waits (milliseconds: the files being written)
until the index that publishes it is in place, or until its writer is found dead (then
it never will be). A read as of T therefore sees exactly the commits at or before T,
whatever is in flight. ``merge`` and ``prune`` intents change no as-of answer: readers
ignore them (a file they were about to read may vanish; the reader then re-reads the new
index, see ``Table._read``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .errors import LockedError, StorageError

__all__ = ["Intent", "write_intent", "read_intent", "intent_tmp", "recover", "await_commit", "crash_point"]


def _started(pid: int) -> str:
    """Start time of a process (clock ticks since boot), "" where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return stat.rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""


_SELF_STARTED: dict[int, str] = {}


def _self_started() -> str:
    pid = os.getpid()
    s = _SELF_STARTED.get(pid)
    if s is None:
        s = _SELF_STARTED[pid] = _started(pid)
    return s


class Intent(dict):
    """A parsed intent file (a dict with the keys of the module doc)."""

    @property
    def alive(self) -> bool:
        """Is the writer that wrote it still running?"""
        pid = int(self.get("pid", 0))
        if pid <= 0:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        started = self.get("started", "")
        return not started or _started(pid) in ("", started)


def write_intent(path: Path, kind: str, *, new=(), drop=(), floor: int = 0) -> None:
    """Record a write about to happen (not fsynced: it guards against a dead process,
    whose page cache survives; after a power loss a file it named may remain as a stray
    that ``verify`` reports)."""
    body = {"kind": kind, "pid": os.getpid(), "started": _self_started(), "floor": int(floor), "new": list(new), "drop": list(drop)}
    tmp = intent_tmp(path)
    try:
        tmp.write_bytes(json.dumps(body).encode())
        os.replace(tmp, path)  # a reader sees a whole intent or none
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError.from_os(exc, path, "writing the write intent") from None


def intent_tmp(path: Path) -> Path:
    """Where an intent is written before it is renamed into place (one writer per table at
    a time: one fixed name, which the next writer removes if a writer died right there)."""
    return path.with_name(f".{path.name}.tmp-w")


def read_intent(path: Path) -> Intent | None:
    """The intent at ``path``; None if there is none. An unreadable one (a writer died
    while writing it, before any file was touched) reads as an empty merge."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        body = json.loads(raw)
    except ValueError:
        return Intent(kind="merge", pid=0, new=[], drop=[])
    if isinstance(body, list):  # written before intents had a kind: the files of a commit
        return Intent(kind="commit", pid=0, floor=0, new=body, drop=[])
    return Intent(body)


def recover(path: Path, indexed: set[str], root: Path) -> bool:
    """Apply the recovery rule to the intent at ``path`` (writer lock held); True if there
    was one. ``indexed`` are the paths the current index names (relative to ``root``)."""
    intent = read_intent(path)
    if intent is None:
        return False
    for rel in [*intent.get("new", []), *intent.get("drop", [])]:
        if rel in indexed:
            continue
        p = root / rel
        for leftover in [p, *p.parent.glob(f".{p.name}.tmp-*")]:
            leftover.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    return True


def await_commit(path: Path, as_of: int, *, timeout: float, what: str) -> None:
    """Return once no commit at or before ``as_of`` is in flight for this intent path.

    Raises
    ------
    LockedError
        A live writer has kept it in flight for ``timeout`` seconds.
    """
    if not os.path.exists(path):  # the common case: one stat
        return
    deadline = time.monotonic() + timeout
    pause = 0.0005
    while True:
        intent = read_intent(path)
        if intent is None or intent.get("kind") != "commit" or int(intent.get("floor", 0)) > as_of or not intent.alive:
            return
        if time.monotonic() >= deadline:
            raise LockedError(
                f"{what}: a commit by pid {intent.get('pid')} has been in flight for over {timeout:g} s; "
                f"a read as of {as_of} must wait for it (retry, or read as of an earlier time)"
            )
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


# -- fault injection (tests) ----------------------------------------------------------------
# TICKSTORE_CRASH_AT="<point>[:<n>]" makes the process SIGKILL itself the n-th time (default
# 1st) it reaches ``crash_point(<point>)``: the crash test kills writers at every step of a
# commit, merge and prune deterministically instead of at a random instant.
_CRASH_AT = os.environ.get("TICKSTORE_CRASH_AT", "")
_crash_seen: dict[str, int] = {}


def crash_point(name: str) -> None:
    if not _CRASH_AT:
        return
    point, _, nth = _CRASH_AT.rpartition(":")
    if point != name:
        return
    _crash_seen[name] = _crash_seen.get(name, 0) + 1
    if _crash_seen[name] == int(nth or 1):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
