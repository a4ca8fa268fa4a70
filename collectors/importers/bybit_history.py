"""Bybit's history downloads (bybit.com/derivatives/en/history-data; public.bybit.com).

::

    orderbook  <YYYY-MM-DD>_<SYMBOL>_ob500.data.zip (linear) / _ob200 (spot): one ``.data``
               file of websocket frames, one per line, as the v5 public stream sends them:
               {"topic":"orderbook.500.BTCUSDT","type":"snapshot","ts":1704067200009,
                "data":{"s":"BTCUSDT","b":[["42300.10","1.2"],...],"a":[...],"u":1,"seq":...},"cts":...}
               -> the live Bybit parser and book rule (a snapshot resets the book, deltas chain
                  on u), sampled on the collector's grid (``book``). The files carry no
                  receive time: ``recv_ts`` is the frame's ``ts``.
    trades     public.bybit.com/trading/<SYMBOL>/<SYMBOL><YYYY-MM-DD>.csv.gz (linear)
               timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,
               homeNotional,foreignNotional   (timestamp: epoch seconds with a fraction)
               -> trades (trade id: trdMatchID folded as the live parser folds ``i``;
                  side: the taker's, Buy +1; recv_ts = ts)
               public.bybit.com/spot/<SYMBOL>/<SYMBOL>_<YYYY-MM-DD>.csv.gz (spot)
               id,timestamp,price,volume,side   (timestamp: epoch ms)

The category (linear or spot) comes from the path (``/linear/``, ``/spot/``), the name
(``ob500`` is linear, ``ob200`` spot), the trade columns, or ``--market linear|spot``.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pandas as pd

from collectors.exchanges import bybit as bb

from .core import Format, ImportOptions, MalformedInput, Member, MissingOption, Sink, csv_blocks, epoch_to_ns, resolve_symbol, user_symbol, utc, utc_index
from .detect import Detected
from .frames import FrameFeed, markets_for

__all__ = ["sniff", "parse"]

_LINEAR_TRADES = "timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional"
_SPOT_TRADES = "id,timestamp,price,volume,side"
_OB = re.compile(r"_ob(\d+)\.data")


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    text = first.decode("ascii", "replace")
    path = "/" + member.path.as_posix() + "/" + member.name
    market = options.market
    if text == _LINEAR_TRADES:
        return Detected(Format.BYBIT_HISTORY, "trades", "bybit", market or "linear")
    if text == _SPOT_TRADES:
        return Detected(Format.BYBIT_HISTORY, "trades", "bybit", market or "spot")
    if first.startswith(b"{") and b'"topic"' in first:
        try:
            msg = orjson.loads(first)
        except orjson.JSONDecodeError:
            return None
        topic = str(msg.get("topic", "")) if isinstance(msg, dict) else ""
        if not topic.startswith("orderbook."):
            return None
        if market is None:
            if "/spot/" in path:
                market = "spot"
            elif "/linear/" in path:
                market = "linear"
            else:
                ob = _OB.search(member.name) or _OB.search(member.path.name)
                market = {"500": "linear", "200": "spot"}.get(ob.group(1)) if ob else None
        if market is None:
            raise MissingOption(f"{where}: cannot tell Bybit linear from spot (path and name say neither); "
                                f"pass --market linear or spot")
        if market not in ("linear", "spot"):
            raise MissingOption(f"{where}: --market {market!r}: Bybit history files are linear or spot")
        return Detected(Format.BYBIT_HISTORY, "orderbook", "bybit", market, None, {"native": topic.split(".")[-1]})
    return None


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    if det.kind == "trades":
        return (_linear_trades if det.market == "linear" else _spot_trades)(member, det, options, sink)
    where = member.where()
    feed = FrameFeed("bybit", det.market, sink, options, where=where,
                     markets=markets_for("bybit", [det.hints["native"]], det.market))
    for line, text in member.lines():
        try:
            ts = int(orjson.loads(text)["ts"]) * 1_000_000
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MalformedInput(where, line, f"not a Bybit orderbook frame with 'ts' ({exc})", text) from None
        feed.frame(text, ts, line)
    sink.events(feed.close())


def seconds_text_to_ns(text: pd.Series, lines, where: str) -> np.ndarray:
    """``1585180700.0647`` (epoch seconds as text) -> int64 ns, digit by digit (no float rounding)."""
    parts = text.str.split(".", n=1, expand=True)
    whole = parts[0]
    frac = parts[1] if parts.shape[1] > 1 else pd.Series([""] * len(text), index=text.index)
    frac = frac.fillna("")
    ok = whole.str.fullmatch(r"\d{9,11}") & frac.str.fullmatch(r"\d{0,9}")
    if not ok.all():
        i = int(np.argmax(~ok.to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"timestamp {text.iat[i]!r} is not epoch seconds")
    return whole.astype(np.int64).to_numpy() * 1_000_000_000 + frac.str.ljust(9, "0").astype(np.int64).to_numpy()


def _symbols(df: pd.DataFrame, column: str | None, det, options, where) -> str:
    forced = user_symbol(options, "bybit", det.market, where=where)
    if forced is not None:
        return forced
    if column is None:
        raise MissingOption(f"{where}: a Bybit spot trade file names no symbol; pass --symbol (e.g. BTCUSDT)")
    natives = pd.unique(df[column])
    if len(natives) != 1:
        raise MalformedInput(where, None, f"holds several symbols {list(natives)[:5]}; Bybit files hold one")
    return resolve_symbol("bybit", str(natives[0]), det.market, where=where)


def _linear_trades(member, det, options, sink) -> None:
    where = member.where()
    cols = _LINEAR_TRADES.split(",")
    dtypes = {"timestamp": str, "size": np.float64, "price": np.float64, "symbol": str, "side": str, "trdMatchID": str}
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "size", "price", "side", "trdMatchID")):
        sym = _symbols(df, "symbol", det, options, where)
        ts = seconds_text_to_ns(df["timestamp"], lines, where)
        side = df["side"].map({"Buy": 1, "Sell": -1})
        if side.isna().any():
            i = int(np.argmax(side.isna().to_numpy()))
            raise MalformedInput(where, int(lines[i]), f"side {df['side'].iat[i]!r} is not Buy or Sell")
        ids = []
        for i, v in enumerate(df["trdMatchID"]):
            try:
                ids.append(bb.trade_id(v))
            except ValueError as exc:
                raise MalformedInput(where, int(lines[i]), str(exc)) from None
        sink.frame("trades", sym, pd.DataFrame({
            "recv_ts": utc(ts), "trade_id": np.array(ids, dtype=np.int64), "price": df["price"].to_numpy(),
            "qty": df["size"].to_numpy(), "side": side.to_numpy(np.int8),
        }, index=utc_index(ts)))


def _spot_trades(member, det, options, sink) -> None:
    where = member.where()
    cols = _SPOT_TRADES.split(",")
    dtypes = {"id": np.int64, "timestamp": np.int64, "price": np.float64, "volume": np.float64, "side": str}
    sym = _symbols(pd.DataFrame(), None, det, options, where)
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=tuple(cols)):
        ts = epoch_to_ns(df["timestamp"].to_numpy(), where=where, lines=lines)
        side = df["side"].str.lower().map({"buy": 1, "sell": -1})
        if side.isna().any():
            i = int(np.argmax(side.isna().to_numpy()))
            raise MalformedInput(where, int(lines[i]), f"side {df['side'].iat[i]!r} is not buy or sell")
        sink.frame("trades", sym, pd.DataFrame({
            "recv_ts": utc(ts), "trade_id": df["id"].to_numpy(), "price": df["price"].to_numpy(),
            "qty": df["volume"].to_numpy(), "side": side.to_numpy(np.int8),
        }, index=utc_index(ts)))
