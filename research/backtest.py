"""Event-driven backtests over stored data, reproducible from their pins.

``Reader`` is the harness's only door to the store: it fixes one knowledge time for the
whole run (``as_of``, or "now" resolved once at the start) and reads every input with
``select_pinned``, keeping each pin. A result carries that knowledge time and the pins, so
``run(..., as_of=result.as_of)`` months later gives the same result whatever was corrected
since, and ``store.read_pin(pin)`` re-reads exactly the files used.

First strategy: **delta-neutral funding carry**. Hold notional N long spot and N short the
perpetual of the venue paying the highest funding; re-decide on a fixed grid.

Events, in time order; at equal times settlements come before decisions (a venue pays
funding to whoever holds the position at the settlement instant, so a position closed at
08:00 still receives the 08:00 payment, and one opened at 08:00 does not)::

    settlement (venue v, rate r)  held v ?  funding += r * N       (positive r: shorts earn)
    decision t                    rank venues by their last settled rate per hour (known at t;
                                  ``funding.hourly_rate`` puts 8-hourly and hourly venues on
                                  one footing); enter, or switch if the best beats the held
                                  venue by ``min_edge_apr``
    end                           close both legs

Fees are taker fees on traded notional: entry and exit trade both legs (spot + perp), a
switch trades the perp twice (close on the old venue, open on the new). The legs are
assumed to move together (perp tracks spot): basis and price PnL are not modelled, so PnL,
funding and fees are fractions of N (with N = 1 they read as returns).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._frames import to_utc
from .bars import bin_edges
from .errors import ResearchError

__all__ = ["Reader", "CarryConfig", "BacktestResult", "run_funding_carry"]

_SETTLEMENT, _DECISION = 0, 1  # sort order of events at the same instant


class Reader:
    """Pinned reads of one store at one knowledge time.

    Parameters
    ----------
    store : Tickstore
    as_of : None | time | snapshot name
        ``None`` resolves to the store clock's "now" once, here, so every read of the run
        sees the same store state.
    """

    def __init__(self, store, *, as_of=None):
        self.store = store
        ns = store.resolve_as_of(as_of)
        self.as_of = pd.Timestamp(ns if ns is not None else store.clock.now_ns(), unit="ns", tz="UTC")
        self.pins: list = []

    def select(self, table: str, symbol, start, end, *, columns=None) -> pd.DataFrame:
        """``store[table].select_pinned(...)`` at the run's knowledge time; the pin is kept."""
        sel = self.store[table].select_pinned(symbol, start, end, as_of=self.as_of, columns=columns)
        self.pins.append(sel.pin)
        return sel.data


@dataclass(frozen=True)
class CarryConfig:
    """Funding-carry backtest settings (fees and edges are fractions: 0.0005 = 5 bp)."""

    perps: tuple[str, ...]  # perpetual symbols whose ``funding`` rows are read, one per venue
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive
    notional: float = 1.0
    perp_fee: float = 0.0005  # taker, per side
    spot_fee: float = 0.001  # taker, per side
    rebalance: str = "8h"  # decision grid (epoch-anchored, as bars)
    min_edge_apr: float = 0.0  # switch only if the best venue beats the held one by this APR

    def __post_init__(self):
        if len(self.perps) < 1 or len(set(self.perps)) != len(self.perps):
            raise ResearchError(f"perps must be distinct symbols, got {self.perps!r}")
        object.__setattr__(self, "start", to_utc(self.start, what="start"))
        object.__setattr__(self, "end", to_utc(self.end, what="end"))
        if self.end <= self.start:
            raise ResearchError(f"end {self.end} is not after start {self.start}")
        if not self.notional > 0 or self.perp_fee < 0 or self.spot_fee < 0:
            raise ResearchError(f"notional must be > 0 and fees >= 0: {self.notional}, {self.perp_fee}, {self.spot_fee}")


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of a run; ``as_of`` + ``pins`` reproduce it."""

    ledger: pd.DataFrame  # one row per event that changed something: event, venue, rate, funding, fee, equity
    pnl: float
    funding: float
    fees: float
    turnover: float  # traded notional / notional
    max_drawdown: float  # largest fall of equity from its running peak (>= 0)
    switches: int
    as_of: pd.Timestamp
    pins: tuple

    @property
    def equity(self) -> pd.Series:
        return self.ledger["equity"]

    def summary(self) -> dict:
        return {k: getattr(self, k) for k in ("pnl", "funding", "fees", "turnover", "max_drawdown", "switches")}


def run_funding_carry(store, config: CarryConfig, *, as_of=None) -> BacktestResult:
    """Backtest delta-neutral funding carry over the ``funding`` table (see module doc).

    Parameters
    ----------
    store : Tickstore
    config : CarryConfig
    as_of : None | time | snapshot name
        Knowledge time of every read (default: now, resolved once).

    Returns
    -------
    BacktestResult

    Raises
    ------
    ResearchError
        No funding rows for any venue in the window.
    """
    reader = Reader(store, as_of=as_of)
    # settled rates before start rank venues at the first decision; read one day earlier
    lookback = pd.Timedelta(days=1)
    funding = {p: reader.select("funding", p, config.start - lookback, config.end) for p in config.perps}
    if all(f.empty for f in funding.values()):
        raise ResearchError(f"no funding rows for {list(config.perps)} in {config.start - lookback} .. {config.end}")

    ev_ts, ev_kind, ev_venue, ev_rate, ev_hourly = [], [], [], [], []
    for i, p in enumerate(config.perps):
        f = funding[p]
        ev_ts.append(f.index.asi8)
        ev_kind.append(np.full(len(f), _SETTLEMENT))
        ev_venue.append(np.full(len(f), i))
        ev_rate.append(f["rate"].to_numpy(np.float64))
        ev_hourly.append((f["rate"] / f["interval_h"]).to_numpy(np.float64))
    grid = bin_edges(config.start, config.end, config.rebalance)
    grid = grid[(grid >= config.start) & (grid < config.end)].asi8
    ev_ts.append(grid)
    ev_kind.append(np.full(len(grid), _DECISION))
    ev_venue.append(np.full(len(grid), -1))
    ev_rate.append(np.full(len(grid), np.nan))
    ev_hourly.append(np.full(len(grid), np.nan))
    ts, kind, venue, rate, hourly = (np.concatenate(x) for x in (ev_ts, ev_kind, ev_venue, ev_rate, ev_hourly))
    order = np.lexsort((kind, ts))

    n = config.notional
    names = list(config.perps)
    last_hourly = np.full(len(names), np.nan)  # last settled rate per hour, per venue, as known now
    held = None
    funding_sum = fees = turnover = 0.0
    switches = 0
    rows = []

    def book(t, event, v, r, got, fee):
        rows.append((t, event, names[v] if v is not None else "", r, got, fee, funding_sum - fees))

    for j in order:
        t, k, v = int(ts[j]), int(kind[j]), int(venue[j])
        if k == _SETTLEMENT:
            last_hourly[v] = hourly[j]
            if held == v and t >= config.start.value:
                got = rate[j] * n
                funding_sum += got
                book(t, "funding", v, rate[j], got, 0.0)
            continue
        if np.isnan(last_hourly).all():
            continue  # nothing settled yet: no basis for a decision
        best = int(np.nanargmax(last_hourly))
        if held is None:
            fee = n * (config.spot_fee + config.perp_fee)
            fees += fee
            turnover += 2 * n
            held = best
            book(t, "enter", best, np.nan, 0.0, fee)
        elif best != held:
            held_rate = last_hourly[held] if not np.isnan(last_hourly[held]) else -np.inf
            if (last_hourly[best] - held_rate) * 8760 > config.min_edge_apr:
                fee = 2 * n * config.perp_fee
                fees += fee
                turnover += 2 * n
                switches += 1
                held = best
                book(t, "switch", best, np.nan, 0.0, fee)
    if held is not None:
        fee = n * (config.spot_fee + config.perp_fee)
        fees += fee
        turnover += 2 * n
        book(config.end.value, "exit", held, np.nan, 0.0, fee)

    ledger = pd.DataFrame(rows, columns=["ts", "event", "venue", "rate", "funding", "fee", "equity"])
    ledger.index = pd.DatetimeIndex(pd.to_datetime(ledger.pop("ts").to_numpy(np.int64), unit="ns", utc=True), name="ts")
    equity = np.concatenate([[0.0], ledger["equity"].to_numpy()])  # flat before entry
    drawdown = float(np.max(np.maximum.accumulate(equity) - equity))
    return BacktestResult(
        ledger=ledger,
        pnl=(funding_sum - fees) / n,
        funding=funding_sum / n,
        fees=fees / n,
        turnover=turnover / n,
        max_drawdown=drawdown / n,
        switches=switches,
        as_of=reader.as_of,
        pins=tuple(reader.pins),
    )
