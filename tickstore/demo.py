"""The offline demo: a small store from real recorded trades, and the as-of invariant at work.

``run_demo`` inserts one day of Binance USD-M BTCUSDT trades (the Tardis CSV in the shared
data folder; generated trades when that folder is absent), snapshots it, appends live
rows, corrects a price, deletes the day, and then re-reads the table *as of* every step:
each answer equals what a plain ``select`` returned at that step, whatever happened since.
It ends with a pin re-read through ``Tickstore.read_pin`` and a ``verify``.

The clock is the real one, so knowledge times differ between runs; row counts and
checksums do not (given the same input data).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .errors import TickstoreError
from .pin import Pin
from .schemas import TradeKind
from .store import Tickstore

__all__ = ["run_demo", "DemoStep", "default_data_dir", "tardis_trades", "generated_trades", "price_checksum"]

TABLE = "trades"
SYMBOL = "binance:BTC/USDT:USDT"
TRADES_CSV = Path("nautilus_trader") / "trades.csv"  # Tardis binance-futures BTCUSDT trades
DATA_ENV = "TICKSTORE_DATA"
LIVE_BATCHES = 4
SNAPSHOT = "after-backfill"


def default_data_dir() -> Path | None:
    """``$TICKSTORE_DATA``, else ``<repo>/../shared/data``; None when that folder is absent."""
    env = os.environ.get(DATA_ENV)
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return path if path.is_dir() else None


def tardis_trades(path) -> pd.DataFrame:
    """A Tardis trades CSV -> a frame for the ``trades`` table.

    Tardis columns ``exchange,symbol,timestamp,local_timestamp,id,side,price,amount``;
    times are microseconds since the epoch (exchange time, local receive time). The CSV
    does not say what kind of print a row is, so every row is ``TradeKind.MARKET``.
    """
    raw = pd.read_csv(path, usecols=["timestamp", "local_timestamp", "id", "side", "price", "amount"])
    side = raw["side"].map({"buy": 1, "sell": -1})
    if side.isna().any():
        bad = raw.loc[side.isna(), "side"].iloc[0]
        raise TickstoreError(f"{path}: side {bad!r} is neither 'buy' nor 'sell'")
    ts = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"].to_numpy(), unit="us", utc=True), name="ts").as_unit("ns")
    frame = pd.DataFrame(
        {
            "recv_ts": pd.to_datetime(raw["local_timestamp"].to_numpy(), unit="us", utc=True).as_unit("ns"),
            "trade_id": raw["id"].to_numpy(dtype="i8"),
            "price": raw["price"].to_numpy(dtype="f8"),
            "qty": raw["amount"].to_numpy(dtype="f8"),
            "side": side.to_numpy(dtype="i1"),
            "kind": np.full(len(raw), int(TradeKind.MARKET), dtype="i1"),
        },
        index=ts,
    )
    # Tardis files are in exchange-time order; a stable sort keeps ties as recorded.
    return frame.iloc[np.argsort(frame.index.asi8, kind="stable")]


def generated_trades(day: str = "2024-08-08", n: int = 10_000, *, seed: int = 7) -> pd.DataFrame:
    """Deterministic stand-in trades for one day (used when the shared data is absent)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day, tz="UTC").value
    ts = np.sort(start + rng.integers(0, 86_400_000, n) * 1_000_000)  # ms grid: ties happen
    idx = pd.DatetimeIndex(ts.view("M8[ns]"), tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "recv_ts": idx + pd.to_timedelta(rng.integers(1, 50, n), unit="ms"),
            "trade_id": np.arange(1_000_000, 1_000_000 + n, dtype="i8"),
            "price": np.round(60_000 + rng.normal(0, 5, n).cumsum(), 1),
            "qty": np.round(rng.exponential(0.05, n), 3) + 0.001,
            "side": rng.choice(np.array([-1, 1], dtype="i1"), n),
        },
        index=idx,
    )


def price_checksum(frame: pd.DataFrame) -> str:
    """First 12 hex digits of the sha256 of the price column (float64, in row order)."""
    prices = np.ascontiguousarray(frame["price"].to_numpy(dtype="<f8"))
    return hashlib.sha256(prices.tobytes()).hexdigest()[:12]


@dataclass(frozen=True)
class DemoStep:
    """One step of the demo: what a plain select returned then, and the as-of re-read at the end."""

    label: str
    as_of: str  # a knowledge time (ISO) or the snapshot name
    rows: int
    checksum: str
    rows_now: int
    checksum_now: str
    same: bool


def _iso(ts: pd.Timestamp) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def run_demo(root, *, data_dir=None, out: Callable[[str], object] = print) -> list[DemoStep]:
    """Run the demo in ``root`` (a new or empty folder) and print what it does through ``out``.

    Parameters
    ----------
    data_dir
        The shared data folder; default ``default_data_dir()``. Without the Tardis file in
        it, generated trades are used.

    Returns
    -------
    One ``DemoStep`` per as-of point: the rows/checksum then and when re-read at the end.

    Raises
    ------
    TickstoreError
        ``root`` is not empty (the demo never writes into an existing store).
    """
    root = Path(root).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise TickstoreError(f"demo root {root} is not an empty folder; give a new or empty one")
    data = Path(data_dir) if data_dir is not None else default_data_dir()
    csv = data / TRADES_CSV if data is not None else None
    if csv is not None and csv.is_file():
        trades = tardis_trades(csv)
        out(f"data: {len(trades)} real Binance USD-M BTCUSDT trades from {csv}")
    else:
        trades = generated_trades()
        out(f"data: {len(trades)} generated trades (shared data not found{'' if data is None else f' in {data}'})")
    day = trades.index[0].normalize()
    if (trades.index >= day + pd.Timedelta(days=1)).any():
        trades = trades[trades.index < day + pd.Timedelta(days=1)]
    n_backfill = len(trades) * 4 // 5
    backfill, live = trades.iloc[:n_backfill], trades.iloc[n_backfill:]
    date = day.strftime("%Y-%m-%d")

    with Tickstore(root) as store:
        t = store[TABLE]
        then: list[tuple[str, object, pd.DataFrame]] = []  # (label, as_of, what select returned then)

        def record(label: str, as_of) -> None:
            frame = t.select(SYMBOL)
            then.append((label, as_of, frame))
            out(f"  {label:<34} rows={len(frame):>6}  price_checksum={price_checksum(frame)}")

        out(f"\n1. insert {date}: {len(backfill)} trades (backfill), then snapshot {SNAPSHOT!r}")
        c = t.insert(SYMBOL, date, backfill, reason="backfill from recorded file", source="tardis-csv")
        record("after insert", c.committed_at)
        store.snapshot(SNAPSHOT, note="the backfilled day, before live rows")
        then.append((f"snapshot {SNAPSHOT}", SNAPSHOT, then[-1][2]))

        out(f"\n2. append {len(live)} live trades in {LIVE_BATCHES} batches (each its own knowledge time)")
        for i, batch in enumerate(np.array_split(np.arange(len(live)), LIVE_BATCHES), 1):
            c = t.append(SYMBOL, live.iloc[batch], source="live")
            record(f"after append {i}", c.committed_at)
        again = t.append(SYMBOL, live.iloc[-100:], source="live")
        out(f"  re-append of the last 100 trades: {again.rows} written, {again.skipped} skipped (same trade ids)")

        out("\n3. correct a price: select, edit, insert (a new version of the day)")
        day_frame = t.select(SYMBOL, date, day + pd.Timedelta(days=1))
        k = len(day_frame) // 2
        old_px = float(day_frame["price"].iloc[k])
        new_px = round(old_px + 100.0, 2)
        day_frame.iloc[k, day_frame.columns.get_loc("price")] = new_px
        out(f"  trade_id {int(day_frame['trade_id'].iloc[k])}: price {old_px} -> {new_px}")
        c = t.insert(SYMBOL, date, day_frame, reason="exchange price correction", source="demo")
        record("after correction", c.committed_at)

        out(f"\n4. delete {date} (a tombstone version; nothing is removed from disk)")
        c = t.delete(SYMBOL, date, reason="bad feed (demo)", source="demo")
        record("after delete", c.committed_at)

        out("\n5. re-read as of every step: old answers do not change")
        steps = []
        for label, as_of, frame in then:
            now = t.select(SYMBOL, as_of=as_of)
            same = now.equals(frame)
            shown = as_of if isinstance(as_of, str) else _iso(as_of)
            steps.append(
                DemoStep(label, shown, len(frame), price_checksum(frame), len(now), price_checksum(now), same)
            )
            out(
                f"  {label:<24} as_of={shown:<31} rows={len(now):>6}  price_checksum={price_checksum(now)}  "
                f"{'same as then' if same else 'CHANGED (rows then ' + str(len(frame)) + ')'}"
            )

        out(f"\n6. versions of {TABLE} {SYMBOL} {date}")
        v = t.versions(SYMBOL, date).reset_index(drop=True).set_index("version")
        cols = ["committed_at", "superseded_at", "operation", "rows", "reason", "source"]
        out(v[cols].to_string())

        out(f"\n7. a pin: which files a read as of {SNAPSHOT!r} used, and re-reading exactly those")
        sel = t.select_pinned(SYMBOL, as_of=SNAPSHOT)
        pin = Pin.from_json(sel.pin.to_json())  # a pin survives JSON, e.g. next to a paper
        out(f"  pin: table={pin.table} symbols={list(pin.symbols)} as_of={_iso(pin.as_of_time)}")
        for f in pin.files:
            out(f"    {f.path}  v{f.version}  rows={f.rows}  sha256={f.checksum[:16]}...")
        again_frame = store.read_pin(pin)
        out(
            f"  read_pin: rows={len(again_frame)}  price_checksum={price_checksum(again_frame)}  "
            f"{'same as the pinned select' if again_frame.equals(sel.data) else 'DIFFERENT'}"
        )

        report = store.verify()
        out(f"\n8. {report}")
        out(f"\ntry: tickstore --root {store.root} versions {TABLE} {SYMBOL} {date}")
    return steps
