"""Time: the injectable clock, the store's knowledge-time clock, and user-supplied times.

Two axes (SPEC section 1): *event time* (``start``/``end``/``date``: when the exchange says
it happened) and *knowledge time* (``as_of``: when the store committed it). Both are
handled as int64 nanoseconds since the epoch, UTC. A naive ``datetime`` is refused: it
could mean any zone. A string without an offset is read as UTC, because
``"2024-08-08"`` in a notebook always means the UTC day in this store.

Knowledge time never goes backwards across a store, even when the system clock does
(``StoreClock``): every commit and snapshot records the time it took in ``<root>/_clock``
(the high-water mark, with the monotonic clock's reading at that moment), and "now" for
every process of the store is::

    now = max(wall clock, high-water mark + monotonic time elapsed since it was recorded)
    commit/snapshot time = max(now, high-water mark + 1)      (then recorded)

so a clock stepped back by NTP neither moves a commit before an earlier one or before a
snapshot, nor lets a read's time run backwards while the wall clock catches up.

The record is written in place without an fsync per commit (it would add one to every
commit's several): a ``kill -9`` cannot lose it (the page cache keeps it), but a power cut
can, or can leave it torn. What is durable is what the mark must stay above: every
committed version (index files are fsynced at each commit), every snapshot (fsynced,
with the mark) and the prune horizon. So a record written in an earlier boot of the
machine (its boot id differs), or one that is missing or damaged, is not trusted alone:
the mark is first raised to the store's *durable floor* (``recover``: the latest
knowledge time any index, snapshot or prune names; format-5 indexes say theirs in their
checksummed header, so this is one small read per index file, once per process and
boot), and the next commit or snapshot records it, fsynced, under the current boot id.
Within one boot the page cache holds every record written, so nothing is re-scanned.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import re
import threading
import time
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from .errors import FrameError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "Clock", "SystemClock", "FrozenClock", "StoreClock", "to_ns", "to_day", "parse_iso", "ns_to_timestamp", "NS_PER_DAY",
]

NS_PER_DAY = 86_400_000_000_000
TIME_RANGE = "1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z: int64 nanoseconds UTC"
MAX_NS = np.iinfo(np.int64).max  # "+infinity": a version that is not superseded


class Clock(Protocol):
    """Source of knowledge time. ``now_ns`` returns UTC nanoseconds since the epoch."""

    def now_ns(self) -> int: ...


class SystemClock:
    """The wall clock (UTC), with the system's monotonic clock beside it.

    ``monotonic_ns`` is what keeps knowledge time moving forward when the wall clock is
    stepped back (see ``StoreClock``); a clock without it (``FrozenClock``) is taken as
    it reads.
    """

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """A clock that only moves when told to; for tests and reproducible demos."""

    def __init__(self, start="2024-01-01T00:00:00Z"):
        self._ns = to_ns(start, what="start")
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        with self._lock:
            return self._ns

    def now(self) -> pd.Timestamp:
        return ns_to_timestamp(self.now_ns())

    def advance(self, seconds: float = 1.0) -> pd.Timestamp:
        """Move forward by ``seconds`` (must be positive) and return the new time."""
        if seconds <= 0:
            raise ValueError(f"a clock only moves forward; got {seconds} s")
        with self._lock:
            self._ns += int(round(seconds * 1e9))
            return ns_to_timestamp(self._ns)

    def set(self, when) -> None:
        ns = to_ns(when, what="when")
        with self._lock:
            if ns < self._ns:
                raise ValueError(f"a clock only moves forward; {ns_to_timestamp(ns)} is before {ns_to_timestamp(self._ns)}")
            self._ns = ns

    def __repr__(self) -> str:
        return f"FrozenClock({ns_to_timestamp(self._ns).isoformat()})"


def _boot_id() -> str:
    """This boot of the machine: monotonic readings of other boots mean nothing."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()[:36]
    except OSError:
        return "unknown-boot"


_BOOT_ID = _boot_id()
_RECORD = 96  # bytes of one _clock record, padded with spaces


class StoreClock:
    """Knowledge time of one store root: monotonic across its processes (see the module doc).

    ``now`` is lock-free (readers call it); ``next`` takes a short ``flock`` on
    ``<root>/_clock`` and is what commits and snapshots call. ``recover`` returns the
    store's durable floor (see the module doc); it is called at most once per process,
    and only when the record was not written in this boot.
    """

    def __init__(self, root: Path, clock: Clock, recover: Callable[[], int] | None = None):
        self.path = Path(root) / "_clock"
        self.clock = clock
        self._mono = getattr(clock, "monotonic_ns", None)
        self._fd: int | None = None
        self._pid = os.getpid()
        self._lock = threading.RLock()
        self._recover = recover
        self._floor: int | None = None  # the durable floor, once recovered

    def _file(self) -> int:
        with self._lock:
            if self._fd is None or self._pid != os.getpid():  # a forked child opens its own
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
                self._pid = os.getpid()
            return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None and self._pid == os.getpid():
            os.close(fd)

    def _read(self) -> tuple[int, int | None]:
        """(high-water mark, its monotonic reading on this boot or None); a record not
        written in this boot (or missing, or damaged) is raised to the durable floor."""
        hw, mono = self._read_record()
        if mono is None:
            return max(hw, self._durable_floor()), None
        return hw, mono

    def _read_record(self) -> tuple[int, int | None]:
        for _ in range(3):  # a record read while being rewritten fails its crc: read again
            raw = os.pread(self._file(), _RECORD, 0)
            if not raw.strip():
                return 0, None
            try:
                body, crc = raw.rstrip().rsplit(b" ", 1)
                if int(crc, 16) != zlib.crc32(body):
                    raise ValueError("crc")
                hw, mono, boot = body.split(b" ")
                return int(hw), (int(mono) if boot.decode() == _BOOT_ID else None)
            except ValueError:
                time.sleep(0.0005)
        return 0, None  # damaged (torn by a power cut): the durable floor decides

    def _durable_floor(self) -> int:
        if self._floor is None:
            self._floor = self._recover() if self._recover is not None else 0
        return self._floor

    def _now(self, hw: int, mono_at: int | None) -> int:
        wall = self.clock.now_ns()
        if self._mono is not None and mono_at is not None:
            return max(wall, hw + max(0, self._mono() - mono_at))
        return max(wall, hw)

    def now(self) -> int:
        """The current knowledge time: at or after every commit and snapshot so far."""
        return self._now(*self._read())

    def floor(self) -> int:
        """A lower bound of the next ``next()``: what a commit announces before it takes its time."""
        hw, mono_at = self._read()
        return max(self._now(hw, mono_at), hw + 1)

    def next(self, floor: int = 0, *, durable: bool = False) -> int:
        """A knowledge time after every earlier one (and >= ``floor``), recorded as the
        new high-water mark; ``durable`` fsyncs the record (snapshots)."""
        with self._lock:
            fd = self._file()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                hw, mono_at = self._read()
                t = max(self._now(hw, mono_at), hw + 1, floor)
                mono = self._mono() if self._mono is not None else 0
                body = b"%d %d %s" % (t, mono, _BOOT_ID.encode())
                rec = b"%s %08x" % (body, zlib.crc32(body))
                os.pwrite(fd, rec.ljust(_RECORD - 1) + b"\n", 0)
                if durable or mono_at is None:  # a snapshot, or the first record of this boot
                    os.fsync(fd)
                return t
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


def ns_to_timestamp(ns: int) -> pd.Timestamp:
    import pandas as pd

    return pd.Timestamp(int(ns), unit="ns", tz="UTC")


# the ISO 8601 forms ``parse_iso`` reads itself: date, then optionally 'T' or ' ', hh:mm,
# :ss, a fraction of 1-9 digits, and 'Z' or an offset +hh:mm / +hhmm (matched whole)
_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|([+-])([0-9]{2}):?([0-9]{2}))?)?",
    re.ASCII,
)
_EPOCH_ORDINAL = _dt.date(1970, 1, 1).toordinal()
_NS_MIN, _NS_MAX = -(2**63 - 1), 2**63 - 1  # pandas' Timestamp.min and .max (-2**63 is NaT)


def parse_iso(text: str) -> int | None:
    """An ISO 8601 time (no offset = UTC) -> ns UTC, exactly as ``pd.Timestamp`` reads it;
    None for anything else (another form, an invalid date or time, out of range).

    Reads ``2024-08-08``, ``2024-08-08T12:00``, ``2024-08-08 12:00:00.123456789``,
    ``...Z``, ``...+02:00``, ``...-0130``, so a read given such a string does not import
    pandas; ``to_ns`` hands whatever this leaves to pandas (same answers, same errors).
    """
    m = _ISO.fullmatch(text)
    if m is None:
        return None
    y, mo, d, hh, mi, ss, frac, zone, sign, oh, om = m.groups()
    try:
        days = _dt.date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    h, mins, secs = int(hh or 0), int(mi or 0), int(ss or 0)
    if h > 23 or mins > 59 or secs > 59:
        return None
    local = (((days * 24 + h) * 60 + mins) * 60 + secs) * 10**9 + (int(frac.ljust(9, "0")) if frac else 0)
    offset = 0
    if sign is not None:
        if int(oh) > 23 or int(om) > 59:
            return None
        offset = (int(oh) * 60 + int(om)) * 60 * 10**9 * (1 if sign == "+" else -1)
    ns = local - offset
    if not (_NS_MIN <= local <= _NS_MAX and _NS_MIN <= ns <= _NS_MAX):
        return None  # pandas decides (and words the error)
    return ns


def to_ns(value, *, what: str = "time") -> int:
    """A time given by a user -> UTC nanoseconds.

    Accepts a tz-aware ``datetime``/``Timestamp``, a ``date`` (its UTC midnight), a string
    (ISO 8601; no offset means UTC), or ``numpy.datetime64`` (UTC by convention). The
    usual ISO strings are read without pandas (``parse_iso``), everything else by pandas.

    Raises
    ------
    FrameError
        For naive datetimes, NaT, unparsable strings, times outside 1677..2262 or other
        types.
    """
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        raise FrameError(f"{what}={value!r}: give a timestamp or ISO string, not a bare integer")
    if isinstance(value, str):
        ns = parse_iso(value)
        if ns is not None:
            return ns
    import pandas as pd

    try:
        return _to_ns(value, what)
    except (OverflowError, pd.errors.OutOfBoundsDatetime):
        raise FrameError(f"{what}={value!r} is outside the times the store holds ({TIME_RANGE})") from None


def _to_ns(value, what: str) -> int:
    import pandas as pd

    if isinstance(value, _dt.datetime) or isinstance(value, pd.Timestamp):
        if value.tzinfo is None:
            raise FrameError(f"{what}={value!r} is naive; give a tz-aware time (e.g. tz='UTC')")
        ts = pd.Timestamp(value).tz_convert("UTC")
    elif isinstance(value, _dt.date):
        ts = pd.Timestamp(value.year, value.month, value.day, tz="UTC")
    elif isinstance(value, str):
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise FrameError(f"{what}={value!r} is not a time (use ISO 8601, e.g. 2024-08-08T12:00:00Z)") from None
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    elif isinstance(value, np.datetime64):
        ts = pd.Timestamp(value).tz_localize("UTC")
    else:
        raise FrameError(f"{what}={value!r} ({type(value).__name__}) is not a time")
    if ts is pd.NaT or pd.isna(ts):
        raise FrameError(f"{what} is NaT")
    return int(ts.as_unit("ns").value)  # OutOfBoundsDatetime past 2262: see to_ns


def to_day(value, *, what: str = "date") -> int:
    """A date given by a user -> days since the epoch (its UTC calendar day).

    A time that is not midnight is refused: ``insert``/``delete`` act on whole days.
    """
    ns = to_ns(value, what=what)
    if ns % NS_PER_DAY:
        raise FrameError(f"{what}={ns_to_timestamp(ns)} is not a UTC midnight; give a date like '2024-08-08'")
    return ns // NS_PER_DAY
