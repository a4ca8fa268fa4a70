"""The write transaction of a table: one (table, symbol) at a time, all or nothing.

Every write (``insert``, ``delete``, ``append``, ``ingest``, a merge, a prune) runs as::

    lock table -> finish or roll back a dead writer's intent -> validate everything
      -> write intent (paths about to appear/go) -> knowledge time t (StoreClock.next)
      -> write files (tmp, fsync, link; every row's knowledge time is t)
      -> replace the symbol's index (tmp, fsync, rename)   <- the commit point
      -> delete what a merge or prune dropped -> remove intent -> unlock

A ``kill -9`` before the commit point leaves files no index names; after it, files the
index no longer names. The next writer deletes both (they are listed in the intent). Any
other failure before the commit point (a full disk, a read-only file system: a
``StorageError``) rolls the write back at once, so the store is left as it was. A write
refuses to start when the symbol's index is missing while its data files exist (it would
reuse their version numbers): ``tickstore reindex`` first. A commit never replaces an
existing data file. The automatic compaction that follows a committed write never turns
it into an error: a failed merge is logged, rolled back and retried by the next write
(or ``compact()``).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import diskio
from .clock import MAX_NS, NS_PER_DAY, ns_to_timestamp
from .columns import Columns
from .compaction import auto_compact
from .errors import CorruptionError, StorageError, TickstoreError
from .index import ENTRY, REASON_BYTES, SOURCE_BYTES, index_path
from .intent import crash_point, intent_tmp, recover as recover_intent, write_intent
from .layout import data_path, encode_symbol, parse_data_path
from .schemas import Partition
from .splay import KT, FileMeta, write_file

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Commit", "Writer"]

log = logging.getLogger("tickstore")


@dataclass(frozen=True)
class Commit:
    """What a write did: one knowledge time, the versions it created, rows written/skipped."""

    table: str
    symbol: str
    committed_at: pd.Timestamp | None
    versions: tuple[tuple[pd.Timestamp, int], ...]  # (partition date, version)
    rows: int
    skipped: int = 0


class Writer:
    """The write transaction of one table (``Table._tx``); every method but ``intent_path``
    runs with the table lock held (``writing``)."""

    def __init__(self, table):
        self.table = table
        self.store = table.store
        self.name = table.name

    @property
    def schema(self):
        return self.table.schema  # the table's, even if replaced after this was made

    def nothing(self, symbol: str, skipped: int = 0) -> Commit:
        """The ``Commit`` of a write that wrote no rows (``skipped`` were held already)."""
        return Commit(self.name, symbol, None, (), 0, skipped)

    def entry(self, part: int, version: int, rows: Columns, meta: FileMeta, checksum: str, size: int):
        """The index row of a file just written."""
        e = np.zeros((), ENTRY)
        k0 = self.schema.key[0] if self.schema.key else "ts"
        n = len(rows)
        e["partition"], e["version"] = part, version
        e["committed_at"], e["superseded_at"] = meta.committed_at, MAX_NS
        e["op"] = meta.op.encode()
        e["rows"], e["first_ts"], e["last_ts"] = n, meta.first_ts, meta.last_ts
        e["kmin"] = int(rows[k0].min()) if n else 0
        e["kmax"] = int(rows[k0].max()) if n else 0
        e["size"], e["checksum"] = size, checksum.encode()
        e["reason"] = meta.reason.encode()[:REASON_BYTES]
        e["source"] = meta.source.encode()[:SOURCE_BYTES]
        e["kt_max"] = int(rows[KT].max()) if KT in rows.names and n else meta.committed_at
        return e

    def target(self, symbol: str, part: int, version: int) -> str:
        """The path of a new version, which must not exist yet (checked before the intent:
        a rollback deletes what the intent names)."""
        rel = data_path(self.name, self.schema.partition, part, symbol, version)
        if os.path.lexists(self.table._abs(rel)):
            raise CorruptionError(
                f"{rel} exists but the index of {self.name} {symbol} does not name it; a write never "
                f"replaces a data file: run `tickstore verify`, then `tickstore reindex {self.name}`"
            )
        return rel

    def write(self, symbol: str, rel: str, part: int, version: int, rows: Columns, *, committed_at: int, op: str,
              replaces: list[int], reason: str, source: str):
        """Write one version file; return its index row."""
        n = len(rows)
        meta = FileMeta(
            table=self.name,
            symbol=symbol,
            partition=self.schema.partition.value,
            partition_start=str(np.datetime64(part, "D")),
            version=version,
            committed_at=committed_at,
            op=op,
            replaces=tuple(replaces),
            reason=reason,
            source=source,
            rows=n,
            first_ts=int(rows["ts"][0]) if n else 0,
            last_ts=int(rows["ts"][-1]) if n else 0,
            schema=json.dumps(self.schema.to_json()),
        )
        checksum, size = write_file(
            Path(self.table._abs(rel)),
            rows,
            meta,
            complib=self.schema.complib,
            complevel=self.schema.complevel,
            shuffle=self.schema.shuffle,
            encoding=self.schema.encoding,
        )
        return self.entry(part, version, rows, meta, checksum, size)

    def commit(self, symbol, idx, plan, op, reason_b, source_b, *, skipped: int = 0) -> Commit:
        """Write one file per planned partition and publish them in one index update, at
        one new knowledge time.

        ``plan`` is ``[(partition, rows, versions it supersedes), ...]``.
        """
        for part, _, _ in plan:
            idx.check_damaged(part, part, what="write")
        versions = [idx.next_version(part) for part, _, _ in plan]
        targets = [self.target(symbol, part, v) for (part, _, _), v in zip(plan, versions)]
        intent = self.intent_path(symbol)
        diskio.makedirs(intent.parent)
        # readers as of a time >= floor wait for this commit (see intent.py); its time is
        # taken after the intent exists, so it is >= floor
        write_intent(intent, "commit", new=targets, floor=self.store._clock.floor())
        crash_point("commit:intent")
        now = self.store._clock.next(idx.last_commit + 1)
        new, supersede = [], {}
        for (part, rows, replaces), version, rel in zip(plan, versions, targets):
            new.append(self.write(symbol, rel, part, version, rows, committed_at=now, op=op, replaces=replaces,
                              reason=reason_b.decode(), source=source_b.decode()))
            crash_point("commit:file")
            supersede.setdefault(part, []).extend(replaces)
        new = np.array(new, ENTRY)
        self.store._indexes.put(idx.commit(new, supersede, now))  # the commit point
        crash_point("commit:published")
        intent.unlink()
        return Commit(
            self.name,
            symbol,
            ns_to_timestamp(now),
            tuple((ns_to_timestamp(int(p) * NS_PER_DAY), int(v)) for p, v in zip(new["partition"], new["version"])),
            int(new["rows"].sum()),
            skipped,
        )

    @contextmanager
    def writing(self, symbol: str):
        """One write of ``symbol``: the table lock, a dead writer's files rolled back, and
        no write without an index. A failure before the commit point deletes this write's
        files before it reaches the caller (nothing changed); an ``OSError`` that no layer
        turned into a ``StorageError`` is turned here."""
        with self.table._lock.hold():
            self.recover(symbol)
            self.check_writable(symbol)
            try:
                yield
            except BaseException as exc:
                try:
                    self.recover(symbol)
                except Exception:  # noqa: BLE001 - the next writer retries the rollback
                    log.warning("%s %s: rolling back a failed write failed; the next write retries", self.name, symbol, exc_info=True)
                if isinstance(exc, OSError):
                    raise StorageError.from_os(exc, getattr(exc, "filename", None) or self.table.dir, "writing") from None
                raise

    def check_writable(self, symbol: str) -> None:
        """Refuse to write a symbol whose index is missing while its data files exist: the
        writer would number versions from 1 again and ignore what is committed."""
        if os.path.lexists(index_path(self.store.root, self.name, symbol)):
            return
        depth = {Partition.DAY: 3, Partition.MONTH: 2, Partition.YEAR: 1}[self.schema.partition]
        for path in self.table.dir.glob("/".join(["[0-9]*"] * depth + [f"{encode_symbol(symbol)}_*.h5"])):
            try:
                if parse_data_path(str(path.relative_to(self.store.root)), self.schema.partition)[1] != symbol:
                    continue  # another symbol whose name extends this one with '_...'
            except TickstoreError:
                continue
            raise CorruptionError(
                f"{self.name} {symbol}: the index is missing but data files exist "
                f"(e.g. {path.relative_to(self.store.root)}); run `tickstore reindex {self.name}` to rebuild "
                f"it from the files before writing"
            )

    def compact_after_commit(self, symbol: str, touched: list[int]) -> None:
        """The automatic compaction after a committed write. Its failure (a full disk...)
        must not make the committed write look failed: a caller would retry it, and a table
        without a key would store the rows twice. Logged and rolled back; the next write of
        the symbol (or ``compact()``) merges again."""
        try:
            auto_compact(self.table, symbol, touched)
        except (TickstoreError, OSError):
            log.warning("%s %s: compaction after a committed write failed; retried by the next write", self.name, symbol, exc_info=True)
            try:
                self.recover(symbol)
            except Exception:  # noqa: BLE001 - the next writer retries the rollback
                log.warning("%s %s: rolling back the failed compaction failed", self.name, symbol, exc_info=True)

    def intent_path(self, symbol: str) -> Path:
        return self.table._intent_path(symbol)

    def recover(self, symbol: str) -> None:
        """Finish or roll back a write of ``symbol`` that died (lock held; see ``intent``)."""
        intent = self.intent_path(symbol)
        intent_tmp(intent).unlink(missing_ok=True)  # a writer died writing its intent
        if not intent.exists():
            return
        idx = self.table._index(symbol)
        if recover_intent(intent, {idx.path_of(e) for e in idx.entries}, self.store.root):
            for leftover in intent.parent.glob(f".{encode_symbol(symbol)}.h5.tmp-*"):
                leftover.unlink(missing_ok=True)
            diskio.fsync_dir(intent.parent)

    def drop_files(self, rels: list[str]) -> None:
        """Delete files the committed index no longer names (after a merge or prune).

        Not fsynced: a deletion a power cut undoes leaves a file no index names, which
        ``verify`` reports and a read never sees.
        """
        paths = [self.table._abs(r) for r in rels]
        self.store._files.discard(paths)
        for p in paths:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
            crash_point("drop:file")

