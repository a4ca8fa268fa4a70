"""Benchmark: decompressing a day's chunks through blosc2's C library (ctypes, what reads
use, ``tickstore.blosc``) against the blosc2 package (``decompress2``, the fallback).

    python benchmarks/bench_decompress.py             # 1M trades, 21 rounds
    python benchmarks/bench_decompress.py --rounds 41

One store with one day of 1M trades. Every round times, interleaved (in alternating order,
so that load from other processes hits both alike): all the day's chunks (every column)
decompressed on one thread into reused arrays, the same on all threads (``chunks.run``),
and a warm ``select_columns`` of the whole day. Reported: median and best-of per variant
in ms and GB/s (decompressed bytes), and the ratios package / ctypes (above 1: ctypes is
faster), with the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_checksum import SYMBOL, trades  # noqa: E402

from tickstore import Tickstore, blosc, chunks  # noqa: E402
from tickstore.splay import _Layout  # noqa: E402


def day_chunks(store: Tickstore, root: Path) -> list[tuple[bytes, np.ndarray, bool]]:
    """(compressed bytes, destination, whole frame) of every chunk of the day's file."""
    (rel,) = store["trades"].index()["path"]
    f = store._files._open(str(root / rel))
    assert isinstance(f, _Layout)
    out = []
    for _, (_, _, dtype, refs) in f.columns.items():
        for offset, size, inner, inner_size, _ in refs:
            n = inner_size if inner >= 0 else size
            raw = os.pread(f.fd, n, offset + max(inner, 0))
            out.append((raw, np.empty(f.k, dtype), inner < 0))
    return out


def use(variant: str) -> None:
    """Route ``blosc.decompress`` through the C library or the package."""
    blosc.reset()
    if variant == "package":
        blosc._loaded, blosc._binding = True, None
    else:
        assert blosc.binding() is not None, blosc.why_not()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=21)
    args = ap.parse_args()
    blosc.package()  # imported up front: its import is not what is timed here
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Tickstore(root)
        store["trades"].insert(SYMBOL, "2024-08-08", trades(args.rows))
        work = day_chunks(store, root)
        nbytes = sum(d.nbytes for _, d, _ in work)
        table = store["trades"]

        def serial():
            for raw, dst, whole in work:
                chunks.decompress(raw, dst, whole_frame=whole)

        def parallel():
            chunks.run([functools.partial(chunks.decompress, raw, dst, whole_frame=whole) for raw, dst, whole in work], nbytes)

        def select():
            table.select_columns(SYMBOL, "2024-08-08", "2024-08-09")

        tasks = {"1 thread": serial, f"{chunks.THREADS} threads": parallel, "select_columns": select}
        times = {(t, v): [] for t in tasks for v in ("ctypes", "package")}
        for v in ("ctypes", "package"):  # warm-up
            use(v)
            for fn in tasks.values():
                fn()
        gc.disable()
        for r in range(args.rounds):
            for v in (("ctypes", "package") if r % 2 else ("package", "ctypes")):
                use(v)
                for t, fn in tasks.items():
                    t0 = time.perf_counter()
                    fn()
                    times[t, v].append(time.perf_counter() - t0)
        gc.enable()
        use("ctypes")
        store.close()
    print(f"{args.rows:,} trades: {len(work)} chunks, {nbytes / 1e6:.1f} MB decompressed; {args.rounds} rounds, "
          f"{os.cpu_count()} cores (shared machine)")
    print(f"{'task':<16} {'variant':<8} {'median ms':>10} {'best ms':>8} {'median GB/s':>12} {'best GB/s':>10}")
    for t in tasks:
        for v in ("ctypes", "package"):
            xs = times[t, v]
            med, best = statistics.median(xs), min(xs)
            print(f"{t:<16} {v:<8} {med * 1e3:>10.2f} {best * 1e3:>8.2f} {nbytes / med / 1e9:>12.2f} {nbytes / best / 1e9:>10.2f}")
        p, c = times[t, "package"], times[t, "ctypes"]
        per_round = statistics.median(a / b for a, b in zip(p, c))
        print(f"{t:<16} package/ctypes: median {statistics.median(p) / statistics.median(c):.2f}x, best {min(p) / min(c):.2f}x, "
              f"median of per-round ratios {per_round:.2f}x")


if __name__ == "__main__":
    main()
