"""Binance's public archive as documented and as the files are in the wild.

Sources (each test writes small files in these shapes and compares the stored rows with an
independent parse written here):

- README of https://github.com/binance/binance-public-data: column titles of spot, USD-M and
  COIN-M trades (COIN-M: ``baseQty``), aggTrades and klines (COIN-M klines: "Base asset
  volume", "Taker buy base asset volume"); "The timestamp for SPOT Data from January 1st
  2025 onwards will be in microseconds" (examples ``1735689600010866``, kline open/close
  ``1735689600000000``/``1735693199999999``); intervals ``1s`` ... ``1mo``; "Each zip file
  has a .CHECKSUM file together in the same folder" (``sha256sum -c <zip>.CHECKSUM``).
- binance-public-data issues #246/#278 (futures files gained a header row in 2022),
  #283 (COIN-M kline header row ``...,quote_volume,count,taker_buy_volume,
  taker_buy_quote_volume,ignore``), #267 (those columns hold base-asset volumes),
  #288/#339 (monthly futures files with rows of different days interleaved).
- https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api/Mark-Price-Kline-Candlestick-Data
  (mark/index/premium klines: volumes "0", the count the number of basic data).
"""

from __future__ import annotations

import csv
import hashlib
import io

import numpy as np
import pandas as pd
import pytest

from collectors.importers import DataImportError, MalformedInput, MissingOption
from tests.importers.helpers import run, write, write_zip

PERP = "binance:BTC/USDT:USDT"
COINM = "binance:BTC/USD:BTC"


def _rows(text: str) -> list[list[str]]:
    return [r for r in csv.reader(io.StringIO(text)) if r and r[0][:1].isdigit()]


def _epoch_ns(v: str) -> int:
    """Independent unit rule: ms before 2025 (13 digits), us after (16 digits)."""
    return int(v) * (1_000 if len(v) == 16 else 1_000_000)


# README example rows, continued across 2024-12-31 -> 2025-01-01 (ms -> us)
SPOT_AGG_DEC = ("3372401000,93576.00000000,0.00106000,4289710000,4289710000,1735689599990,True,True\n"
                "3372401001,93576.01000000,0.05000000,4289710001,4289710003,1735689599998,False,True\n")
SPOT_AGG_JAN = ("3372401002,93576.01000000,0.20000000,4289710004,4289710004,1735689600010866,False,True\n"
                "3372401003,93575.99000000,0.00010000,4289710005,4289710009,1735689600117034,True,True\n")


def test_spot_agg_trades_switch_from_ms_to_us_on_2025_01_01(store, tmp_path):
    base = tmp_path / "data/spot/daily/aggTrades/BTCUSDT"
    run(store, write_zip(base / "BTCUSDT-aggTrades-2024-12-31.zip", "BTCUSDT-aggTrades-2024-12-31.csv", SPOT_AGG_DEC),
        write_zip(base / "BTCUSDT-aggTrades-2025-01-01.zip", "BTCUSDT-aggTrades-2025-01-01.csv", SPOT_AGG_JAN))
    got = store["agg_trades"].select("binance:BTC/USDT")
    rows = _rows(SPOT_AGG_DEC + SPOT_AGG_JAN)
    assert [t.value for t in got.index] == [_epoch_ns(r[5]) for r in rows]
    assert got.index[1] < pd.Timestamp("2025-01-01", tz="UTC") <= got.index[2]  # each lands on its own day
    assert got["agg_id"].tolist() == [int(r[0]) for r in rows]
    assert got["first_trade_id"].tolist() == [int(r[3]) for r in rows]
    assert got["last_trade_id"].tolist() == [int(r[4]) for r in rows]
    assert got["side"].tolist() == [-1 if r[6] == "True" else 1 for r in rows]  # spot writes True/False
    assert got["qty"].tolist() == [float(r[2]) for r in rows]


SPOT_1S = ("1735689600000000,93576.00,93576.01,93575.99,93576.01,1.25,1735689600999999,116970.0,12,0.5,46788.0,0\n"
           "1735689601000000,93576.01,93576.02,93576.00,93576.00,0.75,1735689601999999,70182.0,7,0.25,23394.0,0\n")


def test_spot_one_second_klines_in_microseconds(store, tmp_path):
    run(store, write(tmp_path / "data/spot/daily/klines/BTCUSDT/1s/BTCUSDT-1s-2025-01-01.csv", SPOT_1S))
    got = store["ohlcv_1s"].select("binance:BTC/USDT")
    rows = _rows(SPOT_1S)
    assert [t.value for t in got.index] == [int(r[0]) * 1_000 for r in rows]
    assert got.values.tolist() == [[float(x) for x in r[1:6]] for r in rows]


COINM_TRADES = ("id,price,qty,base_qty,time,is_buyer_maker\n"
                "283761526,61830.1,12,0.01940803,1723161257011,true\n"
                "283761527,61830.2,1,0.00161733,1723161257450,false\n")
COINM_KLINES_1MO = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"
    "1722470400000,64660.1,70079.0,49000.0,58991.3,62931845,1725148799999,1067102.95,3214567,31002371,525714.38,0\n")


def test_coinm_trades_and_klines_keep_their_units(store, tmp_path):
    from tickstore.schemas import Column, Partition, Schema

    run(store, write_zip(tmp_path / "data/futures/cm/daily/trades/BTCUSD_PERP/BTCUSD_PERP-trades-2024-08-09.zip",
                         "BTCUSD_PERP-trades-2024-08-09.csv", COINM_TRADES))
    got = store["trades"].select(COINM)
    rows = _rows(COINM_TRADES)
    assert got["trade_id"].tolist() == [int(r[0]) for r in rows]
    assert got["qty"].tolist() == [12.0, 1.0]  # contracts (qty), not base_qty: as the live dstream trade 'q'
    assert [t.value for t in got.index] == [_epoch_ns(r[4]) for r in rows]
    assert got["side"].tolist() == [-1, 1]
    # the header row says quote_volume, the README says base asset volume: stored under that name
    cols = ("open", "high", "low", "close", "volume", "base_volume", "count", "taker_buy_volume", "taker_buy_base_volume")
    store.create_table("ohlcv_1mo", Schema("ohlcv_1mo", tuple(Column(c, "int64" if c == "count" else "float64") for c in cols),
                                           key=("ts",), partition=Partition.YEAR))
    run(store, write_zip(tmp_path / "data/futures/cm/monthly/klines/BTCUSD_PERP/1mo/BTCUSD_PERP-1mo-2024-08.zip",
                         "BTCUSD_PERP-1mo-2024-08.csv", COINM_KLINES_1MO))
    bar = store["ohlcv_1mo"].select(COINM)
    r = _rows(COINM_KLINES_1MO)[0]
    assert bar.index[0] == pd.Timestamp(int(r[0]), unit="ms", tz="UTC")
    assert bar[list(cols)].iloc[0].tolist() == [float(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]),
                                                float(r[7]), int(r[8]), float(r[9]), float(r[10])]


MARK_1M = ("1704067200000,42314.52,42350.11,42301.00,42340.63,0,1704067259999,0,60,0,0,0\n"
           "1704067260000,42340.63,42362.80,42330.48,42355.20,0,1704067319999,0,60,0,0,0\n")


def test_price_klines_go_to_their_tables_or_are_refused(store, tmp_path):
    # in the archive's folders: the folder says which price
    run(store, write(tmp_path / "data/futures/um/daily/markPriceKlines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv", MARK_1M))
    got = store["mark_ohlcv_1m"].select(PERP)
    assert got["close"].tolist() == [float(r[4]) for r in _rows(MARK_1M)]
    # the same file taken out of its folder looks like trade bars: never stored as such
    loose = write(tmp_path / "loose" / "BTCUSDT-1m-2024-01-01.csv", MARK_1M)
    with pytest.raises(MissingOption, match="--kind markPriceKlines, indexPriceKlines or premiumIndexKlines"):
        run(store, loose, market="usdm")
    assert "ohlcv_1m" not in store.tables()
    run(store, loose, market="usdm", kind="indexPriceKlines")
    assert store["index_ohlcv_1m"].select(PERP)["open"].tolist() == [float(r[1]) for r in _rows(MARK_1M)]


UM_AGG_MONTH = ("agg_trade_id,price,quantity,first_trade_id,last_trade_id,transact_time,is_buyer_maker\n"
                "1715206948,29223.0,0.639,3643221425,3643221428,1682899200101,false\n"
                "1750606761,27540.0,0.785,3764656132,3764656133,1685463466083,true\n"
                "1715206949,29223.2,0.343,3643221429,3643221430,1682899200129,false\n")


def test_interleaved_monthly_file_lands_sorted_on_its_days(store, tmp_path):
    # issue #339: rows of 2023-05-01 and 2023-05-30 interleaved in BTCUSDT-aggTrades-2023-05.zip
    run(store, write_zip(tmp_path / "data/futures/um/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2023-05.zip",
                         "BTCUSDT-aggTrades-2023-05.csv", UM_AGG_MONTH))
    rows = sorted(_rows(UM_AGG_MONTH), key=lambda r: int(r[5]))
    got = store["agg_trades"].select(PERP)
    assert got["agg_id"].tolist() == [int(r[0]) for r in rows]
    assert [t.value for t in got.index] == [_epoch_ns(r[5]) for r in rows]
    days = store["agg_trades"].index(PERP).index.get_level_values("date")
    assert sorted({d.strftime("%Y-%m-%d") for d in days}) == ["2023-05-01", "2023-05-30"]


def test_a_column_appended_later_is_ignored_not_shifted(store, tmp_path):
    text = ("id,price,qty,quote_qty,time,is_buyer_maker,some_new_flag\n"
            "5266583935,61800.30,0.006,370.8018,1723161256322,false,1\n")
    run(store, write(tmp_path / "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.csv", text))
    got = store["trades"].select(PERP)
    assert got[["trade_id", "price", "qty", "side"]].values.tolist() == [[5266583935, 61800.3, 0.006, 1]]


def _checksum(path) -> None:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")


def test_checksum_files_are_verified_never_imported(store, tmp_path):
    folder = tmp_path / "data/futures/um/daily/trades/BTCUSDT"
    text = "id,price,qty,quote_qty,time,is_buyer_maker\n5266583935,61800.30,0.006,370.8018,1723161256322,false\n"
    z = write_zip(folder / "BTCUSDT-trades-2024-08-08.zip", "BTCUSDT-trades-2024-08-08.csv", text)
    _checksum(z)
    report = run(store, tmp_path / "data")  # the folder as downloaded with -c 1
    assert [f.path for f in report.files] == [str(z)]
    assert store["trades"].select(PERP)["trade_id"].tolist() == [5266583935]
    # a zip whose bytes no longer match its CHECKSUM (a cut download) is refused, nothing written
    z2 = write_zip(folder / "BTCUSDT-trades-2024-08-09.zip", "BTCUSDT-trades-2024-08-09.csv",
                   text.replace("1723161256322", "1723247656322"))
    _checksum(z2)
    z2.write_bytes(z2.read_bytes()[:-10])
    before = store["trades"].index(PERP)
    with pytest.raises(DataImportError, match=r"BTCUSDT-trades-2024-08-09.zip: sha256 [0-9a-f]{64} differs"):
        run(store, folder)
    pd.testing.assert_frame_equal(store["trades"].index(PERP), before)
    with pytest.raises(DataImportError, match="only .CHECKSUM files"):
        run(store, folder / "BTCUSDT-trades-2024-08-08.zip.CHECKSUM")


def test_a_bad_value_names_the_zip_member_and_line(store, tmp_path):
    text = "id,price,qty,quote_qty,time,is_buyer_maker\n1,61800.30,0.006,370.8,1723161256322,false\n2,61800.30,x,370.8,1723161256323,true\n"
    z = write_zip(tmp_path / "data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-08-08.zip", "BTCUSDT-trades-2024-08-08.csv", text)
    with pytest.raises(MalformedInput, match=r"BTCUSDT-trades-2024-08-08.zip:BTCUSDT-trades-2024-08-08.csv, line 3: qty 'x'"):
        run(store, z)
    assert store.tables() == []


@pytest.mark.parametrize("values,want", [
    ([1704067200], [1704067200_000_000_000]),                      # s
    ([1704067200123], [1704067200_123_000_000]),                   # ms
    ([1735689600010866], [1735689600_010_866_000]),                # us (spot from 2025)
    ([1735689600010866123], [1735689600_010_866_123]),             # ns
    ([1704067200123, 1735689600010866], [1704067200_123_000_000, 1735689600_010_866_000]),  # mixed, per value
    (np.array([1585180700.0647]), [1585180700_064_700_000]),       # float seconds with a fraction
])
def test_epoch_units_read_per_value(values, want):
    from collectors.importers.core import epoch_to_ns

    got = epoch_to_ns(np.asarray(values))
    assert [abs(int(g) - w) <= 256 for g, w in zip(got, want)] == [True] * len(want)  # float64: 256 ns at most
    if np.asarray(values).dtype.kind == "i":
        assert got.tolist() == want  # integers are exact
    with pytest.raises(MalformedInput, match="not an epoch time after 2001"):
        epoch_to_ns(np.array([20240101]))


KLINE_HEADER = "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore\n"


def test_price_klines_with_the_futures_header_row_follow_their_folder(store, tmp_path):
    # since 2022 futures kline files carry the same header row whatever price they are of:
    # the folder (premiumIndexKlines, indexPriceKlines, markPriceKlines) decides the table
    run(store, write(tmp_path / "data/futures/um/daily/premiumIndexKlines/BTCUSDT/1m/BTCUSDT-1m-2024-01-01.csv",
                     KLINE_HEADER + MARK_1M))
    assert store["premium_ohlcv_1m"].select(PERP)["open"].tolist() == [float(r[1]) for r in _rows(MARK_1M)]
    assert "ohlcv_1m" not in store.tables()
    # COIN-M index klines are per pair (BTCUSD), shared by every contract of it: the store asks which
    cm = write(tmp_path / "data/futures/cm/daily/indexPriceKlines/BTCUSD/1m/BTCUSD-1m-2024-01-01.csv", KLINE_HEADER + MARK_1M)
    with pytest.raises(MissingOption, match="'BTCUSD' is a COIN-M pair, not a contract"):
        run(store, cm)
    run(store, cm, symbol=COINM)
    assert store["index_ohlcv_1m"].select(COINM)["close"].tolist() == [float(r[4]) for r in _rows(MARK_1M)]
