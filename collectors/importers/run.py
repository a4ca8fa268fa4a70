"""``import_files``: detect, parse, stage and store files, resumably.

::

    paths ──(folders: every file under them, sorted; hidden and .CHECKSUM files left out)──> files
      0. per file: sha256, checked against a <file>.CHECKSUM beside it (Binance's archive)
      1. detect every file first (format, data kind, venue, market, symbol from its name and
         first bytes); a file that does not say enough stops the run before anything is
         written, with the option to pass (--format, --market, --symbol, --venue)
         (an empty file, or one with only a header row, is refused here too)
      2. per file: the ledger says it was imported with the same options and
         nothing it wrote was deleted since -> skipped (no parsing)
      3. parse the whole file into the staging area (memory, spilled to Parquet files under
         <root>/_imports/ past ``memory_rows``); a malformed line raises here, so nothing
         of that file is written
      4. per (table, symbol, partition): first row of a repeated key wins (as in the live
         collector), then ``Table.ingest(..., source="import:<format>",
         reason="import <file> sha256:<16 hex>")``: only rows the store does not hold are
         added, as a new version; a partition that gains nothing is not touched.
         ``quotes`` keep one stream per span (``ONE_STREAM_TABLES``, below)
      5. the ledger (<root>/_imports/ledger.jsonl) records the file as done

An interrupted import resumes: files done are skipped by the ledger, and a file cut
short is parsed again, its partitions already stored gaining nothing.

One quote stream per span. Quotes carry an update id only their own stream numbers
(Binance's bookTicker ``u``, a Bybit book's ``u``, Tardis' receive time in us, the ids an
imported book is anchored at), so the key ``(ts, update_id)`` cannot tell the same quote
come by two paths, and two streams of one symbol would interleave (a live collector's
Bybit quotes from orderbook.50 and Tardis' ``book_ticker`` from orderbook.1, 10 ms apart,
or Tardis' ``quotes`` and the quotes of its ``book_snapshot_25`` file: each change twice).
So an imported file's quotes are stored with the stream they come from in their source
(``import:<format> (<data kind>)``, e.g. ``import:tardis (book_ticker)``), and, per symbol
and day, its rows inside the span ``[first, last]`` the quotes of any *other* source
already cover (the collector's, a replay's, another file kind's) are kept out, counted in
``FileReport.kept_out``; rows outside that span are added. The same stream continuing (the
next hour's archive file, the same file again) is not kept out: its key decides. To
switch a day to another stream, delete the day's quotes first (``Table.delete``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from collectors.bookstate import BookStates
from collectors.replay import BOOK_STATE_FILE
from tickstore.clock import NS_PER_DAY
from tickstore.errors import TickstoreError

from .core import DataImportError, EmptyInput, Format, ImportOptions, Member, MissingOption, Sink, file_size, open_members
from .detect import detect, parser_of

__all__ = ["import_files", "ImportReport", "FileReport", "LEDGER"]

LEDGER = "_imports/ledger.jsonl"
_REASON_BYTES = 256
#: tables whose rows of one symbol and span come from one stream (see the module docstring)
ONE_STREAM_TABLES = ("quotes",)


@dataclass(frozen=True)
class FileReport:
    """One file: what it held and what the store gained from it."""

    path: str
    format: str
    kind: str  # the data kind detected (trades, klines, l2Book, ...)
    status: str  # "imported" (rows added), "unchanged" (everything was held), "skipped" (ledger)
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows added
    held: dict[str, int] = field(default_factory=dict)  # table -> rows the store already held
    repeated: int = 0  # rows dropped because an earlier row of the file had the same key
    symbols: tuple[str, ...] = ()
    sha256: str = ""
    kept_out: dict[str, int] = field(default_factory=dict)  # table -> rows in a span another stream covers


@dataclass(frozen=True)
class ImportReport:
    files: tuple[FileReport, ...]
    elapsed_s: float

    @property
    def rows(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            for t, n in f.rows.items():
                out[t] = out.get(t, 0) + n
        return out

    def summary(self) -> str:
        lines = []
        for f in self.files:
            added = ", ".join(f"{t} +{n}" for t, n in sorted(f.rows.items()) if n) or "nothing new"
            held = sum(f.held.values())
            extra = f"; {held} rows already stored" if held else ""
            extra += f"; {f.repeated} rows repeating a key dropped" if f.repeated else ""
            kept = ", ".join(f"{t} {n}" for t, n in sorted(f.kept_out.items()) if n)
            extra += f"; kept out as another stream's span: {kept}" if kept else ""
            lines.append(f"{f.status:<9} {f.path} [{f.format} {f.kind}] {', '.join(f.symbols)}: {added}{extra}")
        total = ", ".join(f"{t} +{n}" for t, n in sorted(self.rows.items()) if n) or "no new rows"
        lines.append(f"{len(self.files)} file(s) in {self.elapsed_s:.1f}s: {total}")
        return "\n".join(lines)


_CHECKSUM = ".checksum"


def _expand(paths) -> list[Path]:
    """The data files of ``paths`` (folders: every file under them, sorted). Hidden files
    and the ``.CHECKSUM`` files Binance's archive keeps beside each zip are not data: a
    checksum is verified against the file it names (``_verify_checksum``), never imported."""
    if isinstance(paths, (str, bytes, os.PathLike)):
        raise DataImportError(f"paths must be a list of files or folders, got a single {type(paths).__name__} {paths!r}; wrap it in [ ]")
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif p.exists():
            out.append(p)
        else:
            raise DataImportError(f"{p}: no such file or folder")
    data = [p for p in out if not p.name.lower().endswith(_CHECKSUM)]
    if not data:
        what = " (only .CHECKSUM files: they are checked against the file beside them, not imported)" if out else ""
        raise DataImportError(f"no files to import in {[str(p) for p in paths]}{what}")
    return data


def _verify_checksum(path: Path, digest: str) -> None:
    """A ``<file>.CHECKSUM`` beside ``path`` (``<sha256>  <file name>``, as Binance's archive
    publishes them, ``sha256sum`` format) must name ``path``'s sha256: a download cut short or
    damaged is refused before anything is written."""
    for sibling in (path.with_name(path.name + ".CHECKSUM"), path.with_name(path.name + ".checksum")):
        if sibling.is_file():
            break
    else:
        return
    try:
        first = sibling.read_text("utf-8", "replace").strip().split()
    except OSError as exc:
        raise DataImportError(f"cannot read {sibling}: {exc.strerror or exc}") from None
    want = first[0].lower() if first else ""
    if len(want) != 64 or any(c not in "0123456789abcdef" for c in want):
        raise DataImportError(f"{sibling}: not a sha256 checksum file like '<64 hex digits>  {path.name}'")
    if len(first) > 1 and first[1].lstrip("*") != path.name:
        raise DataImportError(f"{sibling} is the checksum of {first[1]!r}, not of {path.name!r}")
    if want != digest:
        raise DataImportError(f"{path}: sha256 {digest} differs from {want} in {sibling.name}: the file is damaged "
                              f"or incomplete (download it again); nothing was imported")


def _detect_file(path: Path, fmt, options) -> list:
    """``(member index, Detected)`` of the members of a file that hold data; a container's
    optional members (a cassette's other calls) that no format knows are left out."""
    found = []
    members = open_members(path)
    for i, m in enumerate(members):
        try:
            found.append((i, detect(m, fmt, options)))
        except (MissingOption, EmptyInput):
            if not m.optional:
                raise
    if not found:
        raise MissingOption(f"{path}: none of its {len(members)} parts is in a format the store imports; pass --format")
    return found


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def import_files(
    store,
    paths,
    *,
    format: Format | str | None = None,
    options: ImportOptions = ImportOptions(),
    progress: bool = True,
    force: bool = False,
    memory_rows: int = 5_000_000,
) -> ImportReport:
    """Import files (or folders of files) into ``store`` as the live collectors would store them.

    Parameters
    ----------
    paths
        A list of files or folders (every file under a folder, sorted by path).
    format
        A ``Format`` (or its value, e.g. ``"tardis"``) for every file; detected per file
        when ``None``.
    options
        ``ImportOptions``: market, symbol, venue, book levels/grid, ... for files that do
        not say them.
    force
        Parse files the ledger lists as done (the store still gains only what it lacks).
    memory_rows
        Rows held in memory before the staging area spills to disk.

    Raises
    ------
    MissingOption
        A file does not say its format, market, symbol or venue: the message names the
        option to pass. Raised before any file is written.
    MalformedInput
        A line or value that does not parse (file, line, value); nothing of that file is
        written (files before it are).
    DataImportError, TickstoreError
    """
    t0 = time.perf_counter()
    fmt = None
    if format is not None:
        try:
            fmt = Format(format)
        except ValueError:
            raise DataImportError(f"unknown format {format!r}; formats are {[f.value for f in Format]}") from None
    files = _expand(paths)
    plans = []
    for p in files:
        digest = sha256_of(p)
        _verify_checksum(p, digest)  # first: a damaged download says so, not "not a zip"
        plans.append((p, _detect_file(p, fmt, options), digest))
    root = Path(store.root)
    ledger = _Ledger(root / LEDGER)
    from tqdm import tqdm  # here: the library is usable without a terminal

    reports = []
    total = sum(file_size(p) for p in files)
    with tqdm(total=total, unit="B", unit_scale=True, desc="import", disable=not progress) as bar:
        for path, found, digest in plans:
            fmt_of = found[0][1].format
            # what the file means, not only its bytes: equal files under other names
            # (a spot and a futures candle file) import to other symbols
            key = options.key() + "".join(f"|{d.kind}:{d.symbol}:{d.market}:{sorted(d.hints.items())}" for _, d in found)
            if not force and ledger.done(store, digest, fmt_of.value, key):
                bar.update(file_size(path))
                reports.append(FileReport(str(path), fmt_of.value, found[0][1].kind, "skipped", sha256=digest))
                continue
            read = [0]

            def on_read(n, read=read):
                read[0] += n
                bar.update(n)

            members = open_members(path, on_read)
            report = _import_one(store, path, members, found, options, digest, memory_rows, ledger, key, progress)
            bar.update(max(0, file_size(path) - read[0]))
            reports.append(report)
    return ImportReport(tuple(reports), time.perf_counter() - t0)


def _import_one(store, path: Path, members: list[Member], found: list, options, digest, memory_rows, ledger, key, progress):
    fmt = found[0][1].format
    staging = _Staging(store, Path(store.root) / "_imports", memory_rows)
    try:
        sink = Sink(staging.add, book_table=found[0][1].book_table(options))
        sink.columns_of = staging.columns_of
        sink.book_states = states = BookStatesAfterCommit(Path(store.root) / BOOK_STATE_FILE)
        for i, det in found:
            parser_of(det.format)(members[i], det, options, sink)
            sink.flush()
        sink.close()
        reason = f"import {path.name} sha256:{digest[:16]}"
        if len(reason.encode()) > _REASON_BYTES:
            reason = f"import ...{path.name[-(_REASON_BYTES - 40):]} sha256:{digest[:16]}"
        source = f"import:{fmt.value}"
        kinds = ",".join(sorted({d.kind for _, d in found}))
        rows, held, targets = staging.write(reason, source, progress=progress, stream=f"{source} ({kinds})")
        states.commit()  # the books as this file left them, now that its rows are stored
    finally:
        staging.close()
    ledger.add(store, digest, path, fmt.value, key, targets)
    status = "imported" if any(rows.values()) else "unchanged"
    return FileReport(str(path), fmt.value, kinds, status, rows, held, staging.repeated, tuple(sorted(staging.symbols)),
                      digest, dict(staging.kept_out))


class BookStatesAfterCommit:
    """The store's book state (``collectors.bookstate``) as the replays of one file see it:
    read from the file, with what they saved on top, written only by ``commit`` (after the
    file's rows are stored: a failed import leaves the books where the last one did)."""

    def __init__(self, path: Path):
        self.file = BookStates(path)
        self.pending: dict = {}

    @staticmethod
    def _newer(new: dict, old: dict | None) -> bool:
        return old is None or int(new.get("last_ts", -1)) >= int(old.get("last_ts", -1))

    def load(self) -> tuple[dict, dict]:
        books, meta = self.file.load()
        for key, state in self.pending.items():
            if self._newer(state, books.get(key)):
                books[key] = state
        return books, meta

    def save(self, books: dict, **_) -> int:
        for key, state in books.items():
            if self._newer(state, self.pending.get(key)):
                self.pending[key] = state
        return len(books)

    def commit(self) -> None:
        if self.pending:
            self.file.save(self.pending)
            self.pending = {}


class _Staging:
    """Parsed frames per (table, symbol, partition), in arrival order; spilled to Parquet
    files in a temporary folder once more than ``memory_rows`` rows are held."""

    def __init__(self, store, folder: Path, memory_rows: int):
        self.store = store
        self.folder = folder
        self.memory_rows = int(memory_rows)
        self.items: dict[tuple[str, str, int], list] = {}
        self.counts: dict[tuple[str, str, int], int] = {}
        self.in_memory = 0
        self.spills = 0
        self.repeated = 0
        self.kept_out: dict[str, int] = {}
        self._symbols_of: dict[str, set] = {}
        self.symbols: set[str] = set()
        self.created: set[str] = set()
        self._tmp: Path | None = None

    def add(self, table: str, symbol: str, df: pd.DataFrame, schema=None) -> None:
        if schema is not None and table not in self.created:
            if self.columns_of(table) is None:  # a table made by the user keeps its schema
                self.store.create_table(table, schema)
            self.created.add(table)
        schema = self.store[table].schema
        self.symbols.add(symbol)
        days = df.index.asi8 // NS_PER_DAY
        parts = schema.partition.floor(days)
        if len(parts) and (parts == parts[0]).all():
            pieces = [((table, symbol, int(parts[0])), df)]
        else:
            pieces = [((table, symbol, int(p)), df[parts == p]) for p in np.unique(parts)]
        for key, piece in pieces:
            self.items.setdefault(key, []).append(piece)
            self.counts[key] = self.counts.get(key, 0) + len(piece)
        self.in_memory += len(df)
        if self.in_memory > self.memory_rows:
            self._spill()

    def columns_of(self, table: str) -> list | None:
        """The columns of ``table`` if it is built in or was created, else None."""
        try:
            return self.store[table].schema.names
        except TickstoreError:
            return None

    def _spill(self) -> None:
        if self._tmp is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix=f"staging-{os.getpid()}-", dir=self.folder))
        for k, items in self.items.items():
            frames = [x for x in items if isinstance(x, pd.DataFrame)]
            if not frames:
                continue
            self.spills += 1
            target = self._tmp / f"{self.spills:06d}.parquet"
            pd.concat(frames).to_parquet(target)
            # keep order: everything in memory for this key was received before what follows
            self.items[k] = [x for x in items if not isinstance(x, pd.DataFrame)] + [target]
        self.in_memory = 0

    def _frame(self, items: list) -> pd.DataFrame:
        return pd.concat([x if isinstance(x, pd.DataFrame) else pd.read_parquet(x) for x in items])

    def write(self, reason: str, source: str, *, progress: bool, stream: str | None = None):
        """Ingest everything staged: per (table, symbol), runs of partitions of up to
        ``memory_rows`` rows each in one commit (a lone partition may be larger).

        ``stream``: the source of rows of ``ONE_STREAM_TABLES`` (the file's stream), whose
        rows inside another source's span of the day are kept out (``kept_out``)."""
        from tqdm import tqdm

        rows: dict[str, int] = {}
        held: dict[str, int] = {}
        targets = []
        keys = sorted(self.items)
        groups: list[list] = []
        for key in keys:
            if groups and groups[-1][0][:2] == key[:2] and self._rows(groups[-1]) < self.memory_rows:
                groups[-1].append(key)
            else:
                groups.append([key])
        for group in tqdm(groups, desc="store", unit="commit", disable=not progress or len(groups) < 2, leave=False):
            table, symbol = group[0][:2]
            t = self.store[table]
            one = stream is not None and table in ONE_STREAM_TABLES
            df = pd.concat([self._one_stream(t, symbol, k[2], self._partition(t, k), stream) if one
                            else self._partition(t, k) for k in group])
            if not len(df):  # every row kept out: nothing to commit (the ledger still lists the partitions)
                targets += [[table, symbol, part, None] for _, _, part in group]
                continue
            commit = t.ingest(symbol, df, reason=reason, source=stream if one else source)
            rows[table] = rows.get(table, 0) + len(df) - commit.skipped
            held[table] = held.get(table, 0) + commit.skipped
            written = {int(d.value // NS_PER_DAY): int(v) for d, v in commit.versions}
            targets += [[table, symbol, part, written.get(part)] for _, _, part in group]
        return rows, held, targets

    def _one_stream(self, t, symbol: str, part: int, df: pd.DataFrame, stream: str) -> pd.DataFrame:
        """``df`` without its rows inside the span ``[first, last]`` that the visible rows of
        any other source cover in this partition (one stream per span, module docstring)."""
        if not len(df) or symbol not in self._stored_symbols(t):
            return df
        v = t.versions(symbol, pd.Timestamp(part * NS_PER_DAY, unit="ns", tz="UTC"))
        v = v[v["superseded_at"].isna() & (v["operation"] != "delete") & (v["rows"] > 0) & (v["source"] != stream)]
        if not len(v):
            return df
        ts = df.index.asi8
        inside = np.zeros(len(df), dtype=bool)
        for _, span in v.groupby("source", sort=False):
            inside |= (ts >= span["first_ts"].min().value) & (ts <= span["last_ts"].max().value)
        if inside.any():
            self.kept_out[t.name] = self.kept_out.get(t.name, 0) + int(inside.sum())
            df = df[~inside]
        return df

    def _stored_symbols(self, t) -> set:
        """The symbols ``t`` held before this file (a symbol only this file adds has no other stream)."""
        if t.name not in self._symbols_of:
            self._symbols_of[t.name] = set(t.symbols())
        return self._symbols_of[t.name]

    def _rows(self, group) -> int:
        return sum(self.counts[k] for k in group)

    def _partition(self, t, key) -> pd.DataFrame:
        """One partition's rows in arrival order, stably sorted by ts, the first row of a
        repeated key kept (what the live collector does with a batch)."""
        df = self._frame(self.items[key]).sort_index(kind="stable")
        self.items[key] = []
        if t.schema.key is not None:
            cols = [k for k in t.schema.key if k != "ts"]
            flat = pd.DataFrame({c: df[c].to_numpy() for c in cols})
            if "ts" in t.schema.key:
                flat["ts"] = df.index.asi8
            dup = flat.duplicated(keep="first").to_numpy()
            if dup.any():
                self.repeated += int(dup.sum())
                df = df[~dup]
        return df

    def close(self) -> None:
        self.items.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)


class _Ledger:
    """``<root>/_imports/ledger.jsonl``: one JSON line per file imported to its end."""

    def __init__(self, path: Path):
        self.path = path

    def _entries(self):
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        for line in text.splitlines():
            try:
                yield json.loads(line)
            except ValueError:
                continue  # a line cut by a crash: that file was not recorded as done

    def done(self, store, digest: str, fmt: str, key: str) -> bool:
        """True when the file was imported with the same options and nothing it touched
        was deleted since (a delete makes the next import bring the rows back)."""
        for e in self._entries():
            if e.get("sha256") != digest or e.get("format") != fmt or e.get("options") != key:
                continue
            ok = True
            for table, symbol, part, _versions in e.get("targets", []):
                hist = store[table].versions(symbol, pd.Timestamp(int(part) * NS_PER_DAY, unit="ns", tz="UTC"))
                later = hist[hist["committed_at"] > pd.Timestamp(e["completed_ns"], unit="ns", tz="UTC")]
                if (later["operation"] == "delete").any():
                    ok = False
                    break
            if ok:
                return True
        return False

    def add(self, store, digest: str, path: Path, fmt: str, key: str, targets) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"sha256": digest, "file": str(path), "format": fmt, "options": key,
                           "completed_ns": store.clock.now_ns(), "targets": targets}) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
