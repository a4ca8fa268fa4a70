"""Derived tables: series computed from stored tables, stored as versioned tables with lineage.

A ``Derived`` names an output table, its schema, the inputs it reads and the function that
computes one UTC day of it. ``materialise`` reads every input with ``select_pinned`` (so it
knows exactly which file versions it used), computes the day, writes it with
``Table.insert`` (a new version; earlier ones stay readable ``as_of`` earlier times), then
writes the lineage of that day to the table ``lineage_<name>``::

    lineage_<name>   day files; for one output (symbol, day) as materialised:
        one row per input file read (input_no >= 0), and one row for the output day
        itself (input_no = -1: its table, partition, version and data_hash as written)
        ts               the output day (00:00 UTC)
        output_version   version of the output file written (day, month or year file)
        input_no         position of the input in Derived.inputs; -1: the output
        input_table, input_symbol
        input_partition  first day of the input file's partition
        input_version, input_checksum, input_rows   the pinned file (version -1: no file)
        data_hash        sha256 of the rows actually read (all rows of that input: the
                         day, its lookback, the declared columns only); for the output
                         row, of the output day as written
        read_as_of       knowledge time the inputs were read at
        code             "<name>@<code_version>"

**Lineage is per day, whatever the output's partition.** A month or year file holds many
days, each materialised at its own time and later merged into one file version by
compaction, so "the file version holding the day" says nothing about which materialise
produced it. The output row's ``data_hash`` does: ``staleness`` reads the output day and
compares. Writing the lineage is a second commit after the output's: a crash in between
leaves an output day that no lineage describes, which ``staleness`` reports as stale.

``staleness`` re-reads the inputs and compares data hashes: an input corrected since the
output was computed (even with a new file version elsewhere in the same file) makes it
stale only if the rows it reads changed; the changed files are listed either way. A
``Source`` declares the columns it reads (``columns=("close",)``): then only changes to
those columns make the output stale (a corrected ``high`` does not reach an SMA of
closes). Chains work the same way: an SMA over derived 3-minute bars is stale once those
bars are re-materialised with different values.

**Names.** A derived table may take a built-in name (``ohlcv_3m`` for 3-minute bars) only
with the built-in schema (``tickstore.schemas.builtin_schema("ohlcv_3m")``): it then *is*
that table. Any other schema under a built-in name is refused when the ``Derived`` is
made, as are names starting with ``lineage_`` (reserved for lineage tables).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tickstore import Column, Schema
from tickstore.errors import UnknownTableError
from tickstore.schemas import builtin_schema

from .errors import ResearchError, StaleError

__all__ = ["Source", "Derived", "Materialised", "Staleness", "materialise", "lineage", "staleness", "read"]

_DAY = pd.Timedelta(days=1)
OUTPUT_ROW = -1  # input_no of the lineage row describing the output day itself

LINEAGE_COLUMNS = (
    Column("output_version", "int64"),
    Column("input_no", "int64"),
    Column("input_table", "str64"),
    Column("input_symbol", "str128"),
    Column("input_partition", "datetime"),
    Column("input_version", "int64"),
    Column("input_checksum", "str64"),
    Column("input_rows", "int64"),
    Column("data_hash", "str64"),
    Column("read_as_of", "datetime"),
    Column("code", "str64"),
)


@dataclass(frozen=True)
class Source:
    """One input of a derived table.

    ``symbol=None`` reads the output's own symbol. ``lookback`` reads that much event time
    before the day too (warm-up for rolling indicators); ``columns`` limits the read.
    """

    table: str
    symbol: str | None = None
    columns: tuple[str, ...] | None = None
    lookback: pd.Timedelta = pd.Timedelta(0)


@dataclass(frozen=True)
class Derived:
    """A derived table: ``compute(*input_frames, start=, end=)`` returns the rows of [start, end).

    Rows ``compute`` returns outside the day (e.g. warm-up rows) are dropped before writing.
    Bump ``code_version`` when ``compute`` changes meaning; it is recorded in the lineage.
    """

    name: str
    schema: Schema
    inputs: tuple[Source, ...]
    compute: Callable[..., pd.DataFrame] = field(compare=False)
    code_version: str = "1"

    def __post_init__(self):
        if self.schema.name != self.name:
            raise ResearchError(f"schema is named {self.schema.name!r}, derived table {self.name!r}")
        if not self.inputs:
            raise ResearchError(f"derived table {self.name!r} has no inputs")
        if self.name.startswith("lineage_"):
            raise ResearchError(f"derived table name {self.name!r}: names starting with 'lineage_' are reserved for lineage tables")
        if len(self.lineage_table) > 63:
            raise ResearchError(f"derived table name {self.name!r} is too long for its lineage table (max 54 chars)")
        builtin = _builtin(self.name)
        if builtin is not None and _shape(builtin) != _shape(self.schema):
            raise ResearchError(
                f"{self.name!r} is a built-in table (columns {builtin.names}, key {builtin.key}, "
                f"{builtin.partition.value} files); a derived table may use that name only with that schema "
                f"(tickstore.schemas.builtin_schema({self.name!r})), not columns {self.schema.names}, key "
                f"{self.schema.key}, {self.schema.partition.value} files; or choose another name"
            )

    @property
    def builtin(self) -> bool:
        """The output is a built-in table (e.g. ``ohlcv_3m``)."""
        return _builtin(self.name) is not None

    @property
    def lineage_table(self) -> str:
        return f"lineage_{self.name}"

    @property
    def code(self) -> str:
        return f"{self.name}@{self.code_version}"


def _builtin(name: str) -> Schema | None:
    try:
        return builtin_schema(name)
    except UnknownTableError:
        return None


def _shape(schema: Schema) -> tuple:
    """What makes two schemas the same table (descriptions and codecs aside)."""
    return (tuple(schema.columns), schema.key, schema.partition)


def _output_table(store, spec: Derived):
    return store[spec.name] if spec.builtin else store.create_table(spec.name, spec.schema)


@dataclass(frozen=True)
class Materialised:
    """What ``materialise`` did: the output commit, its lineage rows and the input pins."""

    commit: object  # tickstore.Commit
    lineage: pd.DataFrame
    pins: tuple


@dataclass(frozen=True)
class Staleness:
    """Whether a materialised day still matches its inputs."""

    stale: bool
    reasons: tuple[str, ...]  # human-readable, one per changed input / missing lineage


def _day(date) -> pd.Timestamp:
    ts = pd.Timestamp(date)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    if ts != ts.normalize():
        raise ResearchError(f"date {date!r} is not a UTC day (00:00)")
    return ts


def data_hash(frame: pd.DataFrame) -> str:
    """sha256 of a frame's index and values (stable across processes and runs)."""
    h = hashlib.sha256()
    h.update(",".join(map(str, frame.columns)).encode())
    h.update(pd.util.hash_pandas_object(frame, index=True).to_numpy().tobytes())
    return h.hexdigest()


def _read_inputs(store, spec: Derived, symbol: str, day: pd.Timestamp, as_of):
    frames, pins = [], []
    for src in spec.inputs:
        sel = store[src.table].select_pinned(
            src.symbol or symbol, day - src.lookback, day + _DAY, as_of=as_of, columns=list(src.columns) if src.columns else None
        )
        frames.append(sel.data)
        pins.append(sel.pin)
    return frames, pins


def _lineage_schema(spec: Derived) -> Schema:
    return Schema(spec.lineage_table, LINEAGE_COLUMNS, key=None, description=f"lineage of derived table {spec.name}")


def materialise(store, spec: Derived, symbol: str, date, *, as_of=None) -> Materialised:
    """Compute one UTC day of ``spec`` for ``symbol`` from its inputs and store it with lineage.

    Parameters
    ----------
    store : Tickstore
    spec : Derived
    symbol : str
        Output symbol (and the input symbol of ``Source(symbol=None)``).
    date : date-like
        The UTC day.
    as_of : None | time | snapshot name
        Knowledge time of the input reads (default: latest). The output is written now.

    Returns
    -------
    Materialised

    Raises
    ------
    ResearchError
        ``compute`` returned something that is not a frame.
    TickstoreError
        From the store (schema mismatch, bad symbol, ...).
    """
    day = _day(date)
    frames, pins = _read_inputs(store, spec, symbol, day, as_of)
    out = spec.compute(*frames, start=day, end=day + _DAY)
    if not isinstance(out, pd.DataFrame):
        raise ResearchError(f"{spec.code}: compute returned {type(out).__name__}, not a DataFrame")
    out = out.loc[(out.index >= day) & (out.index < day + _DAY), spec.schema.names]
    table = _output_table(store, spec)
    summary = "; ".join(
        f"{p.table}/{s} " + ",".join(f"{pd.Timestamp(f.partition, unit='D').date()}v{f.version}" for f in p.files if f.symbol == s)
        for p in pins for s in p.symbols
    )
    commit = table.insert(symbol, day, out, reason=f"derived {spec.code} from {summary}"[:256], source=f"derived:{spec.code}"[:64])
    (out_partition, out_version), = commit.versions
    out_version = int(out_version)
    # the day as a reader sees it once written (what staleness will hash)
    written = table.select(symbol, day, day + _DAY, as_of=commit.committed_at)
    read_as_of = pd.Timestamp(pins[0].as_of, unit="ns", tz="UTC")
    rows = [
        {
            "output_version": out_version,
            "input_no": OUTPUT_ROW,
            "input_table": spec.name,
            "input_symbol": symbol,
            "input_partition": pd.Timestamp(out_partition),
            "input_version": out_version,
            "input_checksum": "",
            "input_rows": len(written),
            "data_hash": data_hash(written),
            "read_as_of": read_as_of,
            "code": spec.code,
        }
    ]
    for no, (frame, pin) in enumerate(zip(frames, pins)):
        h = data_hash(frame)
        files = pin.files or (None,)
        for f in files:
            rows.append(
                {
                    "output_version": out_version,
                    "input_no": no,
                    "input_table": pin.table,
                    "input_symbol": f.symbol if f else pin.symbols[0],
                    "input_partition": pd.Timestamp(f.partition, unit="D", tz="UTC") if f else day,
                    "input_version": f.version if f else -1,
                    "input_checksum": f.checksum if f else "",
                    "input_rows": f.rows if f else 0,
                    "data_hash": h,
                    "read_as_of": read_as_of,
                    "code": spec.code,
                }
            )
    lin = pd.DataFrame(rows, index=pd.DatetimeIndex([day] * len(rows), name="ts"))
    for c in ("output_version", "input_no", "input_version", "input_rows"):
        lin[c] = lin[c].astype(np.int64)
    store.create_table(spec.lineage_table, _lineage_schema(spec)).insert(
        symbol, day, lin, reason=f"lineage of {spec.name} {day.date()} (v{out_version})", source=f"derived:{spec.code}"[:64]
    )
    return Materialised(commit, lin, tuple(pins))


def lineage(store, spec: Derived, symbol: str, date, *, as_of=None) -> pd.DataFrame:
    """The lineage rows of the output day as known at ``as_of`` (empty if never materialised);
    ``input_no`` -1 is the output day itself."""
    day = _day(date)
    if spec.lineage_table not in store.tables():
        return _lineage_schema(spec).empty_frame()
    return store[spec.lineage_table].select(symbol, day, day + _DAY, as_of=as_of)


def _output_version(store, spec: Derived, symbol: str, day: pd.Timestamp, as_of) -> int | None:
    """Version of the visible file holding ``day`` (lineage written before the output row
    existed: day files only, where that version identifies the day)."""
    v = store[spec.name].versions(symbol, day)
    if v.empty:
        return None
    t = store.resolve_as_of(as_of)
    if t is not None:
        t = pd.Timestamp(t, unit="ns", tz="UTC")
        v = v[(v["committed_at"] <= t) & (v["superseded_at"].isna() | (v["superseded_at"] > t))]
    else:
        v = v[v["superseded_at"].isna()]
    return int(v["version"].iloc[-1]) if len(v) else None


def staleness(store, spec: Derived, symbol: str, date, *, as_of=None) -> Staleness:
    """Does the stored output day still match what its inputs hold (as of ``as_of``)?

    Returns
    -------
    Staleness
        ``stale`` when the day was never materialised, no lineage describes the output
        day as stored (an interrupted materialise, or rows written by something else), or
        an input's rows (its declared columns) differ from those it was computed from;
        ``reasons`` says which.
    """
    day = _day(date)
    where = f"{spec.name} {symbol} {day.date()}"
    lin = lineage(store, spec, symbol, day, as_of=as_of)
    stored = spec.name in store.tables()
    output = store[spec.name].select(symbol, day, day + _DAY, as_of=as_of) if stored else None
    if lin.empty:
        if output is None or (output.empty and _output_version(store, spec, symbol, day, as_of) is None):
            return Staleness(True, (f"{where} was never materialised",))
        return Staleness(True, (f"{where} has no lineage (interrupted materialise?)",))
    own = lin[lin["input_no"] == OUTPUT_ROW]
    if len(own):
        if output is None or data_hash(output) != own["data_hash"].iloc[0]:
            return Staleness(True, (
                f"{where} differs from the output its lineage describes (v{int(own['output_version'].iloc[0])}, "
                f"{int(own['input_rows'].iloc[0])} rows; stored now: {0 if output is None else len(output)} rows): "
                "an interrupted materialise, or rows written by something else",
            ))
    else:  # lineage written before output rows were recorded: day files, matched by version
        version = _output_version(store, spec, symbol, day, as_of) if stored else None
        lin = lin[lin["output_version"] == version]
        if version is None or lin.empty:
            return Staleness(True, (f"{where} v{version} has no lineage (interrupted materialise?)",))
    frames, pins = _read_inputs(store, spec, symbol, day, as_of)
    reasons = []
    for no, (frame, pin) in enumerate(zip(frames, pins)):
        rec = lin[lin["input_no"] == no]
        src = spec.inputs[no]
        now_files = {(f.symbol, f.version, f.checksum) for f in pin.files}
        was_files = {(s, int(v), c) for s, v, c in zip(rec["input_symbol"], rec["input_version"], rec["input_checksum"]) if v >= 0}
        if rec.empty or data_hash(frame) != rec["data_hash"].iloc[0]:
            changed = sorted(f"v{v}" for _, v, _ in now_files - was_files)
            cols = f" (columns {list(src.columns)})" if src.columns else ""
            reasons.append(
                f"input {no} ({src.table}/{src.symbol or symbol}){cols} changed since {where} was computed"
                + (f": now reads file versions {changed}" if changed else "")
            )
    return Staleness(bool(reasons), tuple(reasons))


def read(store, spec: Derived, symbol: str, start=None, end=None, *, as_of=None, require_fresh: bool = False) -> pd.DataFrame:
    """Select the derived table; with ``require_fresh`` refuse if any day read is stale.

    Raises
    ------
    StaleError
        ``require_fresh`` and a day in [start, end) no longer matches its inputs.
    """
    frame = store[spec.name].select(symbol, start, end, as_of=as_of)
    if require_fresh:
        for day in pd.DatetimeIndex(frame.index.normalize().unique()):
            st = staleness(store, spec, symbol, day, as_of=as_of)
            if st.stale:
                raise StaleError(f"{spec.name} {symbol} {day.date()} is stale: {'; '.join(st.reasons)}; re-run materialise")
    return frame
