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
import pandas as pd

from collectors.funding import SettlementError, funding_intervals, settlement_times
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
    load_json,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    timeframe_of,
    user_symbol,
    utc_index,
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


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    if head.lstrip()[:1] != b"[":
        return None
    try:
        doc = load_json(member)
    except MalformedInput:
        if fmt is Format.CCXT:
            raise
        return None
    if not isinstance(doc, list) or not doc:
        return None
    x = doc[0]
    if isinstance(x, list) and len(x) == 6 and all(isinstance(v, (int, float)) for v in x):
        venue = options.venue
        if venue is None:
            raise MissingOption(f"{where}: ccxt OHLCV arrays do not say the exchange; pass --venue binance|bybit|hyperliquid")
        sym = user_symbol(options, venue, options.market, where=where)
        if sym is None:
            raise MissingOption(f"{where}: ccxt OHLCV arrays do not say the symbol; pass --symbol (e.g. BTC/USDT:USDT)")
        m = _TIMEFRAME.search(member.path.stem)
        tf = options.kind or (m.group("tf") if m else timeframe_of(
            epoch_to_ns(np.array([r[0] for r in doc[:2]], dtype=np.int64), where=where), where=where))
        return Detected(Format.CCXT, "ohlcv", venue, None, sym, {"interval": tf})
    if isinstance(x, dict) and {"symbol", "fundingRate", "timestamp"} <= x.keys():
        venue = options.venue or _venue_of_info(x.get("info") or {})
        if venue is None:
            raise MissingOption(f"{where}: these ccxt funding rates do not say the exchange; pass --venue")
        return Detected(Format.CCXT, "funding", venue, None, user_symbol(options, venue, "swap", where=where))
    return None


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    doc = load_json(member)
    try:
        if det.kind == "ohlcv":
            arr = np.array(doc, dtype=np.float64)
            if arr.ndim != 2 or arr.shape[1] != 6:
                raise MalformedInput(where, None, f"expected [[timestamp, open, high, low, close, volume], ...], got shape {arr.shape}")
            ts = epoch_to_ns(arr[:, 0].astype(np.int64), where=where)
            table = ohlcv_table(det.hints["interval"])
            sink.frame(table, det.symbol, ohlcv_frame(ts, *arr[:, 1:].T), ohlcv_schema(table, what=f"{det.hints['interval']} OHLCV bars"))
            return
        by_symbol: dict[str, list] = {}
        for r in doc:
            by_symbol.setdefault(r["symbol"], []).append(r)
        for unified, rs in by_symbol.items():
            sym = det.symbol or f"{det.venue}:{unified}"
            try:
                market = MARKETS.info(det.venue, unified)
            except SymbolError:
                market = None  # not in the built-in table: intervals from the spacing alone
            ts = epoch_to_ns(np.array([r["timestamp"] for r in rs], dtype=np.int64), where=where)
            try:
                snapped = settlement_times(ts, source=f"{where} {unified}")
            except SettlementError as exc:
                raise MalformedInput(where, None, str(exc)) from None
            order = np.argsort(snapped.asi8, kind="stable")
            t = snapped.asi8[order]
            nominal = market.funding_interval_h if market is not None else None
            sink.frame("funding", sym, pd.DataFrame({
                "rate": np.array([rs[i]["fundingRate"] for i in order], dtype=np.float64),
                "interval_h": funding_intervals(t, nominal=nominal),
            }, index=utc_index(t)))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, MalformedInput):
            raise
        raise MalformedInput(where, None, f"not a ccxt {det.kind} dump: {type(exc).__name__} {exc}") from None
