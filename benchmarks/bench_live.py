"""Live path figures: receive-to-journal latency at 2,000 frames/s, book disk per symbol-day.

    python benchmarks/bench_live.py [--seconds 20] [--rate 2000] [--skip-disk] [--skip-latency]

1. Latency. The simulated Binance (``collectors.simulator``) serves 2 USD-M symbols over
   127.0.0.1 with 10 ms steps and enough trades per step for ``--rate`` frames/s; the
   real ``Collector`` runs against it (sessions, journal with fsync every 1 s, parsers,
   books, flushes into a store on a temporary folder, all in one process as in
   production). Its frame sink is wrapped to time each frame from ``recv_ns`` (taken when
   ``recv`` returned) to the return of ``Journal.append`` (the frame is then "received").
   Also printed: exchange time (``E``) -> journaled, which adds the server's send loop and
   the kernel/socket wait (the simulator shares the 2 cores).
   Target: receive -> journal p99 < 5 ms.

2. Disk. One symbol-day of top-5 book snapshots on a 100 ms grid (864,000 rows): a BTC-like
   random walk (0.1 tick, spread mostly 1 tick, level gaps of 1-3 ticks, lognormal sizes
   rounded to 0.001, a changed level every row on average), inserted with ``Table.insert``
   into the ``book`` table; the day file's bytes are reported. Target: < 20 MB.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.collector import Collector, CollectorConfig  # noqa: E402
from collectors.exchanges.binance import Channel, Market  # noqa: E402
from collectors.journal import RecordKind  # noqa: E402
from collectors.simulator import Simulator, SimulatorConfig  # noqa: E402
from tickstore import Tickstore  # noqa: E402

SYMBOLS = ("binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")


def bench_latency(seconds: float, rate: int, tmp: Path) -> dict:
    tick_ms = 10
    steps_per_s = 1000 / tick_ms
    # per step and symbol: 1 depth diff + 1 bookTicker + Poisson(k) trades
    k = max(0.0, rate / steps_per_s / len(SYMBOLS) - 2)
    sim = Simulator(SimulatorConfig(symbols=SYMBOLS, tick_ms=tick_ms, trades_per_tick=k, liquidation_prob=0.001, seed=1)).start()
    cfg = CollectorConfig(
        store=str(tmp / "store"),
        journal=str(tmp / "journal"),
        symbols=SYMBOLS,
        channels=(Channel.TRADES, Channel.QUOTES, Channel.DEPTH, Channel.MARK),
        endpoints={Market.USDM: sim.endpoints(Market.USDM)},
        flush_interval_s=2.0,
    )
    c = Collector(cfg)
    lat: list[int] = []
    ex: list[int] = []
    frame = RecordKind.FRAME

    def sink_for(tag):
        def sink(payload: bytes, recv_ns: int) -> None:
            c.journal.append(frame, payload, recv_ns=recv_ns, tag=tag)
            done = time.time_ns()
            lat.append(done - recv_ns)
            # exchange time: "E": is in every generated frame's data
            i = payload.find(b'"E":')
            if i >= 0:
                ex.append(done - int(payload[i + 4 : i + 17]) * 1_000_000)

        return sink

    c._frame_sink = sink_for  # instrumentation only: the production sink, timed
    c.start()
    try:
        time.sleep(2)  # warm-up: connect, snapshots
        lat.clear()
        ex.clear()
        t0 = time.monotonic()
        time.sleep(seconds)
        n = len(lat)
        took = time.monotonic() - t0
        a = np.array(lat[:n], dtype="i8") / 1e6
        e = np.array(ex[: len(ex)], dtype="i8") / 1e6
    finally:
        c.stop()
        sim.stop()
    return {
        "frames": n,
        "frames_per_s": n / took,
        "recv_to_journal_ms": {q: float(np.percentile(a, q)) for q in (50, 90, 99, 99.9)} | {"max": float(a.max())},
        "exchange_to_journal_ms": {q: float(np.percentile(e, q)) for q in (50, 90, 99)},
        "rows": dict(c.stats.rows),
        "store_errors": c.stats.store_errors,
    }


def book_day(n: int = 864_000, levels: int = 5, seed: int = 0) -> pd.DataFrame:
    """A realistic top-N day on a 100 ms grid (see module docstring)."""
    rng = np.random.default_rng(seed)
    tick = 0.1
    day = pd.Timestamp("2024-08-08", tz="UTC")
    ts = day + pd.to_timedelta(np.arange(n) * 100, unit="ms")
    # best bid in ticks: a random walk that moves on ~20% of the rows
    moves = rng.choice([-2, -1, 0, 1, 2], size=n, p=[0.03, 0.08, 0.78, 0.08, 0.03])
    bid1 = 600_000 + np.cumsum(moves)
    spread = rng.choice([1, 1, 1, 1, 2, 3], size=n)
    cols = {
        "recv_ts": ts + pd.to_timedelta(rng.integers(1_000_000, 30_000_000, size=n), unit="ns"),
        "update_id": 5_123_107_832_006 + np.cumsum(rng.integers(1, 60, size=n)),
    }
    gaps_b = np.cumsum(rng.choice([1, 1, 2, 3], size=(n, levels)), axis=1) - 1
    gaps_a = np.cumsum(rng.choice([1, 1, 2, 3], size=(n, levels)), axis=1) - 1
    # levels persist between rows: only re-draw the ladder when the touch moved
    moved = np.r_[True, (moves[1:] != 0) | (spread[1:] != spread[:-1])]
    idx = np.maximum.accumulate(np.where(moved, np.arange(n), 0))
    gaps_b, gaps_a = gaps_b[idx], gaps_a[idx]
    qty = np.round(rng.lognormal(-0.5, 1.5, size=(n, 2 * levels)), 3) + 0.001
    keep = rng.random((n, 2 * levels)) < 0.9  # ~1 size of 10 changes per row
    keep[0] = False
    # each size carries forward from the last row that re-drew it
    last = np.maximum.accumulate(np.where(~keep, np.arange(n)[:, None], 0), axis=0)
    qty = np.take_along_axis(qty, last, axis=0)
    for i in range(levels):
        cols[f"bid_px_{i + 1}"] = np.round((bid1 - gaps_b[:, i]) * tick, 1)
    for i in range(levels):
        cols[f"bid_qty_{i + 1}"] = qty[:, i]
    for i in range(levels):
        cols[f"ask_px_{i + 1}"] = np.round((bid1 + spread + gaps_a[:, i]) * tick, 1)
    for i in range(levels):
        cols[f"ask_qty_{i + 1}"] = qty[:, levels + i]
    return pd.DataFrame(cols, index=pd.DatetimeIndex(ts, name="ts"))


def bench_disk(tmp: Path) -> dict:
    df = book_day()
    with Tickstore(tmp / "disk") as store:
        t0 = time.perf_counter()
        store["book"].insert("binance:BTC/USDT:USDT", "2024-08-08", df, reason="bench", source="bench_live")
        took = time.perf_counter() - t0
    files = [p for p in (tmp / "disk" / "book").rglob("*.h5")]
    size = sum(p.stat().st_size for p in files)
    raw = len(df) * (8 + 8 + 8 + 20 * 8)
    return {"rows": len(df), "files": len(files), "bytes": size, "MB": size / 1e6, "raw_MB": raw / 1e6,
            "ratio": raw / size, "insert_s": took}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--skip-disk", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        if not args.skip_latency:
            r = bench_latency(args.seconds, args.rate, tmp)
            p = r["recv_to_journal_ms"]
            print(f"latency: {r['frames']:,} frames in {args.seconds:g} s = {r['frames_per_s']:,.0f} frames/s (target {args.rate:,})")
            print("  receive -> journaled (ms): " + "  ".join(f"p{k}={v:.3f}" for k, v in p.items()))
            print("  exchange E -> journaled (ms): " + "  ".join(f"p{k}={v:.2f}" for k, v in r["exchange_to_journal_ms"].items()))
            print(f"  rows stored: {r['rows']}  store errors: {r['store_errors']}")
            print(f"  target p99 < 5 ms: {'PASS' if p[99] < 5 else 'MISS'}")
        if not args.skip_disk:
            d = bench_disk(tmp)
            print(f"disk: {d['rows']:,} top-5 book rows (one symbol-day at 100 ms) = {d['MB']:.2f} MB in {d['files']} file(s)"
                  f" (raw {d['raw_MB']:.0f} MB, {d['ratio']:.1f}x), insert {d['insert_s']:.2f} s")
            print(f"  target < 20 MB: {'PASS' if d['MB'] < 20 else 'MISS'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
