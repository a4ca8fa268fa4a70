"""ccxt answers saved with ``json.dump`` (https://docs.ccxt.com/#/?id=unified-api).

::

    fetch_ohlcv                 [[1504541580000, 4235.4, 4240.6, 4230.0, 4230.7, 37.72941911], ...]
                                -> ohlcv_<timeframe> (timeframe: a token of the file name like
                                   ``_1h``, ``--kind 1h``, else the spacing of the first two bars)
    fetch_funding_rate_history  [{"info": {...}, "symbol": "BTC/USDT:USDT", "fundingRate": 0.0001,
                                  "timestamp": 1704067200000, "datetime": "2024-01-01T00:00:00.000Z"}, ...]
                                -> funding (times snapped to the hour, intervals from the spacing,
                                   as ``tickstore backfill funding`` stores them)

ccxt structures do not name the exchange: ``--venue`` (or, for funding, the venue's own
fields kept in ``info``: Binance ``fundingTime``, Bybit ``fundingRateTimestamp``,
Hyperliquid ``coin``/``premium``); OHLCV arrays name no symbol either: ``--symbol``.
"""

from __future__ import annotations

import re

import numpy as np

from collectors.symbols import MARKETS
from tickstore.errors import SymbolError

from .core import (
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
    TIMEFRAME_BARS,
    timeframe_of,
    PERPETUAL_MARKET,
    user_symbol,
)
from .detect import Detected

__all__ = ["sniff", "parse"]

_TIMEFRAME = re.compile(r"(?:^|[-_.])(?P<tf>\d+(?:s|m|h|d|w|M))(?:[-_.]|$)")


def _venue_of_info(info: dict) -> str | None:
    if "fundingTime" in info:
        return "binance"
    if "fundingRateTimestamp" in info:
        return "bybit"
    if "coin" in info and "premium" in info:
        return "hyperliquid"
    return None


def _shape(rows: list) -> str | None:
    """``ohlcv`` (``[timestamp, o, h, l, c, v]`` arrays; ccxt leaves a value it lacks
    ``None``), ``funding`` (funding rate history structures) or None."""
    x = rows[0] if rows else None
    if isinstance(x, list) and len(x) == 6 and isinstance(x[0], int) and not isinstance(x[0], bool) \
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in x[1:]):
        return "ohlcv"
    if isinstance(x, dict) and {"symbol", "fundingRate", "timestamp"} <= x.keys():
        return "funding"
    return None


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    if head.lstrip()[:1] != b"[":
        return None
    try:
        doc = load_json(member)
    except MalformedInput:
        first = first_json(head)
        if fmt is Format.CCXT or (first is not None and _shape(records(first)[0]) is not None):
            raise  # a ccxt dump whose later lines are broken: say where
        return None
    rows, _ = records(doc)
    shape = _shape(rows)
    if shape is None:
        return None
    x = rows[0]
    if shape == "ohlcv":
        venue = options.venue
        if venue is None:
            raise MissingOption(f"{where}: ccxt OHLCV arrays do not say the exchange; pass --venue binance|bybit|hyperliquid")
        sym = user_symbol(options, venue, options.market, where=where)
        if sym is None:
            raise MissingOption(f"{where}: ccxt OHLCV arrays do not say the symbol; pass --symbol (e.g. BTC/USDT:USDT)")
        m = _TIMEFRAME.search(member.path.stem)
        tf = options.kind or (m.group("tf") if m else timeframe_of(
            epoch_to_ns(np.array([r[0] for r in rows[:TIMEFRAME_BARS]], dtype=np.int64), where=where), where=where))
        return Detected(Format.CCXT, "ohlcv", venue, None, sym, {"interval": tf})
    if shape == "funding":
        venue = options.venue or _venue_of_info(x.get("info") or {})
        if venue is None:
            raise MissingOption(f"{where}: these ccxt funding rates do not say the exchange; pass --venue")
        sym = user_symbol(options, venue, options.market or PERPETUAL_MARKET.get(venue), where=where)
        return Detected(Format.CCXT, "funding", venue, None, sym)
    return None


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    rows, lines = records(load_json(member))
    if det.kind == "ohlcv":
        f = lambda i, what: field_values(rows, i, np.float64 if i else np.int64, where=where, lines=lines, what=what)  # noqa: E731
        ts = epoch_to_ns(f(0, "timestamp"), where=where, lines=lines)
        table = ohlcv_table(det.hints["interval"])
        vals = [f(i, name) for i, name in enumerate(("open", "high", "low", "close", "volume"), 1)]
        sink.frame(table, det.symbol, ohlcv_frame(ts, *vals), ohlcv_schema(table, what=f"{det.hints['interval']} OHLCV bars"))
        return
    symbols = field_values(rows, "symbol", object, where=where, lines=lines)
    one_symbol_for(options, symbols, where=where)
    for unified, rs, ls in record_groups(rows, lines, symbols):
        try:
            market = MARKETS.info(det.venue, unified)
        except SymbolError:
            market = None  # not in the built-in table: intervals from the spacing alone
        ts = epoch_to_ns(field_values(rs, "timestamp", np.int64, where=where, lines=ls), where=where, lines=ls)
        rate = field_values(rs, "fundingRate", np.float64, where=where, lines=ls)
        nominal = market.funding_interval_h if market is not None else None
        sink.frame("funding", det.symbol or f"{det.venue}:{unified}",
                   funding_frame(ts, rate, where=where, label=unified, nominal=nominal))
