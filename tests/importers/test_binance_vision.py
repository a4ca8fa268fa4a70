"""Binance's public archive -> the store, compared with an independent parse of each file.

Formats: https://github.com/binance/binance-public-data (README: column titles of spot and
futures trades, aggTrades and klines; paths data/<spot|futures/um|futures/cm>/<daily|monthly>/
<kind>/<SYMBOL>/...; futures files carry a header row since 2022; spot timestamps are in
microseconds from 2025). Real samples: ``nautilus_trader/ADABTC-1m-2021-11-27.csv`` (spot
klines, no header) and the T_DEPTH order-book CSVs ``btcusdt-depth-snap/update.csv``.
"""

from __future__ import annotations

import csv

import pandas as pd
import pytest

from collectors.importers import MalformedInput, MissingOption
from tests.importers.helpers import run, write, write_tar, write_zip

PERP = "binance:BTC/USDT:USDT"


def _ms(v) -> pd.Timestamp:
    return pd.Timestamp(int(v) * 1_000_000, unit="ns", tz="UTC")


def test_real_spot_klines_need_the_market_then_land_in_ohlcv_1m(store, data_dir):
    path = data_dir / "nautilus_trader" / "ADABTC-1m-2021-11-27.csv"
    with pytest.raises(MissingOption, match="pass --market spot, usdm or coinm"):
        run(store, path)
    run(store, path, market="spot")
    got = store["ohlcv_1m"].select("binance:ADA/BTC")
    rows = list(csv.reader(open(path)))
    assert len(got) == len(rows) == 1440
    assert list(got.index) == [_ms(r[0]) for r in rows]
    assert got[["open", "high", "low", "close", "volume"]].values.tolist() == [[float(x) for x in r[1:6]] for r in rows]
    # the documented rule: the other kline fields have no column in ohlcv_1m and are dropped
    assert list(got.columns) == ["open", "high", "low", "close", "volume"]
    assert store["ohlcv_1m"].versions("binance:ADA/BTC", "2021-11-27")["source"].tolist() == ["import:binance-vision"]


def test_kline_extras_are_kept_where_the_table_has_them(store, tmp_path):
    from tickstore.schemas import Column, Partition, Schema

    cols = ("open", "high", "low", "close", "volume", "quote_volume", "count")
    store.create_table("ohlcv_1mo", Schema("ohlcv_1mo", tuple(Column(c, "int64" if c == "count" else "float64") for c in cols),
                                           key=("ts",), partition=Partition.YEAR))
    text = ("1704067200000,42283.58,44184.10,39555.00,42580.00,1063532.4,1706745599999,4.6e10,12345,5.3e5,2.3e10,0\n"
            "1706745600000,42580.00,43882.36,38555.00,43000.00,1000000.0,1709251199999,4.1e10,23456,5.0e5,2.1e10,0\n")
    run(store, write_zip(tmp_path / "data/futures/um/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-01.zip",
                         "BTCUSDT-1mo-2024-01.csv", text))
    got = store["ohlcv_1mo"].select(PERP)
    assert got["quote_volume"].tolist() == [4.6e10, 4.1e10] and got["count"].tolist() == [12345, 23456]


TRADES_SPOT = """3735683259,61837.63000000,0.02000000,1236.75260000,1723161255342,True,True
3735683260,61837.64000000,0.00100000,61.83764000,1723161255343,False,True
"""
TRADES_UM = """id,price,qty,quote_qty,time,is_buyer_maker
5266583935,61800.30,0.006,370.8018,1723161256322,false
5266583936,61800.20,0.100,6180.02,1723161256325,true
"""


def test_trades_spot_without_header_and_usdm_with_header(store, tmp_path):
    run(store, write_zip(tmp_path / "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip",
                         "BTCUSDT-trades-2024-08-08.csv", TRADES_SPOT))
    run(store, write_zip(tmp_path / "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip",
                         "BTCUSDT-trades-2024-08-08.csv", TRADES_UM))
    for sym, text in (("binance:BTC/USDT", TRADES_SPOT), (PERP, TRADES_UM)):
        rows = [r for r in csv.reader(text.splitlines()) if r[0].isdigit()]
        got = store["trades"].select(sym)
        assert got["trade_id"].tolist() == [int(r[0]) for r in rows]
        assert list(got.index) == [_ms(r[4]) for r in rows]
        assert got["price"].tolist() == [float(r[1]) for r in rows] and got["qty"].tolist() == [float(r[2]) for r in rows]
        assert got["side"].tolist() == [-1 if r[5].lower() == "true" else 1 for r in rows]  # buyer maker: a sell
        assert list(got["recv_ts"]) == list(got.index)  # the archive has no receive time


def test_microsecond_spot_timestamps_are_read_per_value(store, tmp_path):
    us = TRADES_SPOT.replace("1723161255342", "1723161255342123").replace("1723161255343", "1723161255343456")
    run(store, write(tmp_path / "data/spot/daily/trades/BTCUSDT/BTCUSDT-trades-2025-01-01.csv", us))
    got = store["trades"].select("binance:BTC/USDT")
    assert [t.value for t in got.index] == [1723161255342123000, 1723161255343456000]


def test_funding_rate_snapped_with_its_interval(store, tmp_path):
    text = "calc_time,funding_interval_hours,last_funding_rate\n1704067200001,8,0.00010000\n1704096000000,8,-0.00002500\n"
    run(store, write_zip(tmp_path / "data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip",
                         "BTCUSDT-fundingRate-2024-01.csv", text))
    got = store["funding"].select(PERP)
    assert list(got.index) == [pd.Timestamp("2024-01-01 00:00", tz="UTC"), pd.Timestamp("2024-01-01 08:00", tz="UTC")]
    assert got["rate"].tolist() == [0.0001, -0.000025] and got["interval_h"].tolist() == [8.0, 8.0]


def test_book_ticker_metrics_and_coinm_liquidations(store, tmp_path):
    bt = ("update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time\n"
          "5123107839020,61800.20,2.507,61800.30,2.510,1723161256316,1723161256317\n")
    run(store, write(tmp_path / "data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2024-08-08.csv", bt))
    q = store["quotes"].select(PERP)
    assert q.index[0] == _ms(1723161256317) and q["update_id"].iat[0] == 5123107839020  # ts = event time, as live
    assert q[["bid_px", "bid_qty", "ask_px", "ask_qty"]].values.tolist() == [[61800.2, 2.507, 61800.3, 2.51]]
    metrics = ("create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
               "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n"
               "2024-08-08 00:05:00,BTCUSDT,81234.567,5012345678.9,1.2,1.3,1.4,0.9\n")
    run(store, write(tmp_path / "BTCUSDT-metrics-2024-08-08.csv", metrics))
    oi = store["open_interest"].select(PERP)
    assert oi.index[0] == pd.Timestamp("2024-08-08 00:05", tz="UTC") and oi["oi"].iat[0] == 81234.567
    liq = ("time,side,order_type,time_in_force,original_quantity,price,average_price,order_status,"
           "last_fill_quantity,accumulated_fill_quantity\n"
           "1723161256000,SELL,LIMIT,IOC,12,58000.1,58010.5,FILLED,12,12\n"
           "1723161257000,BUY,LIMIT,IOC,20,58100.0,58090.2,EXPIRED,3,7\n"
           "1723161258000,BUY,LIMIT,IOC,5,58100.0,0,EXPIRED,0,0\n")
    run(store, write(tmp_path / "data/futures/cm/daily/liquidationSnapshot/BTCUSD_PERP/BTCUSD_PERP-liquidationSnapshot-2024-08-08.csv", liq))
    got = store["liquidations"].select("binance:BTC/USD:BTC")
    # what was executed (average_price, accumulated_fill_quantity), as the live forceOrder's
    # ap and z; the order that filled nothing is no liquidation print
    assert got[["side", "price", "qty"]].values.tolist() == [[-1, 58010.5, 12.0], [1, 58090.2, 7.0]]


_DEPTH_HEADER = "symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu"
_DEPTH_KEYS = _DEPTH_HEADER.split(",")


def test_real_t_depth_update_diffs_keep_every_row(store, data_dir):
    upd = data_dir / "nautilus_trader" / "btcusdt-depth-update.csv"
    run(store, upd, keep_diffs=True)
    rows = list(csv.DictReader(open(upd)))
    diffs = store["book_diffs"].select(PERP)
    # one message (one last_update_id): bids first, then asks, as the live batcher writes them
    exp = [r for r in rows if r["side"] == "b"] + [r for r in rows if r["side"] == "a"]
    assert diffs["price"].tolist() == [float(r["price"]) for r in exp]
    assert diffs["qty"].tolist() == [float(r["qty"]) for r in exp]
    assert diffs["update_id"].unique().tolist() == [int(rows[0]["last_update_id"])]
    assert diffs["prev_update_id"].unique().tolist() == [int(rows[0]["pu"])]
    # 37 rows repeat a side, price and quantity of the same update: every row is kept, at its
    # position in the update (ordinal), and importing the file again adds nothing
    assert len(diffs) == 100 and diffs["ordinal"].tolist() == list(range(100))
    assert len({(r["side"], r["price"], r["qty"]) for r in rows}) == 63
    assert sum(run(store, upd, keep_diffs=True, force=True).rows.values()) == 0
    # no snapshot: no book rows; the book that never synced is in the gap ledger, as a replay
    # of the same diffs leaves it (cause "unsynced")
    assert store.tables() == ["book_diffs", "gaps"]
    assert store["gaps"].select(PERP)["cause"].tolist() == ["unsynced"]


def _depth_parts(data_dir):
    """The real snapshot, and the real update rows renumbered to continue it (as the download
    of one day holds them), plus one later update: (snapshot lines, update lines, expected top)."""
    rows = list(csv.DictReader(open(data_dir / "nautilus_trader" / "btcusdt-depth-update.csv")))
    snap = list(csv.DictReader(open(data_dir / "nautilus_trader" / "btcusdt-depth-snap.csv")))
    sid, sts = int(snap[0]["last_update_id"]), int(snap[0]["timestamp"])
    snap_lines = [",".join(r[k] for k in _DEPTH_KEYS) for r in snap]
    upd_lines = [f"BTCUSDT,{sts + 150},{sid - 5},{sid + 10},{r['side']},set,{r['price']},{r['qty']},{sid - 6}" for r in rows]
    upd_lines.append(f"BTCUSDT,{sts + 420},{sid + 11},{sid + 12},b,set,1.0,1.0,{sid + 10}")
    bids = {float(r["price"]): float(r["qty"]) for r in snap if r["side"] == "b"}
    asks = {float(r["price"]): float(r["qty"]) for r in snap if r["side"] == "a"}
    for r in rows:  # an independent book: levels set in file order, qty 0 removes
        side = bids if r["side"] == "b" else asks
        if float(r["qty"]) == 0:
            side.pop(float(r["price"]), None)
        else:
            side[float(r["price"])] = float(r["qty"])
    return snap_lines, upd_lines, sts, sorted(bids.items(), reverse=True)[:5], sorted(asks.items())[:5]


def _tar(path, members: list[tuple[str, list[str]]]):
    """A gzip tar of CSV members (Binance's T_DEPTH download: ``BTCUSDT_T_DEPTH_<date>.tar.gz``
    from GET /sapi/v1/futures/histDataLink, developers.binance.com; members named
    ``<SYMBOL>_T_DEPTH_<date>_depth_snap.csv`` / ``..._depth_update.csv``)."""
    return write_tar(path, [(name, "\n".join([_DEPTH_HEADER] + lines) + "\n") for name, lines in members])


def test_t_depth_book_from_snapshot_plus_diffs_one_csv_or_the_tar_gz_download(data_dir, tmp_path):
    from tickstore import Tickstore

    snap_lines, upd_lines, sts, top_b, top_a = _depth_parts(data_dir)
    one = write(tmp_path / "BTCUSDT_T_DEPTH_2022-11-01_depth.csv", "\n".join([_DEPTH_HEADER] + snap_lines + upd_lines) + "\n")
    day = "BTCUSDT_T_DEPTH_2022-11-01"
    # the update part first in the archive: the parts are merged by time, whatever their order
    tar = _tar(tmp_path / f"{day}.tar.gz", [(f"{day}/{day}_depth_update.csv", upd_lines), (f"{day}/{day}_depth_snap.csv", snap_lines)])
    got = {}
    for name, path in (("csv", one), ("tar", tar)):
        with Tickstore(tmp_path / name) as store:
            report = run(store, path, keep_diffs=True)
            assert report.files[0].kind == "depth"
            got[name] = {t: store[t].select(PERP) for t in ("book", "book_diffs")}
            assert store.tables() == ["book", "book_diffs"]  # synced: no gap
    book = got["csv"]["book"]
    first = book.iloc[0]
    assert book.index[0] == _ms(-(-(sts + 150) // 100) * 100)  # the first grid point after the bridging diff
    assert [(first[f"bid_px_{i}"], first[f"bid_qty_{i}"]) for i in range(1, 6)] == top_b
    assert [(first[f"ask_px_{i}"], first[f"ask_qty_{i}"]) for i in range(1, 6)] == top_a
    for table in ("book", "book_diffs"):
        pd.testing.assert_frame_equal(got["tar"][table], got["csv"][table])
    assert len(got["csv"]["book_diffs"]) == len(upd_lines)
    # a download cut short is refused before anything is written
    cut = tmp_path / "cut" / f"{day}.tar.gz"
    cut.parent.mkdir()
    cut.write_bytes(tar.read_bytes()[: len(tar.read_bytes()) * 2 // 3])
    with Tickstore(tmp_path / "cut-store") as store:
        with pytest.raises(MalformedInput, match="not a readable tar archive"):
            run(store, cut)
        assert store.tables() == []


def test_t_depth_import_stores_what_a_replay_of_the_same_messages_stores(data_dir, tmp_path):
    """The same messages as websocket frames (a futures depthUpdate per message, E = the
    file's time) and the snapshot as a REST depth body, replayed by ``tickstore replay``:
    the import's book and diffs are the replay's, row for row."""
    import json

    from collectors.replay import replay
    from tickstore import Tickstore

    snap_lines, upd_lines, sts, _, _ = _depth_parts(data_dir)
    one = write(tmp_path / "BTCUSDT_T_DEPTH_2022-11-01_depth.csv", "\n".join([_DEPTH_HEADER] + snap_lines + upd_lines) + "\n")
    snap = [dict(zip(_DEPTH_KEYS, ln.split(","))) for ln in snap_lines]
    body = {"lastUpdateId": int(snap[0]["last_update_id"]), "E": sts, "T": sts,
            "bids": [[r["price"], r["qty"]] for r in snap if r["side"] == "b"],
            "asks": [[r["price"], r["qty"]] for r in snap if r["side"] == "a"]}
    lines = [f"{sts * 1_000_000} {json.dumps(body)}"]
    msgs: dict = {}
    for ln in upd_lines:
        r = dict(zip(_DEPTH_KEYS, ln.split(",")))
        msgs.setdefault((int(r["timestamp"]), int(r["last_update_id"])), []).append(r)
    for (t, u), rs in msgs.items():
        d = {"e": "depthUpdate", "E": t, "T": t, "s": "BTCUSDT", "U": int(rs[0]["first_update_id"]), "u": u,
             "pu": int(rs[0]["pu"]), "b": [[r["price"], r["qty"]] for r in rs if r["side"] == "b"],
             "a": [[r["price"], r["qty"]] for r in rs if r["side"] == "a"]}
        lines.append(f"{t * 1_000_000} {json.dumps({'stream': 'btcusdt@depth@0ms', 'data': d})}")
    capture = write(tmp_path / "btcusdt_20221101.txt", "\n".join(lines) + "\n")
    with Tickstore(tmp_path / "imported") as a, Tickstore(tmp_path / "replayed") as b:
        run(a, one, keep_diffs=True)
        replay([capture], store=b, market="usdm", keep_diffs=True)
        for table in ("book", "book_diffs"):
            pd.testing.assert_frame_equal(a[table].select(PERP), b[table].select(PERP), obj=table)
        assert a.tables() == b.tables() == ["book", "book_diffs"]


def test_t_depth_snapshot_file_then_update_file_continue_one_book(data_dir, tmp_path):
    """Imported one file at a time, the book continues through the store's book state."""
    from tickstore import Tickstore

    snap_lines, upd_lines, *_ = _depth_parts(data_dir)
    day = "BTCUSDT_T_DEPTH_2022-11-01"
    snap = write(tmp_path / f"{day}_depth_snap.csv", "\n".join([_DEPTH_HEADER] + snap_lines) + "\n")
    upd = write(tmp_path / f"{day}_depth_update.csv", "\n".join([_DEPTH_HEADER] + upd_lines) + "\n")
    both = write(tmp_path / "both" / f"{day}_depth.csv", "\n".join([_DEPTH_HEADER] + snap_lines + upd_lines) + "\n")
    with Tickstore(tmp_path / "apart") as a, Tickstore(tmp_path / "together") as b:
        run(a, snap)
        run(a, upd)
        run(b, both)
        pd.testing.assert_frame_equal(a["book"].select(PERP), b["book"].select(PERP))


def test_t_depth_download_with_a_bad_row_writes_nothing_and_leaves_the_books(data_dir, tmp_path):
    """A bad row in the update part of a download: the error names the archive entry and
    its line, no table is written and the store's book state is not touched (the snapshot
    part, read first, does not leave a book behind)."""
    from tickstore import Tickstore

    snap_lines, upd_lines, *_ = _depth_parts(data_dir)
    day = "BTCUSDT_T_DEPTH_2022-11-01"
    bad = list(upd_lines)
    bad[3] = bad[3].replace(",set,", ",sett,")
    tar = _tar(tmp_path / f"{day}.tar.gz", [(f"{day}_depth_snap.csv", snap_lines), (f"{day}_depth_update.csv", bad)])
    with Tickstore(tmp_path / "store") as store:
        with pytest.raises(MalformedInput, match=rf"{day}_depth_update.csv.*line 5: update_type 'sett'"):
            run(store, tar)
        assert store.tables() == []
        assert not (tmp_path / "store" / "_book_state.json").exists()


def test_unreadable_row_is_refused_with_its_line(store, tmp_path):
    bad = TRADES_UM.replace("370.8018,1723161256322,false", "370.8018,1723161256322,maybe")
    with pytest.raises(MalformedInput, match=r"line 2: is_buyer_maker 'maybe' is not true or false"):
        run(store, write(tmp_path / "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.csv", bad))
    assert store.tables() == []
