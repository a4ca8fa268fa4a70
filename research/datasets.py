"""Loaders: real recorded exchange files -> frames in the store's table schemas.

Each loader returns exactly what ``Table.insert`` takes for its table (``ts`` index UTC,
sorted, schema columns and dtypes), so research code, tests and notebooks can put real
data into a store and read it back with ``select``. The files themselves stay where they
are (``shared/data``, see its PROVENANCE.md); nothing here copies them.

File formats handled (one loader each)::

    Tardis trades CSV         exchange,symbol,timestamp,local_timestamp,id,side,price,amount (us)
    hftbacktest capture       "<recv_ts> <Binance combined-stream JSON>" per line, gzip;
                              recv_ts in ns (2024 files) or us (2023 *.dat.gz)
                              streams: @trade, @bookTicker, @markPrice@1s
    hftbacktest Hyperliquid   "<recv_ns> {"channel":"l2Book","data":{coin,time,levels}}"
    Binance klines CSV        open_time,o,h,l,c,volume,close_time,quote_vol,n,taker_buy_base,..
    funding-history CSV       Symbol,Date,Funding Rate with Date in the author's UTC+3 local time
    Hyperliquid cassette      vcrpy YAML; fundingHistory response [{coin,fundingRate,premium,time}]
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from .errors import ResearchError
from .funding import SCHEDULES, Venue

__all__ = [
    "data_dir",
    "TARDIS_TRADES",
    "USDM_2024",
    "USDM_2023",
    "SPOT_2024",
    "CM_2024",
    "HL_BOOK",
    "ADA_KLINES",
    "BINANCE_FUNDING",
    "BYBIT_FUNDING",
    "HL_FUNDING",
    "load_tardis_trades",
    "load_binance_trades",
    "load_binance_quotes",
    "load_binance_mark",
    "load_binance_klines",
    "load_hyperliquid_book",
    "load_funding_history_csv",
    "load_hyperliquid_funding",
]

# The real recorded files this module reads, relative to ``data_dir()`` (see PROVENANCE.md).
TARDIS_TRADES = "nautilus_trader/trades.csv"
USDM_2024 = "hftbacktest/usdm/btcusdt_20240808.gz"
USDM_2023 = "hftbacktest/usdm/btcusdt_20230404.dat.gz"
SPOT_2024 = "hftbacktest/spot/btcusdt_20240808.gz"
CM_2024 = "hftbacktest/cm/btcusd_perp_20240808.gz"
HL_BOOK = "hftbacktest/hyperliquid/btcusd_20250126.gz"
ADA_KLINES = "nautilus_trader/ADABTC-1m-2021-11-27.csv"
BINANCE_FUNDING = "historical-funding-rates-fetcher/BTC-USDT_binance_2020-01-01_2024-01-01_funding_history.csv"
BYBIT_FUNDING = "historical-funding-rates-fetcher/BTC-USDT_bybit_2021-01-01_2024-01-01_funding_history.csv"
HL_FUNDING = "hyperliquid-python-sdk/test_get_funding_history[None].yaml"


def data_dir() -> Path:
    """The shared real-data folder: ``$TICKSTORE_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("TICKSTORE_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _frame(ts_ns, columns: dict) -> pd.DataFrame:
    """Sort stably by event time (ties keep file order) and index by ``ts``."""
    ts_ns = np.asarray(ts_ns, dtype=np.int64)
    order = np.argsort(ts_ns, kind="stable")
    data = {}
    for name, values in columns.items():
        values = np.asarray(values)[order]
        # *_ts columns arrive as int64 ns and are stored as UTC datetimes (schema "datetime")
        data[name] = pd.to_datetime(values.astype(np.int64), unit="ns", utc=True) if name.endswith("_ts") else values
    return pd.DataFrame(data, index=pd.DatetimeIndex(ts_ns[order], tz="UTC", name="ts"))


def _lines(path) -> list[str]:
    path = Path(path)
    if not path.exists():
        raise ResearchError(f"data file {path} does not exist (shared data folder: {data_dir()})")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        return fh.read().splitlines()


def _recv_ns(token: str) -> int:
    v = int(token)
    # 2023 hftbacktest captures stamp microseconds (16 digits), later ones nanoseconds (19)
    return v * 1000 if v < 10**17 else v


def _hft_stream(path, suffix: str) -> list[tuple[int, dict]]:
    """(recv_ns, data) of every frame of the Binance stream ending in ``suffix``."""
    out = []
    needle = f'{suffix}"'
    for line in _lines(path):
        recv, _, body = line.partition(" ")
        if needle not in body[:80]:
            continue
        msg = orjson.loads(body)
        if str(msg.get("stream", "")).endswith(suffix):
            out.append((_recv_ns(recv), msg["data"]))
    if not out:
        raise ResearchError(f"no '{suffix}' frames in {path}")
    return out


def load_tardis_trades(path) -> pd.DataFrame:
    """A Tardis.dev ``trades`` CSV as a ``trades`` frame (ts = exchange time, recv_ts = local).

    Raises
    ------
    ResearchError
        Missing file or an unknown ``side`` value.
    """
    path = Path(path)
    if not path.exists():
        raise ResearchError(f"data file {path} does not exist")
    raw = pd.read_csv(path)
    side = raw["side"].map({"buy": 1, "sell": -1})
    if side.isna().any():
        raise ResearchError(f"{path}: unknown side values {sorted(set(raw['side'][side.isna()]))} (expected buy/sell)")
    return _frame(
        raw["timestamp"].to_numpy(np.int64) * 1000,
        {
            "recv_ts": raw["local_timestamp"].to_numpy(np.int64) * 1000,
            "trade_id": raw["id"].to_numpy(np.int64),
            "price": raw["price"].to_numpy(np.float64),
            "qty": raw["amount"].to_numpy(np.float64),
            "side": side.to_numpy(np.int8),
        },
    )


def load_binance_trades(path) -> pd.DataFrame:
    """``@trade`` frames of a Binance hftbacktest capture as a ``trades`` frame.

    ts = trade time ``T``; side = -1 when the buyer was the maker (``m``), else +1.
    """
    rows = _hft_stream(path, "@trade")
    return _frame(
        [d["T"] * 1_000_000 for _, d in rows],
        {
            "recv_ts": [r for r, _ in rows],
            "trade_id": np.array([d["t"] for _, d in rows], dtype=np.int64),
            "price": np.array([d["p"] for _, d in rows], dtype=np.float64),
            "qty": np.array([d["q"] for _, d in rows], dtype=np.float64),
            "side": np.array([-1 if d["m"] else 1 for _, d in rows], dtype=np.int8),
        },
    )


def load_binance_quotes(path) -> pd.DataFrame:
    """``@bookTicker`` frames of a Binance capture as a ``quotes`` frame.

    ts = transaction time ``T`` (futures). Spot bookTicker frames carry no exchange time at
    all, so for them ts is the receive time (the only clock there is); compare spot and
    futures quotes on ``recv_ts`` (one clock) rather than on ``ts``.
    """
    rows = _hft_stream(path, "@bookTicker")
    return _frame(
        [d["T"] * 1_000_000 if "T" in d else r for r, d in rows],
        {
            "recv_ts": [r for r, _ in rows],
            "update_id": np.array([d["u"] for _, d in rows], dtype=np.int64),
            "bid_px": np.array([d["b"] for _, d in rows], dtype=np.float64),
            "bid_qty": np.array([d["B"] for _, d in rows], dtype=np.float64),
            "ask_px": np.array([d["a"] for _, d in rows], dtype=np.float64),
            "ask_qty": np.array([d["A"] for _, d in rows], dtype=np.float64),
        },
    )


def load_binance_mark(path) -> pd.DataFrame:
    """``@markPrice@1s`` frames as a ``mark`` frame (ts = event time ``E``; r = predicted rate)."""
    rows = _hft_stream(path, "@markPrice@1s")
    return _frame(
        [d["E"] * 1_000_000 for _, d in rows],
        {
            "recv_ts": [r for r, _ in rows],
            "mark_px": np.array([d["p"] for _, d in rows], dtype=np.float64),
            "index_px": np.array([d["i"] for _, d in rows], dtype=np.float64),
            "funding_rate": np.array([d["r"] for _, d in rows], dtype=np.float64),
            "next_funding_ts": [d["T"] * 1_000_000 for _, d in rows],
        },
    )


def load_binance_klines(path) -> pd.DataFrame:
    """A Binance klines CSV (data.binance.vision, no header) as bars like ``trade_bars`` gives.

    Returns open/high/low/close/volume plus vwap (quote volume / volume), count,
    buy_volume (taker buy base), sell_volume (volume - buy_volume) and notional (quote volume);
    ``ts`` is the bar open.
    """
    path = Path(path)
    if not path.exists():
        raise ResearchError(f"data file {path} does not exist")
    raw = pd.read_csv(path, header=None)
    if raw.shape[1] != 12:
        raise ResearchError(f"{path}: expected the 12-column Binance kline row, got {raw.shape[1]} columns")
    vol = raw[5].to_numpy(np.float64)
    quote = raw[7].to_numpy(np.float64)
    buy = raw[9].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = np.where(vol > 0, quote / vol, np.nan)
    df = _frame(
        raw[0].to_numpy(np.int64) * 1_000_000,
        {
            "open": raw[1].to_numpy(np.float64),
            "high": raw[2].to_numpy(np.float64),
            "low": raw[3].to_numpy(np.float64),
            "close": raw[4].to_numpy(np.float64),
            "volume": vol,
            "vwap": vwap,
            "count": raw[8].to_numpy(np.int64),
            "buy_volume": buy,
            "sell_volume": vol - buy,
            "notional": quote,
        },
    )
    return df


def load_hyperliquid_book(path, *, depth: int = 20) -> pd.DataFrame:
    """Hyperliquid ``l2Book`` frames as a ``book_<depth>`` frame (ts = the book's ``time``).

    Hyperliquid sends no sequence number, so ``update_id`` is -1; levels beyond what a
    snapshot holds are NaN. A snapshot re-sent with the same ``time`` (it happens) is kept
    once, the last received: the ``book`` table is keyed on ``ts``.
    """
    rows = []
    for line in _lines(path):
        recv, _, body = line.partition(" ")
        if '"l2Book"' not in body[:40]:
            continue
        rows.append((_recv_ns(recv), orjson.loads(body)["data"]))
    if not rows:
        raise ResearchError(f"no l2Book frames in {path}")
    cols: dict[str, list] = {"recv_ts": [r for r, _ in rows], "update_id": [-1] * len(rows)}
    for side_name, side_i in (("bid", 0), ("ask", 1)):
        for what, key in (("px", "px"), ("qty", "sz")):
            for lvl in range(1, depth + 1):
                cols[f"{side_name}_{what}_{lvl}"] = [
                    float(d["levels"][side_i][lvl - 1][key]) if lvl <= len(d["levels"][side_i]) else np.nan for _, d in rows
                ]
    order = ["recv_ts", "update_id"] + [f"{s}_{w}_{i}" for s in ("bid", "ask") for w in ("px", "qty") for i in range(1, depth + 1)]
    df = _frame([d["time"] * 1_000_000 for _, d in rows], {k: cols[k] for k in order})
    df["update_id"] = df["update_id"].astype(np.int64)
    return df[~df.index.duplicated(keep="last")]


# Venues stamp a settlement when their funding job ran: a few ms to ~1 s after the hour
# (Binance REST history, Hyperliquid), and Hyperliquid's 2023-05-23 08:00 settlement was
# stamped 08:23:53. Anything within this drift snaps to the nearest hour; further is refused.
_MAX_STAMP_DRIFT = pd.Timedelta(minutes=30)


def _settlement_frame(ts: pd.DatetimeIndex, rate: np.ndarray, *, venue: Venue, source) -> pd.DataFrame:
    """Snap venue-stamped settlement times to the hour, check them against the venue's
    settlement grid (multiples of its interval from midnight UTC) and attach ``interval_h``."""
    rounded = ts.round("h")
    drift = np.abs((ts - rounded).to_numpy())
    if len(drift) and drift.max() >= _MAX_STAMP_DRIFT.to_timedelta64():
        i = int(np.argmax(drift))
        raise ResearchError(f"{source}: settlement {ts[i]} is {pd.Timedelta(drift[i])} off the hour; not a funding time?")
    if rounded.has_duplicates:
        raise ResearchError(f"{source}: two settlements snap to {rounded[rounded.duplicated()][0]}")
    interval = SCHEDULES[venue].interval_h(rounded)
    off_grid = np.flatnonzero(rounded.hour.to_numpy() % interval != 0)
    if len(off_grid):
        i = int(off_grid[0])
        raise ResearchError(
            f"{source}: settlement {ts[i]} (snapped to {rounded[i]}) is not on the {venue.value} "
            f"{interval[i]:g} h grid (hours multiple of {interval[i]:g} UTC)"
        )
    df = pd.DataFrame(
        {"rate": np.asarray(rate, dtype=np.float64), "interval_h": interval},
        index=pd.DatetimeIndex(rounded, name="ts"),
    )
    return df.sort_index(kind="stable")


def load_funding_history_csv(path, *, venue: Venue, utc_offset: str = "3h") -> pd.DataFrame:
    """A historical-funding-rates-fetcher CSV as a ``funding`` frame.

    Those files write ``Date`` as naive local time of the machine that fetched them, UTC+3
    (Binance's 00/08/16 UTC settlements appear at 03/11/19); ``utc_offset`` is subtracted.

    Parameters
    ----------
    path : path-like
    venue : Venue
        Whose interval convention applies (``SCHEDULES``).
    utc_offset : str
        The file's local-time offset from UTC (default "3h").

    Returns
    -------
    DataFrame
        ``rate``, ``interval_h``; ts = settlement time (UTC, whole hour).

    Raises
    ------
    ResearchError
        Missing file/columns, times more than a minute off the hour after conversion.
    """
    path = Path(path)
    if not path.exists():
        raise ResearchError(f"data file {path} does not exist")
    raw = pd.read_csv(path)
    missing = {"Date", "Funding Rate"} - set(raw.columns)
    if missing:
        raise ResearchError(f"{path}: missing columns {sorted(missing)}; has {list(raw.columns)}")
    local = pd.DatetimeIndex(pd.to_datetime(raw["Date"], format="mixed"))
    if local.tz is not None:
        raise ResearchError(f"{path}: Date is already tz-aware ({local.tz}); this loader expects naive local times")
    ts = (local - pd.Timedelta(utc_offset)).tz_localize("UTC")
    return _settlement_frame(ts, raw["Funding Rate"].to_numpy(np.float64), venue=venue, source=path)


def load_hyperliquid_funding(path, *, coin: str = "BTC") -> pd.DataFrame:
    """The ``fundingHistory`` response in a Hyperliquid SDK vcrpy cassette as a ``funding`` frame.

    Raises
    ------
    ResearchError
        If the cassette holds no fundingHistory response for ``coin``.
    """
    import yaml  # dev/test dependency; only this loader needs it

    path = Path(path)
    if not path.exists():
        raise ResearchError(f"data file {path} does not exist")
    with open(path) as fh:
        cassette = yaml.safe_load(fh)
    for interaction in cassette.get("interactions", []):
        body = orjson.loads(interaction["request"].get("body") or "{}")
        if body.get("type") == "fundingHistory" and body.get("coin") == coin:
            records = orjson.loads(interaction["response"]["body"]["string"])
            break
    else:
        raise ResearchError(f"{path}: no fundingHistory response for coin {coin!r}")
    ts = pd.DatetimeIndex(pd.to_datetime([r["time"] for r in records], unit="ms", utc=True))
    rate = np.array([r["fundingRate"] for r in records], dtype=np.float64)
    return _settlement_frame(ts, rate, venue=Venue.HYPERLIQUID, source=path)
