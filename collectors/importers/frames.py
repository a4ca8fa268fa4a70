"""Archives of venue frames (or of book events) -> ``collectors.replay.replay_frames`` -> the sink.

::

    replay_into(sink, items, venue=, market=, options=, where=)
        items: Frame(recv_ns, raw, WS, None, line)      a websocket frame of the venue
               Frame(recv_ns, [events], EVENTS, None, line)   events parsed here (Tardis, REST bodies)
               Frame(recv_ns, gap JSON, GAP)            a connection gap: resets the symbol's book

The importers keep no parser, book rule or grid of their own: every frame goes through
the replay's parsers, ``BookBuilder`` (the venue's sequencing rule, Bybit's book-derived
quotes, the snapshot grid point), its grid flushes and its end of data, so an imported
file stores exactly the rows ``tickstore replay`` stores for the same frames. Books
continue from, and are left in, the store's ``_book_state.json`` like a replay's (the next
hour's archive continues the book), saved only once the file's rows are committed
(``Sink.book_states``). A frame the parser refuses is an error of the file
(``MalformedInput`` with its line): an archive is not a live feed that must go on.
"""

from __future__ import annotations

from collectors.replay import replay_frames
from collectors.symbols import Markets

from .core import ImportOptions, MalformedInput, Sink

__all__ = ["replay_into"]


def replay_into(sink: Sink, items, *, venue: str, market: str, options: ImportOptions, where: str,
                markets: Markets | None = None, book_natives=(), book_rows: str = "grid", levels: int | None = None,
                snapshot_rule=None):
    """Replay ``items`` (``collectors.capture.Frame``; ``conn`` = the file's line) into ``sink``.

    ``levels``: the depth of the book rows (default ``options.book_levels``, else 5);
    ``book_rows``: ``"grid"`` or ``"both"`` (also a row at each snapshot's own time: REST
    bodies, each a whole book at its time); ``snapshot_rule``: see ``replay_frames``.
    Returns the ``ReplayReport``.
    """

    def refuse(exc, frame):
        raise MalformedInput(where, frame.conn, f"{type(exc).__name__}: {exc}")

    return replay_frames(
        items, venue=venue, market=market, store=None, sink=lambda table, symbol, df: sink.frame(table, symbol, df),
        book_levels=levels or options.book_levels or 5, book_interval_ms=options.book_interval_ms,
        keep_diffs=options.keep_diffs, book_state=sink.book_states or False, on_bad=refuse, markets=markets,
        book_natives=book_natives, book_rows=book_rows, snapshot_rule=snapshot_rule, name=where,
    )
