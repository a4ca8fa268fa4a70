"""Soak: the live collector against the simulated exchange with every fault on, for minutes.

    python benchmarks/bench_soak.py [--minutes 30] [--kill-every 180] [--fault-every 15]
                                    [--store-down-every 60] [--store-down 6] [--no-capture] [--keep]

The simulated Binance (spot + USD-M, 4 symbols, trades, quotes, depth, mark, liquidations)
runs in this process; the collector runs as a child process (``--child``: the real
``Collector`` with its store wrapped by ``tests.collectors.faults.FaultyStore``) so that
it can be killed:

- every ``--fault-every`` seconds, in turn: a dropped connection, a skipped book update
  (sequence gap), a frame cut in half (malformed), a poison trade (``T`` in the year 5138,
  ``t`` past int64, ``t`` = "abc", ``T`` a 2 KB string, ``p`` = NaN, ``q`` = inf);
- inside the child, the store fails for ``--store-down`` seconds every
  ``--store-down-every`` (rotating CorruptionError, StorageError ENOSPC, OSError ENOSPC,
  HDF5ExtError, LockedError, RuntimeError; half of them raised after the commit);
- every ``--kill-every`` seconds the child is SIGKILLed and started again.

Every 5 s it samples the child's RSS and the journal (bytes after the checkpoint: what a
restart replays; and the whole folder). At the end (SIGTERM, clean stop) it checks:

1. trades against what the simulator sent intact: each stored exactly once (duplicated
   must be 0), poisoned ones quarantined with a reason, and every trade sent but not stored
   inside a ledgered connection gap (lost outside a gap must be 0; inside = frames written
   to a connection that was down or being killed, which the gap ledger declares);
2. with the journal kept (default; ``--no-capture`` deletes committed segments and skips
   this), every table of the store equals a replay of the whole journal - everything
   received - through a fresh pipeline into a fresh store.

Figures go to stdout and ``benchmarks/results/soak_<utc>.json``. The simulator, the child
and this process share the machine's cores: rates are modest on purpose.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from _child import stop_child  # noqa: E402 - benchmarks/ is the script's folder
from collectors.collector import Collector, CollectorConfig  # noqa: E402
from collectors.exchanges.binance import ENDPOINTS, Endpoints, Market  # noqa: E402
from collectors.journal import CHECKPOINT, JournalConfig, Position  # noqa: E402
from collectors.quarantine import read_quarantine  # noqa: E402
from collectors.session import BackoffPolicy  # noqa: E402
from collectors.simulator import Simulator, SimulatorConfig  # noqa: E402
from tests.collectors.faults import POISON as _POISON  # noqa: E402
from tickstore import Tickstore  # noqa: E402

POISON = [mutate for mutate, _ in _POISON.values()]

SYMBOLS = ("binance:BTC/USDT", "binance:ETH/USDT", "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")
TABLES = ("trades", "quotes", "book", "mark", "liquidations", "gaps")


# -- the child: one collector, its store failing on a schedule ---------------------------------
def child(spec_path: str) -> None:
    from tests.collectors.faults import FAULTS, FaultyStore

    spec = json.loads(Path(spec_path).read_text())
    cfg = CollectorConfig(
        store=spec["store"], journal=spec["journal"], symbols=tuple(spec["symbols"]),
        endpoints={Market(m): Endpoints(ep["ws"], ep["rest"], ENDPOINTS[Market(m)].depth_path) for m, ep in spec["endpoints"].items()},
        flush_interval_s=1.0, backoff=BackoffPolicy(initial_s=0.1, max_s=2.0), store_retry_max_s=4.0,
        journal_options=JournalConfig(keep_committed=spec["capture"], segment_bytes=8 << 20),
        max_backlog_rows=spec["max_backlog_rows"],
    )
    base = Tickstore(cfg.store)
    store = FaultyStore(base)
    stop = threading.Event()
    kinds = list(FAULTS)

    def outages():
        i = spec["round"]  # which fault comes next continues across restarts
        period, down = spec["store_down_every"], spec["store_down"]
        while not stop.wait(period - down):
            store.fault, store.after_commit = kinds[i % len(kinds)], bool(i % 2)
            i += 1
            store.down.set()
            stop.wait(down)
            store.up()

    c = Collector(cfg, store=store)
    if spec.get("drain"):  # replay what the journal still holds (no faults), then stop
        c.start()
        c.stop()
    else:
        if spec["store_down_every"] > 0:
            threading.Thread(target=outages, daemon=True).start()
        c.run()
    stop.set()
    base.close()
    print("STATS " + json.dumps(c.stats.as_dict()), flush=True)


# -- the parent ------------------------------------------------------------------------------
def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _journal_bytes(jdir: Path) -> tuple[int, int]:
    """(bytes after the checkpoint, bytes of all segments)."""
    try:
        doc = json.loads((jdir / CHECKPOINT).read_text())
        ck = Position(doc["segment"], doc["offset"])
    except (OSError, ValueError, KeyError):
        ck = Position(-1, 0)
    after = total = 0
    for p in jdir.glob("seg-*.jnl"):
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            continue
        n = int(p.stem[4:])
        total += size
        if n > ck.segment:
            after += max(0, size - 8)
        elif n == ck.segment:
            after += max(0, size - ck.offset)
    return after, total


def _spawn(spec_path: Path, log) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen([sys.executable, __file__, "--child", str(spec_path)], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=log, text=True)


def run(args) -> dict:
    tmp = Path(args.tmp or tempfile.mkdtemp(prefix="tickstore-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    store, jdir = tmp / "store", tmp / "journal"
    sim = Simulator(SimulatorConfig(symbols=SYMBOLS, seed=args.seed, trades_per_tick=1.0, liquidation_prob=0.02,
                                    max_seconds=args.minutes * 60 + 3600)).start()
    spec = {"store": str(store), "journal": str(jdir), "symbols": list(SYMBOLS), "capture": args.capture,
            "endpoints": {m.value: {"ws": sim.endpoints(m).ws, "rest": sim.endpoints(m).rest} for m in (Market.SPOT, Market.USDM)},
            "store_down_every": args.store_down_every, "store_down": args.store_down,
            "max_backlog_rows": args.max_backlog_rows, "round": 0}
    spec_path = tmp / "spec.json"
    log = open(tmp / "collector.log", "a")
    samples, kills, faults = [], 0, Counter()
    actions = ["drop", "skip", "malformed", "poison"]
    t0 = time.monotonic()
    end = t0 + args.minutes * 60
    next_kill, next_fault, next_sample = t0 + args.kill_every, t0 + args.fault_every, t0
    spec_path.write_text(json.dumps(spec))
    proc = _spawn(spec_path, log)
    i = 0
    try:
        while time.monotonic() < end:
            now = time.monotonic()
            if now >= next_sample:
                next_sample = now + 5
                after, total = _journal_bytes(jdir)
                status = {}
                try:
                    status = json.loads((store / "_collector_status.json").read_text())
                except (OSError, ValueError):
                    pass
                samples.append({"t_s": round(now - t0, 1), "rss_mb": round(_rss_mb(proc.pid), 1),
                                "journal_backlog_mb": round(after / 2**20, 3), "journal_dir_mb": round(total / 2**20, 2),
                                "health": (status.get("health") or {}).get("state", "-"),
                                "backlog_rows": (status.get("health") or {}).get("backlog_rows", 0)})
            if now >= next_fault:
                next_fault = now + args.fault_every
                what = actions[i % len(actions)]
                sym = SYMBOLS[i % len(SYMBOLS)]
                if what == "drop":
                    sim.drop(Market.SPOT if i % 2 else Market.USDM)
                elif what == "skip":
                    sim.skip_sequence(sym)
                elif what == "malformed":
                    sim.malformed(1, Market.USDM if i % 2 else Market.SPOT)
                else:
                    sim.poison(sym, POISON[(i // len(actions)) % len(POISON)])
                faults[what] += 1
                i += 1
            if now >= next_kill:
                next_kill = now + args.kill_every
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                kills += 1
                spec["round"] = kills
                spec_path.write_text(json.dumps(spec))
                proc = _spawn(spec_path, log)
            time.sleep(0.2)
        sent = {s: list(sim.sent.trade_ids[s]) for s in SYMBOLS}  # sent before the stop
        time.sleep(1.0)
    finally:
        out = stop_child(proc, 300)
        sim.stop()
        log.close()
    final = {}
    for line in (out or "").splitlines():
        if line.startswith("STATS "):
            final = json.loads(line[6:])
    # A stop during a store outage leaves the rows in the journal (not lost: the next start
    # stores them). Show it, then do that start, without faults, so the check sees the end state.
    left_bytes, _ = _journal_bytes(jdir)
    spec["drain"] = True
    spec_path.write_text(json.dumps(spec))
    with open(tmp / "collector.log", "a") as log:
        drain = _spawn(spec_path, log)
        dout, _ = drain.communicate(timeout=600)
    drained = next((json.loads(ln[6:]) for ln in dout.splitlines() if ln.startswith("STATS ")), {})
    took = time.monotonic() - t0
    result = {"minutes": round(took / 60, 2), "kills": kills, "faults": dict(faults), "child_exit": proc.returncode,
              "final_stats": final, "samples": samples, "journal_left_at_stop_bytes": left_bytes,
              "drain_replayed_records": drained.get("replayed"), "drain_exit": drain.returncode}
    result.update(_check_trades(store, sent, sim.sent.poisoned, jdir))
    if args.capture:
        result["replay"] = _check_replay(tmp, store, jdir)
    if not args.keep and args.tmp is None:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        result["kept"] = str(tmp)
    return result


def _check_trades(store: Path, sent: dict, poisoned: list, jdir: Path) -> dict:
    poison_ids = {(s, t) for s, ids, _ in poisoned for t in ids}
    out = {"trades_sent": 0, "trades_stored": 0, "duplicated": 0, "lost_outside_gaps": 0, "not_received_in_gaps": 0,
           "poisoned_sent": len(poison_ids), "poisoned_stored": 0}
    with Tickstore(store) as st:
        for sym in SYMBOLS:
            df = st["trades"].select(sym)
            ids = df["trade_id"].to_numpy()
            out["trades_sent"] += len(sent[sym])
            out["trades_stored"] += len(ids)
            out["duplicated"] += len(ids) - len(set(ids))
            recv = pd.Series(df["recv_ts"].to_numpy(), index=ids).sort_index()
            recv = recv[~recv.index.duplicated()]
            have = set(ids)
            out["poisoned_stored"] += len({t for s, t in poison_ids if s == sym} & have)
            gaps = st["gaps"].select(sym)
            conn = gaps[gaps["stream"] == "*"]
            for t in sorted(set(sent[sym]) - have):
                before, after = recv[recv.index < t], recv[recv.index > t]
                covered = len(before) and len(after) and (
                    (conn.index >= before.iloc[-1]) & (conn["end_ts"] <= after.iloc[0])).any()
                out["not_received_in_gaps" if covered else "lost_outside_gaps"] += 1
        out["gaps"] = {k: int(v) for k, v in st["gaps"].select(list(SYMBOLS))["cause"].value_counts().items()}
    q = read_quarantine(jdir / "quarantine")
    out["quarantined_frames"] = sum(e["kind"] == "frame" for e in q)
    out["quarantined_poison_frames"] = sum(e["kind"] == "frame" and "InvalidValue" in e["reason"] for e in q)
    out["quarantined_rows"] = sum(len(e["rows"]) for e in q if e["kind"] == "rows")
    return out


def _check_replay(tmp: Path, store: Path, jdir: Path) -> dict:
    """Every table of the store against a replay of the whole kept journal into a new store."""
    rj = tmp / "replay-journal"
    shutil.copytree(jdir, rj, ignore=shutil.ignore_patterns(CHECKPOINT, "books.json", "quarantine"))
    cfg = CollectorConfig(store=str(tmp / "replay-store"), journal=str(rj), symbols=SYMBOLS,
                          journal_options=JournalConfig(keep_committed=True))
    c = Collector(cfg)
    c._open()
    try:
        ok = c._catch_up()
    finally:
        c._close()
    out = {"replayed_records": c.stats.replayed, "stored": ok, "tables": {}}
    with Tickstore(store) as a, Tickstore(tmp / "replay-store") as b:
        for table in TABLES:
            x = a[table].select(list(SYMBOLS)).reset_index()
            y = b[table].select(list(SYMBOLS)).reset_index()
            cols = list(x.columns)
            m = x.astype(str).value_counts().sub(y[cols].astype(str).value_counts(), fill_value=0)
            entry = {"store": len(x), "replay": len(y), "only_in_store": int(m[m > 0].sum()), "only_in_replay": int(-m[m < 0].sum())}
            if table == "book" and (entry["only_in_store"] or entry["only_in_replay"]):
                entry["outside_declared_gaps"] = _undeclared(a, x, y)
            if table == "gaps" and (entry["only_in_store"] or entry["only_in_replay"]):
                diff = m[m != 0]
                causes = Counter()
                for key, n in diff.items():
                    causes[(dict(zip(cols, key)).get("cause"), "store" if n > 0 else "replay")] += abs(int(n))
                entry["differing_causes"] = {f"{c}@{side}": n for (c, side), n in causes.items()}
            out["tables"][table] = entry
    return out


def _undeclared(store, x: pd.DataFrame, y: pd.DataFrame) -> int:
    """Book rows in one of the two stores only whose time no gap of the store's ledger covers
    (a book row missing from the store is fine where its ledger says the book was not valid)."""
    m = x.merge(y, how="outer", indicator=True)
    diff = m[m["_merge"] != "both"]
    gaps = store["gaps"].select(list(SYMBOLS))
    gaps = gaps[gaps["stream"].isin(["*", "depth"])]
    n = 0
    for sym, rows in diff.groupby("symbol", observed=True):
        g = gaps[gaps["symbol"] == sym]
        starts, ends = g.index.to_numpy(), g["end_ts"].to_numpy()
        for ts in rows["ts"].to_numpy():
            n += not ((starts <= ts) & (ts <= ends)).any()
    return n


def report(r: dict) -> str:
    lines = [f"soak: {r['minutes']} min, {r['kills']} SIGKILL+restarts, faults {r['faults']}, child exit {r['child_exit']}"]
    fs = r["final_stats"]
    if fs:
        lines.append(f"last run's counters: store_errors={fs.get('store_errors')} spills={fs.get('spills')} "
                     f"invalid_values={fs.get('invalid_values')} malformed={fs.get('malformed')} "
                     f"quarantined_frames={fs.get('quarantined_frames')} replayed={fs.get('replayed')}")
    lines.append(f"at the final stop {r['journal_left_at_stop_bytes']:,} journal bytes were not yet stored (a store outage); "
                 f"the next start stored them: {r['drain_replayed_records']} records replayed (exit {r['drain_exit']})")
    lines.append(f"trades: sent {r['trades_sent']:,}, stored {r['trades_stored']:,}, duplicated {r['duplicated']}, "
                 f"LOST outside ledgered gaps {r['lost_outside_gaps']}, not received inside ledgered gaps "
                 f"{r['not_received_in_gaps']}")
    lines.append(f"poison: {r['poisoned_sent']} poisoned trades sent, {r['poisoned_stored']} stored; "
                 f"quarantine: {r['quarantined_frames']} frames ({r['quarantined_poison_frames']} poison), {r['quarantined_rows']} rows")
    lines.append(f"gap ledger: {r['gaps']}")
    if "replay" in r:
        rp = r["replay"]
        lines.append(f"store vs a replay of the whole journal ({rp['replayed_records']:,} records):")
        for t, e in rp["tables"].items():
            extra = f"  {e['differing_causes']}" if "differing_causes" in e else ""
            if "outside_declared_gaps" in e:
                extra += f"  (outside the store's declared gaps: {e['outside_declared_gaps']})"
            lines.append(f"  {t:<13} store {e['store']:>9,}  replay {e['replay']:>9,}  only in store {e['only_in_store']:>5}  "
                         f"only in replay {e['only_in_replay']:>5}{extra}")
    s = pd.DataFrame(r["samples"])
    if len(s):
        s["minute"] = (s["t_s"] // 60).astype(int)
        g = s.groupby("minute").agg(rss_min=("rss_mb", "min"), rss_max=("rss_mb", "max"),
                                    backlog_max=("journal_backlog_mb", "max"), dir_max=("journal_dir_mb", "max"),
                                    degraded=("health", lambda h: int((h == "degraded").sum())),
                                    rows_max=("backlog_rows", "max"))
        lines.append("per minute: child RSS MB (min..max), journal after checkpoint MB (max), journal folder MB, "
                     "samples degraded, memory backlog rows (max)")
        for m, row in g.iterrows():
            lines.append(f"  {m:>3}  rss {row.rss_min:7.1f}..{row.rss_max:7.1f}  journal backlog {row.backlog_max:8.3f}  "
                         f"folder {row.dir_max:8.2f}  degraded {int(row.degraded):2d}  backlog rows {int(row.rows_max):>7}")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--kill-every", type=float, default=180.0, help="seconds between SIGKILL + restart")
    p.add_argument("--fault-every", type=float, default=15.0, help="seconds between exchange faults")
    p.add_argument("--store-down-every", type=float, default=60.0, help="seconds between store outages (0: none)")
    p.add_argument("--store-down", type=float, default=6.0, help="seconds each store outage lasts")
    p.add_argument("--max-backlog-rows", type=int, default=500,
                   help="collector memory backlog bound (small, so that store outages also exercise the spill + catch-up)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-capture", dest="capture", action="store_false",
                   help="delete committed journal segments (no replay check; shows the folder bounded)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--tmp", help="work folder (kept)")
    args = p.parse_args(argv)
    if args.child:
        child(args.child)
        return
    import logging

    logging.basicConfig(level=logging.ERROR)  # the replay check's collector logs what the child logged already
    r = run(args)
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (out / f"soak_{stamp}.json").write_text(json.dumps(r, indent=1, default=str))
    text = report(r)
    print(text)
    (out / f"soak_{stamp}.txt").write_text(text + "\n")


if __name__ == "__main__":
    main()
