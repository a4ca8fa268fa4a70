"""Event-driven backtests over stored data, reproducible from their pins.

``Reader`` is the harness's only door to the store: it fixes one knowledge time for the
whole run (``as_of``, or "now" resolved once at the start) and reads every input with
``select_pinned``, keeping each pin. A result carries that knowledge time and the pins, so
``run(..., as_of=result.as_of)`` months later gives the same result whatever was corrected
since, and ``store.read_pin(pin)`` re-reads exactly the files used.

First strategy: **delta-neutral funding carry**. Hold notional N long spot and N short the
perpetual of the venue expected to pay the most funding; re-decide on a fixed grid.

Events, in time order; at equal times settlements come before decisions (a venue pays
funding to whoever holds the position at the settlement instant, so a position closed at
08:00 still receives the 08:00 payment, and one opened at 08:00 does not)::

    settlement (venue v, rate r)  held v ?  funding += r          (positive r: shorts earn)
    decision t in [start, end)    rank venues by their last settled rate per hour, known at
                                  t (``funding.hourly_rate`` puts 8-hourly and hourly
                                  venues on one footing); enter, or switch (rule below)
    end                           the settlements at ``end`` are paid (the position is still
                                  held at that instant), then both legs are closed

**Switching is fee-aware.** A switch trades the perp twice (close on the old venue, open
on the new: ``2 * perp_fee``). It is made only when the expected edge over the holding
horizon pays for that round trip::

    (best_per_hour - held_per_hour) * horizon_hours  >  2 * perp_fee + min_edge_apr * horizon_hours / 8760

``horizon`` defaults to the ``rebalance`` interval: the edge must pay for the switch within
the one period the new position is sure to be held. A longer horizon assumes the edge
persists, and the signal (the last settlement per venue) does not persist that long:
measured on the shared Binance/Bybit BTC histories, 2021-2023, 8-hourly decisions, taker
fees 5 bp perp / 10 bp spot (``tests/research/test_backtest.py`` checks these)::

    rule                          switches   funding/yr   fees/yr   pnl/yr
    any positive edge (the old    858        18.0 %       28.7 %    -10.7 %
      min_edge_apr=0 default)
    horizon 7D                    538        17.9 %       18.0 %     -0.2 %
    horizon 1D                    96         16.8 %        3.3 %     13.5 %
    horizon = rebalance (8h)      14         16.6 %        0.6 %     16.0 %   <- default

``min_edge_apr`` adds a margin on top.

**Units.** Every money figure (ledger ``funding``, ``fee``, ``equity``; result ``pnl``,
``funding``, ``fees``, ``max_drawdown``) is a fraction of the notional N (multiply by
``notional`` for currency); ``*_apr`` figures are those divided by the run's length in
years (365 days); ``turnover`` is traded notional over N. Fees are taker fees on traded
notional: entry and exit trade both legs (spot + perp). The legs are assumed to move
together (perp tracks spot): basis and price PnL are not modelled.

**Gaps.** Funding history is backfilled over REST, so the websocket's gap ledger says
nothing about it (``coverage.streams_of("funding")`` is empty); what can be missing is a
settlement. Every span of [start, end] that no settlement of a venue accrues over is a gap
the run crossed (``result.gaps``, with ``held``: whether the position was on that venue
then). ``on_gap="raise"`` refuses such a run (``GapError``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ._frames import to_utc
from .bars import bin_edges
from .conventions import HOURS_PER_YEAR, YEAR
from .coverage import GAPS_TABLE, ledger_spans, settlement_spans, streams_of
from .errors import GapError, ResearchError

__all__ = ["Reader", "OnGap", "CarryConfig", "BacktestResult", "run_funding_carry"]

_SETTLEMENT, _DECISION = 0, 1  # sort order of events at the same instant
_NS = pd.Timedelta(1, "ns")


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
        self.as_of = pd.Timestamp(ns, unit="ns", tz="UTC") if ns is not None else store.now()
        self.pins: list = []

    def select(self, table: str, symbol, start, end, *, columns=None) -> pd.DataFrame:
        """``store[table].select_pinned(...)`` at the run's knowledge time; the pin is kept."""
        sel = self.store[table].select_pinned(symbol, start, end, as_of=self.as_of, columns=columns)
        self.pins.append(sel.pin)
        return sel.data


class OnGap(str, enum.Enum):
    """What a backtest does when its data has gaps: report them (``result.gaps``) or refuse."""

    REPORT = "report"
    RAISE = "raise"


@dataclass(frozen=True)
class CarryConfig:
    """Funding-carry backtest settings (fees and edges are fractions: 0.0005 = 5 bp)."""

    perps: tuple[str, ...]  # perpetual symbols whose ``funding`` rows are read, one per venue
    start: pd.Timestamp
    end: pd.Timestamp  # exclusive for decisions; settlements at ``end`` are still paid
    notional: float = 1.0
    perp_fee: float = 0.0005  # taker, per side
    spot_fee: float = 0.001  # taker, per side
    rebalance: str = "8h"  # decision grid (epoch-anchored, as bars)
    horizon: str | None = None  # expected holding time of a switch (default: rebalance)
    min_edge_apr: float = 0.0  # extra edge (APR) a switch must show beyond its fees
    table: str = "funding"  # the table of settled rates (any table with rate, interval_h)

    def __post_init__(self):
        if len(self.perps) < 1 or len(set(self.perps)) != len(self.perps):
            raise ResearchError(f"perps must be distinct symbols, got {self.perps!r}")
        object.__setattr__(self, "start", to_utc(self.start, what="start"))
        object.__setattr__(self, "end", to_utc(self.end, what="end"))
        if self.end <= self.start:
            raise ResearchError(f"end {self.end} is not after start {self.start}")
        if not self.notional > 0 or self.perp_fee < 0 or self.spot_fee < 0:
            raise ResearchError(f"notional must be > 0 and fees >= 0: {self.notional}, {self.perp_fee}, {self.spot_fee}")
        for name in ("rebalance", "horizon"):
            value = getattr(self, name)
            if value is None and name == "horizon":
                continue
            try:
                length = pd.Timedelta(value)
            except (TypeError, ValueError):
                length = pd.NaT
            if length is pd.NaT or length <= pd.Timedelta(0):
                raise ResearchError(f"{name} must be a positive length such as '8h' or '1D', got {value!r}")

    @property
    def horizon_hours(self) -> float:
        return pd.Timedelta(self.horizon if self.horizon is not None else self.rebalance) / pd.Timedelta(hours=1)

    def switch_threshold(self) -> float:
        """Least per-hour rate edge (best minus held) that makes a switch (module doc)."""
        h = self.horizon_hours
        return (2 * self.perp_fee + self.min_edge_apr * h / HOURS_PER_YEAR) / h


@dataclass(frozen=True)
class BacktestResult:
    """Outcome of a run; ``as_of`` + ``pins`` reproduce it. Money in fractions of ``notional``."""

    ledger: pd.DataFrame  # one row per event that changed something: event, venue, rate, funding, fee, equity
    pnl: float
    funding: float
    fees: float
    turnover: float  # traded notional / notional
    max_drawdown: float  # largest fall of equity from its running peak (>= 0)
    switches: int
    years: float  # (end - start) / 365 days
    gaps: pd.DataFrame  # spans the run's data did not cover: symbol, start, end, cause, detail, held
    notional: float
    as_of: pd.Timestamp
    pins: tuple

    @property
    def equity(self) -> pd.Series:
        return self.ledger["equity"]

    @property
    def pnl_apr(self) -> float:
        return self.pnl / self.years

    @property
    def funding_apr(self) -> float:
        return self.funding / self.years

    @property
    def fees_apr(self) -> float:
        return self.fees / self.years

    def summary(self) -> dict:
        keys = ("pnl", "funding", "fees", "pnl_apr", "funding_apr", "fees_apr", "turnover", "max_drawdown", "switches")
        return {k: getattr(self, k) for k in keys} | {"gaps": len(self.gaps)}


def _gaps(reader: Reader, funding: dict[str, pd.DataFrame], config: CarryConfig) -> pd.DataFrame:
    """Spans of [start, end] each venue's data does not cover (see the module doc)."""
    hi = config.end + _NS  # the settlement at ``end`` is part of the run
    streams = streams_of("funding")
    frames = []
    for sym, f in funding.items():
        parts = [settlement_spans(f, config.start, hi, what=sym)]
        if streams and GAPS_TABLE in reader.store.tables():
            parts.append(ledger_spans(reader.select(GAPS_TABLE, sym, config.start - pd.Timedelta(days=1), hi), streams=streams))
        for p in parts:
            if len(p):
                frames.append(p.assign(symbol=sym))
    if not frames:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in (
            ("symbol", object), ("start", "datetime64[ns, UTC]"), ("end", "datetime64[ns, UTC]"),
            ("stream", object), ("cause", object), ("detail", object))})
    out = pd.concat(frames, ignore_index=True)
    out["start"] = out["start"].clip(lower=config.start)
    out["end"] = out["end"].clip(upper=hi)
    out = out[out["end"] > out["start"]]
    return out[["symbol", "start", "end", "stream", "cause", "detail"]].sort_values(["start", "symbol"], kind="stable").reset_index(drop=True)


def _held_during(gaps: pd.DataFrame, ledger: pd.DataFrame, end: pd.Timestamp) -> np.ndarray:
    """Whether the position was on a gap's venue at some time during the gap."""
    moves = ledger[ledger["event"].isin(["enter", "switch"])]
    t = moves.index.as_unit("ns").asi8
    v = moves["venue"].to_numpy()
    # holding intervals [t_i, t_{i+1}) on v_i; the last one to the exit (end, inclusive)
    t_end = np.concatenate([t[1:], [end.value + 1]]) if len(t) else t
    out = np.zeros(len(gaps), dtype=bool)
    for i, (sym, s, e) in enumerate(zip(gaps["symbol"], gaps["start"].array.asi8, gaps["end"].array.asi8)):
        out[i] = bool(np.any((v == sym) & (t < e) & (t_end > s)))
    return out


def run_funding_carry(store, config: CarryConfig, *, as_of=None, on_gap: OnGap | str = OnGap.REPORT) -> BacktestResult:
    """Backtest delta-neutral funding carry over the ``funding`` table (see module doc).

    Parameters
    ----------
    store : Tickstore
    config : CarryConfig
    as_of : None | time | snapshot name
        Knowledge time of every read (default: now, resolved once).
    on_gap : OnGap | "report" | "raise"
        ``"report"`` (default): the run's gaps are in ``result.gaps``; ``"raise"``: a run
        that crosses any gap is refused.

    Returns
    -------
    BacktestResult

    Raises
    ------
    ResearchError
        No funding rows for any venue in the window; bad ``on_gap``.
    GapError
        ``on_gap="raise"`` and a venue's settlements leave a span of [start, end] uncovered.
    """
    try:
        on_gap = OnGap(on_gap)
    except ValueError:
        raise ResearchError(f"on_gap must be 'report' or 'raise', got {on_gap!r}") from None
    reader = Reader(store, as_of=as_of)
    # settled rates before start rank venues at the first decision; read one day earlier,
    # and through the settlement at ``end`` (paid to the position still held then)
    lookback = pd.Timedelta(days=1)
    funding = {p: reader.select(config.table, p, config.start - lookback, config.end + _NS, columns=["rate", "interval_h"]) for p in config.perps}
    if all(f.empty for f in funding.values()):
        raise ResearchError(f"no funding rows for {list(config.perps)} in {config.start - lookback} .. {config.end}")
    gaps = _gaps(reader, funding, config)
    if on_gap is OnGap.RAISE and len(gaps):
        listed = "; ".join(f"{r.symbol} {r.start} .. {r.end} ({r.cause})" for r in gaps.head(5).itertuples())
        raise GapError(f"the run crosses {len(gaps)} span(s) its funding data does not cover: {listed}"
                       + (" ..." if len(gaps) > 5 else "") + "; backfill them, or run with on_gap='report'")

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

    names = list(config.perps)
    threshold = config.switch_threshold()
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
            if held == v and t >= config.start.value:  # t <= end: the read stops there
                funding_sum += rate[j]
                book(t, "funding", v, rate[j], rate[j], 0.0)
            continue
        if np.isnan(last_hourly).all():
            continue  # nothing settled yet: no basis for a decision
        best = int(np.nanargmax(last_hourly))
        if held is None:
            fee = config.spot_fee + config.perp_fee
            fees += fee
            turnover += 2
            held = best
            book(t, "enter", best, np.nan, 0.0, fee)
        elif best != held:
            held_rate = last_hourly[held] if not np.isnan(last_hourly[held]) else -np.inf
            if last_hourly[best] - held_rate > threshold:
                fee = 2 * config.perp_fee
                fees += fee
                turnover += 2
                switches += 1
                held = best
                book(t, "switch", best, np.nan, 0.0, fee)
    if held is not None:
        fee = config.spot_fee + config.perp_fee
        fees += fee
        turnover += 2
        book(config.end.value, "exit", held, np.nan, 0.0, fee)

    ledger = pd.DataFrame(rows, columns=["ts", "event", "venue", "rate", "funding", "fee", "equity"])
    ledger.index = pd.DatetimeIndex(pd.to_datetime(ledger.pop("ts").to_numpy(np.int64), unit="ns", utc=True), name="ts")
    equity = np.concatenate([[0.0], ledger["equity"].to_numpy()])  # flat before entry
    gaps["held"] = _held_during(gaps, ledger, config.end)
    return BacktestResult(
        ledger=ledger,
        pnl=float(funding_sum - fees),
        funding=float(funding_sum),
        fees=float(fees),
        turnover=float(turnover),
        max_drawdown=float(np.max(np.maximum.accumulate(equity) - equity)),
        switches=switches,
        years=float((config.end - config.start) / YEAR),
        gaps=gaps,
        notional=config.notional,
        as_of=reader.as_of,
        pins=tuple(reader.pins),
    )
