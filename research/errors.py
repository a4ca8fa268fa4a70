"""Errors raised by the research helpers.

::

    TickstoreError                      (tickstore.errors: the one root)
    └── ResearchError (+ ValueError)    bad input to an analytic: missing columns, unsorted
        │                               or naive index, unknown frequency, empty alignment
        ├── UnknownIndicatorError       a TA-Lib function name that does not exist
        ├── StaleError                  a derived table is older than one of its inputs
        └── GapError                    a backtest crossed data the feed did not cover
                                        (``on_gap="raise"``); the message lists the spans

Every message carries the offending values and, where there is one, the remedy.
"""

from __future__ import annotations

from tickstore.errors import TickstoreError

__all__ = ["ResearchError", "UnknownIndicatorError", "StaleError", "GapError"]


class ResearchError(TickstoreError, ValueError):
    """Bad input to a research function; nothing was computed."""


class UnknownIndicatorError(ResearchError):
    """The TA-Lib function name is unknown; the message lists close matches."""


class StaleError(ResearchError):
    """A derived table was computed from input versions that have since been superseded."""


class GapError(ResearchError):
    """A backtest run with ``on_gap="raise"`` crossed spans its data does not cover."""
