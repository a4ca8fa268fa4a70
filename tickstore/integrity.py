"""Verify the index against the files, and rebuild the index from the files alone.

``verify`` checks, for every table and symbol: each indexed file exists, its checksum and
size match, its attributes agree with its index row (version, commit time, rows, op), and
no data file lies on disk that no index names. A write that died before its commit point
leaves files listed in an intent: those are reported as *pending* (the next writer of
that symbol deletes them), not as problems, because no read can ever see them.

``reindex`` replays the files' own attributes: files sorted by version per partition; a
file supersedes the versions its ``replaces`` attribute lists, at its own commit time.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clock import MAX_NS
from .errors import CorruptionError, TickstoreError
from .index import ENTRY, SymbolIndex, index_path
from .layout import parse_data_path
from .splay import read_meta, sha256_file

__all__ = ["VerifyReport", "verify", "reindex"]


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


def _data_files(table_dir: Path):
    """Relative paths (from the store root) of data files and temp files under a table."""
    root = table_dir.parent
    for dirpath, dirnames, filenames in os.walk(table_dir):
        dirnames[:] = [d for d in dirnames if d != "_index"]
        for f in filenames:
            if f.endswith(".h5") or ".h5.tmp-" in f:
                yield os.path.relpath(os.path.join(dirpath, f), root)


def _intent_targets(table_dir: Path) -> set[str]:
    out = set()
    for intent in (table_dir / "_index").glob("*.intent"):
        try:
            out.update(json.loads(intent.read_text()))
        except ValueError:
            continue
    return out


def verify(store, *, checksums: bool = True) -> VerifyReport:
    report = VerifyReport()
    for name in store.tables():
        try:
            table = store[name]
        except TickstoreError as exc:
            report.problems.append(f"{name}: {exc}")
            continue
        pending = _intent_targets(table.dir)
        indexed: set[str] = set()
        for sym in table.symbols():
            try:
                idx = store._indexes.get(name, sym, table.schema.partition)
            except TickstoreError as exc:
                report.problems.append(str(exc))
                continue
            for e in idx.entries:
                rel = idx.path_of(e)
                indexed.add(rel)
                report.files += 1
                _check_entry(store.root / rel, rel, e, checksums, report)
        for rel in _data_files(table.dir):
            if rel in indexed:
                continue
            base = rel.split("/")
            fname = base[-1]
            target = "/".join(base[:-1] + [fname[1:].split(".tmp-")[0]]) if ".tmp-" in fname else rel
            if target in pending:
                report.pending.append(f"{rel}: uncommitted write (rolled back by the next writer)")
            else:
                report.problems.append(f"{rel}: on disk but in no index (stray file; `tickstore reindex` adopts it)")
        for intent in (table.dir / "_index").glob("*.intent"):
            report.pending.append(f"{intent.relative_to(store.root)}: a write did not finish")
    return report


def _check_entry(path: Path, rel: str, e, checksums: bool, report: VerifyReport) -> None:
    v = int(e["version"])
    if not path.exists():
        report.problems.append(f"{rel}: version {v} is in the index but missing on disk")
        return
    size = path.stat().st_size
    if size != int(e["size"]):
        report.problems.append(f"{rel}: size {size} != indexed {int(e['size'])} (file altered or truncated)")
        return
    if checksums:
        got = sha256_file(path)
        if got != e["checksum"].decode():
            report.problems.append(f"{rel}: sha256 {got[:16]}... != indexed {e['checksum'].decode()[:16]}... (file corrupted)")
            return
    try:
        meta = read_meta(path)
    except TickstoreError as exc:
        report.problems.append(str(exc))
        return
    if (meta.version, meta.committed_at, meta.rows, meta.op) != (v, int(e["committed_at"]), int(e["rows"]), e["op"].decode()):
        report.problems.append(
            f"{rel}: attributes (version {meta.version}, committed {meta.committed_at}, rows {meta.rows}, {meta.op}) "
            f"disagree with the index"
        )


def reindex(store, tables: list[str] | None = None) -> dict[str, int]:
    """Rebuild every symbol index of ``tables`` (default all) from file attributes.

    Returns
    -------
    {table: number of files indexed}
    """
    out = {}
    for name in tables or store.tables():
        table = store[name]
        with table._lock.hold():
            pending = _intent_targets(table.dir)
            by_symbol: dict[str, list] = defaultdict(list)
            for rel in list(_data_files(table.dir)):
                if ".tmp-" in rel:
                    (store.root / rel).unlink()  # a write that died before its rename
                    continue
                _, sym, part, version = parse_data_path(rel, table.schema.partition)
                old = store._indexes.get(name, sym, table.schema.partition)
                if rel in pending and rel not in {old.path_of(e) for e in old.entries}:
                    (store.root / rel).unlink()  # never committed: roll it back
                    continue
                meta = read_meta(store.root / rel)
                if (meta.table, meta.symbol, meta.version) != (name, sym, version):
                    raise CorruptionError(f"{rel}: attributes say {meta.table} {meta.symbol} v{meta.version}")
                by_symbol[sym].append((part, meta, rel))
            existing = set(table.symbols())
            for sym, items in by_symbol.items():
                entries = np.zeros(len(items), ENTRY)
                items.sort(key=lambda x: (x[0], x[1].version))
                k0 = table.schema.key[0] if table.schema.key else "ts"
                for e, (part, meta, rel) in zip(entries, items):
                    e["partition"], e["version"] = part, meta.version
                    e["committed_at"], e["superseded_at"] = meta.committed_at, MAX_NS
                    e["op"] = meta.op.encode()
                    e["rows"], e["first_ts"], e["last_ts"] = meta.rows, meta.first_ts, meta.last_ts
                    if meta.rows:
                        keys = store._files.read(str(store.root / rel), {k0: table.schema.disk_dtypes[k0]})[k0]
                        e["kmin"], e["kmax"] = int(keys.min()), int(keys.max())
                    e["size"] = (store.root / rel).stat().st_size
                    e["checksum"] = sha256_file(store.root / rel).encode()
                    e["reason"] = meta.reason.encode()[:256]
                    e["source"] = meta.source.encode()[:64]
                for i, (part, meta, rel) in enumerate(items):
                    if meta.replaces:
                        m = (entries["partition"] == part) & np.isin(entries["version"], meta.replaces)
                        entries["superseded_at"][m] = meta.committed_at
                store._indexes.put(SymbolIndex(name, sym, table.schema.partition, entries))
            for sym in existing - set(by_symbol):
                index_path(store.root, name, sym).unlink()
            for intent in (table.dir / "_index").glob("*.intent"):
                intent.unlink()
            store._indexes.forget(name)
            out[name] = sum(len(v) for v in by_symbol.values())
    return out

