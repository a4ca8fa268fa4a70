"""Binance REST answers saved as JSON (one body per file, or one per line).

Bodies (https://developers.binance.com/docs; spot /api/v3, USD-M /fapi/v1, COIN-M /dapi/v1)::

    /trades, /historicalTrades  [{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",
                                  "time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]
                                -> trades (isBestMatch: spot; side -1 when the buyer was the maker)
    /aggTrades                  [{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,
                                  "T":1498793709153,"m":true,"M":true}] -> agg_trades ("M": spot)
    /klines                     [[1499040000000,"0.01634790","0.80000000","0.01575800","0.01577100",
                                  "148976.11427815",1499644799999,"2434.19055334",308,"1756.87402397",
                                  "28.46694368","0"]] -> ohlcv_<interval> (interval: the name, else
                                  the spacing; the fields after volume are dropped, as for the archive)
    /markPriceKlines, /indexPriceKlines, /premiumIndexKlines  (same 12 values; volumes 0, the
                                  count the number of price updates) -> mark_ohlcv_<interval>, ...
                                  when the file name or --kind says which; else refused, never
                                  stored as bars of trades
    /depth                      {"lastUpdateId":1027024,"E":1589436922972,"T":1589436922959,
                                 "bids":[["4.00000000","431.00000000"]],"asks":[...]}
                                -> each body replaces the book (a partial book, as the live
                                   depth<N> stream) through the replay's books: a row at its
                                   ``E`` and grid rows between polled bodies (one per line).
                                   Spot bodies carry no time and cannot be placed: refused.
    /futures/data/openInterestHist  [{"symbol":"BTCUSDT","sumOpenInterest":"20403.63700000",
                                  "sumOpenInterestValue":"150570784.07809979","timestamp":1583127900000}]
                                -> open_interest, as ``tickstore backfill oi`` (COIN-M rows: pair +
                                   contractType; oi_value in USD: contracts x contract value,
                                   Binance's value being in the base coin)
    /fundingRate                [{"symbol":"BTCUSDT","fundingTime":1698768000000,"fundingRate":"0.00010000",
                                  "markPrice":"34287.54619963"}] -> funding (times snapped to the
                                  hour, intervals from the spacing; COIN-M ids: BTCUSD_PERP)

The symbol: ``fundingRate`` bodies name it; otherwise the file name (``BTCUSDT...``) or
``--symbol``; the market: the body (spot fields), the id, or ``--market``. No receive
time is recorded: ``recv_ts`` is ``ts``.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pandas as pd

from collectors.capture import Frame, FrameKind
from collectors.events import DepthSnapshot
from collectors.exchanges import BadFrame
from collectors.exchanges import binance as bn
from collectors.symbols import inverse_oi_value

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    MissingOption,
    Sink,
    epoch_to_ns,
    field_values,
    funding_frame,
    first_json,
    load_json,
    one_symbol_for,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    record_groups,
    records,
    resolve_symbol,
    TIMEFRAME_BARS,
    timeframe_of,
    user_symbol,
    utc,
    utc_index,
)
from .binance_vision import PRICE_KLINES, looks_like_price_klines
from .detect import Detected
from .frames import replay_into

__all__ = ["sniff", "parse"]

_SYMBOL = re.compile(r"(?:^|[^A-Z0-9])(?P<s>[A-Z0-9]+_(?:PERP|\d{6})|[A-Z0-9]{2,})(?:[-_.]|$)")
_INTERVAL = re.compile(r"(?:^|[-_])(?P<i>\d+(?:s|m|h|d|w|M))(?:[-_.]|$)")
_COINM = re.compile(r"^[A-Z0-9]+USD_(?:PERP|\d{6})$")


def _kind(rows: list) -> tuple[str, bool | None] | None:
    """(kind, spot?) of the records of a body (``core.records``); spot None when they do not say."""
    if not rows:
        return None
    x = rows[0]
    if isinstance(x, dict):
        if "lastUpdateId" in x:  # a depth body (or JSON lines of them)
            return "depth", "E" not in x and "T" not in x
        if {"id", "price", "qty", "time", "isBuyerMaker"} <= x.keys():
            return "trades", "isBestMatch" in x  # spot bodies carry isBestMatch; COIN-M ones baseQty
        if {"a", "p", "q", "f", "l", "T", "m"} <= x.keys():
            return "aggTrades", "M" in x
        if {"symbol", "fundingTime", "fundingRate"} <= x.keys():
            return "fundingRate", False
        if {"sumOpenInterest", "sumOpenInterestValue", "timestamp"} <= x.keys():
            return "openInterestHist", False
    if isinstance(x, list) and len(x) == 12 and isinstance(x[0], int):
        return ("priceKlines" if looks_like_price_klines(x) else "klines"), None
    return None


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    if not head.lstrip()[:1] in (b"[", b"{"):
        return None
    try:
        doc = load_json(member)
    except MalformedInput:
        first = first_json(head)
        if fmt is Format.BINANCE_REST or (first is not None and _kind(records(first)[0]) is not None):
            raise  # a Binance body whose later lines are broken: say where, not "unknown format"
        return None
    rows, _ = records(doc)
    found = _kind(rows)
    if found is None:
        return None
    kind, spot = found
    hints = {}
    name = member.path.name
    if kind in ("klines", "priceKlines"):
        price = options.kind if options.kind in PRICE_KLINES else next((k for k in PRICE_KLINES if k.lower() in name.lower()), None)
        if price is not None:
            kind = price
        elif kind == "priceKlines":
            raise MissingOption(f"{where}: its bars have volume 0 and a count of updates: bars of the mark, index or "
                                f"premium-index price (/fapi/v1/markPriceKlines, ...), not of trades; pass --kind "
                                f"markPriceKlines, indexPriceKlines or premiumIndexKlines")
    if kind == "depth" and spot:
        raise DataImportError(f"{where}: spot /depth answers carry no time (no E/T), so their rows cannot be placed "
                              f"on the time grid; record them with their receive time (a capture, see tickstore replay)")
    native = None
    if kind == "openInterestHist":  # USD-M rows name their symbol; COIN-M ones pair + contractType
        market = "coinm" if "pair" in rows[0] else "usdm"
        return Detected(Format.BINANCE_REST, kind, "binance", options.market or market, None)
    if kind == "fundingRate":
        first = str(rows[0]["symbol"])
        market = "coinm" if _COINM.match(first) else "usdm"
        return Detected(Format.BINANCE_REST, kind, "binance", options.market or market, None)
    m = _SYMBOL.search(name)
    native = m.group("s") if m else None
    market = options.market
    if market is None:
        if native and _COINM.match(native) or (isinstance(rows[0], dict) and "baseQty" in rows[0]):
            market = "coinm"
        elif spot is True:
            market = "spot"
        elif kind in PRICE_KLINES:  # mark, index and premium-index prices exist for futures only
            market = "usdm"
        elif kind == "depth":
            body = rows[0]
            market = "coinm" if "pair" in body or _COINM.match(str(body.get("symbol", ""))) else "usdm"
        elif spot is False:
            market = "usdm" if not (native and _COINM.match(native)) else "coinm"
    if market is None:
        raise MissingOption(f"{where}: cannot tell the Binance market of these {kind}; pass --market spot, usdm or coinm")
    sym = user_symbol(options, "binance", market, where=where)
    if sym is None:
        if native is None:
            raise MissingOption(f"{where}: the body and the file name do not say the symbol; pass --symbol")
        sym = resolve_symbol("binance", native, market, where=where)
    if kind.endswith("lines"):
        i = _INTERVAL.search(name)
        given = options.kind if options.kind not in PRICE_KLINES else None
        hints["interval"] = given or (i.group("i") if i else timeframe_of(
            epoch_to_ns(np.array([r[0] for r in rows[:TIMEFRAME_BARS]], dtype=np.int64), where=where), where=where))
    return Detected(Format.BINANCE_REST, kind, "binance", market, sym, hints)


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    rows, lines = records(load_json(member))
    parser = _klines if det.kind.endswith("lines") else {"trades": _trades, "aggTrades": _agg_trades, "depth": _depth,
                                                         "fundingRate": _funding, "openInterestHist": _open_interest}[det.kind]
    if det.kind != "depth":
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, list if det.kind.endswith("lines") else dict)), None)
        if bad is not None:
            raise MalformedInput(where, None if lines is None else lines[bad],
                                 f"record {bad + 1} is not a {det.kind} record like the first", orjson.dumps(rows[bad]))
    try:
        parser(rows, det, options, sink, where, lines)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, DataImportError):
            raise
        raise MalformedInput(where, None, f"not a Binance {det.kind} body: {type(exc).__name__} {exc}") from None


def _sides(rows, key: str, where: str, lines) -> np.ndarray:
    """-1 where the buyer was the maker (``isBuyerMaker``/``m`` true), +1 where not; a value
    that is not a JSON boolean names its record."""
    flags = field_values(rows, key, object, where=where, lines=lines)
    for i, v in enumerate(flags):
        if not isinstance(v, bool):
            raise MalformedInput(where, None if lines is None else lines[i],
                                 (f"record {i + 1}: " if lines is None else "") + f"{key} {v!r} is not true or false")
    return np.where(flags.astype(bool), -1, 1).astype(np.int8)


def _trades(rows, det, options, sink, where, lines) -> None:
    f = lambda key, dt: field_values(rows, key, dt, where=where, lines=lines)  # noqa: E731
    ts = epoch_to_ns(f("time", np.int64), where=where, lines=lines)
    sink.frame("trades", det.symbol, pd.DataFrame({
        "recv_ts": utc(ts), "trade_id": f("id", np.int64), "price": f("price", np.float64),
        "qty": f("qty", np.float64), "side": _sides(rows, "isBuyerMaker", where, lines),
    }, index=utc_index(ts)))


def _agg_trades(rows, det, options, sink, where, lines) -> None:
    f = lambda key, dt: field_values(rows, key, dt, where=where, lines=lines)  # noqa: E731
    ts = epoch_to_ns(f("T", np.int64), where=where, lines=lines)
    sink.frame("agg_trades", det.symbol, pd.DataFrame({
        "recv_ts": utc(ts), "agg_id": f("a", np.int64), "first_trade_id": f("f", np.int64),
        "last_trade_id": f("l", np.int64), "price": f("p", np.float64), "qty": f("q", np.float64),
        "side": _sides(rows, "m", where, lines),
    }, index=utc_index(ts)))


def _klines(rows, det, options, sink, where, lines) -> None:
    f = lambda i, dt, what: field_values(rows, i, dt, where=where, lines=lines, what=what)  # noqa: E731
    ts = epoch_to_ns(f(0, np.int64, "open time"), where=where, lines=lines, what="open time")
    interval = det.hints["interval"]
    price = PRICE_KLINES.get(det.kind)
    table = ohlcv_table(interval) if price is None else f"{price}_{ohlcv_table(interval)}"
    vals = [f(i, np.float64, name) for i, name in enumerate(("open", "high", "low", "close", "volume"), 1)]
    what = f"{interval} OHLCV bars" + (f" of the {price} price" if price else "")
    sink.frame(table, det.symbol, ohlcv_frame(ts, *vals), ohlcv_schema(table, what=what))


def _depth(bodies, det, options, sink, where, lines=None) -> None:
    native = bn.to_native(det.symbol.split(":", 1)[1], bn.Market(det.market))
    parser = bn.BinanceParser(bn.Market(det.market))
    items = []
    for i, body in enumerate(bodies):
        line = int(lines[i]) if lines is not None else i + 1
        try:
            snap = parser.parse_snapshot(orjson.dumps(body), 0, native_symbol=native)
        except BadFrame as exc:
            raise MalformedInput(where, line, f"not a /depth body: {type(exc).__name__}: {exc}") from None
        # the body's E (event time) is its time; no receive time exists: recv = ts
        snap = DepthSnapshot(snap.symbol, snap.ts, snap.ts, snap.update_id, snap.bids, snap.asks)
        items.append(Frame(snap.ts, [snap], FrameKind.EVENTS, None, line))
    # each body is the whole top of the book at its time (as a partial-book frame): a row
    # at its time and grid rows between the bodies, through the replay's books
    replay_into(sink, items, venue="binance", market=det.market, options=options, where=where, book_rows="both")


def _funding(rows, det, options, sink, where, lines) -> None:
    natives = field_values(rows, "symbol", object, where=where, lines=lines)
    one_symbol_for(options, natives, where=where)
    for native, rs, ls in record_groups(rows, lines, natives):
        market = "coinm" if _COINM.match(str(native)) else (det.market or "usdm")
        sym = user_symbol(options, "binance", market, where=where) or resolve_symbol("binance", str(native), market, where=where)
        ts = epoch_to_ns(field_values(rs, "fundingTime", np.int64, where=where, lines=ls), where=where, what="fundingTime")
        rate = field_values(rs, "fundingRate", np.float64, where=where, lines=ls)
        sink.frame("funding", sym, funding_frame(ts, rate, where=where, label=str(native), nominal=8.0))


def _open_interest(rows, det, options, sink, where, lines) -> None:
    """``/futures/data/openInterestHist`` rows, as ``tickstore backfill oi`` stores them:
    oi = sumOpenInterest (contracts), oi_value in the quote currency: sumOpenInterestValue
    for USD-M (USDT); COIN-M gives it in the base coin, so contracts x their USD value
    (``collectors.symbols.inverse_oi_value``, the rule of every path)."""
    if "pair" in rows[0]:
        contract = {"PERPETUAL": "PERP"}
        natives = [f"{r.get('pair')}_{contract.get(r.get('contractType'), r.get('contractType'))}" for r in rows]
    else:
        natives = list(field_values(rows, "symbol", object, where=where, lines=lines))
    one_symbol_for(options, natives, where=where)
    for native, rs, ls in record_groups(rows, lines, natives):
        market = "coinm" if _COINM.match(str(native)) else (det.market or "usdm")
        sym = user_symbol(options, "binance", market, where=where) or resolve_symbol("binance", str(native), market, where=where)
        ts = epoch_to_ns(field_values(rs, "timestamp", np.int64, where=where, lines=ls), where=where, lines=ls)
        oi = field_values(rs, "sumOpenInterest", np.float64, where=where, lines=ls)
        value = inverse_oi_value(sym, oi)
        if value is None:
            value = field_values(rs, "sumOpenInterestValue", np.float64, where=where, lines=ls)
        sink.frame("open_interest", sym, pd.DataFrame({"oi": oi, "oi_value": value}, index=utc_index(ts)))
