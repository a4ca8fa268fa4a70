"""Frames/s of replaying the largest capture through parse + book + journal + store.

    python benchmarks/bench_replay.py [--repeat 3] [--file PATH] [--modes dry journal store full]

Default file: ../shared/data/hftbacktest/usdm/btcusdt_20240808.gz (93,954 frames: 66k
bookTicker, 21k trades, 6.5k depth@0ms diffs of ~68 levels each, 1 REST snapshot).
Prints the best of ``--repeat`` runs, wall clock and process CPU time (the CPU figure is
the one to compare on a shared machine), for:

- ``dry``:     capture read + parse + book + EventBatcher.drain, nothing written;
- ``journal``: the same, every frame first written to a ``Journal`` (default config:
  fdatasync every second from its thread), nothing stored;
- ``store``:   ``dry`` plus ``Table.append`` into a fresh store on a temporary folder;
- ``full``:    journal + store, the live collector's path (issue #3's target: >= 50,000
  frames/s on one core). ``journal - dry`` and ``store - dry`` isolate the two writers.

Runs alternate between the modes (round-robin, ``--repeat`` rounds) so that load from
other processes hits every mode alike.
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

from collectors.journal import Journal  # noqa: E402
from collectors.replay import replay  # noqa: E402
from tickstore import Tickstore  # noqa: E402

DATA = Path(os.environ.get("TICKSTORE_DATA", REPO.parent / "shared" / "data"))
DEFAULT = DATA / "hftbacktest" / "usdm" / "btcusdt_20240808.gz"
MODES = ("dry", "journal", "store", "full")


def _run(path: Path, mode: str):
    with tempfile.TemporaryDirectory() as root:
        root = Path(root)
        wall, cpu = time.perf_counter(), time.process_time()
        if mode == "dry":
            report = replay([path], store=None)
        elif mode == "journal":
            with Journal(root / "journal") as journal:
                report = replay([path], store=None, journal=journal)
        elif mode == "store":
            with Tickstore(root / "store") as store:
                report = replay([path], store=store)
        else:
            with Tickstore(root / "store") as store, Journal(root / "journal") as journal:
                report = replay([path], store=store, journal=journal)
        return report, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=DEFAULT)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    args = ap.parse_args()
    if not args.file.is_file():
        sys.exit(f"capture {args.file} not found (set TICKSTORE_DATA)")
    best: dict[str, tuple] = {}
    for _ in range(args.repeat):
        for mode in args.modes:
            report, wall, cpu = _run(args.file, mode)
            if mode not in best or cpu < best[mode][2]:
                best[mode] = (report, wall, cpu)
    for mode in args.modes:
        report, wall, cpu = best[mode]
        n = report.frames + report.rest_frames
        print(
            f"{mode:<7} {n} frames  wall {wall:.2f}s = {n / wall:>9,.0f} frames/s   "
            f"cpu {cpu:.2f}s = {n / cpu:>9,.0f} frames/s   rows {dict(sorted(report.rows.items()))}"
        )


if __name__ == "__main__":
    main()
