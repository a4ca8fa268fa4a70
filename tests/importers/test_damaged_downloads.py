"""A download that stopped early or has a flipped bit: a clear error naming the file, nothing
of it stored, and the same file imports once it is downloaded again.

The containers as the sources serve them: Tardis ``.csv.gz`` (docs.tardis.dev/downloadable-csv-files),
data.binance.vision daily ``.zip`` of one CSV (github.com/binance/binance-public-data), the
Hyperliquid node's hourly ``.lz4`` (github.com/hyperliquid-dex/node). Before, the decompressors'
own errors (``EOFError``, ``zlib.error``, lz4's ``RuntimeError``) came out of the import as they
were: not a ``TickstoreError``, no file named.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile

import lz4.frame
import pytest
import zstandard

from collectors.importers import MalformedInput
from tickstore import TickstoreError

from .helpers import run

N = 20_000
TARDIS = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n" + "".join(
    f"binance-futures,BTCUSDT,{1704067200000000 + i * 1000},{1704067200001000 + i * 1000},{i + 1},"
    f"{'buy' if i % 3 else 'sell'},{42000 + i % 7}.5,0.{i % 9 + 1}\n" for i in range(N))
VISION = "id,price,qty,quote_qty,time,is_buyer_maker\n" + "".join(
    f"{i + 1},42000.{i % 10},0.00{i % 9 + 1},{42 + i % 5}.1,{1704067200001 + i},{'true' if i % 2 else 'false'}\n"
    for i in range(N))
FILLS = "".join(json.dumps(["0x%x" % (i % 2), {"coin": "BTC", "px": f"{95000 + i // 2 % 13}.0", "sz": "0.01",
                                               "side": "B" if i % 2 else "A", "time": 1761336000021 + i // 2,
                                               "crossed": bool(i % 2), "tid": 1000 + i // 2, "hash": "0x1", "oid": i}]) + "\n"
                for i in range(N))


def _zip(text, member):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, text)
    return buf.getvalue()


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _flip(data: bytes) -> bytes:
    b = bytearray(data)
    b[len(b) // 2] ^= 0x55
    return bytes(b)


CASES = [  # (name, good bytes, damage, table, symbol)
    ("binance-futures_trades_2024-01-01_BTCUSDT.csv.gz", gzip.compress(TARDIS.encode()), _cut, "trades", "binance:BTC/USDT:USDT"),
    ("binance-futures_trades_2024-01-01_BTCUSDT.csv.gz", gzip.compress(TARDIS.encode()), _flip, "trades", "binance:BTC/USDT:USDT"),
    ("data/futures/um/daily/trades/BTCUSDT/BTCUSDT-trades-2024-01-01.zip", _zip(VISION, "BTCUSDT-trades-2024-01-01.csv"),
     _flip, "trades", "binance:BTC/USDT:USDT"),
    ("node_fills/hourly/20251024/20.lz4", lz4.frame.compress(FILLS.encode()), _cut, "trades", "hyperliquid:BTC/USDC:USDC"),
    # an lz4 frame without a content checksum (lz4's default) decompresses a flipped bit into
    # other bytes: the line they break is named instead
    ("node_fills/hourly/20251024/20.lz4", lz4.frame.compress(FILLS.encode()), _flip, "trades", "hyperliquid:BTC/USDC:USDC"),
]
DAMAGED = r"damaged or incomplete.*download it again"


def _zstd_cut_at_a_line_end() -> tuple[bytes, bytes]:
    """A Tardis CSV recompressed as zstd (as some mirrors keep them), and its first part cut
    where the decompressed text ends a line: only the frame's end can tell it is cut."""
    good = zstandard.ZstdCompressor().compress(TARDIS.encode())
    for n in range(len(good) // 2, len(good)):
        part = zstandard.ZstdDecompressor().decompressobj().decompress(good[:n])
        if part.endswith(b"\n") and part.count(b"\n") > 2:
            return good, good[:n]
    raise AssertionError("no cut at a line end")  # pragma: no cover


def test_a_cut_zstd_file_is_refused_not_imported_short(store, tmp_path):
    """zstandard's stream reader returns what a cut file holds and stops: before, a cut
    ``.csv.zst`` imported its first rows as if they were the whole day."""
    good, cut = _zstd_cut_at_a_line_end()
    path = tmp_path / "binance-futures_trades_2024-01-01_BTCUSDT.csv.zst"
    path.write_bytes(cut)
    with pytest.raises(MalformedInput, match=DAMAGED):
        run(store, path)
    assert store.tables() == []
    path.write_bytes(good)
    run(store, path)
    assert len(store["trades"].select("binance:BTC/USDT:USDT")) == N


@pytest.mark.parametrize("name,good,damage,table,symbol", CASES,
                         ids=[f"{c[0].rsplit('.', 1)[-1]}-{c[2].__name__[1:]}" for c in CASES])
def test_a_damaged_download_names_the_file_and_stores_nothing(store, tmp_path, name, good, damage, table, symbol):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(damage(good))
    why = DAMAGED if (name, damage) != ("node_fills/hourly/20251024/20.lz4", _flip) else rf"{DAMAGED}|line \d+: not JSON"
    with pytest.raises(MalformedInput, match=why) as err:
        run(store, path)
    assert isinstance(err.value, TickstoreError) and path.name in str(err.value)
    assert store.tables() == []  # nothing of it stored, no table made
    path.write_bytes(good)  # downloaded again: imported whole
    report = run(store, path)
    assert report.files[0].status == "imported"
    want = N if "node_fills" not in name else N // 2  # two fills per trade id
    assert len(store[table].select(symbol)) == want
