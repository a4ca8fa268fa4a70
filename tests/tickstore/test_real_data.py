"""Real recorded exchange data round-trips through the store exactly.

The frames are parsed here with plain json/pandas, independently of the collectors'
parsers, so this checks the store and not a parser against itself.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pandas as pd
import pandas.testing as pdt

SYM = "binance:BTC/USDT:USDT"


def _utc(values, unit):
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(values, dtype="i8"), unit=unit, utc=True))


def test_tardis_trades_csv_round_trips(store, data_dir):
    raw = pd.read_csv(data_dir / "nautilus_trader" / "trades.csv")
    df = pd.DataFrame(
        {
            "recv_ts": _utc(raw["local_timestamp"], "us"),
            "trade_id": raw["id"].astype("i8").to_numpy(),
            "price": raw["price"].astype("f8").to_numpy(),
            "qty": raw["amount"].to_numpy(),
            "side": np.where(raw["side"] == "buy", 1, -1).astype("i1"),
        },
        index=_utc(raw["timestamp"], "us").rename("ts"),
    )
    assert len(df) == 9999
    store["trades"].insert(SYM, "2020-02-22", df, reason="tardis sample", source="csv")
    out = store["trades"].select(SYM)
    # a frame without `kind` is stored as market prints (TradeKind.MARKET, the documented default)
    pdt.assert_frame_equal(out, df.assign(kind=np.int8(0)))
    assert (out["trade_id"].diff().dropna() > 0).all()


def _frames(path):
    with gzip.open(path, "rt") as f:
        for line in f:
            recv, _, payload = line.partition(" ")
            msg = json.loads(payload)
            if "stream" in msg:
                yield int(recv), msg["stream"], msg["data"]


def test_binance_usdm_trades_and_book_ticks_round_trip_across_midnight(store, data_dir):
    trades, quotes = [], []
    # spot trades: the 0808 capture continues into 0809 across the UTC midnight
    for name in ("btcusdt_20240808.gz", "btcusdt_20240809.gz"):
        for recv, stream, d in _frames(data_dir / "hftbacktest" / "spot" / name):
            if stream.endswith("@trade"):
                trades.append((d["T"], recv, d["t"], float(d["p"]), float(d["q"]), -1 if d["m"] else 1))
    for recv, stream, d in _frames(data_dir / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"):
        if stream.endswith("@bookTicker"):
            quotes.append((d["E"], recv, d["u"], float(d["b"]), float(d["B"]), float(d["a"]), float(d["A"])))
    assert len(trades) == 9_757 + 10_147 and len(quotes) == 66_089  # PROVENANCE counts
    t = np.array(trades, dtype="i8,i8,i8,f8,f8,i1")
    order = np.argsort(t["f0"], kind="stable")
    t = t[order]
    tdf = pd.DataFrame(
        {"recv_ts": _utc(t["f1"], "ns"), "trade_id": t["f2"], "price": t["f3"], "qty": t["f4"], "side": t["f5"]},
        index=_utc(t["f0"], "ms").rename("ts"),
    )
    q = np.array(quotes, dtype="i8,i8,i8,f8,f8,f8,f8")
    q = q[np.argsort(q["f0"], kind="stable")]
    qdf = pd.DataFrame(
        {"recv_ts": _utc(q["f1"], "ns"), "update_id": q["f2"], "bid_px": q["f3"], "bid_qty": q["f4"], "ask_px": q["f5"], "ask_qty": q["f6"]},
        index=_utc(q["f0"], "ms").rename("ts"),
    )
    # live path: batches of ~1 s of frames, re-sending an overlap each time (as after a reconnect)
    for table, df in (("trades", tdf), ("quotes", qdf)):
        step = max(len(df) // 40, 1)
        for i in range(0, len(df), step):
            store[table].append(SYM, df.iloc[max(i - 5, 0) : i + step], source="replay")
        out = store[table].select(SYM)
        pdt.assert_frame_equal(out, df.assign(kind=np.int8(0)) if table == "trades" else df)  # kind: MARKET by default
        days = sorted(set(df.index.strftime("%Y-%m-%d")))
        assert list(store[table].dates(SYM).strftime("%Y-%m-%d")) == days
        assert len(store[table].select(SYM, "2024-08-09")) == int((df.index >= "2024-08-09").sum())
    # the trades run past midnight into the 2024-08-09 file, which closed 2024-08-08 into one file
    assert len(store["trades"].select(SYM, "2024-08-09")) > 5000
    visible = store["trades"].index(SYM)["superseded_at"].isna()
    assert visible.groupby(level="date").sum().tolist()[0] == 1


def test_binance_depth_snapshot_rows_round_trip(store, data_dir):
    raw = pd.read_csv(data_dir / "nautilus_trader" / "btcusdt-depth-snap.csv")
    df = pd.DataFrame(
        {
            "recv_ts": _utc(raw["timestamp"], "ms"),
            "first_update_id": raw["first_update_id"].to_numpy("i8"),
            "update_id": raw["last_update_id"].to_numpy("i8"),
            "prev_update_id": raw["pu"].to_numpy("i8"),
            "side": np.where(raw["side"] == "b", 1, -1).astype("i1"),
            "price": raw["price"].to_numpy("f8"),
            "qty": raw["qty"].to_numpy("f8"),
            "ordinal": np.arange(len(raw), dtype="i4"),  # the row's position in the snapshot
        },
        index=_utc(raw["timestamp"], "ms").rename("ts"),
    )
    store["book_diffs"].insert(SYM, "2022-11-01", df, source="binance T_DEPTH")
    pdt.assert_frame_equal(store["book_diffs"].select(SYM), df)
