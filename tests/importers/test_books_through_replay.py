"""Imported order books go through the replay's books: venue rule, grid, quotes, book state.

Files are written from the formats' published documentation: Tardis
https://docs.tardis.dev/downloadable-csv-files#incremental_book_l2 (``is_snapshot``: a
snapshot after updates means "discard the book"); Hyperliquid's archive
https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data (``market_data/<date>/<hour>/
l2Book/<coin>.lz4``, hours not zero-padded), with the real frames of the hftbacktest capture.
"""

from __future__ import annotations

import gzip
import json

import lz4.frame
import numpy as np
import pandas as pd

from tests.importers.helpers import run, write
from tickstore import Tickstore

HL = "hyperliquid:BTC/USDC:USDC"
BYBIT = "bybit:BTC/USDT:USDT"


def _hl_lines(data_dir):
    out = []
    for line in gzip.open(data_dir / "hftbacktest" / "hyperliquid" / "btcusd_20250126.gz", "rt"):
        recv, _, body = line.strip().partition(" ")
        msg = json.loads(body)
        if msg.get("channel") == "l2Book":
            out.append(json.dumps({"time": str(np.datetime64(int(recv), "ns")), "ver_num": 1, "raw": msg}) + "\n")
    return out


def _archive(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress("".join(lines).encode()))
    return path


def test_consecutive_archive_hours_continue_the_book(data_dir, tmp_path):
    """A folder of hourly files (``9`` before ``10``, whatever the text order) stores the rows
    of one file holding both hours: the book state carries the grid across the boundary."""
    lines = _hl_lines(data_dir)
    half = len(lines) // 2
    day = tmp_path / "split" / "market_data" / "20250126"
    _archive(day / "10" / "l2Book" / "BTC.lz4", lines[half:])
    _archive(day / "9" / "l2Book" / "BTC.lz4", lines[:half])
    whole = _archive(tmp_path / "whole" / "market_data" / "20250126" / "9" / "l2Book" / "BTC.lz4", lines)
    with Tickstore(tmp_path / "a") as a, Tickstore(tmp_path / "b") as b:
        report = run(a, tmp_path / "split")
        assert [p.split("market_data/")[1] for p in (f.path for f in report.files)] == [
            "20250126/9/l2Book/BTC.lz4", "20250126/10/l2Book/BTC.lz4"]
        run(b, whole)
        split, one = a["book"].select(HL), b["book"].select(HL)
        assert len(one) > 100
        boundary = json.loads(lines[half - 1])["raw"]["data"]["time"] * 1_000_000
        assert ((one.index > pd.Timestamp(boundary, unit="ns", tz="UTC")) & (one.index < split.index[-1])).any()
        pd.testing.assert_frame_equal(split, one, check_exact=True)


def _tardis_l2(rows):
    head = "exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount\n"
    return head + "".join(f"bybit,BTCUSDT,{t},{t + 700},{s},{side},{p},{q}\n" for t, s, side, p, q in rows)


DAY1 = 1704067200_000000 - 400_000  # 2023-12-31 23:59:59.6
DAY1_ROWS = [
    (DAY1, "true", "ask", 101.0, 1), (DAY1, "true", "ask", 102.0, 2), (DAY1, "true", "bid", 100.0, 3),
    (DAY1, "true", "bid", 99.0, 4),
    (DAY1 + 50_000, "false", "bid", 100.5, 1.5),  # a new best bid
    (DAY1 + 120_000, "false", "ask", 102.0, 2.5),  # below the top: no quote
    (DAY1 + 250_000, "false", "ask", 101.0, 0),  # the best ask leaves
]
DAY2 = 1704067200_000000  # the next day's file opens with Tardis' snapshot of the same book
DAY2_ROWS = [
    (DAY2, "true", "ask", 102.0, 2.5), (DAY2, "true", "bid", 100.5, 1.5), (DAY2, "true", "bid", 100.0, 3),
    (DAY2, "true", "bid", 99.0, 4),
    (DAY2 + 130_000, "false", "bid", 100.5, 0.5),
    (DAY2 + 300_000, "true", "ask", 103.0, 1), (DAY2 + 300_000, "true", "bid", 101.0, 1),  # Tardis reconnected
    (DAY2 + 420_000, "false", "bid", 101.0, 2),
]


def test_tardis_bybit_books_quote_their_top_and_continue_the_next_day(store, tmp_path):
    run(store, write(tmp_path / "bybit_incremental_book_L2_2023-12-31_BTCUSDT.csv", _tardis_l2(DAY1_ROWS)))
    run(store, write(tmp_path / "bybit_incremental_book_L2_2024-01-01_BTCUSDT.csv", _tardis_l2(DAY2_ROWS)))
    us = lambda t: pd.Timestamp(t * 1000, unit="ns", tz="UTC")  # noqa: E731
    q = store["quotes"].select(BYBIT)
    # Bybit quotes are the book's top at every change (as live and replay), none for a change below it
    assert list(zip(q.index, q["bid_px"], q["bid_qty"], q["ask_px"], q["ask_qty"])) == [
        (us(DAY1), 100.0, 3.0, 101.0, 1.0),
        (us(DAY1 + 50_000), 100.5, 1.5, 101.0, 1.0),
        (us(DAY1 + 250_000), 100.5, 1.5, 102.0, 2.5),
        (us(DAY2 + 130_000), 100.5, 0.5, 102.0, 2.5),
        (us(DAY2 + 300_000), 101.0, 1.0, 103.0, 1.0),  # the book after the reconnect (first quote after a resync)
        (us(DAY2 + 420_000), 101.0, 2.0, 103.0, 1.0),
    ]
    assert (np.diff(q["update_id"].to_numpy()) > 0).all()  # ids grow across the day files
    book = store["book"].select(BYBIT)
    # the grid from the first snapshot's point on, across midnight without a break (the second
    # file continues the book: its snapshot is the same book) up to the last update before
    # the reconnect; nothing in the reconnect's gap; then the new book from its snapshot on
    step = 100_000
    grid = list(range(-(-DAY1 // step) * step, DAY2 + 130_000, step))
    assert [int(t.value // 1000) for t in book.index] == grid + [DAY2 + 300_000, DAY2 + 400_000]
    at = {int(t.value // 1000): (r["bid_px_1"], r["bid_qty_1"], r["ask_px_1"]) for t, r in book.iterrows()}
    assert at[DAY1] == (100.0, 3.0, 101.0) and at[DAY1 + 300_000] == (100.5, 1.5, 102.0)
    assert at[DAY2] == (100.5, 1.5, 102.0) and at[DAY2 + 100_000] == (100.5, 1.5, 102.0)
    assert at[DAY2 + 300_000] == at[DAY2 + 400_000] == (101.0, 1.0, 103.0)  # the diff at +420 ms comes later
    gaps = store["gaps"].select(BYBIT)
    assert list(gaps["cause"]) == ["reconnect", "resync"]
    assert gaps.index[0] == us(DAY2 + 130_000) and (gaps["end_ts"] == us(DAY2 + 300_000)).all()
