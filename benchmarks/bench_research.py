"""Benchmark: bars from the store versus the store read itself.

Target (issue "Research API"): bars from 10 days x 1M trades cost at most 2x the select.

The trades are the real Binance USD-M prints of ``hftbacktest/usdm/btcusdt_20240808.gz``
(21,313 prints, ~6 minutes) tiled over each day: copy k is shifted by k times the capture
length, trade ids renumbered, prices and sizes unchanged. So the price/size distribution
and the clustering of prints in time are real; only their count is scaled.

    PYTHONPATH=. python benchmarks/bench_research.py    # 10 days x 1,000,000 trades
    PYTHONPATH=. python benchmarks/bench_research.py --days 2 --per-day 200000

Prints the select time, the bars time for several frequencies and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from research import datasets
from research.bars import book_bars, trade_bars
from tickstore import Tickstore

SYMBOL = "binance:BTC/USDT:USDT"


def tiled_day(base: pd.DataFrame, day: pd.Timestamp, n: int, first_id: int) -> pd.DataFrame:
    """``n`` prints on ``day``: ``base`` repeated back to back, then cut at ``n`` / the day's end."""
    ts0 = base.index.asi8 - base.index.asi8[0]
    span = int(ts0[-1]) + 1_000_000  # 1 ms between copies
    reps = -(-n // len(base))
    offs = (np.arange(reps, dtype=np.int64) * span)[:, None] + ts0[None, :]
    ts = day.value + offs.ravel()[:n]
    keep = ts < day.value + 86_400 * 10**9
    k = int(keep.sum())
    rows = np.tile(np.arange(len(base)), reps)[:n][keep]
    out = base.iloc[rows].copy()
    out.index = pd.DatetimeIndex(ts[keep], tz="UTC", name="ts")
    out["recv_ts"] = out.index
    out["trade_id"] = np.arange(first_id, first_id + k, dtype=np.int64)
    return out


def timed(fn, repeat: int):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    base = datasets.load_binance_trades(datasets.data_dir() / datasets.USDM_2024)
    days = pd.date_range("2024-08-01", periods=args.days, freq="D", tz="UTC")
    with tempfile.TemporaryDirectory() as tmp, Tickstore(tmp) as store:
        t = time.perf_counter()
        for i, d in enumerate(days):
            store["trades"].insert(SYMBOL, d, tiled_day(base, d, args.per_day, i * args.per_day), reason="bench")
        print(f"write {args.days} days x {args.per_day:,} trades: {time.perf_counter() - t:.2f} s")
        start, end = days[0], days[-1] + pd.Timedelta(days=1)
        cols = ["price", "qty", "side"]
        t_sel, trades = timed(lambda: store["trades"].select(SYMBOL, start, end, columns=cols), args.repeat)
        print(f"select {len(trades):,} rows (price, qty, side): {t_sel:.3f} s")
        for freq in ("1s", "1min", "1h"):
            t_bars, bars = timed(lambda: trade_bars(trades, freq, start=start, end=end), args.repeat)
            print(
                f"trade_bars {freq:>4}: {t_bars:.3f} s -> {len(bars):,} bars; "
                f"select + bars = {(t_sel + t_bars) / t_sel:.2f} x select (target <= 2)"
            )
        # book side: 100 ms snapshots of one day (864,000 rows) to 250 ms / 1 s
        q = datasets.load_binance_quotes(datasets.data_dir() / datasets.USDM_2024)
        grid = book_bars(q, "100ms").ffill().dropna()
        reps = -(-864_000 // len(grid))
        book = pd.concat([grid] * reps).iloc[:864_000]
        book.index = pd.date_range(days[0], periods=len(book), freq="100ms", name="ts")
        book = book.rename(columns={"mid": "bid_px_1"}).assign(ask_px_1=lambda f: f["bid_px_1"] + 0.1, bid_qty_1=1.0, ask_qty_1=2.0)
        for freq in ("250ms", "1s"):
            t_b, out = timed(lambda: book_bars(book, freq), args.repeat)
            print(f"book_bars {len(book):,} snapshots -> {freq}: {t_b:.3f} s ({len(out):,} bins)")


if __name__ == "__main__":
    main()
