"""Replay of every real Binance capture into a real store; capture readers; the CLI command.

Expected counts are computed here from the raw files (gzip/text + orjson), independently
of ``collectors.capture`` and the parsers.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil

import numpy as np
import orjson
import pandas as pd
import pytest
import zstandard
from click.testing import CliRunner

from collectors.capture import CaptureError, CaptureFormat, CaptureReader, FrameKind, seconds_to_ns
from collectors.cli import replay as replay_command
from collectors.journal import Journal, JournalConfig, RecordKind, read_records
from collectors.replay import ReplayError, replay

SPOT = ["hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz"]
CM = ["hftbacktest/cm/btcusd_perp_20240808.gz", "hftbacktest/cm/btcusd_perp_20240809.gz"]
USDM = "hftbacktest/usdm/btcusdt_20240808.gz"
MARK = "hftbacktest/usdm/btcusdt_20230404.dat.gz"
DAY = 86_400 * 10**9


def hft_frames(path):
    """[(recv_ns, parsed JSON)] of an hftbacktest capture, the unit taken from the file name."""
    unit = 1000 if path.name.endswith(".dat.gz") else 1  # PROVENANCE: 2023 *.dat.gz are in us
    with gzip.open(path, "rb") as fh:
        return [(int(ts) * unit, orjson.loads(raw)) for ts, _, raw in (ln.partition(b" ") for ln in fh)]


def expected(paths):
    """Rows per table and per UTC day that a replay of ``paths`` must write, counted here."""
    trades, quotes, marks, rest = [], [], [], 0
    for p in paths:
        for recv, msg in hft_frames(p):
            if "lastUpdateId" in msg:
                rest += 1
                continue
            d = msg["data"]
            kind = msg["stream"].split("@", 1)[1]
            if kind == "trade":
                trades.append((d["T"] * 10**6, d["t"]))
            elif kind == "bookTicker":
                quotes.append(d["E"] * 10**6 if "E" in d else recv)
            elif kind.startswith("markPrice"):
                marks.append(d)
    return {"trades": trades, "quotes": quotes, "mark": marks, "rest": rest}


def days(ns):
    return sorted({int(t) // DAY for t in ns})


@pytest.mark.parametrize("pair", [SPOT, CM], ids=["spot", "cm"])
def test_day_pair_crosses_midnight_into_the_right_day_files(data_dir, store, pair):
    paths = [data_dir / p for p in pair]
    exp = expected(paths)
    # given in reverse order: frames are merged by receive time, so the order does not matter
    report = replay(paths[::-1], store=store)
    sym = "binance:BTC/USDT" if pair is SPOT else "binance:BTC/USD:BTC"
    n_lines = sum(1 for p in paths for _ in gzip.open(p))
    assert report.frames + report.rest_frames == n_lines
    assert report.rest_frames == exp["rest"] == 1 and report.snapshots == 1
    # PROVENANCE: 0 U-gaps / pu-breaks, and 0809 continues 0808's sequence
    assert report.sequence_breaks == 0 and report.gaps == 0 and report.crossed == 0
    assert report.unsynced_books == () and report.bad_frames == {} and report.bad_lines == 0
    assert report.rows_by_symbol[("trades", sym)] == len(exp["trades"])
    assert report.rows_by_symbol[("quotes", sym)] == len(exp["quotes"])

    trades = store["trades"].select(sym)
    assert len(trades) == len(exp["trades"])
    assert (np.diff(trades["trade_id"].to_numpy()) == 1).all()  # contiguous across the two files
    assert trades.index.asi8.tolist() == sorted(t for t, _ in exp["trades"])
    # both UTC days hold exactly the trades whose exchange time falls on them
    assert [d.value // DAY for d in store["trades"].dates(sym)] == days(t for t, _ in exp["trades"]) == [
        pd.Timestamp("2024-08-08").value // DAY,
        pd.Timestamp("2024-08-09").value // DAY,
    ]
    first_day = pd.Timestamp("2024-08-09", tz="UTC")
    assert len(store["trades"].select(sym, end=first_day)) == sum(1 for t, _ in exp["trades"] if t < first_day.value)
    assert len(store["quotes"].select(sym)) == len(exp["quotes"])
    assert [d.value // DAY for d in store["quotes"].dates(sym)] == days(exp["quotes"])

    book = store["book"].select(sym)
    assert len(book) == report.rows_by_symbol[("book", sym)] > 6000  # ~11 min at 10 rows/s
    assert (book["bid_px_1"] < book["ask_px_1"]).all()  # never crossed
    assert (book[[f"bid_px_{i}" for i in range(1, 6)]].diff(axis=1).iloc[:, 1:] < 0).all().all()
    assert (book[[f"ask_px_{i}" for i in range(1, 6)]].diff(axis=1).iloc[:, 1:] > 0).all().all()
    steps = np.diff(book.index.asi8)
    assert (steps == 100_000_000).all() and (book.index.asi8 % 100_000_000 == 0).all()
    assert len(store["book"].dates(sym)) == 2 and book.index[0] < first_day <= book.index[-1]
    assert store["gaps"].symbols() == []


def test_usdm_and_mark_captures(data_dir, store):
    paths = [data_dir / USDM, data_dir / MARK]
    report = replay(paths, store=store)
    exp = expected(paths)
    sym = "binance:BTC/USDT:USDT"
    assert report.markets == {str(p): "usdm" for p in paths}
    # two sessions a year apart: the 2024 diffs do not continue the 2023 sequence, so the
    # book breaks there and the 2024 session's own snapshot resyncs it
    assert report.sequence_breaks == 1 and report.resyncs == 1 and report.snapshots == 2
    assert report.unsynced_books == ()
    gaps = store["gaps"].select(sym)
    assert gaps["cause"].tolist() == ["sequence_break", "resync"]
    last_2023 = max(d["E"] for _, m in hft_frames(data_dir / MARK) if "stream" in m and "@depth" in m["stream"] for d in [m["data"]])
    assert (gaps.index == pd.Timestamp(last_2023 * 10**6, tz="UTC")).all()
    assert gaps["end_ts"].iloc[1].year == 2024
    assert report.rows["trades"] == len(exp["trades"]) and report.rows["mark"] == len(exp["mark"]) == 99
    mark = store["mark"].select(sym)
    for (ts, row), d in zip(mark.iterrows(), exp["mark"]):
        assert ts.value == d["E"] * 10**6
        assert (row.mark_px, row.index_px, row.funding_rate) == (float(d["p"]), float(d["i"]), float(d["r"]))
        assert row.next_funding_ts.value == d["T"] * 10**6
        assert row.recv_ts.value - ts.value < 10**9
    # two sessions a year apart: the book of each is built from its own snapshot
    assert store["book"].dates(sym).year.tolist() == [2023, 2024, 2024]


def test_latency_percentiles_match_the_frames(data_dir):
    path = data_dir / MARK
    report = replay([path], store=None)  # dry run: same pipeline, nothing written
    lat = []
    for recv, msg in hft_frames(path):
        d = msg.get("data", {})
        if "stream" in msg:
            t = d["T"] if d.get("e") == "trade" else d["E"]
            lat.append((recv - t * 10**6) / 1e6)
    assert report.latency_ms["p50"] == pytest.approx(np.percentile(lat, 50))
    assert report.latency_ms["p99"] == pytest.approx(np.percentile(lat, 99))
    assert report.latency_ms["max"] == pytest.approx(max(lat))
    assert -30 < report.latency_ms["p50"] < 30  # PROVENANCE: median(E - local receive) = 8.2 ms


@pytest.mark.parametrize("prefix,market", [("BINANCE", "spot"), ("BINANCE_FUTURES", "usdm")])
def test_cryptofeed_ws_with_http_snapshots(data_dir, store, prefix, market):
    ws, http = data_dir / f"cryptofeed/{prefix}.ws.1.0", data_dir / f"cryptofeed/{prefix}.http.0.0"
    report = replay([http, ws], store=store)
    lines = [ln for ln in ws.read_bytes().splitlines() if ln[:1].isdigit()]
    closed = sum(1 for ln in lines if b"@kline_1m" in ln and b'"x":true' in ln)
    agg = [orjson.loads(ln.partition(b": ")[2])["data"] for ln in lines if b"@aggTrade" in ln]
    assert report.markets == {str(http): market, str(ws): market}
    assert report.frames == len(lines) and report.snapshots == 4
    assert report.bad_frames == {}  # kline_1m frames are bars (closed ones) or nothing, never bad
    assert report.rows.get("ohlcv_1m", 0) == closed
    assert report.sequence_breaks == 0 and report.unsynced_books == ()
    # aggregates go to agg_trades with their trade-id ranges, never to trades
    assert report.rows["agg_trades"] == len(agg) and "trades" not in report.rows
    stored = pd.concat([store["agg_trades"].select(s) for s in store["agg_trades"].symbols()])
    assert int((stored["last_trade_id"] - stored["first_trade_id"] + 1).sum()) == sum(d["l"] - d["f"] + 1 for d in agg)
    assert len(store["book"].symbols()) >= 3
    for sym in store["book"].symbols():
        b = store["book"].select(sym)
        assert (b["bid_px_1"] < b["ask_px_1"]).all()


def test_corrupted_sequence_gives_a_gap_row(data_dir, store, tmp_path):
    lines = gzip.open(data_dir / MARK).read().splitlines(keepends=True)
    depth = [i for i, ln in enumerate(lines) if b"@depth@0ms" in ln[:60]]
    drop = depth[len(depth) // 2]
    prev = depth[depth.index(drop) - 1]
    bad = tmp_path / "dropped.gz"
    bad.write_bytes(gzip.compress(b"".join(lines[:drop] + lines[drop + 1 :])))
    report = replay([bad], store=store)
    sym = "binance:BTC/USDT:USDT"
    assert report.sequence_breaks == 1 and report.gaps == 2 and report.resyncs == 0
    assert report.unsynced_books == (sym,)  # no later snapshot in the capture
    gaps = store["gaps"].select(sym)
    # the break, then the book's span without a snapshot up to the last diff of the capture
    assert sorted(gaps["cause"]) == ["sequence_break", "unsynced"] and set(gaps["stream"]) == {"depth"}
    e_prev = orjson.loads(lines[prev].partition(b" ")[2])["data"]["E"]
    e_last = orjson.loads(lines[depth[-1]].partition(b" ")[2])["data"]["E"]
    assert (gaps.index == pd.Timestamp(e_prev * 10**6, tz="UTC")).all()
    assert gaps[gaps["cause"] == "unsynced"]["end_ts"].iloc[0].value == e_last * 10**6
    # trades and quotes are unaffected; the book stops at the break
    assert report.rows["trades"] == len(expected([data_dir / MARK])["trades"])
    assert store["book"].select(sym).index[-1].value <= e_prev * 10**6


def test_bad_lines_and_frames_are_counted_not_fatal(data_dir, store, tmp_path):
    lines = gzip.open(data_dir / MARK).read().splitlines(keepends=True)
    trade = next(ln for ln in lines if b"@trade" in ln[:60])
    ts = trade.partition(b" ")[0]
    src = (data_dir / "cryptofeed/BINANCE_FUTURES.ws.1.0").read_bytes().splitlines()
    kline = next(ln for ln in src if ln[:1].isdigit() and b"@kline" in ln)
    junk = [
        ts + b" " + trade.partition(b" ")[2][:50] + b"\n",  # truncated frame
        ts + b' {"stream":"btcusdt@trade","data":{"e":"trade"}}\n',  # fields missing
        ts + b" " + kline.partition(b": ")[2].replace(b"@kline_1m", b"@ticker") + b"\n",  # unknown stream
        ts + b' {"stream":"btcusdt@trade","data":"' + b"x" * 5_000_000 + b'"}\n',  # oversized
        b"this is not a capture line\n",
    ]
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(b"".join(lines[:100] + junk + lines[100:])))
    report = replay([path], store=store, skip_bad_lines=True)
    assert report.bad_frames == {"MalformedFrame": 2, "UnknownStream": 1, "OversizedFrame": 1}
    assert report.bad_lines == 1
    assert report.frames + report.rest_frames == len(lines) + 4
    assert report.rows["trades"] == len(expected([data_dir / MARK])["trades"])
    assert report.sequence_breaks == 0


def test_market_inference_and_errors(data_dir, store, tmp_path):
    klines = tmp_path / "klines.txt"
    src = (data_dir / "cryptofeed/BINANCE.ws.1.0").read_bytes().splitlines()
    klines.write_bytes(b"\n".join(ln for ln in src if ln[:1].isdigit() and b"@kline" in ln) + b"\n")
    with pytest.raises(ReplayError, match=r"cannot tell the Binance market of .*klines.txt.*pass market="):
        replay([klines], store=store)
    assert store["trades"].symbols() == []
    with pytest.raises(ReplayError, match=r"holds usdm frames but market='spot'"):
        replay([data_dir / MARK], store=store, market="spot")
    with pytest.raises(ReplayError, match="market must be one of"):
        replay([data_dir / MARK], store=store, market="options")
    with pytest.raises(ReplayError, match="wrap it in"):
        replay(str(data_dir / MARK), store=store)
    with pytest.raises(ReplayError, match="at least one"):
        replay([], store=store)
    with pytest.raises(CaptureError, match="does not exist"):
        replay([tmp_path / "nope.gz"], store=store)


def test_replaying_twice_writes_nothing_new(data_dir, store):
    first = replay([data_dir / MARK], store=store)
    again = replay([data_dir / MARK], store=store)
    assert sum(again.rows.values()) == 0
    assert again.duplicates == {k: v for k, v in first.rows_by_symbol.items() if v}


# -- the stored result is pinned --------------------------------------------------------------
# sha256 (first 16 hex digits) of every table a replay stores, over the ts index and every
# column's values in order, computed with the replay code before the speed-up of issue #3
# (commit 9cc5ac5). Speed work must not change one value, timestamp or row order: if a change
# of what is stored is intended, recompute these and say why in the commit.
PINNED = {
    "usdm+mark": {
        "book": "2f14be2d9e9f2804",
        "gaps": "7b0407aa05e450c6",
        "mark": "11920b901103f753",
        "quotes": "8618270a789ccaf4",
        "trades": "20cae4ba329a4baf",  # kind column added (all MARKET)
    },
    "mark diffs book_10": {
        "book_10": "4d975219446f5a9c",
        "book_diffs": "d8fc559becc30987",  # ordinal column added (cf2ad06d3ca6f6cc without it: rows unchanged)
        "mark": "11920b901103f753",
        "quotes": "77bb619a1784fd0c",
        "trades": "1e622ef9b9639d0f",  # kind column added (all MARKET)
    },
}


def table_digest(frame: pd.DataFrame) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(frame.index.asi8).tobytes())
    for name in frame.columns:
        col = frame[name]
        h.update(name.encode())
        if col.dtype == object:
            h.update("\x00".join(map(str, col)).encode())
        elif hasattr(col.dtype, "tz"):
            h.update(np.ascontiguousarray(col.array.asi8).tobytes())
        else:
            h.update(np.ascontiguousarray(col.to_numpy()).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("case", list(PINNED))
def test_stored_tables_match_the_pinned_digests(data_dir, store, tmp_path, case):
    sym = "binance:BTC/USDT:USDT"
    if case == "usdm+mark":  # the benchmark's capture, through the journal as well
        with Journal(tmp_path / "journal") as journal:
            report = replay([data_dir / USDM, data_dir / MARK], store=store, journal=journal)
    else:
        report = replay([data_dir / MARK], store=store, keep_diffs=True, book_levels=10, book_interval_ms=500)
    assert sorted(report.rows) == sorted(PINNED[case])
    got = {table: table_digest(store[table].select(sym)) for table in report.rows}
    assert got == PINNED[case]


def test_journal_holds_every_frame_in_order_and_is_committed(data_dir, store, tmp_path):
    paths = [data_dir / MARK, data_dir / "cryptofeed/BINANCE_FUTURES.ws.1.0", data_dir / "cryptofeed/BINANCE_FUTURES.http.0.0"]
    plain = replay(paths, store=None)
    cfg = JournalConfig(segment_bytes=1 << 16, keep_committed=True)  # many segments, all kept
    with Journal(tmp_path / "j", config=cfg) as journal:
        report = replay(paths, store=store, journal=journal, flush_events=2_000)  # several commits
        end = journal.position
        assert journal.committed == end  # the last flush committed everything
    recs = list(read_records(tmp_path / "j"))
    # every WS frame and REST body of every file (connection markers carry no frame), in the
    # order the replay met them: merged by receive time, each file in its own order
    frames = [
        (f.recv_ns, f.raw, f.kind, "usdm")
        for f in sorted((f for p in paths for f in CaptureReader(p)), key=lambda f: f.recv_ns)
        if f.kind is not FrameKind.CONNECT
    ]
    assert len(recs) == len(frames) == report.frames + report.rest_frames
    kinds = {FrameKind.WS: RecordKind.FRAME, FrameKind.REST: RecordKind.SNAPSHOT}
    assert [(r.recv_ns, r.body, r.kind, r.tag) for r in recs] == [(t, raw, kinds[k], tag) for t, raw, k, tag in frames]
    assert len({r.end.segment for r in recs}) > 10 and recs[-1].end == end
    # journaling changes nothing else
    keep = ("frames", "rest_frames", "snapshots", "events", "rows", "gaps", "bad_frames", "latency_ms", "book_stats")
    assert {k: getattr(report, k) for k in keep} == {k: getattr(plain, k) for k in keep}


# -- capture readers ------------------------------------------------------------------------
def test_compression_and_units_are_detected(data_dir, tmp_path):
    src = data_dir / MARK
    plain = gzip.open(src).read()
    (tmp_path / "a.txt").write_bytes(plain)
    (tmp_path / "a.zst").write_bytes(zstandard.ZstdCompressor().compress(plain))
    shutil.copy(src, tmp_path / "a.bin")  # gzip under a misleading name
    frames = list(CaptureReader(src))
    for name in ("a.txt", "a.zst", "a.bin"):
        assert list(CaptureReader(tmp_path / name)) == frames
    lines = plain.splitlines()
    assert len(frames) == len(lines)
    assert [f.recv_ns for f in frames] == [int(ln.partition(b" ")[0]) * 1000 for ln in lines]  # us
    assert [f.kind for f in frames].count(FrameKind.REST) == 1
    ns = next(iter(CaptureReader(data_dir / USDM)))
    assert ns.recv_ns == 1723161255030314667  # PROVENANCE sample line, already in ns


def test_cryptofeed_reader(data_dir):
    r = CaptureReader(data_dir / "cryptofeed/BINANCE.ws.1.0")
    frames = list(r)
    assert r.format is CaptureFormat.CRYPTOFEED
    assert frames[0].kind is FrameKind.CONNECT and frames[0].url.startswith("wss://stream.binance.com:9443/stream?")
    assert frames[1].recv_ns == 1633998512063356900  # "1633998512.0633569", exactly
    assert frames[1].raw.startswith(b'{"stream":"nknusdt@depth@100ms"')
    http = list(CaptureReader(data_dir / "cryptofeed/BINANCE.http.0.0"))
    assert [f.kind for f in http] == [FrameKind.REST] * 4
    assert http[0].url == "https://api.binance.com/api/v3/depth?symbol=NKNUSDT&limit=1000"
    assert http[0].raw.startswith(b'{"lastUpdateId":499869752,')
    info = CaptureReader(data_dir / "cryptofeed/BINANCE_FUTURES.0")
    assert [f.kind for f in info] == [FrameKind.REST] and info.skipped == 1  # the config line
    v3 = CaptureReader(data_dir / "cryptofeed/BYBIT.jsonl.zst")
    kinds = [f.kind for f in v3]
    assert v3.format is CaptureFormat.CRYPTOFEED_V3 and kinds.count(FrameKind.CONNECT) == 2
    assert seconds_to_ns("1626992741.06217") == 1626992741062170000
    with pytest.raises(ValueError, match="not an epoch-seconds timestamp"):
        seconds_to_ns("12:00")


def test_unknown_format_is_refused(data_dir, tmp_path):
    path = tmp_path / "x.csv"
    shutil.copy(data_dir / "nautilus_trader/trades.csv", path)
    with pytest.raises(CaptureError, match="no known capture format.*exchange,symbol"):
        list(CaptureReader(path))


# -- CLI ------------------------------------------------------------------------------------
def test_cli_replay(data_dir, tmp_path):
    runner = CliRunner()
    root = tmp_path / "store"
    result = runner.invoke(replay_command, [str(data_dir / MARK), "--root", str(root)])
    assert result.exit_code == 0, result.output
    assert "trades" in result.output and "binance:BTC/USDT:USDT" in result.output
    assert "99 rows" in result.output  # the mark table
    assert (root / "trades").is_dir()
    help_ = runner.invoke(replay_command, ["--help"])
    assert help_.exit_code == 0 and "Replay recorded captures of Binance, Bybit v5 or Hyperliquid" in help_.output
    missing = runner.invoke(replay_command, [str(data_dir / MARK)])
    assert missing.exit_code == 2 and "--root" in missing.output


def test_keep_diffs_and_other_book_depths(data_dir, store):
    report = replay([data_dir / MARK], store=store, keep_diffs=True, book_levels=10, book_interval_ms=500)
    levels = sum(
        len(m["data"]["b"]) + len(m["data"]["a"])
        for _, m in hft_frames(data_dir / MARK)
        if "@depth" in m.get("stream", "")
    )
    sym = "binance:BTC/USDT:USDT"
    diffs = store["book_diffs"].select(sym)
    assert report.rows["book_diffs"] == len(diffs) == levels
    assert set(diffs["side"].unique()) == {1, -1}
    assert (diffs["prev_update_id"] < diffs["update_id"]).all()
    book = store["book_10"].select(sym)
    assert len(book) == report.rows["book_10"] and (book.index.asi8 % 500_000_000 == 0).all()
    assert (book["bid_px_10"] < book["bid_px_1"]).all() and "book" not in report.rows
