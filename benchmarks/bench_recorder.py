"""Recorder soak: a high-frequency desk's recorder (44 USD-M pairs, ``depth5@100ms`` +
trades) against the simulated Binance for a bounded time, watching what grows.

    python benchmarks/bench_recorder.py [--minutes 10] [--pairs 44] [--sample-every 30]
                                        [--trades-per-tick 1.0] [--flush-interval 2.0]
                                        [--tracemalloc] [--keep] [--tmp DIR]

The simulator (``collectors.simulator``, 44 USD-M pairs, 100 ms steps: a ``depth5@100ms``
frame per pair and step, Poisson(``--trades-per-tick``) trades) runs in this process; the
real ``Collector`` (channels ``book5`` + ``trades``, a book row per partial-book frame,
``flush_interval_s`` = 2 s, the journal deleting committed segments as in production)
runs as a child process, so its RSS and CPU are its own. Every ``--sample-every`` seconds:
the child's RSS and CPU share, rows stored, data files, index entries, store and journal
bytes. At the end the child gets SIGTERM (a clean stop: everything flushed, every
partition it wrote merged into one file) and the closed store is measured: files per
(table, symbol, day), disk against the same rows inserted at once into a fresh store (one
``insert`` per symbol-day) and against the rows' in-memory bytes.

``--merge-day`` measures instead what bounds the recorder's RSS over a whole day: the
memory of closing one pair's full day of ``depth5@100ms`` book (864,000 rows of
``bench_live.book_day`` appended as 7 segments, then ``Table.compact``), in a fresh
process: RSS before, peak during, after.

``--tracemalloc`` runs the child under ``tracemalloc`` (slower) and writes the top
allocation growth since the end of warm-up (a quarter of the run) to
``<tmp>/tracemalloc.txt`` at every sample and at the stop: where RSS growth comes from.

Targets (issue 8): RSS flat within 10% after warm-up; <= 4 files per closed day (1 after
a stop); disk <= 1.5x one insert; index entries per partition, not per append. The
simulator, the child and this process share the machine's 2 cores with whatever else
runs: CPU shares and rates are of a shared box.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _child import stop_child  # noqa: E402 - benchmarks/ is the script's folder
from collectors.collector import Collector, CollectorConfig  # noqa: E402
from collectors.exchanges.binance import ENDPOINTS, Channel, Endpoints, Market  # noqa: E402
from collectors.simulator import Simulator, SimulatorConfig  # noqa: E402
from tickstore import Tickstore  # noqa: E402

BASES = (
    "BTC ETH BNB SOL XRP DOGE ADA AVAX LINK DOT LTC BCH TRX ATOM UNI ETC FIL APT ARB OP NEAR AAVE "
    "SUI INJ SEI TIA WLD FTM SAND MANA AXS GALA CRV LDO DYDX RUNE STX IMX ICP HBAR XLM VET ALGO EOS"
).split()
TABLES = ("book", "trades", "gaps")


# -- the child: the recorder -------------------------------------------------------------------
def child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = CollectorConfig(
        store=spec["store"], journal=spec["journal"], symbols=tuple(spec["symbols"]),
        channels=(Channel.BOOK5, Channel.TRADES),
        endpoints={Market.USDM: Endpoints(spec["ws"], spec["rest"], ENDPOINTS[Market.USDM].depth_path)},
        flush_interval_s=spec["flush_interval_s"],
    )
    stop = threading.Event()
    if spec["tracemalloc"]:
        import tracemalloc

        tracemalloc.start(8)
        threading.Thread(target=_trace, args=(spec, stop), daemon=True).start()
    # the store's share: wall and thread CPU time of the processor thread inside StoreWriter.write
    # (appends, their dedup and size-tier merges; chunk compression on the pool's threads not
    # included in the CPU figure)
    from collectors.writer import StoreWriter

    busy = {"wall_s": 0.0, "thread_cpu_s": 0.0, "writes": 0}
    write = StoreWriter.write

    def timed(self, **kw):
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return write(self, **kw)
        finally:
            busy["wall_s"] += time.perf_counter() - t0
            busy["thread_cpu_s"] += time.thread_time() - c0
            busy["writes"] += 1

    StoreWriter.write = timed
    c = Collector(cfg)
    c.run()
    stop.set()
    if spec["tracemalloc"]:
        _trace_report(spec, final=True)
    print("STATS " + json.dumps(c.stats.as_dict()), flush=True)
    print("STORE " + json.dumps(busy), flush=True)


_BASE = None  # the tracemalloc snapshot at the end of warm-up


def _trace(spec: dict, stop: threading.Event) -> None:
    import gc
    import tracemalloc

    global _BASE
    if stop.wait(spec["warmup_s"]):
        return
    gc.collect()
    _BASE = tracemalloc.take_snapshot()
    while not stop.wait(spec["sample_every"]):
        _trace_report(spec, final=False)


def _trace_report(spec: dict, *, final: bool) -> None:
    import tracemalloc

    if _BASE is None:
        return
    snap = tracemalloc.take_snapshot()
    filters = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap*")]
    diff = snap.filter_traces(filters).compare_to(_BASE.filter_traces(filters), "traceback")
    traced, peak = tracemalloc.get_traced_memory()
    lines = [f"{time.strftime('%H:%M:%S')} {'final' if final else 'sample'}: traced {traced / 2**20:.1f} MB (peak {peak / 2**20:.1f})"]
    for stat in diff[:15]:
        lines.append(f"{stat.size_diff / 1024:+10.1f} KiB {stat.count_diff:+8d} blocks  now {stat.size / 1024:.1f} KiB")
        lines += [f"        {fr.filename}:{fr.lineno}" for fr in list(stat.traceback)[-6:]]
    Path(spec["trace_out"]).write_text("\n".join(lines) + "\n")


# -- the parent ----------------------------------------------------------------------------------
def _proc(pid: int) -> tuple[float, float]:
    """(RSS MB, CPU seconds) of a process."""
    try:
        rss = next(int(ln.split()[1]) / 1024 for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("VmRSS:"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return rss, cpu
    except (OSError, StopIteration, ValueError, IndexError):
        return float("nan"), float("nan")


def _tree_bytes(path: Path) -> tuple[int, int]:
    """(bytes, data files) under ``path`` (data files: ``*.h5`` outside ``_index``)."""
    size = files = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                size += os.stat(os.path.join(dirpath, n)).st_size
            except FileNotFoundError:
                continue
            if n.endswith(".h5") and not n.startswith(".") and not dirpath.endswith("_index"):
                files += 1
    return size, files


def _index_stats(root: Path) -> dict:
    """Index entries and rows of every table (a fresh reader: what any process sees)."""
    out = {"entries": 0, "visible_entries": 0, "partitions": 0, "rows": Counter()}
    if not root.exists():
        return out
    with Tickstore(root) as store:
        for name in store.tables():
            idx = store[name].index()
            if idx.empty:
                continue
            vis = idx[idx["superseded_at"].isna()]
            out["entries"] += len(idx)
            out["visible_entries"] += len(vis)
            out["partitions"] += len(vis.index.unique())
            out["rows"][name] += int(vis["rows"].sum())
    return out


def run(args) -> dict:
    pairs = tuple(f"binance:{b}/USDT:USDT" for b in BASES[: args.pairs])
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="tickstore-recorder-"))
    tmp.mkdir(parents=True, exist_ok=True)
    store, jdir = tmp / "store", tmp / "journal"
    sim = Simulator(SimulatorConfig(symbols=pairs, seed=args.seed, trades_per_tick=args.trades_per_tick, liquidation_prob=0.0,
                                    max_seconds=args.minutes * 60 + 3600)).start()
    ep = sim.endpoints(Market.USDM)
    duration = args.minutes * 60
    spec = {"store": str(store), "journal": str(jdir), "symbols": list(pairs), "ws": ep.ws, "rest": ep.rest,
            "flush_interval_s": args.flush_interval, "tracemalloc": args.tracemalloc, "warmup_s": duration / 4,
            "sample_every": args.sample_every, "trace_out": str(tmp / "tracemalloc.txt")}
    spec_path = tmp / "spec.json"
    spec_path.write_text(json.dumps(spec))
    log = open(tmp / "collector.log", "a")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(spec_path)], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)
    self_cpu0 = time.process_time()
    t0 = time.monotonic()
    samples = []
    time.sleep(min(5.0, args.sample_every))  # the first sample once the child is up
    print(f"{'t_s':>6} {'rss_mb':>7} {'cpu%':>5} {'book_rows':>10} {'trades':>8} {'files':>6} {'entries':>7} "
          f"{'store_mb':>8} {'journal_mb':>10}", flush=True)
    try:
        next_sample = t0
        while True:
            now = time.monotonic()
            if now >= next_sample:
                rss, cpu = _proc(proc.pid)
                disk, files = _tree_bytes(store)
                jbytes, _ = _tree_bytes(jdir)
                ix = _index_stats(store)
                s = {"t_s": round(now - t0, 1), "rss_mb": round(rss, 1), "cpu_s": round(cpu, 1),
                     "cpu_share": round(cpu / max(now - t0, 1e-9), 3), "book_rows": ix["rows"]["book"],
                     "trade_rows": ix["rows"]["trades"], "files": files, "index_entries": ix["entries"],
                     "store_bytes": disk, "journal_bytes": jbytes}
                samples.append(s)
                print(f"{s['t_s']:6.0f} {rss:7.1f} {100 * s['cpu_share']:5.1f} {s['book_rows']:10d} {s['trade_rows']:8d} "
                      f"{files:6d} {s['index_entries']:7d} {disk / 2**20:8.1f} {jbytes / 2**20:10.2f}", flush=True)
                next_sample = now + args.sample_every
            if now - t0 >= duration or proc.poll() is not None:
                break
            time.sleep(min(1.0, max(0.0, next_sample - time.monotonic())))
        sim_cpu = time.process_time() - self_cpu0
        rss_before_stop, cpu_total = _proc(proc.pid)
        stop0 = time.monotonic()
        out = stop_child(proc, 600)
        stop_s = time.monotonic() - stop0
        elapsed = stop0 - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        sim.stop()
        log.close()
    stats = next((json.loads(ln[6:]) for ln in (out or "").splitlines() if ln.startswith("STATS ")), {})
    busy = next((json.loads(ln[6:]) for ln in (out or "").splitlines() if ln.startswith("STORE ")), {})
    result = {"minutes": round(elapsed / 60, 2), "pairs": len(pairs), "child_exit": proc.returncode, "stop_s": round(stop_s, 1),
              "child_cpu_share": round(cpu_total / elapsed, 3), "this_process_cpu_share": round(sim_cpu / elapsed, 3),
              "frames_sent": sim.sent.frames, "stats": stats, "store_busy": busy, "samples": samples, "rss_before_stop_mb": round(rss_before_stop, 1)}
    result.update(_closed(store, tmp))
    if args.tracemalloc and (tmp / "tracemalloc.txt").exists():
        result["tracemalloc"] = (tmp / "tracemalloc.txt").read_text()
    if not args.keep and args.tmp is None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result["kept"] = str(tmp)
    return result


def _closed(root: Path, tmp: Path) -> dict:
    """The store after the stop: files per (table, symbol, partition), disk against one
    insert of the same rows and against their in-memory bytes."""
    disk, files = _tree_bytes(root)
    ix = _index_stats(root)
    per_part = Counter()
    for p in root.rglob("*.h5"):
        rel = p.relative_to(root)
        if "_index" not in rel.parts and not p.name.startswith("."):
            per_part[(rel.parts[0], str(rel.parent), p.name.rsplit("_", 1)[0])] += 1
    fresh = tmp / "one_insert"
    shutil.rmtree(fresh, ignore_errors=True)
    row_bytes = 0
    with Tickstore(root) as store, Tickstore(fresh) as once:
        for name in store.tables():
            t, o = store[name], once[name]
            for sym in t.symbols():
                df = t.select(sym)
                row_bytes += int(df.memory_usage(index=True, deep=True).sum())
                for day, part in df.groupby(df.index.floor("D")):
                    o.insert(sym, day, part)
    once_disk, once_files = _tree_bytes(fresh)
    shutil.rmtree(fresh, ignore_errors=True)
    return {"closed_files": files, "closed_index_entries": ix["entries"], "closed_store_bytes": disk,
            "max_files_per_partition": max(per_part.values(), default=0), "rows": dict(ix["rows"]),
            "one_insert_bytes": once_disk, "one_insert_files": once_files,
            "disk_vs_one_insert": round(disk / max(once_disk, 1), 3), "row_bytes_in_memory": row_bytes,
            "disk_vs_row_bytes": round(disk / max(row_bytes, 1), 3)}


def merge_day(tmp: Path) -> dict:
    """Peak RSS of closing one pair's day of depth5@100ms book (see the module doc)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_live import book_day

    root, sym = tmp / "merge_day", "binance:BTC/USDT:USDT"
    df = book_day()
    with Tickstore(root) as store:
        n = -(-len(df) // 7)
        for i in range(7):  # 7 segments of tier 3: under FANOUT, so none merges before the close
            store["book"].append(sym, df.iloc[i * n : (i + 1) * n])
    rows = len(df)
    del df
    code = (
        "import os, time\n"
        "from tickstore import Tickstore\n"
        "rss = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20\n"
        f"s = Tickstore({str(root)!r}); t = s['book']; t.index({sym!r}); before = rss(); t0 = time.perf_counter()\n"
        f"merged = t.compact({sym!r}); took = time.perf_counter() - t0\n"
        # VmHWM, not ru_maxrss: that one keeps the parent's peak across fork + exec
        "hwm = next(int(x.split()[1]) / 1024 for x in open('/proc/self/status') if x.startswith('VmHWM:'))\n"
        "print(before, hwm, rss(), took, merged)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)),
                         capture_output=True, text=True, check=True).stdout.split()
    before, peak, after, took, merged = (float(x) for x in out)
    disk, files = _tree_bytes(root / "book")
    shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "merged": int(merged), "rss_before_mb": round(before, 1), "rss_peak_mb": round(peak, 1),
            "rss_after_mb": round(after, 1), "merge_s": round(took, 2), "file_mb": round(disk / 2**20, 1), "files": files}


def _summary(r: dict) -> str:
    s = r["samples"]
    warm = [x for x in s if x["t_s"] >= r["minutes"] * 60 / 4] or s
    rss = [x["rss_mb"] for x in warm]
    lines = [
        f"recorder soak: {r['pairs']} pairs depth5@100ms + trades, {r['minutes']} min (shared 2-core box), child exit {r['child_exit']}",
        f"  RSS: start {s[0]['rss_mb']} MB, after warm-up {rss[0]} MB, max {max(rss)} MB, end {r['rss_before_stop_mb']} MB "
        f"(end/warm-up {r['rss_before_stop_mb'] / rss[0]:.3f})",
        f"  rows stored: {r['rows']}; frames sent {r['frames_sent']}",
        f"  live: files {s[0]['files']} -> {s[-1]['files']}, index entries {s[0]['index_entries']} -> {s[-1]['index_entries']}, "
        f"store {s[-1]['store_bytes'] / 2**20:.1f} MB, journal {s[-1]['journal_bytes'] / 2**20:.2f} MB",
        f"  after the stop ({r['stop_s']} s): files {r['closed_files']} (max {r['max_files_per_partition']} per partition), "
        f"index entries {r['closed_index_entries']}, disk {r['closed_store_bytes'] / 2**20:.1f} MB = "
        f"{r['disk_vs_one_insert']}x one insert ({r['one_insert_bytes'] / 2**20:.1f} MB), "
        f"{r['disk_vs_row_bytes']}x the rows' in-memory bytes",
        f"  CPU share: collector {r['child_cpu_share']:.2f} core, simulator+sampler {r['this_process_cpu_share']:.2f} core; "
        f"the store (StoreWriter.write, {r['store_busy'].get('writes', 0)} flushes): "
        f"{r['store_busy'].get('wall_s', 0) / (r['minutes'] * 60):.1%} of the wall time, "
        f"{r['store_busy'].get('thread_cpu_s', 0):.1f} s CPU of the processor thread = "
        f"{r['store_busy'].get('thread_cpu_s', 0) / max(r['child_cpu_share'] * r['minutes'] * 60, 1e-9):.0%} of the collector's CPU",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--pairs", type=int, default=44, choices=range(1, len(BASES) + 1), metavar=f"1..{len(BASES)}")
    ap.add_argument("--sample-every", type=float, default=30.0)
    ap.add_argument("--trades-per-tick", type=float, default=1.0)
    ap.add_argument("--flush-interval", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=44)
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--merge-day", action="store_true", help="measure the memory of closing one pair's day of book instead")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--tmp")
    args = ap.parse_args()
    if args.child:
        child(args.child)
        return
    if args.merge_day:
        tmp = Path(args.tmp or tempfile.mkdtemp(prefix="tickstore-merge-day-"))
        m = merge_day(tmp)
        print(f"closing one pair's day of depth5@100ms book ({m['rows']:,} rows, 7 segments -> {m['files']} file of "
              f"{m['file_mb']} MB) in {m['merge_s']} s: RSS {m['rss_before_mb']} MB before, {m['rss_peak_mb']} MB peak "
              f"(+{m['rss_peak_mb'] - m['rss_before_mb']:.0f}), {m['rss_after_mb']} MB after (read buffers pooled for "
              f"reuse, unmapped after 30 s idle)")
        if args.tmp is None:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    r = run(args)
    print(_summary(r))
    if r.get("tracemalloc"):
        print(r["tracemalloc"])
    out = REPO / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    path = out / f"recorder_{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    path.write_text(json.dumps(r, indent=1, default=str))
    print(f"written {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
