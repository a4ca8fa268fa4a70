"""Errors raised by the research helpers.

::

    TickstoreError                      (tickstore.errors: the one root)
    └── ResearchError (+ ValueError)    bad input to an analytic: missing columns, unsorted
        │                               or naive index, unknown frequency, empty alignment
        ├── UnknownIndicatorError       a TA-Lib function name that does not exist
        └── StaleError                  a derived table is older than one of its inputs

Every message carries the offending values and, where there is one, the remedy.
"""

from __future__ import annotations

from tickstore.errors import TickstoreError

__all__ = ["ResearchError", "UnknownIndicatorError", "StaleError"]


class ResearchError(TickstoreError, ValueError):
    """Bad input to a research function; nothing was computed."""


class UnknownIndicatorError(ResearchError):
    """The TA-Lib function name is unknown; the message lists close matches."""


class StaleError(ResearchError):
    """A derived table was computed from input versions that have since been superseded."""
