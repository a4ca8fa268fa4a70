"""Benchmark: what checking every chunk's checksum costs a select (file format 3).

    python benchmarks/bench_checksum.py               # 1M trades + a 100 ms book day, 21 rounds
    python benchmarks/bench_checksum.py --rounds 41   # more rounds

One store, one day of each table. Every round times, interleaved (in alternating order) so
that load from other processes hits both alike, a warm ``select`` of the whole day (the file handle is open) with
the checksums checked and with them switched off on the open handle (the chunk references
minus their xxh3, exactly what a format-2 file holds), and a cold select (a fresh
``Tickstore``: the layout is read and its own checksum checked too). Reported: median and
best-of per variant and their ratios (checked / unchecked; also the median of the
per-round ratios, which load drift hurts least), and the time xxh3 alone takes
over exactly the bytes a select checks. The OS page cache is not dropped.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from xxhash import xxh3_64_intdigest  # noqa: E402

from tickstore import Tickstore  # noqa: E402
from tickstore.splay import _Layout  # noqa: E402

SYMBOL = "binance:BTC/USDT:USDT"


def trades(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    ts = pd.Timestamp("2024-08-08", tz="UTC") + pd.to_timedelta(np.sort(rng.integers(0, 86_400_000, n)), unit="ms")
    idx = pd.DatetimeIndex(ts, name="ts")
    return pd.DataFrame(
        {
            "recv_ts": idx + pd.to_timedelta(rng.integers(1, 30, n), unit="ms"),
            "trade_id": np.arange(n, dtype="i8") + 4_000_000_000,
            "price": np.round(60_000 + rng.normal(0, 1, n).cumsum(), 1),
            "qty": np.round(rng.exponential(0.1, n), 3),
            "side": rng.choice(np.array([-1, 1], "i1"), n),
        },
        index=idx,
    )


def book(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    ts = pd.Timestamp("2024-08-08", tz="UTC") + pd.to_timedelta(np.arange(n) * 100, unit="ms")
    bid = 600_000 + np.cumsum(rng.choice([-1, 0, 0, 0, 1], n))
    cols = {"recv_ts": ts + pd.Timedelta("5ms"), "update_id": 5_123_107_832_006 + np.cumsum(rng.integers(1, 60, n))}
    for side, sign in (("bid", -1), ("ask", 1)):
        for i in range(1, 6):
            cols[f"{side}_px_{i}"] = np.round((bid + sign * i) * 0.1, 1)
        for i in range(1, 6):
            cols[f"{side}_qty_{i}"] = np.round(rng.lognormal(-0.5, 1.5, n), 3)
    frame = pd.DataFrame(cols, index=pd.DatetimeIndex(ts, name="ts"))
    return frame[[c for c in cols]]


def _timed(fn) -> float:
    gc.disable()
    try:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    finally:
        gc.enable()


def _handle(store, table) -> _Layout:
    (rel,) = store[table].index()["path"]
    store._files.row_range(str(store.root / rel), None, None)  # opens it
    return store._files._handles[str(store.root / rel)]


def _hash_only(handle: _Layout) -> tuple[float, int]:
    """xxh3 over exactly the bytes a whole-day select checks (read from the file first)."""
    blobs = []
    for _, _, _, refs in handle.columns.values():
        for offset, size, inner, inner_size, _ in refs:
            blobs.append(os.pread(handle.fd, inner_size if inner >= 0 else size, offset + max(inner, 0)))
    return _timed(lambda: [xxh3_64_intdigest(b) for b in blobs]), sum(map(len, blobs))


def run(table: str, frame: pd.DataFrame, rounds: int, root: Path) -> dict:
    with Tickstore(root) as store:
        store[table].insert(SYMBOL, "2024-08-08", frame)
    store = Tickstore(root)
    t = store[table]
    assert len(t.select(SYMBOL)) == len(frame)
    handle = _handle(store, table)
    checked = handle.columns
    unchecked = {n: (c, s, d, [ref[:4] for ref in refs]) for n, (c, s, d, refs) in checked.items()}
    times = {"checked": [], "unchecked": [], "cold": [], "hash": []}
    for r in range(rounds):
        for variant in ("checked", "unchecked") if r % 2 else ("unchecked", "checked"):  # order alternates
            handle.columns = checked if variant == "checked" else unchecked
            times[variant].append(_timed(lambda: t.select(SYMBOL)))
        handle.columns = checked
        fresh = Tickstore(root)
        times["cold"].append(_timed(lambda: fresh[table].select(SYMBOL)))
        fresh.close()
        h, nbytes = _hash_only(handle)
        times["hash"].append(h)
    store.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}
    paired = statistics.median(c / u for c, u in zip(times["checked"], times["unchecked"]))  # same round, same load
    return {"table": table, "rows": len(frame), "checked_bytes": nbytes, "median": med, "best": best, "paired": paired}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--rows", type=int, default=1_000_000, help="trades in the day")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-checksum-") as tmp:
        results = [
            run("trades", trades(args.rows), args.rounds, Path(tmp) / "trades"),
            run("book", book(864_000), args.rounds, Path(tmp) / "book"),
        ]
    print(f"{'table':8} {'rows':>9} {'checked MB':>10} | {'variant':10} {'median ms':>9} {'best ms':>8}")
    for r in results:
        for k in ("checked", "unchecked", "cold", "hash"):
            print(
                f"{r['table']:8} {r['rows']:>9} {r['checked_bytes'] / 1e6:>10.1f} | {k:10} "
                f"{r['median'][k] * 1e3:>9.2f} {r['best'][k] * 1e3:>8.2f}"
            )
        m, b = r["median"], r["best"]
        print(
            f"{r['table']}: checked/unchecked {m['checked'] / m['unchecked']:.3f} (medians) "
            f"{b['checked'] / b['unchecked']:.3f} (best-of) {r['paired']:.3f} (median of per-round ratios); xxh3 alone {100 * m['hash'] / m['unchecked']:.1f}% "
            f"(median) {100 * b['hash'] / b['unchecked']:.1f}% (best) of an unchecked select"
        )


if __name__ == "__main__":
    main()
