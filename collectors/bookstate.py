"""Book state kept between runs: where a replay or a collector left each order book.

One JSON file per owner, replaced atomically (temporary file, fsync, rename, directory
fsync), so a crash leaves the old or the new file, never a torn one::

    <store root>/_book_state.json      tickstore replay (every replay into this store)
    <journal dir>/books.json           a live collector, beside its checkpoint

    {"format": 1,
     "meta": {...},                                   e.g. the journal position it matches
     "books": {"<symbol>|<levels>|<interval_ms>":     one entry per book and grid
               {BookBuilder.save_state() dict: every level, last update id, next grid point,
                open outage},
               "parser|<exchange>|<market>":          one entry per stateful parser
               {BinanceParser.save_state() dict: held spot quotes, recent depth ids,
                pending funding times}}}

Bounded: one entry per (symbol, depth, grid) ever replayed or collected into the owner,
each the size of that venue's book: every level the snapshot and the diffs brought (the
USD-M BTCUSDT book after the 2024-08-08 capture: 9,596 levels, 153 kB of JSON). Entries never go back in time: a
book is only replaced by a state at least as recent (``last_ts``), so replaying an older
file again does not undo what a newer one left. Writers of one file take an ``flock`` on
``<file>.lock`` around read-merge-write, so concurrent replays into one store keep each
other's books. Nothing is pickled.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

import orjson

from tickstore.errors import TickstoreError
from tickstore import diskio

__all__ = ["BookStates", "BookStateError", "book_key", "parser_key", "FORMAT"]

FORMAT = 1


class BookStateError(TickstoreError):
    """A book-state file that cannot be read (damaged, or of an unknown format)."""


def book_key(symbol: str, levels: int, interval_ms: int) -> str:
    """The entry of a book: its symbol and the grid its rows are on."""
    return f"{symbol}|{int(levels)}|{int(interval_ms)}"


def parser_key(feed, market) -> str:
    """The entry of a venue parser's state (Binance: spot quotes waiting for a depth frame,
    the depth ids seen, pending settlements): ``parser|<exchange>|<market>``."""
    return f"parser|{getattr(feed, 'exchange', feed.venue.value)}|{getattr(market, 'value', market)}"


class BookStates:
    """The book-state file at ``path`` (created on the first ``save``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def load(self) -> tuple[dict[str, dict], dict]:
        """``(books, meta)``; empty when the file does not exist.

        Raises ``BookStateError`` naming the file for a damaged or unknown-format file.
        """
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}, {}
        except OSError as exc:
            raise BookStateError(f"cannot read book state {str(self.path)!r}: {exc.strerror}") from None
        try:
            doc = orjson.loads(raw)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise BookStateError(
                    f"{self.path}: unknown book-state format {doc.get('format') if isinstance(doc, dict) else doc!r}; "
                    f"expected {FORMAT}"
                )
            books, meta = doc["books"], doc.get("meta") or {}
            if not isinstance(books, dict) or not isinstance(meta, dict):
                raise TypeError("books/meta must be objects")
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise BookStateError(
                f"{self.path}: unreadable book state ({exc}); it is replaced atomically, so this is damage: "
                f"delete it to start every book from a snapshot"
            ) from None
        return books, meta

    def save(self, books: dict[str, dict], *, meta: dict | None = None, merge: bool = True) -> int:
        """Merge ``books`` into the file and replace it atomically; returns entries written.

        An entry older than the one stored (``last_ts``) is left out: the file keeps the
        newest state of every book. ``meta`` replaces the file's meta when given.
        ``merge=False``: the file becomes exactly ``books`` (its only writer, a collector
        saving all its books at every commit, skips reading it back: 44 USD-M books of
        ~10,000 levels are 6.7 MB, written in ~60 ms).
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked():
            stored, old_meta = self.load() if merge else ({}, {})
            written = 0
            for key, state in books.items():
                old = stored.get(key)
                if old is not None and int(old.get("last_ts", -1)) > int(state.get("last_ts", -1)):
                    continue
                stored[key] = state
                written += 1
            doc = {"format": FORMAT, "meta": old_meta if meta is None else meta, "books": stored}
            diskio.replace(self.path, [orjson.dumps(doc)])
        return written

    @contextmanager
    def _locked(self):
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
