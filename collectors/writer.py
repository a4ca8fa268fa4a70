"""The collector's store side: rows in, stored exactly once, whatever the store does.

``StoreWriter`` holds the rows the collector has processed but the store has not taken
yet (the *backlog*), one frame per (table, symbol). ``write()`` offers each to
``Table.append`` and tells the collector whether everything was stored, so the journal's
checkpoint moves only past rows the store committed::

    append raises ...                          the rows ...
    SchemaError / FrameError / SymbolError     are split in halves until the store takes every
      (the store refuses them as invalid)      row it accepts; each row it refuses alone goes
                                               to the quarantine with the reason (a key repeated
                                               with other values: the first received is kept)
    anything else (CorruptionError, LockedError, stay in the backlog, the same frame is offered
      OSError/ENOSPC, tables.HDF5ExtError,     again at the next attempt (the collector backs
      a bug: any exception at all)             off); nothing is dropped, nothing counted stored

Exactly once: a failed append may still have committed (an error after the commit point,
e.g. while compacting). Keyed tables (trades, quotes, book, mark, gaps, book_diffs) skip rows
whose key is stored; for keyless ones (liquidations) a (table, symbol) whose append
failed is *reconciled* at its next attempt: rows already stored are removed first
(``collectors.reconcile``: multiset difference on every column over the frame's time span). The collector asks for
the same while it replays its journal after a restart (``reconcile=True``). A reconcile
whose read fails is a failed attempt like any other.
"""

from __future__ import annotations

import logging
from collections import defaultdict

import pandas as pd

from tickstore.errors import DuplicateKeyError, FrameError, SchemaError, SymbolError

from .events import source_of
from .quarantine import Quarantine
from .reconcile import unstored

__all__ = ["INVALID", "StoreWriter"]

log = logging.getLogger(__name__)

# What the store raises for rows that can never be stored as they are; anything else is
# taken as the store's own trouble and retried.
INVALID = (SchemaError, FrameError, SymbolError)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class StoreWriter:
    """The backlog of processed rows and the rules for storing it (see the module doc).

    ``stats`` is the collector's ``CollectorStats`` (rows, store_errors, rows_rejected,
    rows_reconciled, rows_quarantined); ``quarantine`` receives the refused rows.
    """

    def __init__(self, store, quarantine: Quarantine, stats):
        self.store = store
        self.quarantine = quarantine
        self.stats = stats
        self._backlog: dict[tuple[str, str], list[pd.DataFrame]] = defaultdict(list)
        self._reconcile: set[tuple[str, str]] = set()  # keys whose next append reconciles
        self.rows = 0  # rows in the backlog
        self.written: set[tuple[str, str]] = set()  # (table, symbol) appended to: closed at the stop
        self.error: str | None = None  # the last attempt's first failure, None once all stored

    def add(self, frames: dict[tuple[str, str], pd.DataFrame]) -> None:
        """Queue frames (``EventBatcher.drain()`` output) for the next ``write``."""
        for key, df in frames.items():
            if len(df):
                self._backlog[key].append(df)
                self.rows += len(df)

    def __len__(self) -> int:
        return self.rows

    def keys(self) -> list[tuple[str, str]]:
        return list(self._backlog)

    def sample(self, limit: int = 1000) -> tuple[tuple[str, str], pd.DataFrame] | None:
        """(key, up to ``limit`` rows) of the first frame in the backlog: a probe that tells
        whether the store works again without re-processing anything."""
        for key, frames in self._backlog.items():
            return key, frames[0].iloc[:limit]
        return None

    def discard(self) -> None:
        """Forget the backlog (the collector re-produces it from its journal)."""
        self._reconcile.update(self._backlog)
        self._backlog.clear()
        self.rows = 0

    def write(self, *, source: str, position, reconcile: bool = False) -> bool:
        """Offer every backlog frame to the store; True when all were stored (or quarantined).

        Never raises: a frame the store fails on stays in the backlog and ``error`` says
        why (the first failure of this attempt).
        """
        self.error = None
        for key in list(self._backlog):
            frames = self._backlog[key]
            df = frames[0] if len(frames) == 1 else pd.concat(frames).sort_index(kind="stable")
            try:
                self.append(key, df, source=source, position=position, reconcile=reconcile or key in self._reconcile)
            except Exception as exc:  # noqa: BLE001 - any failure keeps the rows for the next attempt
                self._backlog[key] = [df]
                self._reconcile.add(key)  # it may have committed before it raised
                self.stats.store_errors += 1
                if self.error is None:
                    self.error = f"{key[0]} {key[1]}: {_reason(exc)}"
                    log.warning("append %s %s failed (%d rows kept for the next attempt): %s", key[0], key[1], len(df), _reason(exc))
                continue
            del self._backlog[key]
            self._reconcile.discard(key)
            self.rows -= len(df)
        return self.error is None

    def append(self, key: tuple[str, str], df: pd.DataFrame, *, source: str, position, reconcile: bool = False) -> None:
        """Store ``df`` once: rows the store refuses as invalid are quarantined, any other
        failure raises (after storing nothing, or a part that a retry will not repeat)."""
        table, symbol = key
        t = self.store[table]
        if reconcile and t.schema.key is None:
            df = self._unstored(t, symbol, df)
            if df.empty:
                return
        if t.schema.key is not None:
            df = self._first_of_each_key(t, key, df, position)
        self._store(t, key, df, source, position)

    # -- internals --------------------------------------------------------------------
    def _store(self, t, key, df: pd.DataFrame, source: str, position) -> None:
        try:
            t.append(key[1], df, source=source_of(key[0], source))
        except INVALID as exc:
            if len(df) == 1:
                self._quarantine(key, df, _reason(exc), position)
                return
            log.warning("%s %s: the store refused %d rows (%s); storing what it accepts", key[0], key[1], len(df), exc)
            half = len(df) // 2
            self._store(t, key, df.iloc[:half], source, position)
            self._store(t, key, df.iloc[half:], source, position)
            return
        self.written.add(key)
        self.stats.rows[key[0]] += len(df)

    def _first_of_each_key(self, t, key, df: pd.DataFrame, position) -> pd.DataFrame:
        """One row per key: a venue re-sending a row (same values, another receive time, as
        Hyperliquid does with recent trades after a reconnect) is dropped, counted in
        ``rows_rejected``; a row repeating a key with other values is quarantined (the
        first received is kept)."""
        names = list(t.schema.key)
        frame = df.reset_index()
        if any(n not in frame.columns for n in names):
            return df  # the store will say what is wrong with the columns
        dup = frame.duplicated(subset=names, keep="first").to_numpy()
        if not dup.any():
            return df
        values = [c for c in frame.columns if c != "recv_ts"]
        resent = dup & frame.duplicated(subset=values, keep="first").to_numpy()
        conflict = dup & ~resent
        self.stats.rows_rejected += int(resent.sum())
        if conflict.any():
            log.warning("%s %s: %d rows repeat the key %s of an earlier row with other values; quarantined",
                        key[0], key[1], int(conflict.sum()), names)
            self._quarantine(key, df[conflict], f"{DuplicateKeyError.__name__}: repeats the {names} of an earlier row "
                             "of the batch with other values (the first received is kept)", position)
        return df[~dup]

    def _quarantine(self, key, df: pd.DataFrame, reason: str, position) -> None:
        self.stats.rows_quarantined += len(df)
        self.quarantine.rows(reason=reason, table=key[0], symbol=key[1], df=df, position=position or (-1, -1))
        log.error("quarantined %d rows of %s %s: %s", len(df), key[0], key[1], reason)

    def _unstored(self, t, symbol: str, df: pd.DataFrame) -> pd.DataFrame:
        """Rows of ``df`` not already stored (``collectors.reconcile``); a failing read fails
        the attempt (retried), never risks a second copy."""
        fresh = unstored(t, symbol, df, strict=True)
        self.stats.rows_reconciled += len(df) - len(fresh)
        return fresh
