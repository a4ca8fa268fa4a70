"""Replay of every venue and capture format, checked against parses written here.

Each expected table is computed from the raw files with gzip/zstandard + json only
(books maintained with plain dicts by each venue's documented rule), independently of
``collectors.capture``, the parsers and ``collectors.book``. Also: separate-run continuity
over the consecutive shared day files, idempotent re-replay of every table, damaged input,
wrong-venue refusal, collector journals as captures.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid

import numpy as np
import orjson
import pandas as pd
import pytest
import zstandard
from click.testing import CliRunner

from collectors.capture import CaptureError
from collectors.exchanges import binance as bn
from collectors.cli import replay as replay_command
from collectors.journal import Journal
from collectors.replay import BOOK_STATE_FILE, ReplayError, detect, replay, replay_frames
from tickstore import Tickstore

BYBIT = "cryptofeed/BYBIT.jsonl.zst"
HL = "hftbacktest/hyperliquid/btcusd_20250126.gz"
SPOT = ["hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz"]
CM = ["hftbacktest/cm/btcusd_perp_20240808.gz", "hftbacktest/cm/btcusd_perp_20240809.gz"]
MARK = "hftbacktest/usdm/btcusdt_20230404.dat.gz"
MS, GRID = 1_000_000, 100_000_000
TABLES = ["trades", "quotes", "book", "mark", "open_interest", "liquidations", "gaps", "book_diffs"]


def top(bids: dict, asks: dict, n: int = 5) -> tuple:
    b = sorted(bids, reverse=True)[:n]
    a = sorted(asks)[:n]
    pad = [math.nan] * n
    return (b + pad)[:n], ([bids[p] for p in b] + pad)[:n], (a + pad)[:n], ([asks[p] for p in a] + pad)[:n]


def grid_rows(states: list[tuple[int, tuple]], first: int, last: int) -> dict[int, tuple]:
    """{g: book top at g} on the 100 ms grid from ``first`` up to ``last`` (exclusive), from
    (exchange time, top) states in order: the row at g is the state after every update <= g."""
    out, i, cur = {}, 0, None
    for g in range(first, last, GRID):
        while i < len(states) and states[i][0] <= g:
            cur = states[i][1]
            i += 1
        out[g] = cur
    return out


def stored_tops(frame: pd.DataFrame, n: int = 5) -> dict[int, tuple]:
    cols = [[f"{s}_{w}_{i}" for i in range(1, n + 1)] for s, w in (("bid", "px"), ("bid", "qty"), ("ask", "px"), ("ask", "qty"))]
    vals = [frame[c].to_numpy() for c in cols]
    return {int(t): tuple(list(v[k]) for v in vals) for k, t in enumerate(frame.index.asi8)}


def same(a: tuple, b: tuple) -> bool:
    return all(len(x) == len(y) and all(p == q or (p != p and q != q) for p, q in zip(x, y)) for x, y in zip(a, b))


def tables(store, symbols=None) -> dict[str, pd.DataFrame]:
    out = {}
    for t in TABLES:
        syms = symbols or store[t].symbols()
        if syms:
            out[t] = store[t].select(list(syms))
    return out


def assert_same_tables(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for t in a:
        pd.testing.assert_frame_equal(a[t], b[t], obj=t)


# -- Bybit v5: the cryptofeed v3 container (linear and spot connections in one file) ----------------
def bybit_frames(data_dir):
    """[(category, recv_ns, message)] of every received frame, categories from the connect records."""
    lines = zstandard.ZstdDecompressor().stream_reader(open(data_dir / BYBIT, "rb")).read().decode().splitlines()
    recs = [json.loads(ln) for ln in lines]
    cat = {r["conn"]: r["addr"].rsplit("/", 1)[1] for r in recs if r["t"] == "connect"}
    # cryptofeed writes the receive time as float seconds; its digits are the exact value
    return [(cat[r["conn"]], int(round(r["ts"] * 1e7)) * 100, json.loads(r["data"])) for r in recs if r["t"] == "recv"]


def bybit_symbol(native: str, cat: str) -> str:
    base = native[: -len("USDT")]
    return f"bybit:{base}/USDT" + (":USDT" if cat == "linear" else "")


def bybit_expected(data_dir) -> dict:
    trades, books, quotes, marks, ois = {}, {}, {}, {}, {}
    tickers = {}
    for cat, recv, m in bybit_frames(data_dir):
        topic = m.get("topic", "")
        if topic.startswith("publicTrade."):
            for x in m["data"]:
                i = x["i"]
                tid = int(i) if i.isdigit() else uuid.UUID(i).int >> 65  # decimal spot ids; linear UUIDs folded
                trades.setdefault(bybit_symbol(x["s"], cat), []).append(
                    (x["T"] * MS, tid, float(x["p"]), float(x["v"]), 1 if x["S"] == "Buy" else -1))
        elif topic.startswith("orderbook."):
            sym = bybit_symbol(m["data"]["s"], cat)
            b = books.setdefault(sym, {"bids": {}, "asks": {}, "states": []})
            if m["type"] == "snapshot":  # Bybit: a snapshot resets the book
                b["bids"], b["asks"] = {}, {}
            for side, levels in ((b["bids"], m["data"]["b"]), (b["asks"], m["data"]["a"])):
                for p, q in levels:
                    if float(q) == 0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = float(q)
            ts = m["ts"] * MS  # event time (TsClock.EVENT), as Binance's E; cts is the engine's
            t5 = top(b["bids"], b["asks"])
            b["states"].append((ts, t5))
            best = (t5[0][0], t5[1][0], t5[2][0], t5[3][0])
            q = quotes.setdefault(sym, [])
            if not q or q[-1][2:] != best:  # a quote whenever the best bid/ask changes
                q.append((ts, m["data"]["u"], *best))
        elif topic.startswith("tickers.") and cat == "linear":
            d = m["data"]
            tickers[d["symbol"]] = dict(d) if m["type"] == "snapshot" else {**tickers[d["symbol"]], **d}
            full, sym = tickers[d["symbol"]], bybit_symbol(d["symbol"], cat)
            if any(k in d for k in ("markPrice", "indexPrice", "fundingRate", "nextFundingTime")):
                marks.setdefault(sym, []).append((m["ts"] * MS, float(full["markPrice"]), float(full["indexPrice"]),
                                                  float(full["fundingRate"]), int(full["nextFundingTime"]) * MS))
            if any(k in d for k in ("openInterest", "openInterestValue")):
                ois.setdefault(sym, []).append((m["ts"] * MS, float(full["openInterest"]), float(full["openInterestValue"])))
    return {"trades": trades, "books": books, "quotes": quotes, "mark": marks, "open_interest": ois}


def test_bybit_cryptofeed_v3_equals_an_independent_parse(data_dir, store):
    report = replay([data_dir / BYBIT], store=store)
    path = str(data_dir / BYBIT)
    assert report.venues == {f"{path}#BYBIT.ws.2": "bybit", f"{path}#BYBIT.ws.3": "bybit", f"{path}#BYBIT.http.1": "bybit"}
    assert report.markets[f"{path}#BYBIT.ws.2"] == "linear" and report.markets[f"{path}#BYBIT.ws.3"] == "spot"
    assert report.gaps == 0 and report.unsynced_books == () and set(report.bad_frames) <= {"UnknownStream"}
    exp = bybit_expected(data_dir)
    assert len(exp["books"]) == 6 and sum(map(len, exp["trades"].values())) > 100
    for sym, rows in exp["trades"].items():
        got = store["trades"].select(sym)
        want = sorted(rows, key=lambda r: r[0])  # by time; ties in arrival order
        assert list(zip(got.index.asi8, got.trade_id, got.price, got.qty, got.side)) == want, sym
    for sym, b in exp["books"].items():
        got = store["book"].select(sym)
        first = -(-b["states"][0][0] // GRID) * GRID  # the grid point at the first snapshot's time
        assert got.index.asi8[0] == first and (np.diff(got.index.asi8) == GRID).all(), sym
        assert got.index.asi8[-1] >= b["states"][-1][0] - 1_100_000_000  # up to 1 s before the last update
        want = grid_rows(b["states"], first, int(got.index.asi8[-1]) + 1)
        tops = stored_tops(got)
        assert tops.keys() == want.keys() and all(same(tops[g], want[g]) for g in want), sym
        # quotes: the book's top whenever it changes (spot tickers carry none; linear ones are not mixed in)
        q = store["quotes"].select(sym)
        got_q = list(zip(q.index.asi8, q.update_id, q.bid_px, q.bid_qty, q.ask_px, q.ask_qty))
        assert got_q == [tuple(r) for r in exp["quotes"][sym]], sym
    for sym, rows in exp["mark"].items():
        got = store["mark"].select(sym)
        want = list({r[0]: r for r in reversed(rows)}.values())[::-1]  # one row per time (the first)
        assert list(zip(got.index.asi8, got.mark_px, got.index_px, got.funding_rate, got.next_funding_ts.array.asi8)) == want
    for sym, rows in exp["open_interest"].items():
        got = store["open_interest"].select(sym)
        want = list({r[0]: r for r in reversed(rows)}.values())[::-1]
        assert list(zip(got.index.asi8, got.oi, got.oi_value)) == want


def _orderbook1_capture(data_dir, tmp_path, *, fmt: str = "hftbacktest"):
    """An ``orderbook.1`` (Bybit's snapshot-only BBO stream) capture of the linear BTCUSDT book,
    each frame the real book's best level at that moment; u + 1 per frame, and every
    fifth frame re-sent unchanged with the same u (Bybit's 3 s keep-alive snapshot)."""
    bids, asks, lines, out, u = {}, {}, [], [], 1000
    for cat, recv, m in bybit_frames(data_dir):
        if cat != "linear" or m.get("topic") != "orderbook.200.BTCUSDT":
            continue
        if m["type"] == "snapshot":
            bids, asks = {}, {}
        for side, levels in ((bids, m["data"]["b"]), (asks, m["data"]["a"])):
            for p, q in levels:
                side.pop(p, None) if float(q) == 0 else side.__setitem__(p, q)
        bb, ba = max(bids, key=float), min(asks, key=float)
        u += 1
        frame = {"topic": "orderbook.1.BTCUSDT", "type": "snapshot", "ts": m["ts"],
                 "data": {"s": "BTCUSDT", "b": [[bb, bids[bb]]], "a": [[ba, asks[ba]]], "u": u, "seq": m["data"]["seq"]},
                 "cts": m["cts"]}
        for k in range(2 if u % 5 == 0 else 1):
            lines.append(b"%d %s\n" % (recv + k, orjson.dumps(frame)))
        out.append((m["ts"] * MS, u, float(bb), float(bids[bb]), float(ba), float(asks[ba])))
    path = tmp_path / "bybit_ob1.gz"
    path.write_bytes(gzip.compress(b"".join(lines)))
    return path, out


def test_bybit_orderbook_1_stores_book_and_quote_rows_and_is_never_taken_for_binance(data_dir, store, tmp_path):
    path, frames = _orderbook1_capture(data_dir, tmp_path)
    first = gzip.open(path).readline().partition(b" ")[2]
    assert bn.infer_market(first) is None and not bn.claims(orjson.loads(first))
    # Bybit orderbook frames carry s/u/b like a Binance spot bookTicker: never taken for one
    with pytest.raises(ReplayError, match=r"holds Bybit frames, not Binance ones"):
        replay([path], store=store, venue="binance")
    # the frames say Bybit but not whether linear or spot: refused, asking for the market
    with pytest.raises(ReplayError, match=r"cannot tell the Bybit market of .*bybit_ob1.gz.*pass market= \(--market\) linear, spot"):
        replay([path], store=store)
    assert store["book"].symbols() == [] and store["quotes"].symbols() == []  # nothing written
    report = replay([path], store=store, market="linear")
    sym = "bybit:BTC/USDT:USDT"
    assert report.venues == {str(path): "bybit"} and report.gaps == 0 and report.unsynced_books == ()
    quotes = store["quotes"].select(sym)
    want_q, last = [], None
    for ts, u, *best in frames:  # a quote whenever the best level changes
        if best != last:
            want_q.append((ts, u, *best))
            last = best
    assert list(zip(quotes.index.asi8, quotes.update_id, quotes.bid_px, quotes.bid_qty, quotes.ask_px, quotes.ask_qty)) == want_q
    book = store["book"].select(sym, columns=["bid_px_1", "bid_qty_1", "ask_px_1", "ask_qty_1", "bid_px_2"])
    first = -(-frames[0][0] // GRID) * GRID  # the snapshot's grid point, not the first delta's (there is none)
    states = [(ts, (b, bq, a, aq)) for ts, _, b, bq, a, aq in frames]
    want = grid_rows(states, first, int(book.index.asi8[-1]) + 1)
    assert book.index.asi8[0] == first and len(book) == len(want) > 300
    assert [tuple(r) for r in book[["bid_px_1", "bid_qty_1", "ask_px_1", "ask_qty_1"]].to_numpy()] == [want[g] for g in want]
    assert book["bid_px_2"].isna().all()  # a one-level book pads with NaN


# -- Hyperliquid: hftbacktest capture -----------------------------------------------------------
def hl_frames(data_dir):
    with gzip.open(data_dir / HL, "rb") as fh:
        return [(int(ts), json.loads(raw)) for ts, _, raw in (ln.partition(b" ") for ln in fh)]


def test_hyperliquid_hftbacktest_equals_an_independent_parse(data_dir, store):
    report = replay([data_dir / HL], store=store)
    sym = "hyperliquid:BTC/USDC:USDC"
    assert report.venues == {str(data_dir / HL): "hyperliquid"} and report.markets == {str(data_dir / HL): "perp"}
    frames = hl_frames(data_dir)
    trades = {}
    for _, m in frames:
        if m["channel"] == "trades":  # the first frame re-sends recent trades: one row per tid
            for t in m["data"]:
                trades.setdefault(t["tid"], (t["time"] * MS, t["tid"], float(t["px"]), float(t["sz"]), 1 if t["side"] == "B" else -1))
    got = store["trades"].select(sym)
    assert list(zip(got.index.asi8, got.trade_id, got.price, got.qty, got.side)) == sorted(trades.values(), key=lambda r: r[0])
    states = []
    for _, m in frames:
        if m["channel"] == "l2Book":  # every frame is the whole book
            d = m["data"]
            bids = {float(x["px"]): float(x["sz"]) for x in d["levels"][0]}
            asks = {float(x["px"]): float(x["sz"]) for x in d["levels"][1]}
            states.append((d["time"] * MS, top(bids, asks)))
    book = store["book"].select(sym)
    first = -(-states[0][0] // GRID) * GRID
    want = grid_rows(states, first, int(book.index.asi8[-1]) + 1)
    tops = stored_tops(book)
    assert book.index.asi8[0] == first and tops.keys() == want.keys() and all(same(tops[g], want[g]) for g in want)
    assert book.index.asi8[-1] >= states[-1][0] - 1_100_000_000
    # the same frames through the library entry point importers use give the same tables
    with Tickstore(store.root.parent / "other") as other:
        again = replay_frames(((t, orjson.dumps(m)) for t, m in frames), venue="hyperliquid", market="perp", store=other)
        assert again.rows == report.rows
        assert_same_tables(tables(store), tables(other))


# -- Binance: independent book over the spot day pair; separate runs continue it ----------------
def spot_expected(data_dir) -> list[tuple[int, tuple]]:
    """(E, top) after every applied diff of the two spot files, by Binance's documented spot procedure."""
    snap, diffs = None, []
    for p in SPOT:
        with gzip.open(data_dir / p, "rb") as fh:
            for ln in fh:
                m = json.loads(ln.partition(b" ")[2])
                if "lastUpdateId" in m:
                    snap = m
                elif m["stream"].endswith("@depth@100ms"):
                    diffs.append(m["data"])
    bids = {float(p): float(q) for p, q in snap["bids"]}
    asks = {float(p): float(q) for p, q in snap["asks"]}
    last, states = snap["lastUpdateId"], []
    for d in diffs:
        if d["u"] <= last:
            continue  # older than the snapshot
        assert d["U"] <= last + 1  # spans it (first) / continues it (U == last u + 1)
        for side, levels in ((bids, d["b"]), (asks, d["a"])):
            for p, q in levels:
                side.pop(float(p), None) if float(q) == 0 else side.__setitem__(float(p), float(q))
        last = d["u"]
        states.append((d["E"] * MS, top(bids, asks)))
    return states


def test_spot_day_pair_books_equal_an_independent_book(data_dir, store):
    replay([data_dir / p for p in SPOT], store=store)
    states = spot_expected(data_dir)
    book = store["book"].select("binance:BTC/USDT")
    first = -(-states[0][0] // GRID) * GRID
    want = grid_rows(states, first, int(book.index.asi8[-1]) + 1)
    tops = stored_tops(book)
    assert tops.keys() == want.keys() and len(want) > 6000
    assert all(same(tops[g], want[g]) for g in want)


@pytest.mark.parametrize("pair", [SPOT, CM], ids=["spot", "cm"])
def test_separate_runs_continue_the_book_exactly(data_dir, tmp_path, clock, pair):
    paths = [data_dir / p for p in pair]
    with Tickstore(tmp_path / "one", clock=clock) as one:
        replay(paths, store=one)
        whole = tables(one)
    with Tickstore(tmp_path / "two", clock=clock) as two:
        first = replay(paths[:1], store=two)
        assert first.unsynced_books == () and first.restored_books == ()
        second = replay(paths[1:], store=two)  # the 0809 file has no snapshot of its own
        assert second.restored_books == tuple(sorted(first.book_stats))
        assert second.sequence_breaks == 0 and second.gaps == 0 and second.unsynced_books == ()
        split = tables(two)
        state = (tmp_path / "two" / BOOK_STATE_FILE).stat().st_size
    # the same rows, values and times as one run over both files (the next day's book included),
    # except spot quotes still waiting at the cut for the depth frame that dates them: the
    # first run ends there, so they keep their receive time (ts == recv_ts, documented)
    if "quotes" in whole:
        q1, q2 = whole["quotes"], split["quotes"]
        a, b = q1.reset_index().set_index("update_id"), q2.reset_index().set_index("update_id")
        assert a.index.equals(a.index.unique()) and sorted(a.index) == sorted(b.index)
        moved = b.index[(b["ts"] != a.loc[b.index, "ts"]).to_numpy()]
        assert len(moved) < 50 and (b.loc[moved, "ts"] == b.loc[moved, "recv_ts"]).all()
        assert (a.loc[moved, "ts"] >= pd.Timestamp("2024-08-08 23:59:59", tz="UTC")).all()  # at the cut only
        assert a.drop(columns="ts").loc[b.index].equals(b.drop(columns="ts"))  # every other value equal
        whole["quotes"] = q1[~q1["update_id"].isin(moved)]
        split["quotes"] = q2[~q2["update_id"].isin(moved)]
    assert_same_tables(whole, split)
    day2 = whole["book"].index.asi8[whole["book"].index >= pd.Timestamp("2024-08-09", tz="UTC")]
    assert (np.diff(day2) == GRID).all() and (day2[-1] - day2[0]) / 1e9 > 300  # the whole of the next file's span
    assert state < 2_000_000  # the saved book: every level of one symbol's book, a few hundred kB


def test_a_book_without_snapshot_gets_a_gap_and_the_next_run_resyncs_it(data_dir, store):
    """0809 alone has no snapshot: its diffs give no book, an 'unsynced' gap covers them;
    replaying 0808 (older) afterwards builds its own book from its snapshot."""
    day1, day2 = (data_dir / p for p in SPOT)
    r2 = replay([day2], store=store)
    sym = "binance:BTC/USDT"
    assert r2.unsynced_books == (sym,) and r2.rows.get("book", 0) == 0
    gaps = store["gaps"].select(sym)
    diffs = [json.loads(ln.partition(b" ")[2])["data"]["E"] for ln in gzip.open(day2) if b"@depth" in ln[:60]]
    assert gaps["cause"].tolist() == ["unsynced"]
    assert gaps.index[0].value == diffs[0] * MS and gaps["end_ts"].iloc[0].value == diffs[-1] * MS
    # research reads of the book over that span say so
    from research.coverage import uncovered

    spans = uncovered(store, "book", sym, pd.Timestamp(diffs[0] * MS, tz="UTC"), pd.Timestamp(diffs[-1] * MS, tz="UTC"))
    assert "unsynced" in set(spans["cause"]) and spans["start"].min().value == diffs[0] * MS
    r1 = replay([day1], store=store)
    assert r1.unsynced_books == () and r1.rows["book"] > 3000  # an earlier span builds its own book


# -- idempotence: a second replay writes nothing, in any table ---------------------------------------
def _with_liquidations(data_dir, tmp_path):
    """The 2023 USD-M capture with forceOrder frames (Binance's documented shape) inserted,
    two of them identical but distinct orders, and a dropped diff (a sequence-break gap)."""
    lines = gzip.open(data_dir / MARK).read().splitlines(keepends=True)
    depth = [i for i, ln in enumerate(lines) if b"@depth@0ms" in ln[:60]]
    drop = depth[len(depth) // 2]
    ts = int(lines[200].partition(b" ")[0])
    e = json.loads(lines[200].partition(b" ")[2])["data"].get("E", 1680652701000)
    liq = []
    for k, (side, p, q) in enumerate([("SELL", "28100.1", "0.014"), ("BUY", "28200.0", "0.5"), ("BUY", "28200.0", "0.5")]):
        o = {"s": "BTCUSDT", "S": side, "o": "LIMIT", "f": "IOC", "q": q, "p": p, "ap": p, "X": "FILLED",
             "l": q, "z": q, "T": e + 1}
        frame = {"stream": "btcusdt@forceOrder", "data": {"e": "forceOrder", "E": e + 1, "o": o}}
        liq.append(b"%d %s\n" % (ts + min(k, 1), orjson.dumps(frame)))  # the two BUYs: one receive time
    path = tmp_path / "with_liquidations.gz"
    path.write_bytes(gzip.compress(b"".join(lines[:200] + liq + [ln for i, ln in enumerate(lines[200:], 200) if i != drop])))
    return path


def test_replaying_twice_writes_nothing_in_any_table(data_dir, store, tmp_path):
    path = _with_liquidations(data_dir, tmp_path)
    first = replay([path], store=store, keep_diffs=True)
    sym = "binance:BTC/USDT:USDT"
    assert {"trades", "quotes", "book", "mark", "liquidations", "gaps", "book_diffs"} <= set(first.rows)
    assert first.rows["liquidations"] == 3  # identical but distinct orders are both kept
    assert sorted(store["gaps"].select(sym)["cause"]) == ["sequence_break", "unsynced"]
    before = tables(store)
    again = replay([path], store=store, keep_diffs=True)
    assert sum(again.rows.values()) == 0
    assert again.duplicates == {k: v for k, v in first.rows_by_symbol.items() if v}
    assert_same_tables(before, tables(store))
    # and a replay of the same capture read through a journal (the collector's path) adds nothing either
    with Journal(tmp_path / "journal") as journal:
        replay([path], store=None, journal=journal)
    third = replay([tmp_path / "journal"], store=store, keep_diffs=True)
    assert sum(third.rows.values()) == 0
    assert_same_tables(before, tables(store))


def test_a_collector_journal_replays_like_its_capture(data_dir, tmp_path, clock):
    paths = [data_dir / BYBIT, data_dir / MARK]
    with Tickstore(tmp_path / "direct", clock=clock) as direct, Journal(tmp_path / "j") as journal:
        report = replay(paths, store=direct, journal=journal)
        want = tables(direct)
    found = detect(tmp_path / "j")
    assert {v.value for v, _ in found.values()} == {"bybit", "binance"}
    assert found["bybit-linear-replay"][1].value == "linear" and found["usdm"][1].value == "usdm"
    with Tickstore(tmp_path / "from_journal", clock=clock) as again:
        via = replay([tmp_path / "j"], store=again)
        assert via.frames + via.rest_frames == report.frames + report.rest_frames
        assert_same_tables(want, tables(again))


# -- damaged input --------------------------------------------------------------------------------
def _trades_in(lines) -> int:
    n = 0
    for ln in lines:
        raw = ln.partition(b" ")[2]
        if b"@trade" in raw[:40]:
            n += 1
    return n


def test_truncated_gzip_stops_with_file_and_line_keeping_what_came_before(data_dir, store, tmp_path):
    data = (data_dir / MARK).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(CaptureError) as err:
        replay([cut], store=store)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{cut}: line ") and "damaged input" in msg and "every row before it is stored" in msg
    line = int(msg.split("line ")[1].split(":")[0])
    whole = gzip.open(data_dir / MARK).read().splitlines()
    assert 1000 < line < len(whole)
    # every trade of the lines before the damage is stored
    assert len(store["trades"].select("binance:BTC/USDT:USDT")) == _trades_in(whole[: line - 1])


def test_a_bad_line_stops_with_file_and_line_unless_skipped(data_dir, store, tmp_path):
    lines = gzip.open(data_dir / MARK).read().splitlines(keepends=True)
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(b"".join(lines[:3000] + [b"\x00\x17 garbage, no capture line\n"] + lines[3000:])))
    with pytest.raises(CaptureError, match=rf"^{path}: line 3001: not a hftbacktest line: .*--skip-bad-lines"):
        replay([path], store=store)
    assert len(store["trades"].select("binance:BTC/USDT:USDT")) == _trades_in(lines[:3000])
    report = replay([path], store=store, skip_bad_lines=True)
    assert report.bad_lines == 1
    assert len(store["trades"].select("binance:BTC/USDT:USDT")) == _trades_in(lines)


# -- refusals ---------------------------------------------------------------------------------------
def test_venue_refusals_and_files_without_rows(data_dir, store, tmp_path):
    with pytest.raises(ReplayError, match=r"holds Binance frames, not Hyperliquid ones"):
        replay([data_dir / MARK], store=store, venue="hyperliquid")
    with pytest.raises(ReplayError, match=r"holds Hyperliquid frames, not Bybit ones"):
        replay([data_dir / HL], store=store, venue="bybit")
    unknown = tmp_path / "unknown.txt"
    unknown.write_bytes(b'1723161255030314667 {"type":"ticker","product_id":"BTC-USD","price":"1"}\n')
    with pytest.raises(ReplayError, match=r"cannot tell the venue of .*unknown.txt.*pass venue= \(--venue\)"):
        replay([unknown], store=store)
    assert all(not store[t].symbols() for t in TABLES)  # nothing was written by any of these
    acks = tmp_path / "acks.txt"
    acks.write_bytes(b'1723161255030314667 {"result":null,"id":1}\n1723161255030314668 {"result":null,"id":2}\n')
    with pytest.raises(ReplayError, match=r"1 of 2 file\(s\) yielded no rows: .*acks.txt: 2 frames") as err:
        replay([acks, data_dir / MARK], store=store, market="usdm")
    assert err.value.report.rows["trades"] > 0  # the other file is stored
    runner = CliRunner()
    res = runner.invoke(replay_command, [str(unknown), "--root", str(tmp_path / "cli")])
    assert res.exit_code != 0


def test_cli_replays_every_venue(data_dir, tmp_path):
    from tickstore.cli import main

    runner = CliRunner()
    root = tmp_path / "store"
    res = runner.invoke(main, ["--root", str(root), "replay", str(data_dir / BYBIT), str(data_dir / HL)])
    assert res.exit_code == 0, res.output
    assert "bybit linear" in res.output and "hyperliquid perp" in res.output and "bybit:BTC/USDT:USDT" in res.output
    again = runner.invoke(main, ["--root", str(root), "replay", str(data_dir / HL)])
    assert again.exit_code == 0 and "already stored" in again.output
    bad = runner.invoke(main, ["--root", str(root), "replay", str(data_dir / HL), "--venue", "binance"])
    assert bad.exit_code == 1 and "holds Hyperliquid frames, not Binance ones" in bad.output
