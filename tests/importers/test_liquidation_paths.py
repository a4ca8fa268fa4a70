"""One liquidation is one row, whichever paths brought it.

``liquidations`` has no key: a row is held when an equal row is stored. Every path stamps a
print with the same time, side, price and quantity (the table's convention: Binance's
forceOrder ``T``, ``ap``, ``z``), but its receive time is each path's own: the collector's,
Tardis' ``local_timestamp``, none in the archive (``recv_ts = ts``). So the same print
imported over a collected day was stored once per path. Files written from the published
layouts: Binance's forceOrder payload example (developers.binance.com, USD-M futures,
"Liquidation Order Streams"), Tardis' liquidations CSV
(https://docs.tardis.dev/downloadable-csv-files/data-types "liquidations": exchange, symbol,
timestamp, local_timestamp, id, side, price, amount), data.binance.vision's
``liquidationSnapshot`` CSV (time, side, order_type, time_in_force, original_quantity,
price, average_price, order_status, last_fill_quantity, accumulated_fill_quantity).
"""

from __future__ import annotations

import gzip
import json

from tests.importers.helpers import run, write

PERP = "binance:BTC/USDT:USDT"
T = 1568014460893  # the documented example's T (2019-09-09)
DAY = "2019-09-09"


def _force_order(t, side, qty, ap):
    return {"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder", "E": t + 3, "o": {
        "s": "BTCUSDT", "S": side, "o": "LIMIT", "f": "IOC", "q": qty, "p": "9910", "ap": ap, "X": "FILLED",
        "l": qty, "z": qty, "T": t}}}


def _rows(store):
    got = store["liquidations"].select(PERP)
    return sorted(zip(got.index.asi8.tolist(), got["side"].tolist(), got["price"].tolist(), got["qty"].tolist()))


def test_a_print_collected_and_imported_from_tardis_and_the_archive_is_one_row(tmp_path):
    from collectors.replay import replay
    from tickstore import Tickstore

    capture = tmp_path / "capture.gz"
    with gzip.open(capture, "wt") as fh:
        fh.write(f"{(T + 40) * 1_000_000} {json.dumps(_force_order(T, 'SELL', '0.014', '9910'))}\n")
    tardis = write(tmp_path / f"binance-futures_liquidations_{DAY}_BTCUSDT.csv",
                   "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
                   f"binance-futures,BTCUSDT,{T * 1000},{T * 1000 + 61_000},,sell,9910,0.014\n"  # the same print
                   f"binance-futures,BTCUSDT,{T * 1000},{T * 1000 + 61_000},,sell,9910,0.014\n"  # another, equal
                   f"binance-futures,BTCUSDT,{(T + 5000) * 1000},{(T + 5000) * 1000 + 55_000},,buy,9950,0.2\n")
    archive = write(tmp_path / f"data/futures/um/daily/liquidationSnapshot/BTCUSDT/BTCUSDT-liquidationSnapshot-{DAY}.csv",
                    "time,side,order_type,time_in_force,original_quantity,price,average_price,order_status,"
                    "last_fill_quantity,accumulated_fill_quantity\n"
                    f"{T},SELL,LIMIT,IOC,0.014,9910,9910,FILLED,0.014,0.014\n"
                    f"{T + 5000},BUY,LIMIT,IOC,0.2,9950,9950,FILLED,0.2,0.2\n"
                    f"{T + 9000},BUY,LIMIT,IOC,0.5,9960,9961,FILLED,0.5,0.5\n")
    with Tickstore(tmp_path / "store") as store:
        replay([capture], store=store, venue="binance", market="usdm")
        live = store["liquidations"].select(PERP)
        assert _rows(store) == [(T * 1_000_000, -1, 9910.0, 0.014)]
        report = run(store, tardis)
        # the collected print is held (its receive time is the collector's); the second
        # equal row of the file is another print (a multiset), the buy a new one
        assert report.files[0].held == {"liquidations": 1} and report.rows == {"liquidations": 2}
        report = run(store, archive)
        assert report.files[0].held == {"liquidations": 2} and report.rows == {"liquidations": 1}
        assert _rows(store) == [(T * 1_000_000, -1, 9910.0, 0.014), (T * 1_000_000, -1, 9910.0, 0.014),
                                ((T + 5000) * 1_000_000, 1, 9950.0, 0.2), ((T + 9000) * 1_000_000, 1, 9961.0, 0.5)]
        got = store["liquidations"].select(PERP)
        assert got["recv_ts"].iat[0] == live["recv_ts"].iat[0]  # the first path's receive time is kept
        # importing either file again adds nothing
        assert sum(run(store, tardis, force=True).rows.values()) == 0
        assert sum(run(store, archive, force=True).rows.values()) == 0
