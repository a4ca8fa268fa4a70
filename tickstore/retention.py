"""Retention: what ``Tickstore.prune(before=T)`` forgot, and the horizon reads respect.

Corrections and deletes keep their old versions (the audit trail) until a prune forgets
the versions that were visible at no knowledge time >= T and at no snapshot (snapshots
protect what they name). Reads as of a time before the latest such T then raise
``PrunedError`` instead of answering with less history than they would have had; a
snapshot's own time still reads as it always did.

``<root>/_retention.json`` records every prune (when, before, why, by whom, what it
removed, whether it finished)::

    {"horizon": T ns, "log": [{"at": ns, "before": ns, "reason": "...", "by": "pid@host",
                               "done": true, "versions": n, "files": n, "bytes": n}, ...]}

The record is written (atomically) *before* any index changes, so a read that loaded an
index a prune already changed always finds the horizon when it checks after reading;
each symbol's index is then replaced and its files deleted under the intent protocol
(``intent``), so a ``kill -9`` at any point leaves a store that opens and verifies, and a
second ``prune`` finishes the job.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from .clock import ns_to_timestamp
from . import diskio
from .errors import CorruptionError, PrunedError, StorageError

__all__ = ["Retention"]


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

    def check(self, as_of: int, protected) -> None:
        """Raise ``PrunedError`` if ``as_of`` lies before the horizon and is not one of the
        ``protected`` (snapshot) times."""
        h = self.horizon
        if as_of < h and as_of not in protected:
            raise PrunedError(
                f"as_of {ns_to_timestamp(as_of)} is before the prune horizon {ns_to_timestamp(h)}: "
                f"history before it was forgotten by `tickstore prune` (snapshots taken before it still read)"
            )

    def begin(self, before: int, reason: str, at: int) -> int:
        """Record a prune about to start (and move the horizon); return its log position."""
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

    def unfinished(self) -> list[dict]:
        return [r for r in self.load()["log"] if not r.get("done")]

    def _write(self, doc: dict) -> None:
        diskio.replace(self.path, [json.dumps(doc, indent=1).encode()])
        self._cache = None
