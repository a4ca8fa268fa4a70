"""Tardis.dev CSV datasets -> the store, compared with an independent parse of each file.

Formats: https://docs.tardis.dev/downloadable-csv-files (CSV format details: comma, LF,
microseconds since epoch, UTC; headers per data type as in the files below). The trades
test reads the real sample ``nautilus_trader/trades.csv`` (binance-futures BTCUSDT).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pandas as pd
import pytest

from collectors.importers import MalformedInput, MissingOption
from tests.importers.helpers import run, write

PERP = "binance:BTC/USDT:USDT"


def _us(v) -> pd.Timestamp:
    return pd.Timestamp(int(v) * 1000, unit="ns", tz="UTC")


def test_real_trades_land_as_the_file_says_once(store, data_dir):
    path = data_dir / "nautilus_trader" / "trades.csv"
    report = run(store, path)
    with open(path) as fh:
        rows = list(csv.DictReader(fh))
    got = store["trades"].select(PERP)
    assert len(got) == len(rows) == 9999
    exp = sorted(rows, key=lambda r: int(r["timestamp"]))  # stable: file order among ties
    assert list(got.index) == [_us(r["timestamp"]) for r in exp]
    assert list(got["recv_ts"]) == [_us(r["local_timestamp"]) for r in exp]
    assert got["trade_id"].tolist() == [int(r["id"]) for r in exp]
    assert got["price"].tolist() == [float(r["price"]) for r in exp]
    assert got["qty"].tolist() == [float(r["amount"]) for r in exp]
    assert got["side"].tolist() == [1 if r["side"] == "buy" else -1 for r in exp]
    v = store["trades"].versions(PERP, "2020-02-22")
    assert v["source"].tolist() == ["import:tardis"] and "trades.csv" in v["reason"].iat[0]
    assert report.files[0].status == "imported" and report.rows == {"trades": 9999}
    again = run(store, path)  # the ledger: skipped without parsing
    assert again.files[0].status == "skipped"
    assert len(store["trades"].versions(PERP, "2020-02-22")) == 1


QUOTES = """exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount
binance-futures,BTCUSDT,1704067200012000,1704067200015123,2.5,42300.1,42300.0,1.25
binance-futures,BTCUSDT,1704067200012000,1704067200015987,2.0,42300.1,42300.0,1.5
binance-futures,BTCUSDT,1704067200250000,1704067200251000,0.4,42300.2,42300.1,3
"""


@pytest.mark.parametrize("gz", [False, True])
def test_quotes_plain_and_gzip(store, tmp_path, gz):
    path = write(tmp_path / f"binance-futures_quotes_2024-01-01_BTCUSDT.csv{'.gz' if gz else ''}", QUOTES, gz=gz)
    run(store, path)
    got = store["quotes"].select(PERP)
    rows = list(csv.DictReader(QUOTES.splitlines()))
    assert list(got.index) == [_us(r["timestamp"]) for r in rows]
    # no update id in the CSV: the receive time in us stands in (two quotes share a ms here)
    assert got["update_id"].tolist() == [int(r["local_timestamp"]) for r in rows]
    assert got[["bid_px", "bid_qty", "ask_px", "ask_qty"]].values.tolist() == [
        [float(r["bid_price"]), float(r["bid_amount"]), float(r["ask_price"]), float(r["ask_amount"])] for r in rows]


TICKER = """exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,open_interest,last_price,index_price,mark_price
binance-futures,BTCUSDT,1704067200000000,1704067200100000,,,,,42300.5,,
binance-futures,BTCUSDT,1704067201000000,1704067201100000,1704096000000000,0.0001,,81234.5,42300.5,42310.1,42301.2
binance-futures,BTCUSDT,1704067201500000,1704067201600000,1704096000000000,0.0001,,81234.5,42301.0,42310.1,42301.2
binance-futures,BTCUSDT,1704067202000000,1704067202100000,1704096000000000,0.00012,,81234.5,42301.0,42311.0,42302.0
binance-futures,BTCUSDT,1704067203000000,1704067203100000,1704096000000000,0.00012,,81300.0,42301.0,42311.0,42302.0
"""


def test_derivative_ticker_becomes_mark_and_open_interest(store, tmp_path):
    run(store, write(tmp_path / "binance-futures_derivative_ticker_2024-01-01_BTCUSDT.csv", TICKER))
    rows = list(csv.DictReader(TICKER.splitlines()))
    mark = store["mark"].select(PERP)
    # a mark row where mark/index/funding/next funding changed (and all are known):
    # rows 2 and 4 (row 3 only moved last_price, row 5 only open interest)
    want = [rows[1], rows[3]]
    assert list(mark.index) == [_us(r["timestamp"]) for r in want]
    assert mark["mark_px"].tolist() == [float(r["mark_price"]) for r in want]
    assert mark["index_px"].tolist() == [float(r["index_price"]) for r in want]
    assert mark["funding_rate"].tolist() == [float(r["funding_rate"]) for r in want]
    assert list(mark["next_funding_ts"]) == [_us(r["funding_timestamp"]) for r in want]
    assert list(mark["recv_ts"]) == [_us(r["local_timestamp"]) for r in want]
    oi = store["open_interest"].select(PERP)
    assert list(oi.index) == [_us(rows[1]["timestamp"]), _us(rows[4]["timestamp"])]
    assert oi["oi"].tolist() == [81234.5, 81300.0]
    # linear: value = contracts x mark price
    assert oi["oi_value"].tolist() == [81234.5 * 42301.2, 81300.0 * 42302.0]


LIQ = """exchange,symbol,timestamp,local_timestamp,id,side,price,amount
binance-futures,BTCUSDT,1704067205000000,1704067205100000,,sell,42250.0,0.5
binance-futures,BTCUSDT,1704067206000000,1704067206100000,,buy,42350.0,0.1
"""


def test_liquidations_told_from_trades_by_name_or_kind(store, tmp_path):
    anonymous = write(tmp_path / "liq.csv", LIQ)
    with pytest.raises(MissingOption, match="--kind trades or --kind liquidations"):
        run(store, anonymous)
    assert store.tables() == []
    run(store, write(tmp_path / "binance-futures_liquidations_2024-01-01_BTCUSDT.csv", LIQ))
    got = store["liquidations"].select(PERP)
    # Tardis: buy = a short position was liquidated (a forced buy): +1, as the live forceOrder
    assert got["side"].tolist() == [-1, 1] and got["qty"].tolist() == [0.5, 0.1]
    assert got["price"].tolist() == [42250.0, 42350.0]
    run(store, anonymous, kind="liquidations")  # the same rows again: nothing added
    assert len(store["liquidations"].select(PERP)) == 2


def _snapshot_csv(rows, n):
    head = "exchange,symbol,timestamp,local_timestamp," + ",".join(
        f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(n))
    lines = [head]
    for ts, asks, bids in rows:
        vals = []
        for i in range(n):
            a = asks[i] if i < len(asks) else ("", "")
            b = bids[i] if i < len(bids) else ("", "")
            vals += [str(a[0]), str(a[1]), str(b[0]), str(b[1])]
        lines.append(f"binance-futures,BTCUSDT,{ts},{ts + 500}," + ",".join(vals))
    return "\n".join(lines) + "\n"


def _grid(rows, step_us=100_000):
    """Independent sampling: the row at grid time g is the last snapshot with ts <= g, for
    every g from the first snapshot (rounded up) to the last one."""
    out = []
    g = -(-rows[0][0] // step_us) * step_us
    while g <= rows[-1][0]:
        last = [r for r in rows if r[0] <= g][-1]
        out.append((g, last))
        g += step_us
    return out


def test_book_snapshot_5_sampled_on_the_collector_grid(store, tmp_path):
    t0 = 1704067200_000000
    rows = [
        (t0 + 30_000, [(101.0, 1.0), (102.0, 2.0)], [(100.0, 1.5), (99.0, 3.0)]),
        (t0 + 90_000, [(101.0, 0.5), (102.0, 2.0)], [(100.0, 1.5), (99.0, 3.0)]),
        (t0 + 120_000, [(101.5, 1.0)], [(100.5, 2.0), (100.0, 1.0)]),
        (t0 + 420_000, [(101.0, 4.0)], [(100.0, 4.0)]),
    ]
    run(store, write(tmp_path / "binance-futures_book_snapshot_5_2024-01-01_BTCUSDT.csv", _snapshot_csv(rows, 5)))
    got = store["book"].select(PERP)
    want = _grid(rows)
    assert [int(t.value // 1000) for t in got.index] == [g for g, _ in want]
    for (g, (ts, asks, bids)), (_, row) in zip(want, got.iterrows()):
        for i in range(5):
            exp_b = bids[i] if i < len(bids) else (math.nan, math.nan)
            exp_a = asks[i] if i < len(asks) else (math.nan, math.nan)
            assert np.allclose([row[f"bid_px_{i + 1}"], row[f"bid_qty_{i + 1}"], row[f"ask_px_{i + 1}"], row[f"ask_qty_{i + 1}"]],
                               [*exp_b, *exp_a], equal_nan=True)
        assert row["recv_ts"] == _us(ts + 500)


def test_book_snapshot_25_defaults_to_book_25(store, tmp_path):
    t0 = 1704067200_000000
    rows = [(t0 + 10, [(101.0 + i, 1.0) for i in range(25)], [(100.0 - i, 1.0) for i in range(25)]),
            (t0 + 200_010, [(101.0, 2.0)], [(100.0, 2.0)])]
    run(store, write(tmp_path / "binance-futures_book_snapshot_25_2024-01-01_BTCUSDT.csv", _snapshot_csv(rows, 25)))
    got = store["book_25"].select(PERP)
    assert len(got) == 2  # grid points t0+100ms and t0+200ms
    assert got["ask_px_25"].iat[0] == 125.0 and got["bid_px_25"].iat[0] == 76.0


L2 = """exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount
binance-futures,BTCUSDT,1704067199990000,1704067199991000,false,bid,99.0,7
binance-futures,BTCUSDT,1704067200000000,1704067200001000,true,ask,101.0,1
binance-futures,BTCUSDT,1704067200000000,1704067200001000,true,ask,102.0,2
binance-futures,BTCUSDT,1704067200000000,1704067200001000,true,bid,100.0,3
binance-futures,BTCUSDT,1704067200000000,1704067200001000,true,bid,99.5,4
binance-futures,BTCUSDT,1704067200050000,1704067200051000,false,ask,101.0,0
binance-futures,BTCUSDT,1704067200050000,1704067200051000,false,bid,100.5,1.5
binance-futures,BTCUSDT,1704067200180000,1704067200181000,false,ask,101.5,0.7
binance-futures,BTCUSDT,1704067200330000,1704067200331000,false,bid,100.5,0
"""


def _l2_reference(text, step_us=100_000):
    """Independent book replay: rows before the first snapshot skipped (Tardis' rule);
    grid row at g = the book after every update with timestamp <= g, from the snapshot's
    grid point on (a snapshot is a whole book at its time, as replay treats Bybit's) to the
    last update, exclusive (the point at or after it comes with the next day's file,
    through the book state, as in replay)."""
    rows = list(csv.DictReader(text.splitlines()))
    first = next(i for i, r in enumerate(rows) if r["is_snapshot"] == "true")
    rows = rows[first:]
    book = {"bid": {}, "ask": {}}
    states = []
    for r in rows:
        side, px, amt = r["side"], float(r["price"]), float(r["amount"])
        if amt == 0:
            book[side].pop(px, None)
        else:
            book[side][px] = amt
        states.append((int(r["timestamp"]), {k: dict(v) for k, v in book.items()}))
    out = []
    g = -(-int(rows[0]["timestamp"]) // step_us) * step_us
    while g < states[-1][0]:
        st = [s for t, s in states if t <= g][-1]
        bids = sorted(st["bid"].items(), reverse=True)[:5]
        asks = sorted(st["ask"].items())[:5]
        out.append((g, bids, asks))
        g += step_us
    return out


def test_incremental_book_l2_rebuilt_through_the_book_builder(store, tmp_path):
    run(store, write(tmp_path / "binance-futures_incremental_book_L2_2024-01-01_BTCUSDT.csv.gz", L2, gz=True), keep_diffs=True)
    got = store["book"].select(PERP)
    want = _l2_reference(L2)
    assert [int(t.value // 1000) for t in got.index] == [g for g, _, _ in want]
    for (g, bids, asks), (_, row) in zip(want, got.iterrows()):
        for i, (px, q) in enumerate(bids):
            assert (row[f"bid_px_{i + 1}"], row[f"bid_qty_{i + 1}"]) == (px, q)
        for i, (px, q) in enumerate(asks):
            assert (row[f"ask_px_{i + 1}"], row[f"ask_qty_{i + 1}"]) == (px, q)
        assert math.isnan(row[f"bid_px_{len(bids) + 1}"]) and math.isnan(row[f"ask_px_{len(asks) + 1}"])
    diffs = store["book_diffs"].select(PERP)
    # the three diff messages, level by level (bids first within a message, as live)
    assert diffs["price"].tolist() == [100.5, 101.0, 101.5, 100.5]
    assert diffs["side"].tolist() == [1, -1, -1, 1]
    assert diffs["qty"].tolist() == [1.5, 0.0, 0.7, 0.0]


def test_malformed_line_names_file_and_line_and_writes_nothing(store, tmp_path):
    bad = QUOTES.replace("42300.2", "42300.2x")
    path = write(tmp_path / "binance-futures_quotes_2024-01-01_BTCUSDT.csv", bad)
    with pytest.raises(MalformedInput, match=r"quotes_2024-01-01_BTCUSDT.csv, line 4: ask_price '42300.2x'"):
        run(store, path)
    assert store.tables() == []
    short = write(tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv",
                  "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\nbinance-futures,BTCUSDT,1,2,3\n")
    with pytest.raises(MalformedInput, match="line 2: expected 8 comma-separated fields"):
        run(store, short)


def test_exchange_names_map_to_ccxt_ids(store, tmp_path):
    text = QUOTES.replace("binance-futures,BTCUSDT", "binance-delivery,BTCUSD_PERP")
    run(store, write(tmp_path / "binance-delivery_quotes_2024-01-01_BTCUSD_PERP.csv", text))
    assert store["quotes"].symbols() == ["binance:BTC/USD:BTC"]
    spot = QUOTES.replace("binance-futures,BTCUSDT", "binance,ETHUSDT")
    run(store, write(tmp_path / "binance_quotes_2024-01-01_ETHUSDT.csv", spot))
    assert "binance:ETH/USDT" in store["quotes"].symbols()
    with pytest.raises(Exception, match="deribit"):
        run(store, write(tmp_path / "deribit_quotes.csv", QUOTES.replace("binance-futures", "deribit")))
