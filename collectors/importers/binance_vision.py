"""Binance's public bulk archive (data.binance.vision; github.com/binance/binance-public-data).

Daily and monthly zips of one CSV each (or the CSVs themselves), at
``data/<spot|futures/um|futures/cm>/<daily|monthly>/<kind>/<SYMBOL>/[<interval>/]<SYMBOL>-<kind or interval>-<date>.zip``.
Futures files gained a header row in 2022, spot files have none; both are read. Times are
epoch milliseconds, except spot files from 2025 on, in microseconds: the unit is read
from every value. What each kind becomes::

    trades        id,price,qty,quote_qty,time,is_buyer_maker[,is_best_match (spot)]
                  -> trades (ts = time, side -1 when the buyer was the maker)
    aggTrades     agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,
                  is_buyer_maker[,is_best_match]  -> agg_trades
    klines        open_time,open,high,low,close,volume,close_time,quote_volume,count,
    (any interval) taker_buy_volume,taker_buy_quote_volume,ignore
                  -> ohlcv_<interval> (1w -> ohlcv_7d; 1mo -> table ohlcv_1mo, created)
    markPriceKlines, indexPriceKlines, premiumIndexKlines (same columns; the path says which)
                  -> mark_ohlcv_<interval>, index_ohlcv_<interval>, premium_ohlcv_<interval>
                     (created: bars of those prices have no built-in table)
    bookTicker    update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,
                  transaction_time,event_time -> quotes (ts = event_time, as the live stream)
    fundingRate   calc_time,funding_interval_hours,last_funding_rate
                  -> funding (calc_time snapped to the hour; interval from the file)
    metrics       create_time,symbol,sum_open_interest,sum_open_interest_value,...
                  -> open_interest (5-minute samples; oi_value in the quote currency: USD-M
                     as given, COIN-M contracts x their USD value - the file's value is in
                     the base coin)
    liquidationSnapshot  time,side,order_type,time_in_force,original_quantity,price,average_price,
                  order_status,last_fill_quantity,accumulated_fill_quantity
                  -> liquidations (COIN-M): what was executed, as the live forceOrder's ap/z:
                     price = average_price, qty = accumulated_fill_quantity (contracts); a
                     row that filled nothing is no print
    bookDepth     timestamp,percentage,depth,notional -> book_depth (created: depth within
                  +-percentage of the mid, no live equivalent)
    T_DEPTH       symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu
                  (Binance's futures order-book download, ``<SYMBOL>_T_DEPTH_<date>.tar.gz``
                  of ``..._depth_snap.csv`` (``snap`` rows) and ``..._depth_update.csv``
                  (``set`` rows); or the CSVs themselves)
                  -> one ``replay_frames`` call over the parts of one download, merged by
                     time (futures pu rule, the replay's grid, end of data and book state:
                     the next day's download continues the book); --keep-diffs also stores
                     the diffs in book_diffs. ``timestamp`` is Binance's transaction time
                     (the live diffs' ``T``; live book rows are on ``E``, 0-2 ms later).
                     A snapshot file imported alone leaves the book in the store's book
                     state for the update file's import.

Kline fields rule: the 5 OHLCV values are stored; ``close_time`` is implied by the
interval; the others (quote_volume, count, taker_buy_volume, taker_buy_quote_volume) are
kept when the target table has columns of those names (a table made with
``Tickstore.create_table``), else dropped; ``ignore`` is always dropped. Never refused.
COIN-M klines hold base-asset volumes there (README: "Base asset volume", "Taker buy base
asset volume", although their header rows say quote_volume): they are kept as
``base_volume``, count, taker_buy_volume, ``taker_buy_base_volume``. Volumes of COIN-M
files (klines ``volume``, trades ``qty``) are contracts, as on the live stream.

Headers and units: futures files gained a header row in 2022 (older ones have none), spot
files have none; both are read. Columns are read in the documented order; a column a file
has beyond them is ignored, never shifts the others. Times are epoch ms, spot files from
2025-01-01 epoch us: the unit is read per value (a monthly file may hold both).
``.CHECKSUM`` files beside the zips are verified against them (``run``), never imported.

Markets: the path says ``spot``, ``futures/um`` or ``futures/cm``; else the columns (spot
trades and aggTrades have ``is_best_match``), a COIN-M id (``BTCUSD_PERP``) or ``--market``.
The archive has no receive time: ``recv_ts`` is ``ts``.
"""

from __future__ import annotations

import heapq
import re

import numpy as np
import pandas as pd

from collectors.capture import Frame, FrameKind
from collectors.events import DepthDiff, DepthSnapshot
from collectors.funding import SettlementError, settlement_times
from collectors.symbols import inverse_oi_value
from tickstore.schemas import Column, Schema

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
    ohlcv_schema,
    ohlcv_table,
    resolve_symbol,
    TIMEFRAME_BARS,
    timeframe_of,
    user_symbol,
    utc,
    utc_index,
)
from .detect import Detected
from .frames import replay_into

__all__ = ["KINDS", "PRICE_KLINES", "sniff", "parse", "looks_like_price_klines"]

KINDS = ("trades", "aggTrades", "klines", "markPriceKlines", "indexPriceKlines", "premiumIndexKlines", "bookTicker",
         "fundingRate", "metrics", "liquidationSnapshot", "bookDepth", "depth")
PRICE_KLINES = {"markPriceKlines": "mark", "indexPriceKlines": "index", "premiumIndexKlines": "premium"}
_INTERVAL = r"\d+(?:s|m|h|d|w|mo)"
_NAME = re.compile(
    r"(?P<symbol>[A-Z0-9_]+)-(?P<kind>" + "|".join(KINDS[:-1]) + "|" + _INTERVAL + r")-(?P<date>\d{4}-\d{2}(?:-\d{2})?)"
)
_TDEPTH = re.compile(r"(?P<symbol>[A-Z0-9_]+)_T_DEPTH_(?P<date>\d{4}-\d{2}-\d{2})")
_COINM_ID = re.compile(r"^[A-Z0-9]+USD_(?:PERP|\d{6})$")

_HEADERS = {
    "agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker": ("aggTrades", None),
    "id,price,qty,quote_qty,time,is_buyer_maker": ("trades", "usdm"),
    "id,price,qty,base_qty,time,is_buyer_maker": ("trades", "coinm"),
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore": ("klines", None),
    "update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time": ("bookTicker", None),
    "calc_time,funding_interval_hours,last_funding_rate": ("fundingRate", None),
    "timestamp,percentage,depth,notional": ("bookDepth", None),
    "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu": ("depth", None),
}
_PREFIXES = {  # headers with columns that varied over the years: matched on their start
    "create_time,symbol,sum_open_interest,sum_open_interest_value": "metrics",
    "time,side,order_type,time_in_force,original_quantity,price,average_price": "liquidationSnapshot",
}
_FUTURES_ONLY = ("bookTicker", "fundingRate", "metrics", "liquidationSnapshot", "bookDepth", "depth")


_BOOK_DEPTH = Schema(
    "book_depth",
    (Column("percentage", "float64"), Column("depth", "float64"), Column("notional", "float64")),
    key=("ts", "percentage"),
    description="Binance bookDepth: quantity (depth) and notional within +-percentage % of the mid price",
)


def _market_of_path(text: str) -> str | None:
    t = "/" + text.replace("\\", "/")
    if "/futures/um/" in t or "/um/" in t:
        return "usdm"
    if "/futures/cm/" in t or "/cm/" in t:
        return "coinm"
    if "/spot/" in t:
        return "spot"
    return None


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace")
    path = member.path.as_posix() + "/" + member.name
    named = _NAME.search(member.name) or _NAME.search(member.path.name)
    tdepth = _TDEPTH.search(member.name) or _TDEPTH.search(member.path.name)
    kind = market = symbol = interval = None
    header = _HEADERS.get(first)
    if header is None:
        header = next(((k, None) for p, k in _PREFIXES.items() if first.startswith(p)), None)
    ncols = first.count(",") + 1
    if header is not None:
        kind, market = header
    if named is not None:
        symbol = named.group("symbol")
        k = named.group("kind")
        if re.fullmatch(_INTERVAL, k):
            in_path = [p for p in PRICE_KLINES if f"/{p}/" in "/" + path]
            # the folder says which price a kline file is of; its header row is the same for all
            kind, interval = (in_path[0] if in_path else kind or "klines"), k
        else:
            kind = kind or k
    elif tdepth is not None:
        symbol, kind = tdepth.group("symbol"), kind or "depth"
    if options.kind is not None:
        if options.kind not in KINDS:
            raise MissingOption(f"{where}: --kind {options.kind!r} is not a Binance archive kind; they are {list(KINDS)}")
        kind = options.kind
    if kind is None:
        if header is None and (named is None and tdepth is None):
            if not first[:1].isdigit() or ncols not in (6, 7, 8, 12):
                return None  # nothing says this is an archive file
            if fmt is not Format.BINANCE_VISION:
                return None  # a bare numeric CSV: only when asked for
        raise MissingOption(f"{where}: cannot tell which Binance archive file this is (no header, name not like "
                            f"BTCUSDT-trades-2024-01-01.csv); pass --kind, one of {list(KINDS)}")
    if kind in ("trades", "aggTrades") and header is None and first[:1].isdigit():
        spot_cols = 7 if kind == "trades" else 8
        if ncols == spot_cols:
            market = "spot"
        elif ncols == spot_cols - 1 and market is None:
            market = "futures"  # usdm or coinm: the symbol tells
    if kind == "klines" and options.kind is None and looks_like_price_klines(_first_row(head)):
        raise MissingOption(f"{where}: its bars have volume 0 and a count of updates: bars of the mark, index or "
                            f"premium-index price, not of trades; pass --kind markPriceKlines, indexPriceKlines or "
                            f"premiumIndexKlines (the archive's folder names say which)")
    if kind.endswith("lines") and interval is None:
        interval = _interval_of(member, where)
    market = options.market or _market_of_path(path) or market
    if symbol is None and options.symbol is None:
        if kind == "depth" and first.startswith("symbol,"):
            line2 = head.split(b"\n")[1:2]
            symbol = line2[0].split(b",", 1)[0].decode() if line2 and line2[0] else None
        if symbol is None:
            raise MissingOption(f"{where}: the file name does not say the symbol (like BTCUSDT-1m-2024-01-01.csv); pass --symbol")
    if market in (None, "futures"):
        if symbol is not None and _COINM_ID.match(symbol):
            market = "coinm"
        elif market == "futures" or kind in _FUTURES_ONLY:
            market = "usdm" if symbol is None or not _COINM_ID.match(symbol) else "coinm"
    if market is None and options.symbol is None:
        raise MissingOption(f"{where}: cannot tell spot, USD-M or COIN-M from the path or the file; "
                            f"pass --market spot, usdm or coinm")
    if market is not None and market not in ("spot", "usdm", "coinm"):
        raise MissingOption(f"{where}: --market {market!r}: Binance markets are spot, usdm, coinm")
    if kind in _FUTURES_ONLY and market == "spot":
        raise DataImportError(f"{where}: {kind} files exist for futures only, not spot")
    sym = user_symbol(options, "binance", market, where=where)
    if sym is None and market == "coinm" and symbol is not None and not _COINM_ID.match(symbol):
        raise MissingOption(f"{where}: {symbol!r} is a COIN-M pair, not a contract: its {kind} serve every contract "
                            f"of the pair; pass --symbol with the one to file them under, e.g. binance:BTC/USD:BTC")
    sym = sym or resolve_symbol("binance", symbol, market, where=where)
    hints = {"interval": interval} if interval else {}
    hints["fields"] = _data_fields(head)
    return Detected(Format.BINANCE_VISION, kind, "binance", market, sym, hints)


def looks_like_price_klines(row) -> bool:
    """A kline row (12 values, as text or numbers) of the mark, index or premium-index price:
    Binance writes 0 for every volume of those and the number of price updates as the count
    (a bar of trades with no volume has a count of 0)."""
    try:
        return row is not None and len(row) >= 9 and float(row[5]) == 0 and float(row[7]) == 0 and int(float(row[8])) > 0
    except (TypeError, ValueError):
        return False


def _first_row(head: bytes) -> list | None:
    for line in head.split(b"\n")[:3]:
        if line[:1].isdigit():
            return line.rstrip(b"\r").decode("ascii", "replace").split(",")
    return None


def _data_fields(head: bytes) -> int | None:
    """The number of fields of the first data row (a row starting with a digit)."""
    for line in head.split(b"\n")[:3]:
        line = line.rstrip(b"\r")
        if line[:1].isdigit():
            return line.count(b",") + 1
    return None


def _columns(det: Detected, known: list[str]) -> list[str]:
    """``known`` (the archive's documented columns, in file order), plus placeholder names
    for columns the file has beyond them (a column Binance appends later is ignored, never
    shifts the others)."""
    n = det.hints.get("fields") or len(known)
    return known + [f"_col{i}" for i in range(len(known) + 1, n + 1)]


def _interval_of(member: Member, where: str) -> str:
    """A kline file's interval from the spacing of its first open times (``timeframe_of``)."""
    opens = []
    for _, line in member.lines():
        if line[:1].isdigit():
            opens.append(int(line.split(b",", 1)[0]))
        if len(opens) == TIMEFRAME_BARS:
            break
    return timeframe_of(epoch_to_ns(np.array(opens, dtype=np.int64), where=where) if opens else [], where=where)


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    {
        "trades": _trades, "aggTrades": _agg_trades, "klines": _klines, "markPriceKlines": _klines,
        "indexPriceKlines": _klines, "premiumIndexKlines": _klines, "bookTicker": _book_ticker,
        "fundingRate": _funding, "metrics": _metrics, "liquidationSnapshot": _liquidations,
        "bookDepth": _book_depth, "depth": _depth,
    }[det.kind](member, det, options, sink)


def _bool(values: pd.Series, lines, where, what: str) -> np.ndarray:
    low = values.str.lower()
    ok = low.isin(["true", "false"])
    if not ok.all():
        i = int(np.argmax(~ok.to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"{what} {values.iat[i]!r} is not true or false")
    return (low == "true").to_numpy()


def _time(values, lines, where, what="time") -> np.ndarray:
    return epoch_to_ns(values.to_numpy(), where=where, lines=lines, what=what)


def _trades(member, det, options, sink) -> None:
    where = member.where()
    spot = det.market == "spot"
    cols = _columns(det, ["id", "price", "qty", "quote_qty", "time", "is_buyer_maker"] + (["is_best_match"] if spot else []))
    dtypes = {"id": np.int64, "price": np.float64, "qty": np.float64, "quote_qty": np.float64, "time": np.int64,
              "is_buyer_maker": str}
    for lines, df in csv_blocks(member, cols, dtypes, header=None, required=("id", "price", "qty", "time", "is_buyer_maker")):
        ts = _time(df["time"], lines, where)
        maker = _bool(df["is_buyer_maker"], lines, where, "is_buyer_maker")
        sink.frame("trades", det.symbol, pd.DataFrame({
            "recv_ts": utc(ts), "trade_id": df["id"].to_numpy(), "price": df["price"].to_numpy(),
            "qty": df["qty"].to_numpy(), "side": np.where(maker, -1, 1).astype(np.int8),
        }, index=utc_index(ts)))


def _agg_trades(member, det, options, sink) -> None:
    where = member.where()
    spot = det.market == "spot"
    cols = ["agg_trade_id", "price", "quantity", "first_trade_id", "last_trade_id", "transact_time", "is_buyer_maker"]
    cols = _columns(det, cols + (["is_best_match"] if spot else []))
    dtypes = {"agg_trade_id": np.int64, "price": np.float64, "quantity": np.float64, "first_trade_id": np.int64,
              "last_trade_id": np.int64, "transact_time": np.int64, "is_buyer_maker": str}
    for lines, df in csv_blocks(member, cols, dtypes, header=None, required=tuple(cols[:7])):
        ts = _time(df["transact_time"], lines, where)
        maker = _bool(df["is_buyer_maker"], lines, where, "is_buyer_maker")
        sink.frame("agg_trades", det.symbol, pd.DataFrame({
            "recv_ts": utc(ts), "agg_id": df["agg_trade_id"].to_numpy(), "first_trade_id": df["first_trade_id"].to_numpy(),
            "last_trade_id": df["last_trade_id"].to_numpy(), "price": df["price"].to_numpy(),
            "qty": df["quantity"].to_numpy(), "side": np.where(maker, -1, 1).astype(np.int8),
        }, index=utc_index(ts)))


_KLINE = ["open_time", "open", "high", "low", "close", "volume", "close_time", "quote_volume", "count",
          "taker_buy_volume", "taker_buy_quote_volume", "ignore"]
_KLINE_EXTRAS = ("quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume")
# COIN-M klines hold base-asset volumes in those columns (the README's "Base asset volume",
# "Taker buy base asset volume"; the files' header rows say quote_volume all the same)
_COINM_KLINE_EXTRAS = ("base_volume", "count", "taker_buy_volume", "taker_buy_base_volume")


def _klines(member, det, options, sink) -> None:
    where = member.where()
    interval = det.hints["interval"]
    price = PRICE_KLINES.get(det.kind)
    table = ohlcv_table(interval) if price is None else f"{price}_{ohlcv_table(interval)}"
    schema = ohlcv_schema(table, what=f"{interval} OHLCV bars" + (f" of the {price} price" if price else ""))
    dtypes = {c: np.float64 for c in _KLINE[1:6] + list(_KLINE_EXTRAS)}
    dtypes.update(open_time=np.int64, close_time=np.int64, ignore=str)
    # the rule for the other fields: kept where the table has a column of that name
    names = dict(zip(_KLINE_EXTRAS, _COINM_KLINE_EXTRAS if det.market == "coinm" else _KLINE_EXTRAS))
    kept = [c for c in _KLINE_EXTRAS if names[c] in (sink.columns_of(table) or ())]
    for lines, df in csv_blocks(member, _columns(det, _KLINE), dtypes, header=None, required=tuple(_KLINE[:6])):
        ts = _time(df["open_time"], lines, where, "open_time")
        data = {c: df[c].to_numpy() for c in ("open", "high", "low", "close", "volume")}
        for c in kept:
            data[names[c]] = df[c].to_numpy(np.int64 if c == "count" else np.float64)
        sink.frame(table, det.symbol, pd.DataFrame(data, index=utc_index(ts)), schema)


def _book_ticker(member, det, options, sink) -> None:
    where = member.where()
    cols = ["update_id", "best_bid_price", "best_bid_qty", "best_ask_price", "best_ask_qty", "transaction_time", "event_time"]
    dtypes = {"update_id": np.int64, "transaction_time": np.int64, "event_time": np.int64,
              **{c: np.float64 for c in cols[1:5]}}
    for lines, df in csv_blocks(member, _columns(det, cols), dtypes, header=None, required=tuple(cols)):
        ts = _time(df["event_time"], lines, where, "event_time")
        sink.frame("quotes", det.symbol, pd.DataFrame({
            "recv_ts": utc(ts), "update_id": df["update_id"].to_numpy(),
            "bid_px": df["best_bid_price"].to_numpy(), "bid_qty": df["best_bid_qty"].to_numpy(),
            "ask_px": df["best_ask_price"].to_numpy(), "ask_qty": df["best_ask_qty"].to_numpy(),
        }, index=utc_index(ts)))


def _funding(member, det, options, sink) -> None:
    where = member.where()
    cols = ["calc_time", "funding_interval_hours", "last_funding_rate"]
    dtypes = {"calc_time": np.int64, "funding_interval_hours": np.float64, "last_funding_rate": np.float64}
    for lines, df in csv_blocks(member, _columns(det, cols), dtypes, header=None, required=tuple(cols)):
        ts = _time(df["calc_time"], lines, where, "calc_time")
        try:
            snapped = settlement_times(ts, source=where)
        except SettlementError as exc:
            raise MalformedInput(where, None, str(exc).split(": ", 1)[-1]) from None
        sink.frame("funding", det.symbol, pd.DataFrame({
            "rate": df["last_funding_rate"].to_numpy(), "interval_h": df["funding_interval_hours"].to_numpy(),
        }, index=snapped))


def _utc_text(values: pd.Series, lines, where, what: str) -> np.ndarray:
    """``2023-01-01 00:05:00`` (UTC, as the archive writes them) -> int64 ns."""
    t = pd.to_datetime(values, format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)
    if t.isna().any():
        i = int(np.argmax(t.isna().to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"{what} {values.iat[i]!r} is not a time like 2023-01-01 00:05:00")
    return pd.DatetimeIndex(t).as_unit("ns").asi8


def _metrics(member, det, options, sink) -> None:
    where = member.where()
    with member.open() as fh:
        header = fh.readline().removeprefix(b"\xef\xbb\xbf").decode("ascii", "replace").strip().split(",")
    dtypes = {"sum_open_interest": np.float64, "sum_open_interest_value": np.float64, "create_time": str}
    for lines, df in csv_blocks(member, header, dtypes, header=True,
                                required=("create_time", "sum_open_interest", "sum_open_interest_value")):
        ts = _utc_text(df["create_time"], lines, where, "create_time")
        oi = df["sum_open_interest"].to_numpy()
        # COIN-M: contracts, and a value in the base coin: stored in USD (contracts x their USD
        # value, the one rule of every path); USD-M: the value is in USDT already
        value = inverse_oi_value(det.symbol, oi)
        sink.frame("open_interest", det.symbol, pd.DataFrame({
            "oi": oi, "oi_value": df["sum_open_interest_value"].to_numpy() if value is None else value,
        }, index=utc_index(ts)))


def _liquidations(member, det, options, sink) -> None:
    where = member.where()
    with member.open() as fh:
        header = fh.readline().removeprefix(b"\xef\xbb\xbf").decode("ascii", "replace").strip().split(",")
    # what was executed, as every path stores liquidations (the live forceOrder's ap and z):
    # average_price and accumulated_fill_quantity; rows that filled nothing are no print
    dtypes = {"time": np.int64, "average_price": np.float64, "accumulated_fill_quantity": np.float64, "side": str}
    for lines, df in csv_blocks(member, header, dtypes, header=True,
                                required=("time", "side", "average_price", "accumulated_fill_quantity")):
        ts = _time(df["time"], lines, where)
        side = df["side"].str.upper().map({"BUY": 1, "SELL": -1})
        if side.isna().any():
            i = int(np.argmax(side.isna().to_numpy()))
            raise MalformedInput(where, int(lines[i]), f"side {df['side'].iat[i]!r} is not BUY or SELL")
        qty, price = df["accumulated_fill_quantity"].to_numpy(), df["average_price"].to_numpy()
        bad = ~(qty >= 0) | ((qty > 0) & ~(price > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise MalformedInput(where, int(lines[i]), f"accumulated_fill_quantity {qty[i]!r} at average_price {price[i]!r} "
                                                       f"is not a fill (a quantity >= 0 at a price > 0)")
        filled = qty > 0
        sink.frame("liquidations", det.symbol, pd.DataFrame({
            "recv_ts": utc(ts[filled]), "side": side.to_numpy(np.int8)[filled], "price": price[filled], "qty": qty[filled],
        }, index=utc_index(ts[filled])))


def _book_depth(member, det, options, sink) -> None:
    where = member.where()
    cols = ["timestamp", "percentage", "depth", "notional"]
    dtypes = {"timestamp": str, "percentage": np.float64, "depth": np.float64, "notional": np.float64}
    for lines, df in csv_blocks(member, cols, dtypes, header=None, required=tuple(cols)):
        ts = _utc_text(df["timestamp"], lines, where, "timestamp")
        sink.frame("book_depth", det.symbol, pd.DataFrame({
            "percentage": df["percentage"].to_numpy(), "depth": df["depth"].to_numpy(), "notional": df["notional"].to_numpy(),
        }, index=utc_index(ts)), _BOOK_DEPTH)


# -- T_DEPTH: Binance's futures order-book download -----------------------------------------------
# The parts of one download (the snapshot file and the update file of a .tar.gz, or one CSV
# holding both) go through one ``replay_frames`` call (``frames.replay_into``), merged by
# time: a snapshot is the book at its last_update_id, loaded by the futures procedure as a
# REST snapshot is (``BookBuilder.on_snapshot``: diffs before it dropped, the one spanning it
# applied, ignored while the book is synced), every set message a ``DepthDiff``. The replay's
# grid, end of data and book state are those of ``tickstore replay``: the next day's download
# continues the book.
_DEPTH_COLS = ["symbol", "timestamp", "first_update_id", "last_update_id", "side", "update_type", "price", "qty", "pu"]
_DEPTH_TYPES = {"timestamp": np.int64, "first_update_id": np.int64, "last_update_id": np.int64, "price": np.float64,
                "qty": np.float64, "pu": np.int64, "side": str, "update_type": str}


def _depth(member, det, options, sink) -> None:
    parts = sink.state.get(("depth", det.symbol))
    if parts is None:
        parts = sink.state[("depth", det.symbol)] = []
        sink.at_end(lambda: _replay_depth(parts, det, options, sink))
    parts.append(member)


def _as_snapshot(book, snap) -> list:
    """A T_DEPTH snapshot is the book at its last_update_id: the REST snapshot procedure."""
    return book.on_snapshot(snap)


def _replay_depth(parts: list, det, options, sink) -> list:
    # merged by time; at one time a snapshot goes first (as a REST snapshot fetched while diffs buffer)
    streams = [((ts, rank, i, n, frame) for n, (ts, rank, frame) in enumerate(_depth_messages(m, det)))
               for i, m in enumerate(parts)]
    items = (x[-1] for x in heapq.merge(*streams))
    replay_into(sink, items, venue="binance", market=det.market, options=options, where=parts[0].where(),
                snapshot_rule=_as_snapshot)
    return []


def _depth_messages(member, det):
    """(ts, 0 snapshot / 1 diff, Frame of the events) of every message of one T_DEPTH file:
    consecutive rows of one last_update_id and update_type."""
    where = member.where()
    pending = None
    for lines, df in csv_blocks(member, _DEPTH_COLS, _DEPTH_TYPES, header=None, required=tuple(_DEPTH_COLS)):
        side = df["side"].map({"b": 1, "a": -1})
        kind = df["update_type"].map({"snap": True, "set": False})
        for what, v, raw in (("side", side, df["side"]), ("update_type", kind, df["update_type"])):
            if v.isna().any():
                i = int(np.argmax(v.isna().to_numpy()))
                extra = (" (T_DEPTH_BACKFILL's quantity changes are not supported: import T_DEPTH files)"
                         if raw.iat[i] == "delta" else "")
                raise MalformedInput(where, int(lines[i]), f"{what} {raw.iat[i]!r} is not one of b/a, snap/set{extra}")
        ts = _time(df["timestamp"], lines, where, "timestamp")
        fr = {"ts": ts, "u": df["last_update_id"].to_numpy(), "U": df["first_update_id"].to_numpy(),
              "pu": df["pu"].to_numpy(), "snap": kind.to_numpy(bool), "side": side.to_numpy(np.int8),
              "px": df["price"].to_numpy(), "qty": df["qty"].to_numpy(), "line": np.asarray(lines)}
        if pending is not None:
            fr = {k: np.concatenate([pending[k], v]) for k, v in fr.items()}
        cut = np.flatnonzero((fr["u"][1:] != fr["u"][:-1]) | (fr["snap"][1:] != fr["snap"][:-1])) + 1
        starts = np.r_[0, cut]
        for a, b in zip(starts[:-1], starts[1:]):
            yield _depth_message(det.symbol, fr, int(a), int(b))
        pending = {k: v[int(starts[-1]):] for k, v in fr.items()}
    if pending is not None and len(pending["ts"]):
        yield _depth_message(det.symbol, pending, 0, len(pending["ts"]))


def _depth_message(sym: str, fr, a: int, b: int):
    side, px, qty = fr["side"][a:b], fr["px"][a:b], fr["qty"][a:b]
    bids = list(zip(px[side == 1].tolist(), qty[side == 1].tolist()))
    asks = list(zip(px[side == -1].tolist(), qty[side == -1].tolist()))
    ts, u, line = int(fr["ts"][a]), int(fr["u"][a]), int(fr["line"][a])
    if fr["snap"][a]:
        bids.sort(reverse=True)
        asks.sort()
        return ts, 0, Frame(ts, [DepthSnapshot(sym, ts, ts, u, bids, asks)], FrameKind.EVENTS, None, line)
    diff = DepthDiff(sym, ts, ts, int(fr["U"][a]), u, int(fr["pu"][a]), bids, asks)
    return ts, 1, Frame(ts, [diff], FrameKind.EVENTS, None, line)
