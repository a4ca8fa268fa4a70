"""The real recorded files of ``../shared/data`` as frames, through the store's own way in.

Research keeps no ingestion code: a file goes through ``collectors.importers`` (Tardis
CSVs, Binance's archive klines, funding-history CSVs, Hyperliquid REST cassettes) or the
capture replay ``collectors.replay`` (hftbacktest captures) into a throwaway store, and
the frame is what ``select`` returns, exactly as a researcher's own store would hold it.
Each file is read once per test process (the frames are returned as copies).
"""

from __future__ import annotations

import functools
import hashlib
import gzip
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from collectors.importers import ImportOptions, import_files
from collectors.replay import replay
from tickstore import Tickstore

_ROOT = Path(tempfile.mkdtemp(prefix="tickstore-real-data-"))


@functools.cache
def _store(key: str) -> Tickstore:
    return Tickstore(_ROOT / hashlib.sha1(key.encode()).hexdigest()[:16])


@functools.cache
def _imported(path: str, table: str, symbol: str, **options) -> pd.DataFrame:
    store = _store(path + str(sorted(options.items())))
    import_files(store, [path], options=ImportOptions(**options), progress=False)
    return store[table].select(symbol)


@functools.cache
def _replayed(path: str, table: str) -> pd.DataFrame:
    store = _store(path)
    if not store.tables():
        replay([Path(path)], store=store)
    (symbol,) = store[table].symbols()
    return store[table].select(symbol)


def load_tardis_trades(path) -> pd.DataFrame:
    return _imported(str(path), "trades", "binance:BTC/USDT:USDT").copy()


def load_binance_klines(path) -> pd.DataFrame:
    """ADABTC 1-minute klines (spot) as ``ohlcv_1m`` holds them."""
    return _imported(str(path), "ohlcv_1m", "binance:ADA/BTC", market="spot").copy()


def load_funding_history_csv(path, *, venue, utc_offset: str = "3h") -> pd.DataFrame:
    return _imported(str(path), "funding", f"{venue.value}:BTC/USDT:USDT", utc_offset=utc_offset).copy()


def load_hyperliquid_funding(path) -> pd.DataFrame:
    return _imported(str(path), "funding", "hyperliquid:BTC/USDC:USDC").copy()


def load_binance_trades(path) -> pd.DataFrame:
    return _replayed(str(path), "trades").copy()


def load_binance_quotes(path) -> pd.DataFrame:
    return _replayed(str(path), "quotes").copy()


def load_binance_mark(path) -> pd.DataFrame:
    return _replayed(str(path), "mark").copy()


@functools.cache
def _hyperliquid_book(path: str, depth: int) -> pd.DataFrame:
    # The hftbacktest capture ("<recv ns> <frame>") rewritten as Hyperliquid's archive lines
    # ({"time": <recv ISO>, "raw": <frame>}): the same frames through the live parser.
    lines = []
    for line in gzip.open(path, "rt"):
        recv, _, body = line.strip().partition(" ")
        if '"l2Book"' in body[:40]:
            lines.append(json.dumps({"time": str(np.datetime64(int(recv), "ns")), "ver_num": 1, "raw": json.loads(body)}))
    archive = _ROOT / "BTC-l2Book.jsonl"
    archive.write_text("\n".join(lines) + "\n")
    return _imported(str(archive), f"book_{depth}", "hyperliquid:BTC/USDC:USDC", book_levels=depth)


def load_hyperliquid_book(path, *, depth: int = 20) -> pd.DataFrame:
    """The capture's l2Book frames on the collector's 100 ms grid (``book_<depth>``)."""
    return _hyperliquid_book(str(path), depth).copy()
