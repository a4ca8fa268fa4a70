"""Hyperliquid ``POST /info`` answers saved as JSON (one body per file, or one per line).

Bodies (https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint)::

    fundingHistory  [{"coin":"BTC","fundingRate":"-0.00017541","premium":"-0.00042","time":1684829033040}]
                    -> funding (time snapped to the hour; interval from the spacing: 8 h until
                       2023-06-08, hourly since)
    candleSnapshot  [{"t":1684699200000,"T":1684702799999,"s":"kPEPE","i":"1h","o":"0.0018",
                      "c":"0.0018","h":"0.0018","l":"0.0018","v":"1234","n":12}]
                    -> ohlcv_<i> (the trade count ``n`` is dropped)
    l2Book          {"coin":"DYDX","time":1689630203930,"levels":[[{"px":"2.111","sz":"134.4","n":1},...],[...]]}
                    -> the live l2Book handling: each body is the whole book, sampled on the
                       collector's grid (a file of polled bodies gives grid rows between them)

No receive time is recorded: ``recv_ts`` is ``ts``.
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from collectors.funding import SettlementError, funding_intervals, settlement_times

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    Sink,
    epoch_to_ns,
    load_json,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    utc_index,
)
from .detect import Detected
from .frames import FrameFeed, markets_for

__all__ = ["sniff", "parse"]


def _kind(doc) -> str | None:
    body = doc[0] if isinstance(doc, list) and doc else doc
    if isinstance(body, dict):
        if {"coin", "time", "levels"} <= body.keys():
            return "l2Book"
        if {"coin", "fundingRate", "time"} <= body.keys():
            return "fundingHistory"
        if {"t", "T", "s", "i", "o", "c", "h", "l", "v"} <= body.keys():
            return "candleSnapshot"
    return None


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    if head.lstrip()[:1] not in (b"[", b"{"):
        return None
    try:
        doc = load_json(member)
    except MalformedInput:
        if fmt is Format.HYPERLIQUID_REST:
            raise
        return None
    kind = _kind(doc)
    if kind is None:
        return None
    body = doc[0] if isinstance(doc, list) else doc
    coin = body.get("coin") or body.get("s")
    return Detected(Format.HYPERLIQUID_REST, kind, "hyperliquid", "perp", None, {"coin": coin})


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    doc = load_json(member)
    bodies = doc if isinstance(doc, list) else [doc]
    try:
        if det.kind == "l2Book":
            coins = sorted({b["coin"] for b in bodies})
            feed = FrameFeed("hyperliquid", "perp", sink, options, where=where, markets=markets_for("hyperliquid", coins, "perp"))
            for line, body in enumerate(bodies, 1):
                t = int(body["time"]) * 1_000_000
                # the websocket frame of the same book: {"channel": "l2Book", "data": <body>}
                feed.frame(orjson.dumps({"channel": "l2Book", "data": body}), t, line)
            sink.events(feed.close())
        elif det.kind == "fundingHistory":
            _funding(bodies, sink, where)
        else:
            _candles(bodies, sink, where)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataImportError):
            raise
        raise MalformedInput(where, None, f"not a Hyperliquid {det.kind} body: {type(exc).__name__} {exc}") from None


def _symbol(coin: str) -> str:
    return markets_for("hyperliquid", [coin], "perp").tickstore_symbol("hyperliquid", coin)


def _funding(rows, sink, where) -> None:
    for coin in sorted({r["coin"] for r in rows}):
        rs = [r for r in rows if r["coin"] == coin]
        ts = epoch_to_ns(np.array([r["time"] for r in rs], dtype=np.int64), where=where)
        try:
            snapped = settlement_times(ts, source=f"{where} {coin}")
        except SettlementError as exc:
            raise MalformedInput(where, None, str(exc)) from None
        order = np.argsort(snapped.asi8, kind="stable")
        t = snapped.asi8[order]
        sink.frame("funding", _symbol(coin), pd.DataFrame({
            "rate": np.array([rs[i]["fundingRate"] for i in order], dtype=np.float64),
            "interval_h": funding_intervals(t, nominal=1.0),
        }, index=utc_index(t)))


def _candles(rows, sink, where) -> None:
    for (coin, interval) in sorted({(r["s"], r["i"]) for r in rows}):
        rs = [r for r in rows if r["s"] == coin and r["i"] == interval]
        ts = epoch_to_ns(np.array([r["t"] for r in rs], dtype=np.int64), where=where)
        vals = np.array([[r["o"], r["h"], r["l"], r["c"], r["v"]] for r in rs], dtype=np.float64)
        table = ohlcv_table(interval)
        sink.frame(table, _symbol(coin), ohlcv_frame(ts, *vals.T), ohlcv_schema(table, what=f"{interval} OHLCV bars"))
