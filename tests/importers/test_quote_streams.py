"""One quote stream per span: Tardis Bybit quotes, Tardis Bybit books and the live path.

Bybit's quotes are the top of a book: live and replay take it from the book the connection
carries (``orderbook.1``, Bybit's BBO stream, where it is there, else the depth topic),
stamped with the frame's ``ts`` and its ``u``. Tardis sells the same top twice, as
``quotes`` (its own top of the L2 book, https://docs.tardis.dev/downloadable-csv-files/data-types
"quotes": "top of the book (best bid/ask) reconstructed from exchange's real-time order
book L2 data") and inside ``incremental_book_L2``/``book_snapshot_N`` (replayed here through
the book builder, which quotes its top), and ``book_ticker`` from ``orderbook.1``; none of
the CSVs has Bybit's ``u``. The key ``(ts, update_id)`` therefore cannot tell one quote come
by two paths: without the rule a Tardis day imported over the collector's stored each
change of the top twice (the ids of Tardis' quotes and of its book files coincide only
where no two messages share a receive microsecond).

The files are written from the real Bybit ``orderbook.200`` frames of
``cryptofeed/BYBIT.jsonl.zst`` in Tardis' CSV layouts (the page above: incremental_book_L2
``exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount``; quotes
``...,ask_amount,ask_price,bid_price,bid_amount``; times in us), the quotes file from an
independent book in this test.
"""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest

from tests.importers.helpers import bybit_frames, run, write

SYM = "bybit:BTC/USDT:USDT"
DAY = "2026-08-09"


def _frames(data_dir):
    """(local receive time in us, frame) of the BTCUSDT orderbook.200 frames of one connection."""
    return bybit_frames(data_dir, "orderbook.200.BTCUSDT")


def _tardis_files(tmp_path, frames):
    """Tardis incremental_book_L2, book_snapshot_25 and quotes CSVs of ``frames``; the quotes
    as an independent book says them: (ts ns, recv ns, bid px, bid qty, ask px, ask qty) at
    each change of the top."""
    l2 = ["exchange,symbol,timestamp,local_timestamp,is_snapshot,side,price,amount"]
    quotes = ["exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount"]
    s25 = ["exchange,symbol,timestamp,local_timestamp," + ",".join(
        f"asks[{i}].price,asks[{i}].amount,bids[{i}].price,bids[{i}].amount" for i in range(25))]
    want, bids, asks, top, top25 = [], {}, {}, None, None
    for local_us, raw in frames:
        f = json.loads(raw)
        d, snap = f["data"], f["type"] == "snapshot"
        if snap:
            bids, asks = {}, {}
        ts_us = f["ts"] * 1000
        for side, name, book in ((d["b"], "bid", bids), (d["a"], "ask", asks)):
            for p, q in side:
                l2.append(f"bybit,BTCUSDT,{ts_us},{local_us},{'true' if snap else 'false'},{name},{p},{q}")
                if float(q) == 0:
                    book.pop(float(p), None)
                else:
                    book[float(p)] = float(q)
        b25, a25 = sorted(bids.items(), reverse=True)[:25], sorted(asks.items())[:25]
        if (b25, a25) != top25:  # book_snapshot_25: a row whenever the top 25 levels change
            top25 = (b25, a25)
            s25.append(f"bybit,BTCUSDT,{ts_us},{local_us}," + ",".join(
                f"{a25[i][0]},{a25[i][1]},{b25[i][0]},{b25[i][1]}" for i in range(25)))
        b = max(bids)
        a = min(asks)
        now = (b, bids[b], a, asks[a])
        if now != top:
            top = now
            quotes.append(f"bybit,BTCUSDT,{ts_us},{local_us},{asks[a]},{a},{b},{bids[b]}")
            want.append((ts_us * 1000, local_us * 1000, *now))
    l2_path = write(tmp_path / "tardis" / f"bybit_incremental_book_L2_{DAY}_BTCUSDT.csv.gz", "\n".join(l2) + "\n", gz=True)
    q_path = write(tmp_path / "tardis" / f"bybit_quotes_{DAY}_BTCUSDT.csv.gz", "\n".join(quotes) + "\n", gz=True)
    s25_path = write(tmp_path / "tardis" / f"bybit_book_snapshot_25_{DAY}_BTCUSDT.csv.gz", "\n".join(s25) + "\n", gz=True)
    return {"incremental_book_L2": l2_path, "book_snapshot_25": s25_path}, q_path, want


def _rows(q: pd.DataFrame) -> list[tuple]:
    return list(zip(q.index.asi8.tolist(), q["recv_ts"].array.asi8.tolist(), q["bid_px"], q["bid_qty"], q["ask_px"], q["ask_qty"]))


def _sources(store) -> set:
    return set(store["quotes"].versions(SYM, DAY)["source"])


@pytest.mark.parametrize("book", ["book_snapshot_25", "incremental_book_L2"])
def test_tardis_quotes_and_book_files_and_the_live_path_keep_one_stream(data_dir, tmp_path, book):
    from collectors.replay import replay
    from tickstore import Tickstore

    frames = _frames(data_dir)
    books, quotes, want = _tardis_files(tmp_path, frames)
    l2 = books[book]
    assert len(want) > 20
    capture = tmp_path / "bybit.gz"  # the live path: the same frames as a capture, as received
    with gzip.open(capture, "wt") as fh:
        fh.writelines(f"{local_us * 1000} {raw}\n" for local_us, raw in frames)

    # each alone: the quotes file stores the independent top; the book file quotes the same top
    alone = {}
    for name, path in (("quotes", quotes), ("book", l2)):
        with Tickstore(tmp_path / f"alone-{name}") as store:
            run(store, path)
            alone[name] = store["quotes"].select(SYM)
    assert _rows(alone["quotes"]) == want
    assert _rows(alone["book"]) == want  # the same changes of the same top

    # live first: the imports add no quote inside the span the collector's quotes cover
    with Tickstore(tmp_path / "live") as store:
        replay([capture], store=store, venue="bybit", market="linear")
        live = store["quotes"].select(SYM)
        assert len(live) == len(want) and (live["update_id"] < 10**12).all()  # Bybit's u
        for path in (quotes, l2):
            report = run(store, path)
            assert report.files[0].kept_out == {"quotes": len(want)} and report.rows.get("quotes", 0) == 0
            assert "kept out as another stream's span: quotes" in report.summary()
        pd.testing.assert_frame_equal(store["quotes"].select(SYM), live)
        assert _sources(store) == {"replay"}

    # Tardis quotes, then its book file (either order): the first stream's quotes only
    for first, second, name in ((quotes, l2, "quotes"), (l2, quotes, "book")):
        with Tickstore(tmp_path / f"{name}-first") as store:
            run(store, first)
            report = run(store, second)
            assert report.files[0].kept_out == {"quotes": len(want)}
            pd.testing.assert_frame_equal(store["quotes"].select(SYM), alone[name])
            kind = "quotes" if name == "quotes" else book
            assert _sources(store) == {f"import:tardis ({kind})"}
            if name == "quotes":  # the book file's book rows are stored
                assert len(store["book_25" if book == "book_snapshot_25" else "book"].select(SYM)) > 0
                # switching the day's stream: delete its quotes, import the other file again
                # (the ledger sees the delete in a partition the file touched: not skipped)
                store["quotes"].delete(SYM, DAY, reason="quotes from the book file instead")
                report = run(store, l2)
                assert report.files[0].status == "imported" and report.files[0].kept_out == {}
                pd.testing.assert_frame_equal(store["quotes"].select(SYM), alone["book"])


def test_rows_outside_another_streams_span_and_the_same_stream_continuing_are_added(data_dir, tmp_path):
    """The span rule keeps streams apart, not days: quotes after the live span are added;
    the second half of a Tardis quotes day (another file, the same stream) is not kept out."""
    from tickstore import Tickstore

    _, quotes, want = _tardis_files(tmp_path, _frames(data_dir))
    lines = gzip.decompress(quotes.read_bytes()).decode().splitlines()
    header, body = lines[0], lines[1:]
    half = len(body) // 2
    first = write(tmp_path / "a" / f"bybit_quotes_{DAY}_BTCUSDT.csv", "\n".join([header] + body[:half]) + "\n")
    second = write(tmp_path / "b" / f"bybit_quotes_{DAY}_BTCUSDT.csv", "\n".join([header] + body[half:]) + "\n")
    with Tickstore(tmp_path / "halves") as store:
        run(store, second)
        report = run(store, first)  # earlier rows of the same stream, another file
        assert report.files[0].kept_out == {} and report.rows["quotes"] == half
        assert _rows(store["quotes"].select(SYM)) == want
    with Tickstore(tmp_path / "other-stream") as store:
        # another stream (a collector's, here rows appended as it would) covers the first half
        head = pd.DataFrame(
            {"recv_ts": pd.to_datetime([w[1] for w in want[:half]], utc=True), "update_id": range(1, half + 1),
             "bid_px": [w[2] for w in want[:half]], "bid_qty": [w[3] for w in want[:half]],
             "ask_px": [w[4] for w in want[:half]], "ask_qty": [w[5] for w in want[:half]]},
            index=pd.to_datetime([w[0] for w in want[:half]], utc=True))
        store["quotes"].append(SYM, head, source="live")
        report = run(store, quotes)
        assert report.files[0].kept_out == {"quotes": half} and report.rows["quotes"] == len(want) - half
        got = store["quotes"].select(SYM)
        assert _rows(got) == want  # each change once: the collector's first half, Tardis' rest
        assert got["update_id"].tolist()[:half] == list(range(1, half + 1))


def test_book_diffs_of_tardis_incremental_book_over_the_collectors_keep_one_stream(data_dir, tmp_path):
    """``book_diffs`` (``--keep-diffs``) are keyed on their ids too: the collector's carry
    Bybit's ``u``, Tardis' the ids anchored at its receive times, so each diff of a Tardis
    day imported over the collector's was stored twice. The same rule keeps them out."""
    from collectors.replay import replay
    from tickstore import Tickstore

    frames = _frames(data_dir)
    books, _, _ = _tardis_files(tmp_path, frames)
    l2 = books["incremental_book_L2"]
    with Tickstore(tmp_path / "alone") as store:
        run(store, l2, keep_diffs=True)
        tardis = store["book_diffs"].select(SYM)
    capture = tmp_path / "bybit.gz"
    with gzip.open(capture, "wt") as fh:
        fh.writelines(f"{local_us * 1000} {raw}\n" for local_us, raw in frames)
    with Tickstore(tmp_path / "live") as store:
        replay([capture], store=store, venue="bybit", market="linear", keep_diffs=True)
        live = store["book_diffs"].select(SYM)
        assert len(live) == len(tardis) > 100 and (live["update_id"] < 10**12).all()  # Bybit's u
        assert not set(live["update_id"]) & set(tardis["update_id"])  # the ids never meet
        report = run(store, l2, keep_diffs=True)
        assert report.files[0].kept_out == {"book_diffs": len(tardis), "quotes": len(_rows(store["quotes"].select(SYM)))}
        pd.testing.assert_frame_equal(store["book_diffs"].select(SYM), live)


def _collector_quotes(want) -> pd.DataFrame:
    """Another stream of the same top, as a collector stores it: every second change of it
    (as a slower stream sees it), numbered by its own ids."""
    mine = want[::2]
    return pd.DataFrame(
        {"recv_ts": pd.to_datetime([w[1] for w in mine], utc=True), "update_id": range(1, len(mine) + 1),
         "bid_px": [w[2] for w in mine], "bid_qty": [w[3] for w in mine],
         "ask_px": [w[4] for w in mine], "ask_qty": [w[5] for w in mine]},
        index=pd.DatetimeIndex(pd.to_datetime([w[0] for w in mine], utc=True), name="ts"))


def _flushes(store, frame, every=8):
    """Appended as a collector's writer appends: a file per flush, labelled with its journal position."""
    for i in range(0, len(frame), every):
        store["quotes"].append(SYM, frame.iloc[i:i + every], source=f"live journal 3:{1000 + i * 150}")


def _visible(store):
    v = store["quotes"].versions(SYM, DAY)
    return v[v["superseded_at"].isna()]


def test_a_collectors_flushes_are_one_stream_before_and_after_their_merge(data_dir, tmp_path):
    """A collector writes a file per flush, each with its journal position in the source
    (``live journal <segment>:<offset>``), and the store merges them as they pile up and at
    a stop (``Table.compact``: the sources joined by ``+``, cut at 64 bytes). Its span is
    from its first to its last quote, not each flush's: Tardis' quotes falling between two
    flushes were added (interleaved)."""
    from tickstore import Tickstore

    _, quotes, want = _tardis_files(tmp_path, _frames(data_dir))
    frame = _collector_quotes(want)
    first, last = frame.index[0].value, frame.index[-1].value
    inside = sum(first <= w[0] <= last for w in want)
    for merged in (False, True):
        with Tickstore(tmp_path / f"store-{merged}") as store:
            _flushes(store, frame)
            files = _visible(store)
            if merged:  # stopped: one file, the flushes' sources joined and cut
                store["quotes"].compact(SYM)
                files = _visible(store)
                assert len(files) == 1 and len(files["source"].iat[0].encode()) == 64
            else:  # running: the first flushes merged as segments piled up, the last ones files of their own
                assert len(files) >= 2 and files["source"].str.contains("+", regex=False).any()
            report = run(store, quotes)
            assert report.files[0].kept_out == {"quotes": inside}
            assert report.rows.get("quotes", 0) == len(want) - inside
            got = store["quotes"].select(SYM)
            inner = got[(got.index.asi8 >= first) & (got.index.asi8 <= last)]
            pd.testing.assert_frame_equal(inner, frame, check_freq=False)  # the collector's stream only
            # the import's file holds both streams now, and says so
            assert set(_visible(store)["source"]) == {"import:tardis (quotes)+live"}


def test_the_next_file_of_a_stream_stays_out_of_the_span_of_the_stream_its_file_carried(data_dir, tmp_path):
    """An import rewrites the partition it adds to (its version holds the rows it carried
    forward): that version names every stream it holds, so the second half of a Tardis day
    imported next is kept out where the collector's quotes are, as the first half was."""
    from tickstore import Tickstore

    _, quotes, want = _tardis_files(tmp_path, _frames(data_dir))
    frame = _collector_quotes(want[len(want) // 4:])  # the collector started a quarter in
    first, last = frame.index[0].value, frame.index[-1].value
    lines = gzip.decompress(quotes.read_bytes()).decode().splitlines()
    header, body = lines[0], lines[1:]
    mid = len(body) // 2  # inside the collector's span
    halves = [write(tmp_path / name / f"bybit_quotes_{DAY}_BTCUSDT.csv", "\n".join([header] + part) + "\n")
              for name, part in (("a", body[:mid]), ("b", body[mid:]))]
    with Tickstore(tmp_path / "store") as store:
        _flushes(store, frame)
        kept = [run(store, half).files[0].kept_out.get("quotes", 0) for half in halves]
        assert kept == [sum(first <= w[0] <= last for w in want[:mid]), sum(first <= w[0] <= last for w in want[mid:])]
        got = store["quotes"].select(SYM)
        inner = got[(got.index.asi8 >= first) & (got.index.asi8 <= last)]
        pd.testing.assert_frame_equal(inner, frame, check_freq=False)
        assert _rows(got[got.index.asi8 < first]) == [w for w in want if w[0] < first]


def test_streams_of_merged_and_cut_sources():
    from collectors.importers.run import streams_of

    own = "import:tardis (quotes)"
    assert streams_of("quotes", "live journal 1:100+live journal 1:900", own) == {"live"}
    assert streams_of("quotes", "live", own) == {"live"}
    assert streams_of("quotes", f"{own}+live journal 3:1", own) == {own, "live"}
    cut = "+".join(["live journal 123:4567890123"] * 3).encode()[:64].decode()
    assert cut.endswith("+live jou") and streams_of("quotes", cut, own) == {"live"}
    cut = ("live journal 12:345678+" + own + "+" + own).encode()[:64].decode()
    assert streams_of("quotes", cut, own) == {"live", own}
    assert streams_of("quotes", "replay+import:tardis (book_ticker)", own) == {"replay", "import:tardis (book_ticker)"}
    metrics = "import:binance-vision (metrics)"
    assert streams_of("open_interest", f"rest+{metrics}", metrics) == {metrics}  # one series (SAME_STREAM)
    assert streams_of("open_interest", f"rest+{metrics}", "import:tardis (derivative_ticker)") == {"rest", metrics}
    book_ticker = "import:binance-vision (bookTicker)"
    assert streams_of("quotes", "live journal 3:1+replay", book_ticker) == {book_ticker}
    assert streams_of("quotes", "live journal 3:1+replay", own) == {"live", "replay"}
    cut = ("live journal 123:4567890123456+import:binance-vision (bookTicker)").encode()[:64].decode()
    assert cut.endswith("+import:binance-vision (bookTicker") and streams_of("quotes", cut, book_ticker) == {book_ticker}
    assert streams_of("quotes", cut, own) == {"live", "import:binance-vision (bookTicker"}


def test_binance_archive_book_ticker_fills_the_collectors_outage_it_is_one_stream(data_dir, tmp_path):
    """Binance futures quotes are the ``bookTicker`` stream on the live path (its ``u``,
    stamped ``E``) and in the archive's ``bookTicker`` files (data.binance.vision
    ``<SYMBOL>-bookTicker-<date>.csv``: ``update_id,best_bid_price,best_bid_qty,best_ask_price,
    best_ask_qty,transaction_time,event_time``): one stream (``run.SAME_STREAM``). The
    archive's day imported over a collector's with an outage fills the outage and stores
    nothing twice (it was kept out inside the collector's span: the hole stayed). Frames:
    the real ``hftbacktest/usdm/btcusdt_20230404.dat.gz`` capture, its bookTicker frames of
    the middle fifth dropped as a disconnected collector would have missed them."""
    from collectors.replay import replay
    from tickstore import Tickstore

    sym = "binance:BTC/USDT:USDT"
    lines = gzip.decompress((data_dir / "hftbacktest" / "usdm" / "btcusdt_20230404.dat.gz").read_bytes()).decode().splitlines()
    tickers = [i for i, line in enumerate(lines) if '"bookTicker"' in line]
    hole = set(tickers[len(tickers) * 2 // 5: len(tickers) * 3 // 5])
    captures = {}
    for name, drop in (("full", set()), ("outage", hole)):
        captures[name] = tmp_path / f"{name}.dat.gz"
        captures[name].write_bytes(gzip.compress(("\n".join(x for i, x in enumerate(lines) if i not in drop) + "\n").encode()))
    rows, received = ["update_id,best_bid_price,best_bid_qty,best_ask_price,best_ask_qty,transaction_time,event_time"], []
    for i in tickers:
        local_us, raw = lines[i].split(" ", 1)
        d = json.loads(raw)["data"]
        rows.append(f"{d['u']},{d['b']},{d['B']},{d['a']},{d['A']},{d['T']},{d['E']}")
        received.append(int(local_us))
    archive = write(tmp_path / "data/futures/um/daily/bookTicker/BTCUSDT/BTCUSDT-bookTicker-2023-04-04.csv",
                    "\n".join(rows) + "\n")
    cols = ["update_id", "bid_px", "bid_qty", "ask_px", "ask_qty"]
    with Tickstore(tmp_path / "full") as store:
        replay([captures["full"]], store=store, venue="binance", market="usdm")
        full = store["quotes"].select(sym)
    with Tickstore(tmp_path / "store") as store:
        replay([captures["outage"]], store=store, venue="binance", market="usdm")
        live = store["quotes"].select(sym)
        assert len(full) - len(live) == len(hole)
        report = run(store, archive)
        assert report.files[0].kept_out == {}
        assert report.rows["quotes"] == len(hole) and report.files[0].held == {"quotes": len(live)}
        got = store["quotes"].select(sym)
        pd.testing.assert_frame_equal(got[cols], full[cols])
        # the collector's quotes keep its receive times; the archive's have none (recv_ts = ts)
        seen = got.index.isin(live.index) & got["update_id"].isin(live["update_id"]).to_numpy()
        assert (got["recv_ts"][seen].to_numpy() == live["recv_ts"].to_numpy()).all()
        assert (got["recv_ts"][~seen] == got.index[~seen]).all()
    # Tardis' book_ticker of the same day (here received when the capture was) is another
    # stream (stamped T, its receive time as id): kept out inside the span of the
    # collector's and the archive's quotes
    tardis = write(tmp_path / "binance-futures_book_ticker_2023-04-04_BTCUSDT.csv",
                   "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount\n" + "".join(
                       f"binance-futures,BTCUSDT,{r.split(',')[5]}000,{local_us},"
                       f"{r.split(',')[4]},{r.split(',')[3]},{r.split(',')[1]},{r.split(',')[2]}\n"
                       for r, local_us in zip(rows[1:], received)))
    stamps = [int(r.split(",")[5]) * 1_000_000 for r in rows[1:]]
    day = 86_400 * 10**9
    spans = {d: (g.min(), g.max()) for d, g in pd.Series(got.index.asi8).groupby(got.index.asi8 // day)}  # per day
    # outside its day's span: T is before the first E, or on a day the quotes' E is not
    outside = sum(not (t // day in spans and spans[t // day][0] <= t <= spans[t // day][1]) for t in stamps)
    with Tickstore(tmp_path / "store") as store:
        report = run(store, tardis)
        assert report.files[0].kept_out == {"quotes": len(stamps) - outside} and report.rows["quotes"] == outside
