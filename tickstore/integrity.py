"""Verify the index against the files, and rebuild the index from the files alone.

Both derive index rows from files the same way (``_row``, ``_link``)::

    partition, version           the file's path
    committed_at, op, rows,      the file's own metadata (format 3: its checksummed layout)
    first_ts, last_ts,
    reason, source
    kmin, kmax                   its first key column (ts for tables without a key)
    kt_max                       the max of its ``_kt`` column, else its committed_at
    size, checksum               its bytes (sha256)
    superseded_at                the commit time of the earliest file of the same
                                 partition whose ``replaces`` names it and that was
                                 committed after it; open if none (a merge takes the
                                 window of its members, from the earliest one's commit:
                                 it replaces them, they are gone, it supersedes nothing)

``verify`` compares every field of every index row with what the files it names give,
checks that no data file lies on disk that no index names, and that the snapshots file
is what ``snapshot`` writes. It never takes the writer lock, so it can run while
collectors append: a file or temporary that appears during the check is a *write in
progress* if an intent names it or the index names it by the time it is looked at again
(reported as pending, not as a problem); an intent whose writer is still alive (it holds
the table lock) is a write in progress, one whose writer died is rolled back by the next
writer. A file a merge or prune dropped from the index but has not deleted yet (named in
the ``drop`` of an intent) is *reclaimable*, pending as well, and so is a prune that did
not finish. Only what is still unexplained after that is a problem.

Both check every chunk's xxh3 of every file (decompressing nothing), so a file damaged
before it was (re)indexed is found too, not only one that changed since.

``reindex`` rebuilds every symbol's index from the files alone, whatever state the old
index is in (garbage, truncated, missing): files that are not data files at all are
skipped and reported (never deleted); a data file that cannot be read (a damaged layout
or chunk, metadata naming another place than its path) is skipped, reported, and
recorded in its symbol's index as *damaged* (``index``): leaving it out silently would
change its partition's answer (the version it superseded would come back), so every read
and write of that partition raises ``CorruptionError`` naming it until the file is
restored or deleted and ``reindex`` runs again, and ``verify`` reports it; leftover temporaries are deleted and reported; the files of a write
that died before its commit point are deleted if the old index still loads and does not
name them, and kept (and reported) if the old index is unreadable, since they may be
committed data. Members of a merge still on disk (a merge killed before it deleted them)
are deleted: the merged file holds their rows.
"""

from __future__ import annotations

import fcntl
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clock import MAX_NS
from .diskio import TMP_MARK
from .errors import TickstoreError
from .index import ENTRY, REASON_BYTES, SOURCE_BYTES, SymbolIndex, index_path
from .layout import data_path, decode_symbol, parse_data_path
from .intent import read_intent
from .splay import KT, FileMeta, read_meta, sha256_file

__all__ = ["VerifyReport", "ReindexReport", "verify", "reindex"]

# index fields verify compares, in the order it reports them
_FIELDS = ("committed_at", "superseded_at", "op", "rows", "first_ts", "last_ts", "kmin", "kmax", "size", "checksum", "reason", "source", "kt_max")


@dataclass
class VerifyReport:
    files: int = 0
    problems: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [f"verified {self.files} files: {'clean' if self.ok else f'{len(self.problems)} problem(s)'}"]
        lines += [f"  problem: {p}" for p in self.problems]
        lines += [f"  pending: {p}" for p in self.pending]
        return "\n".join(lines)


@dataclass
class ReindexReport:
    """What ``reindex`` did: files indexed per table, files it left out and why, and the
    leftovers it deleted (temporaries, files of writes that died before committing)."""

    indexed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # recorded in their index (see the module doc)

    @property
    def ok(self) -> bool:
        return not self.skipped

    def __str__(self) -> str:
        lines = [f"{name}: {n} files indexed" for name, n in self.indexed.items()]
        lines += [f"  skipped: {s}" for s in self.skipped]
        lines += [f"  kept: {s}" for s in self.kept]
        lines += [f"  removed: {s}" for s in self.removed]
        return "\n".join(lines)


# -- files --------------------------------------------------------------------------------
def _walk(table_dir: Path):
    """Relative paths (from the store root) of every file under a table except its index
    folder and its own bookkeeping (``.lock``, ``_schema.json``)."""
    root = table_dir.parent
    for dirpath, dirnames, filenames in os.walk(table_dir):
        if dirpath == str(table_dir):
            dirnames[:] = [d for d in dirnames if d != "_index"]
            filenames = [f for f in filenames if f not in (".lock", "_schema.json")]
        for f in filenames:
            yield os.path.relpath(os.path.join(dirpath, f), root)


def _tmp_target(rel: str) -> str | None:
    """The name a temporary ``.<name>.tmp-<pid>`` is written for, None if not one."""
    head, _, name = rel.rpartition("/")
    if not name.startswith(".") or TMP_MARK not in name:
        return None
    target = name[1:].rsplit(TMP_MARK, 1)[0]
    return f"{head}/{target}" if head else target


def _intents(table_dir: Path) -> dict[Path, tuple[list[str], list[str]]]:
    """{intent file: (paths it creates, paths it drops)} (an unreadable intent names nothing)."""
    out = {}
    for path in sorted((table_dir / "_index").glob("*.intent")):
        try:
            intent = read_intent(path)
        except OSError:
            intent = None
        if intent is None:
            continue
        new, drop = intent.get("new", []), intent.get("drop", [])
        out[path] = (
            [t for t in new if isinstance(t, str)] if isinstance(new, list) else [],
            [t for t in drop if isinstance(t, str)] if isinstance(drop, list) else [],
        )
    return out


def _writer_alive(table_dir: Path) -> bool:
    """Does a live process hold the table's writer lock? (The kernel drops a dead one's.)"""
    try:
        fd = os.open(table_dir / ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops the lock if we got it
    return False


def _key_range(store, table, path: Path, rows: int) -> tuple[int, int]:
    if not rows:
        return 0, 0
    k0 = table.schema.key[0] if table.schema.key else "ts"
    keys = store._files.read(str(path), {k0: table.schema.disk_dtypes[k0]})[k0]
    return int(keys.min()), int(keys.max())


def _kt_max(store, path: Path, meta: FileMeta) -> int:
    """The latest row knowledge time of a file: its ``_kt`` column's max, else its commit."""
    if not meta.rows or not store._files.has_column(str(path), KT):
        return meta.committed_at
    return int(store._files.read(str(path), {KT: np.dtype("i8")})[KT].max())


def _row(store, table, part: int, meta: FileMeta, rel: str, *, contents: bool = True) -> np.ndarray:
    """The index row of one file, from the file alone (superseded_at open).

    ``contents``: also read the key range and the sha256 (else they stay zero/empty).
    """
    path = store.root / rel
    e = np.zeros(1, ENTRY)
    e["partition"], e["version"] = part, meta.version
    e["committed_at"], e["superseded_at"] = meta.committed_at, MAX_NS
    e["op"] = meta.op.encode()
    e["rows"], e["first_ts"], e["last_ts"] = meta.rows, meta.first_ts, meta.last_ts
    e["size"] = path.stat().st_size
    e["kt_max"] = meta.committed_at
    if contents:
        e["kmin"], e["kmax"] = _key_range(store, table, path, meta.rows)
        e["kt_max"] = _kt_max(store, path, meta)
        e["checksum"] = sha256_file(path).encode()
    e["reason"] = meta.reason.encode()[:REASON_BYTES]
    e["source"] = meta.source.encode()[:SOURCE_BYTES]
    if contents:
        store._files.check_chunks(str(path))  # every chunk, not only the key column's
    return e


def _link(rows: list[np.ndarray], metas: list[FileMeta], closed: dict[tuple[int, int], int]) -> np.ndarray:
    """One symbol's index rows sorted by (partition, version), each closed at the commit
    time of the earliest file of its partition that replaces it, or when the prune log
    says (``closed``: its superseder was pruned)."""
    entries = np.concatenate(rows) if rows else np.zeros(0, ENTRY)
    for i, e in enumerate(entries):
        at = closed.get((int(e["partition"]), int(e["version"])))
        if at is not None:
            entries["superseded_at"][i] = at
    for e, meta in zip(entries.copy(), metas):
        if meta.replaces:
            m = (entries["partition"] == e["partition"]) & np.isin(entries["version"], meta.replaces)
            m &= entries["committed_at"] < meta.committed_at
            entries["superseded_at"][m] = np.minimum(entries["superseded_at"][m], meta.committed_at)
    return entries[np.lexsort((entries["version"], entries["partition"]))]


def _show(name: str, v) -> str:
    if isinstance(v, bytes):
        return repr(v.decode("utf-8", "replace")[:24])
    if name in ("committed_at", "superseded_at", "first_ts", "last_ts") and int(v) != MAX_NS:
        return f"{int(v)} ({np.datetime64(int(v), 'ns')})"
    return str(v)


# -- verify -------------------------------------------------------------------------------
def verify(store, *, checksums: bool = True) -> VerifyReport:
    report = VerifyReport()
    _verify_snapshots(store, report)
    try:
        for r in store._retention.unfinished():
            report.pending.append(f"_retention.json: a prune before {np.datetime64(int(r['before']), 'ns')} did not finish (run it again)")
    except TickstoreError as exc:
        report.problems.append(str(exc))
    for name in store.tables():
        try:
            table = store[name]
        except TickstoreError as exc:
            report.problems.append(f"{name}: {exc}")
            continue
        _verify_table(store, table, checksums, report)
    return report


def _verify_snapshots(store, report: VerifyReport) -> None:
    try:
        store._load_snapshots()
    except TickstoreError as exc:
        report.problems.append(str(exc))


def _verify_table(store, table, checksums: bool, report: VerifyReport) -> None:
    name = table.name
    indexed: set[str] = set()
    unreadable: set[str] = set()  # symbols whose index is damaged: one problem, not one per file
    for sym_file in sorted((table.dir / "_index").glob("*.h5")):
        try:
            sym = decode_symbol(sym_file.stem)
        except TickstoreError:
            report.problems.append(f"{sym_file.relative_to(store.root)}: not the index of a symbol (foreign file)")
            continue
        try:
            idx = SymbolIndex.load(sym_file, name, sym, table.schema.partition)
        except TickstoreError as exc:
            report.problems.append(str(exc))
            unreadable.add(sym)
            continue
        indexed.update(_verify_symbol(store, table, idx, checksums, report))
        indexed.update(_verify_damaged(store, table, idx, report))
    strays = []
    for rel in _walk(table.dir):
        if rel in indexed:
            continue
        target = _tmp_target(rel)
        if target is None:
            try:
                if parse_data_path(rel, table.schema.partition)[1] in unreadable:
                    continue
            except TickstoreError:
                report.problems.append(f"{rel}: not a data file of table {name} (foreign file; reindex leaves it alone)")
                continue
        strays.append((rel, target))
    if strays:
        _verify_strays(store, table, strays, report)
    alive = _writer_alive(table.dir)
    intents = _intents(table.dir)
    for intent in intents:
        what = "a write in progress" if alive else "a write did not finish (the next writer rolls it back)"
        report.pending.append(f"{intent.relative_to(store.root)}: {what}")
    for tmp in sorted((table.dir / "_index").glob(f".*{TMP_MARK}*")):
        rel = tmp.relative_to(store.root)
        if alive or tmp.with_name(tmp.name[1:].split(TMP_MARK)[0]).with_suffix(".intent") in intents:
            report.pending.append(f"{rel}: an index being written")
        elif tmp.exists():
            report.problems.append(f"{rel}: leftover temporary of an index write (`tickstore reindex` removes it)")


def _verify_symbol(store, table, idx: SymbolIndex, checksums: bool, report: VerifyReport) -> set[str]:
    """Compare one symbol's index with the files it names; return their paths."""
    rels = [idx.path_of(e) for e in idx.entries]
    report.files += len(rels)
    if len(set(zip(idx.entries["partition"].tolist(), idx.entries["version"].tolist()))) != len(idx.entries):
        report.problems.append(f"{table.name} {idx.symbol}: the index names a version twice")
    rows, metas = [], []
    for e, rel in zip(idx.entries, rels):
        path = store.root / rel
        if not path.exists():
            if _still_indexed(store, table, idx.symbol, rel):
                report.problems.append(f"{rel}: version {int(e['version'])} is in the index but missing on disk")
            continue  # retired by a commit made while verifying
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = -1
        if size != int(e["size"]):
            if size < 0 and not _still_indexed(store, table, idx.symbol, rel):
                continue  # merged away or pruned while verifying
            report.problems.append(f"{rel}: size {size} != indexed {int(e['size'])} (file altered or truncated)")
            continue
        try:
            if checksums:
                got = sha256_file(path)
                if got != e["checksum"].decode("ascii", "replace"):
                    report.problems.append(
                        f"{rel}: sha256 {got[:16]}... != indexed {e['checksum'][:16].decode('ascii', 'replace')}... (file corrupted)"
                    )
                    continue
            meta = read_meta(path)
            if (meta.table, meta.symbol, meta.version) != (table.name, idx.symbol, int(e["version"])):
                report.problems.append(f"{rel}: the file says {meta.table} {meta.symbol} version {meta.version} (swapped or renamed)")
                continue
            row = _row(store, table, int(e["partition"]), meta, rel, contents=False)
            if checksums:
                row["kmin"], row["kmax"] = _key_range(store, table, path, meta.rows)  # checks every key chunk
                row["kt_max"] = _kt_max(store, path, meta)
                row["checksum"] = got.encode()
                store._files.check_chunks(str(path))  # a file damaged before it was indexed
            else:
                row["kmin"], row["kmax"], row["checksum"], row["kt_max"] = e["kmin"], e["kmax"], e["checksum"], e["kt_max"]
        except (TickstoreError, OSError) as exc:
            if not path.exists() and not _still_indexed(store, table, idx.symbol, rel):
                continue  # merged away or pruned while verifying
            report.problems.append(str(exc))
            continue
        rows.append(row)
        metas.append(meta)
    derived = _link(rows, metas, store._retention.closed(table.name, idx.symbol))  # superseded_at from the files
    stored = {(int(e["partition"]), int(e["version"])): e for e in idx.entries}
    for d in derived:
        e = stored[(int(d["partition"]), int(d["version"]))]
        bad = [f for f in _FIELDS if d[f] != e[f]]
        if bad:
            rel = idx.path_of(e)
            report.problems.append(
                f"{rel}: index disagrees with the file on "
                + ", ".join(f"{f} (index {_show(f, e[f])}, file {_show(f, d[f])})" for f in bad)
                + f"; `tickstore reindex {table.name}` rebuilds it"
            )
    return set(rels)


def _verify_damaged(store, table, idx: SymbolIndex, report: VerifyReport) -> set[str]:
    """One problem per damaged version an index records (``reindex`` left it out); return
    their paths (not strays: reindex will not adopt them)."""
    rels = set()
    for part, version, why in idx.damaged:
        rel = data_path(table.name, table.schema.partition, part, idx.symbol, version)
        rels.add(rel)
        state = "still on disk" if (store.root / rel).exists() else "no longer on disk"
        report.problems.append(
            f"{rel}: damaged ({why}), left out of the index by reindex ({state}): reads and writes of "
            f"{table.name} {idx.symbol} {np.datetime64(part, 'D')} raise until the file is restored or deleted "
            f"and `tickstore reindex {table.name}` runs"
        )
    return rels


def _still_indexed(store, table, symbol: str, rel: str) -> bool:
    """Does the index on disk now still name ``rel``? (It was missing when looked for.)"""
    try:
        idx = SymbolIndex.load(index_path(store.root, table.name, symbol), table.name, symbol, table.schema.partition)
    except TickstoreError:
        return True
    return rel in {idx.path_of(e) for e in idx.entries}


def _verify_strays(store, table, strays: list[tuple[str, str | None]], report: VerifyReport) -> None:
    """Files no index named when it was loaded. Look again, intents first and the index
    second: a writer writes its intent before its files and removes it only after its
    index is in place, so a file of a write in progress is named by one or the other."""
    named: set[str] = set()
    dropped: set[str] = set()
    for new, drop in _intents(table.dir).values():
        named.update(new)
        dropped.update(drop)
    indexes: dict[str, set[str] | None] = {}
    for rel, target in strays:
        if not (store.root / rel).exists():
            continue  # a temporary renamed, or a rolled-back file deleted meanwhile
        subject = target or rel
        if subject in dropped:
            report.pending.append(f"{rel}: merged or pruned, reclaimable (the next writer deletes it)")
            continue
        if subject in named:
            report.pending.append(f"{rel}: a write in progress (or one the next writer rolls back)")
            continue
        if target is not None:
            if target.startswith(f"{table.name}/_index/"):
                report.problems.append(f"{rel}: leftover temporary of an index write (`tickstore reindex` removes it)")
            else:
                report.problems.append(f"{rel}: leftover temporary of a data file (`tickstore reindex` removes it)")
            continue
        sym = parse_data_path(rel, table.schema.partition)[1]
        if sym not in indexes:
            try:
                idx = SymbolIndex.load(index_path(store.root, table.name, sym), table.name, sym, table.schema.partition)
                indexes[sym] = {idx.path_of(e) for e in idx.entries}
            except TickstoreError:
                indexes[sym] = None
        if indexes[sym] is not None and rel in indexes[sym]:
            report.pending.append(f"{rel}: committed while verifying")
            continue
        report.problems.append(f"{rel}: on disk but in no index (stray file; `tickstore reindex {table.name}` adopts it)")


# -- reindex ------------------------------------------------------------------------------
def reindex(store, tables: list[str] | None = None, symbols: list[str] | None = None) -> ReindexReport:
    """Rebuild every symbol index of ``tables`` (default all) from the files alone; with
    ``symbols``, only theirs.

    Never reads the old index except to tell whether the files of a write that died were
    committed. Unreadable and foreign files are skipped and reported, not deleted; an
    unreadable data file is recorded as damaged in its symbol's index (see the module
    doc). The store clock is raised past every commit the rebuilt indexes name.
    """
    report = ReindexReport()
    latest = 0
    for name in tables or store.tables():
        table = store[name]
        with table._lock.hold():
            n, last = _reindex_table(store, table, report, None if symbols is None else set(symbols))
            report.indexed[name] = n
            latest = max(latest, last)
            store._indexes.forget(name)
            store._files.close()  # handles of files that were replaced or removed
    # an index rebuilt after a power cut may name commits the clock's record lost
    store._clock.next(latest + 1, durable=True)
    return report


def _old_paths(store, table, symbol: str) -> set[str] | None:
    """Paths the old index of ``symbol`` names; None if it is missing or unreadable."""
    path = index_path(store.root, table.name, symbol)
    if not path.exists():
        return None
    try:
        idx = SymbolIndex.load(path, table.name, symbol, table.schema.partition)
    except TickstoreError:
        return None
    return {idx.path_of(e) for e in idx.entries}


def _reindex_table(store, table, report: ReindexReport, only: set[str] | None) -> tuple[int, int]:
    """Rebuild the indexes of one table (of the symbols in ``only``, default all); return
    (files indexed, the latest knowledge time they name)."""
    name, root = table.name, store.root
    intents = {p: v for p, v in _intents(table.dir).items() if only is None or _intent_symbol(p) in only}
    in_flight = {t for new, _ in intents.values() for t in new}
    dropped = {t for _, drop in intents.values() for t in drop}
    by_symbol: dict[str, list] = defaultdict(list)
    damaged: dict[str, list[tuple[int, int, str]]] = defaultdict(list)
    old: dict[str, set[str] | None] = {}
    for rel in sorted(_walk(table.dir)):
        target = _tmp_target(rel)
        if target is not None:
            if only is not None and _symbol_of(target, table) not in only:
                continue
            (root / rel).unlink(missing_ok=True)  # a write that died before its rename
            report.removed.append(f"{rel}: leftover temporary")
            continue
        try:
            _, sym, part, version = parse_data_path(rel, table.schema.partition)
        except TickstoreError:
            if only is None:
                report.skipped.append(f"{rel}: not a data file of table {name} (left in place)")
            continue
        if only is not None and sym not in only:
            continue
        if rel in dropped or rel in in_flight:
            # named by an intent and not by the old index: a write that died before its
            # commit point created it, or a merge or prune committed its removal
            if sym not in old:
                old[sym] = _old_paths(store, table, sym)
            if old[sym] is not None and rel not in old[sym]:
                (root / rel).unlink(missing_ok=True)
                why = "merged or pruned (its removal was committed)" if rel in dropped else "written by a write that died before its commit point"
                report.removed.append(f"{rel}: {why}")
                continue
        if rel in in_flight:
            if old[sym] is None:
                report.kept.append(f"{rel}: a write was in flight and the old index is unreadable; kept as committed")
        try:
            meta = read_meta(root / rel)
            if (meta.table, meta.symbol, meta.version) != (name, sym, version):
                raise _Foreign(f"its metadata says {meta.table} {meta.symbol} version {meta.version}")
            by_symbol[sym].append((part, meta, rel))
        except (TickstoreError, _Foreign) as exc:
            _damaged(report, damaged, sym, part, version, rel, exc)
    for tmp in (table.dir / "_index").glob(f".*{TMP_MARK}*"):
        if only is not None and _symbol_of(str(tmp.relative_to(root)), table) not in only:
            continue
        tmp.unlink(missing_ok=True)
        report.removed.append(f"{tmp.relative_to(root)}: leftover temporary")
    count = latest = 0
    for sym in sorted(set(by_symbol) | set(damaged)):
        items = by_symbol.get(sym, [])
        rows, metas = [], []
        # a merge's members still on disk: the merge took their window (it was committed
        # at or before them), unlike a correction or an older compaction (after them); a
        # merge whose own chunks are damaged does not count (its members keep their rows)
        merged: dict[tuple[int, int], int] = {}
        for part, meta, rel in items:
            if meta.op == "compact" and _chunks_ok(store, root / rel):
                for v in meta.replaces:
                    merged[(part, v)] = min(merged.get((part, v), MAX_NS), meta.committed_at)
        for part, meta, rel in items:
            if meta.committed_at >= merged.get((part, meta.version), MAX_NS):
                (root / rel).unlink(missing_ok=True)
                report.removed.append(f"{rel}: a member of a merge that was not deleted yet")
                continue
            try:
                rows.append(_row(store, table, part, meta, rel))  # every chunk checked
                metas.append(meta)
            except TickstoreError as exc:
                _damaged(report, damaged, sym, part, meta.version, rel, exc)
        if rows or damaged.get(sym):
            closed = store._retention.closed(name, sym)
            idx = SymbolIndex(name, sym, table.schema.partition, _link(rows, metas, closed), tuple(sorted(damaged.get(sym, ()))))
            store._indexes.put(idx)
            count += len(rows)
            latest = max(latest, idx.last_commit)
        by_symbol[sym] = rows or damaged.get(sym)
    for p in (table.dir / "_index").glob("*.h5"):
        try:
            sym = decode_symbol(p.stem)
        except TickstoreError:
            if only is None:
                report.skipped.append(f"{p.relative_to(root)}: not the index of a symbol (left in place)")
            continue
        if (only is None or sym in only) and not by_symbol.get(sym):
            p.unlink()  # the index of a symbol with no files
    for intent in intents:
        intent.unlink(missing_ok=True)
    return count, latest


def _damaged(report: ReindexReport, damaged: dict, sym: str, part: int, version: int, rel: str, exc: BaseException) -> None:
    """Record an unreadable data file: reported, left in place, and named in its symbol's
    index so that its partition is refused rather than read without it."""
    name = rel.rsplit("/", 1)[-1]
    why = str(exc).split(f"{name}:", 1)[-1].strip()[:200] or type(exc).__name__  # without the path
    damaged[sym].append((part, version, why))
    report.skipped.append(f"{rel}: unreadable, left out of the index and recorded as damaged ({exc})")
    report.damaged.append(rel)


def _chunks_ok(store, path: Path) -> bool:
    try:
        store._files.check_chunks(str(path))
    except TickstoreError:
        return False
    return True


def _intent_symbol(path: Path) -> str | None:
    try:
        return decode_symbol(path.stem)
    except TickstoreError:
        return None


def _symbol_of(rel: str, table) -> str | None:
    """The symbol a data or index path (or a temporary's target) belongs to, None if none."""
    if rel.startswith(f"{table.name}/_index/"):
        name = rel.rsplit("/", 1)[1]
        return _intent_symbol(Path(name[: -len(".h5")] if name.endswith(".h5") else name))
    try:
        return parse_data_path(rel, table.schema.partition)[1]
    except TickstoreError:
        return None


class _Foreign(Exception):
    pass
