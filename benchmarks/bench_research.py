"""Benchmark: bars from the store versus the store read itself.

Target (issue "Research API"): bars from 10 days x 1M trades cost at most 2x the select.

The trades are the real Binance USD-M prints of ``hftbacktest/usdm/btcusdt_20240808.gz``
(21,313 prints, ~6 minutes) tiled over each day: copy k is shifted by k times the capture
length, trade ids renumbered, prices and sizes unchanged. So the price/size distribution
and the clustering of prints in time are real; only their count is scaled.

    PYTHONPATH=. python benchmarks/bench_research.py    # 10 days x 1,000,000 trades
    PYTHONPATH=. python benchmarks/bench_research.py --days 2 --per-day 200000
    PYTHONPATH=. python benchmarks/bench_research.py --only dask   # 30 days x 300,000, dask only
    PYTHONPATH=. python benchmarks/bench_research.py --only dask --dask-days 3 --dask-rows 20000

Prints the select time, the bars time for several frequencies and their ratio.

Workloads (``--only``, comma-separated; default all):

- ``bars``: select + ``trade_bars`` of ``--days`` x ``--per-day`` trades vs the select alone.
- ``book``: ``book_bars`` of one day of 100 ms snapshots.
- ``dask``: a ``--dask-days``-day scan (``--dask-rows`` trades a day) to 1-minute bars,
  (a) in-process: one ``Table.select`` of all days + ``trade_bars``, versus (b) on a
  ``distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``:
  ``select_dask(...).map_partitions(<trade_bars of that day>).compute()``. The two results
  must be exactly equal. Target: dask no slower than in-process (in-process / dask >= 1.0);
  the cluster start-up and the first (cold: worker imports) dask run are reported apart
  and excluded from the ratio, which compares best-of-``--repeat`` times.
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


_DAY = pd.Timedelta(days=1)


def day_bars(trades: pd.DataFrame, freq: str, partition_info=None) -> pd.DataFrame:
    """``trade_bars`` of one dask partition (= one stored day file), bins over its whole day.

    Every bin of the day is present even at the day's ends, so the days concatenated equal
    ``trade_bars`` of all the trades over [first day, last day + 1) (minute bins never
    straddle midnight). dask passes ``partition_info`` (its division = the day's start).
    """
    if partition_info is None:  # meta inference: any day gives the right columns/dtypes
        day = pd.Timestamp("1970-01-01", tz="UTC")
    else:
        day = pd.Timestamp(partition_info["division"]).floor("D")
    return trade_bars(trades, freq, start=day, end=day + _DAY)


def bench_dask(base: pd.DataFrame, args) -> None:
    import distributed  # optional dependency: only this workload needs it

    from research.scale import select_dask

    days = pd.date_range("2024-08-01", periods=args.dask_days, freq="D", tz="UTC")
    start, end = days[0], days[-1] + _DAY
    cols = ["price", "qty", "side"]
    freq = "1min"
    print(f"\n== dask: {args.dask_days} days x {args.dask_rows:,} trades -> {freq} bars ==")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="bench_research_dask_") as tmp:
        with Tickstore(tmp) as store:
            t = time.perf_counter()
            for i, d in enumerate(days):
                store["trades"].insert(SYMBOL, d, tiled_day(base, d, args.dask_rows, i * args.dask_rows), reason="bench")
            print(f"write {args.dask_days} days x {args.dask_rows:,} trades: {time.perf_counter() - t:.2f} s")

            def in_process() -> pd.DataFrame:
                trades = store["trades"].select(SYMBOL, start, end, columns=cols)
                return trade_bars(trades, freq, start=start, end=end)

            t_in, expected = timed(in_process, args.repeat)
            print(f"(a) in-process select + trade_bars: {t_in:.3f} s -> {len(expected):,} bars (best of {args.repeat})")

            t = time.perf_counter()
            with distributed.LocalCluster(
                n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster, distributed.Client(cluster):
                t_up = time.perf_counter() - t
                meta = trade_bars(store["trades"].schema.empty_frame(cols), freq, start=start, end=start + pd.Timedelta(freq)).iloc[:0]

                def on_dask() -> pd.DataFrame:
                    ddf = select_dask(store, "trades", SYMBOL, start, end, columns=cols)
                    return ddf.map_partitions(day_bars, freq, meta=meta).compute()

                t_cold, _ = timed(on_dask, 1)
                t_dask, got = timed(on_dask, args.repeat)
            print(f"cluster start-up (2 worker processes x 1 thread): {t_up:.3f} s (not in the ratio)")
            print(f"(b) dask first run (cold workers): {t_cold:.3f} s (not in the ratio)")
            print(f"(b) dask select_dask + map_partitions(trade_bars).compute(): {t_dask:.3f} s (best of {args.repeat})")
            pd.testing.assert_frame_equal(got, expected, check_exact=True)
            print(f"results equal: yes ({len(got):,} bars x {got.shape[1]} columns, exact)")
            ratio = t_in / t_dask
            status = "PASS" if ratio >= 1.0 else "MISS"
            print(f"in-process / dask = {ratio:.2f} (target >= 1.0): {status}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="bars,book,dask", help="comma-separated workloads: bars, book, dask (default all)")
    ap.add_argument("--dask-days", type=int, default=30, help="days of the dask scan (default 30)")
    ap.add_argument("--dask-rows", type=int, default=300_000, help="trades per day of the dask scan (default 300,000)")
    args = ap.parse_args()
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - {"bars", "book", "dask"}
    if unknown:
        ap.error(f"unknown workload(s) {sorted(unknown)}; choose from bars, book, dask")

    base = datasets.load_binance_trades(datasets.data_dir() / datasets.USDM_2024)
    if only & {"bars", "book"}:
        bench_store_bars(base, args, only)
    if "dask" in only:
        bench_dask(base, args)


def bench_store_bars(base: pd.DataFrame, args, only: set[str]) -> None:
    days = pd.date_range("2024-08-01", periods=args.days, freq="D", tz="UTC")
    if "bars" in only:
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
    if "book" in only:
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
