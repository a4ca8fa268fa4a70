"""Tardis.dev downloadable CSV datasets (https://docs.tardis.dev/downloadable-csv-files).

One file per exchange, data type, day and symbol, gzip or plain, named
``<exchange>_<data type>_<YYYY-MM-DD>_<SYMBOL>.csv.gz`` by Tardis' clients (or
``<exchange>/<data type>/YYYY/MM/DD/<SYMBOL>.csv.gz`` as the datasets API serves them).
Times are microseconds since the epoch, UTC: ``timestamp`` the exchange's, ``local_timestamp``
when Tardis received the message. Headers and what each becomes::

    trades               exchange,symbol,timestamp,local_timestamp,id,side,price,amount
                         -> trades (ts = timestamp, recv_ts = local_timestamp; side buy +1)
    liquidations         same header (the file name says which; else --kind liquidations)
                         -> liquidations (side: buy = a short was liquidated, +1)
    quotes, book_ticker  ...,ask_amount,ask_price,bid_price,bid_amount -> quotes
    book_snapshot_5/25   ...,asks[0].price,asks[0].amount,bids[0].price,bids[0].amount,...
                         -> each snapshot replaces the book; book_<N> (default N = the file's)
    incremental_book_L2  ...,is_snapshot,side,price,amount
                         -> rows grouped into messages by local_timestamp; a run of
                            is_snapshot=true rows is a snapshot (it replaces the book; one
                            after updates means Tardis reconnected: a ``reconnect`` gap and
                            the book's ``resync`` gap), other messages are diffs; Hyperliquid
                            sends the whole book in every l2Book message, all of them
                            is_snapshot=true: each message is a snapshot of its own;
                            --keep-diffs also stores them in book_diffs
                         Both go through ``collectors.replay.replay_frames`` (as parsed
                         events): the venue's BookBuilder, its grid (book, 5 levels every
                         100 ms by default; the grid point at a snapshot's time), Bybit's
                         book-derived quotes, the replay's end of data and book state (a
                         day's file continues the book of the day before).
    derivative_ticker    ...,funding_timestamp,funding_rate,predicted_funding_rate,
                         open_interest,last_price,index_price,mark_price
                         -> mark (a row where mark/index/funding/next funding changed) and
                            open_interest (a row where it changed)

Exchange names map to the store's venues and markets::

    binance -> binance spot     binance-futures -> binance usdm    binance-delivery -> binance coinm
    binance-us -> binanceus spot
    bybit   -> bybit linear     bybit-spot      -> bybit spot       hyperliquid      -> hyperliquid
    (Tardis' ``bybit`` holds linear and inverse contracts: each id is named by the project's
    mapping, ``collectors.symbols`` wire rules: BTCUSD -> BTC/USD:BTC; an inverse future, whose
    delivery date is not in its id, needs --symbol; Hyperliquid spot pairs are refused)

What the CSVs lack, and what is stored instead (documented losses, not guesses):
quotes carry no update id, so ``update_id`` is ``local_timestamp`` (us): it orders quotes
of one exchange millisecond and is the same from whichever file a quote comes. Book
snapshots and diffs carry none either: ``update_id`` of book rows (and of Bybit's
book-derived quotes) is an id anchored at the message's ``local_timestamp`` (us), one
more than the previous where that is not larger. How Tardis builds the columns
(github.com/tardis-dev/tardis-node, ``src/mappers``), and what that means here:

- trades: Binance ``trade`` frames with ``X`` INSURANCE_FUND or ADL are left out by Tardis,
  so every row is a market print (kind MARKET). Bybit's ``BT`` (block trade) flag is not
  carried: Bybit block trades arrive as MARKET here (the live collector marks them BLOCK).
- liquidations: Binance rows are the filled part of the order at its average price
  (``z`` at ``ap``, stamped ``T``), the convention of the table on every path (the live
  forceOrder parser and the liquidationSnapshot archive store the same); Tardis leaves out
  orders whose status is not FILLED, so a partly filled forced order that expired is
  missing here (live and the archive keep its filled part). Bybit rows: the bankruptcy
  price and size, as live. Sides as the live tables: buy (+1) = a short was liquidated, for
  Bybit too (Tardis turns Bybit's "Buy = a long was liquidated" around).
- book_ticker: Binance futures rows are stamped with the transaction time ``T`` (the live
  quotes with the event time ``E``, usually 0-2 ms later); spot rows carry no exchange
  time, their ``timestamp`` is the receive time: ``ts == recv_ts``, as the live rule for
  spot quotes no depth frame dates. ``quotes`` rows are stamped with the depth frame's
  ``E``, as live.

Quote streams, one per span (the rule of every importer, ``run.ONE_STREAM_TABLES``).
Tardis has three sources of a symbol's best bid/offer: ``book_ticker`` (the venue's BBO
stream: Binance bookTicker, Bybit ``orderbook.1``), ``quotes`` (Tardis' own top of its L2
book) and the book files (``book_snapshot_N``/``incremental_book_L2``: for Bybit the book
builder quotes its top at every change, as live and replay quote Bybit's books). Bybit's
live quotes are the top of the book the collector subscribes (``orderbook.1`` for quotes
alone, the depth topic with depth), stamped with the frame's ``ts`` and Bybit's ``u``;
every Tardis source has the same clock (``timestamp`` = the frame's ``ts``, ``local_timestamp``
= receive time) but no ``u``, so their ids (receive time in us, or the anchored book ids)
never meet the collector's, nor always each other's. Imported quotes are therefore stored
with their stream in the source (``import:tardis (quotes)``, ``import:tardis
(book_ticker)``, ``import:tardis (book_snapshot_25)``...), and a file's quotes that fall
inside the span of one day the quotes of another source already cover (the collector's,
a replay's, another Tardis data type's) are kept out (``FileReport.kept_out``): a symbol's
quotes never interleave two streams, whichever is imported first. Delete a day's quotes
to replace their stream. ``derivative_ticker`` follows the same rule for ``mark`` and
``open_interest`` (``import:tardis (derivative_ticker)``): its rows are stamped at the
message that changed Tardis' ticker (or at its open-interest polls), other times than the
collector's markPrice ``E`` every second, Bybit's tickers, Hyperliquid's receive times, the
archive's 5-minute ``metrics`` or the Hyperliquid archive's minutes, so inside the span of
a day another source covers, its rows are kept out.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pandas as pd

from collectors.capture import Frame, FrameKind
from collectors.events import DepthDiff, DepthSnapshot
from collectors.exchanges import bybit as bb
from collectors.symbols import inverse_oi_value
from collectors.venues import feed_class

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    MissingOption,
    Sink,
    csv_blocks,
    epoch_to_ns,
    resolve_symbol,
    user_symbol,
    utc,
    utc_index,
)
from .detect import Detected
from .frames import replay_into

__all__ = ["EXCHANGES", "KINDS", "sniff", "parse"]

#: Tardis exchange name -> (ccxt exchange id, market)
EXCHANGES = {
    "binance": ("binance", "spot"),
    "binance-futures": ("binance", "usdm"),
    "binance-delivery": ("binance", "coinm"),
    "binance-us": ("binanceus", "spot"),
    "bybit": ("bybit", "linear"),
    "bybit-spot": ("bybit", "spot"),
    "hyperliquid": ("hyperliquid", "perp"),
}
KINDS = ("trades", "liquidations", "quotes", "book_ticker", "book_snapshot_5", "book_snapshot_25",
         "incremental_book_L2", "derivative_ticker")

_PREFIX = "exchange,symbol,timestamp,local_timestamp,"
_HEADERS = {
    "id,side,price,amount": "trades",
    "ask_amount,ask_price,bid_price,bid_amount": "quotes",
    "is_snapshot,side,price,amount": "incremental_book_L2",
    "funding_timestamp,funding_rate,predicted_funding_rate,open_interest,last_price,index_price,mark_price": "derivative_ticker",
}
_OTHER = re.compile(r"_(?P<what>[a-z]+(?:_[a-z0-9]+)*)_\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"(?:^|[_/])(?P<kind>" + "|".join(sorted(KINDS, key=len, reverse=True)) + r")(?:[_/.]|$)")


def _kind_of_header(header: str) -> str | None:
    if not header.startswith(_PREFIX):
        return None
    rest = header[len(_PREFIX):]
    if rest.startswith("asks[0].price"):
        n = rest.count("].price") // 2
        return f"book_snapshot_{n}"
    return _HEADERS.get(rest)


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    header = head.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace")
    kind = _kind_of_header(header)
    if kind is None:
        if header.startswith(_PREFIX):  # a Tardis CSV of a data type the store has no table for
            named = _OTHER.search(member.path.name)
            what = named.group("what") if named else "this data type"
            raise DataImportError(f"{member.where()}: Tardis {what} files are not imported (the store keeps "
                                  f"{', '.join(KINDS)}); its columns: {header[len(_PREFIX):][:120]}")
        return None
    where = member.where()
    named = _NAME.search(member.name) or _NAME.search(member.path.name)
    parts = member.path.parts  # the datasets API's <exchange>/<data type>/YYYY/MM/DD/<SYMBOL>.csv.gz
    if named is None and len(parts) >= 5 and parts[-5] in KINDS:
        named = _NAME.search(parts[-5])
    if options.kind is not None:
        if options.kind not in KINDS:
            raise MissingOption(f"{where}: --kind {options.kind!r} is not a Tardis data type; they are {list(KINDS)}")
        kind = options.kind
    elif kind == "trades":
        if named is None or named.group("kind") not in ("trades", "liquidations"):
            raise MissingOption(f"{where}: a Tardis trades and liquidations file look alike and the name says neither; "
                                f"pass --kind trades or --kind liquidations")
        kind = named.group("kind")
    elif kind == "quotes" and named is not None and named.group("kind") == "book_ticker":
        kind = "book_ticker"
    lines = head.split(b"\n")
    exchange = lines[1].split(b",", 1)[0].decode("ascii", "replace") if len(lines) > 1 and lines[1] else None
    venue = market = None
    if exchange is not None:
        if exchange not in EXCHANGES:
            raise DataImportError(f"{where}: Tardis exchange {exchange!r} is not a venue the store collects; "
                                  f"supported: {sorted(EXCHANGES)}")
        venue, market = EXCHANGES[exchange]
    levels = int(kind.rsplit("_", 1)[1]) if kind.startswith("book_snapshot") else None
    return Detected(Format.TARDIS, kind, venue, options.market or market, None, {"levels": levels} if levels else {})


class _Symbols:
    """Tardis (exchange, symbol) -> tickstore symbol, once per pair."""

    def __init__(self, det: Detected, options: ImportOptions, where: str):
        self.where = where
        self.forced = user_symbol(options, det.venue, det.market, where=where)
        self.market = options.market
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, exchange: str, native: str, line: int) -> str:
        key = (exchange, native)
        sym = self._cache.get(key)
        if sym is None:
            if self.forced is not None:
                if self._cache:  # a grouped file (PERPETUALS, ...): one --symbol cannot name them all
                    first = next(iter(self._cache))[1]
                    raise MissingOption(f"{self.where}, line {line}: --symbol {self.forced} was given, but the file "
                                        f"holds {first!r} and {native!r}; import it without --symbol")
                sym = self.forced
            else:
                if exchange not in EXCHANGES:
                    raise MalformedInput(self.where, line, f"exchange {exchange!r} is not one of {sorted(EXCHANGES)}")
                venue, market = EXCHANGES[exchange]
                sym = resolve_symbol(venue, native, self.market or market, where=f"{self.where}, line {line}")
            self._cache[key] = sym
        return sym


def _groups(lines: np.ndarray, ex: pd.Series, sy: pd.Series):
    """(start, stop, exchange, symbol, first line) of runs of one (exchange, symbol)."""
    pair = (ex + "|" + sy).to_numpy()
    cut = np.flatnonzero(pair[1:] != pair[:-1]) + 1
    starts = np.r_[0, cut]
    stops = np.r_[cut, len(pair)]
    for a, b in zip(starts, stops):
        yield int(a), int(b), ex.iat[a], sy.iat[a], int(lines[a])


_BASE = ["exchange", "symbol", "timestamp", "local_timestamp"]
_TIMES = {"timestamp": np.int64, "local_timestamp": np.int64}


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    symbols = _Symbols(det, options, member.where())
    kind = det.kind
    if kind in ("trades", "liquidations"):
        _trades(member, symbols, sink, liquidations=kind == "liquidations")
    elif kind in ("quotes", "book_ticker"):
        _quotes(member, symbols, sink)
    elif kind == "derivative_ticker":
        _ticker(member, symbols, sink)
    elif kind.startswith("book_snapshot"):
        _snapshots(member, det, options, symbols, sink)
    else:
        _incremental(member, det, options, symbols, sink)


def _times(df, lines, where):
    ts = epoch_to_ns(df["timestamp"].to_numpy(), where=where, lines=lines)
    recv = epoch_to_ns(df["local_timestamp"].to_numpy(), where=where, lines=lines, what="local_timestamp")
    return ts, recv


def _sides(values: pd.Series, lines, where, *, what: str) -> np.ndarray:
    side = values.map({"buy": 1, "sell": -1})
    if side.isna().any():
        i = int(np.argmax(side.isna().to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"{what} side {values.iat[i]!r} is not buy or sell")
    return side.to_numpy(np.int8)


def _trade_ids(ids: pd.Series, venue: str, lines, where) -> np.ndarray:
    if venue == "bybit":
        out = []
        for i, v in enumerate(ids):
            try:
                out.append(bb.trade_id(v))
            except ValueError as exc:
                raise MalformedInput(where, int(lines[i]), str(exc)) from None
        return np.array(out, dtype=np.int64)
    num = pd.to_numeric(ids, errors="coerce")
    if num.isna().any():
        i = int(np.argmax(num.isna().to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"trade id {ids.iat[i]!r} is not an integer")
    return num.to_numpy(np.int64)


def _trades(member, symbols, sink, *, liquidations: bool) -> None:
    where = member.where()
    cols = _BASE + ["id", "side", "price", "amount"]
    dtypes = {**_TIMES, "price": np.float64, "amount": np.float64, "id": str, "side": str}
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "local_timestamp", "price", "amount", "side")):
        for a, b, ex, native, line in _groups(lines, df["exchange"], df["symbol"]):
            part, ln = df.iloc[a:b], lines[a:b]
            sym = symbols(ex, native, line)
            ts, recv = _times(part, ln, where)
            side = _sides(part["side"], ln, where, what="liquidation" if liquidations else "trade")
            if liquidations:
                frame = pd.DataFrame({"recv_ts": utc(recv), "side": side, "price": part["price"].to_numpy(),
                                      "qty": part["amount"].to_numpy()}, index=utc_index(ts))
                sink.frame("liquidations", sym, frame)
            else:
                ids = _trade_ids(part["id"], sym.split(":", 1)[0], ln, where)
                frame = pd.DataFrame({"recv_ts": utc(recv), "trade_id": ids, "price": part["price"].to_numpy(),
                                      "qty": part["amount"].to_numpy(), "side": side}, index=utc_index(ts))
                sink.frame("trades", sym, frame)


def _quotes(member, symbols, sink) -> None:
    where = member.where()
    cols = _BASE + ["ask_amount", "ask_price", "bid_price", "bid_amount"]
    dtypes = {**_TIMES, **{c: np.float64 for c in cols[4:]}}
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "local_timestamp")):
        for a, b, ex, native, line in _groups(lines, df["exchange"], df["symbol"]):
            part, ln = df.iloc[a:b], lines[a:b]
            ts, recv = _times(part, ln, where)
            frame = pd.DataFrame({
                "recv_ts": utc(recv), "update_id": recv // 1000,
                "bid_px": part["bid_price"].to_numpy(), "bid_qty": part["bid_amount"].to_numpy(),
                "ask_px": part["ask_price"].to_numpy(), "ask_qty": part["ask_amount"].to_numpy(),
            }, index=utc_index(ts))
            sink.frame("quotes", symbols(ex, native, line), frame)


_TICKER = ["funding_timestamp", "funding_rate", "predicted_funding_rate", "open_interest", "last_price", "index_price", "mark_price"]
_HOUR_NS = 3_600_000_000_000


def _ticker(member, symbols, sink) -> None:
    where = member.where()
    cols = _BASE + _TICKER
    dtypes = {**_TIMES, "funding_timestamp": np.float64, **{c: np.float64 for c in _TICKER[1:]}}
    last: dict[str, tuple] = {}  # symbol -> last (mark tuple, oi) emitted, across blocks
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "local_timestamp")):
        for a, b, ex, native, line in _groups(lines, df["exchange"], df["symbol"]):
            part, ln = df.iloc[a:b], lines[a:b]
            sym = symbols(ex, native, line)
            venue = sym.partition(":")[0]
            ts, recv = _times(part, ln, where)
            # empty fields are "not known (yet)": carry the last known value forward
            f = part[_TICKER].ffill()
            prev_mark, prev_oi = last.get(sym, (None, None))
            nf = f["funding_timestamp"].to_numpy()
            known = ~np.isnan(nf)
            nf = np.where(known, epoch_to_ns(np.where(known, nf, 10**15).astype(np.int64), where=where, lines=ln,
                                             what="funding_timestamp"), np.nan)
            if venue == "hyperliquid":  # hourly funding: the next whole hour, as the live parser does
                nf = np.where(known, nf, ((ts // _HOUR_NS) + 1) * _HOUR_NS)
            mark = np.column_stack([f["mark_price"].to_numpy(), f["index_price"].to_numpy(), f["funding_rate"].to_numpy(), nf])
            keep = ~np.isnan(mark[:, 0]) & ~np.isnan(nf)
            changed = np.ones(len(mark), dtype=bool)
            changed[1:] = ~_same_rows(mark[1:], mark[:-1])
            if prev_mark is not None and len(mark):
                changed[0] = not _same_rows(mark[:1], np.asarray([prev_mark]))[0]
            sel = keep & changed
            if sel.any():
                sink.frame("mark", sym, pd.DataFrame({
                    "recv_ts": utc(recv[sel]), "mark_px": mark[sel, 0], "index_px": mark[sel, 1],
                    "funding_rate": mark[sel, 2], "next_funding_ts": utc(mark[sel, 3].astype(np.int64)),
                }, index=utc_index(ts[sel])))
            oi = f["open_interest"].to_numpy()
            oi_changed = np.ones(len(oi), dtype=bool)
            oi_changed[1:] = oi[1:] != oi[:-1]
            if prev_oi is not None and len(oi):
                oi_changed[0] = oi[0] != prev_oi
            osel = oi_changed & ~np.isnan(oi)
            if osel.any():
                # inverse: contracts x their USD value (collectors.symbols, every path's rule);
                # linear: the base-coin amount at the mark price
                value = inverse_oi_value(sym, oi[osel])
                if value is None:
                    value = oi[osel] * mark[osel, 0]
                sink.frame("open_interest", sym, pd.DataFrame({"oi": oi[osel], "oi_value": value}, index=utc_index(ts[osel])))
            if len(mark):
                last[sym] = (tuple(mark[-1]), oi[-1])


def _same_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a == b) | (np.isnan(a) & np.isnan(b))).all(axis=1)


# -- books -------------------------------------------------------------------------------------
# Books go through ``collectors.replay.replay_frames`` as already parsed events (Tardis rows
# are no venue frames): the venue's BookBuilder rule and quotes (Bybit quotes its books), the
# replay's grid flushes, end of data and book state, so a day file continues the book of the
# day before. Tardis gives no exchange sequence ids: each message gets an id anchored at its
# local_timestamp (us), one more than the previous id where that is not larger, so ids grow
# within a file and from one day's file to the next, and each diff follows the one before.
def _next_id(last: int, recv_ns: int) -> int:
    return max(last + 1, recv_ns // 1000)


def _whole(book, snap) -> list:
    """Tardis' rule: a snapshot replaces the book (whatever the venue's snapshot rule)."""
    return book.on_partial(snap)


def _replay(sink, items, det: Detected, options: ImportOptions, where: str, levels: int) -> None:
    replay_into(sink, items, venue=det.venue, market=det.market, options=options, where=where, levels=levels,
                snapshot_rule=_whole)


def _snapshots(member, det, options, symbols, sink) -> None:
    where = member.where()
    n = det.hints["levels"]
    levels = options.book_levels or n
    cols = list(_BASE)
    for i in range(n):
        cols += [f"asks[{i}].price", f"asks[{i}].amount", f"bids[{i}].price", f"bids[{i}].amount"]
    dtypes = {**_TIMES, **{c: np.float64 for c in cols[4:]}}
    step = options.book_interval_ms * 1_000_000
    every = feed_class(det.venue).book_quotes  # quotes come from every change of the top
    ids: dict[str, int] = {}

    def items():
        for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "local_timestamp")):
            for a, b, ex, native, line in _groups(lines, df["exchange"], df["symbol"]):
                part, ln = df.iloc[a:b], lines[a:b]
                sym = symbols(ex, native, line)
                ts, recv = _times(part, ln, where)
                if every:
                    idx = np.arange(len(ts))
                else:
                    # Only the last snapshot of each grid interval (g - step, g] can show in a
                    # row (the row at g is the book after every update at or before g; any
                    # later one triggers it): the others are skipped, with the same rows.
                    bucket = -(-ts // step)
                    idx = np.flatnonzero(np.r_[bucket[1:] != bucket[:-1], True])
                ask_p = part[[f"asks[{i}].price" for i in range(n)]].to_numpy()
                ask_q = part[[f"asks[{i}].amount" for i in range(n)]].to_numpy()
                bid_p = part[[f"bids[{i}].price" for i in range(n)]].to_numpy()
                bid_q = part[[f"bids[{i}].amount" for i in range(n)]].to_numpy()
                u = ids.get(sym, 0)
                for i in idx:
                    bids = [(p, q) for p, q in zip(bid_p[i].tolist(), bid_q[i].tolist()) if p == p]
                    asks = [(p, q) for p, q in zip(ask_p[i].tolist(), ask_q[i].tolist()) if p == p]
                    u = _next_id(u, int(recv[i]))
                    snap = DepthSnapshot(sym, int(ts[i]), int(recv[i]), u, bids, asks)
                    yield Frame(int(recv[i]), [snap], FrameKind.EVENTS, None, int(ln[i]))
                ids[sym] = u

    _replay(sink, items(), det, options, where, levels)


def _incremental(member, det, options, symbols, sink) -> None:
    where = member.where()
    levels = options.book_levels or 5
    cols = _BASE + ["is_snapshot", "side", "price", "amount"]
    dtypes = {**_TIMES, "price": np.float64, "amount": np.float64, "is_snapshot": str, "side": str}
    state: dict[str, _L2] = {}

    def items():
        pending = None  # the last message of a block may continue in the next one
        for lines, df in csv_blocks(member, cols, dtypes, header=True,
                                    required=("timestamp", "local_timestamp", "price", "amount")):
            snap = df["is_snapshot"].map({"true": True, "false": False})
            if snap.isna().any():
                i = int(np.argmax(snap.isna().to_numpy()))
                raise MalformedInput(where, int(lines[i]), f"is_snapshot {df['is_snapshot'].iat[i]!r} is not true or false")
            side = df["side"].map({"bid": 1, "ask": -1})
            if side.isna().any():
                i = int(np.argmax(side.isna().to_numpy()))
                raise MalformedInput(where, int(lines[i]), f"side {df['side'].iat[i]!r} is not bid or ask")
            ts, recv = _times(df, lines, where)
            frame = {
                "pair": (df["exchange"] + "|" + df["symbol"]).to_numpy(), "snap": snap.to_numpy(bool),
                "side": side.to_numpy(np.int8), "price": df["price"].to_numpy(), "qty": df["amount"].to_numpy(),
                "ts": ts, "recv": recv, "line": lines,
            }
            if pending is not None:
                frame = {k: np.concatenate([pending[k], v]) for k, v in frame.items()}
            # a message: consecutive rows of one pair, one local_timestamp, one is_snapshot
            key_change = (frame["pair"][1:] != frame["pair"][:-1]) | (frame["recv"][1:] != frame["recv"][:-1]) | (
                frame["snap"][1:] != frame["snap"][:-1])
            starts = np.r_[0, np.flatnonzero(key_change) + 1]
            stops = np.r_[starts[1:], len(frame["ts"])]
            for a, b in zip(starts[:-1], stops[:-1]):
                yield from _message(frame, int(a), int(b), state, symbols)
            a = int(starts[-1])
            pending = {k: v[a:] for k, v in frame.items()}
        if pending is not None and len(pending["ts"]):
            yield from _message(pending, 0, len(pending["ts"]), state, symbols)
        for sym, st in state.items():  # a snapshot the file ends with is the book at its end
            if st.in_snapshot:
                yield _load_snapshot(st, sym)

    _replay(sink, items(), det, options, where, levels)


class _L2:
    __slots__ = ("u", "in_snapshot", "started", "last_ts", "last_recv", "snap_rows")

    def __init__(self):
        self.u = 0  # id of the last message
        self.in_snapshot = False  # the previous message was (part of) a snapshot
        self.started = False  # rows before the first snapshot are skipped (Tardis' rule)
        self.last_ts = 0  # exchange time of the last message
        self.last_recv = 0
        self.snap_rows: list = []  # (ts, recv, line, bids, asks) of the snapshot being read


def _message(fr, a, b, state, symbols):
    """The replay items of one Tardis message (rows ``a:b`` of ``fr``)."""
    ex, native = str(fr["pair"][a]).split("|", 1)
    sym = symbols(ex, native, int(fr["line"][a]))
    st = state.get(sym)
    if st is None:
        st = state[sym] = _L2()
    is_snap = bool(fr["snap"][a])
    side, price, qty = fr["side"][a:b], fr["price"][a:b], fr["qty"][a:b]
    bids = list(zip(price[side == 1].tolist(), qty[side == 1].tolist()))
    asks = list(zip(price[side == -1].tolist(), qty[side == -1].tolist()))
    ts, recv, line = int(fr["ts"][a]), int(fr["recv"][a]), int(fr["line"][a])
    if is_snap and st.in_snapshot and ex in _WHOLE_BOOK_MESSAGES:
        # every message of this feed is the whole book (Hyperliquid's l2Book: tardis-node's
        # mapper marks each one isSnapshot): the previous one is loaded, this one replaces it
        yield _load_snapshot(st, sym)
        st.in_snapshot = True
    if is_snap:
        if not st.in_snapshot:
            st.snap_rows = []
            if st.started:
                # Updates, then a snapshot again: Tardis' connection to the exchange restarted
                # and what happened between is unknown. A connection gap resets the book (as
                # a collector's reconnect does); the snapshot then writes the resync gap.
                yield Frame(recv, orjson.dumps({
                    "symbol": sym, "ts": st.last_ts, "recv_ns": recv, "end_ts": max(ts, st.last_ts + 1), "stream": "*",
                    "cause": "reconnect", "detail": f"Tardis sent the book again from line {line}: its connection restarted",
                }), FrameKind.GAP, None, line)
        st.snap_rows.append((ts, recv, line, bids, asks))
        st.in_snapshot = st.started = True
    else:
        if st.in_snapshot:
            yield _load_snapshot(st, sym)
        if st.started:
            u = _next_id(st.u, recv)
            diff = DepthDiff(sym, ts, recv, st.u + 1, u, st.u, bids, asks)  # follows the previous message
            st.u = u
            yield Frame(recv, [diff], FrameKind.EVENTS, None, line)
    st.last_ts = max(st.last_ts, ts)


# Tardis exchanges whose every book message is a complete snapshot (is_snapshot=true on every
# row): a run of snapshot messages is a series of books, not one book read in parts
_WHOLE_BOOK_MESSAGES = frozenset({"hyperliquid"})


def _load_snapshot(st: _L2, sym: str) -> Frame:
    st.in_snapshot = False
    rows = st.snap_rows
    st.snap_rows = []
    book_bids: dict = {}
    book_asks: dict = {}
    for _, _, _, bids, asks in rows:
        book_bids.update(bids)
        book_asks.update(asks)
    ts, recv, line = rows[-1][0], rows[-1][1], rows[-1][2]
    st.u = _next_id(st.u, recv)
    snap = DepthSnapshot(sym, ts, recv, st.u, sorted(book_bids.items(), reverse=True), sorted(book_asks.items()))
    return Frame(recv, [snap], FrameKind.EVENTS, None, line)
