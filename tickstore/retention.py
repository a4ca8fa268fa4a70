"""Retention: what ``Tickstore.prune(before=T)`` forgot, and the horizon reads respect.

Corrections and deletes keep their old versions (the audit trail) until a prune forgets
the versions that were visible at no knowledge time >= T and at no snapshot (snapshots
protect what they name). Reads as of a time before the latest such T then raise
``PrunedError`` instead of answering with less history than they would have had; a
snapshot's own time still reads as it always did.

``<root>/_retention.json`` records every prune (when, before, why, by whom, what it
removed, whether it finished), and the times at which kept versions were superseded by
versions a prune removed (a snapshot keeps v1, v2 that replaced it is pruned: the index
still closes v1 when v2 came, and ``reindex``, which has only the files, reads it here)::

    {"horizon": T ns, "log": [{"at": ns, "before": ns, "reason": "...", "by": "pid@host",
                               "done": true, "versions": n, "files": n, "bytes": n}, ...],
     "closed": {"<table> <symbol>": [[partition, version, superseded_at], ...]}}

The record is written (atomically) *before* any index changes, so a read that loaded an
index a prune already changed always finds the horizon when it checks after reading;
each symbol's index is then replaced and its files deleted under the intent protocol
(``intent``), so a ``kill -9`` at any point leaves a store that opens and verifies, and a
second ``prune`` finishes the job.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import diskio
from .clock import MAX_NS, ns_to_timestamp, to_ns
from .errors import CorruptionError, PrunedError, SnapshotError, StorageError
from .intent import crash_point, write_intent

__all__ = ["Retention", "prune"]


class Retention:
    """The prune log of one store root, cached until the file changes."""

    def __init__(self, root: Path):
        self.path = Path(root) / "_retention.json"
        self._cache: tuple[tuple, dict] | None = None

    def load(self) -> dict:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {"horizon": 0, "log": []}
        except OSError as exc:
            raise StorageError.from_os(exc, self.path, "reading the prune log") from None
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cache is not None and self._cache[0] == sig:
            return self._cache[1]
        try:
            doc = json.loads(self.path.read_bytes())
            doc["horizon"] = int(doc["horizon"])
            if not isinstance(doc["log"], list):
                raise TypeError("log is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"{self.path} is damaged ({exc}); it records what prune forgot: restore it from a backup") from None
        self._cache = (sig, doc)
        return doc

    @property
    def horizon(self) -> int:
        return self.load()["horizon"]

    def check(self, as_of: int, snapshot_times) -> None:
        """Raise ``PrunedError`` if ``as_of`` lies before the horizon and is not the time of
        a snapshot (``snapshot_times()`` lists them; called only then)."""
        h = self.horizon
        if as_of < h and as_of not in set(snapshot_times()):
            raise PrunedError(
                f"as_of {ns_to_timestamp(as_of)} is before the prune horizon {ns_to_timestamp(h)}: "
                f"history before it was forgotten by `tickstore prune` (snapshots taken before it still read)"
            )

    def begin(self, before: int, reason: str, at: int) -> int:
        """Record a prune about to start (and move the horizon); return its log position."""
        import socket  # here: only a prune names its host; socket costs every read ~3 ms

        doc = json.loads(json.dumps(self.load()))
        doc["log"].append(
            {"at": at, "before": before, "reason": reason, "by": f"{os.getpid()}@{socket.gethostname()}",
             "done": False, "versions": 0, "files": 0, "bytes": 0}
        )
        doc["horizon"] = max(doc["horizon"], before)
        self._write(doc)
        return len(doc["log"]) - 1

    def finish(self, i: int, *, versions: int, files: int, bytes_: int) -> dict:
        """Record a prune as done; earlier ones that did not finish (killed) and forgot no
        more than it did are done by it."""
        doc = json.loads(json.dumps(self.load()))
        mine = doc["log"][i]
        mine.update(done=True, versions=versions, files=files, bytes=bytes_)
        for r in doc["log"]:
            if not r["done"] and r["before"] <= mine["before"]:
                r.update(done=True, finished_by=mine["at"])
        self._write(doc)
        return mine

    def closed(self, table: str, symbol: str) -> dict[tuple[int, int], int]:
        """{(partition, version): superseded_at} of kept versions whose superseder was pruned."""
        rows = self.load().get("closed", {}).get(f"{table} {symbol}", [])
        return {(int(p), int(v)): int(t) for p, v, t in rows}

    def add_closed(self, table: str, symbol: str, facts: list[tuple[int, int, int]]) -> None:
        doc = json.loads(json.dumps(self.load()))
        known = doc.setdefault("closed", {}).setdefault(f"{table} {symbol}", [])
        have = {(p, v) for p, v, _ in known}
        known.extend([int(p), int(v), int(t)] for p, v, t in facts if (p, v) not in have)
        self._write(doc)

    def unfinished(self) -> list[dict]:
        return [r for r in self.load()["log"] if not r.get("done")]

    def _write(self, doc: dict) -> None:
        diskio.replace(self.path, [json.dumps(doc, indent=1).encode()])
        self._cache = None


def prune(store, before, reason: str) -> dict:
    """``Tickstore.prune``: record the horizon, then forget the versions of every symbol
    of every table visible at no time >= ``before`` and at no snapshot."""
    before_ns = to_ns(before, what="before")
    now = store._clock.now()
    if before_ns > now:
        raise SnapshotError(f"prune before {ns_to_timestamp(before_ns)} is later than now ({ns_to_timestamp(now)})")
    with store._snap_lock.hold():  # one prune at a time, and no snapshot list change meanwhile
        protected = np.array(sorted(set(store._snapshot_times())), dtype=np.int64)
        i = store._retention.begin(before_ns, reason, store._clock.now())
        crash_point("prune:recorded")
        versions = size = 0
        for name in store.tables():
            table = store[name]
            for sym in table.symbols():
                with table._tx.writing(sym):
                    v, b = _prune_symbol(table, sym, before_ns, protected)
                versions, size = versions + v, size + b
        return store._retention.finish(i, versions=versions, files=versions, bytes_=size)


def _prune_symbol(table, symbol: str, before: int, protected: np.ndarray) -> tuple[int, int]:
    """Forget the versions of ``symbol`` visible at no time >= ``before`` and at no
    ``protected`` time (lock held); return (versions, bytes) removed."""
    idx = table._index(symbol)
    e = idx.entries
    drop = e["superseded_at"] <= before
    # a partition with a damaged version is kept whole: its index is incomplete until
    # the file is restored or deleted and reindexed
    drop &= ~np.isin(e["partition"], [p for p, _, _ in idx.damaged])
    for t in protected:
        drop &= ~((e["committed_at"] <= t) & (t < e["superseded_at"]))
    if not drop.any():
        return 0, 0
    # kept versions closed by a version pruned now: only the prune log will say when
    kept = e[~drop]
    opened = {(int(p), int(c)) for p, c in zip(kept["partition"], kept["committed_at"])}
    facts = [(int(x["partition"]), int(x["version"]), int(x["superseded_at"])) for x in kept
             if x["superseded_at"] != MAX_NS and (int(x["partition"]), int(x["superseded_at"])) not in opened]
    if facts:
        table.store._retention.add_closed(table.name, symbol, facts)
    rels = [idx.path_of(x) for x in e[drop]]
    intent = table._tx.intent_path(symbol)
    write_intent(intent, "prune", drop=rels)
    crash_point("prune:intent")
    table.store._indexes.put(idx.without(drop))  # the commit point
    crash_point("prune:published")
    table._tx.drop_files(rels)
    intent.unlink()
    return int(drop.sum()), int(e["size"][drop].sum())
