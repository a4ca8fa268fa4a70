"""``select(..., limit=N)`` / ``select_columns(..., limit=N)``: exactly the first N rows of
the same read without a limit, reading only the partitions, files and chunks they need.

The comparison is property-style over generated stores (fixed seeds, no hypothesis: each
store takes a while to build and is queried many times): several symbols whose times tie,
live appends whose segments overlap in time, bursts of appends merged into files that
keep each row's knowledge time (as-of reads between them filter rows by ``_kt``),
corrections (a new version of a day), deletes, compactions, day, month and year
partitions, small chunks (the row ranges a limited read grows cross chunk boundaries)
and the default chunk size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas.testing as pdt
import pytest
from click.testing import CliRunner

from tickstore import Column, CorruptionError, FrameError, FrozenClock, NotFoundError, Schema, Tickstore, splay
from tickstore.cli import main
from tests.tickstore.helpers import SYM, trades

ETH = "binance:ETH/USDT:USDT"
OTHER = "bybit:BTC/USDT:USDT"
SYMS = [SYM, ETH, OTHER]
# straddling a year end and a month end: month and year partitions hold several days
DAYS = ["2023-12-31", "2024-01-30", "2024-01-31", "2024-02-01"]
COARSE = {"monthly": "month", "yearly": "year"}  # tables without a key: rows may repeat a ts


def _coarse_schema(name: str) -> Schema:
    return Schema(name, (Column("x", "float64"), Column("tag", "str6"), Column("n", "int32")), key=None)


class Maker:
    """Frames with globally unique trade ids, their times drawn from few instants of the
    day (many ties within a file, across files and across symbols)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.next_id = 1

    def frame(self, table: str, day: int, n: int) -> pd.DataFrame:
        rng = self.rng
        start = pd.Timestamp(DAYS[day], tz="UTC")
        offs = np.sort(rng.integers(0, 48, n)) * np.int64(1_800_000_000_000)  # half-hour instants
        idx = pd.DatetimeIndex(start + pd.to_timedelta(offs, unit="ns"), name="ts")
        if table == "trades":
            ids = np.arange(self.next_id, self.next_id + n, dtype="i8")
            self.next_id += n
            return pd.DataFrame(
                {"recv_ts": idx + pd.Timedelta("2ms"), "trade_id": ids, "price": rng.normal(100, 1, n).round(2),
                 "qty": rng.exponential(1, n).round(3), "side": rng.choice(np.array([-1, 1], "i1"), n),
                 "kind": np.zeros(n, "i1")},
                index=idx,
            )
        tags = np.array(["a", "bé", "ccc", ""], dtype=object)[rng.integers(0, 4, n)]
        return pd.DataFrame({"x": rng.normal(0, 1, n), "tag": tags, "n": rng.integers(-5, 5, n).astype("i4")}, index=idx)


def build(root, seed: int, ops: int = 40):
    """A store written by ``ops`` random writes under a frozen clock, and the times after
    each write (as-of times between versions)."""
    rng = np.random.default_rng(seed)
    clock = FrozenClock("2024-03-01")
    store = Tickstore(root, clock=clock)
    for name, partition in COARSE.items():
        store.create_table(name, _coarse_schema(name), partition=partition)
    make = Maker(rng)
    times = [clock.now()]
    tables = ["trades", *COARSE]
    for _ in range(ops):
        kind = rng.choice(["insert", "append", "append", "burst", "delete", "compact"], p=[0.3, 0.25, 0.15, 0.15, 0.05, 0.1])
        table, sym, day = str(rng.choice(tables)), str(rng.choice(SYMS)), int(rng.integers(0, len(DAYS)))
        t = store[table]
        if kind == "insert":  # a day's first version, or a correction of it
            t.insert(sym, DAYS[day], make.frame(table, day, int(rng.integers(0, 40))), reason="test")
        elif kind == "append":
            t.append(sym, make.frame(table, day, int(rng.integers(1, 15))))
        elif kind == "burst":  # a full tier of small live files: merged, keeping each row's _kt
            for _ in range(9):
                t.append(sym, make.frame(table, day, int(rng.integers(1, 4))))
                clock.advance(float(rng.integers(1, 60)))
                times.append(clock.now())
        elif kind == "delete":
            try:
                t.delete(sym, DAYS[day], reason="test")
            except NotFoundError:
                pass  # nothing stored that day
        else:
            t.compact(sym)
        clock.advance(float(rng.integers(1, 3600)))
        times.append(clock.now())
    return store, times


def assert_same(got, want) -> None:
    assert got.names == want.names
    for name in got.names:
        assert got[name].dtype == want[name].dtype, name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


def features(store) -> set[str]:
    """What the store's visible files exercise: files of a partition overlapping in time
    (live segments), merged files holding rows of several knowledge times."""
    found = set()
    for table in ("trades", *COARSE):
        if table not in store.tables():
            continue
        t = store[table]
        for sym in SYMS:
            e = t._index(sym).entries
            if (e["kt_max"] > e["committed_at"]).any():
                found.add("merged with _kt")
            live = e[e["superseded_at"] == np.iinfo(np.int64).max]
            live = live[live["rows"] > 0]
            for p in np.unique(live["partition"]):
                f = live[live["partition"] == p]
                if len(f) > 1 and (f["first_ts"][1:] <= np.maximum.accumulate(f["last_ts"])[:-1]).any():
                    found.add(f"overlapping segments ({table})")
    return found


def queries(rng: np.random.Generator, times: list):
    """Random reads: symbols (one, or a list in any order), bounds (often on a tie
    instant), as-of times (between versions), column subsets."""
    for _ in range(45):
        table = str(rng.choice(["trades", *COARSE]))
        k = int(rng.integers(0, 4))
        symbols = str(rng.choice(SYMS)) if k == 0 else [str(s) for s in rng.permutation(SYMS)[:k]]
        start = end = None
        if rng.random() < 0.5:
            start = pd.Timestamp(DAYS[int(rng.integers(0, len(DAYS)))], tz="UTC") + pd.Timedelta(minutes=30 * int(rng.integers(0, 60)))
        if rng.random() < 0.4:
            end = pd.Timestamp(DAYS[int(rng.integers(0, len(DAYS)))], tz="UTC") + pd.Timedelta(minutes=30 * int(rng.integers(1, 60)))
            if start is not None and end <= start:
                start, end = end - pd.Timedelta(minutes=1), start + pd.Timedelta(minutes=1)
        as_of = None if rng.random() < 0.3 else times[int(rng.integers(0, len(times)))]
        if as_of is not None and rng.random() < 0.5:
            as_of = as_of - pd.Timedelta(milliseconds=int(rng.integers(1, 1000)))  # between two commits
            as_of = max(as_of, times[0])
        names = ["price", "side", "recv_ts"] if table == "trades" else ["tag", "x"]
        columns = None if rng.random() < 0.6 else [str(c) for c in rng.permutation(names)[: int(rng.integers(0, len(names) + 1))]]
        yield table, (symbols, start, end), {"as_of": as_of, "columns": columns}


def limits(rng: np.random.Generator, n: int) -> list[int]:
    out = {0, 1, 2, 3, n, n + 1, n + 100, max(n - 1, 0), int(rng.integers(0, n + 2))}
    out.update(int(v) for v in rng.integers(0, max(n, 1), 3))
    return sorted(out)


@pytest.mark.parametrize("chunk_rows", [3, 16, splay.CHUNK_ROWS])
def test_limited_reads_are_the_first_rows_of_the_unlimited_read(tmp_path, monkeypatch, chunk_rows):
    """For every generated store, read and limit: ``select_columns(..., limit=N)`` equals
    ``select_columns(...)[:N]`` (names, dtypes, values, order of ties), and ``select``
    with a limit equals the first N rows of its frame."""
    monkeypatch.setattr(splay, "CHUNK_ROWS", chunk_rows)  # the files written here have chunks this long
    seen, compared = set(), 0
    for seed in range(3):
        rng = np.random.default_rng(1000 * chunk_rows + seed)
        store, times = build(tmp_path / f"s{seed}", seed + 17 * chunk_rows)
        with store:
            seen |= features(store)
            for i, (table, args, kw) in enumerate(queries(rng, times)):
                t = store[table]
                full = t.select_columns(*args, **kw)
                for n in limits(rng, len(full)):
                    assert_same(t.select_columns(*args, **kw, limit=n), full[:n])
                    compared += 1
                if i % 9 == 0:  # the frame path: the same read
                    n = int(rng.integers(0, len(full) + 2))
                    frame = t.select(*args, **kw)
                    pdt.assert_frame_equal(t.select(*args, **kw, limit=n), frame.iloc[:n])
    assert compared > 1000
    # the cases the comparison must have met (the generator's seeds were chosen so)
    assert {"merged with _kt", "overlapping segments (trades)", "overlapping segments (monthly)"} <= seen, seen


def test_overlapping_live_segments_ties_and_kt_filtered_merges(store, clock):
    """The hard cases by hand: in one day, a merged file whose rows were committed at
    several times, then live segments that start before the merged file's last row,
    with rows tying across files and across symbols; read as of every commit."""
    t = store["trades"]
    day = pd.Timestamp("2024-08-08", tz="UTC")
    times = []
    next_id = 1
    rng = np.random.default_rng(4)
    for sym in (SYM, ETH):
        for k in range(12):  # 9+ small appends: merged into one file with _kt, then more live files
            n = int(rng.integers(1, 6))
            ts = day + pd.to_timedelta(np.sort(rng.integers(0, 8, n)) * 10, unit="s")  # 8 instants: ties everywhere
            df = trades(str(day.date()), n, first_id=next_id)
            df.index = pd.DatetimeIndex(ts, name="ts")
            df["recv_ts"] = df.index + pd.Timedelta("1ms")
            next_id += n
            t.append(sym, df)
            clock.advance(1)
            times.append(clock.now())
    assert "merged with _kt" in features(store) and "overlapping segments (trades)" in features(store)
    for as_of in [None, *times[::3], *(x - pd.Timedelta("1ms") for x in times[1::4])]:
        for symbols in (SYM, [SYM, ETH], [ETH, SYM]):
            full = t.select_columns(symbols, as_of=as_of)
            for n in range(len(full) + 2):
                assert_same(t.select_columns(symbols, as_of=as_of, limit=n), full[:n])
            for start in (day + pd.Timedelta(seconds=20), day + pd.Timedelta(seconds=25)):
                full = t.select_columns(symbols, start, day + pd.Timedelta(seconds=60), as_of=as_of, columns=["trade_id"])
                for n in range(0, len(full) + 2, 3):
                    got = t.select_columns(symbols, start, day + pd.Timedelta(seconds=60), as_of=as_of, columns=["trade_id"], limit=n)
                    assert_same(got, full[:n])


def test_corrections_and_deletes_as_of_between_versions(store, clock):
    """A day replaced by a correction, then deleted: a limited read as of each time sees
    the version visible then, first rows only."""
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 50))
    t.insert(SYM, "2024-08-09", trades("2024-08-09", 50, first_id=100))
    v1 = clock.now()
    clock.advance(10)
    t.insert(SYM, "2024-08-08", trades("2024-08-08 12:00", 20, first_id=500, seed=2), reason="fix")
    v2 = clock.now()
    clock.advance(10)
    t.delete(SYM, "2024-08-08", reason="bad day")
    v3 = clock.now()
    for as_of, first_id in ((v1, 1), (v2, 500), (v3, 100), (None, 100)):
        got = t.select_columns(SYM, as_of=as_of, limit=3)
        assert list(got["trade_id"]) == [first_id, first_id + 1, first_id + 2]
        full = t.select_columns(SYM, as_of=as_of)
        for n in (0, 5, 20, 21, 49, 50, 51, 70, 71, 1000):
            assert_same(t.select_columns(SYM, as_of=as_of, limit=n), full[:n])


def test_empty_results_and_limit_zero_keep_columns_and_dtypes(store):
    t = store["trades"]
    empty = t.select_columns(SYM)  # nothing stored
    for n in (0, 1, 10):
        assert_same(t.select_columns(SYM, limit=n), empty)
        assert_same(t.select_columns([SYM, ETH], columns=["price"], limit=n), t.select_columns([SYM, ETH], columns=["price"]))
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 30))
    zero = t.select_columns([SYM, ETH], limit=0)
    assert len(zero) == 0 and zero.names == ["ts", *t.schema.names, "symbol"]
    assert zero["symbol"].dtype.kind == "U"
    pdt.assert_frame_equal(t.select(SYM, limit=0), t.select(SYM).iloc[:0])
    assert len(t.select_columns(SYM, "2024-08-09", limit=5)) == 0  # a window past the rows


@pytest.mark.parametrize("bad", [-1, True, False, 1.5, "3", np.float64(2.0), [1]])
def test_a_limit_that_is_not_an_int_at_least_zero_is_refused(store, bad):
    t = store["trades"]
    t.insert(SYM, "2024-08-08", trades("2024-08-08", 5))
    for read in (t.select, t.select_columns):
        with pytest.raises(FrameError, match="limit must be an int >= 0"):
            read(SYM, limit=bad)
    assert len(t.select_columns(SYM, limit=np.int64(2))) == 2  # numpy ints are ints
    assert len(t.select(SYM, limit=np.uint8(4))) == 4


class ReadLog:
    """Which files a read opens and which chunks it decompresses: ``splay``'s own
    methods, wrapped (the reads themselves are real)."""

    def __init__(self, monkeypatch):
        self.opened, self.chunks = [], []
        opener, reader = splay.FileCache._open, splay._Layout.read_chunk

        def _open(cache, path):
            if path not in cache._handles:
                self.opened.append(path)
            return opener(cache, path)

        def read_chunk(layout, name, i, dst):
            self.chunks.append((layout.path, name, i))
            return reader(layout, name, i, dst)

        monkeypatch.setattr(splay.FileCache, "_open", _open)
        monkeypatch.setattr(splay._Layout, "read_chunk", read_chunk)

    def clear(self):
        self.opened.clear()
        self.chunks.clear()


def test_a_limited_read_opens_and_decompresses_only_what_its_rows_need(tmp_path, monkeypatch):
    monkeypatch.setattr(splay, "CHUNK_ROWS", 100)  # 1,000-row days of 10 chunks per column
    clock = FrozenClock("2025-01-01")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        t = store["trades"]
        for d in range(5):
            t.insert(SYM, f"2024-08-0{d + 1}", trades(f"2024-08-0{d + 1}", 1000, first_id=1 + 1000 * d, step="60ms"))
            t.insert(ETH, f"2024-08-0{d + 1}", trades(f"2024-08-0{d + 1} 00:05", 1000, first_id=10**6 + 1000 * d, step="60ms"))
        files = {e: t._abs(t._index(SYM).path_of(x)) for e, x in enumerate(t._index(SYM).entries)}
        store._files.close()
        log = ReadLog(monkeypatch)
        cols = len(t.schema.names) + 1  # with ts

        def read(*args, **kw):
            store._files.close()  # every read opens what it reads
            log.clear()
            return t.select_columns(*args, **kw)

        got = read(SYM, limit=10)  # 5 days asked for, no bounds: day 1's first chunk of each column
        assert list(got["trade_id"]) == list(range(1, 11))
        assert log.opened == [files[0]]
        assert sorted(log.chunks) == sorted({(files[0], c, 0) for c in ["ts", *t.schema.names]})
        assert len(log.chunks) == cols  # each once: the ts read to plan is the result's

        read(SYM, limit=150)  # two chunks of day 1
        assert log.opened == [files[0]] and {i for _, _, i in log.chunks} == {0, 1} and len(log.chunks) == 2 * cols

        read(SYM, limit=1000)  # all of day 1, nothing of day 2
        assert log.opened == [files[0]]
        read(SYM, limit=1001)  # and one row of day 2
        assert log.opened == [files[0], files[1]]
        assert {i for p, _, i in log.chunks if p == files[1]} == {0}

        read(SYM, "2024-08-03 00:00:30", None, limit=10)  # bisection to row 500 (chunk 4's ts), then chunk 5
        assert log.opened == [files[2]]
        assert sorted(log.chunks) == sorted({(files[2], "ts", 4)} | {(files[2], c, 5) for c in ["ts", *t.schema.names]})

        # several symbols: ETH starts 5 minutes after SYM's 10th row, so none of its files
        # is opened; in the other order SYM's first day is read up to ETH's 10th row
        got = read([SYM, ETH], limit=10)
        assert list(got["symbol"]) == [SYM] * 10 and log.opened == [files[0]]
        got = read([ETH, SYM], limit=10)
        assert list(got["symbol"]) == [SYM] * 10
        assert len(log.opened) == 2 and files[0] in log.opened
        assert len({p for p, _, _ in log.chunks}) == 2 and {i for _, _, i in log.chunks} == {0}

        # the unlimited read decompresses every chunk of the 5 days, once; so does a limit
        # above the rows, and a limit ending in day 5 reads days 1-4 so and day 5's first rows
        read(SYM)
        assert len(log.opened) == 5 and len(log.chunks) == 5 * 10 * cols
        read(SYM, limit=10**12)
        assert len(log.opened) == 5 and len(log.chunks) == 5 * 10 * cols
        read(SYM, limit=4450)
        assert len(log.opened) == 5 and len(log.chunks) == 4 * 10 * cols + 5 * cols


def test_live_files_after_the_rows_needed_are_not_opened(tmp_path, monkeypatch):
    """A live day of appended files that overlap: a later file starting after the
    limit-th row found so far is not opened, one starting at that very ts neither (its
    rows tie after the earlier version's), one starting before it is."""
    clock = FrozenClock("2025-01-01")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        t = store["trades"]
        for k in range(5):  # 5 live files (below a merge's tier)
            df = trades("2024-08-08", 4, first_id=1 + 10 * k, step="1s")
            df.index = df.index + pd.Timedelta(seconds=2 * k)  # file k: seconds 2k..2k+3
            t.append(SYM, df)
            clock.advance(1)
        entries = t._index(SYM).entries
        assert len(entries) == 5
        paths = [t._abs(t._index(SYM).path_of(e)) for e in entries]
        log = ReadLog(monkeypatch)
        store._files.close()
        full = t.select_columns(SYM)
        for n in range(len(full) + 1):
            store._files.close()
            log.clear()
            assert_same(t.select_columns(SYM, limit=n), full[:n])
            if n == 0:
                assert log.opened == []
            if n in (1, 2, 3):  # file 0's n-th row is at n-1 s <= 2 s, where file 1 starts: it sorts after
                assert log.opened == paths[:1]
            if n == 4:  # file 0's 4th row is at 3 s, file 1 starts before (2 s); file 2 at 4 s
                assert log.opened == paths[:2]
                assert list(full["trade_id"][:4]) == [1, 2, 3, 11]


def test_cli_select_n_prints_the_first_rows_of_a_long_range(tmp_path, monkeypatch):
    """`tickstore select ... -n N` is the limited read: its N rows, without opening the
    days after them."""
    clock = FrozenClock("2025-01-01")
    root = tmp_path / "s"
    with Tickstore(root, clock=clock) as store:
        t = store["trades"]
        for d in range(3):
            t.insert(SYM, f"2024-08-0{d + 1}", trades(f"2024-08-0{d + 1}", 50, first_id=1 + 100 * d))
            t.insert(ETH, f"2024-08-0{d + 1}", trades(f"2024-08-0{d + 1}", 50, first_id=10**6 + 100 * d))
        day1 = sorted(t._abs(t._index(s).path_of(t._index(s).entries[0])) for s in (SYM, ETH))
    log = ReadLog(monkeypatch)
    out = CliRunner().invoke(main, ["--root", str(root), "select", "trades", SYM, ETH, "-f", "csv", "-n", "4", "--columns", "trade_id"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert [ln.split(",")[1:] for ln in lines[1:]] == [["1", SYM], ["1000000", ETH], ["2", SYM], ["1000001", ETH]]
    assert sorted(log.opened) == day1 and sorted({p for p, _, _ in log.chunks}) == day1  # day 1 of each symbol


def _damage_chunk(path, column: str) -> None:
    """Flip one bit inside the first chunk of ``column`` of a format-3 data file (the
    chunk's xxh3 no longer matches)."""
    layout = splay.FileCache()
    try:
        offset, size, inner, inner_size, _ = layout._open(str(path)).columns[column][3][0]
    finally:
        layout.close()
    raw = bytearray(path.read_bytes())
    raw[offset + max(inner, 0) + (inner_size if inner >= 0 else size) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_damage_in_a_file_the_rows_do_not_need_and_a_damaged_version(tmp_path):
    """A damaged chunk in a later day's file: the limited read of earlier rows does not
    read it and answers; a limit reaching into it raises as the whole read does. Once
    reindex records the version as damaged, every read of a range holding its day raises,
    limited or not (the index says so before anything is read); a range before it reads on."""
    clock = FrozenClock("2025-01-01")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        t = store["trades"]
        for d in range(3):
            t.insert(SYM, f"2024-08-0{d + 1}", trades(f"2024-08-0{d + 1}", 40, first_id=1 + 100 * d))
        first = t.select_columns(SYM, limit=10)
        path = store.root / t.versions(SYM, "2024-08-03")["path"].iloc[-1]
    _damage_chunk(path, "price")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        t = store["trades"]
        with pytest.raises(CorruptionError, match="checksum mismatch"):
            t.select_columns(SYM)
        assert_same(t.select_columns(SYM, limit=10), first)
        assert list(t.select_columns(SYM, limit=80)["trade_id"][-1:]) == [140]  # days 1 and 2 exactly
        with pytest.raises(CorruptionError, match="checksum mismatch"):
            t.select_columns(SYM, limit=81)
        assert not store.reindex().ok
        for kw in ({}, {"limit": 10}, {"limit": 0}):
            with pytest.raises(CorruptionError, match="damaged"):
                t.select_columns(SYM, **kw)
        assert_same(t.select_columns(SYM, None, "2024-08-03", limit=10), first)
