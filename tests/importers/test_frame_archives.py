"""Archives of websocket frames (Hyperliquid's S3 archive, Bybit's order-book history) and
REST answers (Binance, Hyperliquid) -> the live parsers and book builder -> the store.

Formats: Hyperliquid https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data (lz4,
one JSON line per frame: {"time": <receive time, ISO ns>, "ver_num": 1, "raw": <ws frame>});
Bybit history-data orderbook ``.data`` files: one v5 websocket frame per line; Binance REST
https://github.com/binance/binance-public-data (REST column titles) and
https://developers.binance.com/docs (bodies); Hyperliquid info endpoint bodies. The frames
themselves are real: the hftbacktest Hyperliquid capture, the cryptofeed Bybit capture and
the Hyperliquid SDK cassettes in ../shared/data.
"""

from __future__ import annotations

import gzip
import json
import zipfile

import lz4.frame
import numpy as np
import orjson
import pandas as pd
import pytest
import yaml
import zstandard

from tests.importers.helpers import run, write

HL = "hyperliquid:BTC/USDC:USDC"


def _iso(ns: int) -> str:
    return str(np.datetime64(ns, "ns"))


def _hl_frames(data_dir):
    out = []
    for line in gzip.open(data_dir / "hftbacktest" / "hyperliquid" / "btcusd_20250126.gz", "rt"):
        recv, _, body = line.strip().partition(" ")
        msg = json.loads(body)
        if msg.get("channel") in ("l2Book", "trades"):
            out.append((int(recv), msg))
    return out


def _grid(states, step_ns=100_000_000):
    """The row at g: the last state with ts <= g, for g from the first state (rounded up) on."""
    out, g = [], -(-states[0][0] // step_ns) * step_ns
    while g <= states[-1][0]:
        out.append((g, [s for t, s in states if t <= g][-1]))
        g += step_ns
    return out


def test_hyperliquid_archive_real_frames_through_the_live_parser(store, data_dir, tmp_path):
    frames = _hl_frames(data_dir)
    text = "".join(json.dumps({"time": _iso(r), "ver_num": 1, "raw": m}) + "\n" for r, m in frames)
    path = tmp_path / "market_data" / "20250126" / "19" / "l2Book" / "BTC.lz4"
    path.parent.mkdir(parents=True)
    path.write_bytes(lz4.frame.compress(text.encode()))
    report = run(store, path)
    assert report.files[0].format == "hyperliquid-archive"
    trades = [(r, t) for r, m in frames if m["channel"] == "trades" for t in m["data"]]
    got = store["trades"].select(HL)
    exp = sorted(trades, key=lambda x: x[1]["time"])
    assert got["trade_id"].tolist() == [t["tid"] for _, t in exp]
    assert [int(x.value) for x in got["recv_ts"]] == [r for r, _ in exp]
    assert got["price"].tolist() == [float(t["px"]) for _, t in exp]
    assert got["side"].tolist() == [1 if t["side"] == "B" else -1 for _, t in exp]
    books = [(m["data"]["time"] * 1_000_000, m["data"]["levels"]) for _, m in frames if m["channel"] == "l2Book"]
    book = store["book"].select(HL)
    want = _grid(books)
    assert [t.value for t in book.index] == [g for g, _ in want]
    for (g, levels), (_, row) in zip(want, book.iterrows()):
        assert [row[f"bid_px_{i}"] for i in range(1, 6)] == [float(x["px"]) for x in levels[0][:5]]
        assert [row[f"ask_qty_{i}"] for i in range(1, 6)] == [float(x["sz"]) for x in levels[1][:5]]
    assert run(store, path).files[0].status == "skipped"


def test_hyperliquid_asset_ctxs(store, tmp_path):
    text = ("time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,mid_px,impact_bid_px,impact_ask_px\n"
            "2023-09-16T09:00:00Z,BTC,0.0000125,12345.6,26500,1.0e9,0.0001,26540.5,26541.0,26541.5,26540,26542\n"
            "2023-09-16T09:00:00Z,@107,,,,,,,1.5,,,\n"
            "2023-09-16T09:01:00Z,BTC,0.0000130,12346.0,26500,1.0e9,0.0001,26545.0,26546.0,26546.5,26545,26547\n")
    path = tmp_path / "asset_ctxs" / "20230916.csv.lz4"
    path.parent.mkdir(parents=True)
    path.write_bytes(lz4.frame.compress(text.encode()))
    run(store, path)
    mark = store["mark"].select(HL)
    assert mark[["mark_px", "index_px", "funding_rate"]].values.tolist() == [[26541.0, 26540.5, 0.0000125], [26546.0, 26545.0, 0.000013]]
    assert list(mark["next_funding_ts"]) == [pd.Timestamp("2023-09-16 10:00", tz="UTC")] * 2
    oi = store["open_interest"].select(HL)
    assert oi["oi_value"].tolist() == [12345.6 * 26541.0, 12346.0 * 26546.0]
    assert store["mark"].symbols() == [HL]  # the spot pair @107 is not stored


def _bybit_book_frames(data_dir, conn="BYBIT.ws.2", topic="orderbook.200.BTCUSDT"):
    raw = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed" / "BYBIT.jsonl.zst", "rb")).read()
    out = []
    for line in raw.decode().splitlines():
        o = json.loads(line)
        if o.get("t") == "recv" and o.get("conn") == conn and f'"{topic}"' in o["data"]:
            out.append(o["data"])
    return out


def _bybit_reference(frames, step_ns=100_000_000):
    """Independent parse of Bybit book frames: a snapshot replaces the book, a delta sets (0
    removes) levels, ts = the frame's ts (event time, the books' declared clock, as Binance's
    E; cts is the matching engine's). Book rows: grid row at g = the book after every frame
    with ts <= g, from the first snapshot's grid point to the last frame, exclusive (the
    point at or after it comes with the next file, through the book state). Quotes: the top
    at every frame that changes it, stamped with the frame's ts and u."""
    bids, asks, states, quotes, top = {}, {}, [], [], None
    for f in map(json.loads, frames):
        d = f["data"]
        if f["type"] == "snapshot":
            bids, asks = {}, {}
        for side, book in ((d["b"], bids), (d["a"], asks)):
            for p, q in side:
                if float(q) == 0:
                    book.pop(float(p), None)
                else:
                    book[float(p)] = float(q)
        t = f["ts"] * 1_000_000
        b5, a5 = sorted(bids.items(), reverse=True)[:5], sorted(asks.items())[:5]
        states.append((t, (b5, a5)))
        if (b5[0], a5[0]) != top:
            top = (b5[0], a5[0])
            quotes.append((t, d["u"], *b5[0], *a5[0]))
    grid, g = [], -(-states[0][0] // step_ns) * step_ns
    while g < states[-1][0]:
        grid.append((g, [s for t, s in states if t <= g][-1]))
        g += step_ns
    return grid, quotes


def _bybit_data_zip(tmp_path, frames, name="2026-08-09_BTCUSDT_ob200.data"):
    path = tmp_path / "orderbook" / "linear" / "BTCUSDT" / f"{name}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, "\n".join(frames) + "\n")
    return path


def test_bybit_orderbook_data_zip_real_frames(store, data_dir, tmp_path):
    frames = _bybit_book_frames(data_dir)
    run(store, _bybit_data_zip(tmp_path, frames))
    want, quotes = _bybit_reference(frames)
    got = store["book"].select("bybit:BTC/USDT:USDT")
    assert [t.value for t in got.index] == [g for g, _ in want]
    for (g, (b, a)), (_, row) in zip(want, got.iterrows()):
        assert [(row[f"bid_px_{i + 1}"], row[f"bid_qty_{i + 1}"]) for i in range(5)] == b
        assert [(row[f"ask_px_{i + 1}"], row[f"ask_qty_{i + 1}"]) for i in range(5)] == a
    assert (got["recv_ts"] >= got.index.min() - pd.Timedelta("1s")).all()  # recv = the frame's ts
    # quotes from the book, as live and replay (BookBuilder(quotes=True)): every change of the top
    q = store["quotes"].select("bybit:BTC/USDT:USDT")
    assert list(zip(q.index.asi8, q["update_id"], q["bid_px"], q["bid_qty"], q["ask_px"], q["ask_qty"])) == quotes


def _tables(store, symbol, tables):
    return {t: store[t].select(symbol) for t in tables if symbol in store[t].symbols()}


def test_imported_bybit_and_hyperliquid_frames_store_what_replay_stores(data_dir, tmp_path):
    """The same frames through ``tickstore import`` and through ``tickstore replay`` (a
    capture of them, receive time = what the archive says): equal tables, column for column."""
    from collectors.replay import replay
    from tickstore import Tickstore

    bybit = _bybit_book_frames(data_dir)
    hl = _hl_frames(data_dir)
    hl_archive = tmp_path / "market_data" / "20250126" / "19" / "l2Book" / "BTC.lz4"
    hl_archive.parent.mkdir(parents=True)
    hl_archive.write_bytes(lz4.frame.compress("".join(
        json.dumps({"time": _iso(r), "ver_num": 1, "raw": m}) + "\n" for r, m in hl).encode()))
    with gzip.open(tmp_path / "bybit.gz", "wt") as fh:  # hftbacktest capture: <recv ns> <frame>
        fh.writelines(f"{json.loads(f)['ts'] * 1_000_000} {f}\n" for f in bybit)
    with gzip.open(tmp_path / "hl.gz", "wt") as fh:
        fh.writelines(f"{r} {json.dumps(m)}\n" for r, m in hl)
    with Tickstore(tmp_path / "imported") as imp, Tickstore(tmp_path / "replayed") as rep:
        run(imp, _bybit_data_zip(tmp_path, bybit), hl_archive)
        replay([tmp_path / "bybit.gz"], store=rep, venue="bybit", market="linear")
        replay([tmp_path / "hl.gz"], store=rep, venue="hyperliquid")
        for symbol, tables in (("bybit:BTC/USDT:USDT", ("book", "quotes", "trades", "gaps")), (HL, ("book", "quotes", "trades", "gaps"))):
            a, b = _tables(imp, symbol, tables), _tables(rep, symbol, tables)
            assert a.keys() == b.keys() and "book" in a, (symbol, a.keys(), b.keys())
            for t in a:
                assert len(a[t]) > 0
                pd.testing.assert_frame_equal(a[t], b[t], check_exact=True, obj=f"{symbol} {t}")


def test_bybit_trade_csvs(store, tmp_path):
    linear = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional\n"
              "1704067200.0647,BTCUSDT,Buy,0.004,42300.1,PlusTick,a9188a0a-82bc-50de-be60-03eedbe3cdd7,1.69e+10,0.004,169.2004\n"
              "1704067200.5,BTCUSDT,Sell,0.1,42300.0,MinusTick,d9cd8295-40dc-5dce-8deb-42882580a7ab,4.23e+11,0.1,4230.0\n")
    run(store, write(tmp_path / "trading" / "BTCUSDT" / "BTCUSDT2024-01-01.csv.gz", linear, gz=True))
    got = store["trades"].select("bybit:BTC/USDT:USDT")
    from collectors.exchanges.bybit import trade_id

    assert [t.value for t in got.index] == [1704067200064700000, 1704067200500000000]  # exact, no float rounding
    assert got["trade_id"].tolist() == [trade_id("a9188a0a-82bc-50de-be60-03eedbe3cdd7"), trade_id("d9cd8295-40dc-5dce-8deb-42882580a7ab")]
    assert got["side"].tolist() == [1, -1] and got["qty"].tolist() == [0.004, 0.1]
    spot = "id,timestamp,price,volume,side\n2280000001739247417,1704067200123,42301.5,0.25,buy\n"
    with pytest.raises(Exception, match="--symbol"):
        run(store, write(tmp_path / "spot" / "x.csv.gz", spot, gz=True))
    run(store, write(tmp_path / "spot" / "BTCUSDT_2024-01-01.csv.gz", spot, gz=True), symbol="BTCUSDT")
    s = store["trades"].select("bybit:BTC/USDT")
    assert s["trade_id"].tolist() == [2280000001739247417] and s["qty"].tolist() == [0.25]


def _cassette_bodies(data_dir, name):
    cas = yaml.safe_load(open(data_dir / "hyperliquid-python-sdk" / name))
    out = {}
    for it in cas["interactions"]:
        body = orjson.loads(it["request"].get("body") or "{}")
        out[body.get("type")] = it["response"]["body"]["string"]
    return out


def test_hyperliquid_rest_cassettes(store, data_dir, tmp_path):
    fh = _cassette_bodies(data_dir, "test_get_funding_history[None].yaml")["fundingHistory"]
    run(store, write(tmp_path / "fundingHistory.json", fh))
    records = json.loads(fh)
    got = store["funding"].select(HL)
    assert len(got) == len(records) == 1038
    exp = {pd.Timestamp(r["time"], unit="ms", tz="UTC").round("h"): float(r["fundingRate"]) for r in records}
    assert dict(zip(got.index, got["rate"])) == exp
    # the venue's schedule, from the spacing: 8 h until 2023-06-08 00:00, hourly after
    assert (got["interval_h"] == 8.0).sum() == 82 and (got["interval_h"] == 1.0).sum() == 956
    assert got.loc["2023-06-08 00:00":"2023-06-08 01:00", "interval_h"].tolist() == [8.0, 1.0]
    candles = _cassette_bodies(data_dir, "test_get_candles_snapshot.yaml")["candleSnapshot"]
    run(store, write(tmp_path / "candles.json", candles))
    c = json.loads(candles)
    bars = store["ohlcv_1h"].select("hyperliquid:KPEPE/USDC:USDC")
    assert list(bars.index) == [pd.Timestamp(x["t"], unit="ms", tz="UTC") for x in c]
    assert bars[["open", "high", "low", "close", "volume"]].values.tolist() == [[float(x[k]) for k in "ohlcv"] for x in c]
    l2 = json.loads(_cassette_bodies(data_dir, "test_get_l2_snapshot.yaml")["l2Book"])
    _lone_and_polled_l2_bodies(store, tmp_path, l2)


def _lone_and_polled_l2_bodies(store, tmp_path, l2):
    sym = "hyperliquid:DYDX/USDC:USDC"
    t0 = l2["time"]
    lone = run(store, write(tmp_path / "l2.json", json.dumps(l2)))
    # a snapshot is the whole book at its time: one row there (its grid point, 100 ms on,
    # is not known yet: it comes with the next body, through the book state)
    assert lone.files[0].status == "imported" and lone.files[0].rows == {"book": 1}
    book = store["book"].select(sym)
    assert [t.value // 1_000_000 for t in book.index] == [t0]
    row = book.iloc[0]
    assert [row[f"bid_px_{i}"] for i in range(1, 6)] == [float(x["px"]) for x in l2["levels"][0][:5]]
    assert [row[f"ask_qty_{i}"] for i in range(1, 6)] == [float(x["sz"]) for x in l2["levels"][1][:5]]
    assert row["recv_ts"].value // 1_000_000 == t0
    later = dict(l2, time=t0 + 450, levels=[l2["levels"][0][1:], l2["levels"][1]])
    run(store, write(tmp_path / "l2s.jsonl", json.dumps(l2) + "\n" + json.dumps(later) + "\n"))
    book = store["book"].select(sym)
    g0 = -(-t0 // 100) * 100
    grid = list(range(g0, t0 + 450, 100))  # each the last body at or before it
    assert [t.value // 1_000_000 for t in book.index] == sorted({t0, t0 + 450, *grid})
    first_bid = [float(x["px"]) for x in l2["levels"][0]][:2]
    for t, r in book.iterrows():
        body = l2 if t.value // 1_000_000 < t0 + 450 else later
        assert [r["bid_px_1"], r["bid_px_2"]] == [float(x["px"]) for x in body["levels"][0][:2]]
    assert book["bid_px_1"].iat[0] == first_bid[0]


def test_lone_l2_snapshot_of_the_sdk_cassette_is_a_book_row(store, data_dir, tmp_path):
    """The Hyperliquid SDK's recorded l2Book answer imported from the cassette itself."""
    l2 = json.loads(_cassette_bodies(data_dir, "test_get_l2_snapshot.yaml")["l2Book"])
    report = run(store, data_dir / "hyperliquid-python-sdk" / "test_get_l2_snapshot.yaml")
    assert report.files[0].rows.get("book") == 1
    book = store["book"].select("hyperliquid:DYDX/USDC:USDC")
    assert [t.value // 1_000_000 for t in book.index] == [l2["time"]]
    assert book["ask_px_1"].iat[0] == float(l2["levels"][1][0]["px"])


def test_binance_rest_bodies(store, tmp_path):
    trades = [{"id": 28457, "price": "4.00000100", "qty": "12.00000000", "quoteQty": "48.000012", "time": 1499865549590,
               "isBuyerMaker": True, "isBestMatch": True}]
    run(store, write(tmp_path / "BTCUSDT_trades.json", json.dumps(trades)))
    t = store["trades"].select("binance:BTC/USDT")  # isBestMatch: spot
    assert t[["trade_id", "price", "qty", "side"]].values.tolist() == [[28457, 4.000001, 12.0, -1]]
    klines = [[1499040000000, "0.01634790", "0.80000000", "0.01575800", "0.01577100", "148976.11427815", 1499644799999,
               "2434.19055334", 308, "1756.87402397", "28.46694368", "0"],
              [1499644800000, "0.01577100", "0.6", "0.015", "0.016", "1000.0", 1500249599999, "20", 10, "5", "1", "0"]]
    run(store, write(tmp_path / "BTCUSDT-1w.json", json.dumps(klines)), market="usdm")
    bars = store["ohlcv_7d"].select("binance:BTC/USDT:USDT")
    assert bars["high"].tolist() == [0.8, 0.6] and bars.index[0] == pd.Timestamp(1499040000000, unit="ms", tz="UTC")
    funding = [{"symbol": "BTCUSDT", "fundingTime": 1698768000000, "fundingRate": "0.00010000", "markPrice": "34287.5"},
               {"symbol": "BTCUSDT", "fundingTime": 1698796800003, "fundingRate": "0.00007500", "markPrice": "34300.1"}]
    run(store, write(tmp_path / "funding.json", json.dumps(funding)))
    f = store["funding"].select("binance:BTC/USDT:USDT")
    assert f["rate"].tolist() == [0.0001, 0.000075] and f.index[1] == pd.Timestamp("2023-11-01 00:00", tz="UTC")  # stamped 3 ms late: snapped
    depth = [{"lastUpdateId": 1027024 + i, "E": 1589436922900 + 130 * i, "T": 1589436922890 + 130 * i,
              "bids": [["4.00000000", str(431 + i)]], "asks": [["4.00000200", "12.00000000"]]} for i in range(3)]
    run(store, write(tmp_path / "BTCUSDT_depth.jsonl", "\n".join(map(json.dumps, depth)) + "\n"))
    book = store["book"].select("binance:BTC/USDT:USDT")
    # a row at each body's E, and grid rows between the polled bodies (100 ms grid, each row
    # the last body at or before it; the body at ...900 is on the grid: one row)
    assert [t.value // 1_000_000 for t in book.index] == [1589436922900, 1589436923000, 1589436923030, 1589436923100,
                                                          1589436923160]
    assert book["bid_qty_1"].tolist() == [431.0, 431.0, 432.0, 432.0, 433.0]
    with pytest.raises(Exception, match="spot /depth answers carry no time"):
        run(store, write(tmp_path / "s.json", json.dumps({"lastUpdateId": 1, "bids": [], "asks": []})), market="spot")


def test_binance_agg_trades_go_to_agg_trades(store, tmp_path):
    from tickstore.errors import UnknownTableError
    from tickstore.schemas import builtin_schema

    try:
        builtin_schema("agg_trades")
    except UnknownTableError:
        pytest.skip("the agg_trades table lands with issue 11")
    body = [{"a": 26129, "p": "0.01633102", "q": "4.70443515", "f": 27781, "l": 27782, "T": 1498793709153, "m": True, "M": True}]
    run(store, write(tmp_path / "BTCUSDT_aggTrades.json", json.dumps(body)))
    got = store["agg_trades"].select("binance:BTC/USDT")
    assert got[["agg_id", "first_trade_id", "last_trade_id", "side"]].values.tolist() == [[26129, 27781, 27782, -1]]
    csv_text = "26129,0.01633102,4.70443515,27781,27782,1498793709153,True,True\n"
    run(store, write(tmp_path / "data/spot/daily/aggTrades/ETHUSDT/ETHUSDT-aggTrades-2017-06-30.csv", csv_text))
    assert store["agg_trades"].select("binance:ETH/USDT")["qty"].tolist() == [4.70443515]


def test_a_vcrpy_cassette_is_read_as_its_response_bodies(store, data_dir):
    # the cassette also holds a `meta` call no format stores: that part is left out
    report = run(store, data_dir / "hyperliquid-python-sdk" / "test_get_funding_history[None].yaml")
    assert report.files[0].kind == "fundingHistory" and report.rows == {"funding": 1038}
