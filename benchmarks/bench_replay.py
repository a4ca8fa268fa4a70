"""Frames/s of replaying the largest capture through parse + book + batch (+ store append).

    python benchmarks/bench_replay.py [--repeat 3] [--file PATH]

Default file: ../shared/data/hftbacktest/usdm/btcusdt_20240808.gz (93,954 frames: 66k
bookTicker, 21k trades, 6.5k depth@0ms diffs of ~68 levels each, 1 REST snapshot).
Prints the best of ``--repeat`` runs, wall clock and process CPU time (the CPU figure is
the one to compare on a shared machine), for:

- ``dry``:   capture read + parse + book + EventBatcher.drain, nothing written;
- ``store``: the same plus ``Table.append`` into a fresh store on a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.replay import replay  # noqa: E402

DATA = Path(os.environ.get("TICKSTORE_DATA", REPO.parent / "shared" / "data"))
DEFAULT = DATA / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"


def _run(path: Path, with_store: bool):
    wall, cpu = time.perf_counter(), time.process_time()
    if with_store:
        from tickstore import Tickstore

        with tempfile.TemporaryDirectory() as root, Tickstore(root) as store:
            report = replay([path], store=store)
    else:
        report = replay([path], store=None)
    return report, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.file.is_file():
        sys.exit(f"capture {args.file} not found (set TICKSTORE_DATA)")
    for mode in ("dry", "store"):
        best = None
        for _ in range(args.repeat):
            report, wall, cpu = _run(args.file, mode == "store")
            if best is None or cpu < best[2]:
                best = (report, wall, cpu)
        report, wall, cpu = best
        n = report.frames + report.rest_frames
        print(
            f"{mode:<5} {n} frames  wall {wall:.2f}s = {n / wall:>9,.0f} frames/s   "
            f"cpu {cpu:.2f}s = {n / cpu:>9,.0f} frames/s   rows {dict(sorted(report.rows.items()))}"
        )


if __name__ == "__main__":
    main()
