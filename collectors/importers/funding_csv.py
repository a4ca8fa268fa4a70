"""Funding-rate history CSVs as fetch scripts write them (e.g. historical-funding-rates-fetcher).

::

    <BASE>-<QUOTE>_<exchange>_<from>_<to>_funding_history.csv
    Symbol,Date,Funding Rate
    BTC-USDT,2020-01-01 03:00:00.000,-0.00012359

Recognised columns: a time (``Date``, ``date``, ``time``, ``timestamp``, ``fundingTime``,
``calc_time``) and a rate (``Funding Rate``, ``fundingRate``, ``funding_rate``, ``rate``);
an optional ``Symbol``/``symbol``. Epoch times (s/ms/us/ns) are UTC; text times with an
offset are converted; naive text times are local times of whoever fetched them and need
``--utc-offset`` (the file above was written at UTC+3: ``--utc-offset 3h``). Times are
snapped to the hour and must lie on the venue's settlement grid (hours that are multiples
of the interval, from midnight UTC): a wrong offset is refused, not stored. The interval
comes from the spacing of the settlements. The venue and pair: the file name, else
``--venue`` and ``--symbol``; the market is the perpetual.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from collectors.funding import SettlementError, funding_intervals, settlement_times
from collectors.symbols import MARKETS, MarketType
from tickstore.errors import SymbolError

from .core import (PERPETUAL_MARKET, DataImportError, Format, ImportOptions, MalformedInput, Member, MissingOption, Sink,
                   csv_blocks, epoch_to_ns, user_symbol, utc_index)
from .detect import Detected

__all__ = ["sniff", "parse"]

_TIME = ("Date", "date", "time", "timestamp", "fundingTime", "calc_time")
_RATE = ("Funding Rate", "fundingRate", "funding_rate", "rate", "last_funding_rate")
_NAME = re.compile(r"^(?P<pair>[A-Z0-9]+-[A-Z0-9]+)_(?P<venue>binance|bybit|hyperliquid)_.*funding", re.IGNORECASE)


def _columns(first: str):
    cols = [c.strip() for c in first.split(",")]
    t = next((c for c in _TIME if c in cols), None)
    r = next((c for c in _RATE if c in cols), None)
    return cols, t, r


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    first = head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    cols, t, r = _columns(first)
    if t is None or r is None:
        return None
    if fmt is not Format.FUNDING_CSV and "funding" not in member.name.lower() and r not in ("Funding Rate", "fundingRate", "funding_rate"):
        return None
    m = _NAME.match(member.path.name)
    venue = options.venue or (m.group("venue").lower() if m else None)
    if venue is None:
        raise MissingOption(f"{where}: the file name does not say the exchange (like BTC-USDT_binance_..._funding_history.csv); pass --venue")
    sym = user_symbol(options, venue, options.market or PERPETUAL_MARKET.get(venue), where=where)
    if sym is None:
        if m is None:
            raise MissingOption(f"{where}: the file name does not say the pair; pass --symbol")
        try:
            sym = MARKETS.tickstore_symbol(venue, m.group("pair"), market_type=MarketType.SWAP)
        except SymbolError as exc:
            raise DataImportError(f"{where}: {exc}") from None
    return Detected(Format.FUNDING_CSV, "funding", venue, "perp", sym, {"time": t, "rate": r, "columns": cols})


def _offset(text: str | None, where: str) -> pd.Timedelta:
    try:
        return pd.Timedelta(text)
    except (ValueError, TypeError):
        raise MissingOption(f"{where}: --utc-offset {text!r} is not a duration like 3h or -5h30m") from None


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    cols, tcol, rcol = det.hints["columns"], det.hints["time"], det.hints["rate"]
    ts_parts, rates = [], []
    for lines, df in csv_blocks(member, cols, {rcol: np.float64, tcol: str}, header=True, required=(tcol, rcol)):
        text = df[tcol]
        if text.str.fullmatch(r"\d{10,19}").all():
            ts = epoch_to_ns(text.astype(np.int64).to_numpy(), where=where, lines=lines, what=tcol)
        else:
            t = pd.to_datetime(text, format="mixed", errors="coerce")
            if t.isna().any():
                i = int(np.argmax(t.isna().to_numpy()))
                raise MalformedInput(where, int(lines[i]), f"{tcol} {text.iat[i]!r} is not a time")
            if getattr(t.dt, "tz", None) is None:
                if options.utc_offset is None:
                    raise MissingOption(f"{where}: {tcol} holds local times without an offset ({text.iat[0]!r}); "
                                        f"pass --utc-offset, the offset of the machine that wrote them (e.g. 3h)")
                t = (t - _offset(options.utc_offset, where)).dt.tz_localize("UTC")
            ts = pd.DatetimeIndex(t).tz_convert("UTC").as_unit("ns").asi8
        ts_parts.append(ts)
        rates.append(df[rcol].to_numpy())
    if not ts_parts:
        return
    ts, rate = np.concatenate(ts_parts), np.concatenate(rates)
    try:
        snapped = settlement_times(ts, source=where)
    except SettlementError as exc:
        raise MalformedInput(where, None, str(exc).split(": ", 1)[-1] + _hint(options)) from None
    order = np.argsort(snapped.asi8, kind="stable")
    t = snapped.asi8[order]
    try:
        nominal = MARKETS.from_tickstore(det.symbol).funding_interval_h
    except SymbolError:
        nominal = None
    interval = funding_intervals(t, nominal=nominal)
    hours = (t // 3_600_000_000_000) % 24
    off = np.flatnonzero(~np.isnan(interval) & (hours % np.nan_to_num(interval, nan=1).astype(np.int64) != 0))
    if len(off):
        i = int(off[0])
        raise MalformedInput(where, None, f"settlement {pd.Timestamp(int(t[i]), tz='UTC')} is not on the {interval[i]:g} h "
                             f"grid (hours that are multiples of {interval[i]:g}, UTC){_hint(options)}")
    sink.frame("funding", det.symbol, pd.DataFrame({"rate": rate[order], "interval_h": interval}, index=utc_index(t)))


def _hint(options: ImportOptions) -> str:
    return f"; is --utc-offset {options.utc_offset} right?" if options.utc_offset is not None else ""
