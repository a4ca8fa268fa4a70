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
                                   depth<N> stream), sampled on the collector's grid: a file of
                                   polled bodies (one per line) gives grid rows between them.
                                   Spot bodies carry no time and cannot be placed: refused.
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

from collectors.events import DepthSnapshot
from collectors.exchanges import binance as bn
from collectors.funding import SettlementError, funding_intervals, settlement_times

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    MissingOption,
    Sink,
    epoch_to_ns,
    load_json,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    resolve_symbol,
    timeframe_of,
    user_symbol,
    utc,
    utc_index,
)
from .binance_vision import PRICE_KLINES, looks_like_price_klines
from .detect import Detected
from .frames import FrameFeed

__all__ = ["sniff", "parse"]

_SYMBOL = re.compile(r"(?:^|[^A-Z0-9])(?P<s>[A-Z0-9]+_(?:PERP|\d{6})|[A-Z0-9]{2,})(?:[-_.]|$)")
_INTERVAL = re.compile(r"(?:^|[-_])(?P<i>\d+(?:s|m|h|d|w|M))(?:[-_.]|$)")
_COINM = re.compile(r"^[A-Z0-9]+USD_(?:PERP|\d{6})$")


def _kind(doc) -> tuple[str, bool | None] | None:
    """(kind, spot?) of a body; spot None when the body does not say."""
    if isinstance(doc, dict):
        return ("depth", "E" not in doc and "T" not in doc) if "lastUpdateId" in doc else None
    if not isinstance(doc, list) or not doc:
        return None
    x = doc[0]
    if isinstance(x, dict):
        if {"id", "price", "qty", "time", "isBuyerMaker"} <= x.keys():
            return "trades", "isBestMatch" in x  # spot bodies carry isBestMatch; COIN-M ones baseQty
        if {"a", "p", "q", "f", "l", "T", "m"} <= x.keys():
            return "aggTrades", "M" in x
        if {"symbol", "fundingTime", "fundingRate"} <= x.keys():
            return "fundingRate", False
        if "lastUpdateId" in x:  # JSON lines of depth bodies
            return "depth", "E" not in x and "T" not in x
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
        if fmt is Format.BINANCE_REST:
            raise
        return None
    found = _kind(doc)
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
    if kind == "fundingRate":
        first = doc[0]["symbol"]
        market = "coinm" if _COINM.match(first) else "usdm"
        return Detected(Format.BINANCE_REST, kind, "binance", options.market or market, None)
    m = _SYMBOL.search(name)
    native = m.group("s") if m else None
    market = options.market
    if market is None:
        if native and _COINM.match(native) or (isinstance(doc, list) and isinstance(doc[0], dict) and "baseQty" in doc[0]):
            market = "coinm"
        elif spot is True:
            market = "spot"
        elif kind in PRICE_KLINES:  # mark, index and premium-index prices exist for futures only
            market = "usdm"
        elif kind == "depth" and isinstance(doc, (dict, list)):
            body = doc if isinstance(doc, dict) else doc[0]
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
            epoch_to_ns(np.array([r[0] for r in doc[:2]], dtype=np.int64), where=where), where=where))
    return Detected(Format.BINANCE_REST, kind, "binance", market, sym, hints)


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    doc = load_json(member)
    try:
        parser = _klines if det.kind.endswith("lines") else {"trades": _trades, "aggTrades": _agg_trades, "depth": _depth,
                                                             "fundingRate": _funding}[det.kind]
        parser(doc, det, options, sink, where)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        if isinstance(exc, DataImportError):
            raise
        raise MalformedInput(where, None, f"not a Binance {det.kind} body: {type(exc).__name__} {exc}") from None


def _records(doc, where: str, what: str) -> list:
    if not isinstance(doc, list):
        raise MalformedInput(where, None, f"a {what} body is a JSON array")
    return doc


def _trades(doc, det, options, sink, where) -> None:
    rows = _records(doc, where, "trades")
    ts = epoch_to_ns(np.array([r["time"] for r in rows], dtype=np.int64), where=where)
    sink.frame("trades", det.symbol, pd.DataFrame({
        "recv_ts": utc(ts), "trade_id": np.array([r["id"] for r in rows], dtype=np.int64),
        "price": np.array([r["price"] for r in rows], dtype=np.float64),
        "qty": np.array([r["qty"] for r in rows], dtype=np.float64),
        "side": np.array([-1 if r["isBuyerMaker"] else 1 for r in rows], dtype=np.int8),
    }, index=utc_index(ts)))


def _agg_trades(doc, det, options, sink, where) -> None:
    rows = _records(doc, where, "aggTrades")
    ts = epoch_to_ns(np.array([r["T"] for r in rows], dtype=np.int64), where=where)
    sink.frame("agg_trades", det.symbol, pd.DataFrame({
        "recv_ts": utc(ts), "agg_id": np.array([r["a"] for r in rows], dtype=np.int64),
        "first_trade_id": np.array([r["f"] for r in rows], dtype=np.int64),
        "last_trade_id": np.array([r["l"] for r in rows], dtype=np.int64),
        "price": np.array([r["p"] for r in rows], dtype=np.float64),
        "qty": np.array([r["q"] for r in rows], dtype=np.float64),
        "side": np.array([-1 if r["m"] else 1 for r in rows], dtype=np.int8),
    }, index=utc_index(ts)))


def _klines(doc, det, options, sink, where) -> None:
    rows = _records(doc, where, "klines")
    arr = np.array([r[:6] for r in rows], dtype=object)
    ts = epoch_to_ns(arr[:, 0].astype(np.int64), where=where, what="open time")
    interval = det.hints["interval"]
    price = PRICE_KLINES.get(det.kind)
    table = ohlcv_table(interval) if price is None else f"{price}_{ohlcv_table(interval)}"
    vals = arr[:, 1:6].astype(np.float64)
    what = f"{interval} OHLCV bars" + (f" of the {price} price" if price else "")
    sink.frame(table, det.symbol, ohlcv_frame(ts, *vals.T), ohlcv_schema(table, what=what))


def _depth(doc, det, options, sink, where) -> None:
    bodies = doc if isinstance(doc, list) else [doc]
    feed = FrameFeed("binance", det.market, sink, options, where=where)
    native = bn.to_native(det.symbol.split(":", 1)[1], bn.Market(det.market))
    parser = feed.parser
    for line, body in enumerate(bodies, 1):
        raw = orjson.dumps(body)
        snap = parser.parse_snapshot(raw, 0, native_symbol=native)
        # the body's E (event time) is its time; no receive time exists: recv = ts
        snap = DepthSnapshot(snap.symbol, snap.ts, snap.ts, snap.update_id, snap.bids, snap.asks)
        book = feed.book_of(snap)
        sink.events(book.on_partial(snap))
    sink.events(feed.close())


def _funding(doc, det, options, sink, where) -> None:
    rows = _records(doc, where, "fundingRate")
    by_symbol: dict[str, list] = {}
    for r in rows:
        by_symbol.setdefault(r["symbol"], []).append(r)
    for native, rs in by_symbol.items():
        market = "coinm" if _COINM.match(native) else (det.market or "usdm")
        sym = user_symbol(options, "binance", market, where=where) or resolve_symbol("binance", native, market, where=where)
        ts = epoch_to_ns(np.array([r["fundingTime"] for r in rs], dtype=np.int64), where=where, what="fundingTime")
        try:
            snapped = settlement_times(ts, source=f"{where} {native}")
        except SettlementError as exc:
            raise MalformedInput(where, None, str(exc)) from None
        order = np.argsort(snapped.asi8, kind="stable")
        t = snapped.asi8[order]
        sink.frame("funding", sym, pd.DataFrame({
            "rate": np.array([rs[i]["fundingRate"] for i in order], dtype=np.float64),
            "interval_h": funding_intervals(t, nominal=8.0),
        }, index=utc_index(t)))
