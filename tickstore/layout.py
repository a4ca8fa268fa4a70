"""Where everything lives on disk, and how a path maps back to what it holds.

::

    <root>/
      _snapshots.json                      named as-of points {name: knowledge time}
      <table>/
        _schema.json                       only for tables made by create_table
        .lock                              the one-writer lock (flock)
        _index/<sym>.h5                    the bitemporal index of one symbol (see index.py)
        _index/<sym>.intent                a write in progress (rolled back if it died)
        YYYY/MM/DD/<sym>_<version:04d>.h5  day partitions (trades, quotes, book, ...)
        YYYY/MM/<sym>_<version:04d>.h5     month partitions (sub-hour bars)
        YYYY/<sym>_<version:04d>.h5        year partitions (hourly and daily bars)

``<sym>`` is the symbol encoded so that it is one safe file-name component and can be
decoded back: ``binance:BTC/USDT:USDT`` -> ``binance@BTC+USDT@USDT``. Symbols are
``<exchange id>:<unified symbol>``; only ``[A-Za-z0-9/:._-]`` are allowed, which leaves
``@`` and ``+`` free for the encoding; ``/`` never reaches the file system, so no symbol
can name a path outside its folder. Every name (symbols, file names here; table and
snapshot names in schemas and store) is matched whole (``fullmatch``): ``$`` would let a
trailing newline through, and a newline in a file name breaks every tool that lists it.

How bytes reach the disk (temporary names, fsync, create-exclusive) is ``diskio``'s.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .errors import SymbolError
from .schemas import Partition

__all__ = ["validate_symbol", "encode_symbol", "decode_symbol", "partition_dir", "data_path", "parse_data_path"]

MAX_SYMBOL_LEN = 120
_SYMBOL = re.compile(r"[a-z][a-z0-9]{0,31}:[A-Za-z0-9][A-Za-z0-9/:._-]*")
_FILE = re.compile(r"(?P<sym>[A-Za-z0-9@+._-]+)_(?P<version>[0-9]{4,9})\.h5")


def validate_symbol(symbol) -> str:
    """Return ``symbol`` if it is a well-formed tickstore symbol, else raise SymbolError."""
    if not isinstance(symbol, str):
        raise SymbolError(f"symbol must be a str like 'binance:BTC/USDT:USDT', got {type(symbol).__name__} {symbol!r}")
    if len(symbol) > MAX_SYMBOL_LEN:
        raise SymbolError(f"symbol {symbol[:40]!r}... is {len(symbol)} characters; at most {MAX_SYMBOL_LEN}")
    if not _SYMBOL.fullmatch(symbol) or ".." in symbol or "//" in symbol or symbol.endswith("/"):
        raise SymbolError(
            f"malformed symbol {symbol!r}: expected '<exchange>:<unified symbol>' such as "
            f"'binance:BTC/USDT:USDT' (letters, digits and / : . _ - only; no spaces or control characters)"
        )
    return symbol


def encode_symbol(symbol: str) -> str:
    validate_symbol(symbol)
    return symbol.replace(":", "@").replace("/", "+")


def decode_symbol(name: str) -> str:
    return validate_symbol(name.replace("@", ":").replace("+", "/"))


def partition_dir(partition: Partition, start_day: int) -> str:
    """Relative folder of a partition, e.g. ``2024/08/09``."""
    d = str(np.datetime64(int(start_day), "D"))  # YYYY-MM-DD
    y, m, dd = d[:4], d[5:7], d[8:10]
    if partition is Partition.DAY:
        return f"{y}/{m}/{dd}"
    if partition is Partition.MONTH:
        return f"{y}/{m}"
    return y


def data_path(table: str, partition: Partition, start_day: int, symbol: str, version: int) -> str:
    """Path of one version file, relative to the store root."""
    return f"{table}/{partition_dir(partition, start_day)}/{encode_symbol(symbol)}_{version:04d}.h5"


def parse_data_path(rel: str, partition: Partition) -> tuple[str, str, int, int]:
    """Inverse of ``data_path``: -> (table, symbol, partition start day, version).

    Raises
    ------
    SymbolError
        If the path is not one this layout produces.
    """
    parts = Path(rel).parts
    depth = {Partition.DAY: 3, Partition.MONTH: 2, Partition.YEAR: 1}[partition]
    m = _FILE.fullmatch(parts[-1]) if parts else None
    if len(parts) != depth + 2 or not m:
        raise SymbolError(f"{rel!r} is not a data file path of a {partition.value}-partitioned table")
    ymd = list(parts[1:-1]) + ["01"] * (3 - depth)
    try:
        if not all(re.fullmatch("[0-9]{4}" if i == 0 else "[0-9]{2}", x) for i, x in enumerate(ymd)):
            raise ValueError
        day = int(np.datetime64("-".join(ymd), "D").astype("i8"))
    except ValueError:
        raise SymbolError(f"{rel!r}: {'/'.join(parts[1:-1])} is not a date") from None
    symbol, version = decode_symbol(m.group("sym")), int(m.group("version"))
    # the one spelling this layout writes (no '_00001.h5' for '_0001.h5', no 2024/02/30)
    if data_path(parts[0], partition, day, symbol, version) != "/".join(parts):
        raise SymbolError(f"{rel!r} is not a path this layout writes")
    return parts[0], symbol, day, version
