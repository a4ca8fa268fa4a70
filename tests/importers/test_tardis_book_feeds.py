"""Tardis ``incremental_book_L2`` of a feed whose every message is the whole book.

docs.tardis.dev/downloadable-csv-files/data-types#incremental_book_l2: rows of one message share
``local_timestamp``; ``is_snapshot`` true = part of a snapshot. Hyperliquid's ``l2Book`` channel
sends the whole book (levels[0] bids, levels[1] asks) in every message, and Tardis' mapper
(github.com/tardis-dev/tardis-node, src/mappers/hyperliquid.ts, ``HyperliquidBookChangeMapper``)
marks every one ``isSnapshot: true``. So a Hyperliquid file is a series of snapshot messages:
each is the book at its time; a level missing from the next message is gone (reading the run
as one snapshot kept every level ever seen: a crossed book, prices of minutes ago at the top).
"""

from __future__ import annotations

import pandas as pd

from .helpers import run, write

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00:00 UTC in us
SYM = "hyperliquid:BTC/USDC:USDC"

# (exchange time offset us, receive offset us, bids, asks) of each l2Book message
MESSAGES = [
    (50_000, 51_500, [(42000.0, 1.0), (41999.0, 2.0)], [(42001.0, 1.5), (42002.0, 3.0)]),
    (150_000, 151_200, [(41998.0, 4.0)], [(41999.5, 0.5), (42000.5, 2.0)]),                # the price fell
    (250_000, 251_900, [(42003.0, 0.3), (42002.5, 1.0)], [(42004.0, 0.7)]),                 # and rose
    (3_250_000, 3_251_000, [(42003.0, 0.3)], [(42004.0, 0.9)]),                            # later: flushes the grid
]


def _csv(exchange="hyperliquid", symbol="BTC") -> str:
    rows = ["exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"]
    for ts, recv, bids, asks in MESSAGES:
        for side, levels in (("ask", asks), ("bid", bids)):
            rows += [f"{exchange},{symbol},{T0 + ts},{T0 + recv},true,{side},{px},{qty}" for px, qty in levels]
    return "\n".join(rows) + "\n"


def _expected(grid_ns: int):
    """The book (top 5 per side) of the last message received at or before ``grid_ns``."""
    book = None
    for ts, _, bids, asks in MESSAGES:
        if (T0 + ts) * 1000 <= grid_ns:
            book = (sorted(bids, reverse=True)[:5], sorted(asks)[:5])
    return book


def test_every_hyperliquid_snapshot_message_is_the_book_at_its_time(store, tmp_path):
    run(store, write(tmp_path / "hyperliquid_incremental_book_L2_2024-01-01_BTC.csv.gz", _csv(), gz=True))
    got = store["book"].select(SYM)
    assert len(got) >= 3
    assert [t.value for t in got.index[:3]] == [(T0 + k * 100_000) * 1000 for k in (1, 2, 3)]
    for t, row in got.iterrows():
        bids, asks = _expected(t.value)
        n_b, n_a = len(bids), len(asks)
        assert [(row[f"bid_px_{i}"], row[f"bid_qty_{i}"]) for i in range(1, n_b + 1)] == bids, t
        assert [(row[f"ask_px_{i}"], row[f"ask_qty_{i}"]) for i in range(1, n_a + 1)] == asks, t
        # no level of an earlier message survives in the levels this message does not have
        assert all(pd.isna(row[f"bid_px_{i}"]) for i in range(n_b + 1, 6)), t
        assert all(pd.isna(row[f"ask_px_{i}"]) for i in range(n_a + 1, 6)), t
        assert row["bid_px_1"] < row["ask_px_1"], t  # never crossed
    assert "gaps" not in store.tables() or SYM not in store["gaps"].symbols()  # no reconnect between messages
