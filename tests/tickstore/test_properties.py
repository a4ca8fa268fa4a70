"""The invariant of SPEC section 1, property-tested.

For any sequence of inserts, appends, bursts of appends (size-tiered merges that delete
the files they merge), deletes, compactions, prunes and snapshots under a controlled
clock, a ``select(..., as_of=T)`` made later returns a frame equal to what ``select(...)``
returned at T (or raises ``PrunedError`` if T is before a prune's horizon); a deleted day
reads empty; a snapshot reads like its time whatever was pruned; a pin made at any point
reproduces its read.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tickstore import FrozenClock, NotFoundError, Pin, PrunedError, Tickstore
from tests.tickstore.helpers import SYM

# Day-partitioned trades and month-partitioned bars; the days straddle a month end so
# that month partitions see carried rows.
DAYS = ["2024-01-30", "2024-01-31", "2024-02-01"]
OTHER = "bybit:BTC/USDT:USDT"

op = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 2), st.integers(0, 40), st.integers(0, 10**6)),
    st.tuples(st.just("append"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 2), st.integers(1, 25), st.integers(0, 10**6)),
    st.tuples(st.just("reappend"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 2), st.integers(0, 0), st.integers(0, 10**6)),
    st.tuples(st.just("delete"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 2), st.integers(0, 0), st.integers(0, 0)),
    st.tuples(st.just("compact"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 0), st.integers(0, 0), st.integers(0, 0)),
    # 9 small appends in a row: a full tier of live files is merged (and deleted)
    st.tuples(st.just("burst"), st.sampled_from(["trades", "ohlcv_1m"]), st.sampled_from([SYM, OTHER]),
              st.integers(0, 2), st.integers(1, 3), st.integers(0, 10**6)),
    # forget history before one of the recorded times (the last number picks which)
    st.tuples(st.just("prune"), st.just(""), st.just(""), st.integers(0, 0), st.integers(0, 0), st.integers(0, 10**6)),
    st.tuples(st.just("snapshot"), st.just(""), st.just(""), st.integers(0, 0), st.integers(0, 0), st.integers(0, 0)),
)


class Model:
    """Frame makers with globally unique keys, so inserts never collide within a day."""

    def __init__(self):
        self.next_id = 1
        self.last_batch = {}

    def frame(self, table, day, n, seed):
        rng = np.random.default_rng(seed)
        start = pd.Timestamp(DAYS[day], tz="UTC")
        if table == "trades":
            # millisecond times with ties inside the day, sorted
            offs = np.sort(rng.integers(0, 86_400_000, n)) if n else np.zeros(0, "i8")
            if n > 3:
                offs[1:3] = offs[0]
            idx = pd.DatetimeIndex(start + pd.to_timedelta(offs, unit="ms"), name="ts")
            ids = np.arange(self.next_id, self.next_id + n, dtype="i8")
            self.next_id += n
            return pd.DataFrame(
                {"recv_ts": idx + pd.Timedelta("2ms"), "trade_id": ids, "price": rng.normal(100, 1, n).round(1),
                 "qty": rng.exponential(1, n).round(3), "side": rng.choice(np.array([-1, 1], "i1"), n)},
                index=idx,
            )
        minutes = np.sort(rng.choice(1440, size=min(n, 1440), replace=False)) if n else np.zeros(0, "i8")
        idx = pd.DatetimeIndex(start + pd.to_timedelta(minutes, unit="min"), name="ts")
        close = rng.normal(100, 1, len(idx))
        return pd.DataFrame({"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": rng.exponential(1, len(idx))}, index=idx)


def _reads(store):
    out = {}
    for table in ("trades", "ohlcv_1m"):
        t = store[table]
        out[(table, "all")] = t.select([SYM, OTHER])
        out[(table, "range")] = t.select(SYM, "2024-01-31 06:00", "2024-02-01 12:00", columns=["price"] if table == "trades" else ["close"])
    return out


def _pins(store):
    """A pinned read of each table made now: (pin JSON, frame)."""
    out = []
    for table in ("trades", "ohlcv_1m"):
        sel = store[table].select_pinned([SYM, OTHER], "2024-01-30 12:00", None)
        out.append((sel.pin.to_json(), sel.data))
    return out


@settings(max_examples=int(os.environ.get("TICKSTORE_PROPERTY_EXAMPLES", "200")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=12), gaps=st.lists(st.integers(1, 3_600_000), min_size=12, max_size=12))
def test_as_of_reads_never_change(ops, gaps):
    root = tempfile.mkdtemp()
    try:
        clock = FrozenClock("2024-03-01")
        store = Tickstore(root, clock=clock)
        model = Model()
        recorded = [(clock.now(), _reads(store))]
        pins = _pins(store)
        deleted = set()
        replaced = set()  # (table, symbol, day) rewritten since its last append
        snaps = {}
        for i, (kind, table, sym, day, n, seed) in enumerate(ops):
            clock.advance(gaps[i] / 1000)
            if kind == "insert":
                store[table].insert(sym, DAYS[day], model.frame(table, day, n, seed), reason=f"op{i}")
                deleted.discard((table, sym, day))
                replaced.add((table, sym, day))
            elif kind == "append":
                df = model.frame(table, day, n, seed)
                model.last_batch[(table, sym)] = (df, day)
                replaced.discard((table, sym, day))
                store[table].append(sym, df)
                deleted.discard((table, sym, day))
            elif kind == "reappend" and (table, sym) in model.last_batch:
                df, bday = model.last_batch[(table, sym)]
                c = store[table].append(sym, df)
                assert c.rows + c.skipped == len(df)
                if (table, sym, bday) not in replaced:
                    assert c.rows == 0  # every key is stored already: nothing is duplicated
                if c.rows:
                    # after a delete or an insert the batch's keys are new again: they come back
                    deleted.discard((table, sym, bday))
                    replaced.discard((table, sym, bday))
            elif kind == "delete":
                try:
                    store[table].delete(sym, DAYS[day], reason="law")
                    deleted.add((table, sym, day))
                    replaced.add((table, sym, day))
                except NotFoundError:
                    pass
            elif kind == "burst":
                for k in range(9):
                    df = model.frame(table, day, n, seed + k)
                    model.last_batch[(table, sym)] = (df, day)
                    store[table].append(sym, df)
                replaced.discard((table, sym, day))
                deleted.discard((table, sym, day))
            elif kind == "prune":
                store.prune(recorded[seed % len(recorded)][0], reason="law")
            elif kind == "compact":
                store[table].compact(sym)
            elif kind == "snapshot":
                name = f"s{i}"
                store.snapshot(name)
                snaps[name] = _reads(store)
            # commits at one frozen instant take times a few ns apart
            clock.advance(0.001)
            recorded.append((clock.now(), _reads(store)))
            pins.extend(_pins(store))
            for table_, sym_, day_ in deleted:
                assert store[table_].select(sym_, DAYS[day_], pd.Timestamp(DAYS[day_], tz="UTC") + pd.Timedelta("1D")).empty
        store.close()
        # a fresh process-like view: new store object, cold caches
        later = Tickstore(root, clock=clock)
        horizon = later.pruned_before or pd.Timestamp(0, tz="UTC")
        for at, reads in recorded:
            for (table, what), frame in reads.items():
                t = later[table]
                if at < horizon:
                    with pytest.raises(PrunedError):
                        t.select([SYM, OTHER], as_of=at)
                    continue
                got = t.select([SYM, OTHER], as_of=at) if what == "all" else t.select(
                    SYM, "2024-01-31 06:00", "2024-02-01 12:00", as_of=at, columns=list(frame.columns))
                pdt.assert_frame_equal(got, frame, check_index_type=True)
        for name, reads in snaps.items():  # snapshots protect what they name from prune
            for (table, what), frame in reads.items():
                if what == "all":
                    pdt.assert_frame_equal(later[table].select([SYM, OTHER], as_of=name), frame)
        for text, frame in pins:
            pin = Pin.from_json(text)
            if pin.as_of_time < horizon and not all(os.path.exists(os.path.join(root, f.path)) for f in pin.files):
                with pytest.raises(PrunedError):
                    later.read_pin(pin)
            else:
                pdt.assert_frame_equal(later.read_pin(pin), frame)
        assert later.verify().ok
        later.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
