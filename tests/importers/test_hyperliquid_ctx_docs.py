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

import lz4.frame
import pandas as pd

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
