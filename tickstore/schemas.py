"""Table schemas: the fixed, validated columns of every table.

A frame going in or coming out of a table is indexed by event time: a ``DatetimeIndex``
named ``ts``, UTC, sorted (ties allowed). The columns below are the rest. On disk every
column is a fixed-width numpy type (datetimes as int64 nanoseconds since the epoch, UTC;
strings as fixed-width UTF-8 bytes), so no file ever holds a pickled object.

Built-in tables (see ``builtin_schema``); the clock each ``ts`` is (``TsClock``) in brackets::

    trades          recv_ts, trade_id:int64, price, qty, side:int8,      key trade_id
                    kind:int8 (``TradeKind``, default MARKET)            [exchange transaction time]
    agg_trades      recv_ts, agg_id:int64, first_trade_id:int64,         key agg_id
                    last_trade_id:int64, price, qty, side:int8           [exchange transaction time]
    quotes          recv_ts, update_id:int64, bid_px, bid_qty, ask_px, ask_qty   [exchange event time]
    book, book_<N>  recv_ts, update_id, bid_px_1..N, bid_qty_1..N, ask_px_1..N, ask_qty_1..N
                    (``book`` is N=5)                                     key ts  [exchange event time]
    book_diffs      recv_ts, first_update_id, update_id, prev_update_id, side, price, qty,
                    ordinal:int32 (position in the diff: bids then asks; -1 in files
                    written before it)   key ts, first_update_id, update_id, ordinal,
                    side, price, qty  [exchange event time]
    funding         rate (per interval), interval_h                       key ts  [exchange event time:
                    (year files: a few rows a day)                        the settlement time, on
                                                                          its whole hour]
    mark            recv_ts, mark_px, index_px, funding_rate, next_funding_ts   key ts  [event]
    open_interest   oi (contracts), oi_value (quote currency; inverse:    key ts  [exchange event time]
                    contracts x contract value in USD, on every path)
    liquidations    recv_ts, side, price, qty (month files)               [exchange transaction time]
                    what was executed: price = average fill price, qty = filled quantity
                    (Binance forceOrder ap/z, liquidationSnapshot average_price/
                    accumulated_fill_quantity; Bybit publishes only the bankruptcy price)
    ohlcv_<freq>    open, high, low, close, volume; ts is the bar open    key ts  [exchange event time]
                    (month files for sub-hour bars, year files for >= 1h)
    gaps            recv_ts, end_ts, stream:str, cause:str, detail:str   (the gap ledger)
                    (year files)                                          key: the whole row
                    [exchange event time of the stream; spans seen only by the local clock
                    (disconnects, restarts) are in receive time]

Where a venue's stream carries no exchange time at all (Binance spot ``bookTicker`` frames
that no depth frame covers, spot partial-book frames), the row's ``ts`` is its receive time
and ``recv_ts`` equals it, so such rows can always be told apart.

Column defaults: a column may declare a ``default`` (numeric columns only). A frame given
to ``insert``/``append`` without that column gets the default in every row, and files
written before the column was added to the schema read as the default, so frames and
files of an older schema keep working. ``trades.kind`` defaults to ``TradeKind.MARKET``,
``book_diffs.ordinal`` to -1 (rows written before it: their position is not known);
``select`` always returns them.

Each table's partition (how many days one file covers) fits its rate, so that reading
years does not mean opening thousands of tiny files. A store whose files were written
with another partition (a default changed since) keeps it: the index files say which.

Other tables are created with ``Tickstore.create_table(name, schema, partition=...)`` and
their schema is persisted as JSON beside their files.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import SchemaError, UnknownTableError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Column", "Partition", "Schema", "TradeKind", "TsClock", "builtin_schema", "BUILTIN_TABLES"]

# The on-disk integer that stands for "no time" is never written (NaT is refused), but
# the index uses it as +infinity for "not superseded".
DATETIME = "datetime64[ns, UTC]"


class TradeKind(enum.IntEnum):
    """What a trade print is: the ``kind`` column (int8) of ``trades``.

    Research (bars, VWAP, volatility) uses ``MARKET`` prints only unless asked otherwise:
    the other kinds are real prints, but not prices two parties chose on the order book.

    ========  =====  ===============================================================
    name      value  meaning and venue mapping
    ========  =====  ===============================================================
    MARKET    0      an ordinary order-book trade (Binance ``X=MARKET``; spot trades;
                     Bybit and Hyperliquid trades without a flag)
    LIQUIDATION 1    a liquidation print: the exchange's liquidation engine or
                     insurance fund took over a position (Binance ``X=INSURANCE_FUND``;
                     Hyperliquid trades whose fill says it is a liquidation)
    ADL      2       auto-deleveraging: a position closed against an opposite trader
                     at the bankruptcy price (Binance ``X=ADL``; Bybit ``execType``
                     ``AdlTrade``)
    BLOCK    3       a block / OTC print reported to the tape (Bybit ``BT=true``)
    OTHER    4       anything else the venue marks as not a market trade (Binance
                     ``X=NA``, unknown values of the venue's flag)
    ========  =====  ===============================================================
    """

    MARKET = 0
    LIQUIDATION = 1
    ADL = 2
    BLOCK = 3
    OTHER = 4


class TsClock(enum.Enum):
    """Which clock a table's ``ts`` index is (``Schema.clock``).

    ``EVENT``: exchange event time, when the exchange published the event (Binance ``E``,
    Bybit ``ts``, Hyperliquid ``time``); ``TRANSACTION``: exchange transaction time, when
    the matching engine executed it (Binance ``T``, Bybit trade ``T``); ``RECEIVE``: the
    collector's clock when the frame arrived (the ``recv_ts`` column of other tables).
    Every collector, loader and importer stamps a table's ``ts`` with the clock it declares.
    """

    EVENT = "exchange event time"
    TRANSACTION = "exchange transaction time"
    RECEIVE = "receive time"


class Partition(enum.Enum):
    """How many days one file covers."""

    DAY = "day"
    MONTH = "month"
    YEAR = "year"

    def floor(self, days: np.ndarray) -> np.ndarray:
        """Partition start (days since epoch) of each day (days since epoch)."""
        d = np.asarray(days, dtype="datetime64[D]")
        if self is Partition.DAY:
            return d.astype("i8")
        unit = "M" if self is Partition.MONTH else "Y"
        return d.astype(f"datetime64[{unit}]").astype("datetime64[D]").astype("i8")

    def end(self, start_day: int) -> int:
        """First day (days since epoch) after the partition starting at ``start_day``."""
        d = np.datetime64(int(start_day), "D")
        if self is Partition.DAY:
            return int(start_day) + 1
        unit = "M" if self is Partition.MONTH else "Y"
        return int((d.astype(f"datetime64[{unit}]") + 1).astype("datetime64[D]").astype("i8"))


@dataclass(frozen=True)
class Column:
    """One column: ``dtype`` is 'float64', 'int64', 'int8', 'datetime' or 'str<N>'.

    ``default`` (numeric columns only): the value of rows whose frame or file lacks the
    column (frames of an older schema, files written before the column existed).
    """

    name: str
    dtype: str
    default: float | int | None = None

    @property
    def is_datetime(self) -> bool:
        return self.dtype == "datetime"

    @property
    def is_str(self) -> bool:
        return self.dtype.startswith("str")

    @property
    def str_len(self) -> int:
        return int(self.dtype[3:])

    @property
    def disk_dtype(self) -> np.dtype:
        if self.is_datetime:
            return np.dtype("i8")
        if self.is_str:
            return np.dtype(f"S{self.str_len}")
        return np.dtype(self.dtype)

    @property
    def frame_dtype(self):
        if self.is_datetime:
            return DATETIME
        if self.is_str:
            return np.dtype(object)
        return np.dtype(self.dtype)

    def to_json(self) -> list:
        return [self.name, self.dtype] if self.default is None else [self.name, self.dtype, self.default]


# names are matched whole (fullmatch): "$" would accept a trailing newline
_COLUMN_DTYPE = re.compile(r"(float64|float32|int64|int32|int16|int8|uint8|bool|datetime|str[0-9]{1,4})")
_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")


@dataclass(frozen=True)
class Schema:
    """The fixed shape of one table.

    ``key`` names the columns ("ts" included) that identify a row: rows whose key is
    already stored are not appended twice. ``None`` means rows have no identity and
    identical rows are all kept.
    """

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] | None = None
    partition: Partition = Partition.DAY
    # Each column is its own compressed array (file format 2, see splay). Measured on 1M
    # trades (6 columns, 2 threads): lz4 level 1 compresses in 24 ms and decompresses in
    # 13 ms to 13.4 MB; level 5: 58 / 15 ms, 12.9 MB; blosclz 5: 39 / 10 ms, 14.6 MB;
    # zstd 1: 73 ms, 9.0 MB. Writes are on the live path, so the cheap level wins.
    complib: str = "blosc2:lz4"
    complevel: int = 1
    # "byte" or "bit". The built-in tables use "bit": on 1M trades (lz4-1, one thread)
    # 16.6 MB in 21 ms, decompressed in 12 ms, against 19.6 MB, 33 ms and 13 ms byte-
    # shuffled (prices of a tick grid: 1.5 vs 4.0 MB); a year of 1-minute bars 9.0 vs
    # 14.5 MB, 11 vs 26 ms. The default stays "byte" so that a stored custom schema
    # (``create_table``) compares equal to the one that made it.
    shuffle: str = "byte"
    # "delta": int64/datetime columns (and floats that are exact decimals, as scaled
    # integers) are stored as differences to the previous row, restarting every chunk, so
    # values that repeat row after row (book levels) cost almost nothing. "plain": as is.
    encoding: str = "plain"
    description: str = ""
    # which clock ``ts`` is; None: not declared (user tables that do not say)
    clock: TsClock | None = None
    _by_name: dict = field(default=None, compare=False, repr=False)  # type: ignore[assignment]

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise SchemaError(f"table name {self.name!r} must match {_NAME.pattern}")
        names = [c.name for c in self.columns]
        if "ts" in names:
            raise SchemaError(f"table {self.name!r}: 'ts' is the index, not a column")
        if len(set(names)) != len(names):
            raise SchemaError(f"table {self.name!r}: duplicate column names in {names}")
        for c in self.columns:
            if not isinstance(c.name, str) or not isinstance(c.dtype, str) or not _NAME.fullmatch(c.name) or not _COLUMN_DTYPE.fullmatch(c.dtype):
                raise SchemaError(
                    f"table {self.name!r}: column {c.name!r} has unsupported name or dtype "
                    f"{c.dtype!r} (dtypes: float64, int64, int8, ..., datetime, str<N>)"
                )
            if c.default is not None:
                if c.is_datetime or c.is_str or isinstance(c.default, bool) or not isinstance(c.default, (int, float)):
                    raise SchemaError(f"table {self.name!r}: column {c.name!r} ({c.dtype}) cannot have default {c.default!r}; defaults are numbers of numeric columns")
                if np.asarray(c.default).astype(c.disk_dtype) != c.default:
                    raise SchemaError(f"table {self.name!r}: default {c.default!r} of column {c.name!r} does not fit {c.dtype}")
        if self.clock is not None and not isinstance(self.clock, TsClock):
            raise SchemaError(f"table {self.name!r}: clock must be a TsClock, not {self.clock!r}")
        lib, _, codec = self.complib.partition(":")
        if lib != "blosc2" or codec not in ("blosclz", "lz4", "lz4hc", "zstd", "zlib"):
            raise SchemaError(f"table {self.name!r}: complib must be blosc2:<blosclz|lz4|lz4hc|zstd|zlib>, not {self.complib!r}")
        if not 0 <= self.complevel <= 9:
            raise SchemaError(f"table {self.name!r}: complevel must be 0..9, not {self.complevel!r}")
        if self.encoding not in ("plain", "delta"):
            raise SchemaError(f"table {self.name!r}: encoding must be 'plain' or 'delta', not {self.encoding!r}")
        if self.shuffle not in ("byte", "bit"):
            raise SchemaError(f"table {self.name!r}: shuffle must be 'byte' or 'bit', not {self.shuffle!r}")
        if self.key is not None:
            unknown = [k for k in self.key if k != "ts" and k not in names]
            if unknown or not self.key:
                raise SchemaError(f"table {self.name!r}: key {self.key!r} names unknown columns {unknown}")
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        try:
            return self._by_name[name]
        except KeyError:
            raise SchemaError(f"table {self.name!r} has no column {name!r}; columns are {self.names}") from None

    @property
    def defaults(self) -> dict[str, float | int]:
        """Column -> default, for the columns that declare one (see ``Column.default``)."""
        return {c.name: c.default for c in self.columns if c.default is not None}

    @property
    def disk_dtypes(self) -> dict[str, np.dtype]:
        """The on-disk dtype of every column: ``ts`` first, then the columns in order."""
        return {"ts": np.dtype("i8"), **{c.name: c.disk_dtype for c in self.columns}}

    def empty_frame(self, columns: list[str] | None = None) -> pd.DataFrame:
        import pandas as pd

        cols = self.columns if columns is None else [self.column(c) for c in columns]
        data = {c.name: pd.Series([], dtype=c.frame_dtype) for c in cols}
        return pd.DataFrame(data, index=pd.DatetimeIndex([], tz="UTC", name="ts"))

    # -- persistence (JSON, never pickle) -------------------------------------------------
    def to_json(self) -> dict:
        return {
            "name": self.name,
            "columns": [c.to_json() for c in self.columns],
            "key": list(self.key) if self.key is not None else None,
            "partition": self.partition.value,
            "complib": self.complib,
            "complevel": self.complevel,
            "shuffle": self.shuffle,
            "encoding": self.encoding,
            "description": self.description,
            "clock": self.clock.name.lower() if self.clock is not None else None,
        }

    @classmethod
    def from_json(cls, d: dict) -> "Schema":
        try:
            return cls(
                name=d["name"],
                columns=tuple(Column(*c) for c in d["columns"]),
                key=tuple(d["key"]) if d.get("key") is not None else None,
                partition=Partition(d.get("partition", "day")),
                complib=d.get("complib", "blosc2:lz4"),
                complevel=int(d.get("complevel", 1)),
                shuffle=d.get("shuffle", "byte"),
                encoding=d.get("encoding", "plain"),
                description=d.get("description", ""),
                clock=TsClock[d["clock"].upper()] if d.get("clock") else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise SchemaError(f"malformed schema description {d!r}: {exc}") from None


def _cols(spec: str) -> tuple[Column, ...]:
    """``"recv_ts:datetime kind:int8=0 price"`` -> columns (dtype float64 unless given)."""
    out = []
    for item in spec.split():
        item, _, default = item.partition("=")
        name, _, dtype = item.partition(":")
        out.append(Column(name, dtype or "float64", int(default) if default else None))
    return tuple(out)


def _book(n: int, name: str) -> Schema:
    levels = " ".join(
        f"{side}_{what}_{i}" for side in ("bid", "ask") for what in ("px", "qty") for i in range(1, n + 1)
    )
    return Schema(
        name,
        _cols(f"recv_ts:datetime update_id:int64 {levels}"),
        key=("ts",),
        # a 100 ms top-5 day (864,000 rows): 17 MB with deltas + bitshuffle + zstd-1,
        # 50 MB as plain lz4 rows (bench_live.py)
        complib="blosc2:zstd",
        complevel=1,
        shuffle="bit",
        encoding="delta",
        description=f"top-{n} order book snapshots (on a fixed time grid, or every partial-book frame)",
        clock=TsClock.EVENT,
    )


_BUILTIN_SHUFFLE = "bit"  # see Schema.shuffle; files record theirs, so older files read as they are
# _TRADES_DELTA: trades are stored 'delta' coded (prices and sizes as scaled integers). A
# 1M-trade day (benchmarks/bench_store.py data): 9.1 MB on disk instead of 15.9, insert
# (fsync included) 61 vs 83 ms median, a select of the day 9.5 vs 7.4 ms.
_FIXED = {
    "trades": Schema(
        "trades",
        _cols(f"recv_ts:datetime trade_id:int64 price qty side:int8 kind:int8={int(TradeKind.MARKET)}"),
        key=("trade_id",),
        description="every trade print; side +1 buyer aggressor, -1 seller; kind: TradeKind (0 market)",
        clock=TsClock.TRANSACTION,
        shuffle=_BUILTIN_SHUFFLE,
        encoding="delta",  # see _TRADES_DELTA
    ),
    "agg_trades": Schema(
        "agg_trades",
        _cols("recv_ts:datetime agg_id:int64 first_trade_id:int64 last_trade_id:int64 price qty side:int8"),
        key=("agg_id",),
        description=(
            "aggregated trades (Binance aggTrade): the fills of trade ids first..last at one price "
            "and taker side; market prints only (Binance aggregates no insurance-fund or ADL fills)"
        ),
        clock=TsClock.TRANSACTION,
        shuffle=_BUILTIN_SHUFFLE,
        encoding="delta",  # see _TRADES_DELTA
    ),
    "quotes": Schema(
        "quotes",
        _cols("recv_ts:datetime update_id:int64 bid_px bid_qty ask_px ask_qty"),
        key=("ts", "update_id"),
        description="best bid/ask (receive time where the stream carries no exchange time: ts == recv_ts)",
        clock=TsClock.EVENT,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "book_diffs": Schema(
        "book_diffs",
        _cols(
            "recv_ts:datetime first_update_id:int64 update_id:int64 prev_update_id:int64 "
            "side:int8 price qty ordinal:int32=-1"
        ),
        # A row is a level at a position of one diff: (ts, first/last update id, ordinal).
        # A diff may name one price twice (Binance's T_DEPTH files do): both rows are kept,
        # and replaying or importing the same diff again adds nothing, whichever path wrote
        # it first (recv_ts is not in the key). side/price/qty keep rows written before the
        # ordinal existed (ordinal -1, one row per distinct level of a diff) distinct.
        key=("ts", "first_update_id", "update_id", "ordinal", "side", "price", "qty"),
        description="raw order-book diffs, one row per price level in the order the venue sent them "
                    "(bids, then asks); ordinal: the row's position in its diff (-1: written before "
                    "ordinals); qty 0 removes the level",
        clock=TsClock.EVENT,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "funding": Schema(
        "funding",
        _cols("rate interval_h"),
        key=("ts",),
        partition=Partition.YEAR,  # 1,095 rows a year at 8 h (8,760 at 1 h)
        description="settled funding rates per interval; ts is the settlement time on its whole hour (the venue's "
                    "stamp, e.g. 08:00:00.002, rounded to the nearest hour by every writer: backfill, import, live)",
        clock=TsClock.EVENT,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "mark": Schema(
        "mark",
        _cols("recv_ts:datetime mark_px index_px funding_rate next_funding_ts:datetime"),
        key=("ts",),
        description="mark/index price and the predicted funding rate",
        clock=TsClock.EVENT,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "open_interest": Schema(
        "open_interest",
        _cols("oi oi_value"),
        key=("ts",),
        description=(
            "open interest: oi in contracts, oi_value in the quote currency (inverse/coin-margined "
            "contracts: contracts x the contract's USD value, e.g. Binance COIN-M BTC 100, Bybit 1)"
        ),
        clock=TsClock.EVENT,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "liquidations": Schema(
        "liquidations",
        _cols("recv_ts:datetime side:int8 price qty"),
        partition=Partition.MONTH,  # tens to thousands a day per symbol
        description=(
            "forced liquidations as executed: price the average fill price, qty the filled quantity "
            "(contracts; Binance ap and z, Bybit's published bankruptcy price and executed size); "
            "side +1 buy (short liquidated), -1 sell"
        ),
        clock=TsClock.TRANSACTION,
        shuffle=_BUILTIN_SHUFFLE,
    ),
    "gaps": Schema(
        "gaps",
        _cols("recv_ts:datetime end_ts:datetime stream:str64 cause:str32 detail:str200"),
        # a gap is its whole row: recording the same one again (a replay run twice) adds nothing
        key=("ts", "recv_ts", "end_ts", "stream", "cause", "detail"),
        partition=Partition.YEAR,  # a few rows a day
        description=(
            "gap ledger: disconnects, sequence breaks and resyncs; ts is the gap start "
            "(receive time where only the local clock saw the span: disconnects, restarts)"
        ),
        clock=TsClock.EVENT,
    ),
}

_BOOK = re.compile(r"book(?:_([0-9]{1,3}))?")
_OHLCV = re.compile(r"ohlcv_([0-9]{1,4})(s|m|h|d)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}

BUILTIN_TABLES = tuple(sorted(list(_FIXED) + ["book", "book_<N>", "ohlcv_<freq>"]))


def builtin_schema(name: str) -> Schema:
    """The schema of a built-in table name, e.g. ``trades``, ``book_20``, ``ohlcv_1m``."""
    if name in _FIXED:
        return _FIXED[name]
    m = _BOOK.fullmatch(name)
    if m:
        n = int(m.group(1) or 5)
        if not 1 <= n <= 500:
            raise UnknownTableError(f"book depth must be 1..500, got {name!r}")
        return _book(n, name)
    m = _OHLCV.fullmatch(name)
    if m:
        seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        if seconds == 0:
            raise UnknownTableError(f"bar frequency must be positive, got {name!r}")
        partition = Partition.MONTH if seconds < 3600 else Partition.YEAR
        return Schema(
            name,
            _cols("open high low close volume"),
            key=("ts",),
            partition=partition,
            description=f"{m.group(1)}{m.group(2)} OHLCV bars; ts is the bar open",
            clock=TsClock.EVENT,
            shuffle=_BUILTIN_SHUFFLE,
        )
    raise UnknownTableError(
        f"unknown table {name!r}; built-in tables are {', '.join(BUILTIN_TABLES)}; "
        f"create others with Tickstore.create_table(name, schema)"
    )
