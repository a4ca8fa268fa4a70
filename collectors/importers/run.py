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
         ``quotes``, ``mark``, ``open_interest``, ``book_diffs`` keep one stream per span (below);
         a liquidation equal to a stored one but for its receive time is held
         (``SAME_ROW_WITHOUT``: each path receives at its own time)
      5. the ledger (<root>/_imports/ledger.jsonl) records the file as done

An interrupted import resumes: files done are skipped by the ledger, and a file cut
short is parsed again, its partitions already stored gaining nothing.

One stream per span: ``quotes``, ``mark``, ``open_interest``, ``book_diffs``
(``ONE_STREAM_TABLES``). The key of these tables cannot tell the same row come by two
paths: quotes and diffs carry update ids only their own stream numbers (Binance's
bookTicker ``u``, a Bybit book's ``u``, Tardis' receive time in us, the ids an imported
book is anchored at: a Tardis day's diffs imported with ``--keep-diffs`` over the
collector's were each stored twice); mark and open interest are
keyed on ``ts`` alone, and each stream stamps and samples at its own times (Binance's
markPrice ``E`` every 1 or 3 s, Bybit's tickers ``ts``, Hyperliquid's receive time, Tardis'
derivative_ticker rows at the message that changed its ticker or at its open-interest
polls, Binance's 5-minute open-interest statistics in the archive's ``metrics`` files and
``openInterestHist`` bodies, the Hyperliquid archive's minute rows). Two streams of one
symbol would interleave: each change of the top, or a mark every 1 s between marks every
3 s, twice. So an imported file's rows of these tables are stored with their stream in
the source, ``import:<format> (<data kind>)`` with the data kind of the file (or archive
member) the rows came from (``import:tardis (book_ticker)``, ``import:tardis
(derivative_ticker)``, ``import:binance-vision (metrics)``), and, per table, symbol and
partition (a day), their rows inside the span ``[first, last]`` that the rows of any
*other* source already cover (the collector's, a replay's, a backfill's, another data
kind's or format's) are kept out, counted in ``FileReport.kept_out``; rows outside that
span are added. The same stream continuing (the next hour's archive file, the same data
kind in another file or archive, or the same series by another path: ``SAME_STREAM``,
Binance's open-interest statistics from a backfill, ``openInterestHist`` bodies or
``metrics`` files, Binance futures quotes from the collector, a capture or the archive's
``bookTicker`` files) is not kept out: its key decides, and fills the other's holes. A file with several
data kinds writing one table stores the first kind's rows first, the next kinds' outside
its span. To switch a day to another stream, delete the day's rows of that table first
(``Table.delete``); the ledger then lets the file be imported again.

A stream's span is read from the partition's visible files (``Table.versions``): it runs
from the first to the last row of all the files of that stream. A collector's flushes are
one stream (``live``, whatever journal position each file's source names); a merged file
(``Table.compact``) names the sources it joined (``a+b``, cut at the index's 64 bytes),
and an import's commit, which holds the partition's rows carried forward with its own,
names its stream and every other one the partition held (``import:tardis
(quotes)+live``): such a file counts for each stream it names over its whole span, so the
next file of the import's stream still stays out of the collector's span.
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
from tickstore.index import SOURCE_BYTES

from .core import (DataImportError, EmptyInput, Format, ImportOptions, Member, MissingOption, ReadBytes, Sink, damaged_input,
                   file_size, open_members)
from .detect import detect, parser_of

__all__ = ["import_files", "ImportReport", "FileReport", "LEDGER"]

LEDGER = "_imports/ledger.jsonl"
_REASON_BYTES = 256
#: Tables whose rows of one symbol and span come from one stream (module docstring): their
#: key cannot tell the same row come by two paths, so two streams would interleave.
ONE_STREAM_TABLES = {
    "quotes": "key (ts, update_id): each stream numbers its own quotes (Bybit u, Binance bookTicker u, "
              "Tardis the receive time in us, imported books their anchored ids)",
    "mark": "key ts: each stream stamps its own times (Binance markPrice E at 1 s or 3 s, Bybit tickers ts, "
            "Hyperliquid the receive time, Tardis the time of the message that changed its ticker, the "
            "Hyperliquid archive's minute)",
    "open_interest": "key ts: each stream samples at its own times (Bybit tickers ts, Tardis the ticker or its "
                     "REST poll, Binance's 5-minute statistics in metrics files and openInterestHist, the "
                     "Hyperliquid archive's minute)",
    "book_diffs": "key (ts, first/last update id, ordinal, level): each stream numbers its own diffs (the venue's "
                  "U/u on the live path, Tardis the anchored ids of its receive times, Binance's T_DEPTH "
                  "files their own time)",
}
#: Sources that are one stream of a ``ONE_STREAM_TABLES`` table whichever path brought them:
#: the same series, at the same times with the same values and ids, so when one of them is
#: imported the key decides between it and the others (the collector's outage is filled,
#: nothing is stored twice). Binance's open-interest statistics: ``tickstore backfill oi``
#: (source ``rest``: ccxt asks ``/futures/data/openInterestHist``), saved
#: ``openInterestHist`` bodies and the archive's ``metrics`` files (cut from the same
#: 5-minute series; an hourly backfill's rows are points of it). Binance futures quotes:
#: the collector's and a capture's (the ``bookTicker`` stream: its ``u``, stamped ``E``) and
#: the archive's ``bookTicker`` files (``update_id``, ``event_time``: the same frames; the
#: archive writes no other venue's quotes).
SAME_STREAM: dict[str, tuple[frozenset, ...]] = {
    "open_interest": (frozenset({"rest", "import:binance-rest (openInterestHist)", "import:binance-vision (metrics)"}),),
    "quotes": (frozenset({"live", "replay", "import:binance-vision (bookTicker)"}),),
}

#: Tables without a key whose rows are told apart without some columns: a liquidation's
#: receive time is each path's own (the collector's, Tardis' ``local_timestamp``, the
#: archive's none: ``recv_ts = ts``), while its time, side, price and quantity are the
#: same on every path (the table's convention), so the same print come by two paths would
#: be stored twice. An imported row equal to a stored one in every other column is held.
SAME_ROW_WITHOUT: dict[str, tuple[str, ...]] = {"liquidations": ("recv_ts",)}


def stream_of(table: str, source: str, own: str | None = None) -> str:
    """The stream rows of ``table`` stored with ``source`` belong to, as the import of stream
    ``own`` sees them: a collector's is ``live`` (whatever journal position its label names);
    a source of the ``SAME_STREAM`` family ``own`` is of is ``own``."""
    s = "live" if source == "live" or source.startswith(("live ", "live;")) else source
    if own is not None and s != own:
        for family in SAME_STREAM.get(table, ()):
            if s in family and own in family:
                return own
    return s


def streams_of(table: str, source: str, own: str) -> set[str]:
    """The streams (``stream_of``) of a stored version whose source is ``source``: one, or
    those of the files a merge joined (``Table.compact``: ``a+b+...``, cut at the index's 64
    bytes: a cut last label that begins a source of ``own``'s stream, or ``live``, is taken
    for it)."""
    parts = [p for p in source.split("+") if p]
    out = {stream_of(table, p, own) for p in parts[:-1]}
    if parts:
        last = parts[-1]
        cut = len(source.encode()) >= SOURCE_BYTES
        mine = {own}.union(*(f for f in SAME_STREAM.get(table, ()) if own in f))
        if cut and any(x.startswith(last) for x in mine):
            out.add(own)
        elif cut and ("live journal".startswith(last) or last.startswith("live")):
            out.add(stream_of(table, "live", own))
        else:
            out.add(stream_of(table, last, own))
    return out


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
        except Exception as exc:
            bad = damaged_input(m.where(), exc)
            if bad is None:
                raise
            raise bad from None
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
    # the bar counts each byte of a file once, however often its members read it
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
            read = ReadBytes()

            def on_read(at, n, read=read):
                bar.update(read.add(at, n))

            members = open_members(path, on_read)
            report = _import_one(store, path, members, found, options, digest, memory_rows, ledger, key, progress)
            bar.update(max(0, file_size(path) - read.total))
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
            sink.begin(det.kind)  # the rows of this member are of its data kind (their stream)
            try:
                parser_of(det.format)(members[i], det, options, sink)
            except Exception as exc:
                bad = damaged_input(members[i].where(), exc)
                if bad is None:
                    raise
                raise bad from None
        sink.close()
        reason = f"import {path.name} sha256:{digest[:16]}"
        if len(reason.encode()) > _REASON_BYTES:
            reason = f"import ...{path.name[-(_REASON_BYTES - 40):]} sha256:{digest[:16]}"
        kinds = ",".join(sorted({d.kind for _, d in found}))
        rows, held, targets = staging.write(reason, f"import:{fmt.value}", progress=progress)
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
    """Parsed frames per (table, symbol, partition, stream), in arrival order; spilled to
    Parquet files in a temporary folder once more than ``memory_rows`` rows are held. The
    stream of rows of ``ONE_STREAM_TABLES`` is the data kind of the member they came from
    (``Sink.kind``); other tables' rows have none (``""``)."""

    def __init__(self, store, folder: Path, memory_rows: int):
        self.store = store
        self.folder = folder
        self.memory_rows = int(memory_rows)
        self.items: dict[tuple[str, str, int, str], list] = {}
        self.counts: dict[tuple[str, str, int, str], int] = {}
        self.streams: dict[str, int] = {"": 0}  # stream -> order of first rows (the first is stored first)
        self.in_memory = 0
        self.spills = 0
        self.repeated = 0
        self.kept_out: dict[str, int] = {}
        self._symbols_of: dict[str, set] = {}
        self.symbols: set[str] = set()
        self.created: set[str] = set()
        self._tmp: Path | None = None

    def add(self, table: str, symbol: str, df: pd.DataFrame, schema=None, kind: str | None = None) -> None:
        if schema is not None and table not in self.created:
            if self.columns_of(table) is None:  # a table made by the user keeps its schema
                self.store.create_table(table, schema)
            self.created.add(table)
        schema = self.store[table].schema
        self.symbols.add(symbol)
        stream = (kind or "?") if table in ONE_STREAM_TABLES else ""
        self.streams.setdefault(stream, len(self.streams))
        days = df.index.asi8 // NS_PER_DAY
        parts = schema.partition.floor(days)
        if len(parts) and (parts == parts[0]).all():
            pieces = [((table, symbol, int(parts[0]), stream), df)]
        else:
            pieces = [((table, symbol, int(p), stream), df[parts == p]) for p in np.unique(parts)]
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

    def write(self, reason: str, source: str, *, progress: bool):
        """Ingest everything staged: per (table, symbol, stream), runs of partitions of up to
        ``memory_rows`` rows each in one commit (a lone partition may be larger).

        Rows of ``ONE_STREAM_TABLES`` are stored with their stream in the source
        (``<source> (<data kind>)``), the file's streams in the order they came; their rows
        inside another source's span of the partition are kept out (``kept_out``)."""
        from tqdm import tqdm

        rows: dict[str, int] = {}
        held: dict[str, int] = {}
        targets = []
        keys = sorted(self.items, key=lambda k: (k[0], k[1], self.streams[k[3]], k[2]))
        groups: list[list] = []
        for key in keys:
            last = groups[-1][0] if groups else None
            if last is not None and (last[:2], last[3]) == (key[:2], key[3]) and self._rows(groups[-1]) < self.memory_rows:
                groups[-1].append(key)
            else:
                groups.append([key])
        for group in tqdm(groups, desc="store", unit="commit", disable=not progress or len(groups) < 2, leave=False):
            table, symbol, _, stream = group[0]
            t = self.store[table]
            own = f"{source} ({stream})" if stream else source
            staged = []  # (partition key, rows, source of the commit)
            for k in group:
                piece, label = self._partition(t, k), own
                if stream:
                    piece, label = self._one_stream(t, symbol, k[2], piece, own)
                elif table in SAME_ROW_WITHOUT:
                    n = len(piece)
                    piece = self._not_held(t, symbol, k[2], piece, SAME_ROW_WITHOUT[table])
                    if n > len(piece):
                        held[table] = held.get(table, 0) + n - len(piece)
                staged.append((k, piece, label))
            # one commit per run of partitions with the same source
            runs: list[list] = []
            for item in staged:
                if runs and runs[-1][-1][2] == item[2]:
                    runs[-1].append(item)
                else:
                    runs.append([item])
            for run_ in runs:
                df = pd.concat([piece for _, piece, _ in run_])
                if not len(df):  # every row kept out or held: nothing to commit (the ledger still lists the partitions)
                    targets += [[table, symbol, k[2], None] for k, _, _ in run_]
                    continue
                commit = t.ingest(symbol, df, reason=reason, source=run_[0][2])
                if stream:  # the file's next stream of this table sees this one's span
                    self._stored_symbols(t).add(symbol)
                rows[table] = rows.get(table, 0) + len(df) - commit.skipped
                held[table] = held.get(table, 0) + commit.skipped
                written = {int(d.value // NS_PER_DAY): int(v) for d, v in commit.versions}
                targets += [[table, symbol, k[2], written.get(k[2])] for k, _, _ in run_]
        return rows, held, targets

    def _not_held(self, t, symbol: str, part: int, df: pd.DataFrame, without: tuple) -> pd.DataFrame:
        """``df`` without the rows the partition holds already, comparing every column but
        ``without`` (``SAME_ROW_WITHOUT``), as a multiset: ``n`` equal rows in ``df`` and
        ``m`` stored, ``n - m`` are new."""
        if not len(df) or symbol not in self._stored_symbols(t):
            return df
        start = pd.Timestamp(part * NS_PER_DAY, unit="ns", tz="UTC")
        end = pd.Timestamp(t.schema.partition.end(part) * NS_PER_DAY - 1, unit="ns", tz="UTC")
        stored = t.select(symbol, start, end)
        if not len(stored):
            return df
        cols = [c for c in t.schema.names if c not in without]

        def identity(frame):
            out = pd.DataFrame({c: frame[c].to_numpy() for c in cols})
            out["ts"] = frame.index.asi8
            return out

        new, old = identity(df), identity(stored)
        have = old.value_counts(dropna=False).rename("have").reset_index()
        occurrence = new.groupby(list(new.columns), sort=False, dropna=False).cumcount().to_numpy()
        count = new.merge(have, how="left", on=list(new.columns))["have"].fillna(0).to_numpy()
        return df[~(occurrence < count)]

    def _one_stream(self, t, symbol: str, part: int, df: pd.DataFrame, stream: str) -> tuple[pd.DataFrame, str]:
        """``df`` without its rows inside the span ``[first, last]`` that the visible rows of
        any other stream cover in this partition (one stream per span, module docstring),
        and the source of its commit: ``stream``, joined (``+``, as ``Table.compact`` joins
        the sources of the files it merges) by the other streams the partition holds, since
        an ingest's version holds the partition's rows carried forward with the new ones."""
        if not len(df) or symbol not in self._stored_symbols(t):
            return df, stream
        v = t.versions(symbol, pd.Timestamp(part * NS_PER_DAY, unit="ns", tz="UTC"))
        v = v[(v["superseded_at"].isna() & (v["operation"] != "delete") & (v["rows"] > 0)).to_numpy()]
        own = stream
        # each other stream's span: from the first to the last row of all its visible files
        # (a collector writes a file per flush, each labelled with its journal position; a
        # file holding several streams counts as each one's over its whole span)
        spans: dict[str, list[int]] = {}
        for source, first, last in zip(v["source"], v["first_ts"].array.asi8, v["last_ts"].array.asi8):
            for s in streams_of(t.name, source, own) - {own}:
                lo, hi = spans.get(s, (first, last))
                spans[s] = [min(lo, first), max(hi, last)]
        if not spans:
            return df, stream
        ts = df.index.asi8
        inside = np.zeros(len(df), dtype=bool)
        for lo, hi in spans.values():
            inside |= (ts >= lo) & (ts <= hi)
        if inside.any():
            self.kept_out[t.name] = self.kept_out.get(t.name, 0) + int(inside.sum())
            df = df[~inside]
        label = "+".join([stream] + sorted(spans)).encode()[:SOURCE_BYTES].decode("utf-8", "ignore")
        return df, label

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
