"""Dask entry points: a store table as a dask DataFrame, and scans reduced in the workers.

``select_dask`` resolves, once and in the calling process, which version files of a symbol
make up each stored partition (day files; month/year files for coarse tables) in
[start, end) as known at ``as_of``, and writes that down as one ``Pin`` per partition
(``partition_pins``). Each dask task reads its pins by path through a store kept open for
the life of the worker process (``store.read_pin``: no index is loaded in the worker, and
file handles stay warm from one task and one scan to the next). The concatenation equals
``Table.select(symbol, start, end, as_of=...)`` row for row, and every partition can be
re-read later from its pin alone.

``scan_dask`` runs a function of each partition (bars, say) in the task that reads it, so
only its result leaves the worker; ``trade_bars_dask`` is that for ``trade_bars`` and equals
``select_trade_bars`` exactly. ``files_per_partition`` groups consecutive files into one
task: every task costs milliseconds of scheduling, so small files scan faster grouped
(about two dask partitions per worker thread).

``as_of=None`` is resolved to "now" once, when the graph is built, so tasks that run later
(or on another machine) still read one consistent state of the store.

Worker processes
----------------
``local_cluster()`` starts a ``distributed.LocalCluster`` fit for these scans: worker
processes (HDF5 reads and pandas hold the GIL, so threads of one process do not read in
parallel), ``n_workers x threads_per_worker`` = the cores, and glibc's default allocator
thresholds. distributed's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
(config ``distributed.nanny.pre-spawn-environ``); setting it switches off glibc's dynamic
mmap threshold, so every array over 128 KiB is a fresh ``mmap`` that page-faults in and is
unmapped on free. A scan allocates such arrays all the time (a day of trades is MBs): on
30 days x 300,000 trades each worker took ~137,000 page faults and 0.4 s of system time
per scan (~500-8,000 without the variable), and reading + binning a day ran 1.6x (read)
and 2.5x (bars) slower than in the main process. Other clusters: set that key to ``null``
in the dask config of the process that starts the workers (and keep the variable out of
its environment).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import threading

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd

from tickstore.pin import Pin, PinnedFile

from ._frames import to_utc
from .bars import MARKET_ONLY, TRADE_COLUMNS, trade_bars
from .coverage import streams_of, uncovered
from .errors import ResearchError

__all__ = [
    "select_dask",
    "scan_dask",
    "trade_bars_dask",
    "partition_pins",
    "partition_windows",
    "local_cluster",
    "worker_stores",
    "close_worker_stores",
]

_NS_PER_DAY = 86_400_000_000_000
#: dask config key whose default (``MALLOC_TRIM_THRESHOLD_: 65536``) slows worker reads
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"

# -- the worker side -----------------------------------------------------------------------
# One open store per (process, root): a task reuses the file handles of earlier tasks in the
# same worker process. Versions are immutable, so a cached handle never goes stale.
_STORES: dict[tuple[int, str], object] = {}
_STORES_LOCK = threading.Lock()


def _worker_store(root: str):
    key = (os.getpid(), root)  # a forked child must not share its parent's open files
    store = _STORES.get(key)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.get(key)
            if store is None:
                if not os.path.isdir(root):
                    # Tickstore() would create an empty root and every read would then fail
                    raise ResearchError(f"store root {root} is not a directory on this worker (pid {os.getpid()}); "
                                        "workers must see the store at the same path as the client")
                from tickstore import Tickstore  # imported in the worker

                store = _STORES[key] = Tickstore(root)
    return store


def worker_stores() -> list[str]:
    """Roots of the stores this process keeps open for ``select_dask``/``scan_dask`` tasks.

    Run it on the workers with ``client.run(worker_stores)``.
    """
    pid = os.getpid()
    return sorted(root for p, root in _STORES if p == pid)


def close_worker_stores() -> int:
    """Close the stores (and their file handles) this process keeps open; return how many.

    ``client.run(close_worker_stores)`` releases the handles of every worker; the next
    task reopens what it needs.
    """
    with _STORES_LOCK:
        mine = [k for k in _STORES if k[0] == os.getpid()]
        for k in mine:
            _STORES.pop(k).close()
    return len(mine)


def _scan_task(pins: tuple[tuple, ...], lo: int, hi: int, root: str, verify: bool, fn, table: str, cols) -> pd.DataFrame:
    """One dask partition: read consecutive stored partitions (their pins, flattened)
    and, for a scan, reduce them with ``fn`` in the same task. (No parameter may be named
    ``columns``: dask's from_map would then push column projections into it.)"""
    store = _worker_store(root)
    frames = [store.read_pin(_unflat(pin), check=verify) for pin in pins]
    if not frames:  # a window with no file (nothing stored in [start, end))
        frame = store[table].schema.empty_frame(cols)
    else:
        frame = frames[0] if len(frames) == 1 else pd.concat(frames)
    if fn is None:
        return frame
    return fn(frame, pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC"))


# -- the client side -----------------------------------------------------------------------
def _pins(store, table: str, symbol: str, start, end, as_of, columns) -> list[tuple[int, int, Pin]]:
    """(lo, hi, pin) per partition with visible rows in [start, end): its window, clipped."""
    as_of_ns = store.resolve_as_of(as_of)
    t = store[table]
    part = t.schema.partition
    s = to_utc(start, what="start").value if start is not None else None
    e = to_utc(end, what="end").value if end is not None else None
    if s is not None and e is not None and s >= e:
        raise ResearchError(f"start {pd.Timestamp(s, tz='UTC')} is not before end {pd.Timestamp(e, tz='UTC')}")
    idx = t.index(symbol)  # one row per version file: (symbol, date) -> version, times, path, ...
    if not len(idx):
        return []
    committed = idx["committed_at"].array.asi8
    superseded = idx["superseded_at"]
    if as_of_ns is None:
        # "latest" fixed now: the store's knowledge time, at or after every commit it holds
        as_of_ns = int(store.now().value)
    # visible at as_of: committed_at <= as_of < superseded_at (NaT: not superseded)
    visible = (committed <= as_of_ns) & (superseded.isna().to_numpy() | (superseded.array.asi8 > as_of_ns))
    rows = idx["rows"].to_numpy()
    first = idx["first_ts"].array.asi8
    last = idx["last_ts"].array.asi8
    parts = idx.index.get_level_values("date").asi8 // _NS_PER_DAY
    cols = tuple(columns) if columns else None
    pins = []
    for p in np.unique(parts[visible & (rows > 0)]):
        p = int(p)
        lo, hi = p * _NS_PER_DAY, int(part.end(p)) * _NS_PER_DAY
        lo, hi = max(lo, s) if s is not None else lo, min(hi, e) if e is not None else hi
        if lo >= hi:
            continue
        # the partition's visible files in version order (the index is sorted so), those
        # holding rows of [lo, hi) only: tombstones and files outside the window add nothing
        m = np.flatnonzero((parts == p) & visible & (rows > 0) & (first < hi) & (last >= lo))
        if not len(m):
            continue
        files = tuple(
            PinnedFile(symbol, p, str(idx["path"].iat[i]), int(idx["version"].iat[i]), str(idx["checksum"].iat[i]), int(rows[i]))
            for i in m
        )
        # A window covering the whole partition is left unbounded in the pin: the files hold
        # rows of their partition only, and read_pin then reads them straight through
        # instead of bisecting both ends of every file (format-1 files: ~27 ms per
        # 300,000-row day, 7x the read itself; format 2: ~0). Windows that clip a
        # partition keep their bounds.
        whole = lo == p * _NS_PER_DAY and hi == int(part.end(p)) * _NS_PER_DAY
        pins.append((lo, hi, Pin(table, (symbol,), None if whole else lo, None if whole else hi, as_of_ns, cols, False, files)))
    return pins


def partition_pins(store, table: str, symbol: str, start=None, end=None, *, as_of=None, columns=None) -> list[Pin]:
    """One ``Pin`` per stored partition of ``symbol`` with rows in [start, end) as known at ``as_of``.

    Each pin names the partition's event-time window (clipped to [start, end); ``None``
    bounds when the window is the whole partition), the fixed knowledge time, the columns
    and the version files (path, version, sha256) to read;
    ``store.read_pin(pin)`` reproduces that partition of ``Table.select`` bit for bit, now or
    months later. They are what ``select_dask`` sends to its tasks.

    Returns
    -------
    list of Pin
        In time order; empty when nothing is stored in the range.
    """
    return [pin for _, _, pin in _pins(store, table, symbol, start, end, as_of, columns)]


def partition_windows(store, table: str, symbol: str, start=None, end=None, *, as_of=None) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """Event-time windows [lo, hi) of the stored files of ``symbol`` that meet [start, end).

    Returns
    -------
    list of (lo, hi)
        One per partition with visible rows in the range, clipped to [start, end), in time order.
    """
    return [
        (pd.Timestamp(lo, tz="UTC"), pd.Timestamp(hi, tz="UTC"))
        for lo, hi, _ in _pins(store, table, symbol, start, end, as_of, None)
    ]


def _check_files_per_partition(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ResearchError(f"files_per_partition must be a positive int, got {k!r}")
    return int(k)


def _plan(store, table, symbol, start, end, as_of, columns, files_per_partition):
    """Task arguments per dask partition: (flattened pins, lo ns, hi ns); the windows
    tile [start (else the first partition's start), end (else the last partition's end))."""
    k = _check_files_per_partition(files_per_partition)
    parts = _pins(store, table, symbol, start, end, as_of, columns)
    groups = [parts[i : i + k] for i in range(0, len(parts), k)]
    if not groups:
        if start is None or end is None:
            return []
        groups, edges = [[]], [0, 0]  # one window, no file: a scan still sees [start, end)
    else:
        edges = [g[0][0] for g in groups] + [parts[-1][1]]
    if start is not None:
        edges[0] = to_utc(start, what="start").value
    if end is not None:
        edges[-1] = to_utc(end, what="end").value
    return [(tuple(_flat(pin) for pin in _merge_whole([pin for _, _, pin in g])), edges[i], edges[i + 1]) for i, g in enumerate(groups)]


def _merge_whole(pins: list[Pin]) -> list[Pin]:
    """Consecutive whole-partition (unbounded) pins as one pin of all their files, which
    ``read_pin`` decompresses straight into one array per column: 8 day files read in
    42 ms instead of 75 ms as 8 frames concatenated."""
    out: list[Pin] = []
    for pin in pins:
        prev = out[-1] if out else None
        if prev is not None and prev.start is None and prev.end is None and pin.start is None and pin.end is None:
            out[-1] = dataclasses.replace(prev, files=prev.files + pin.files)
        else:
            out.append(pin)
    return out


# Pins travel as plain tuples: dask tokenizes every task argument, and 1,500 day pins
# tokenize in 56 ms as tuples, 312 ms as dataclasses (JSON: 106 ms to write, 8 to tokenize).
def _flat(pin: Pin) -> tuple:
    files = tuple((f.symbol, f.partition, f.path, f.version, f.checksum, f.rows) for f in pin.files)
    return (pin.table, pin.symbols, pin.start, pin.end, pin.as_of, pin.columns, pin.multi, files)


def _unflat(t: tuple) -> Pin:
    return Pin(*t[:7], tuple(PinnedFile(*f) for f in t[7]))


def _from_plan(store, table, cols, plan, meta, fn, verify, clear_divisions: bool, label: str) -> dd.DataFrame:
    # no string conversion: the partitions are what Table.select returns (object strings),
    # and the conversion would be one more task per partition when dask does not fuse
    with dask.config.set({"dataframe.convert-string": False}):
        if not plan:
            return dd.from_pandas(meta, npartitions=1)
        # partition i holds [lo_i, hi_i); dask's last division is inclusive: the end less 1 ns
        divisions = None if clear_divisions else [pd.Timestamp(lo, tz="UTC") for _, lo, _ in plan] + [pd.Timestamp(plan[-1][2] - 1, tz="UTC")]
        return dd.from_map(
            _scan_task,
            [p[0] for p in plan],
            [p[1] for p in plan],
            [p[2] for p in plan],
            args=(str(store.root), bool(verify), fn, table, cols),
            meta=meta,
            divisions=divisions,
            label=label,
            enforce_metadata=False,
        )


def select_dask(
    store, table: str, symbol: str, start=None, end=None, *, as_of=None, columns=None, files_per_partition: int = 1, verify: bool = False
) -> dd.DataFrame:
    """``Table.select`` as a lazy dask DataFrame with one partition per stored file.

    Parameters
    ----------
    store : Tickstore
        Used here to resolve ``as_of`` and the files to read; tasks open ``store.root``
        (once per worker process) and read those files by path.
    table, symbol, start, end, columns :
        As ``Table.select`` (one symbol).
    as_of : None | time | snapshot name
        Knowledge time; ``None`` = now, resolved once here.
    files_per_partition : int
        Stored partitions (day files, ...) per dask partition, consecutive in time
        (default 1). Every dask task costs milliseconds of scheduling on top of its work,
        so for small files (a day of 300,000 trades is ~7 MB in memory) about two dask
        partitions per worker thread scan faster than one per file.
    verify : bool
        Check each file's sha256 against the index before reading it (reads each file
        twice; off by default, as for ``select``).

    Returns
    -------
    dask.dataframe.DataFrame
        Indexed by ``ts`` with known divisions: partition ``i`` holds the rows of
        ``[divisions[i], divisions[i + 1])`` (the last division is the end less 1 ns).
        Empty (one empty partition) when nothing is stored in the range.

    Notes
    -----
    To reduce each partition in the workers prefer ``scan_dask``: the reduction runs in
    the read's task whatever dask's optimizer does. (With dask 2026.8.0, ``.compute()``
    does not fuse ``map_partitions`` into the read: two tasks per partition, and each
    frame read is stored in the worker; a 30-day bars scan took 1.1-1.25x as long.)
    """
    cols = list(columns) if columns else None
    meta = store[table].schema.empty_frame(cols)
    plan = _plan(store, table, symbol, start, end, as_of, cols, files_per_partition)
    return _from_plan(store, table, cols, plan, meta, None, verify, False, "tickstore-select")


def scan_dask(
    store,
    table: str,
    symbol: str,
    fn,
    start=None,
    end=None,
    *,
    as_of=None,
    columns=None,
    meta=None,
    files_per_partition: int = 1,
    verify: bool = False,
    clear_divisions: bool = False,
) -> dd.DataFrame:
    """``fn`` of each partition of ``select_dask``, run in the task that reads it.

    Only ``fn``'s result leaves the worker. With bars, for instance::

        def minute_bars(trades, lo, hi):
            return trade_bars(trades, "1min", start=lo, end=hi)

        bars = scan_dask(store, "trades", symbol, minute_bars, start, end, files_per_partition=8).compute()
        # == trade_bars(store["trades"].select(symbol, start, end), "1min", start=start, end=end)

    Parameters
    ----------
    fn : callable ``fn(frame, lo, hi) -> DataFrame``
        ``frame``: the rows of event-time window ``[lo, hi)`` (UTC timestamps), as
        ``Table.select`` returns them. The windows of the partitions tile
        ``[start, end)`` (without ``start``/``end``: from the first stored partition's
        start to the last one's end), days with no file included, so a binning ``fn``
        given ``lo``/``hi`` produces the same bins as on the whole range, provided no bin
        straddles a partition boundary (any step dividing a day, for day files). With
        ``start`` and ``end`` given and nothing stored between them, ``fn`` still runs
        once, on an empty frame. Must be picklable (a module-level function or a
        ``functools.partial`` of one).
    meta : DataFrame, optional
        An empty frame like ``fn``'s result; default: ``fn`` of an empty frame.
    clear_divisions : bool
        Set when ``fn``'s result is not indexed by event time within ``[lo, hi)``; by
        default the result keeps the windows as divisions.
    store, table, symbol, start, end, as_of, columns, files_per_partition, verify :
        As ``select_dask``.

    Returns
    -------
    dask.dataframe.DataFrame
        One partition per group of ``files_per_partition`` stored files.
    """
    if not callable(fn):
        raise ResearchError(f"fn must be callable as fn(frame, lo, hi), got {fn!r}")
    cols = list(columns) if columns else None
    plan = _plan(store, table, symbol, start, end, as_of, cols, files_per_partition)
    if meta is None:
        if plan:
            lo, hi = pd.Timestamp(plan[0][1], tz="UTC"), pd.Timestamp(plan[0][2], tz="UTC")
        else:
            lo = to_utc(start, what="start") if start is not None else pd.Timestamp(0, tz="UTC")
            hi = to_utc(end, what="end") if end is not None else lo + pd.Timedelta(days=1)
        meta = fn(store[table].schema.empty_frame(cols), lo, hi).iloc[:0]
    return _from_plan(store, table, cols, plan, meta, fn, verify, clear_divisions, "tickstore-scan")


def _bars_of_window(trades: pd.DataFrame, lo: pd.Timestamp, hi: pd.Timestamp, *, freq, spans=None, kinds=MARKET_ONLY) -> pd.DataFrame:
    return trade_bars(trades, freq, start=lo, end=hi, uncovered=spans, kinds=kinds)


def trade_bars_dask(
    store,
    symbol: str,
    freq,
    *,
    start,
    end,
    as_of=None,
    table: str = "trades",
    files_per_partition: int = 1,
    verify: bool = False,
    coverage: bool = True,
    kinds=MARKET_ONLY,
) -> dd.DataFrame:
    """``select_trade_bars`` on dask: each task reads its files and bins them, only bars travel.

    ``trade_bars_dask(...).compute()`` equals
    ``select_trade_bars(store[table], symbol, freq, start=start, end=end, as_of=as_of)``
    exactly, for any range and any ``files_per_partition``. The uncovered spans (gap
    ledger and missing partitions, ``coverage=True``) are read once here, at the graph's
    knowledge time, and travel with the tasks: a few rows, whatever the range.

    Parameters
    ----------
    freq : str | pandas offset
        A fixed step that divides a day ("1s", "1min", "5min", "h", ...): such bins never
        straddle a file's boundary, so binning each file alone gives the bins of the whole.
    start, end : timestamp-like, tz-aware
        Event-time range; every bin of [start, end) is present, as in ``trade_bars``.
    store, symbol, as_of, table, files_per_partition, verify :
        As ``scan_dask``.
    coverage, kinds :
        As ``select_trade_bars`` (market prints only by default).

    Raises
    ------
    ResearchError
        ``freq`` is a calendar frequency or does not divide a day.
    """
    from pandas.tseries.frequencies import to_offset
    from pandas.tseries.offsets import Tick

    try:
        off = to_offset(freq)
    except (TypeError, ValueError) as exc:
        raise ResearchError(f"frequency {freq!r} is not a pandas frequency ({exc})") from None
    if not isinstance(off, Tick) or off.nanos <= 0 or _NS_PER_DAY % off.nanos:
        raise ResearchError(
            f"trade_bars_dask needs a fixed bar length that divides a day (bins must not straddle a file), got {freq!r}; "
            "use select_trade_bars, or resample the daily bars"
        )
    # read here, when the graph is built, like the pins: the tasks see one store state
    spans = uncovered(store, table, symbol, start, end, as_of=as_of, streams=streams_of(table)) if coverage else None
    fn = functools.partial(_bars_of_window, freq=freq, spans=spans, kinds=kinds)
    cols = TRADE_COLUMNS if "kind" in store[table].schema.names else TRADE_COLUMNS[:3]
    meta = trade_bars(
        store[table].schema.empty_frame(cols), off, start=pd.Timestamp(0, tz="UTC"), end=pd.Timestamp(off.nanos, tz="UTC"),
        uncovered=spans.iloc[:0] if spans is not None else None,
    ).iloc[:0]
    return scan_dask(
        store,
        table,
        symbol,
        fn,
        start,
        end,
        as_of=as_of,
        columns=cols,
        meta=meta,
        files_per_partition=files_per_partition,
        verify=verify,
    )


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def local_cluster(n_workers: int = 2, *, threads_per_worker: int | None = None, **kwargs):
    """A ``distributed.LocalCluster`` of worker processes set up for store scans.

    Parameters
    ----------
    n_workers : int
        Worker processes (default 2).
    threads_per_worker : int, optional
        Default: the cores this process may use divided by ``n_workers`` (at least 1), so
        the workers together run one thread per core.
    **kwargs
        Passed to ``LocalCluster`` (``processes`` defaults to True, ``dashboard_address``
        to ":0", a free port: no clash with other clusters on a shared machine).

    The workers start without ``MALLOC_TRIM_THRESHOLD_`` (see the module docstring:
    distributed's default makes a worker read and bin 1.6-2.5x slower); the variable is
    kept out of this process's environment while they spawn and put back after.
    """
    import distributed

    tpw = threads_per_worker if threads_per_worker is not None else max(1, _cores() // n_workers)
    kwargs.setdefault("processes", True)
    kwargs.setdefault("dashboard_address", ":0")
    with dask.config.set({_TRIM_KEY: None}), _without_env("MALLOC_TRIM_THRESHOLD_"):
        # a nanny copies its pre-spawn environment into this process's os.environ, so an
        # earlier default cluster leaves the variable here for every later child to inherit
        return distributed.LocalCluster(n_workers=n_workers, threads_per_worker=tpw, **kwargs)


@contextlib.contextmanager
def _without_env(name: str):
    old = os.environ.pop(name, None)
    try:
        yield
    finally:
        if old is not None:
            os.environ[name] = old
