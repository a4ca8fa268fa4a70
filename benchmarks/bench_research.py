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
    PYTHONPATH=. python benchmarks/bench_research.py --only dask --dask-defaults   # + distributed's defaults

Prints the select time, the bars time for several frequencies and their ratio.

Workloads (``--only``, comma-separated; default all):

- ``bars``: select + ``trade_bars`` of ``--days`` x ``--per-day`` trades vs the select alone.
- ``book``: ``book_bars`` of one day of 100 ms snapshots.
- ``coverage``: ``select_trade_bars`` of ``--days`` x ``--per-day`` trades with coverage
  (gap ledger of 50 rows a day + partitions) against without it; and the coverage-aware
  hour-of-day profile (``hourly_table`` + ``hour_of_day_profile``) of 4 years of 1-minute
  bars with a missing day, against its plain ``resample_bars`` to hours.
- ``dask``: a ``--dask-days``-day scan (``--dask-rows`` trades a day) to 1-minute bars,
  (a) in-process: ``select_trade_bars`` (one ``Table.select`` of all days + ``trade_bars``),
  versus (b) ``trade_bars_dask(...).compute()`` on ``research.scale.local_cluster(2)``: 2
  worker processes x (cores / 2) threads; each task reads its day files by path through
  its worker's open store and bins them, so only bars travel back.
  ``--files-per-partition`` day files per task (default: about two tasks per worker
  thread); the one-file-per-task figure is printed too. The runs alternate, so (a) and
  (b) meet the same load from other processes; the ratio in-process / dask compares the
  best of ``--dask-repeat`` runs (medians printed too). Target: dask no slower than
  in-process (ratio >= 1.0). The results must be exactly equal. Cluster start-up and the
  first (cold) dask run are reported apart. ``--dask-defaults`` adds the same scan on a
  plain ``LocalCluster``, with distributed's default worker environment.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from collectors.replay import replay
from research import datasets
from research.bars import book_bars, resample_bars, select_trade_bars, trade_bars
from research.volatility import hour_of_day_profile, hourly_table
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


def interleaved(fns: dict, repeat: int, settle: float = 0.2) -> dict:
    """{name: list of run times}: the functions run in turn, ``repeat`` rounds, so all of
    them meet the same load from other processes. ``settle`` seconds before each run let
    the scheduler (in this process) finish releasing the previous graph."""
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            time.sleep(settle)
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return times


def _malloc_trim_env():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def bench_dask(base: pd.DataFrame, args) -> None:
    import distributed  # optional dependency: only this workload needs it

    from research.bars import select_trade_bars
    from research.scale import local_cluster, trade_bars_dask

    days = pd.date_range("2024-08-01", periods=args.dask_days, freq="D", tz="UTC")
    start, end = days[0], days[-1] + _DAY
    freq = "1min"
    n = args.dask_repeat
    print(f"\n== dask: {args.dask_days} days x {args.dask_rows:,} trades -> {freq} bars ==")
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="bench_research_dask_") as tmp:
        with Tickstore(tmp) as store:
            t = time.perf_counter()
            for i, d in enumerate(days):
                store["trades"].insert(SYMBOL, d, tiled_day(base, d, args.dask_rows, i * args.dask_rows), reason="bench")
            print(f"write {args.dask_days} days x {args.dask_rows:,} trades: {time.perf_counter() - t:.2f} s")

            def in_process() -> pd.DataFrame:
                return select_trade_bars(store["trades"], SYMBOL, freq, start=start, end=end)

            def on_dask(k: int):
                return lambda: trade_bars_dask(store, SYMBOL, freq, start=start, end=end, files_per_partition=k).compute()

            expected = in_process()
            t = time.perf_counter()
            with local_cluster(2) as cluster, distributed.Client(cluster) as client:
                t_up = time.perf_counter() - t
                workers = len(client.nthreads())
                threads = sum(client.nthreads().values())
                k = args.files_per_partition or max(1, -(-args.dask_days // (2 * threads)))
                env = sorted(set(client.run(_malloc_trim_env).values()), key=str)
                print(
                    f"cluster: research.scale.local_cluster(2): {workers} worker processes x {threads // workers} thread(s), "
                    f"MALLOC_TRIM_THRESHOLD_ in the workers: {env}; start-up {t_up:.2f} s (not in the ratio)"
                )
                t_cold, _ = timed(on_dask(k), 1)
                print(f"(b) dask first run (cold workers: imports, file opens): {t_cold:.3f} s (not in the ratio)")
                runs = {"in": in_process, "dask": on_dask(k)}
                if k != 1:
                    runs["dask1"] = on_dask(1)
                times = interleaved(runs, n)
                for name, fn in runs.items():
                    if name != "in":
                        pd.testing.assert_frame_equal(fn(), expected, check_exact=True)
            best = {name: min(v) for name, v in times.items()}
            med = {name: float(np.median(v)) for name, v in times.items()}
            print(f"(a) in-process select_trade_bars: best {best['in']:.3f} s, median {med['in']:.3f} s ({n} runs) -> {len(expected):,} bars")
            print(
                f"(b) dask trade_bars_dask(files_per_partition={k}), {-(-args.dask_days // k)} tasks: "
                f"best {best['dask']:.3f} s, median {med['dask']:.3f} s"
            )
            if "dask1" in best:
                print(
                    f"    one file per task ({args.dask_days} tasks): best {best['dask1']:.3f} s, median {med['dask1']:.3f} s; "
                    f"in-process / dask = {best['in'] / best['dask1']:.2f} best, {med['in'] / med['dask1']:.2f} median"
                )
            print(f"results equal: yes ({len(expected):,} bars x {expected.shape[1]} columns, exact, every variant)")
            ratio = best["in"] / best["dask"]
            status = "PASS" if ratio >= 1.0 else "MISS"
            print(
                f"in-process {best['in']:.3f} s, dask {best['dask']:.3f} s: in-process / dask = {ratio:.2f} best of {n} "
                f"({med['in'] / med['dask']:.2f} median) (target >= 1.0): {status}"
            )
            if args.dask_defaults:
                with distributed.LocalCluster(
                    n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
                ) as cluster, distributed.Client(cluster) as client:
                    env = sorted(set(client.run(_malloc_trim_env).values()), key=str)
                    on_dask(k)()
                    times = interleaved({"in": in_process, "dask": on_dask(k)}, n)
                    pd.testing.assert_frame_equal(on_dask(k)(), expected, check_exact=True)
                print(
                    f"(c) the same scan on distributed.LocalCluster(2 x 1 thread), its default worker environment "
                    f"(MALLOC_TRIM_THRESHOLD_ {env}): best {min(times['dask']):.3f} s; in-process / dask = "
                    f"{min(times['in']) / min(times['dask']):.2f} best, {np.median(times['in']) / np.median(times['dask']):.2f} median"
                )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--per-day", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="bars,book,coverage,dask", help="comma-separated workloads: bars, book, coverage, dask (default all)")
    ap.add_argument("--dask-days", type=int, default=30, help="days of the dask scan (default 30)")
    ap.add_argument("--dask-rows", type=int, default=300_000, help="trades per day of the dask scan (default 300,000)")
    ap.add_argument("--dask-repeat", type=int, default=9, help="alternating runs of the dask comparison (default 9)")
    ap.add_argument("--files-per-partition", type=int, default=0, help="day files per dask task (default: ~2 tasks per worker thread)")
    ap.add_argument("--dask-defaults", action="store_true", help="also run the scan on distributed's default LocalCluster")
    args = ap.parse_args()
    only = {w.strip() for w in args.only.split(",") if w.strip()}
    unknown = only - {"bars", "book", "coverage", "dask"}
    if unknown:
        ap.error(f"unknown workload(s) {sorted(unknown)}; choose from bars, book, coverage, dask")

    with tempfile.TemporaryDirectory() as tmp, Tickstore(tmp) as capture:
        # the capture through the live parsers, as a researcher's store holds it
        replay([datasets.data_dir() / datasets.USDM_2024], store=capture)
        base = capture["trades"].select(SYMBOL)
        quotes = capture["quotes"].select(SYMBOL)
    if only & {"bars", "book"}:
        bench_store_bars(base, quotes, args, only)
    if "coverage" in only:
        bench_coverage(base, args)
    if "dask" in only:
        bench_dask(base, args)


def bench_coverage(base: pd.DataFrame, args) -> None:
    days = pd.date_range("2024-08-01", periods=args.days, freq="D", tz="UTC")
    start, end = days[0], days[-1] + pd.Timedelta(days=1)
    with tempfile.TemporaryDirectory() as tmp, Tickstore(tmp) as store:
        for i, d in enumerate(days):
            if i != 3:  # one missing day
                store["trades"].insert(SYMBOL, d, tiled_day(base, d, args.per_day, i * args.per_day), reason="bench")
        gs = np.sort(np.random.default_rng(1).integers(start.value, end.value, 50 * args.days))
        store["gaps"].append(SYMBOL, pd.DataFrame(
            {"recv_ts": pd.to_datetime(gs + 30 * 10**9, utc=True), "end_ts": pd.to_datetime(gs + 30 * 10**9, utc=True),
             "stream": "*", "cause": "disconnect", "detail": "bench"},
            index=pd.DatetimeIndex(pd.to_datetime(gs, utc=True), name="ts")))
        runs = interleaved({
            "without": lambda: select_trade_bars(store["trades"], SYMBOL, "1min", start=start, end=end, coverage=False),
            "with": lambda: select_trade_bars(store["trades"], SYMBOL, "1min", start=start, end=end),
        }, args.repeat)
        w, wo = runs["with"], runs["without"]
        print(f"select_trade_bars 1min, {args.days} days, {50 * args.days} ledger gaps: with coverage best {min(w):.3f} s "
              f"median {np.median(w):.3f} s; without best {min(wo):.3f} s median {np.median(wo):.3f} s; "
              f"ratio best {min(w) / min(wo):.2f}, median {np.median(w) / np.median(wo):.2f}")
    idx = pd.date_range("2020-01-01", "2024-01-01", freq="1min", inclusive="left", tz="UTC", name="ts")
    close = 30_000 * np.exp(np.cumsum(np.random.default_rng(2).normal(0, 1e-3, len(idx))))
    m1 = pd.DataFrame({"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=idx)
    m1 = m1[m1.index.normalize() != pd.Timestamp("2022-06-15", tz="UTC")]
    runs = interleaved({
        "profile": lambda: hour_of_day_profile(hourly_table(m1, bar_freq="1min")),
        "resample": lambda: resample_bars(m1, "h", bar_freq="1min"),
    }, args.repeat)
    p, r = runs["profile"], runs["resample"]
    print(f"4 years of 1-minute bars ({len(m1):,}), one day missing: coverage-aware hour profile best {min(p):.2f} s "
          f"median {np.median(p):.2f} s; resample to hours best {min(r):.2f} s median {np.median(r):.2f} s")


def bench_store_bars(base: pd.DataFrame, quotes: pd.DataFrame, args, only: set[str]) -> None:
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
        grid = book_bars(quotes, "100ms").ffill().dropna()
        reps = -(-864_000 // len(grid))
        book = pd.concat([grid] * reps).iloc[:864_000]
        book.index = pd.date_range(days[0], periods=len(book), freq="100ms", name="ts")
        book = book.rename(columns={"mid": "bid_px_1"}).assign(ask_px_1=lambda f: f["bid_px_1"] + 0.1, bid_qty_1=1.0, ask_qty_1=2.0)
        for freq in ("250ms", "1s"):
            t_b, out = timed(lambda: book_bars(book, freq), args.repeat)
            print(f"book_bars {len(book):,} snapshots -> {freq}: {t_b:.3f} s ({len(out):,} bins)")


if __name__ == "__main__":
    main()
