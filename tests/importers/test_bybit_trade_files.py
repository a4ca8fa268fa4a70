"""Bybit's public trade history files as they are published.

Sources: the file listings https://public.bybit.com/trading/ (derivatives:
``<SYMBOL>/<SYMBOL><YYYY-MM-DD>.csv.gz``, header ``timestamp,symbol,side,size,price,
tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional`` with ``RPI`` appended in
2025; timestamp in epoch seconds with a fraction, e.g. ``1756771201.5983``; the folder also
holds inverse ``BTCUSD`` and dated ``BTC-14MAR25`` contracts) and https://public.bybit.com/spot/
(``<SYMBOL>/<SYMBOL>_<YYYY-MM-DD>.csv.gz``, header ``id,timestamp,price,volume,side,rpi``,
timestamp in epoch ms, side ``buy``/``sell``; monthly files ``<SYMBOL>_<YYYY-MM>.csv.gz``
name five columns and carry six). Trade ids and sides as the v5 public trade stream
(https://bybit-exchange.github.io/docs/v5/websocket/public/trade: ``i`` trade id, ``S`` taker
side, ``RPI`` flag), so live and imported prints meet on the same key.
"""

from __future__ import annotations

import csv
import io

import pytest

from collectors.exchanges.bybit import trade_id
from collectors.importers import MalformedInput, MissingOption
from tests.importers.helpers import run, write

LINEAR = ("timestamp,symbol,side,size,price,tickDirection,trdMatchID,grossValue,homeNotional,foreignNotional,RPI\n"
          "1756771201.5983,ATOMUSDT,Buy,0.1,4.393,PlusTick,5e580a5e-b412-5c7b-bb94-edef31ee0d0c,4.393e+07,0.1,0.4393,0\n"
          "1756771201.6,ATOMUSDT,Sell,12.5,4.392,MinusTick,0f4a3b89-27c4-5a8e-9c1d-3e2f1a0b9c8d,5.49e+09,12.5,54.9,1\n"
          "1756771202,ATOMUSDT,Sell,1,4.392,ZeroMinusTick,26bb8b97-1991-503f-b2c2-f4e8d0b94721,4.392e+08,1,4.392,0\n")


def _ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    return int(whole) * 10**9 + int((frac + "000000000")[:9])


def test_linear_trades_with_the_rpi_column(store, tmp_path):
    report = run(store, write(tmp_path / "trading/ATOMUSDT/ATOMUSDT2025-09-02.csv.gz", LINEAR, gz=True))
    assert report.files[0].symbols == ("bybit:ATOM/USDT:USDT",)
    rows = list(csv.DictReader(io.StringIO(LINEAR)))
    got = store["trades"].select("bybit:ATOM/USDT:USDT")
    assert [t.value for t in got.index] == [_ns(r["timestamp"]) for r in rows]  # to the digit
    assert got["trade_id"].tolist() == [trade_id(r["trdMatchID"]) for r in rows]  # folded as the live parser folds i
    assert got["side"].tolist() == [1 if r["side"] == "Buy" else -1 for r in rows]
    assert got["qty"].tolist() == [float(r["size"]) for r in rows]
    assert got["price"].tolist() == [float(r["price"]) for r in rows]
    assert got["kind"].tolist() == [0, 0, 0]  # RPI prints are order-book prints (MARKET), as live
    assert list(got["recv_ts"]) == list(got.index)


SPOT_DAY = "id,timestamp,price,volume,side,rpi\n1,1747612800074,106453.8,0.003718,sell,0\n2,1747612800150,106456.9,0.000500,buy,0\n3,1747612800150,106456.9,0.000500,buy,1\n"
SPOT_MONTH = "id,timestamp,price,volume,side\n1,1752224400000,46.00,1.0,buy,0\n2,1752224460000,47.00,2.0,sell,0\n"


def test_spot_trades_daily_and_monthly_symbol_from_the_name(store, tmp_path):
    run(store, write(tmp_path / "spot/BTCUSDT/BTCUSDT_2025-05-19.csv.gz", SPOT_DAY, gz=True))
    got = store["trades"].select("bybit:BTC/USDT")
    rows = list(csv.DictReader(io.StringIO(SPOT_DAY)))
    assert [t.value for t in got.index] == [int(r["timestamp"]) * 10**6 for r in rows]
    assert got["trade_id"].tolist() == [1, 2, 3]  # identical prints in one ms stay distinct rows
    assert got["side"].tolist() == [-1, 1, 1] and got["qty"].tolist() == [0.003718, 0.0005, 0.0005]
    # a monthly file's header names five columns, its rows carry six: nothing shifts
    run(store, write(tmp_path / "spot/SOLUSDT/SOLUSDT_2025-07.csv.gz", SPOT_MONTH, gz=True))
    sol = store["trades"].select("bybit:SOL/USDT")
    assert sol["price"].tolist() == [46.0, 47.0] and sol["qty"].tolist() == [1.0, 2.0]
    assert [t.value for t in sol.index] == [1752224400000 * 10**6, 1752224460000 * 10**6]


def test_every_contract_named_as_ccxt_names_it_or_asked_for(store, tmp_path):
    # the derivatives folder holds linear, inverse and dated contracts: named by the project's
    # one mapping (collectors.symbols wire rules, ccxt's symbols), never by a guess
    for native, sym in (("BTCUSD", "bybit:BTC/USD:BTC"),                # inverse perpetual (1 contract = 1 USD)
                        ("BTCPERP", "bybit:BTC/USDC:USDC"),            # USDC perpetual
                        ("BTC-14MAR25", "bybit:BTC/USDC:USDC-250314")):  # USDC future
        run(store, write(tmp_path / f"trading/{native}/{native}2025-03-01.csv.gz", LINEAR.replace("ATOMUSDT", native), gz=True))
        got = store["trades"].select(sym)
        assert got["qty"].tolist() == [0.1, 12.5, 1.0] and got["trade_id"].tolist() == [trade_id(r["trdMatchID"]) for r in
                                                                                      csv.DictReader(io.StringIO(LINEAR))]
    # an inverse future's delivery date is not in its id: asked for, nothing written
    path = write(tmp_path / "trading/BTCUSDZ24/BTCUSDZ242024-12-01.csv.gz", LINEAR.replace("ATOMUSDT", "BTCUSDZ24"), gz=True)
    before = sorted(store["trades"].symbols())
    with pytest.raises(MissingOption, match="pass --symbol"):
        run(store, path)
    assert sorted(store["trades"].symbols()) == before
    run(store, path, symbol="bybit:BTC/USD:BTC-241227")
    assert len(store["trades"].select("bybit:BTC/USD:BTC-241227")) == 3


def test_a_malformed_trade_names_file_and_line(store, tmp_path):
    bad = LINEAR.replace("1756771201.6,", "17567712O1.6,")
    path = write(tmp_path / "trading/ATOMUSDT/ATOMUSDT2025-09-02.csv.gz", bad, gz=True)
    with pytest.raises(MalformedInput, match=r"ATOMUSDT2025-09-02.csv.gz, line 3: timestamp '17567712O1.6'"):
        run(store, path)
    assert store.tables() == []


def test_an_inverse_order_book_file_goes_through_the_inverse_parser(store, tmp_path):
    # quote-saver.bycsi.com/orderbook/inverse/BTCUSD/<day>_BTCUSD_ob500.data.zip: v5 frames of an inverse contract
    import zipfile

    frame = ('{"topic":"orderbook.500.BTCUSD","type":"snapshot","ts":1735689600000,"data":{"s":"BTCUSD",'
             '"b":[["100","1"]],"a":[["101","1"]],"u":1,"seq":2},"cts":1735689600000}\n'
             '{"topic":"orderbook.500.BTCUSD","type":"delta","ts":1735689600250,"data":{"s":"BTCUSD",'
             '"b":[["100","3"]],"a":[],"u":2,"seq":3},"cts":1735689600250}\n')
    path = tmp_path / "orderbook/inverse/BTCUSD/2025-01-01_BTCUSD_ob500.data.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("2025-01-01_BTCUSD_ob500.data", frame)
    report = run(store, path)
    assert report.files[0].symbols == ("bybit:BTC/USD:BTC",)  # never bybit:BTC/USD:USD
    book = store["book"].select("bybit:BTC/USD:BTC")
    # grid rows from the snapshot's point to the last frame (exclusive): t0, t0+100ms, t0+200ms
    assert [t.value for t in book.index] == [1735689600000_000_000 + i * 100_000_000 for i in range(3)]
    assert book[["bid_px_1", "bid_qty_1", "ask_px_1", "ask_qty_1"]].values.tolist() == [[100.0, 1.0, 101.0, 1.0]] * 3
