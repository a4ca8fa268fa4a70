"""Hyperliquid's daily asset contexts (``s3://hyperliquid-archive/asset_ctxs/<YYYYMMDD>.csv.lz4``).

Source: https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data (lz4 frames; header
``time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,mid_px,
impact_bid_px,impact_ask_px``) and the field meanings of the info endpoint's asset contexts
(https://hyperliquid.gitbook.io/hyperliquid-docs/for-developers/api/info-endpoint/perpetuals:
funding, openInterest, oraclePx, markPx, midPx/impactPxs that can be null). In files seen in
the wild ``time`` is written ``2025-01-01T00:00:00Z`` or ``2025-10-24 20:00:00.000``, thin
coins leave ``premium``/``mid_px``/``impact_*`` empty or ``null``, and rows of spot pairs
(``@107``, ``PURR/USDC``) and of other dexes' perpetuals (``xyz:TSLA``) appear.
"""

from __future__ import annotations

import csv
import io
import json

import lz4.frame
import pandas as pd
import pytest

from tests.importers.helpers import run

CTX = """time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,mark_px,mid_px,impact_bid_px,impact_ask_px
2025-10-24 20:00:00.000,BTC,0.0000125,23456.7,110000.0,2.1e9,0.0002,111000.0,111010.0,111009.5,111005.0,111015.0
2025-10-24 20:00:00.000,kPEPE,-0.0000031,9.1e9,0.0091,1.2e6,null,0.00912,0.00911,null,,
2025-10-24 20:00:00.000,@107,0.0,0.0,38.0,1.0,,38.1,38.1,38.1,38.0,38.2
2025-10-24 20:00:00.000,PURR/USDC,0.0,0.0,0.2,1.0,,0.21,0.21,0.21,0.2,0.22
2025-10-24 20:00:00.000,xyz:TSLA,-0.0002,200,2,2000,-0.01,2.1,2.2,2.3,2.29,2.31
2025-10-24T20:01:00Z,BTC,0.0000130,23460.0,110000.0,2.1e9,0.0002,111020.0,111030.0,111029.5,111025.0,111035.0
"""


def test_asset_ctxs_as_found_in_the_archive(store, tmp_path):
    path = tmp_path / "asset_ctxs" / "20251024.csv.lz4"
    path.parent.mkdir(parents=True)
    path.write_bytes(lz4.frame.compress(CTX.encode()))
    report = run(store, path)
    assert report.files[0].symbols == ("hyperliquid:BTC/USDC:USDC", "hyperliquid:KPEPE/USDC:USDC")
    rows = list(csv.DictReader(io.StringIO(CTX)))
    for coin, sym in (("BTC", "hyperliquid:BTC/USDC:USDC"), ("kPEPE", "hyperliquid:KPEPE/USDC:USDC")):
        want = [r for r in rows if r["coin"] == coin]
        ts = [pd.Timestamp(r["time"].replace(" ", "T")).tz_localize(None).tz_localize("UTC") for r in want]
        mark = store["mark"].select(sym)
        assert list(mark.index) == ts
        assert mark["mark_px"].tolist() == [float(r["mark_px"]) for r in want]
        assert mark["index_px"].tolist() == [float(r["oracle_px"]) for r in want]  # the oracle, as live
        assert mark["funding_rate"].tolist() == [float(r["funding"]) for r in want]
        assert list(mark["next_funding_ts"]) == [t.floor("h") + pd.Timedelta("1h") for t in ts]
        oi = store["open_interest"].select(sym)
        assert oi["oi"].tolist() == [float(r["open_interest"]) for r in want]
        assert oi["oi_value"].tolist() == [float(r["open_interest"]) * float(r["mark_px"]) for r in want]
    assert set(store["mark"].symbols()) == {"hyperliquid:BTC/USDC:USDC", "hyperliquid:KPEPE/USDC:USDC"}


# -- the nodes' fills (s3://hl-mainnet-node-data; https://github.com/hyperliquid-dex/node README:
# node_fills/hourly/<date>/<hour>, one [user, fill] per line; node_fills_by_block since
# 2025-07-27, {"block_time", "events": [[user, fill], ...]}; fill fields as the info
# endpoint's userFills: coin, px, sz, side B/A, time ms, crossed (the taker), tid, liquidation)
def _fill(user, coin, side, crossed, tid, t=1761336000021, px="111000.0", sz="0.01", **extra):
    return [user, {"coin": coin, "px": px, "sz": sz, "side": side, "time": t, "startPosition": "0.0", "dir": "Open Long",
                   "closedPnl": "0.0", "hash": "0xabc", "oid": 7, "crossed": crossed, "fee": "0.01", "tid": tid,
                   "feeToken": "USDC", **extra}]


FILLS = [
    _fill("0x1", "BTC", "B", False, 900001), _fill("0x2", "BTC", "A", True, 900001),            # seller took: -1
    _fill("0x3", "BTC", "B", True, 900002, t=1761336000500, px="111001.0"),                     # buyer took: +1
    _fill("0x4", "BTC", "A", False, 900002, t=1761336000500, px="111001.0"),
    _fill("0x5", "BTC", "A", False, 900003, t=1761336000900, liquidation={"liquidatedUser": "0x6", "markPx": "110990.0", "method": "market"}),
    _fill("0x7", "@107", "B", True, 900004), _fill("0x8", "xyz:TSLA", "B", True, 900005),       # not stored
]


def _lz4(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress(("\n".join(json.dumps(x) for x in lines) + "\n").encode()))
    return path


def test_node_fills_one_trade_per_tid_with_the_takers_side(store, tmp_path):
    run(store, _lz4(tmp_path / "node_fills/hourly/20251024/20.lz4", FILLS))
    got = store["trades"].select("hyperliquid:BTC/USDC:USDC")
    assert got["trade_id"].tolist() == [900001, 900002, 900003]
    assert got["side"].tolist() == [-1, 1, 1]  # 900003: only the maker's fill (A) is in the file: the taker bought
    assert got["kind"].tolist() == [0, 0, 1]   # the fill says liquidation: LIQUIDATION
    assert [t.value for t in got.index] == [1761336000021_000_000, 1761336000500_000_000, 1761336000900_000_000]
    assert got["price"].tolist() == [111000.0, 111001.0, 111000.0] and got["qty"].tolist() == [0.01] * 3
    assert store["trades"].symbols() == ["hyperliquid:BTC/USDC:USDC"]
    # the same fills written by block (the format since 2025-07-27): the same rows, nothing new
    blocks = [{"local_time": "2025-10-24T20:00:00.1", "block_time": "2025-10-24T20:00:00.021156698", "block_number": 1,
               "events": []},
              {"local_time": "2025-10-24T20:00:00.2", "block_time": "2025-10-24T20:00:00.021156698", "block_number": 2,
               "events": FILLS}]
    report = run(store, _lz4(tmp_path / "node_fills_by_block/hourly/20251024/20.lz4", blocks))
    assert report.files[0].kind == "node_fills_by_block" and report.files[0].rows == {"trades": 0}


def test_node_trades_are_refused_with_the_reason(store, tmp_path):
    line = {"coin": "ZK", "side": "B", "time": "2024-09-19T10:00:02.015", "px": "0.12398", "sz": "158.0", "hash": "0x47c0",
            "trade_dir_override": "Na", "side_info": [{"user": "0xc6", "start_pos": "1.0", "oid": 1, "twap_id": None, "cloid": None},
                                                      {"user": "0x76", "start_pos": "-2.0", "oid": 2, "twap_id": None, "cloid": None}]}
    from collectors.importers import DataImportError

    with pytest.raises(DataImportError, match="node_trades file carries no trade id"):
        run(store, _lz4(tmp_path / "node_trades/hourly/20240919/10.lz4", [line, dict(line, side="A")]))


def test_a_spot_pairs_l2book_archive_is_refused(store, tmp_path):
    # market_data/<date>/<hour>/l2Book/<coin>.lz4 lines {"time": ..., "ver_num": 1, "raw": <ws frame>}
    frame = {"time": "2025-03-11T09:00:03.296545473", "ver_num": 1,
             "raw": {"channel": "l2Book", "data": {"coin": "@107", "time": 1741683599768,
                                                   "levels": [[{"px": "38.1", "sz": "1.0", "n": 1}], [{"px": "38.2", "sz": "2.0", "n": 1}]]}}}
    from collectors.importers import DataImportError

    with pytest.raises(DataImportError, match="'@107' is a spot market"):
        run(store, _lz4(tmp_path / "market_data/20250311/9/l2Book/@107.lz4", [frame]))
    assert store.tables() == []
