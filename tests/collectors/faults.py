"""Fault injection for the collector tests and the soak benchmark: a store that fails.

``FaultyStore`` wraps a real ``Tickstore``: every ``Table.append`` goes to the real table
unless the store is *down*, then it raises the chosen exception, either before the real
append (nothing stored) or after it (stored, yet the caller sees a failure: the case that
tests exactly-once for tables without a key). It goes down at the ``fail_from``-th append
(counting from 1), or when ``down`` is set, and stays down until ``up()``. ``refuse`` makes
it refuse chosen rows as invalid (``FrameError``), as the store does with bad values.

``POISON``: ``Simulator.poison`` mutations of a Binance trade frame, one per kind of value
that parses but cannot be right, with the text the refusal must quote.
"""

from __future__ import annotations

import errno
import threading

import orjson
import tables

from tickstore.errors import CorruptionError, FrameError, LockedError, StorageError

__all__ = ["FaultyStore", "FAULTS", "POISON"]

# name -> a factory of the exception a broken store raises
FAULTS = {
    "corruption": lambda: CorruptionError("index of trades is unreadable: checksum mismatch (injected)"),
    "disk_full": lambda: StorageError("store: writing a version file failed: No space left on device (injected)",
                                      errno=errno.ENOSPC),
    "enospc_oserror": lambda: OSError(errno.ENOSPC, "No space left on device (injected)"),
    "hdf5": lambda: tables.HDF5ExtError("Problems creating the table (injected)"),
    "locked": lambda: LockedError("trades is locked by another writer (pid 4242) (injected)"),
    "bug": lambda: RuntimeError("an unexpected bug in the store (injected)"),
}


class FaultyStore:
    """A ``Tickstore`` whose appends fail while it is down (see the module doc)."""

    def __init__(self, store, fault: str = "corruption", *, after_commit: bool = False, fail_from: int | None = None):
        self.store = store
        self.fault = fault
        self.after_commit = after_commit
        self.fail_from = fail_from
        self.down = threading.Event()
        self.calls = 0
        self.raised = 0
        self.refuse = None  # (table, df) -> bool: refuse this frame as invalid
        self._lock = threading.Lock()

    def up(self) -> None:
        self.fail_from = None
        self.down.clear()

    def __getitem__(self, name):
        return _FaultyTable(self, self.store[name])

    def __getattr__(self, name):
        return getattr(self.store, name)

    def _failing(self) -> bool:
        with self._lock:
            self.calls += 1
            if self.fail_from is not None and self.calls >= self.fail_from:
                self.down.set()
            return self.down.is_set()


class _FaultyTable:
    def __init__(self, owner: FaultyStore, table):
        self._owner, self._table = owner, table

    def append(self, symbol, df, **kw):
        o = self._owner
        if o.refuse is not None and o.refuse(self._table.name, df):
            raise FrameError(f"{self._table.name} {symbol}: refused {len(df)} rows (injected invalid value)")
        failing = o._failing()
        if failing and not o.after_commit:
            o.raised += 1
            raise FAULTS[o.fault]()
        out = self._table.append(symbol, df, **kw)
        if failing:
            o.raised += 1
            raise FAULTS[o.fault]()
        return out

    def __getattr__(self, name):
        return getattr(self._table, name)


def _set(field, value):
    def mutate(payload: bytes) -> bytes:
        d = orjson.loads(payload)
        d["data"][field] = value
        return orjson.dumps(d)

    return mutate


def _t_past_int64(payload: bytes) -> bytes:  # JSON carries it, int64 cannot hold it
    d = orjson.loads(payload)
    return payload.replace(b'"t":%d' % d["data"]["t"], b'"t":%d' % 2**70)


# name -> (mutation of a Binance trade frame, what the refusal says)
POISON = {
    "T_year_5138": (_set("T", 10**17), "T=100000000000000000 ms"),
    "t_not_a_number": (_set("t", "abc"), "t='abc'"),
    "t_past_int64": (_t_past_int64, "t=1.18"),
    "T_as_a_string": (_set("T", "x" * 2048), "T='xxxx"),
    "p_nan": (_set("p", "NaN"), "p='NaN' is not finite"),
    "q_infinite": (_set("q", "inf"), "q='inf' is not finite"),
}
