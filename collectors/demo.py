"""The offline demo: a simulated exchange on 127.0.0.1 -> the live collector -> a store.

``tickstore demo`` (``collectors.cli.demo``) runs it. It writes into a new folder, an empty
one, or one an earlier demo made (it leaves ``DEMO_MARKER`` in the root); it refuses any
other non-empty folder, so it never mixes simulated ``binance:*`` rows into a real store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tickstore import Tickstore

from .collector import Collector
from .config import CollectorConfig, CollectorError
from .venues import Venue, feed_class

__all__ = ["DemoReport", "run_demo", "DEMO_SYMBOLS", "DEMO_MARKER"]

DEMO_MARKER = ".tickstore-demo"  # in the root of a store the demo made


@dataclass(frozen=True)
class DemoReport:
    """What ``run_demo`` collected: rows per table, the gap ledger, latency, counters."""

    root: str
    seconds: float
    rows: dict
    gaps: pd.DataFrame
    latency_ms: dict
    stats: dict
    venue: str = "binance"
    notes: tuple = ()

    def summary(self) -> str:
        lines = [f"store: {self.root}  ({self.seconds:g} s against the simulated {self.venue} on 127.0.0.1)", "rows:"]
        for table, n in sorted(self.rows.items()):
            lines.append(f"  {table:<14}{n:>9,}")
        lines.append(f"gaps: {len(self.gaps)}")
        if len(self.gaps):
            for (cause, stream), n in self.gaps.groupby(["cause", "stream"]).size().items():
                lines.append(f"  {cause:<15} stream={stream:<6}{n:>4}")
        lat = self.latency_ms
        if lat:
            lines.append(
                "latency exchange time -> receive (ms, trades): "
                + "  ".join(f"{k}={v:.2f}" for k, v in lat.items())
            )
        s = self.stats
        lines.append(
            f"frames={s['frames']:,} malformed={s['malformed']} unknown_streams={s['unknown_streams']} "
            f"oversized={s['oversized']} snapshots={s['snapshots_fetched']} resubscribes={s['resubscribes']} "
            f"flushes={s['flushes']}"
        )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


FAULT_WAIT_S = 30.0  # how long the demo waits for a fault it injected to show (a slow machine)
DEMO_SYMBOLS = ("binance:BTC/USDT", "binance:ETH/USDT", "binance:BTC/USDT:USDT", "binance:ETH/USDT:USDT")
_DEMOS = {
    # venue -> symbols, then the faults: (market to drop, symbol to skip a book update of, market of a cut frame)
    Venue.BINANCE: (DEMO_SYMBOLS, "spot", "binance:ETH/USDT:USDT", "usdm"),
    Venue.BYBIT: (("bybit:BTC/USDT", "bybit:ETH/USDT", "bybit:BTC/USDT:USDT", "bybit:ETH/USDT:USDT"),
                  "spot", "bybit:ETH/USDT:USDT", "linear"),
    Venue.HYPERLIQUID: (("hyperliquid:BTC/USDC:USDC", "hyperliquid:ETH/USDC:USDC"), "perp", "hyperliquid:ETH/USDC:USDC", "perp"),
}
_DEMO_NOTES = {  # venue -> (always, with faults)
    Venue.BYBIT: ((), ("the skipped orderbook delta breaks the u chain: the book resubscribes its topic for a fresh snapshot",)),
    Venue.HYPERLIQUID: (
        ("hyperliquid has no public liquidation stream: no liquidations are collected",),
        ("the withheld l2Book leaves no trace: every l2Book frame is the whole book, without a sequence number",),
    ),
}


def run_demo(root, *, seconds: float = 10.0, seed: int = 0, faults: bool = True, venue: Venue | str = Venue.BINANCE) -> DemoReport:
    """Start the simulated ``venue`` on 127.0.0.1, collect from it for ``seconds``, report.

    With ``faults`` the exchange misbehaves once each, spread over the run: a dropped
    connection, a skipped book update and a malformed frame, so the gap ledger shows how
    each is recorded. The run waits (up to ``FAULT_WAIT_S`` each) until each fault has
    shown (the reconnect, the sequence break and the book's resync, the malformed frame
    counted), so a slow machine gives the same report, only later.
    """
    from .simulator import Simulator, SimulatorConfig

    if seconds <= 0:
        raise CollectorError(f"demo seconds must be > 0, got {seconds}")
    try:
        venue = Venue(venue)
    except ValueError:
        raise CollectorError(f"demo venue must be one of {[v.value for v in Venue]}, got {venue!r}") from None
    root = Path(root).expanduser()
    if root.exists() and (not root.is_dir() or (any(root.iterdir()) and not (root / DEMO_MARKER).exists())):
        raise CollectorError(
            f"demo root {root} is not empty and was not made by tickstore demo: the demo writes simulated "
            f"rows, never into an existing store; give a new or empty folder (or omit --root for a temporary one)"
        )
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARKER).write_text("made by tickstore demo: simulated data, not a real feed\n")
    symbols, drop, skip, cut = _DEMOS[venue]
    feed = feed_class(venue)
    sim = Simulator(SimulatorConfig(symbols=symbols, seed=seed, liquidation_prob=0.05)).start()
    try:
        endpoints = {m: sim.endpoints(m) for m in sim.markets}
        config = CollectorConfig(store=str(root), venue=venue, symbols=symbols, endpoints=endpoints, flush_interval_s=1.0)
        collector = Collector(config).start()
        try:
            # Each fault, then what shows it was handled (read before the fault: a counter that
            # must grow), waited for up to FAULT_WAIT_S so that a slow machine still shows every
            # one of them in the report; a withheld Hyperliquid l2Book leaves no trace to wait for.
            book = collector.books.get(skip)
            plan = [
                (0.3, lambda: sim.drop(feed.markets(drop)), lambda: sum(x.stats.connects for x in collector.sessions)),
                (0.5, lambda: sim.skip_sequence(skip),
                 (lambda: book.stats.breaks) if book is not None and venue is not Venue.HYPERLIQUID else None),
                (0.7, lambda: sim.malformed(1, feed.markets(cut)), lambda: collector.stats.malformed),
            ] if faults else []
            t0 = time.monotonic()
            for at, action, effect in plan:
                time.sleep(max(0.0, t0 + at * seconds - time.monotonic()))
                before = effect() if effect is not None else None
                action()
                deadline = time.monotonic() + FAULT_WAIT_S
                while effect is not None and effect() <= before and time.monotonic() < deadline:
                    time.sleep(0.05)
            while book is not None and faults and not book.synced and time.monotonic() < t0 + seconds + FAULT_WAIT_S:
                time.sleep(0.05)  # the resync of the skipped update, before the run ends
            time.sleep(max(0.0, t0 + seconds - time.monotonic()))
        finally:
            collector.stop()
    finally:
        sim.stop()
    tables = ["trades", "quotes", collector.book_table, "mark", "open_interest", "liquidations", "gaps"]
    if venue is Venue.BINANCE:
        tables.remove("open_interest")  # no open-interest stream on Binance (REST backfill has it)
    if venue is Venue.HYPERLIQUID:
        tables.remove("liquidations")
    with Tickstore(root) as store:
        rows = {table: len(store[table].select(list(symbols))) for table in tables}
        gaps = store["gaps"].select(list(symbols))
        trades = store["trades"].select(list(symbols), columns=["recv_ts"])
    lat = {}
    if len(trades):
        ms = (trades["recv_ts"] - trades.index.to_series()).dt.total_seconds().to_numpy() * 1e3
        lat = {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)}
        lat["max"] = float(ms.max())
    always, with_faults = _DEMO_NOTES.get(venue, ((), ()))
    notes = always + (with_faults if faults else ())
    return DemoReport(str(root), seconds, rows, gaps, lat, collector.stats.as_dict(), venue.value, notes)
