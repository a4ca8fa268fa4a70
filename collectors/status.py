"""Health of a running or past collector, from what it leaves in the store root.

Each collector feed rewrites ``<root>/_collector_status[.<feed>].json`` atomically at
every flush (``Collector.write_status``): per stream (symbol x event kind) the events
parsed, the last exchange time and receive time and the lag between them, per
connection the frames and the last receive time, the counters, and the feed's health:
``ok`` or ``degraded`` with the error (the store failing, a connection that cannot get
its frames journaled or cannot connect) and the backlog waiting for the store (rows in
memory, bytes of journal after the checkpoint). ``status_frame`` joins that with the gap
ledger: rows of the ``gaps`` table for today's UTC date (-1 when the store cannot be read,
which is when the status matters most).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from tickstore import NotFoundError, Tickstore, TickstoreError

from .config import STATUS_PREFIX

__all__ = ["read_status", "status_frame", "gaps_today"]

_COLUMNS = ["feed", "running", "health", "symbol", "kind", "events", "last_recv", "age_s", "lag_ms", "gaps_today",
            "backlog_rows", "backlog_bytes", "error"]


def read_status(root) -> list[dict]:
    """Every status file of the store root (one per feed), sorted by feed name."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise NotFoundError(f"no tickstore at {root} (the folder does not exist); give --root DIR")
    out = []
    for p in sorted(root.glob(f"{STATUS_PREFIX}*.json")):
        try:
            out.append(json.loads(p.read_text()))
        except (OSError, ValueError) as exc:
            raise TickstoreError(f"collector status file {str(p)!r} is unreadable: {exc}") from None
    if not out:
        raise NotFoundError(
            f"no collector status in {root} (no {STATUS_PREFIX}*.json): no collector has flushed into this store"
        )
    return sorted(out, key=lambda d: d.get("name", ""))


def gaps_today(root, symbols, *, today: pd.Timestamp | None = None) -> dict[str, int]:
    """Rows of the gap ledger per symbol whose event time falls on today's UTC date."""
    day = (today if today is not None else pd.Timestamp.now(tz="UTC")).tz_convert("UTC").normalize()
    symbols = sorted(set(symbols))
    counts = dict.fromkeys(symbols, 0)
    if not symbols:
        return counts
    with Tickstore(root) as store:
        gaps = store["gaps"].select(symbols, day, day + pd.Timedelta(days=1), columns=["cause"])
    if len(gaps):
        counts.update(gaps.groupby("symbol").size().astype(int).to_dict())
    return counts


def status_frame(root, *, now_ns: int | None = None, today: pd.Timestamp | None = None) -> pd.DataFrame:
    """One row per (feed, symbol, kind): events, last receive time, its age, lag, gaps today."""
    now_ns = time.time_ns() if now_ns is None else now_ns
    docs = read_status(root)
    symbols = [s for d in docs for s in d.get("symbols", [])]
    try:
        gaps = gaps_today(root, symbols, today=today)
    except TickstoreError:  # a damaged or unreadable store: the status must still show
        gaps = dict.fromkeys(symbols, -1)
    rows = []
    for d in docs:
        h = d.get("health") or {}
        feed = {"health": h.get("state", "ok"), "backlog_rows": int(h.get("backlog_rows", 0)),
                "backlog_bytes": int(h.get("journal_backlog_bytes", 0)), "error": h.get("error") or ""}
        seen = set()
        for st in d.get("streams", []):
            seen.add(st["symbol"])
            rows.append({
                "feed": d.get("name") or "-", "running": bool(d.get("running")), "symbol": st["symbol"],
                "kind": st["kind"].lower(), "events": int(st["events"]),
                "last_recv": pd.Timestamp(st["last_recv_ns"], unit="ns", tz="UTC"),
                "age_s": round((now_ns - st["last_recv_ns"]) / 1e9, 3), "lag_ms": round(st["lag_ms"], 3),
                "gaps_today": gaps.get(st["symbol"], 0), **feed,
            })
        for sym in d.get("symbols", []):
            if sym not in seen:  # subscribed, nothing received yet
                rows.append({"feed": d.get("name") or "-", "running": bool(d.get("running")), "symbol": sym,
                             "kind": "-", "events": 0, "last_recv": pd.NaT, "age_s": float("nan"),
                             "lag_ms": float("nan"), "gaps_today": gaps.get(sym, 0), **feed})
    return pd.DataFrame(rows, columns=_COLUMNS)
