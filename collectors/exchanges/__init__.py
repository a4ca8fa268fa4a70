"""Venue modules: subscriptions, symbol mapping and parsers, one module per venue.

A venue parser turns one raw websocket frame into a list of ``collectors.events``. A frame
it cannot use raises one of the errors below; callers (the live session, the replayer)
count them per class and carry on: one bad frame never stops a feed.

::

    TickstoreError
    └── BadFrame                 a frame that yields no events (base, never raised itself)
        ├── MalformedFrame       not JSON, not an object, or a field missing / of wrong type
        │   └── InvalidValue     a field parses but cannot be right: a time far from the receive
        │                        time, an id beyond int64, a non-finite number (``collectors.fields``)
        ├── UnknownStream        valid JSON from a stream/event type the parser does not know
        ├── UnknownSymbol        a venue-native symbol the venue module cannot map to ccxt
        ├── OversizedFrame       longer than the parser's ``max_frame_bytes``
        └── VenueErrorFrame      the venue answered with an error object
"""

from __future__ import annotations

from tickstore.errors import TickstoreError

__all__ = [
    "BadFrame",
    "MalformedFrame",
    "InvalidValue",
    "UnknownStream",
    "UnknownSymbol",
    "OversizedFrame",
    "VenueErrorFrame",
]


class BadFrame(TickstoreError, ValueError):
    """A frame the parser refused; the message quotes the start of the frame."""


class MalformedFrame(BadFrame):
    pass


class InvalidValue(MalformedFrame):
    """A field of the right shape whose value cannot be right (see ``collectors.fields``)."""


class UnknownStream(BadFrame):
    pass


class UnknownSymbol(BadFrame):
    pass


class OversizedFrame(BadFrame):
    pass


class VenueErrorFrame(BadFrame):
    pass
