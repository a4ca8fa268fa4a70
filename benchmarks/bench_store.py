"""Benchmark: this project's tickstore vs ArcticDB (LMDB) vs Behemoth's LocalTickstore, in one run.

    python benchmarks/bench_store.py --quick        # ~1/10 scale, a few minutes
    python benchmarks/bench_store.py                # full scale (see README)
    python benchmarks/bench_store.py --only 2,4     # some workloads only
    python benchmarks/bench_store.py --profile      # cProfile every measured store operation

Workloads (full scale; --quick divides sizes by ~10):

1. 4 years of 1-minute OHLCV bars for one symbol (1,461 days, 2.1M rows, ``ohlcv_1m``, month
   partitions), loaded day by day with ``insert`` (as a downloader does), then
   ``table.compact()`` once; select all 4 years.
2. 10 days x 1,000,000 trades: insert one day (fsync and checksums included) vs ArcticDB's
   ``append`` of the day; select one day and all 10 days; bytes on disk.
3. 20 versions of one 1M-trade day: select ``as_of`` version k vs the latest; ArcticDB reads
   ``as_of`` its version k.
4. An index of 50 symbols x 1,800 days (90,000 entries): one (symbol, day, as_of) lookup.
5. The ``tickstore`` command's start-up: ``--help`` (``python -m`` and the console script)
   and ``select ... -n 10`` of one day, each a new process, spawn to exit.

Every select is measured three ways, ours and ArcticDB's in alternation (ours, ArcticDB,
ours, ...) so that load from other processes hits both alike:

* fresh process: a new Python process imports the library, opens the store and times its
  first select (import and open are reported apart);
* cold: a fresh store object in this process (ours: ``Tickstore(root)``; ArcticDB: a new
  ``Arctic`` + ``get_library``), the OS page cache is not dropped;
* warm: the same store object again.

Each measure reports the median and the best of its runs, the ratio ArcticDB / ours of
both (> 1: we are faster), and the spread of the runs ((p75 - p25) / median). The machine's
own noise is measured by a fixed CPU task timed between the workloads. Results go to
``benchmarks/results/bench_<utc>_<scale>.json`` (every run's time) and a ``.txt`` copy of
the table; data lives in a temp dir under /tmp, removed at the end (``--keep``).
"""

from __future__ import annotations

import argparse
import compileall
import cProfile
import gc
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from behemoth import LATEST_AS_OF, BehemothIndex, BehemothTickstore  # noqa: E402

import tickstore  # noqa: E402
from tickstore import Tickstore  # noqa: E402
from tickstore.clock import MAX_NS, NS_PER_DAY  # noqa: E402
from tickstore.index import ENTRY, IndexCache, SymbolIndex  # noqa: E402
from tickstore.schemas import Partition  # noqa: E402

try:
    import arcticdb
except ImportError:  # dev extra only
    arcticdb = None

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SYMBOL = "binance:BTC/USDT:USDT"

FULL = dict(ohlcv_days=1461, trade_days=10, trades_per_day=1_000_000, versions=20, version_rows=1_000_000,
            idx_symbols=50, idx_days=1800, repeat=9, fresh=5, slow_repeat=2, lookups=20_000, as_of_rounds=15)
QUICK = dict(ohlcv_days=96, trade_days=10, trades_per_day=100_000, versions=20, version_rows=100_000,
             idx_symbols=50, idx_days=1800, repeat=7, fresh=3, slow_repeat=2, lookups=5_000, as_of_rounds=5)


# --------------------------------------------------------------------------------------------
# timing, reporting
# --------------------------------------------------------------------------------------------
def stats(times) -> dict:
    """best, median, spread ((p75 - p25) / median) and every run of a list of seconds."""
    times = [float(t) for t in times]
    med = statistics.median(times)
    if len(times) >= 4:
        q = statistics.quantiles(times, n=4)
        spread = (q[2] - q[0]) / med if med else 0.0
    else:
        spread = (max(times) - min(times)) / med if med else 0.0
    return dict(best=min(times), median=med, spread=spread, n=len(times), times=times)


def clock(fn):
    """(seconds, result) of ``fn()``; the cyclic GC is off while timing (as in ``timeit``)."""
    was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        r = fn()
        return time.perf_counter() - t0, r
    finally:
        if was:
            gc.enable()


def alternate(runs: dict, repeat: int) -> dict:
    """Call each ``runs[name]()`` (-> seconds) ``repeat`` times, in rounds that alternate
    their order; -> name -> stats."""
    times = {k: [] for k in runs}
    names = list(runs)
    for i in range(repeat):
        for k in names if i % 2 == 0 else names[::-1]:
            times[k].append(runs[k]())
    return {k: stats(v) for k, v in times.items()}


def fmt_s(v):
    if v is None:
        return "-"
    if v < 1e-3:
        return f"{v * 1e6:.1f} us"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def fmt_b(v):
    return "-" if v is None else f"{v / 2**20:.1f} MiB"


def ratio(base, ours):
    if base is None or ours is None or ours == 0:
        return "-"
    r = base / ours
    return f"{r:.0f}x" if r >= 100 else f"{r:.2f}x"


def tree_bytes(path: Path, pattern="*") -> int:
    return sum(p.stat().st_size for p in Path(path).rglob(pattern) if p.is_file())


def disk_bytes(path: Path) -> int:
    """Allocated bytes (LMDB's data.mdb is a sparse file: st_size is the map size)."""
    return sum(p.stat().st_blocks * 512 for p in Path(path).rglob("*") if p.is_file())


class Report:
    def __init__(self, args):
        self.args = args
        self.rows: list[dict] = []
        self.metrics: dict = {}
        self.targets: list[dict] = []
        self.profiles: dict[str, str] = {}
        self.notes: list[str] = []
        self.profile_ops: dict[str, callable] = {}
        self.missed_labels: set[str] = set()
        self.noise: list[float] = []
        self.load: list[tuple[float, float, float]] = []

    def metric(self, key, value):
        self.metrics[key] = value
        return value

    def row(self, workload, what, ours=None, arctic=None, behemoth=None, unit="s", note=""):
        """``ours``/``arctic``/``behemoth``: stats dicts (or plain numbers for bytes)."""
        self.rows.append(dict(workload=workload, what=what, ours=ours, arctic=arctic, behemoth=behemoth, unit=unit, note=note))

    def target(self, workload, name, ours, base, factor, kind, profile=None):
        """kind 'not_slower': ours <= base * factor; 'faster': base / ours >= factor;
        'abs': ours <= factor (seconds); 'lte': ours <= base (bytes)."""
        if ours is None or base is None:
            status = "SKIP"
        elif kind == "faster":
            status = "PASS" if base / ours >= factor else "MISS"
        elif kind == "not_slower":
            status = "PASS" if ours <= base * factor else "MISS"
        elif kind == "abs":
            status = "PASS" if ours <= factor else "MISS"
        else:
            status = "PASS" if ours <= base else "MISS"
        self.targets.append(dict(workload=workload, target=name, ours=ours, baseline=base, status=status))
        if status == "MISS" and profile is not None:
            self.missed_labels.add(profile)
        return status

    def against_arctic(self, workload, label, ours: dict, arc: dict | None, factor=1.0, profile=None):
        """Targets on the median and on the best: ours <= ArcticDB's * factor."""
        if arc is None:
            return
        what = "no slower than" if factor == 1.0 else f"within {factor:g}x of"
        self.target(workload, f"{label} {what} ArcticDB (median)", ours["median"], arc["median"], factor, "not_slower", profile)
        self.target(workload, f"{label} {what} ArcticDB (best)", ours["best"], arc["best"], factor, "not_slower", profile)

    def probe_noise(self, rounds=5):
        """The machine's noise: a fixed CPU and memory task (sort 1M floats), timed now."""
        a = np.random.default_rng(0).random(1_000_000)
        for _ in range(rounds):
            self.noise.append(clock(lambda: np.sort(a, kind="quicksort"))[0])
        self.load.append(os.getloadavg())


def profile(label: str, fn, report: Report, top=25):
    pr = cProfile.Profile()
    pr.enable()
    fn()
    pr.disable()
    out = io.StringIO()
    pstats.Stats(pr, stream=out).strip_dirs().sort_stats("cumulative").print_stats(top)
    out2 = io.StringIO()
    pstats.Stats(pr, stream=out2).strip_dirs().sort_stats("tottime").print_stats(15)
    report.profiles[label] = out.getvalue() + "\n--- by tottime ---\n" + out2.getvalue()


# --------------------------------------------------------------------------------------------
# fresh processes
# --------------------------------------------------------------------------------------------
_FRESH_OURS = textwrap.dedent(
    """
    import gc, json, sys, time
    t0 = time.perf_counter()
    import pandas as pd
    from tickstore import Tickstore
    t1 = time.perf_counter()
    a = json.loads(sys.argv[1])  # the select alone is timed: its arguments are made before
    store = Tickstore(a["root"])
    table = store[a["table"]]
    as_of = None if a["as_of"] is None else pd.Timestamp(a["as_of"], tz="UTC")
    start, end = pd.Timestamp(a["start"], tz="UTC"), pd.Timestamp(a["end"], tz="UTC")
    opened = time.perf_counter()
    gc.collect()  # as in-process (and in timeit): no collection inside the timed call
    gc.disable()
    t2 = time.perf_counter()
    r = table.select(a["symbol"], start, end, as_of=as_of)
    t3 = time.perf_counter()
    gc.enable()
    assert len(r) == a["rows"], (len(r), a["rows"])
    print(json.dumps(dict(imports=t1 - t0, open=opened - t1, select=t3 - t2)))
    """
)
_FRESH_ARCTIC = textwrap.dedent(
    """
    import gc, json, sys, time
    t0 = time.perf_counter()
    import pandas as pd
    import arcticdb
    t1 = time.perf_counter()
    a = json.loads(sys.argv[1])
    lib = arcticdb.Arctic(a["uri"]).get_library(a["library"])
    start, end = pd.Timestamp(a["start"], tz="UTC"), pd.Timestamp(a["end"], tz="UTC") - pd.Timedelta(1, "ns")
    opened = time.perf_counter()
    gc.collect()  # as in-process (and in timeit): no collection inside the timed call
    gc.disable()
    t2 = time.perf_counter()
    r = lib.read(a["symbol"], date_range=(start, end), as_of=a["as_of"]).data
    t3 = time.perf_counter()
    gc.enable()
    assert len(r) == a["rows"], (len(r), a["rows"])
    print(json.dumps(dict(imports=t1 - t0, open=opened - t1, select=t3 - t2)))
    """
)


def fresh(script: str, args: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", script, json.dumps(args, default=str)], capture_output=True, text=True,
                         env=env, timeout=600)
    if out.returncode:
        raise RuntimeError(f"fresh-process select failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh_pair(rep: Report, key: str, ours_args: dict, arc_args: dict | None, repeat: int) -> tuple[dict, dict | None]:
    """Fresh-process selects, ours and ArcticDB's alternating; -> (ours, arctic) stats of
    the select itself (imports and open are in the JSON)."""
    runs = {"ours": lambda: fresh(_FRESH_OURS, ours_args)}
    if arc_args is not None and arcticdb is not None:
        runs["arctic"] = lambda: fresh(_FRESH_ARCTIC, arc_args)
    got = {k: [] for k in runs}
    names = list(runs)
    for i in range(repeat):
        for k in names if i % 2 == 0 else names[::-1]:
            got[k].append(runs[k]())
    out = {}
    for k, v in got.items():
        out[k] = stats([r["select"] for r in v])
        rep.metrics[f"{key}_fresh_{k}"] = dict(out[k], imports=stats([r["imports"] for r in v]),
                                               open=stats([r["open"] for r in v]))
    return out["ours"], out.get("arctic")


def select_rows(rep: Report, W: str, label: str, measures: dict, arc_measures: dict | None, beh: dict | None, key: str,
                profile_prefix: str):
    """Rows and targets of one select workload: fresh process, cold, warm."""
    for how in ("fresh", "cold", "warm"):
        ours = measures[how]
        arc = arc_measures.get(how) if arc_measures else None
        rep.metrics[f"{key}_{how}"] = dict(ours=ours, arctic=arc)
        rep.row(W, f"select {label}, {how}", ours, arc, beh if how == "cold" else None,
                note="first select of a new process" if how == "fresh" else "")
        rep.against_arctic(W, f"select {label} ({how})", ours, arc, profile=f"{profile_prefix}_{'cold' if how == 'fresh' else how}")


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
def ohlcv_day(rng, day: pd.Timestamp, last_close: float):
    n = 1440
    idx = pd.date_range(day, periods=n, freq="1min", name="ts")
    steps = rng.normal(0, 8.0, n)
    close = np.round(last_close + np.cumsum(steps), 1)
    open_ = np.r_[last_close, close[:-1]]
    spread = np.abs(rng.normal(0, 5.0, n))
    high = np.round(np.maximum(open_, close) + spread, 1)
    low = np.round(np.minimum(open_, close) - spread, 1)
    vol = np.round(rng.exponential(25.0, n), 3)
    df = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": vol}, index=idx)
    return df, float(close[-1])


def trades_day(rng, day: pd.Timestamp, n: int, first_id: int, last_px: float):
    base = day.value
    ms = np.sort(rng.integers(0, 86_400_000, n))  # ms timestamps: many ties
    ts = base + ms * 1_000_000
    recv = ts + (rng.exponential(3.0, n) * 1e6).astype(np.int64) + 500_000
    price = np.round(last_px + np.cumsum(rng.normal(0, 0.6, n)), 1)
    qty = np.maximum(np.round(rng.exponential(0.05, n), 3), 0.001)
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    df = pd.DataFrame(
        {
            "recv_ts": pd.DatetimeIndex(recv.view("M8[ns]"), tz="UTC"),
            "trade_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "price": price,
            "qty": qty,
            "side": side,
        },
        index=pd.DatetimeIndex(ts.view("M8[ns]"), tz="UTC", name="ts"),
    )
    return df, float(price[-1])


class Arctic:
    """One ArcticDB LMDB store; ``reopen`` drops every handle first (LMDB allows one per process)."""

    def __init__(self, path: Path, library="bench"):
        self.uri = f"lmdb://{path}"
        self.path, self.library = path, library
        self.ac = arcticdb.Arctic(self.uri)
        self.lib = self.ac.get_library(library, create_if_missing=True)

    def reopen(self):
        self.lib = self.ac = None
        gc.collect()
        self.ac = arcticdb.Arctic(self.uri)
        self.lib = self.ac.get_library(self.library)
        return self.lib

    def close(self):
        self.lib = self.ac = None
        gc.collect()


def _iso(ts) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").tz_localize(None).isoformat()


# --------------------------------------------------------------------------------------------
# workloads
# --------------------------------------------------------------------------------------------
def w1_ohlcv(cfg, tmp: Path, rep: Report):
    W = "1 ohlcv"
    n_days = cfg["ohlcv_days"]
    days = pd.date_range("2020-01-01", periods=n_days, freq="D", tz="UTC")
    rng = np.random.default_rng(1)
    frames, px = [], 9000.0
    for d in days:
        f, px = ohlcv_day(rng, d, px)
        frames.append(f)
    n_rows = sum(len(f) for f in frames)
    start, end = days[0], days[-1] + pd.Timedelta(days=1)
    rep.notes.append(f"w1: {n_days} days, {n_rows:,} 1-minute bars, one symbol")

    # -- load, day by day
    root = tmp / "ours1"
    store = Tickstore(root)
    t = store["ohlcv_1m"]
    t_ins, commits = clock(lambda: [t.insert(SYMBOL, d, f, source="bench").committed_at for d, f in zip(days, frames)])
    half = n_days // 2  # as of the commit of day `half`: merged month files are filtered by their rows' _kt
    half_rows = sum(len(f) for f in frames[:half])
    files_before = len(t._index(SYMBOL).visible(None))
    t_cmp, merged = clock(lambda: t.compact())
    files_after = len(t._index(SYMBOL).visible(None))
    store.close()
    rep.metrics["w1_load_ours"] = dict(insert=t_ins, compact=t_cmp, files_before=files_before, files_after=files_after,
                                       partitions_merged=merged)
    rep.notes.append(f"w1: {files_before} visible files after the day-by-day load -> {files_after} after compact() "
                     f"({merged} partitions merged, {fmt_s(t_cmp)})")

    broot = tmp / "behemoth1" / "ohlcv_1m"
    beh = BehemothTickstore(broot)

    def beh_load():
        for d, f in zip(days, frames):
            beh.insert(SYMBOL, d.date(), f)
        beh.close()

    load_beh, _ = clock(beh_load)
    del beh
    load_arc, arc = None, None
    if arcticdb is not None:
        arc = Arctic(tmp / "arctic1")
        load_arc, _ = clock(lambda: [arc.lib.append("btc", f) for f in frames])
    rep.row(W, f"load {n_days} days (insert/day)", stats([t_ins + t_cmp]), stats([load_arc]) if load_arc else None,
            stats([load_beh]), note=f"ours = {fmt_s(t_ins)} inserts + {fmt_s(t_cmp)} compact; one run")
    del frames

    # -- select all
    R = cfg["repeat"]
    sel_end = end - pd.Timedelta(1, "ns")  # ArcticDB's and Behemoth's ranges are inclusive

    def ours_cold():
        s = Tickstore(root)
        el, r = clock(lambda: s["ohlcv_1m"].select(SYMBOL, start, end))
        assert len(r) == n_rows
        s.close()
        return el

    warm_store = Tickstore(root)
    warm_store["ohlcv_1m"].select(SYMBOL, start, end)

    def ours_warm():
        el, r = clock(lambda: warm_store["ohlcv_1m"].select(SYMBOL, start, end))
        assert len(r) == n_rows
        return el

    def arc_cold():
        lib = arc.reopen()
        el, r = clock(lambda: lib.read("btc", date_range=(start, sel_end)).data)
        assert len(r) == n_rows
        return el

    def arc_warm():
        el, r = clock(lambda: arc.lib.read("btc", date_range=(start, sel_end)).data)
        assert len(r) == n_rows
        return el

    cold = alternate({"ours": ours_cold, **({"arctic": arc_cold} if arc else {})}, R)
    if arc:
        arc_warm()
    warm = alternate({"ours": ours_warm, **({"arctic": arc_warm} if arc else {})}, R)
    f_ours, f_arc = fresh_pair(rep, "w1_select", dict(root=str(root), table="ohlcv_1m", symbol=SYMBOL, start=_iso(start),
                                                      end=_iso(end), as_of=None, rows=n_rows),
                               dict(uri=arc.uri, library="bench", symbol="btc", start=_iso(start), end=_iso(end), as_of=None,
                                    rows=n_rows) if arc else None, cfg["fresh"])
    rep.profile_ops["w1_select_cold"] = lambda: Tickstore(root)["ohlcv_1m"].select(SYMBOL, start, end)
    rep.profile_ops["w1_select_warm"] = lambda: warm_store["ohlcv_1m"].select(SYMBOL, start, end)

    def beh_select():
        b = BehemothTickstore(broot)  # opening loads index.h5, as a fresh LocalTickstore does
        el, r = clock(lambda: b.select(SYMBOL, start, sel_end))
        assert len(r) == n_rows, len(r)
        return el

    bsel = rep.metric("w1_select_behemoth", stats([beh_select() for _ in range(cfg["slow_repeat"])]))
    select_rows(rep, W, f"all {n_days} days", dict(fresh=f_ours, cold=cold["ours"], warm=warm["ours"]),
                dict(fresh=f_arc, cold=cold.get("arctic"), warm=warm.get("arctic")) if arc else None, bsel, "w1_select",
                "w1_select")
    rep.target(W, ">=100x faster than Behemoth (cold, median)", cold["ours"]["median"], bsel["median"], 100, "faster",
               "w1_select_cold")

    # -- as of half-way through the load: after compact() the month files hold rows of many
    # commits, so this read filters each merged file by its rows' knowledge time (_kt)
    as_of = commits[half - 1]

    def ours_as_of():
        el, r = clock(lambda: warm_store["ohlcv_1m"].select(SYMBOL, start, end, as_of=as_of))
        assert len(r) == half_rows, (len(r), half_rows)
        return el

    def arc_as_of():
        el, r = clock(lambda: arc.lib.read("btc", date_range=(start, sel_end), as_of=half - 1).data)
        assert len(r) == half_rows
        return el

    ours_as_of()
    past = alternate({"ours": ours_as_of, **({"arctic": arc_as_of} if arc else {})}, R)
    rep.metrics["w1_select_as_of_half"] = past
    rep.row(W, f"select as of day {half} (_kt filter), warm", past["ours"], past.get("arctic"),
            note=f"{half_rows:,} of the merged rows; ArcticDB as_of={half - 1}")
    rep.against_arctic(W, f"select as of day {half} (warm)", past["ours"], past.get("arctic"), profile="w1_as_of")
    rep.profile_ops["w1_as_of"] = lambda: warm_store["ohlcv_1m"].select(SYMBOL, start, end, as_of=as_of)
    if arc:
        arc.close()
    return warm_store


def w2_trades(cfg, tmp: Path, rep: Report):
    W = "2 trades"
    n_days, n = cfg["trade_days"], cfg["trades_per_day"]
    days = pd.date_range("2024-03-01", periods=n_days, freq="D", tz="UTC")
    rng = np.random.default_rng(2)
    root = tmp / "ours2"
    store = Tickstore(root)
    t = store["trades"]
    broot = tmp / "behemoth2" / "trades"
    beh = BehemothTickstore(broot)
    arc = Arctic(tmp / "arctic2") if arcticdb is not None else None
    ins = {"ours": [], "arctic": [], "behemoth": []}
    first_id, px = 1_000_000_000, 65000.0
    for i, d in enumerate(days):
        df, px = trades_day(rng, d, n, first_id, px)
        first_id += n
        runs = {"ours": lambda: t.insert(SYMBOL, d, df, source="bench"), "behemoth": lambda: beh.insert(SYMBOL, d.date(), df)}
        if arc is not None:
            runs["arctic"] = lambda: arc.lib.append("btc", df)
        for k in list(runs) if i % 2 == 0 else list(runs)[::-1]:  # alternate who goes first
            ins[k].append(clock(runs[k])[0])
        del df
    beh.close()
    ins = {k: stats(v) for k, v in ins.items() if v}
    rep.metrics["w2_insert"] = ins
    rep.row(W, f"insert 1 day of {n:,} (of {n_days})", ins["ours"], ins.get("arctic"), ins["behemoth"],
            note="ours: validation, sha256 + xxh3, fsyncs; ArcticDB: append")
    rep.against_arctic(W, "insert 1 day", ins["ours"], ins.get("arctic"), 1.25, "w2_insert")

    prof_df, _ = trades_day(np.random.default_rng(9), days[-1] + pd.Timedelta(days=5), n, 1, 100.0)
    prof_root = tmp / "ours2prof"

    def prof_insert():
        s = Tickstore(prof_root)
        s["trades"].insert(SYMBOL, days[-1] + pd.Timedelta(days=5), prof_df)
        s.close()

    rep.profile_ops["w2_insert"] = prof_insert
    store.close()

    R = cfg["repeat"]
    mid = days[n_days // 2]
    ranges = {
        "1 day": (mid, mid + pd.Timedelta(days=1), n),
        f"{n_days} days": (days[0], days[-1] + pd.Timedelta(days=1), n * n_days),
    }
    warm_store = Tickstore(root)
    for label, (a, b, rows) in ranges.items():
        key = f"w2_select_{label.replace(' ', '')}"

        def ours_cold(a=a, b=b, rows=rows):
            s = Tickstore(root)
            el, r = clock(lambda: s["trades"].select(SYMBOL, a, b))
            assert len(r) == rows, (len(r), rows)
            s.close()
            return el

        def ours_warm(a=a, b=b, rows=rows):
            el, r = clock(lambda: warm_store["trades"].select(SYMBOL, a, b))
            assert len(r) == rows
            return el

        def arc_cold(a=a, b=b, rows=rows):
            lib = arc.reopen()
            el, r = clock(lambda: lib.read("btc", date_range=(a, b - pd.Timedelta(1, "ns"))).data)
            assert len(r) == rows
            return el

        def arc_warm(a=a, b=b, rows=rows):
            el, r = clock(lambda: arc.lib.read("btc", date_range=(a, b - pd.Timedelta(1, "ns"))).data)
            assert len(r) == rows
            return el

        warm_store["trades"].select(SYMBOL, a, b)
        cold = alternate({"ours": ours_cold, **({"arctic": arc_cold} if arc else {})}, R)
        if arc:
            arc_warm()
        warm = alternate({"ours": ours_warm, **({"arctic": arc_warm} if arc else {})}, R)
        f_ours, f_arc = fresh_pair(rep, key, dict(root=str(root), table="trades", symbol=SYMBOL, start=_iso(a), end=_iso(b),
                                                  as_of=None, rows=rows),
                                   dict(uri=arc.uri, library="bench", symbol="btc", start=_iso(a), end=_iso(b), as_of=None,
                                        rows=rows) if arc else None, cfg["fresh"])
        rep.profile_ops[f"{key}_cold"] = lambda a=a, b=b: Tickstore(root)["trades"].select(SYMBOL, a, b)
        rep.profile_ops[f"{key}_warm"] = lambda a=a, b=b: warm_store["trades"].select(SYMBOL, a, b)

        def beh_sel(a=a, b=b, rows=rows):
            bb = BehemothTickstore(broot)
            el, r = clock(lambda: bb.select(SYMBOL, a, b - pd.Timedelta(1, "ns")))
            assert len(r) == rows, (len(r), rows)
            return el

        bsel = rep.metric(f"{key}_behemoth", stats([beh_sel() for _ in range(cfg["slow_repeat"])]))
        select_rows(rep, W, label, dict(fresh=f_ours, cold=cold["ours"], warm=warm["ours"]),
                    dict(fresh=f_arc, cold=cold.get("arctic"), warm=warm.get("arctic")) if arc else None, bsel, key, key)
        gc.collect()

    ours_b = tree_bytes(root / "trades", "*_[0-9][0-9][0-9][0-9].h5")
    ours_idx = tree_bytes(root / "trades" / "_index")
    beh_b = BehemothTickstore(broot).data_bytes()
    arc_b = disk_bytes(arc.path) if arc is not None else None
    rep.metrics["w2_bytes"] = dict(ours_files=ours_b, ours_index=ours_idx, behemoth_files=beh_b, arctic_allocated=arc_b)
    rep.row(W, f"bytes on disk, {n_days} days", ours_b, arc_b, beh_b, unit="B",
            note=f"ours index {ours_idx / 1024:.0f} KiB; ArcticDB = allocated")
    rep.target(W, "bytes <= Behemoth blosc-9", ours_b, beh_b, 1.0, "lte")
    if arc is not None:
        arc.close()
    return warm_store


def w3_versions(cfg, tmp: Path, rep: Report):
    W = "3 as_of"
    K, n = cfg["versions"], cfg["version_rows"]
    day = pd.Timestamp("2024-05-05", tz="UTC")
    df, _ = trades_day(np.random.default_rng(3), day, n, 1, 60000.0)
    root = tmp / "ours3"
    store = Tickstore(root)
    t = store["trades"]
    arc = Arctic(tmp / "arctic3") if arcticdb is not None else None
    commits = []
    rng = np.random.default_rng(33)
    for k in range(1, K + 1):
        if k > 1:  # a small correction: a few prices move by a tick
            pos = rng.integers(0, n, 10)
            df.iloc[pos, df.columns.get_loc("price")] = df["price"].to_numpy()[pos] + 0.1
        commits.append(t.insert(SYMBOL, day, df, reason=f"correction {k}", source="bench").committed_at)
        if arc is not None:
            arc.lib.write("btc", df)
    a, b = day, day + pd.Timedelta(days=1)
    t.select(SYMBOL, a, b)

    # warm: interleaved rounds (latest, v1, ArcticDB v1, v2, ArcticDB v2, ...) so that load
    # from other processes hits every version, and both stores, alike
    ours = [[] for _ in range(K + 1)]  # [latest, v1..vK]
    theirs = [[] for _ in range(K + 1)]  # [latest, version 0..K-1]
    for _ in range(cfg["as_of_rounds"]):
        for i, as_of in enumerate([None, *commits]):
            el, r = clock(lambda: t.select(SYMBOL, a, b, as_of=as_of))
            assert len(r) == n
            ours[i].append(el)
            del r
            if arc is not None:
                el, r = clock(lambda: arc.lib.read("btc", as_of=None if i == 0 else i - 1).data)
                assert len(r) == n
                theirs[i].append(el)
                del r
    latest = stats(ours[0])
    as_of_all = stats([x for xs in ours[1:] for x in xs])
    per_k_median = [statistics.median(x) for x in ours[1:]]
    rep.metrics["w3_warm"] = dict(latest=latest, as_of_all=as_of_all, per_k_median=per_k_median,
                                  per_k_best=[min(x) for x in ours[1:]])
    arc_latest = stats(theirs[0]) if arc else None
    arc_as_of = stats([x for xs in theirs[1:] for x in xs]) if arc else None
    rep.metrics["w3_warm_arctic"] = dict(latest=arc_latest, as_of_all=arc_as_of)
    rep.row(W, f"select latest (1 day, {n:,} rows), warm", latest, arc_latest)
    rep.against_arctic(W, "select latest (warm)", latest, arc_latest, profile="w3_latest")

    # cold (a fresh store object) and fresh process, as of the first version
    def ours_cold():
        s = Tickstore(root)
        el, r = clock(lambda: s["trades"].select(SYMBOL, a, b, as_of=commits[0]))
        assert len(r) == n
        s.close()
        return el

    def arc_cold():
        lib = arc.reopen()
        el, r = clock(lambda: lib.read("btc", as_of=0).data)
        assert len(r) == n
        return el

    cold = alternate({"ours": ours_cold, **({"arctic": arc_cold} if arc else {})}, cfg["repeat"])
    f_ours, f_arc = fresh_pair(rep, "w3_select_as_of", dict(root=str(root), table="trades", symbol=SYMBOL, start=_iso(a),
                                                            end=_iso(b), as_of=int(commits[0].value), rows=n),
                               dict(uri=arc.uri, library="bench", symbol="btc", start=_iso(a), end=_iso(b), as_of=0, rows=n)
                               if arc else None, cfg["fresh"])
    select_rows(rep, W, f"as_of v1..v{K}", dict(fresh=f_ours, cold=cold["ours"], warm=as_of_all),
                dict(fresh=f_arc, cold=cold.get("arctic"), warm=arc_as_of) if arc else None, None, "w3_select_as_of", "w3_as_of")
    rep.rows[-3]["note"] = "as of v1 (the oldest); ArcticDB as_of=0"
    rep.rows[-2]["note"] = "as of v1"
    rep.rows[-1]["note"] = f"every k, {cfg['as_of_rounds']} rounds"
    worst = max(per_k_median)
    rep.row(W, f"  worst k (median of its runs) / latest", stats([worst]), None,
            note=f"{worst / latest['median']:.2f} of latest; max/min over k {max(per_k_median) / min(per_k_median):.2f}")
    rep.target(W, "as_of within 10% of latest (worst k, medians)", worst, latest["median"], 1.10, "not_slower", "w3_as_of")
    rep.target(W, "flat from 1 to K (max/min of medians <= 1.10)", max(per_k_median), min(per_k_median), 1.10, "not_slower")
    rep.profile_ops["w3_as_of_warm"] = lambda: t.select(SYMBOL, a, b, as_of=commits[0])
    rep.profile_ops["w3_as_of_cold"] = lambda: Tickstore(root)["trades"].select(SYMBOL, a, b, as_of=commits[0])
    rep.profile_ops["w3_latest"] = lambda: t.select(SYMBOL, a, b)
    if arc is not None:
        arc.close()
    return store


def w4_index(cfg, tmp: Path, rep: Report):
    W = "4 index"
    n_sym, n_days = cfg["idx_symbols"], cfg["idx_days"]
    root = tmp / "ours4"
    store = Tickstore(root)
    table = "trades"
    part = Partition.DAY
    symbols = [f"binance:S{i:03d}/USDT:USDT" for i in range(n_sym)]
    first_day = int(np.datetime64("2020-01-01", "D").astype("i8"))
    parts = np.arange(first_day, first_day + n_days, dtype=np.int64)
    t0_ns = pd.Timestamp("2025-01-01", tz="UTC").value
    build_t0 = time.perf_counter()
    cache = IndexCache(store.root)
    for s in symbols:
        e = np.zeros(n_days, ENTRY)
        e["partition"] = parts
        e["version"] = 1
        e["committed_at"] = t0_ns + np.arange(n_days) * 1_000_000_000
        e["superseded_at"] = MAX_NS
        e["op"] = b"insert"
        e["rows"] = 1000
        e["first_ts"] = parts * NS_PER_DAY
        e["last_ts"] = parts * NS_PER_DAY + NS_PER_DAY - 1
        e["size"] = 40_000
        e["checksum"] = b"0" * 64
        e["source"] = b"bench"
        cache.put(SymbolIndex(table, s, part, e))
    build_s = time.perf_counter() - build_t0
    rng = np.random.default_rng(4)
    qs = [(symbols[i], int(parts[j])) for i, j in zip(rng.integers(0, n_sym, cfg["lookups"]), rng.integers(0, n_days, cfg["lookups"]))]
    as_of_ns = t0_ns + n_days * 1_000_000_000  # everything visible
    idxs = store._indexes
    idxs.get(table, symbols[0], part)  # warm this symbol; the loop below loads the rest once
    for s in symbols:
        idxs.get(table, s, part)
    found = sum(len(idxs.get(table, s, part).lookup(d, as_of_ns)) for s, d in qs[:200])
    assert found == 200, found

    def ours_batch():
        t0 = time.perf_counter()
        for s, d in qs:
            idxs.get(table, s, part).lookup(d, as_of_ns)
        return (time.perf_counter() - t0) / len(qs)

    ours = rep.metric("w4_lookup_ours", stats([ours_batch() for _ in range(5)]))

    def ours_lookup_only():
        loaded = {s: idxs.get(table, s, part) for s in symbols}
        t0 = time.perf_counter()
        for s, d in qs:
            loaded[s].lookup(d, as_of_ns)
        return (time.perf_counter() - t0) / len(qs)

    only = rep.metric("w4_lookup_ours_no_stat", stats([ours_lookup_only() for _ in range(5)]))

    def ours_cold_one():
        s2 = Tickstore(root)
        sym, d = qs[0]
        t0 = time.perf_counter()
        s2._indexes.get(table, sym, part).lookup(d, as_of_ns)
        return time.perf_counter() - t0

    cold = rep.metric("w4_lookup_ours_cold", stats([ours_cold_one() for _ in range(5)]))

    # Behemoth: one 90k-row DataFrame with a (symbol, date, version) MultiIndex
    dates = pd.DatetimeIndex((parts * NS_PER_DAY).view("M8[ns]"))
    rows = pd.DataFrame(
        {
            "symbol": np.repeat(symbols, n_days),
            "date": np.tile(dates, n_sym),
            "version": 0,
            "start_time": pd.Timestamp.min,
            "end_time": LATEST_AS_OF,
            "path": [f"/x/{i}.h5" for i in range(n_sym * n_days)],
        }
    )
    bidx = BehemothIndex.from_rows(tmp / "behemoth4_index.h5", "trades", rows)
    bidx.flush()
    as_of_naive = pd.Timestamp(as_of_ns).tz_localize(None)
    bqs = [(s, pd.Timestamp(int(d) * NS_PER_DAY).date()) for s, d in qs[:200]]
    assert all(len(bidx.select(s, d, d, as_of_naive)) == 1 for s, d in bqs[:5])

    def beh_batch():
        t0 = time.perf_counter()
        for s, d in bqs:
            bidx.select(s, d, d, as_of_naive)
        return (time.perf_counter() - t0) / len(bqs)

    beh = rep.metric("w4_lookup_behemoth", stats([beh_batch() for _ in range(3)]))
    rep.metrics["w4_build"] = dict(seconds=build_s, entries=n_sym * n_days)
    rep.row(W, f"lookup (sym, day, as_of) in {n_sym * n_days:,} entries", ours, None, beh,
            note=f"mean of {len(qs):,} random lookups incl. IndexCache.get (stat)")
    rep.row(W, "  same, index object already in hand", only, None, beh)
    rep.row(W, "  first lookup on a fresh store (loads index)", cold)
    rep.target(W, "lookup < 50 us (median)", ours["median"], 50e-6, 50e-6, "abs", "w4_lookup")
    rep.profile_ops["w4_lookup"] = lambda: [idxs.get(table, s, part).lookup(d, as_of_ns) for s, d in qs]
    return store


def w5_cli(cfg, tmp: Path, rep: Report):
    """Start-up of the ``tickstore`` command: ``--help`` and a ``select -n 10`` of one day,
    each a new process timed from spawn to exit (what a user waits for)."""
    W = "5 cli"
    root = tmp / "ours2"  # workload 2's store when it ran
    day = pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(days=cfg["trade_days"] // 2)
    if not (root / "trades").is_dir():
        root = tmp / "ours5"
        with Tickstore(root) as s:
            df, _ = trades_day(np.random.default_rng(5), day, cfg["trades_per_day"], 1, 65000.0)
            s["trades"].insert(SYMBOL, day, df, source="bench")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    # ``main`` compiled the package's bytecode (see there); every start compiling the read
    # path's source instead (~40-55 ms) is measured apart, on a copy without bytecode
    source_only = tmp / "source-only"
    shutil.rmtree(source_only, ignore_errors=True)
    shutil.copytree(REPO / "tickstore", source_only / "tickstore", ignore=shutil.ignore_patterns("__pycache__"))
    no_cache = {**env, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": os.pathsep.join([str(source_only), env["PYTHONPATH"]])}
    script = Path(sys.executable).with_name("tickstore")  # the console script pip made
    select = ["--root", str(root), "select", "trades", SYMBOL, "--start", _iso(day), "--end",
              _iso(day + pd.Timedelta(days=1)), "-n", "10"]
    commands = {"python -m tickstore.cli --help": [sys.executable, "-m", "tickstore.cli", "--help"]}
    if script.is_file():
        commands["tickstore --help (console script)"] = [str(script), "--help"]
    commands["python -m tickstore.cli select -n 10"] = [sys.executable, "-m", "tickstore.cli", *select]
    if script.is_file():
        commands["tickstore select -n 10 (console script)"] = [str(script), *select]
    commands["python -c pass (Python itself)"] = [sys.executable, "-c", "pass"]
    commands["select -n 10, our source compiled every start"] = [sys.executable, "-m", "tickstore.cli", *select]

    def run(cmd, name=""):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=no_cache if "compiled" in name else env, timeout=120,
                             cwd=tmp)  # not the repository: ``-m`` puts the working directory first on sys.path
        el = time.perf_counter() - t0
        if out.returncode:
            raise RuntimeError(f"{cmd} failed: {out.stderr[-2000:]}")
        return el

    got = alternate({k: (lambda c=c, k=k: run(c, k)) for k, c in commands.items()}, max(cfg["repeat"], 9))
    rep.metrics["w5_cli"] = got
    for k, v in got.items():
        compiled = "compiled" in k
        rep.row(W, k, v, note="no bytecode cache, for scale" if compiled else "spawn to exit")
        if "pass" not in k and not compiled:
            rep.target(W, f"{k} < 0.3 s (median)", v["median"], 0.3, 0.3, "abs")
    return None


# --------------------------------------------------------------------------------------------
def print_report(rep: Report, cfg, scale, elapsed):
    lines = [
        f"tickstore benchmark ({scale} scale) - {time.strftime('%Y-%m-%d %H:%M:%S')} - {elapsed:.0f} s",
        f"python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}, "
        f"arcticdb {getattr(arcticdb, '__version__', 'missing')}, cpus {os.cpu_count()}",
    ]
    if rep.noise:
        nz = stats(rep.noise)
        loads = ", ".join(f"{la[0]:.1f}" for la in rep.load)
        lines.append(
            f"machine noise: sorting 1M floats {len(rep.noise)} times through the run: median {fmt_s(nz['median'])}, best "
            f"{fmt_s(nz['best'])}, spread (p75-p25)/median {nz['spread']:.2f}, worst/median {max(rep.noise) / nz['median']:.2f}; "
            f"1-minute load average at the probes: {loads}"
        )
    hdr = (f"{'workload':9} {'measure':34} {'ours med':>9} {'ours best':>9} {'Arc med':>9} {'Arc best':>9} "
           f"{'Arc/ours med':>12} {'best':>6} {'spread o/a':>10} {'Behemoth':>9}  note")
    lines += [hdr, "-" * len(hdr)]
    for r in rep.rows:
        o, a, b = r["ours"], r["arctic"], r["behemoth"]
        if r["unit"] == "B":
            lines.append(f"{r['workload']:9} {r['what'][:34]:34} {fmt_b(o):>9} {'':>9} {fmt_b(a):>9} {'':>9} "
                         f"{ratio(a, o):>12} {'':>6} {'':>10} {fmt_b(b):>9}  {r['note']} (bytes: ratio = theirs / ours)")
            continue
        om, ob = (o["median"], o["best"]) if o else (None, None)
        am, ab = (a["median"], a["best"]) if a else (None, None)
        spread = f"{o['spread']:.2f}/{a['spread']:.2f}" if o and a else (f"{o['spread']:.2f}/-" if o else "-")
        lines.append(f"{r['workload']:9} {r['what'][:34]:34} {fmt_s(om):>9} {fmt_s(ob):>9} {fmt_s(am):>9} {fmt_s(ab):>9} "
                     f"{ratio(am, om):>12} {ratio(ab, ob):>6} {spread:>10} {fmt_s(b['median'] if b else None):>9}  {r['note']}")
    lines += ["", "ratios: ArcticDB time / our time, > 1: we are faster (median / best of the runs); spread: (p75 - p25) / "
              "median of our / ArcticDB's runs", "", "targets:"]
    lines += [f"  [{t['status']:4}] {t['workload']:9} {t['target']}" for t in rep.targets]
    if rep.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in rep.notes)
    text = "\n".join(lines)
    print(text)
    return text


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced scale (~1/10)")
    p.add_argument("--only", default="1,2,3,4,5", help="comma-separated workloads to run (default all)")
    p.add_argument("--profile", action="store_true", help="cProfile every measured store op (not only misses)")
    p.add_argument("--no-profile", action="store_true", help="do not profile missed targets")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir")
    p.add_argument("--tmp", default="/tmp", help="parent dir of the temp data dir")
    args = p.parse_args(argv)
    cfg = dict(QUICK if args.quick else FULL)
    scale = "quick" if args.quick else "full"
    only = {int(x) for x in args.only.split(",") if x.strip()}
    if arcticdb is None:
        print("arcticdb is not installed (pip install -e .[dev]): ArcticDB comparisons are skipped")
    rep = Report(args)
    tmp = Path(tempfile.mkdtemp(prefix="tickstore-bench-", dir=args.tmp))
    keep_alive = []
    t_start = time.perf_counter()
    # The package's bytecode, as ``pip install`` writes it for an installed package (and
    # ArcticDB has it): an editable checkout writes it on first import, unless
    # PYTHONDONTWRITEBYTECODE is set, as on the test machine; then every new process
    # (fresh-process selects, workload 5) would compile what it imports of our source.
    compileall.compile_dir(str(REPO / "tickstore"), quiet=1)
    try:
        rep.probe_noise()
        for w, fn in [(1, w1_ohlcv), (2, w2_trades), (3, w3_versions), (4, w4_index), (5, w5_cli)]:
            if w in only:
                t0 = time.perf_counter()
                print(f"... workload {w}", flush=True)
                keep_alive.append(fn(cfg, tmp, rep))
                print(f"    done in {time.perf_counter() - t0:.1f} s", flush=True)
                gc.collect()
                rep.probe_noise()
        if not args.no_profile:
            labels = rep.profile_ops if args.profile else sorted(rep.missed_labels & set(rep.profile_ops))
            for label in labels:
                print(f"... profiling {label}", flush=True)
                profile(label, rep.profile_ops[label], rep)
        elapsed = time.perf_counter() - t_start
        text = print_report(rep, cfg, scale, elapsed)
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = RESULTS_DIR / f"bench_{stamp}_{scale}.json"
        out.write_text(json.dumps(dict(scale=scale, config=cfg, elapsed_s=elapsed, rows=rep.rows, targets=rep.targets,
                                       metrics=rep.metrics, notes=rep.notes, noise=rep.noise, load=rep.load,
                                       profiles=rep.profiles, tickstore=getattr(tickstore, "__version__", None),
                                       arcticdb=getattr(arcticdb, "__version__", None)), indent=1, default=str))
        (RESULTS_DIR / f"bench_{stamp}_{scale}.txt").write_text(
            text + "\n\n" + "\n\n".join(f"=== profile {k} ===\n{v}" for k, v in rep.profiles.items()))
        for k, v in rep.profiles.items():
            print(f"\n=== profile {k} (top by cumulative time) ===")
            print("\n".join(v.splitlines()[:60]))
        print(f"\nresults: {out}")
    finally:
        for s in keep_alive:
            if s is not None and hasattr(s, "close"):
                s.close()
        keep_alive.clear()
        gc.collect()
        if args.keep:
            print(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
