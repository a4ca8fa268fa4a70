"""One stream per span for ``mark`` and ``open_interest`` too, and a stream per data kind.

``mark`` and ``open_interest`` are keyed on ``ts`` alone, and every stream of them stamps
and samples at its own times: Binance's markPrice ``E`` (every 1 s or 3 s), Bybit's tickers
``ts``, Tardis' ``derivative_ticker`` (https://docs.tardis.dev/downloadable-csv-files/data-types
"derivative_ticker": "derivative instrument ticker info sourced from real-time ticker &
instrument channels", columns ``exchange,symbol,timestamp,local_timestamp,funding_timestamp,
funding_rate,predicted_funding_rate,open_interest,last_price,index_price,mark_price``, times
in us; a row whenever one of them changed), Binance's 5-minute open-interest statistics
(data.binance.vision ``<SYMBOL>-metrics-<date>.csv``: ``create_time,symbol,sum_open_interest,
sum_open_interest_value,...``), the Hyperliquid archive's minute rows
(``asset_ctxs/<YYYYMMDD>.csv.lz4``, https://hyperliquid.gitbook.io/hyperliquid-docs/historical-data).
Without the rule two of them imported over one day interleave (a mark every minute between
marks every 20 s). The rule is the one ``quotes`` follow (``run.ONE_STREAM_TABLES``, the same
code): each test checks what is kept out and that every row is one stream's.
"""

from __future__ import annotations

import gzip
import json

import lz4.frame
import numpy as np
import pandas as pd

from tests.importers.helpers import bybit_frames, run, write, write_tar

TARDIS_HEAD = ("exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,predicted_funding_rate,"
               "open_interest,last_price,index_price,mark_price\n")
HL = "hyperliquid:BTC/USDC:USDC"
PERP = "binance:BTC/USDT:USDT"
S = 1_000_000_000  # ns


def _sources(store, table, symbol, day) -> set:
    v = store[table].versions(symbol, day)
    return set(v.loc[v["rows"] > 0, "source"])


# -- Hyperliquid: the archive's minute rows and Tardis' ticker --------------------------------
T0 = pd.Timestamp("2025-10-24 20:00", tz="UTC").value


def _archive(tmp_path, minutes: range) -> tuple:
    """asset_ctxs rows of BTC at the minutes given; (path, {ts: (mark, oracle, funding, oi)})."""
    rows, want = [], {}
    for m in minutes:
        ts = T0 + m * 60 * S
        mark, oracle, funding, oi = 111000.0 + m, 110990.0 + m, float(f"{0.0000125 + m * 1e-7:.8g}"), 23456.0 + m
        rows.append(f"{pd.Timestamp(ts):%Y-%m-%d %H:%M:%S}.000,BTC,{funding},{oi},110000.0,2.1e9,0.0002,{oracle},{mark},"
                    f"{mark - 0.5},{mark - 5},{mark + 5}")
        want[ts] = (mark, oracle, funding, oi)
    path = tmp_path / "asset_ctxs" / "20251024.csv.lz4"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lz4.frame.compress(("time,coin,funding,open_interest,prev_day_px,day_ntl_vlm,premium,oracle_px,"
                                         "mark_px,mid_px,impact_bid_px,impact_ask_px\n" + "\n".join(rows) + "\n").encode()))
    return path, want


def _tardis_hl(tmp_path, seconds: range) -> tuple:
    """Tardis hyperliquid derivative_ticker rows of BTC at the seconds given (each changes the
    mark and the open interest); (path, {ts: (mark, oracle, funding, oi)})."""
    rows, want = [], {}
    nxt = (T0 // (3600 * S) + 1) * 3600 * S
    for i, s in enumerate(seconds):
        ts = T0 + s * S
        mark, oracle, funding, oi = 111500.0 + i, 111490.0 + i, 0.0000130, 23500.0 + i
        rows.append(f"hyperliquid,BTC,{ts // 1000},{ts // 1000 + 2345},{nxt // 1000},{funding},,{oi},{mark - 1},{oracle},{mark}")
        want[ts] = (mark, oracle, funding, oi)
    return write(tmp_path / "tardis" / "hyperliquid_derivative_ticker_2025-10-24_BTC.csv", TARDIS_HEAD + "\n".join(rows) + "\n"), want


def _marks(store, symbol) -> dict:
    m = store["mark"].select(symbol)
    return dict(zip(m.index.asi8.tolist(), zip(m["mark_px"], m["index_px"], m["funding_rate"])))


def _ois(store, symbol) -> dict:
    o = store["open_interest"].select(symbol)
    return dict(zip(o.index.asi8.tolist(), o["oi"]))


def test_hyperliquid_archive_minutes_and_tardis_ticker_keep_one_stream_per_span(tmp_path):
    from tickstore import Tickstore

    archive, minutes = _archive(tmp_path, range(0, 6))  # 20:00 .. 20:05, a row a minute
    tardis, ticks = _tardis_hl(tmp_path, range(10, 601, 20))  # 20:00:10 .. 20:10:00, a row every 20 s
    a_last, t_first = max(minutes), min(ticks)

    # the archive first: Tardis' rows inside 20:00 .. 20:05 are kept out, its later ones added
    with Tickstore(tmp_path / "archive-first") as store:
        run(store, archive)
        report = run(store, tardis)
        inside = [t for t in ticks if t <= a_last]
        assert report.files[0].kept_out == {"mark": len(inside), "open_interest": len(inside)}
        assert "kept out as another stream's span: mark %d, open_interest %d" % (len(inside), len(inside)) in report.summary()
        want = {t: v[:3] for t, v in minutes.items()} | {t: v[:3] for t, v in ticks.items() if t > a_last}
        assert _marks(store, HL) == want
        assert _ois(store, HL) == {t: v[3] for t, v in minutes.items()} | {t: v[3] for t, v in ticks.items() if t > a_last}
        for table in ("mark", "open_interest"):
            # Tardis' file holds the archive's rows carried forward: its source names both
            # streams, as a merge's does (cut at the index's 64 bytes)
            assert _sources(store, table, HL, "2025-10-24") == {
                "import:hyperliquid-archive (asset_ctxs)", "import:tardis (derivative_ticker)+import:hyperliquid-archive (as"}
        # the next day's archive file (the same stream) is not kept out by Tardis' day
        nxt, more = _archive(tmp_path / "next", range(1440, 1442))
        assert run(store, nxt).files[0].kept_out == {} and set(more) <= set(_marks(store, HL))

    # Tardis first: the archive's minutes inside Tardis' span are kept out; 20:00:00 is before it
    with Tickstore(tmp_path / "tardis-first") as store:
        run(store, tardis)
        report = run(store, archive)
        inside = [t for t in minutes if t_first <= t <= max(ticks)]
        assert report.files[0].kept_out == {"mark": len(inside), "open_interest": len(inside)}
        assert _marks(store, HL) == {t: v[:3] for t, v in ticks.items()} | {
            t: v[:3] for t, v in minutes.items() if t < t_first}
        # switching the day's stream: delete it, import the other file again
        for table in ("mark", "open_interest"):
            store[table].delete(HL, "2025-10-24", reason="the archive's minutes instead")
        report = run(store, archive)
        assert report.files[0].status == "imported" and report.files[0].kept_out == {}
        assert _marks(store, HL) == {t: v[:3] for t, v in minutes.items()}


# -- Binance open interest: the archive's 5-minute statistics and Tardis' polls -----------------
D0 = pd.Timestamp("2024-08-08", tz="UTC").value


def _metrics(tmp_path, fives: range) -> tuple:
    rows, want = [], {}
    for k in fives:
        ts = D0 + k * 300 * S
        oi = 81000.0 + k
        rows.append(f"{pd.Timestamp(ts):%Y-%m-%d %H:%M:%S},BTCUSDT,{oi},{oi * 61000},1.2,1.3,1.4,0.9")
        want[ts] = oi
    head = ("create_time,symbol,sum_open_interest,sum_open_interest_value,count_toptrader_long_short_ratio,"
            "sum_toptrader_long_short_ratio,count_long_short_ratio,sum_taker_long_short_vol_ratio\n")
    return write(tmp_path / "BTCUSDT-metrics-2024-08-08.csv", head + "\n".join(rows) + "\n"), want


def _tardis_binance(tmp_path, seconds: range, name="binance-futures_derivative_ticker_2024-08-08_BTCUSDT.csv") -> tuple:
    """Tardis binance-futures rows: the mark every second (markPrice@1s), the open interest
    changing at Tardis' polls (every 7 s here); (path, mark {ts: px}, oi {ts: oi})."""
    rows, marks, ois = [], {}, {}
    oi = None
    for i, s in enumerate(seconds):
        ts = D0 + s * S
        mark = 61000.0 + i * 0.1
        if s % 7 == 0:
            oi = 80000.0 + s
            ois[ts] = oi
        marks[ts] = mark
        rows.append(f"binance-futures,BTCUSDT,{ts // 1000},{ts // 1000 + 1234},{(D0 + 8 * 3600 * S) // 1000},0.0001,,"
                    f"{'' if oi is None else oi},{mark + 0.5},{mark - 3},{mark}")
    return write(tmp_path / name, TARDIS_HEAD + "\n".join(rows) + "\n"), marks, ois


def test_binance_metrics_and_tardis_open_interest_keep_one_stream_per_span(tmp_path):
    from tickstore import Tickstore

    metrics, fives = _metrics(tmp_path, range(0, 7))  # 00:00 .. 00:30
    tardis, marks, polls = _tardis_binance(tmp_path, range(1, 2401))  # 00:00:01 .. 00:40:00
    with Tickstore(tmp_path / "metrics-first") as store:
        run(store, metrics)
        report = run(store, tardis)
        inside = [t for t in polls if t <= max(fives)]
        # only the open interest met another stream; the marks are the only ones of the day
        assert report.files[0].kept_out == {"open_interest": len(inside)}
        assert report.rows["mark"] == len(marks)
        assert _ois(store, PERP) == fives | {t: v for t, v in polls.items() if t > max(fives)}
    with Tickstore(tmp_path / "tardis-first") as store:
        run(store, tardis)
        report = run(store, metrics)
        inside = [t for t in fives if min(polls) <= t <= max(polls)]
        assert report.files[0].kept_out == {"open_interest": len(inside)} and len(inside) == 6
        assert _ois(store, PERP) == polls | {t: v for t, v in fives.items() if t < min(polls)}
        assert _sources(store, "open_interest", PERP, "2024-08-08") == {
            "import:tardis (derivative_ticker)", "import:binance-vision (metrics)+import:tardis (derivative_ticker"}


def test_binance_open_interest_statistics_are_one_stream_by_every_path(tmp_path):
    """``tickstore backfill oi`` (ccxt -> /futures/data/openInterestHist, here the local REST
    server), saved ``openInterestHist`` bodies and the archive's ``metrics`` files are one
    series (Binance's 5-minute statistics): an hourly backfill is filled in by the 5-minute
    metrics and a body of the same rows adds nothing; Tardis' polls are another stream."""
    from collectors.backfill import Kind, backfill, make_exchange
    from collectors.restsim import RestSim, SimData
    from tickstore import Tickstore

    metrics, fives = _metrics(tmp_path, range(0, 25))  # 00:00 .. 02:00
    hours = {t: v for t, v in fives.items() if (t - D0) % (3600 * S) == 0}
    data = SimData()
    data.put_oi("binance", "BTCUSDT", "1h", [(t // 1_000_000, v, v * 61000) for t, v in hours.items()])
    with RestSim(data) as sim, Tickstore(tmp_path / "store") as store:
        ex = make_exchange("binance", base_url=sim.base_url, rate_limit_ms=1)
        backfill(store, Kind.OI, "BTC/USDT:USDT", exchange="binance", start="2024-08-08", end="2024-08-09",
                 timeframe="1h", exchange_obj=ex, progress=False, sleep=lambda s: None)
        assert _ois(store, PERP) == hours
        report = run(store, metrics)
        assert report.files[0].kept_out == {} and report.rows["open_interest"] == len(fives) - len(hours)
        assert report.files[0].held == {"open_interest": len(hours)}
        body = json.dumps([{"symbol": "BTCUSDT", "sumOpenInterest": str(v), "sumOpenInterestValue": str(v * 61000),
                            "timestamp": t // 1_000_000} for t, v in fives.items()])
        report = run(store, write(tmp_path / "BTCUSDT-openInterestHist.json", body))
        assert report.files[0].kept_out == {} and report.rows.get("open_interest", 0) == 0
        assert _ois(store, PERP) == fives
        tardis, _, polls = _tardis_binance(tmp_path, range(1, 3 * 3600, 3))
        report = run(store, tardis)
        assert report.files[0].kept_out["open_interest"] == sum(t <= max(fives) for t in polls)
        assert _ois(store, PERP) == fives | {t: v for t, v in polls.items() if t > max(fives)}


# -- the stream is the data kind of the rows, not the file's kinds ---------------------------
QUOTES_HEAD = "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n"
TRADES_HEAD = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def _quotes(seconds) -> str:
    return QUOTES_HEAD + "".join(f"binance-futures,BTCUSDT,{(D0 + s * S) // 1000},{(D0 + s * S) // 1000 + 77},"
                                 f"1.5,{61000.5 + s},{61000.0 + s},2.5\n" for s in seconds)


def test_a_file_of_several_kinds_labels_each_tables_rows_with_the_kind_that_made_them(tmp_path):
    """An archive of Tardis quotes and trades (or derivative_ticker and trades) stores its
    quotes (marks) as ``(quotes)`` (``(derivative_ticker)``), so the rest of the same stream
    in a file of that kind alone is added, not kept out as another stream (it was, when the
    label joined the file's kinds: ``(quotes,trades)``)."""
    from tickstore import Tickstore

    trades = TRADES_HEAD + "".join(f"binance-futures,BTCUSDT,{(D0 + s * S) // 1000},{(D0 + s * S) // 1000 + 9},{s},buy,"
                                   f"61000.0,0.1\n" for s in range(1, 50))
    ticker_all = _tardis_binance(tmp_path / "t", range(1, 101))
    text = ticker_all[0].read_text().splitlines()
    with Tickstore(tmp_path / "store") as store:
        both = write_tar(tmp_path / "binance-futures_2024-08-08_BTCUSDT.tar.gz", [
            ("binance-futures_quotes_2024-08-08_BTCUSDT.csv", _quotes(range(1, 60))),
            ("binance-futures_trades_2024-08-08_BTCUSDT.csv", trades),
            ("binance-futures_derivative_ticker_2024-08-08_BTCUSDT.csv", "\n".join(text[:51]) + "\n"),
        ])
        report = run(store, both)
        assert report.files[0].kind == "derivative_ticker,quotes,trades"
        assert _sources(store, "quotes", PERP, "2024-08-08") == {"import:tardis (quotes)"}
        assert _sources(store, "mark", PERP, "2024-08-08") == {"import:tardis (derivative_ticker)"}
        assert _sources(store, "trades", PERP, "2024-08-08") == {"import:tardis"}
        # the rest of the day, each kind in its own file: the same streams continuing
        rest_q = write(tmp_path / "q" / "binance-futures_quotes_2024-08-08_BTCUSDT.csv", _quotes(range(30, 120)))
        rest_t = write(tmp_path / "d" / "binance-futures_derivative_ticker_2024-08-08_BTCUSDT.csv",
                       "\n".join(text[:1] + text[51:]) + "\n")
        report = run(store, rest_q, rest_t)
        assert [f.kept_out for f in report.files] == [{}, {}]
        assert report.rows["quotes"] == 60 and report.rows["mark"] == 50  # 30..59 were held
        assert len(store["quotes"].select(PERP)) == 119 and len(store["mark"].select(PERP)) == 100


def test_two_kinds_of_one_file_writing_one_table_store_the_first_kinds_stream(tmp_path):
    """Tardis' ``quotes`` and ``book_ticker`` of a symbol in one archive: the first member's
    quotes are stored, the second's inside their span kept out, its later ones added."""
    from tickstore import Tickstore

    ticker = QUOTES_HEAD + "".join(f"binance-futures,BTCUSDT,{(D0 + s * S) // 1000 + 3000},{(D0 + s * S) // 1000 + 3500},"
                                   f"1.0,{61000.6 + s},{61000.1 + s},2.0\n" for s in range(0, 40))
    tar = write_tar(tmp_path / "two.tar.gz", [("binance-futures_quotes_2024-08-08_BTCUSDT.csv", _quotes(range(1, 30))),
                                              ("binance-futures_book_ticker_2024-08-08_BTCUSDT.csv", ticker)])
    with Tickstore(tmp_path / "store") as store:
        report = run(store, tar)
        q = store["quotes"].select(PERP)
        # book_ticker rows at s + 3 ms (s = 0 .. 39): inside the quotes' span [1 s, 29 s] for
        # s = 1 .. 28; s = 0 is before it, s = 29 .. 39 after it
        assert report.files[0].kept_out == {"quotes": 28}
        assert len(q) == 29 + 1 + 11
        assert _sources(store, "quotes", PERP, "2024-08-08") == {"import:tardis (quotes)",
                                                                  "import:tardis (book_ticker)+import:tardis (quotes)"}
        inner = q[(q.index.asi8 >= D0 + S) & (q.index.asi8 <= D0 + 29 * S)]
        assert inner["bid_px"].tolist() == [61000.0 + s for s in range(1, 30)]  # one stream inside its span


# -- real frames: Bybit's tickers, the live path first ----------------------------------------
def test_real_bybit_tickers_live_first_then_tardis_derivative_ticker(data_dir, tmp_path):
    """A collector ran for the first half of the real ``tickers.BTCUSDT`` frames; Tardis'
    derivative_ticker of the whole span is written from the same frames (a row wherever one
    of its columns changed, ``timestamp`` the frame's ``ts``, ``local_timestamp`` the receive
    time). Imported over the collector's day, Tardis' marks and open interest inside the
    collector's span are kept out and its later ones added; after a delete, Tardis' alone."""
    from collectors.replay import replay
    from tickstore import Tickstore

    sym, day = "bybit:BTC/USDT:USDT", "2026-08-09"
    frames = bybit_frames(data_dir, "tickers.BTCUSDT")
    assert len(frames) > 100
    state, rows, tmark, toi = {}, [], {}, {}
    cols = ("nextFundingTime", "fundingRate", "openInterest", "lastPrice", "indexPrice", "markPrice")
    last_row = last_mark = last_oi = None
    for local_us, raw in frames:
        f = json.loads(raw)
        state.update(f["data"])
        if not all(k in state for k in ("markPrice", "indexPrice", "nextFundingTime", "fundingRate")):
            continue
        row = tuple(state.get(k, "") for k in cols)
        if row == last_row:
            continue
        last_row = row
        ts_us = f["ts"] * 1000
        rows.append(f"bybit,BTCUSDT,{ts_us},{local_us},{int(state['nextFundingTime']) * 1000},{state['fundingRate']},,"
                    f"{state.get('openInterest', '')},{state.get('lastPrice', '')},{state['indexPrice']},{state['markPrice']}")
        mark = (float(state["markPrice"]), float(state["indexPrice"]), float(state["fundingRate"]))
        if mark != last_mark:  # the importer's rule: a mark row where mark/index/funding changed
            last_mark = mark
            tmark[ts_us * 1000] = mark
        if "openInterest" in state and state["openInterest"] != last_oi:
            last_oi = state["openInterest"]
            toi[ts_us * 1000] = float(last_oi)
    tardis = write(tmp_path / f"bybit_derivative_ticker_{day}_BTCUSDT.csv", TARDIS_HEAD + "\n".join(rows) + "\n")

    half = frames[: len(frames) // 2]
    capture = tmp_path / "bybit.gz"
    with gzip.open(capture, "wt") as fh:
        fh.writelines(f"{local_us * 1000} {raw}\n" for local_us, raw in half)
    with Tickstore(tmp_path / "live") as store:
        replay([capture], store=store, venue="bybit", market="linear")
        live_mark, live_oi = _marks(store, sym), _ois(store, sym)
        assert len(live_mark) > 5 and len(live_oi) >= 1
        report = run(store, tardis)
        kept = {"mark": sum(t <= max(live_mark) for t in tmark if t >= min(live_mark)),
                "open_interest": sum(min(live_oi) <= t <= max(live_oi) for t in toi)}
        assert kept["mark"] > 5
        assert report.files[0].kept_out == {k: v for k, v in kept.items() if v}
        assert _marks(store, sym) == live_mark | {t: v for t, v in tmark.items() if t > max(live_mark)}
        assert _ois(store, sym) == live_oi | {t: v for t, v in toi.items() if not min(live_oi) <= t <= max(live_oi)}
        got = store["mark"].select(sym)
        src = np.where(got.index.asi8 <= max(live_mark), "live", "tardis")
        assert (np.diff((src == "tardis").astype(int)) >= 0).all()  # one stream, then the other: no interleave
        # switching: delete the collector's day, import Tardis' again
        for table in ("mark", "open_interest"):
            store[table].delete(sym, day, reason="Tardis' ticker instead")
        report = run(store, tardis)
        assert report.files[0].kept_out == {}
        assert _marks(store, sym) == tmark and _ois(store, sym) == toi
