"""Hyperliquid's public S3 archive (https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data).

::

    s3://hyperliquid-archive/market_data/<YYYYMMDD>/<hour>/<l2Book|trades>/<COIN>.lz4
        lz4 frames of JSON lines, each a websocket frame as recorded:
        {"time": "2025-03-11T09:00:03.296545473", "ver_num": 1,
         "raw": {"channel": "l2Book", "data": {"coin": "SOL", "time": 1741683599768, "levels": [[...], [...]]}}}
        -> ``raw`` through the live Hyperliquid parser (``time`` is the receive time):
           through ``collectors.replay.replay_frames``: the rows ``tickstore replay`` stores
           (l2Book -> the whole book each frame, sampled on the collector's grid into
           ``book``, continued from the book state of the hour before; trades -> trades)
    s3://hyperliquid-archive/asset_ctxs/<YYYYMMDD>.csv.lz4
        time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,
        mid_px,impact_bid_px,impact_ask_px
        -> mark (mark_px, index = oracle_px, predicted funding, next funding = the next whole
           hour, as the live activeAssetCtx parser) and open_interest (oi, oi x mark)

    s3://hl-mainnet-node-data/node_fills[_by_block]/hourly/<YYYYMMDD>/<hour>.lz4
        -> trades, one per trade id (``hyperliquid_node``)

Spot pairs (``@107``) are not stored. Frames name their coin: ``--symbol`` is not used. Coins the built-in market table lacks are named as
ccxt names them (``WIF`` -> ``hyperliquid:WIF/USDC:USDC``).
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pandas as pd

from collectors.capture import Frame, FrameKind

from .core import Format, ImportOptions, MalformedInput, Member, Sink, csv_blocks, resolve_symbol, utc, utc_index
from . import hyperliquid_node
from .detect import Detected
from .frames import replay_into

__all__ = ["sniff", "parse"]

_CTX_HEADER = "time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,mid_px,impact_bid_px,impact_ask_px"
_HOUR_NS = 3_600_000_000_000
_ISO = re.compile(rb"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z?$")


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    node = hyperliquid_node.sniff(member, head)  # the nodes' fill files (hl-mainnet-node-data)
    if node is not None:
        return node
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    if first.decode("ascii", "replace").startswith(_CTX_HEADER):
        return Detected(Format.HYPERLIQUID_ARCHIVE, "asset_ctxs", "hyperliquid", "perp")
    if not first.startswith(b"{") or b'"raw"' not in first:
        return None
    try:
        doc = orjson.loads(first)
    except orjson.JSONDecodeError:
        return None
    raw = doc.get("raw") if isinstance(doc, dict) else None
    if not (isinstance(raw, dict) and "channel" in raw and "time" in doc):
        return None
    coin = (raw.get("data") or {}).get("coin") if isinstance(raw.get("data"), dict) else None
    if coin is None and isinstance(raw.get("data"), list) and raw["data"]:
        coin = raw["data"][0].get("coin")
    # a spot pair's or another dex's book is refused here, never named COIN/USDC:USDC
    sym = resolve_symbol("hyperliquid", str(coin), "perp", where=member.where()) if coin is not None else None
    return Detected(Format.HYPERLIQUID_ARCHIVE, str(raw["channel"]), "hyperliquid", "perp", sym, {"coin": coin})


def recv_ns_of(text: bytes | str, *, where: str, line: int) -> int:
    """``2025-03-11T09:00:03.296545473`` (UTC) -> ns since the epoch, exactly (no float)."""
    b = text.encode() if isinstance(text, str) else text
    m = _ISO.match(b)
    if not m:
        raise MalformedInput(where, line, f"time {text!r} is not an ISO time like 2025-03-11T09:00:03.296545473")
    day = int(np.datetime64(m.group(1).decode(), "D").astype(np.int64))
    secs = day * 86400 + int(m.group(2)) * 3600 + int(m.group(3)) * 60 + int(m.group(4))
    frac = (m.group(5) or b"").decode()
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    if det.kind == "asset_ctxs":
        return _asset_ctxs(member, det, options, sink)
    if det.kind in hyperliquid_node.KINDS:
        return hyperliquid_node.parse(member, det, sink)
    where = member.where()

    def frames():
        for line, text in member.lines():
            try:
                doc = orjson.loads(text)
                raw, when = doc["raw"], doc["time"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                raise MalformedInput(where, line, f"not an archive line {{\"time\": ..., \"raw\": <frame>}} ({exc})", text) from None
            yield Frame(recv_ns_of(str(when), where=where, line=line), orjson.dumps(raw), FrameKind.WS, None, line)

    replay_into(sink, frames(), venue="hyperliquid", market="perp", options=options, where=where)


_CTX_NEEDED = ("time", "coin", "funding", "open_interest", "oracle_px", "mark_px")


def _asset_ctxs(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    """One row per coin and minute. Columns are read by their header names (so one appended
    later changes nothing); those not stored (premium, mid_px, impact_*_px, ...) may be
    empty or ``null`` for thin coins and are not parsed. Spot pairs (``@107``,
    ``PURR/USDC``) and other dexes' perpetuals (``xyz:TSLA``) are not stored."""
    where = member.where()
    cols = [c.strip() for c in member.head(4096).split(b"\n", 1)[0].rstrip(b"\r").decode("ascii", "replace").split(",")]
    dtypes = {c: np.float64 for c in ("funding", "open_interest", "oracle_px", "mark_px")}
    dtypes.update(time=str, coin=str)
    dtypes.update({c: str for c in cols if c not in dtypes})
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("time", "coin")):
        t = pd.to_datetime(df["time"], utc=True, errors="coerce", format="ISO8601")
        if t.isna().any():
            i = int(np.argmax(t.isna().to_numpy()))
            raise MalformedInput(where, int(lines[i]), f"time {df['time'].iat[i]!r} is not an ISO time")
        ts = pd.DatetimeIndex(t).as_unit("ns").asi8
        coins = df["coin"]
        perp = ~(coins.str.startswith("@") | coins.str.contains("/", regex=False) | coins.str.contains(":", regex=False)).to_numpy()
        for c in ("mark_px", "oracle_px", "funding"):  # what a perpetual's mark row cannot be without
            empty = perp & df[c].isna().to_numpy()
            if empty.any():
                i = int(np.argmax(empty))
                raise MalformedInput(where, int(lines[i]), f"{c} of {coins.iat[i]} is empty")
        for coin in pd.unique(coins[perp]):
            sel = (coins == coin).to_numpy()
            sym = resolve_symbol("hyperliquid", coin, "perp", where=where)
            part, tt = df[sel], ts[sel]
            mark = part["mark_px"].to_numpy()
            sink.frame("mark", sym, pd.DataFrame({
                "recv_ts": utc(tt), "mark_px": mark, "index_px": part["oracle_px"].to_numpy(),
                "funding_rate": part["funding"].to_numpy(), "next_funding_ts": utc((tt // _HOUR_NS + 1) * _HOUR_NS),
            }, index=utc_index(tt)))
            oi = part["open_interest"].to_numpy()
            ok = ~np.isnan(oi)
            sink.frame("open_interest", sym, pd.DataFrame({"oi": oi[ok], "oi_value": oi[ok] * mark[ok]}, index=utc_index(tt[ok])))

