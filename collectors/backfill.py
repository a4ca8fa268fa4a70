"""History backfill through ccxt: funding, OHLCV, trades and open interest, day by day.

::

    backfill(store, Kind.FUNDING, "BTC/USDT:USDT", exchange="binance",
             start="2023-01-01", end="2023-02-01")            # -> BackfillReport

The range ``[start, end)`` is cut into UTC days. Days the store already holds complete
are skipped (resume after an interruption costs nothing); the rest are fetched in chunks
of a few days, each chunk paginated to the end, then stored one day at a time::

    days      |d1 |d2 |d3 |d4 |d5 |d6 |         d2, d3 complete in the store: skipped
    chunks    [d1]    [d4  d5  d6]               runs of missing days, <= ~1 page each
    pages     [==>][==>][==>]  (Binance, Hyperliquid: oldest first from startTime)
              [<==][<==][<==]  (Bybit: newest first down from endTime)

Pagination: each page's edge timestamp is requested again (inclusive) and rows are
de-duplicated on their key, so ties at an edge (many trades in one ms) are neither lost
nor doubled; a full page that brings nothing new raises ``BackfillError`` instead of
looping. Binance aggregated trades (``agg_trades``: Binance's REST serves no other public
trade history) are paged by aggregate id (``fromId``), which has no ties.

Each fetched day is compared with what the store shows for it; only a difference makes
a new version (``insert(..., source="rest", reason="backfill <kind> <day>")``), so an
identical re-backfill writes nothing and a corrected value shows up in ``versions``.
``recv_ts`` of trades is the fetch time, so it is left out of the comparison.

Completeness, for resume: a day is complete when the backfill ledger (the
``backfill_ledger`` table: one row per symbol, day and kind, with the time it was marked)
says it was fetched whole, or an insert of source ``rest`` whose reason is ``backfill
<what> <day>`` is in its partition's history (stores backfilled before the ledger), and
no delete came in its partition after that. The ledger is needed because compaction
merges the files of a month or year partition (funding, bars), and the per-day inserts
leave the index with them. Days not yet over at fetch time are stored with reason
``... partial``, not marked, and fetched again next time. ``refresh=True`` fetches
complete days again (and still writes only differences).

Rate limits: ccxt's ``enableRateLimit`` spaces requests; transient failures (ccxt
``OperationFailed``: ``NetworkError`` - timeouts, 5xx, ``RateLimitExceeded``/``DDoSProtection``
429/418 - and ``BadResponse``) are retried with exponential backoff (``RetryPolicy``); other errors stop the run and the
days already stored stay stored.

Funding is stored with ``ts`` = settlement time, the venue's stamp on its whole hour
(``collectors.funding.settlement_times``: Binance stamps 08:00:00.002; importers and the
live settlements use the same rule, so a settlement is one row whichever way it came), and
``interval_h`` = the hours the rate covers, from the data's spacing
(``collectors.funding.funding_intervals``, so one missing settlement does not double an
interval; the chunk is fetched
with one maximal interval of margin each side to see the neighbours), falling back to the
market's nominal interval for an isolated row.

Venue coverage (what each venue's public REST serves)::

                 funding   ohlcv   trades / agg_trades         open interest
    binance      yes       yes     agg_trades (aggTrades: the  yes (last 30 days only, 5m..1d)
                                   trade-id range of each)
    bybit        yes       yes     no: recent 1000 only         yes (5m..1d)
    hyperliquid  yes       yes     no: fills need an account    no: live activeAssetCtx only
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

import ccxt
import numpy as np
import pandas as pd

from collectors.funding import SettlementError, funding_intervals, settlement_times
from collectors.symbols import MARKETS, MarketInfo, Markets, MarketType
from tickstore.errors import TickstoreError
from tickstore.schemas import Column, Partition, Schema

__all__ = [
    "Kind",
    "RetryPolicy",
    "BackfillError",
    "BackfillNotSupported",
    "BackfillReport",
    "backfill",
    "make_exchange",
    "complete_days",
    "LEDGER",
]

_MS_PER_DAY = 86_400_000
_NS_PER_MS = 1_000_000
_MAX_FUNDING_INTERVAL_MS = 8 * 3_600_000  # the longest settlement interval of the venues


class Kind(enum.Enum):
    """What to backfill; the value is the CLI word."""

    FUNDING = "funding"
    OHLCV = "ohlcv"
    TRADES = "trades"
    AGG_TRADES = "agg_trades"  # Binance: aggregated trades with their first/last trade ids
    OI = "oi"


class PageOrder(enum.Enum):
    OLDEST_FIRST = "oldest_first"  # answers the first `limit` rows from the start time
    NEWEST_FIRST = "newest_first"  # answers the last `limit` rows before the end time


@dataclass(frozen=True)
class _Paging:
    limit: int
    order: PageOrder


_PAGING = {
    ("binance", Kind.FUNDING): _Paging(1000, PageOrder.OLDEST_FIRST),
    ("binance", Kind.OHLCV): _Paging(1000, PageOrder.OLDEST_FIRST),  # futures allow 1500, spot 1000
    ("binance", Kind.AGG_TRADES): _Paging(1000, PageOrder.OLDEST_FIRST),
    ("binance", Kind.OI): _Paging(500, PageOrder.OLDEST_FIRST),
    ("bybit", Kind.FUNDING): _Paging(200, PageOrder.NEWEST_FIRST),
    ("bybit", Kind.OHLCV): _Paging(1000, PageOrder.NEWEST_FIRST),
    ("bybit", Kind.OI): _Paging(200, PageOrder.NEWEST_FIRST),
    ("hyperliquid", Kind.FUNDING): _Paging(500, PageOrder.OLDEST_FIRST),
    ("hyperliquid", Kind.OHLCV): _Paging(5000, PageOrder.OLDEST_FIRST),
}

_UNSUPPORTED = {
    ("binance", Kind.TRADES): "Binance's public REST serves aggregated trades (/aggTrades: one row per run of "
    "fills at one price and side); backfill agg_trades, which keeps each aggregate's first/last trade ids "
    "(the individual trades are in Binance's public archive: tickstore import)",
    ("bybit", Kind.AGG_TRADES): "aggregated trades are Binance's; Bybit has none",
    ("hyperliquid", Kind.AGG_TRADES): "aggregated trades are Binance's; Hyperliquid has none",
    ("bybit", Kind.TRADES): "Bybit's REST API serves only the most recent 1000 trades (/v5/market/recent-trade); "
    "trade history is published as daily files at public.bybit.com, not through ccxt",
    ("hyperliquid", Kind.TRADES): "Hyperliquid's REST API has no public trade history (ccxt fetch_trades returns "
    "one account's fills and needs its address); collect trades live from the websocket",
    ("hyperliquid", Kind.OI): "Hyperliquid's REST API has no open-interest history; collect it live from the "
    "activeAssetCtx websocket channel",
}


class BackfillError(TickstoreError):
    """A backfill stopped: retries exhausted, pagination stuck, or the venue refused."""


class BackfillNotSupported(BackfillError):
    """The venue's public REST API does not serve that history."""


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient ccxt errors: ``attempts`` tries, sleeping ``base_s * 2**n`` (<= ``max_s``) between."""

    attempts: int = 5
    base_s: float = 1.0
    max_s: float = 30.0

    def __post_init__(self):
        if self.attempts < 1 or self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError(f"retry policy needs attempts >= 1 and 0 <= base_s <= max_s, got {self}")

    def delay(self, n: int) -> float:
        return min(self.max_s, self.base_s * 2**n)


@dataclass(frozen=True)
class BackfillReport:
    """What one ``backfill`` call did, day by day counted once each."""

    kind: Kind
    symbol: str  # tickstore symbol
    table: str
    days: int  # days in [start, end)
    skipped: int  # already complete in the store
    written: int  # a new version was inserted
    unchanged: int  # fetched, identical to the store: nothing written
    empty: int  # the venue returned no row for the day
    rows: int  # rows in the versions written
    requests: int  # REST calls made (retries included)
    retries: int


def _table_name(kind: Kind, timeframe: str) -> str:
    return {Kind.FUNDING: "funding", Kind.TRADES: "trades", Kind.AGG_TRADES: "agg_trades",
            Kind.OI: "open_interest"}.get(kind) or f"ohlcv_{timeframe}"


def _reason_tag(kind: Kind, timeframe: str) -> str:
    # what a day's completeness marker names: timeframes differ for bars and OI samples
    return kind.value if kind in (Kind.FUNDING, Kind.TRADES, Kind.AGG_TRADES) else f"{kind.value} {timeframe}"


# -- the ccxt exchange ---------------------------------------------------------------------------
def make_exchange(
    exchange: str,
    *,
    base_url: str | None = None,
    markets: Markets = MARKETS,
    timeout_ms: int = 10_000,
    rate_limit_ms: float | None = None,
):
    """A ccxt exchange with rate limiting on (``rate_limit_ms`` overrides ccxt's spacing).

    With ``base_url`` (e.g. ``RestSim.base_url``) every REST root points there and the
    markets come from ``markets`` (no ``load_markets`` request); without it the exchange
    talks to the venue and its loaded markets are merged into ``markets``.
    """
    cls = getattr(ccxt, exchange, None)
    if exchange not in ("binance", "bybit", "hyperliquid") or cls is None:
        raise BackfillError(f"backfill supports binance, bybit and hyperliquid, got exchange {exchange!r}")
    ex = cls({"enableRateLimit": True, "timeout": timeout_ms})
    if rate_limit_ms is not None:
        ex.rateLimit = float(rate_limit_ms)
    if base_url is not None:
        base = base_url.rstrip("/")
        for name, url in list(ex.urls["api"].items()):
            if isinstance(url, str):
                ex.urls["api"][name] = base + urlsplit(url).path
        markets.install(ex)
    else:
        ex.load_markets()
        markets.set_markets(exchange, ex.markets)
    return ex


# -- completeness ----------------------------------------------------------------------------
_REASON = re.compile(r"^backfill (?P<what>.+) (?P<day>\d{4}-\d{2}-\d{2})$")


LEDGER = "backfill_ledger"
_LEDGER_SCHEMA = Schema(
    LEDGER,
    (Column("what", "str32"), Column("rows", "int64"), Column("marked_at", "datetime")),
    key=("ts", "what"),
    partition=Partition.YEAR,
    description="days backfill fetched whole: ts is the UTC day, what the kind (funding, ohlcv 1m, ...)",
)


def _ledger(store):
    return store.create_table(LEDGER, _LEDGER_SCHEMA)


def _mark(table, symbol: str, what: str, marks: list[tuple[pd.Timestamp, int]]) -> None:
    """Record days fetched whole (one commit for a chunk of days)."""
    if not marks:
        return
    at = table.store.now()
    idx = pd.DatetimeIndex([d for d, _ in marks], name="ts").tz_convert("UTC")
    frame = pd.DataFrame({"what": what, "rows": np.array([n for _, n in marks], dtype=np.int64),
                          "marked_at": pd.DatetimeIndex([at] * len(marks))}, index=idx)
    _ledger(table.store).append(symbol, frame, source="backfill")


def complete_days(table, symbol: str, days: pd.DatetimeIndex, *, what: str) -> set[pd.Timestamp]:
    """Days of ``days`` the store holds complete for backfill tag ``what`` (see module doc)."""
    if not len(days):
        return set()
    index = table.index(symbol)
    if index.empty:
        return set()
    floor = table.schema.partition.floor
    part_of = lambda d: int(floor(np.array([d.value // (_MS_PER_DAY * _NS_PER_MS)]))[0])  # noqa: E731
    parts = index.index.get_level_values("date").asi8 // (_MS_PER_DAY * _NS_PER_MS)
    # which day a tombstone removed is not recorded: trust no mark of its partition before it
    last_delete: dict[int, pd.Timestamp] = {}
    marked: dict[pd.Timestamp, pd.Timestamp] = {}
    for p, op, reason, source, at in zip(parts, index["operation"], index["reason"], index["source"], index["committed_at"]):
        if op == "delete":
            last_delete[int(p)] = max(last_delete.get(int(p), at), at)
        m = _REASON.match(reason)
        if source == "rest" and m and m.group("what") == what:
            day = pd.Timestamp(m.group("day"), tz="UTC")
            marked[day] = max(marked.get(day, at), at)
    if LEDGER in table.store.tables():
        rows = table.store[LEDGER].select(symbol, days[0], days[-1] + pd.Timedelta(days=1))
        for day, at in zip(rows.index[rows["what"] == what], rows["marked_at"][rows["what"] == what]):
            marked[day] = max(marked.get(day, at), at)
    done = {d for d, at in marked.items() if part_of(d) not in last_delete or at > last_delete[part_of(d)]}
    return done & set(days)


# -- fetching ----------------------------------------------------------------------------------
@dataclass
class _Caller:
    """Runs ccxt calls with retries on transient errors and counts them."""

    retry: RetryPolicy
    sleep: Callable[[float], None] = time.sleep
    requests: int = 0
    retries: int = 0

    def __call__(self, fn, *args, **kwargs):
        for n in range(self.retry.attempts):
            self.requests += 1
            try:
                return fn(*args, **kwargs)
            except ccxt.OperationFailed as exc:
                # ccxt's "may succeed if retried" branch: NetworkError (timeouts, 5xx,
                # RateLimitExceeded 429, DDoSProtection 418), BadResponse, and venue codes
                # mapped to it such as Binance -1001 "internal error"
                if n + 1 == self.retry.attempts:
                    raise BackfillError(
                        f"{getattr(fn, '__name__', fn)}: gave up after {self.retry.attempts} attempts: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
                self.retries += 1
                self.sleep(self.retry.delay(n))
            except ccxt.BaseError as exc:
                raise BackfillError(f"{getattr(fn, '__name__', fn)} refused: {type(exc).__name__}: {exc}") from exc
        raise AssertionError("unreachable")


def _paginate(call: Callable, start: int, end: int, paging: _Paging, *, ts: Callable, key: Callable) -> list:
    """Every row with ``start <= ts <= end`` (ms), however many pages it takes."""
    rows: dict = {}
    lo, hi = start, end
    while True:
        page = call(lo, hi, paging.limit)
        inside = [r for r in page if start <= ts(r) <= end]
        new = [r for r in inside if key(r) not in rows]
        for r in new:
            rows[key(r)] = r
        if len(page) < paging.limit:
            return list(rows.values())
        if not new:
            raise BackfillError(
                f"pagination stuck: a full page of {paging.limit} rows in [{lo}, {hi}] ms brought no new row "
                f"(more than {paging.limit} rows share one timestamp?)"
            )
        # the edge timestamp is asked for again: ties split by the page limit are completed
        if paging.order is PageOrder.OLDEST_FIRST:
            lo = max(ts(r) for r in page)
        else:
            hi = min(ts(r) for r in page)


def _ms(t) -> int:
    return int(pd.Timestamp(t).value // _NS_PER_MS)


def _utc_day(value, what: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise BackfillError(f"{what} must be a date like 2024-01-31, got {value!r} ({exc})") from None
    t = t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
    if t != t.normalize():
        raise BackfillError(f"{what} must be a UTC midnight (backfill works in whole days), got {t}")
    return t


# -- per kind: fetch rows of [start, end] ms, and turn them into a frame ---------------------------
@dataclass
class _Job:
    ex: object
    kind: Kind
    market: MarketInfo
    timeframe: str
    paging: _Paging
    call: _Caller
    fetched_ns: int = 0

    def rows_per_day(self) -> float:
        if self.kind is Kind.FUNDING:
            return 24.0  # hourly at most
        if self.kind in (Kind.TRADES, Kind.AGG_TRADES):
            return float("inf")
        return _MS_PER_DAY / (self.ex.parse_timeframe(self.timeframe) * 1000)

    def fetch(self, start: int, end: int) -> list:
        """Rows (ccxt structures) with ``start <= ts <= end``."""
        sym = self.market.symbol
        c = self.call
        if self.kind is Kind.FUNDING:
            def page(lo, hi, n):
                return c(self.ex.fetch_funding_rate_history, sym, lo, n, {"until": hi})
            return _paginate(page, start, end, self.paging, ts=lambda r: r["timestamp"], key=lambda r: r["timestamp"])
        if self.kind is Kind.OHLCV:
            def page(lo, hi, n):
                return c(self.ex.fetch_ohlcv, sym, self.timeframe, lo, n, {"until": hi})
            return _paginate(page, start, end, self.paging, ts=lambda r: r[0], key=lambda r: r[0])
        if self.kind is Kind.OI:
            def page(lo, hi, n):
                return c(self.ex.fetch_open_interest_history, sym, self.timeframe, lo, n, {"until": hi})
            return _paginate(page, start, end, self.paging, ts=lambda r: r["timestamp"], key=lambda r: r["timestamp"])
        return self._binance_agg_trades(start, end)

    def _binance_agg_trades(self, start: int, end: int) -> list:
        # The first page comes by time (Binance allows a window < 1 h with startTime), the
        # rest by aggregate id, which is dense and tie-free; an empty hour moves on.
        sym, c, n = self.market.symbol, self.call, self.paging.limit
        out: list = []
        lo = start
        first: list = []
        while lo <= end and not first:
            hi = min(end, lo + 3_600_000 - 1)
            first = c(self.ex.fetch_trades, sym, lo, n, {"until": hi})
            lo = hi + 1
        page = first
        while page:
            out += [t for t in page if start <= t["timestamp"] <= end]
            if page[-1]["timestamp"] > end or len(page) < n:
                break
            page = c(self.ex.fetch_trades, sym, None, n, {"fromId": int(page[-1]["id"]) + 1})
        return out

    def frame(self, rows: list, context: list) -> pd.DataFrame:
        """Rows of one day -> a frame in the table's schema. ``context`` = every row fetched
        around them (funding spacing needs the neighbours)."""
        if self.kind is Kind.FUNDING:
            ts = np.array([r["timestamp"] for r in rows], dtype="i8")
            around = np.array(sorted(r["timestamp"] for r in context), dtype="i8") * _NS_PER_MS
            data = {"rate": np.array([r["fundingRate"] for r in rows], dtype="f8"),
                    "interval_h": funding_intervals(ts * _NS_PER_MS, around, nominal=self.market.funding_interval_h)}
        elif self.kind is Kind.OHLCV:
            ts = np.array([r[0] for r in rows], dtype="i8")
            arr = np.array([r[1:6] for r in rows], dtype="f8").reshape(len(rows), 5)
            data = {name: arr[:, i] for i, name in enumerate(("open", "high", "low", "close", "volume"))}
        elif self.kind is Kind.OI:
            ts = np.array([r["timestamp"] for r in rows], dtype="i8")
            cv = self.market.contract_value
            if cv is None:  # linear: the base-coin amount and the venue's quote value (Bybit gives none)
                data = {"oi": np.array([_nan(r.get("openInterestAmount")) for r in rows], dtype="f8"),
                        "oi_value": np.array([_nan(r.get("openInterestValue")) for r in rows], dtype="f8")}
            else:
                # inverse: the venue's contract count (Binance sumOpenInterest; Bybit openInterest,
                # which ccxt files as a value), valued in USD as on every path: contracts x
                # contract value (Binance's sumOpenInterestValue is in the base coin)
                oi = np.array([_nan(_contracts(r)) for r in rows], dtype="f8")
                data = {"oi": oi, "oi_value": oi * cv}
        else:  # Binance aggTrades: ccxt's trade id is the aggregate id, info holds f (first) and l (last)
            ts = np.array([r["timestamp"] for r in rows], dtype="i8")
            data = {"recv_ts": pd.DatetimeIndex(np.full(len(rows), self.fetched_ns, dtype="i8").view("M8[ns]"), tz="UTC"),
                    "agg_id": np.array([int(r["id"]) for r in rows], dtype="i8"),
                    "first_trade_id": np.array([int(r["info"]["f"]) for r in rows], dtype="i8"),
                    "last_trade_id": np.array([int(r["info"]["l"]) for r in rows], dtype="i8"),
                    "price": np.array([r["price"] for r in rows], dtype="f8"),
                    "qty": np.array([r["amount"] for r in rows], dtype="f8"),
                    "side": np.array([1 if r["side"] == "buy" else -1 for r in rows], dtype="i1")}
        idx = pd.DatetimeIndex((ts * _NS_PER_MS).view("M8[ns]"), tz="UTC", name="ts")
        frame = pd.DataFrame(data, index=idx)
        return frame.sort_index(kind="stable")


def _contracts(r: dict):
    """The contract count of a ccxt open-interest row of an inverse market, from the venue's own fields."""
    info = r.get("info") or {}
    for key in ("sumOpenInterest", "openInterest"):
        if info.get(key) not in (None, ""):
            return info[key]
    return r.get("openInterestAmount")


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _settlements(rows: list, where: str) -> list:
    """Funding rows with ``timestamp`` = their settlement time: the venue's stamp (Binance's
    history says 08:00:00.002) on its whole hour, by ``collectors.funding.settlement_times``,
    the rule of every writer of ``funding`` (importers, live settlements), so one settlement
    is one row whichever way it came."""
    if not rows:
        return rows
    ts = np.array([r["timestamp"] for r in rows], dtype="i8") * _NS_PER_MS
    try:
        snapped = settlement_times(ts, source=where).asi8 // _NS_PER_MS
    except SettlementError as exc:
        raise BackfillError(str(exc)) from None
    return [dict(r, timestamp=int(t)) for r, t in zip(rows, snapped)]


def _same(a: pd.DataFrame, b: pd.DataFrame, *, ignore: tuple = ()) -> bool:
    """Same rows, same order, same values (NaN == NaN), ignoring columns in ``ignore``."""
    if len(a) != len(b) or not a.index.equals(b.index):
        return False
    for col in a.columns:
        if col in ignore:
            continue
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if x.dtype.kind == "f" or y.dtype.kind == "f":
            if not np.array_equal(x.astype("f8"), y.astype("f8"), equal_nan=True):
                return False
        elif not np.array_equal(x, y):
            return False
    return True


# -- the entry point -------------------------------------------------------------------------
def backfill(
    store,
    kind: Kind | str,
    symbol: str,
    *,
    exchange: str,
    start,
    end,
    timeframe: str | None = None,
    refresh: bool = False,
    exchange_obj=None,
    base_url: str | None = None,
    retry: RetryPolicy = RetryPolicy(),
    page_limit: int | None = None,
    progress: bool = True,
    sleep: Callable[[float], None] = time.sleep,
    markets: Markets = MARKETS,
) -> BackfillReport:
    """Backfill ``kind`` history of ``symbol`` on ``exchange`` for the UTC days ``[start, end)``.

    Parameters
    ----------
    symbol
        Unified (``BTC/USDT:USDT``), native (``BTCUSDT``, ``BTC``) or suffixed
        (``BTCUSDT-PERP``); funding and open interest assume the perpetual.
    timeframe
        Bar size for OHLCV (default ``1m``, table ``ohlcv_<timeframe>``), sampling period
        for open interest (default ``1h``); not used otherwise.
    refresh
        Fetch days already complete in the store too (identical days still write nothing).
    page_limit
        Ask for fewer rows per request than the venue's maximum.
    exchange_obj, base_url
        A ready ccxt exchange, or a REST root to point a new one at (``RestSim.base_url``);
        neither: the real venue.

    Raises
    ------
    BackfillNotSupported, BackfillError, SymbolError, TickstoreError
    """
    kind = Kind(kind)
    if (exchange, kind) in _UNSUPPORTED:
        raise BackfillNotSupported(f"{exchange} {kind.value} backfill is not possible: {_UNSUPPORTED[(exchange, kind)]}")
    paging = _PAGING.get((exchange, kind))
    if paging is None:
        raise BackfillError(f"no backfill for exchange {exchange!r}; supported: binance, bybit, hyperliquid")
    if page_limit is not None:
        if not 1 <= page_limit <= paging.limit:
            raise BackfillError(f"{exchange} {kind.value}: page_limit must be 1..{paging.limit}, got {page_limit!r}")
        paging = _Paging(page_limit, paging.order)
    if timeframe is None:
        timeframe = "1h" if kind is Kind.OI else "1m"
    elif kind in (Kind.FUNDING, Kind.TRADES, Kind.AGG_TRADES):
        raise BackfillError(f"{kind.value} backfill takes no timeframe, got {timeframe!r}")
    want = MarketType.SWAP if kind in (Kind.FUNDING, Kind.OI) else None
    market = markets.info(exchange, symbol, market_type=want)
    if kind in (Kind.FUNDING, Kind.OI) and market.type is MarketType.SPOT:
        raise BackfillError(f"{kind.value} history exists for derivatives only; {market.tickstore} is spot")
    first, stop = _utc_day(start, "start"), _utc_day(end, "end")
    if stop <= first:
        raise BackfillError(f"empty range: start {first.date()} must be before end {stop.date()}")
    ex = exchange_obj if exchange_obj is not None else make_exchange(exchange, base_url=base_url, markets=markets)
    if kind in (Kind.OHLCV, Kind.OI) and timeframe not in ex.timeframes:
        raise BackfillError(f"{exchange} has no timeframe {timeframe!r}; it has {sorted(ex.timeframes)}")
    table_name = _table_name(kind, timeframe)
    table = store[table_name]
    what = _reason_tag(kind, timeframe)
    job = _Job(ex, kind, market, timeframe, paging, _Caller(retry, sleep))

    days = pd.date_range(first, stop, freq="D", inclusive="left")
    done = set() if refresh else complete_days(table, market.tickstore, days, what=what)
    todo = [d for d in days if d not in done]
    counts = dict(written=0, unchanged=0, empty=0, rows=0)
    per_chunk = max(1, min(31, int(paging.limit * 0.9 // job.rows_per_day()))) if kind is not Kind.AGG_TRADES else 1
    margin = _MAX_FUNDING_INTERVAL_MS if kind is Kind.FUNDING else 0

    from tqdm import tqdm  # imported here: the library is usable without a terminal

    with tqdm(total=len(todo), desc=f"{kind.value} {market.tickstore}", unit="day", disable=not progress) as bar:
        for chunk in _chunks(todo, per_chunk):
            lo, hi = _ms(chunk[0]), _ms(chunk[-1]) + _MS_PER_DAY - 1
            rows = job.fetch(lo - margin, hi + margin)
            if kind is Kind.FUNDING:
                rows = _settlements(rows, f"{exchange} {market.tickstore}")
            job.fetched_ns = time.time_ns()
            ts_of = (lambda r: r[0]) if kind is Kind.OHLCV else (lambda r: r["timestamp"])
            now_ms = store.clock.now_ns() // _NS_PER_MS
            marks = []
            for day in chunk:
                d0 = _ms(day)
                mine = [r for r in rows if d0 <= ts_of(r) < d0 + _MS_PER_DAY]
                if _store_day(table, job, market.tickstore, day, mine, rows, what, partial=d0 + _MS_PER_DAY > now_ms, counts=counts):
                    marks.append((day, len(mine)))
                bar.update(1)
            _mark(table, market.tickstore, what, marks)
    return BackfillReport(kind, market.tickstore, table_name, len(days), len(days) - len(todo), counts["written"],
                          counts["unchanged"], counts["empty"], counts["rows"], job.call.requests, job.call.retries)


def _chunks(days: list, size: int):
    """Runs of consecutive days, cut every ``size`` days."""
    run: list = []
    for d in days:
        if run and (d - run[-1] != pd.Timedelta(days=1) or len(run) == size):
            yield run
            run = []
        run.append(d)
    if run:
        yield run


def _store_day(table, job: _Job, symbol: str, day, rows, context, what, *, partial: bool, counts: dict) -> bool:
    """Store one fetched day if it differs from what the store holds; True if it was
    written whole (a day to mark complete)."""
    if not rows:
        counts["empty"] += 1
        return False
    new = job.frame(rows, context)
    held = table.select(symbol, day, day + pd.Timedelta(days=1))
    reason = f"backfill {what} {day.date()}" + (" partial" if partial else "")
    if _same(new, held[new.columns], ignore=("recv_ts",)):
        # Nothing new. A day whose identical rows came from elsewhere (a live collector)
        # stays unmarked and is fetched again next time: cheaper than a duplicate version.
        counts["unchanged"] += 1
        return False
    table.insert(symbol, day, new, reason=reason, source="rest")
    counts["written"] += 1
    counts["rows"] += len(new)
    return not partial
