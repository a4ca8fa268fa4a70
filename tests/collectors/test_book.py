"""BookBuilder against the real captures, a plain reference book, and corrupted sequences.

The reference book in this file is deliberately naive (dicts, sorted on demand) and
applies every diff the documented procedure keeps; the builder must agree with it.
"""

from __future__ import annotations

import dataclasses
import gzip
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.book import BookBuilder, BookState, book_table, route_events
from collectors.events import BookTop, DepthDiff, DepthSnapshot, EventBatcher, Gap, Quote, Trade
from collectors.exchanges.binance import BinanceParser, Market

CAPTURES = [
    # (files in order, market, symbol)
    (["hftbacktest/usdm/btcusdt_20240808.gz"], Market.USDM, "BTCUSDT"),
    (["hftbacktest/usdm/btcusdt_20230404.dat.gz"], Market.USDM, "BTCUSDT"),
    (["hftbacktest/spot/btcusdt_20240808.gz", "hftbacktest/spot/btcusdt_20240809.gz"], Market.SPOT, "BTCUSDT"),
    (["hftbacktest/cm/btcusd_perp_20240808.gz", "hftbacktest/cm/btcusd_perp_20240809.gz"], Market.COINM, None),
]


def depth_stream(data_dir, files, market, native):
    """(snapshot, [diffs before it], [diffs after it]) parsed from hftbacktest captures."""
    parser = BinanceParser(market)
    snap, before, after = None, [], []
    for name in files:
        with gzip.open(data_dir / name, "rb") as fh:
            for line in fh:
                ts, _, raw = line.rstrip(b"\n").partition(b" ")
                if raw.startswith(b'{"lastUpdateId'):
                    snap = parser.parse_snapshot(raw, int(ts), native_symbol=native)
                elif b"@depth" in raw[:40]:
                    (diff,) = parser.parse(raw, int(ts))
                    (after if snap else before).append(diff)
    return snap, before, after


class Reference:
    """The obvious book: absolute quantities per price, qty 0 deletes."""

    def __init__(self, snap):
        self.bids = {p: q for p, q in snap.bids if q}
        self.asks = {p: q for p, q in snap.asks if q}

    def apply(self, diff):
        for side, levels in ((self.bids, diff.bids), (self.asks, diff.asks)):
            for p, q in levels:
                if q:
                    side[p] = q
                else:
                    side.pop(p, None)

    def top(self, n):
        b = sorted(self.bids, reverse=True)[:n]
        a = sorted(self.asks)[:n]
        return b, [self.bids[p] for p in b], a, [self.asks[p] for p in a]

    def snapshot(self, symbol, update_id):
        return DepthSnapshot(symbol, 0, 0, update_id, sorted(self.bids.items(), reverse=True), sorted(self.asks.items()))


def kept(diffs, snap, market):
    """The diffs the documented procedure applies after ``snap`` (first one spans it)."""
    if market is Market.SPOT:
        return [d for d in diffs if d.update_id > snap.update_id]
    return [d for d in diffs if d.update_id >= snap.update_id]


@pytest.fixture(scope="module")
def streams():
    from tests.conftest import _need_data

    data = _need_data()
    return {i: depth_stream(data, *c) for i, c in enumerate(CAPTURES)}


@pytest.mark.parametrize("case", range(len(CAPTURES)), ids=[c[0][0].split("/")[1] for c in CAPTURES])
def test_capture_syncs_without_breaks_and_matches_the_reference(streams, case):
    files, market, _ = CAPTURES[case]
    snap, before, after = streams[case]
    book = BookBuilder(snap.symbol, market, levels=5, interval_ms=100)
    out = []
    for d in before:  # buffered: the snapshot was fetched after these arrived
        out += book.on_diff(d)
    assert book.needs_snapshot and out == [] and book.buffered == len(before)
    out += book.on_snapshot(snap)
    assert book.state is not BookState.AWAITING_SNAPSHOT
    ref = Reference(snap)
    applied = kept(before, snap, market)
    assert book.stats.dropped == len(before) - len(applied)
    for d in applied:
        ref.apply(d)
    # PROVENANCE: "snapshot covered", i.e. a buffered diff spans it (hftbacktest usdm/cm) or
    # the next one does
    assert book.stats.dropped == len(before) - len(applied)

    rows = [e for e in out if type(e) is BookTop]
    ref_last_u = applied[-1].update_id if applied else None
    late = set(id(d) for d in kept(after, snap, market))  # spot: the spanning diff may come later
    for d in after:
        new = book.on_diff(d)
        if id(d) not in late:  # older than the snapshot: discarded as documented
            assert new == []
            continue
        assert not [e for e in new if type(e) is Gap], new
        for row in new:  # rows due before d: the reference holds every diff before d
            assert row.ts < d.ts
            b, bq, a, aq = ref.top(5)
            assert (row.bid_px, row.bid_qty, row.ask_px, row.ask_qty) == (b, bq, a, aq)
            assert row.update_id == ref_last_u
        rows += new
        ref.apply(d)
        ref_last_u = d.update_id
        applied.append(d)
    assert book.synced and book.stats.breaks == 0 and book.stats.crossed == 0
    assert book.stats.applied == len(applied)
    assert book.top(20) == ref.top(20)  # the whole book agrees at the end, not just the top
    assert book.depth() == (len(ref.bids), len(ref.asks))
    # the grid: 100 ms steps of exchange time, never crossed, strictly increasing
    ts = [r.ts for r in rows]
    assert all(t % 100_000_000 == 0 for t in ts)
    assert all(b - a == 100_000_000 for a, b in zip(ts, ts[1:]))
    assert all(r.bid_px[0] < r.ask_px[0] for r in rows)
    assert len(rows) == book.stats.rows > 900  # 10 rows/s: ~100 s (2023 file) to ~11 min (pairs)


@pytest.fixture(scope="module")
def usdm(streams):
    return streams[0]


def synced(snap, before, market=Market.USDM, **kw):
    book = BookBuilder(snap.symbol, market, **kw)
    for d in before:
        book.on_diff(d)
    book.on_snapshot(snap)
    assert book.synced
    return book


def test_dropped_diff_gives_gap_then_resync(usdm):
    snap, before, after = usdm
    book = synced(snap, before)
    ref = Reference(snap)
    for d in kept(before, snap, Market.USDM):
        ref.apply(d)
    k = 500
    for d in after[:k]:
        book.on_diff(d)
        ref.apply(d)
    ref.apply(after[k])  # the reference sees it, the builder does not: dropped on the wire
    out = book.on_diff(after[k + 1])
    (gap,) = out
    assert (gap.cause, gap.stream, gap.symbol) == ("sequence_break", "depth", snap.symbol)
    assert gap.ts == after[k - 1].ts and gap.end_ts == after[k + 1].ts
    assert f"expected pu={after[k - 1].update_id}, got pu={after[k + 1].prev_update_id}" in gap.detail
    assert book.needs_snapshot and book.stats.breaks == 1
    ref.apply(after[k + 1])
    # the diffs keep coming while the caller fetches a new snapshot: buffered, no rows
    for d in after[k + 2 : k + 40]:
        assert book.on_diff(d) == []
        ref.apply(d)
    # the new snapshot is the true book at after[k+30] (the reference saw every diff)
    ref_at = Reference(snap)
    for d in kept(before, snap, Market.USDM) + after[: k + 31]:
        ref_at.apply(d)
    out = book.on_snapshot(ref_at.snapshot(snap.symbol, after[k + 30].update_id))
    gaps = [e for e in out if type(e) is Gap]
    assert [g.cause for g in gaps] == ["resync"]
    assert gaps[0].ts == after[k - 1].ts and gaps[0].end_ts == after[k + 30].ts
    assert book.synced and book.stats.resyncs == 1 and book.stats.dropped >= 30
    for d in after[k + 40 :]:
        assert not [e for e in book.on_diff(d) if type(e) is Gap]
        ref.apply(d)
    assert book.top(50) == ref.top(50)


def test_dropped_diff_spot_rule(streams):
    snap, before, after = streams[2]
    book = synced(snap, before, Market.SPOT)
    for d in after[:100]:
        book.on_diff(d)
    (gap,) = book.on_diff(after[101])
    assert gap.cause == "sequence_break"
    assert f"expected U={after[99].update_id + 1}, got U={after[101].first_update_id}" in gap.detail
    assert book.needs_snapshot


def test_crossed_book_is_never_output(usdm):
    snap, before, after = usdm
    book = synced(snap, before)
    for d in after[:50]:
        book.on_diff(d)
    best_ask = book.top(1)[2][0]
    bad = dataclasses.replace(after[50], bids=list(after[50].bids) + [(best_ask + 1.0, 0.5)])
    out = book.on_diff(bad)
    (gap,) = [e for e in out if type(e) is Gap]
    assert all(r.bid_px[0] < r.ask_px[0] and r.ts < bad.ts for r in out if type(r) is BookTop)
    assert gap.cause == "sequence_break" and "crossed book" in gap.detail and str(best_ask + 1.0) in gap.detail
    assert book.needs_snapshot and book.stats.crossed == 1
    assert book.top() == ([], [], [], [])  # nothing of the crossed book survives
    assert book.flush(after[-1].ts) == []


def test_snapshot_older_than_every_buffered_diff_needs_a_new_one(usdm):
    snap, before, after = usdm
    book = BookBuilder(snap.symbol, Market.USDM)
    for d in after[10:20]:  # the diffs spanning the snapshot were lost
        book.on_diff(d)
    assert book.on_snapshot(snap) == []
    assert book.needs_snapshot and book.stats.stale_snapshots == 1


def test_duplicates_are_ignored_and_snapshots_while_synced_too(usdm):
    snap, before, after = usdm
    book = synced(snap, before)
    for d in after[:20]:
        book.on_diff(d)
    assert book.on_diff(after[19]) == [] and book.on_diff(after[5]) == []
    assert book.stats.duplicates == 2 and book.synced
    assert book.on_snapshot(snap) == [] and book.stats.snapshots_ignored == 1
    assert not [e for e in book.on_diff(after[20]) if type(e) is Gap]


def test_reset_then_resync_writes_the_outage(usdm):
    snap, before, after = usdm
    book = synced(snap, before)
    for d in after[:100]:
        book.on_diff(d)
    book.reset()
    assert book.needs_snapshot and book.buffered == 0
    ref = Reference(snap)
    for d in kept(before, snap, Market.USDM) + after[:150]:
        ref.apply(d)
    for d in after[140:160]:
        book.on_diff(d)
    out = book.on_snapshot(ref.snapshot(snap.symbol, after[149].update_id))
    (gap,) = [e for e in out if type(e) is Gap]
    assert gap.cause == "resync" and gap.ts == after[99].ts and gap.end_ts == after[149].ts


def test_grid_options_and_padding(usdm):
    snap, before, after = usdm
    book = synced(snap, before, levels=20, interval_ms=250)
    rows = [e for d in after[:3000] for e in book.on_diff(d)]
    assert rows and all(len(r.bid_px) == 20 and r.ts % 250_000_000 == 0 for r in rows)
    assert book_table(20) == "book_20" and book_table(5) == "book"
    # a thin book pads with NaN
    thin = DepthSnapshot(snap.symbol, 0, 0, after[0].update_id - 1, [(100.0, 1.0)], [(101.0, 2.0)])
    b = BookBuilder(snap.symbol, Market.SPOT, levels=3)
    b.on_snapshot(thin)
    b.on_diff(DepthDiff(snap.symbol, 1_000_000_050, 1, after[0].update_id, after[0].update_id, -1, [], []))
    assert b.flush(1_100_000_000) == []  # the row at 1.1 s is due only once 1.1 s has passed
    (row,) = b.flush(1_100_000_001)
    assert row.ts == 1_100_000_000 and row.bid_px[0] == 100.0 and math.isnan(row.bid_px[1])
    with pytest.raises(ValueError, match="book levels must be 1..500, got 0"):
        BookBuilder("binance:BTC/USDT", Market.SPOT, levels=0)
    with pytest.raises(ValueError, match="interval_ms must be positive, got -5"):
        BookBuilder("binance:BTC/USDT", Market.SPOT, interval_ms=-5)


def test_long_silence_is_a_stale_gap_not_millions_of_rows(usdm):
    snap, before, after = usdm
    book = synced(snap, before, max_fill_ms=60_000)
    book.on_diff(after[0])
    late = dataclasses.replace(after[1], ts=after[1].ts + 3_600 * 10**9)
    out = book.on_diff(late)
    assert [type(e) for e in out] == [Gap] and out[0].cause == "stale"
    assert book.synced


def test_route_events_sends_every_event_where_it_belongs(usdm):
    snap, before, after = usdm
    diffs = kept(after, snap, Market.USDM)[:300]
    routed, direct = synced(snap, before), synced(snap, before)
    batcher = EventBatcher()
    asked = []

    def book_of(ev):
        asked.append(ev)
        return routed if ev.symbol == snap.symbol else None

    trade = Trade(snap.symbol, diffs[0].ts, 1, 7, 61800.0, 0.5, 1)
    quote = Quote(snap.symbol, diffs[0].ts, 1, 8, 61800.0, 1.0, 61800.1, 2.0)
    other = dataclasses.replace(diffs[0], symbol="binance:ETH/USDT:USDT")  # no book: dropped
    assert route_events([trade, quote, other], batcher, book_of) is None
    expected_rows = []
    for d in diffs:
        assert route_events([d], batcher, book_of, keep_diffs=True) is routed
        expected_rows += direct.on_diff(d)
    assert asked == [other] + diffs  # asked before the book sees the diff
    assert routed.stats == direct.stats and routed.top(50) == direct.top(50)
    rows = batcher._rows
    assert rows[("trades", snap.symbol)] == [trade] and rows[("quotes", snap.symbol)] == [quote]
    assert rows[("book", snap.symbol)] == expected_rows and len(expected_rows) > 10
    assert rows[("book_diffs", snap.symbol)] == diffs
    assert ("book_diffs", other.symbol) not in rows  # dropped without keep_diffs
    # a snapshot frame goes to on_partial, or to the hook when one is given
    partial = DepthSnapshot(snap.symbol, diffs[-1].ts + 10**9, 2, diffs[-1].update_id + 1, [(61700.0, 1.0)], [(61900.0, 1.0)])
    hooked = []
    assert route_events([partial], batcher, book_of, on_snapshot=lambda b, ev: hooked.append((b, ev)) or []) is routed
    assert hooked == [(routed, partial)] and routed.top(1) != ([61700.0], [1.0], [61900.0], [1.0])
    n = batcher.count
    route_events([partial], batcher, book_of)
    assert routed.top(1) == ([61700.0], [1.0], [61900.0], [1.0])
    grid = rows[("book", snap.symbol)][len(expected_rows) :]  # rows due before the partial
    assert len(grid) == batcher.count - n > 0 and all(r.ts < partial.ts for r in grid)


# -- law: any contiguous diff sequence, the builder equals the reference or reports a cross
levels = st.lists(st.tuples(st.integers(0, 40), st.sampled_from([0.0, 0.5, 1.0, 2.0])), max_size=6)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=40), st.sampled_from(list(Market)))
def test_builder_equals_reference_for_any_sequence(updates, market):
    sym = "binance:BTC/USDT"
    snap = DepthSnapshot(sym, 0, 0, 100, [(float(p), 1.0) for p in range(10, 20)], [(float(p), 1.0) for p in range(21, 31)])
    book = BookBuilder(sym, market)
    book.on_snapshot(snap)
    ref = Reference(snap)
    u = 100
    for i, (bids, asks) in enumerate(updates):
        # bids on 0..40, asks on 11..51: crosses happen and must be caught
        d = DepthDiff(
            sym, (i + 1) * 10**8, 0, u if i == 0 else u + 1, u + 1, u if i else 99,
            [(float(p), q) for p, q in bids], [(float(p + 11), q) for p, q in asks],
        )
        u += 1
        out = book.on_diff(d)
        ref.apply(d)
        b, _, a, _ = ref.top(1)
        if b and a and b[0] >= a[0]:
            assert [g.cause for g in out if type(g) is Gap] == ["sequence_break"]
            assert book.needs_snapshot
            return
        assert book.top(40) == ref.top(40)
        for row in out:
            assert row.bid_px[0] < row.ask_px[0] or math.isnan(row.bid_px[0]) or math.isnan(row.ask_px[0])


# -- book state across runs (save_state / restore_state) ----------------------------------------------
def _roundtrip(state: dict) -> dict:
    import orjson

    return orjson.loads(orjson.dumps(state))  # as the state file stores it


@pytest.mark.parametrize("split", [1, 777, 3000])
def test_saved_state_continues_the_book_exactly(usdm, split):
    snap, before, after = usdm
    whole = synced(snap, before, quotes=True)
    want = [e for d in after for e in whole.on_diff(d)]
    first = synced(snap, before, quotes=True)
    got = [e for d in after[:split] for e in first.on_diff(d)]
    second = BookBuilder(snap.symbol, Market.USDM, quotes=True)
    second.restore_state(_roundtrip(first.save_state()))
    got += [e for d in after[split:] for e in second.on_diff(d)]
    assert got == want and len([e for e in got if type(e) is BookTop]) > 3000
    assert second.top(50) == whole.top(50) and second.depth() == whole.depth() and second.update_id == whole.update_id
    with pytest.raises(ValueError, match="does not fit"):
        BookBuilder(snap.symbol, Market.USDM, interval_ms=250).restore_state(first.save_state())


def test_restored_book_and_older_data(usdm):
    snap, before, after = usdm
    book = synced(snap, before)
    for d in after[:500]:
        book.on_diff(d)
    state = _roundtrip(book.save_state())
    # the collector replaying journal records the state already holds: skipped, then it goes on
    skip = BookBuilder(snap.symbol, Market.USDM)
    skip.restore_state(state, older="skip")
    assert [e for d in after[400:500] for e in skip.on_diff(d)] == [] and skip.stats.duplicates == 100
    assert not [e for d in after[500:600] for e in skip.on_diff(d) if type(e) is Gap] and skip.synced
    # a replay of an earlier span: the state is forgotten, the span builds its own book
    discard = BookBuilder(snap.symbol, Market.USDM)
    discard.restore_state(state, older="discard")
    assert discard.on_diff(before[0]) == [] and discard.needs_snapshot and discard.buffered == 1
    for d in before[1:]:
        discard.on_diff(d)
    discard.on_snapshot(snap)
    fresh = synced(snap, before)
    assert [e for d in after[:200] for e in discard.on_diff(d)] == [e for d in after[:200] for e in fresh.on_diff(d)]


def test_unsynced_book_closes_its_outage_and_the_next_run_continues_it(usdm):
    snap, before, after = usdm
    head = [d for d in before if d.update_id < snap.update_id][:3]  # the run ends before the snapshot came
    book = BookBuilder(snap.symbol, Market.USDM)
    for d in head:  # diffs, no snapshot: the book never becomes valid
        book.on_diff(d)
    (gap,) = book.close_outage()
    assert gap.cause == "unsynced" and (gap.ts, gap.end_ts) == (head[0].ts, head[-1].ts)
    assert book.close_outage()[0].ts == head[-1].ts  # a second stop continues from there
    nxt = BookBuilder(snap.symbol, Market.USDM)  # the next run: the rest of the capture
    nxt.restore_state(_roundtrip(book.save_state()))
    out = [e for d in before[len(head):] for e in nxt.on_diff(d)] + nxt.on_snapshot(snap)
    out += [e for d in after[:50] for e in nxt.on_diff(d)]
    (resync,) = [e for e in out if type(e) is Gap]
    assert nxt.synced and resync.cause == "resync" and resync.ts == head[-1].ts  # no overlap, no hole
    assert BookBuilder(snap.symbol, Market.USDM).close_outage() == [] and nxt.close_outage() == []


def test_snapshot_frames_resume_the_grid_at_their_time_and_quote_the_top():
    sym = "bybit:BTC/USDT:USDT"
    book = BookBuilder(sym, Market.SPOT, quotes=True)
    t0 = 1_700_000_000_000_000_000
    snap = DepthSnapshot(sym, t0 + 200_000_000, 1, 10, [(100.0, 1.0)], [(101.0, 2.0)])  # on a grid point
    out = book.load_snapshot(snap)
    assert out == [Quote(sym, snap.ts, 1, 10, 100.0, 1.0, 101.0, 2.0)]
    out = book.on_diff(DepthDiff(sym, t0 + 450_000_000, 2, 11, 11, 10, [(100.0, 3.0)], []))
    rows = [e for e in out if type(e) is BookTop]
    assert [r.ts for r in rows] == [t0 + 200_000_000, t0 + 300_000_000, t0 + 400_000_000]  # from the snapshot's point
    assert [e for e in out if type(e) is Quote] == [Quote(sym, t0 + 450_000_000, 2, 11, 100.0, 3.0, 101.0, 2.0)]
    assert book.on_diff(DepthDiff(sym, t0 + 460_000_000, 3, 12, 12, 11, [(99.0, 1.0)], [])) == []  # top unchanged
