"""ISO 8601 strings read without pandas (``clock.parse_iso``): for every string it reads,
exactly the nanoseconds ``pd.Timestamp`` gives; everything else goes to pandas as before."""

from __future__ import annotations

import calendar

import numpy as np
import pandas as pd
import pytest

from tickstore import FrameError
from tickstore.clock import parse_iso, to_ns


def pandas_ns(text: str) -> int | None:
    """What pandas makes of ``text`` as a store time (no offset = UTC); None if it refuses."""
    try:
        ts = pd.Timestamp(text)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
        return int(ts.as_unit("ns").value)
    except (ValueError, TypeError, OverflowError):  # OutOfBoundsDatetime is a ValueError
        return None


def generated(n: int, seed: int) -> list[str]:
    """ISO strings of every form ``parse_iso`` reads, with random (valid and invalid) fields."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        y = int(rng.integers(1677, 2263))
        mo = int(rng.integers(1, 13))
        last = calendar.monthrange(y, mo)[1]
        d = int(rng.integers(1, last + 1)) if rng.random() < 0.97 else last + 1  # a few invalid days
        s = f"{y:04d}-{mo:02d}-{d:02d}"
        form = rng.integers(0, 5)
        if form:
            s += "T" if rng.random() < 0.5 else " "
            s += f"{int(rng.integers(0, 24)):02d}:{int(rng.integers(0, 60)):02d}"
            if form >= 2:
                s += f":{int(rng.integers(0, 60)):02d}"
            if form >= 3:
                digits = int(rng.integers(1, 10))
                s += "." + "".join(str(v) for v in rng.integers(0, 10, digits))
            zone = rng.integers(0, 4)
            if zone == 1:
                s += "Z"
            elif zone >= 2:
                h, m = int(rng.integers(0, 24)), int(rng.integers(0, 60))
                sign = "+" if rng.random() < 0.5 else "-"
                s += f"{sign}{h:02d}:{m:02d}" if zone == 2 else f"{sign}{h:02d}{m:02d}"
        out.append(s)
    return out


EDGES = [
    "2024-02-29", "2024-02-29T23:59:59.999999999", "2000-02-29 12:00", "2023-02-29", "1900-02-29", "2024-02-30",
    "1970-01-01", "1969-12-31T23:59:59.999999999", "1970-01-01T00:00:00.000000001Z",
    "1677-09-21T00:12:43.145224193", "1677-09-21T00:12:43.145224192", "1677-09-21",  # the lower bound, below it
    "2262-04-11T23:47:16.854775807", "2262-04-11T23:47:16.854775808", "2262-04-12",  # the upper bound, above it
    "2262-04-11T23:47:16.854775807+00:01", "2262-04-11T23:47:16.854775807-00:01",
    "1677-09-21T00:12:43.145224193-00:01", "1677-09-21T00:12:43.145224193+00:01",
    "2262-04-11T23:50:00+01:00",  # local wall time past the bound, UTC inside: pandas decides
    "2024-08-08T23:30:00-01:00", "2024-08-09T00:30+01:00", "2024-08-09 00:30:00.5+0100",  # crossing midnight
    "2023-12-31T23:59:59.999999999-00:01", "2024-01-01T00:00:00+00:00", "2024-03-01T00:00+00:01",  # year, leap day
    "2024-08-08T12:00:00-00:00", "2024-08-08T12:00:00+23:59", "2024-08-08T12:00:00-23:59",
    "2024-08-08T00:00:00.1", "2024-08-08T00:00:00.10", "2024-08-08T00:00:00.000000010",
    "2024-08-08T24:00:00", "2024-08-08T12:60", "2024-08-08T12:00:60", "2024-13-01", "2024-00-10", "2024-08-00",
    "2024-08-08T12:00:00+24:00",
]


def test_parse_iso_gives_pandas_nanoseconds_for_generated_strings():
    strings = generated(6000, seed=14) + EDGES
    read = 0
    for s in strings:
        got, want = parse_iso(s), pandas_ns(s)
        if got is not None:
            read += 1
            assert got == want, s
        elif want is not None:
            # left to pandas only out of range (the local wall time or UTC outside 1677..2262)
            assert want < -9223372036854775807 + 86_400_000_000_000 or want > 9223372036854775807 - 86_400_000_000_000, s
    assert read > 0.9 * len(strings)  # the test reads what it claims to read
    assert parse_iso("2024-02-29T12:00:00.123456789+02:00") == pd.Timestamp("2024-02-29T10:00:00.123456789Z").value
    assert parse_iso("1677-09-21T00:12:43.145224193") == pd.Timestamp.min.value
    assert parse_iso("2262-04-11T23:47:16.854775807") == pd.Timestamp.max.value


@pytest.mark.parametrize("text", EDGES + generated(300, seed=3))
def test_to_ns_of_a_string_is_unchanged(text):
    """``to_ns`` answers (and refuses) exactly as the pandas-only reading did."""
    want = pandas_ns(text)
    if want is None:
        with pytest.raises(FrameError, match="is not a time|is outside the times the store holds"):
            to_ns(text, what="start")
    else:
        assert to_ns(text, what="start") == want


@pytest.mark.parametrize(
    "text",
    ["20240808", "2024/08/08", "Aug 8 2024", "2024-08-08T12", "2024-08-08t12:00", "2024-08-08T12:00:00z",
     " 2024-08-08", "2024-08-08\n", "2024-08-08T12:00:00.1234567891", "2024-08-08T12:00:00+01", "2024-08-08T12:00:00,5",
     "2024-08-08T12:00:00+05:60", "2024-08", "２０２４-08-08"],
)
def test_other_forms_go_to_pandas(text):
    assert parse_iso(text) is None
    want = pandas_ns(text)
    if want is None:
        with pytest.raises(FrameError):
            to_ns(text)
    else:
        assert to_ns(text) == want


def test_errors_keep_their_words():
    with pytest.raises(FrameError, match=r"start='2024-02-30' is not a time \(use ISO 8601"):
        to_ns("2024-02-30", what="start")
    with pytest.raises(FrameError, match=r"end='2262-04-12' is outside the times the store holds"):
        to_ns("2262-04-12", what="end")
    with pytest.raises(FrameError, match=r"time='2262-04-11T23:47:16.854775807-00:01' is not a time"):
        to_ns("2262-04-11T23:47:16.854775807-00:01")  # pandas' words: out of range after the offset
