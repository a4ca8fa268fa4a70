"""Which Bybit category an order-book download is, from what its name and folder say; and
JSON-lines downloads with Windows line ends or a byte order mark.

Bybit serves its order-book history from quote-saver.bycsi.com (linked from
bybit.com/derivatives/en/history-data) as ``orderbook/<linear|spot|inverse>/<SYMBOL>/<YYYY-MM-DD>_<SYMBOL>_ob<depth>.data.zip``,
one ``.data`` file of v5 websocket frames (bybit-exchange.github.io/docs/v5/websocket/public/orderbook:
``{"topic":"orderbook.200.BTCUSDT","type":"snapshot","ts":...,"data":{"s","b","a","u","seq"},"cts":...}``).
Spot files have always been ``_ob200``; the linear files were ``_ob500`` and went to 200
levels on 2025-08-21 (e.g. ``orderbook/linear/0GUSDT/2025-09-18_0GUSDT_ob200.data.zip``). A
file taken out of its folder therefore does not say its category by its name from that day
on: it must be asked for, never guessed as spot (a linear book filed as ``bybit:BTC/USDT``).
"""

from __future__ import annotations

import json
import zipfile

import pandas as pd
import pytest

from collectors.importers import MissingOption

from .helpers import run

LINEAR, SPOT = "bybit:BTC/USDT:USDT", "bybit:BTC/USDT"


def _frames(day: str, depth: int) -> list[str]:
    t0 = int(pd.Timestamp(day, tz="UTC").value // 1_000_000)
    topic = f"orderbook.{depth}.BTCUSDT"
    snap = {"topic": topic, "type": "snapshot", "ts": t0 + 9, "cts": t0 + 5,
            "data": {"s": "BTCUSDT", "b": [["60000.10", "1.5"], ["60000.00", "2"]], "a": [["60000.20", "0.7"]],
                     "u": 1000, "seq": 5000}}
    delta = {"topic": topic, "type": "delta", "ts": t0 + 250, "cts": t0 + 248,
             "data": {"s": "BTCUSDT", "b": [["60000.10", "0"]], "a": [["60000.30", "3.25"]], "u": 1001, "seq": 5001}}
    return [json.dumps(snap), json.dumps(delta)]


def _zip(path, day: str, depth: int):
    name = f"{day}_BTCUSDT_ob{depth}.data"
    path = path / f"{name}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(name, "\n".join(_frames(day, depth)) + "\n")
    return path


def _top(store, symbol):
    """(ms of the second, best bid, its qty, best ask, its qty) of the book rows and the quotes."""
    out = []
    for table in ("book", "quotes"):
        t = store[table].select(symbol)
        one = "_1" if table == "book" else ""
        out.append(list(zip((t.index.asi8 // 1_000_000 % 1000).tolist(), t[f"bid_px{one}"], t[f"bid_qty{one}"],
                            t[f"ask_px{one}"], t[f"ask_qty{one}"])))
    return out


# what the frames describe: the book on the collector's 100 ms grid (the points up to the last
# frame; the book after it is kept in the store's book state for the next day's file), and
# the top of the book at every change (Bybit quotes come from the book, as live)
WANT = [[(100, 60000.10, 1.5, 60000.20, 0.7), (200, 60000.10, 1.5, 60000.20, 0.7)],
        [(9, 60000.10, 1.5, 60000.20, 0.7), (250, 60000.00, 2.0, 60000.20, 0.7)]]


def test_an_ob200_file_from_2025_08_21_outside_its_folder_is_asked_for(store, tmp_path):
    path = _zip(tmp_path, "2025-09-18", 200)
    with pytest.raises(MissingOption, match=r"--market linear or spot.*orderbook/linear/"):
        run(store, path)
    assert store.tables() == []  # nothing written, not a linear book filed as spot
    run(store, path, market="linear")
    assert SPOT not in store["book"].symbols()
    assert _top(store, LINEAR) == WANT


def test_the_first_ob200_day_is_asked_for_even_if_its_first_frame_is_before_midnight(store, tmp_path):
    path = tmp_path / "2025-08-21_BTCUSDT_ob200.data.zip"
    frames = _frames("2025-08-20 23:59:59.990", 200)  # the day's opening snapshot, 10 ms early
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(path.stem, "\n".join(frames) + "\n")
    with pytest.raises(MissingOption, match="--market linear or spot"):
        run(store, path)
    assert store.tables() == []


@pytest.mark.parametrize("folder,market", [("orderbook/linear/BTCUSDT", LINEAR), ("orderbook/spot/BTCUSDT", SPOT)])
def test_the_download_folder_says_the_category_of_an_ob200_file(store, tmp_path, folder, market):
    run(store, _zip(tmp_path / folder, "2025-09-18", 200))
    assert store["book"].symbols() == store["quotes"].symbols() == [market]
    assert _top(store, market) == WANT


@pytest.mark.parametrize("day,depth,market", [
    ("2024-05-01", 200, SPOT),     # before 2025-08-21 only spot files were _ob200
    ("2024-05-01", 500, LINEAR),   # _ob500: derivatives
    ("2025-08-20", 500, LINEAR),
])
def test_the_name_says_the_category_where_it_can(store, tmp_path, day, depth, market):
    run(store, _zip(tmp_path, day, depth))
    assert store["book"].symbols() == store["quotes"].symbols() == [market]
    assert _top(store, market) == WANT


@pytest.mark.parametrize("nl,bom", [("\r\n", ""), ("\n", "\ufeff"), ("\r\n", "\ufeff")])
def test_json_lines_with_crlf_or_a_byte_order_mark_read_as_the_file_says(store, tmp_path, nl, bom):
    """A ``.data`` file re-saved on Windows (CRLF, a UTF-8 byte order mark): the frames are
    the same. The CSV readers already skipped a BOM; the JSON-lines readers refused line 1."""
    import lz4.frame

    name = "2024-05-01_BTCUSDT_ob500.data"
    path = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(name, bom + nl.join(_frames("2024-05-01", 500)) + nl)
    run(store, path)
    assert _top(store, LINEAR) == WANT
    # the same for a Hyperliquid node_fills hour (one [user, fill] per line; github.com/hyperliquid-dex/node)
    fills = [["0x1", {"coin": "ETH", "px": "2500.5", "sz": "0.2", "side": "A", "time": 1761336000021, "crossed": True,
                      "tid": 77, "hash": "0xabc", "oid": 1}],
             ["0x2", {"coin": "ETH", "px": "2500.5", "sz": "0.2", "side": "B", "time": 1761336000021, "crossed": False,
                      "tid": 77, "hash": "0xabc", "oid": 2}]]
    hour = tmp_path / "node_fills/hourly/20251024/20.lz4"
    hour.parent.mkdir(parents=True)
    hour.write_bytes(lz4.frame.compress((bom + nl.join(json.dumps(f) for f in fills) + nl).encode()))
    run(store, hour)
    got = store["trades"].select("hyperliquid:ETH/USDC:USDC")
    assert list(zip(got.index.asi8, got["trade_id"], got["price"], got["qty"], got["side"])) == [
        (1761336000021_000_000, 77, 2500.5, 0.2, -1)]  # the taker (crossed) sold
