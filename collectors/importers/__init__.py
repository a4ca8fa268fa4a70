"""Bring your own data: files researchers already have -> the store, as the live path stores them.

::

    tickstore import [--format F] [--kind K] [--market M] [--symbol S] [--venue V] PATH...
    import_files(store, paths, format=None, options=ImportOptions(...)) -> ImportReport

One module per format (``tardis``, ``binance_vision``, ``hyperliquid_archive``,
``bybit_history``, ``binance_rest``, ``hyperliquid_rest``, ``freqtrade``, ``ccxt_dump``,
``funding_csv``); ``detect`` tells them apart; ``run`` stages and stores what they read.
Frame formats (Hyperliquid's archive, Bybit's order-book files, REST bodies) go through
the live parsers and ``collectors.book.BookBuilder``; CSV formats are parsed in vectorised
blocks into the same tables, columns and clocks. Every row lands as a new version with
``source="import:<format>"`` (quotes, mark, open_interest, book_diffs: ``import:<format>
(<data kind>)``, one stream per span, see ``run``) and the file in the reason; see ``run``
for resuming.
"""

from .core import DataImportError, EmptyInput, Format, ImportOptions, MalformedInput, MissingOption
from collectors.funding import settlement_times
from .run import FileReport, ImportReport, import_files

__all__ = [
    "import_files",
    "ImportOptions",
    "ImportReport",
    "FileReport",
    "Format",
    "DataImportError",
    "MissingOption",
    "MalformedInput",
    "EmptyInput",
    "settlement_times",
]
