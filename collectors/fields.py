"""Range checks for values parsed out of exchange frames: one place for every venue parser.

A frame can be valid JSON with every field present and still be poison: ``"T": 1e17``
(year 5138), ``"t": "abc"``, ``"t": 2**70``, ``"p": "NaN"``, a 2 KB string where a number
belongs (``"T" * 1_000_000`` would repeat it a million times). The parsers in
``collectors/exchanges/`` convert every field through these helpers, so a value that cannot
be right raises ``InvalidValue`` (a ``MalformedFrame``) where it is parsed; the collector
then counts the frame as bad and quarantines it with the message (``collectors.quarantine``)
instead of passing it on to the store, live and on journal replay alike.

The rules::

    times        an int (or a string of digits, as Bybit sends some) of epoch ms; as ns it
                 must fall in [recv - MAX_LAG, recv + MAX_LEAD] of the frame's receive time,
                 and in [TIME_MIN, TIME_MAX) always. A receive time outside that absolute
                 window (a test's recv_ns=0) means "no receive clock": only the absolute
                 window applies.
    future times next_funding_ts: 0 (none) or within [recv - MAX_LAG, recv + MAX_AHEAD]
    ids          an int (or a string of up to 19 digits) that fits int64
    numbers      float() of a string or number, finite; sizes and book prices also >= 0,
                 trade prices > 0. bool is never a number.

``MAX_LAG`` is generous (a day) because exchanges replay history frames after a reconnect
and a capture replayed through ``tickstore replay`` keeps its recorded receive times;
``MAX_LEAD`` is an hour of local clock skew. Everything here is cheap on the success path
(a type check and two comparisons): it runs once per field of every frame.
"""

from __future__ import annotations

import math

from .exchanges import InvalidValue

__all__ = [
    "InvalidValue",
    "MS",
    "TIME_MIN_NS",
    "TIME_MAX_NS",
    "MAX_LAG_NS",
    "MAX_LEAD_NS",
    "MAX_AHEAD_NS",
    "ms_to_ns",
    "future_ms_to_ns",
    "check_ns",
    "int64",
    "finite",
    "nonneg",
    "positive",
]

MS = 1_000_000  # ms -> ns
_S = 1_000_000_000
TIME_MIN_NS = 946_684_800 * _S  # 2000-01-01T00:00:00Z
TIME_MAX_NS = 4_102_444_800 * _S  # 2100-01-01T00:00:00Z
MAX_LAG_NS = 24 * 3600 * _S  # an event may be received up to a day after it happened
MAX_LEAD_NS = 3600 * _S  # ... and up to an hour "before" it (local clock behind the venue's)
MAX_AHEAD_NS = 31 * 24 * 3600 * _S  # a scheduled time (next funding) up to a month ahead
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_INF = math.inf


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + f"... ({len(text)} chars)"


def _when(ns: int) -> str:
    """A UTC time for a message, or the raw number if it is beyond what datetime can show."""
    import datetime as dt

    try:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns"


def _int(value, what: str) -> int:
    """An int field: a JSON int, or a string of at most 19 digits (optionally signed)."""
    if type(value) is str and 0 < len(value) <= 20:
        body = value[1:] if value[0] == "-" else value
        if body.isdigit() and body.isascii() and len(body) <= 19:
            return int(value)
    raise InvalidValue(f"{what}={_show(value)}: expected an integer")


def ms_to_ns(value, recv_ns: int, what: str) -> int:
    """Epoch milliseconds of an event -> ns, checked against the receive time (see module doc)."""
    if type(value) is not int:
        value = _int(value, what)
    ns = value * MS
    if TIME_MIN_NS <= recv_ns < TIME_MAX_NS:
        if recv_ns - MAX_LAG_NS <= ns <= recv_ns + MAX_LEAD_NS:
            return ns
        raise InvalidValue(
            f"{what}={_show(value)} ms ({_when(ns)}) is not within [-{MAX_LAG_NS // _S} s, +{MAX_LEAD_NS // _S} s] "
            f"of the receive time {_when(recv_ns)}"
        )
    if TIME_MIN_NS <= ns < TIME_MAX_NS:
        return ns
    raise InvalidValue(f"{what}={_show(value)} ms ({_when(ns)}) is not between 2000 and 2100")


def future_ms_to_ns(value, recv_ns: int, what: str) -> int:
    """A scheduled time (e.g. next funding) in epoch ms -> ns; 0 stays 0 (none scheduled)."""
    if type(value) is not int:
        value = _int(value, what)
    if value == 0:
        return 0
    ns = value * MS
    if TIME_MIN_NS <= recv_ns < TIME_MAX_NS:
        if recv_ns - MAX_LAG_NS <= ns <= recv_ns + MAX_AHEAD_NS:
            return ns
    elif TIME_MIN_NS <= ns < TIME_MAX_NS:
        return ns
    raise InvalidValue(f"{what}={_show(value)} ms ({_when(ns)}) is not a plausible time after the receive time {_when(recv_ns)}")


def check_ns(ns: int, recv_ns: int, what: str) -> int:
    """An event time already in ns (e.g. a REST snapshot's), checked like ``ms_to_ns``."""
    if type(ns) is not int:
        raise InvalidValue(f"{what}={_show(ns)}: expected integer ns")
    if TIME_MIN_NS <= recv_ns < TIME_MAX_NS:
        ok = recv_ns - MAX_LAG_NS <= ns <= recv_ns + MAX_LEAD_NS
    else:
        ok = TIME_MIN_NS <= ns < TIME_MAX_NS
    if not ok:
        raise InvalidValue(f"{what}={ns} ns ({_when(ns)}) is not a plausible time for receive time {_when(recv_ns)}")
    return ns


def int64(value, what: str) -> int:
    """An id or sequence number that fits int64 (the store's column type)."""
    if type(value) is not int:
        return _int(value, what)
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise InvalidValue(f"{what}={_show(value)} does not fit int64")


def _bad_number(value, what: str, need: str) -> InvalidValue:
    """The refusal of a value ``finite``/``nonneg``/``positive`` could not accept."""
    if type(value) is bool or not isinstance(value, (str, int, float)) or (type(value) is str and len(value) > 64):
        return InvalidValue(f"{what}={_show(value)}: expected a number")
    try:
        f = float(value)
    except ValueError:
        return InvalidValue(f"{what}={_show(value)}: expected a number")
    if not -_INF < f < _INF:
        return InvalidValue(f"{what}={_show(value)} is not finite")
    return InvalidValue(f"{what}={_show(value)} is {need}")


# The three below are one inlined check each (no call to a shared helper): they run for
# every price and size of every frame. bool is excluded by the exact type test.
def finite(value, what: str) -> float:
    """A finite float from a number or a numeric string (bool is not a number)."""
    t = type(value)
    if (t is str and len(value) <= 64) or t is float or t is int:
        try:
            f = float(value)
        except ValueError:
            raise _bad_number(value, what, "") from None
        if -_INF < f < _INF:
            return f
    raise _bad_number(value, what, "")


def nonneg(value, what: str) -> float:
    """A finite float >= 0 (sizes; book prices, where a size 0 removes the level)."""
    t = type(value)
    if (t is str and len(value) <= 64) or t is float or t is int:
        try:
            f = float(value)
        except ValueError:
            raise _bad_number(value, what, "negative") from None
        if 0.0 <= f < _INF:
            return f
    raise _bad_number(value, what, "negative")


def positive(value, what: str) -> float:
    """A finite float > 0 (trade prices)."""
    t = type(value)
    if (t is str and len(value) <= 64) or t is float or t is int:
        try:
            f = float(value)
        except ValueError:
            raise _bad_number(value, what, "not > 0") from None
        if 0.0 < f < _INF:
            return f
    raise _bad_number(value, what, "not > 0")
