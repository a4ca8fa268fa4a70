"""A bitemporal HDF5 tickstore for crypto market research.

>>> from tickstore import Tickstore
>>> store = Tickstore("~/ticks")
>>> store["trades"].select("binance:BTC/USDT:USDT", "2024-08-08", "2024-08-09", as_of="paper-2024-q3")
"""

from importlib import import_module

# PEP 562: each name is imported from its module on first use, so that importing a part
# of the package (``tickstore.cli`` for ``tickstore --help``, ``tickstore.errors``) does not
# import the store, pandas and blosc2.
_HOME = {
    **dict.fromkeys(["Clock", "FrozenClock", "SystemClock"], "clock"),
    **dict.fromkeys(
        [
            "CorruptionError",
            "DuplicateKeyError",
            "FormatVersionError",
            "FrameError",
            "LockedError",
            "NotFoundError",
            "PinError",
            "PrunedError",
            "StorageError",
            "SchemaError",
            "SnapshotError",
            "SymbolError",
            "TickstoreError",
            "UnknownTableError",
        ],
        "errors",
    ),
    **dict.fromkeys(["ReindexReport", "VerifyReport"], "integrity"),
    **dict.fromkeys(["Pin", "PinnedFile", "PinnedPart", "Selection"], "pin"),
    **dict.fromkeys(["Column", "Partition", "Schema", "TradeKind", "TsClock"], "schemas"),
    **dict.fromkeys(["Table", "Tickstore"], "store"),
    "Commit": "transaction",
}


def __getattr__(name: str):
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tickstore' has no attribute {name!r}")
    value = getattr(import_module(f".{home}", __name__), name)
    globals()[name] = value  # the next lookup does not come here
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))


__version__ = "0.1.0"

__all__ = [
    "Tickstore",
    "Table",
    "Commit",
    "Selection",
    "Pin",
    "PinnedFile",
    "PinnedPart",
    "VerifyReport",
    "ReindexReport",
    "Schema",
    "Column",
    "Partition",
    "TradeKind",
    "TsClock",
    "Clock",
    "SystemClock",
    "FrozenClock",
    "TickstoreError",
    "UnknownTableError",
    "SymbolError",
    "SchemaError",
    "FrameError",
    "DuplicateKeyError",
    "NotFoundError",
    "SnapshotError",
    "LockedError",
    "FormatVersionError",
    "CorruptionError",
    "PinError",
    "PrunedError",
    "StorageError",
]
