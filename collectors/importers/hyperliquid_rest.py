"""Hyperliquid ``POST /info`` answers saved as JSON (one body per file, or one per line).

Bodies (https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint)::

    fundingHistory  [{"coin":"BTC","fundingRate":"-0.00017541","premium":"-0.00042","time":1684829033040}]
                    -> funding (time snapped to the hour; interval from the spacing: 8 h until
                       2023-06-08, hourly since)
    candleSnapshot  [{"t":1684699200000,"T":1684702799999,"s":"kPEPE","i":"1h","o":"0.0018",
                      "c":"0.0018","h":"0.0018","l":"0.0018","v":"1234","n":12}]
                    -> ohlcv_<i> (the trade count ``n`` is dropped)
    l2Book          {"coin":"DYDX","time":1689630203930,"levels":[[{"px":"2.111","sz":"134.4","n":1},...],[...]]}
                    -> the replay's l2Book handling (``collectors.replay.replay_frames``): each
                       body is the whole book at its ``time``, stored as a row at that time and
                       sampled on the collector's grid (a file of polled bodies gives grid rows
                       between them; one body alone is one row, its grid rows come with the
                       next body imported or replayed, through the book state)

No receive time is recorded: ``recv_ts`` is ``ts``.
"""

from __future__ import annotations

import numpy as np
import orjson

from collectors.capture import Frame, FrameKind

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    Sink,
    epoch_to_ns,
    field_values,
    funding_frame,
    first_json,
    load_json,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    record_groups,
    records,
    resolve_symbol,
)
from .detect import Detected
from .frames import replay_into

__all__ = ["sniff", "parse"]


def _kind(doc) -> str | None:
    rows, _ = records(doc)
    body = rows[0] if rows else None
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
        first = first_json(head)
        if fmt is Format.HYPERLIQUID_REST or (first is not None and _kind(first) is not None):
            raise  # a Hyperliquid body whose later lines are broken: say where
        return None
    kind = _kind(doc)
    if kind is None:
        return None
    body = records(doc)[0][0]
    coin = body.get("coin") or body.get("s")
    return Detected(Format.HYPERLIQUID_REST, kind, "hyperliquid", "perp", None, {"coin": coin})


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    doc = load_json(member)
    bodies = doc if isinstance(doc, list) else [doc]
    try:
        if det.kind == "l2Book":
            # each body as the websocket frame of the same book: {"channel": "l2Book", "data": <body>}
            frames = [Frame(int(body["time"]) * 1_000_000, orjson.dumps({"channel": "l2Book", "data": body}), FrameKind.WS,
                            None, line) for line, body in enumerate(bodies, 1)]
            replay_into(sink, frames, venue="hyperliquid", market="perp", options=options, where=where,
                        book_rows="both")
        elif det.kind == "fundingHistory":
            _funding(*records(doc), sink=sink, where=where)
        else:
            _candles(*records(doc), sink=sink, where=where)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataImportError):
            raise
        raise MalformedInput(where, None, f"not a Hyperliquid {det.kind} body: {type(exc).__name__} {exc}") from None


def _symbol(coin, where: str) -> str:
    return resolve_symbol("hyperliquid", str(coin), "perp", where=where)


def _funding(rows, lines, *, sink, where) -> None:
    coins = field_values(rows, "coin", object, where=where, lines=lines)
    for coin, rs, ls in record_groups(rows, lines, coins):
        ts = epoch_to_ns(field_values(rs, "time", np.int64, where=where, lines=ls), where=where, lines=ls)
        rate = field_values(rs, "fundingRate", np.float64, where=where, lines=ls)
        sink.frame("funding", _symbol(coin, where), funding_frame(ts, rate, where=where, label=str(coin), nominal=1.0))


def _candles(rows, lines, *, sink, where) -> None:
    keys = list(zip(field_values(rows, "s", object, where=where, lines=lines),
                    field_values(rows, "i", object, where=where, lines=lines)))
    for (coin, interval), rs, ls in record_groups(rows, lines, keys):
        ts = epoch_to_ns(field_values(rs, "t", np.int64, where=where, lines=ls), where=where, lines=ls)
        vals = [field_values(rs, k, np.float64, where=where, lines=ls) for k in ("o", "h", "l", "c", "v")]
        table = ohlcv_table(interval)
        sink.frame(table, _symbol(coin, where), ohlcv_frame(ts, *vals), ohlcv_schema(table, what=f"{interval} OHLCV bars"))
