"""Bybit's history downloads (bybit.com/derivatives/en/history-data; public.bybit.com).

::

    orderbook  <YYYY-MM-DD>_<SYMBOL>_ob500.data.zip (linear until 2025-08-20) / _ob200 (spot;
               linear from 2025-08-21): one ``.data``
               file of websocket frames, one per line, as the v5 public stream sends them:
               {"topic":"orderbook.500.BTCUSDT","type":"snapshot","ts":1704067200009,
                "data":{"s":"BTCUSDT","b":[["42300.10","1.2"],...],"a":[...],"u":1,"seq":...},"cts":...}
               -> ``collectors.replay.replay_frames``: the rows ``tickstore replay`` stores for
                  the same frames (the Bybit parser and book rule: a snapshot is the book and
                  its grid point is stored, deltas chain on u; ``book`` on the collector's
                  grid, continued from the book state of the file before; ``quotes`` = the
                  book's top at every change, as live). The files carry no receive time:
                  ``recv_ts`` is the frame's ``ts``.
    trades     public.bybit.com/trading/<SYMBOL>/<SYMBOL><YYYY-MM-DD>.csv.gz (derivatives)
               timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,
               homeNotional,foreignNotional[,RPI]   (RPI: a 0/1 column added in 2025)
               (timestamp: epoch seconds with a fraction, 1585180700.0647)
               -> trades (ts = timestamp, exact to the digit; trade id: trdMatchID folded as
                  the live parser folds ``i``, so live and imported prints de-duplicate;
                  side: the taker's, Buy +1; kind MARKET, RPI prints too, as live;
                  recv_ts = ts)
               public.bybit.com/spot/<SYMBOL>/<SYMBOL>_<YYYY-MM-DD>.csv.gz (spot; monthly
               files <SYMBOL>_<YYYY-MM>.csv.gz)
               id,timestamp,price,volume,side[,rpi]   (timestamp: epoch ms; side buy/sell)
               (monthly files name five columns in the header and carry six in every row: the
               sixth is read as rpi, the columns are never shifted)
               -> trades; the symbol comes from the file or folder name (or --symbol).
               ``id`` numbers the prints of the file (1, 2, 3, ...), not Bybit's trade id, so
               prints imported from these files and the same prints seen live are two rows.

The category (linear, inverse or spot) comes from the path (``/linear/``, ``/spot/``, as
quote-saver.bycsi.com serves them: ``orderbook/<linear|spot|inverse>/<SYMBOL>/``), the name
(``ob500`` is derivatives; ``ob200`` is spot for days before 2025-08-21, when the linear files
went from 500 to 200 levels: from then on an ``_ob200`` file outside such a folder needs
``--market``), the trade columns, the id, or ``--market``.
Symbols are named by the project's one mapping (``collectors.symbols`` wire rules, ccxt's
symbols): ``BTCUSDT`` -> ``bybit:BTC/USDT:USDT``, ``BTCPERP`` -> ``bybit:BTC/USDC:USDC``,
``BTC-14MAR25`` -> ``bybit:BTC/USDC:USDC-250314``, inverse ``BTCUSD`` -> ``bybit:BTC/USD:BTC``
(its order books go through the inverse parser); an inverse future (``BTCUSDZ24``: the
delivery date is not in the id) needs ``--symbol``.
"""

from __future__ import annotations

import re

import numpy as np
import orjson
import pandas as pd

from collectors.capture import Frame, FrameKind
from collectors.exchanges import bybit as bb

from .core import Format, ImportOptions, MalformedInput, Member, MissingOption, Sink, csv_blocks, epoch_to_ns, resolve_symbol, user_symbol, utc, utc_index
from .detect import Detected
from .frames import replay_into

__all__ = ["sniff", "parse"]

_LINEAR_TRADES = ("timestamp", "symbol", "side", "size", "price", "tickDirection", "trdMatchID")  # header start
_SPOT_TRADES = ("id", "timestamp", "price", "volume", "side")
_SPOT_EXTRA = ("rpi",)  # the names of columns a spot header leaves out (monthly files)
_SPOT_NAME = re.compile(r"^(?P<symbol>[A-Z0-9]+)_\d{4}-\d{2}(?:-\d{2})?\.csv")
_OB = re.compile(r"_ob(\d+)\.data")


def _trade_columns(head: bytes, known: tuple, extra: tuple = ()) -> list[str]:
    """The column names of a trade CSV: its header, padded to the fields of its first row
    (``extra`` names, then ``_col<n>``) when the header names fewer columns than rows have."""
    lines = head.split(b"\n", 2)
    names = [c.strip() for c in lines[0].rstrip(b"\r").decode("ascii", "replace").split(",")]
    row = lines[1].rstrip(b"\r") if len(lines) > 1 else b""
    n = row.count(b",") + 1 if row else len(names)
    pad = list(extra) + [f"_col{i}" for i in range(len(names) + len(extra) + 1, n + 1)]
    return names + pad[: max(0, n - len(names))]


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    first = head.split(b"\n", 1)[0].rstrip(b"\r")
    text = first.decode("ascii", "replace")
    path = "/" + member.path.as_posix() + "/" + member.name
    market = options.market
    names = tuple(c.strip() for c in text.split(","))
    if names[: len(_LINEAR_TRADES)] == _LINEAR_TRADES:
        if market not in (None, "linear"):
            raise MissingOption(f"{where}: a Bybit derivatives trade file (public.bybit.com/trading) is linear, "
                                f"not --market {market}")
        rows = head.split(b"\n", 2)
        native = rows[1].split(b",", 2)[1].decode("ascii", "replace") if len(rows) > 1 and rows[1].count(b",") else None
        sym = user_symbol(options, "bybit", "linear", where=where)
        if sym is None and native:  # refused here, before any file of the run is written
            sym = resolve_symbol("bybit", native, "linear", where=f"{where}, line 2")
        return Detected(Format.BYBIT_HISTORY, "trades", "bybit", "linear", sym,
                        {"columns": _trade_columns(head, _LINEAR_TRADES)})
    if names[: len(_SPOT_TRADES)] == _SPOT_TRADES:
        if market not in (None, "spot"):
            raise MissingOption(f"{where}: a Bybit spot trade file (public.bybit.com/spot) is spot, not --market {market}")
        native = None
        for name in (member.name, member.path.name):
            m = _SPOT_NAME.match(name)
            if m:
                native = m.group("symbol")
                break
        if native is None and member.path.parent.name.isalnum() and member.path.parent.name.isupper():
            native = member.path.parent.name  # public.bybit.com/spot/<SYMBOL>/...
        sym = user_symbol(options, "bybit", "spot", where=where)
        if sym is None:
            if native is None:
                raise MissingOption(f"{where}: a Bybit spot trade file names no symbol and its name is not like "
                                    f"BTCUSDT_2024-01-01.csv.gz; pass --symbol (e.g. BTCUSDT)")
            sym = resolve_symbol("bybit", native, "spot", where=where)
        return Detected(Format.BYBIT_HISTORY, "trades", "bybit", "spot", sym,
                        {"columns": _trade_columns(head, _SPOT_TRADES, _SPOT_EXTRA)})
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
                named = _OB_DAY.search(member.name) or _OB_DAY.search(member.path.name)
                market = _market_of_depth(ob.group(1) if ob else None, msg.get("ts"), named.group(1) if named else None)
        if market is None:
            ob = _OB.search(member.name) or _OB.search(member.path.name)
            why = (" (derivatives files are _ob200 too since 2025-08-21, as spot files always were)"
                   if ob and ob.group(1) == "200" else "")
            raise MissingOption(f"{where}: cannot tell Bybit linear from spot (path and name say neither{why}); "
                                f"pass --market linear or spot, or keep the download's orderbook/linear/ or "
                                f"orderbook/spot/ folder in the path")
        if market not in ("linear", "spot", "inverse"):
            raise MissingOption(f"{where}: --market {market!r}: Bybit history files are linear, inverse or spot")
        native = topic.split(".")[-1]
        # the store's name for it (or the reason there is none); quote-saver.bycsi.com also
        # publishes orderbook/inverse/BTCUSD/..._ob500: its frames go through the inverse parser
        sym = resolve_symbol("bybit", native, market, where=where)
        unified = sym.split(":", 1)[1]
        if market != "spot" and unified.split(":")[1].split("-")[0] != unified.split("/")[1].split(":")[0]:
            market = "inverse"  # settled in the coin, not in the quote
        return Detected(Format.BYBIT_HISTORY, "orderbook", "bybit", market, sym, {"native": native})
    return None


# quote-saver.bycsi.com/orderbook/linear/... files went from 500 to 200 levels on this day;
# spot files (orderbook/spot/...) have always been _ob200
_LINEAR_OB200_SINCE_MS = 1_755_734_400_000  # 2025-08-21T00:00:00Z


_OB_DAY = re.compile(r"(\d{4}-\d{2}-\d{2})_[A-Z0-9_-]+_ob\d+\.data")


def _market_of_depth(depth: str | None, ts, day: str | None) -> str | None:
    """The category a file name's depth says, where it says one: ``ob500`` is derivatives;
    ``ob200`` is spot for days before 2025-08-21 (the name's day and the first frame's
    ``ts`` both before it: a day's file may open a few ms before its midnight), afterwards
    linear and spot files share the name: ``None`` (ask for --market)."""
    if depth == "500":
        return "linear"
    early = isinstance(ts, int) and not isinstance(ts, bool) and ts < _LINEAR_OB200_SINCE_MS
    if depth == "200" and early and (day is None or day < "2025-08-21"):
        return "spot"
    return None


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    if det.kind == "trades":
        return (_linear_trades if det.market == "linear" else _spot_trades)(member, det, options, sink)
    where = member.where()
    native = det.hints["native"]

    def frames():
        for line, text in member.lines():
            try:
                ts = int(orjson.loads(text)["ts"]) * 1_000_000
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise MalformedInput(where, line, f"not a Bybit orderbook frame with 'ts' ({exc})", text) from None
            yield Frame(ts, text, FrameKind.WS, None, line)

    replay_into(sink, frames(), venue="bybit", market=det.market, options=options, where=where,
                book_natives=(native,))


def seconds_text_to_ns(text: pd.Series, lines, where: str) -> np.ndarray:
    """``1585180700.0647`` (epoch seconds as text) -> int64 ns, digit by digit (no float
    rounding). A whole number of 12 digits or more is an epoch in ms/us/ns (read per value)."""
    parts = text.str.split(".", n=1, expand=True)
    whole = parts[0]
    frac = parts[1] if parts.shape[1] > 1 else pd.Series([""] * len(text), index=text.index)
    frac = frac.fillna("")
    seconds = whole.str.fullmatch(r"\d{9,11}") & frac.str.fullmatch(r"\d{0,9}")
    finer = whole.str.fullmatch(r"\d{12,19}") & (frac == "")
    ok = seconds | finer
    if not ok.all():
        i = int(np.argmax(~ok.to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"timestamp {text.iat[i]!r} is not epoch seconds")
    out = np.zeros(len(text), dtype=np.int64)
    s = seconds.to_numpy()
    if s.any():
        out[s] = whole[s].astype(np.int64).to_numpy() * 1_000_000_000 + frac[s].str.ljust(9, "0").astype(np.int64).to_numpy()
    if (~s).any():
        out[~s] = epoch_to_ns(whole[~s].astype(np.int64).to_numpy(), where=where, lines=np.asarray(lines)[~s])
    return out


def _sides(values: pd.Series, lines, where: str) -> np.ndarray:
    side = values.str.lower().map({"buy": 1, "sell": -1})
    if side.isna().any():
        i = int(np.argmax(side.isna().to_numpy()))
        raise MalformedInput(where, int(lines[i]), f"side {values.iat[i]!r} is not Buy or Sell")
    return side.to_numpy(np.int8)


def _linear_trades(member, det, options, sink) -> None:
    where = member.where()
    cols = det.hints["columns"]
    dtypes = {"timestamp": str, "size": np.float64, "price": np.float64, "symbol": str, "side": str, "trdMatchID": str}
    forced = user_symbol(options, "bybit", "linear", where=where)
    symbols: dict[str, str] = {}
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=("timestamp", "symbol", "size", "price", "side", "trdMatchID")):
        ts = seconds_text_to_ns(df["timestamp"], lines, where)
        side = _sides(df["side"], lines, where)
        ids = np.empty(len(df), dtype=np.int64)
        for i, v in enumerate(df["trdMatchID"]):
            try:
                ids[i] = bb.trade_id(v)
            except ValueError as exc:
                raise MalformedInput(where, int(lines[i]), str(exc)) from None
        natives = df["symbol"].to_numpy()
        for native in pd.unique(natives):
            if native not in symbols:
                line = int(lines[int(np.argmax(natives == native))])
                symbols[native] = forced or resolve_symbol("bybit", str(native), "linear", where=f"{where}, line {line}")
            sel = natives == native
            sink.frame("trades", symbols[native], pd.DataFrame({
                "recv_ts": utc(ts[sel]), "trade_id": ids[sel], "price": df["price"].to_numpy()[sel],
                "qty": df["size"].to_numpy()[sel], "side": side[sel],
            }, index=utc_index(ts[sel])))


def _spot_trades(member, det, options, sink) -> None:
    where = member.where()
    cols = det.hints["columns"]
    dtypes = {"id": np.int64, "timestamp": np.int64, "price": np.float64, "volume": np.float64, "side": str}
    for lines, df in csv_blocks(member, cols, dtypes, header=True, required=_SPOT_TRADES):
        ts = epoch_to_ns(df["timestamp"].to_numpy(), where=where, lines=lines)
        sink.frame("trades", det.symbol, pd.DataFrame({
            "recv_ts": utc(ts), "trade_id": df["id"].to_numpy(), "price": df["price"].to_numpy(),
            "qty": df["volume"].to_numpy(), "side": _sides(df["side"], lines, where),
        }, index=utc_index(ts)))
