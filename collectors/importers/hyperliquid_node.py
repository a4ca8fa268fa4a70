"""Hyperliquid node data (``s3://hl-mainnet-node-data``): the fills the nodes write.

Part of the ``hyperliquid-archive`` format (``hyperliquid_archive`` hands these files here).
A node writes every fill twice, once per side of the trade, in hourly lz4 files::

    node_fills/hourly/<YYYYMMDD>/<hour>.lz4           (until 2025-07-27)
        one JSON array per line: [<user address>, <fill>]
    node_fills_by_block/hourly/<YYYYMMDD>/<hour>.lz4  (since 2025-07-27)
        {"local_time": ..., "block_time": ..., "block_number": ..., "events": [[<user>, <fill>], ...]}
    <fill> = {"coin":"BTC","px":"111000.0","sz":"0.01","side":"B","time":1761336000021,
              "startPosition":"0.5","dir":"Open Long","closedPnl":"0.0","hash":"0x...",
              "oid":...,"crossed":true,"fee":"...","tid":42,"feeToken":"USDC",
              ["liquidation": {"liquidatedUser": ..., "markPx": ..., "method": "market"}]}

-> trades: one row per trade id ``tid`` (the websocket ``trades`` id, so prints seen live and
imported from fills are one row), ts = ``time`` (ms, the trade time, as live), price ``px``,
qty ``sz``, side from the taker's fill (``crossed``: ``B`` +1, ``A`` -1; a trade whose taker
fill the file lacks takes the opposite of the maker's side), kind LIQUIDATION where a fill of
the trade carries ``liquidation`` (the public trade stream cannot say so: live rows are
MARKET), else MARKET. No receive time: ``recv_ts`` = ts. Spot pairs (``@107``,
``PURR/USDC``) and other dexes' perpetuals (``xyz:TSLA``) are not stored.

``node_trades/hourly/...`` lines (``{"coin", "side", "time": "<ISO>", "px", "sz", "hash",
"side_info": [...]}``) are refused with a message: they carry no trade id and list each
trade once per side, so neither the live key nor the taker side can be read from them.
Source: https://github.com/hyperliquid-dex/node (README: node_trades, node_fills,
``--write-fills``) and the fill fields of the info endpoint (``userFills``:
https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint).
"""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd

from tickstore.schemas import TradeKind

from .core import DataImportError, Format, MalformedInput, Member, Sink, epoch_to_ns, resolve_symbol, utc, utc_index
from .detect import Detected

__all__ = ["KINDS", "sniff", "parse"]

KINDS = ("node_fills", "node_fills_by_block")
_FILL_KEYS = {"coin", "px", "sz", "side", "time", "tid"}


def _is_fill(x) -> bool:
    return isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and isinstance(x[1], dict) and _FILL_KEYS <= x[1].keys()


def sniff(member: Member, head: bytes) -> Detected | None:
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if not first[:1] in (b"[", b"{"):
        return None
    try:
        doc = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    if _is_fill(doc):
        return Detected(Format.HYPERLIQUID_ARCHIVE, "node_fills", "hyperliquid", "perp")
    if isinstance(doc, dict) and "events" in doc and "block_time" in doc:
        for text in head.split(b"\n"):  # blocks without fills have no events: the first that has tells
            try:
                events = orjson.loads(text).get("events")
            except (orjson.JSONDecodeError, AttributeError):
                break  # the head cut a line
            if isinstance(events, list) and events:
                return Detected(Format.HYPERLIQUID_ARCHIVE, "node_fills_by_block", "hyperliquid", "perp") \
                    if _is_fill(events[0]) else None
        return None
    if isinstance(doc, dict) and {"coin", "side", "time", "px", "sz", "hash", "side_info"} <= doc.keys():
        raise DataImportError(f"{member.where()}: a Hyperliquid node_trades file carries no trade id and lists each trade "
                              f"once per side, so its prints cannot be stored as the live trades are; import the "
                              f"node_fills or node_fills_by_block files of the same hours")
    return None


def _fills(member: Member, det: Detected):
    """(line, fill) of every fill of the file."""
    where = member.where()
    for line, text in member.lines():
        try:
            doc = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise MalformedInput(where, line, f"not JSON ({exc})", text) from None
        events = doc.get("events") if det.kind == "node_fills_by_block" and isinstance(doc, dict) else [doc]
        if not isinstance(events, list):
            raise MalformedInput(where, line, "not a node_fills_by_block line with a list of events", text)
        for ev in events:
            if not _is_fill(ev):
                raise MalformedInput(where, line, f"not a [user, fill] pair with {sorted(_FILL_KEYS)}", orjson.dumps(ev))
            yield line, ev[1]


def parse(member: Member, det: Detected, sink: Sink) -> None:
    where = member.where()
    trades: dict[int, list] = {}  # tid -> [coin, time, px, sz, side of the taker or None, maker side, liquidation, line]
    for line, f in _fills(member, det):
        coin = f["coin"]
        if not isinstance(coin, str) or coin.startswith("@") or "/" in coin or ":" in coin:
            continue  # spot pairs and other dexes' perpetuals are not stored
        try:
            tid, t, px, sz = int(f["tid"]), int(f["time"]), float(f["px"]), float(f["sz"])
        except (TypeError, ValueError) as exc:
            raise MalformedInput(where, line, f"fill values do not parse ({exc})", orjson.dumps(f)) from None
        side = {"B": 1, "A": -1}.get(f["side"])
        if side is None:
            raise MalformedInput(where, line, f"side {f['side']!r} is not B or A", orjson.dumps(f))
        row = trades.get(tid)
        if row is None:
            row = trades[tid] = [coin, t, px, sz, None, None, False, line]
        elif (row[0], row[1], row[2], row[3]) != (coin, t, px, sz):
            raise MalformedInput(where, line, f"the two fills of trade {tid} disagree (coin, time, price or size)",
                                 orjson.dumps(f))
        if f.get("crossed") is True:
            row[4] = side
        elif f.get("crossed") is False:
            row[5] = side
        row[6] = row[6] or bool(f.get("liquidation"))
    by_coin: dict[str, list] = {}
    for tid, (coin, t, px, sz, taker, maker, liq, line) in trades.items():
        if taker is None:
            if maker is None:
                raise MalformedInput(where, line, f"trade {tid}: no fill says which side took (crossed)")
            taker = -maker
        by_coin.setdefault(coin, []).append((t, tid, px, sz, taker, int(TradeKind.LIQUIDATION if liq else TradeKind.MARKET)))
    for coin, rows in by_coin.items():
        arr = np.array(rows, dtype=object)
        ts = epoch_to_ns(arr[:, 0].astype(np.int64), where=where, what="time")
        sink.frame("trades", resolve_symbol("hyperliquid", coin, "perp", where=where), pd.DataFrame({
            "recv_ts": utc(ts), "trade_id": arr[:, 1].astype(np.int64), "price": arr[:, 2].astype(np.float64),
            "qty": arr[:, 3].astype(np.float64), "side": arr[:, 4].astype(np.int8), "kind": arr[:, 5].astype(np.int8),
        }, index=utc_index(ts)))
