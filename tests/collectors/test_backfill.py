"""Backfill through real ccxt against the local REST server, into a real store."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
import yaml

from collectors.backfill import (
    BackfillError,
    BackfillNotSupported,
    Kind,
    RetryPolicy,
    backfill,
    complete_days,
    make_exchange,
)
from collectors.restsim import RestSim, SimData
from collectors.symbols import SymbolNotFound
from tickstore import FrozenClock, Tickstore

FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.05)


@pytest.fixture
def sim(data_dir):
    data = SimData.recorded(data_dir)
    rng = np.random.default_rng(7)
    t0 = int(pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000)
    close = 60000 + np.cumsum(rng.normal(0, 20, 3 * 1440))
    data.put_klines("bybit", "BTCUSDT", "1m", [
        (t0 + i * 60_000, c - 5, c + 10, c - 10, c, float(rng.integers(1, 100))) for i, c in enumerate(close)])
    oi = 50000 + np.cumsum(rng.normal(0, 50, 5 * 24))
    for venue in ("binance", "bybit"):
        data.put_oi(venue, "BTCUSDT", "1h", [(t0 + i * 3_600_000, float(a), float(a) * 60000.0) for i, a in enumerate(oi)])
    with RestSim(data) as s:
        yield s


def run(store, sim, kind, symbol, exchange, start, end, **kw):
    kw.setdefault("retry", FAST)
    kw.setdefault("sleep", lambda s: None)
    ex = make_exchange(exchange, base_url=sim.base_url, rate_limit_ms=1)
    return backfill(store, kind, symbol, exchange=exchange, start=start, end=end, exchange_obj=ex, progress=False, **kw)


def _csv_funding(data_dir, venue, start, end):
    """The recorded funding history (UTC+3 wall clock in the file), as (ts, rate) in [start, end),
    ts the settlement time: the venue's stamp (00:00:00.002) on its whole hour, the rule of
    every writer of ``funding``."""
    path = next((data_dir / "historical-funding-rates-fetcher").glob(f"BTC-USDT_{venue}_*.csv"))
    lo, hi = pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC")
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            t = pd.Timestamp(datetime.fromisoformat(r["Date"]).replace(tzinfo=timezone(timedelta(hours=3)))).tz_convert("UTC")
            t = t.round("h")
            if lo <= t < hi:
                out.append((t, float(r["Funding Rate"])))
    return out


def _hl_funding(data_dir):
    doc = yaml.safe_load((data_dir / "hyperliquid-python-sdk" / "test_get_funding_history[None].yaml").read_text())
    body = next(i["response"]["body"]["string"] for i in doc["interactions"]
                if json.loads(i["request"]["body"])["type"] == "fundingHistory")
    return [(pd.Timestamp(r["time"], unit="ms", tz="UTC").round("h"), float(r["fundingRate"])) for r in json.loads(body)]


def _on_the_hour(ms: int) -> int:
    return int(pd.Timestamp(ms, unit="ms", tz="UTC").round("h").value // 1_000_000)


@pytest.mark.parametrize("venue, symbol", [("binance", "BTC/USDT:USDT"), ("bybit", "BTCUSDT")])
def test_funding_equals_the_recorded_history(store, sim, data_dir, venue, symbol):
    report = run(store, sim, Kind.FUNDING, symbol, venue, "2021-02-01", "2021-04-01")
    got = store["funding"].select(f"{venue}:BTC/USDT:USDT")
    want = _csv_funding(data_dir, venue, "2021-02-01", "2021-04-01")
    assert list(got.index) == [t for t, _ in want]  # ts = settlement time, nothing missing or doubled
    assert got["rate"].tolist() == [r for _, r in want]
    assert (got["interval_h"] == 8.0).all()
    assert report.days == report.written == 59 and report.rows == len(want)
    assert set(store["funding"].versions(f"{venue}:BTC/USDT:USDT", "2021-03-05")["source"]) == {"rest"}


def test_hyperliquid_funding_interval_follows_the_data(store, sim, data_dir):
    run(store, sim, Kind.FUNDING, "BTC", "hyperliquid", "2023-05-01", "2023-07-18")
    got = store["funding"].select("hyperliquid:BTC/USDC:USDC")
    want = _hl_funding(data_dir)
    assert list(got.index) == [t for t, _ in want] and got["rate"].tolist() == [r for _, r in want]
    gaps = np.diff(np.array([t.value for t, _ in want])) / 3.6e12
    hourly_from = next(i for i in range(len(gaps)) if round(gaps[i]) == 1)  # the venue switched 8 h -> 1 h
    assert (got["interval_h"].iloc[:hourly_from] == 8.0).all()
    assert (got["interval_h"].iloc[hourly_from + 1:] == 1.0).all()
    missing = [i + 1 for i in range(hourly_from, len(gaps)) if round(gaps[i]) == 2]
    assert missing  # the recording lacks one hourly settlement; the row after it is still 1 h
    assert all(got["interval_h"].iloc[i] == 1.0 for i in missing)


@pytest.mark.parametrize(
    "venue, kind, symbol, start, end, page_limit, timeframe",
    [
        ("binance", Kind.FUNDING, "BTC/USDT:USDT", "2020-01-01", "2020-01-08", 2, None),  # oldest first
        ("bybit", Kind.FUNDING, "BTC/USDT:USDT", "2021-01-01", "2021-01-08", 2, None),  # newest first
        ("hyperliquid", Kind.FUNDING, "BTC", "2023-06-05", "2023-06-12", 13, None),
        ("binance", Kind.OHLCV, "ADA/BTC", "2021-11-27", "2021-11-28", None, "1m"),  # 1440 bars, 1000 a page
        ("bybit", Kind.OHLCV, "BTC/USDT:USDT", "2024-03-01", "2024-03-04", None, "1m"),  # newest first
        ("bybit", Kind.OI, "BTCUSDT", "2024-03-01", "2024-03-06", 10, "1h"),
        ("binance", Kind.OI, "BTCUSDT", "2024-03-01", "2024-03-06", 10, "1h"),
    ],
)
def test_page_edges_lose_and_double_nothing(store, sim, venue, kind, symbol, start, end, page_limit, timeframe):
    report = run(store, sim, kind, symbol, venue, start, end, page_limit=page_limit, timeframe=timeframe)
    market = {"binance": "BTCUSDT", "bybit": "BTCUSDT", "hyperliquid": "BTC"}
    lo, hi = (int(pd.Timestamp(x, tz="UTC").value // 1_000_000) for x in (start, end))
    if kind is Kind.FUNDING:  # stored at the settlement time: the stamp on its hour
        src = [(_on_the_hour(r[0]), *r[1:]) for r in sim.data.funding[(venue, market[venue])]]
        src = [r for r in src if lo <= r[0] < hi]
        table, cols = "funding", ["rate"]
    elif kind is Kind.OHLCV:
        native = "ADABTC" if symbol == "ADA/BTC" else "BTCUSDT"
        src = [r for r in sim.data.klines[(venue, native, timeframe)] if lo <= r[0] < hi]
        table, cols = f"ohlcv_{timeframe}", ["open", "high", "low", "close", "volume"]
    else:
        src = [r for r in sim.data.oi[(venue, "BTCUSDT", timeframe)] if lo <= r[0] < hi]
        table, cols = "open_interest", ["oi"] + (["oi_value"] if venue == "binance" else [])
    sym = report.symbol
    got = store[table].select(sym)
    assert len(src) > 0 and report.requests > report.days  # several pages per chunk were needed
    assert got.index.asi8.tolist() == [r[0] * 1_000_000 for r in src]
    assert np.array_equal(got[cols].to_numpy(), np.array([r[1:1 + len(cols)] for r in src]))
    if kind is Kind.OI and venue == "bybit":
        assert got["oi_value"].isna().all()  # Bybit's history has contracts only
    assert not got.index.duplicated().any()


def test_binance_agg_trades_page_by_id_with_ties(store, sim):
    """Binance's REST trade history is aggTrades: stored in agg_trades with each aggregate's
    trade-id range, so the underlying trades are counted exactly."""
    report = run(store, sim, Kind.AGG_TRADES, "BTCUSDT-PERP", "binance", "2020-02-22", "2020-02-23", page_limit=97)
    src = sim.data.trades[("binance", "BTCUSDT")]
    got = store["agg_trades"].select("binance:BTC/USDT:USDT")
    # independently: consecutive prints of one ms, price and side form one aggregate
    groups = []
    for t, i, px, q, m in src:
        if groups and groups[-1][0] == (t, px, m) and groups[-1][2] + 1 == i:
            groups[-1][2] = i
            groups[-1][3].append(q)
        else:
            groups.append([(t, px, m), i, i, [q]])
    assert len(got) == len(groups) < len(src)
    assert got["first_trade_id"].tolist() == [g[1] for g in groups] and got["last_trade_id"].tolist() == [g[2] for g in groups]
    assert int((got["last_trade_id"] - got["first_trade_id"] + 1).sum()) == len(src)  # every trade once
    assert got["agg_id"].is_monotonic_increasing and got["agg_id"].is_unique
    assert got.index.asi8.tolist() == [g[0][0] * 1_000_000 for g in groups]
    assert got["price"].tolist() == [g[0][1] for g in groups]
    assert got["qty"].tolist() == pytest.approx([sum(g[3]) for g in groups], rel=1e-12)
    assert got["side"].tolist() == [-1 if g[0][2] else 1 for g in groups]  # buyer is maker -> seller aggressor
    ties = pd.Series([g[0][0] for g in groups]).duplicated().sum()
    assert ties > 10  # aggregates share a millisecond, some across page edges
    assert report.requests >= len(groups) // 97
    assert store["trades"].symbols() == []  # never stored as single trades
    # recv_ts is the fetch time; a second identical fetch writes nothing even so
    first_recv = got["recv_ts"].iloc[0]
    again = run(store, sim, Kind.AGG_TRADES, "BTCUSDT-PERP", "binance", "2020-02-22", "2020-02-23", refresh=True)
    assert (again.written, again.unchanged) == (0, 1)
    assert store["agg_trades"].select("binance:BTC/USDT:USDT")["recv_ts"].iloc[0] == first_recv
    with pytest.raises(BackfillNotSupported, match="binance trades backfill is not possible: .*backfill agg_trades"):
        run(store, sim, Kind.TRADES, "BTCUSDT-PERP", "binance", "2020-02-22", "2020-02-23")


def test_429_is_retried_with_backoff(store, sim):
    sleeps = []
    sim.fail_next(2, status=429)
    report = run(store, sim, Kind.FUNDING, "BTC/USDT:USDT", "binance", "2020-01-01", "2020-01-04", sleep=sleeps.append)
    assert report.retries == 2 and sleeps == [FAST.delay(0), FAST.delay(1)] == [0.01, 0.02]
    assert [r.status for r in sim.requests] == [429, 429, 200]
    assert len(store["funding"].select("binance:BTC/USDT:USDT")) == 9


def test_retries_exhausted_stop_with_a_clear_error(store, sim):
    sim.fail_next(10, status=503)
    with pytest.raises(BackfillError, match="gave up after 3 attempts.*503|gave up after 3 attempts"):
        run(store, sim, Kind.FUNDING, "BTC/USDT:USDT", "binance", "2020-01-01", "2020-01-04")
    assert store["funding"].symbols() == [] or store["funding"].select("binance:BTC/USDT:USDT").empty


def _day_versions(table, symbol, day):
    """The versions holding rows of ``day`` (funding is year-partitioned: a partition's
    versions are those of every day in it)."""
    v = table.versions(symbol, day)
    lo = pd.Timestamp(day, tz="UTC")
    return v[(v["rows"] == 0) | ((v["first_ts"] < lo + pd.Timedelta(days=1)) & (v["last_ts"] >= lo))]


def test_interruption_then_resume(store, sim, data_dir):
    sim.fail_from(1, status=503)  # the venue goes away after the first chunk (31 days)
    with pytest.raises(BackfillError, match="gave up"):
        run(store, sim, Kind.FUNDING, "BTC/USDT:USDT", "binance", "2020-01-01", "2020-04-01")
    table = store["funding"]
    days = pd.date_range("2020-01-01", "2020-04-01", freq="D", inclusive="left", tz="UTC")
    held = complete_days(table, "binance:BTC/USDT:USDT", days, what="funding")
    assert held == set(days[:31])
    sim.clear_faults()
    before = len(sim.requests)
    report = run(store, sim, Kind.FUNDING, "BTC/USDT:USDT", "binance", "2020-01-01", "2020-04-01")
    assert (report.skipped, report.written) == (31, 60)
    first_asked = min(int(r.params["startTime"]) for r in sim.requests[before:])
    assert first_asked >= int(days[31].value // 1_000_000) - 8 * 3_600_000  # nothing before the gap re-fetched
    got = table.select("binance:BTC/USDT:USDT")
    want = _csv_funding(data_dir, "binance", "2020-01-01", "2020-04-01")
    assert list(got.index) == [t for t, _ in want] and got["rate"].tolist() == [r for _, r in want]
    assert len(_day_versions(table, "binance:BTC/USDT:USDT", "2020-01-15")) == 1


def test_identical_backfill_writes_no_version_and_a_change_does(data_dir, sim, tmp_path):
    clock = FrozenClock("2024-06-01T00:00:00Z")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        first = run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-06-01", "2021-06-08")
        assert first.written == 7
        clock.advance(3600)
        same = run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-06-01", "2021-06-08", refresh=True)
        assert (same.written, same.unchanged) == (0, 7)
        resumed = run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-06-01", "2021-06-08")
        assert resumed.skipped == 7 and resumed.requests == 0
        sym = "bybit:BTC/USDT:USDT"
        table = store["funding"]
        assert len(_day_versions(table, sym, "2021-06-03")) == 1
        # the venue corrects one settlement
        t = int(pd.Timestamp("2021-06-03T08:00Z").value // 1_000_000)
        old = dict(sim.data.funding[("bybit", "BTCUSDT")])[t]
        sim.data.put_funding("bybit", "BTCUSDT", [(t, old + 0.0005)])
        clock.advance(3600)
        between = clock.now()
        clock.advance(3600)
        fixed = run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-06-01", "2021-06-08", refresh=True)
        assert (fixed.written, fixed.unchanged) == (1, 6)
        v = _day_versions(table, sym, "2021-06-03")
        assert len(v) == 2 and v["reason"].tolist() == ["backfill funding 2021-06-03"] * 2
        assert v["source"].tolist() == ["rest", "rest"] and v["superseded_at"].notna().tolist() == [True, False]
        ts = pd.Timestamp(t, unit="ms", tz="UTC")
        assert table.select(sym).loc[ts, "rate"] == old + 0.0005
        assert table.select(sym, as_of=between).loc[ts, "rate"] == old
        assert all(len(_day_versions(table, sym, d)) == 1 for d in ("2021-06-02", "2021-06-04"))


def test_a_day_not_over_is_partial_and_fetched_again(data_dir, sim, tmp_path):
    clock = FrozenClock("2021-01-10T12:00:00Z")
    with Tickstore(tmp_path / "s", clock=clock) as store:
        run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-01-09", "2021-01-11")
        v = _day_versions(store["funding"], "bybit:BTC/USDT:USDT", "2021-01-10")
        assert v["reason"].tolist() == ["backfill funding 2021-01-10 partial"]
        again = run(store, sim, Kind.FUNDING, "BTCUSDT", "bybit", "2021-01-09", "2021-01-11")
        assert (again.skipped, again.unchanged) == (1, 1)


def test_unsupported_and_bad_input_are_refused_clearly(store, sim):
    for venue, kind, sym in (("bybit", Kind.TRADES, "BTCUSDT-PERP"), ("hyperliquid", Kind.TRADES, "BTC"),
                             ("hyperliquid", Kind.OI, "BTC"), ("bybit", Kind.AGG_TRADES, "BTCUSDT-PERP")):
        with pytest.raises(BackfillNotSupported, match=f"{venue} {kind.value}"):
            run(store, sim, kind, sym, venue, "2024-01-01", "2024-01-02")
    with pytest.raises(BackfillError, match="start 2024-01-02 must be before end 2024-01-01"):
        run(store, sim, Kind.FUNDING, "BTCUSDT", "binance", "2024-01-02", "2024-01-01")
    with pytest.raises(BackfillError, match="UTC midnight.*12:00"):
        run(store, sim, Kind.FUNDING, "BTCUSDT", "binance", "2024-01-01T12:00", "2024-01-03")
    with pytest.raises(BackfillError, match="'yesterday'"):
        run(store, sim, Kind.FUNDING, "BTCUSDT", "binance", "yesterday", "2024-01-03")
    with pytest.raises(SymbolNotFound, match="'BTCUSTD'.*BTCUSDT"):
        run(store, sim, Kind.FUNDING, "BTCUSTD", "binance", "2024-01-01", "2024-01-02")
    with pytest.raises(BackfillError, match="page_limit must be 1..1000, got 5000"):
        run(store, sim, Kind.FUNDING, "BTCUSDT", "binance", "2024-01-01", "2024-01-02", page_limit=5000)
    with pytest.raises(BackfillError, match="no timeframe '7m'"):
        run(store, sim, Kind.OHLCV, "BTC/USDT", "binance", "2024-01-01", "2024-01-02", timeframe="7m")
    with pytest.raises(ValueError, match="'candles'"):
        run(store, sim, "candles", "BTC/USDT", "binance", "2024-01-01", "2024-01-02")
    assert sim.requests == []  # everything was refused before any request


# -- the CLI commands ------------------------------------------------------------------------
def _cli():
    import click

    from collectors.cli import backfill as backfill_cmd
    from collectors.cli import query as query_cmd
    from tickstore.cli import TickstoreGroup

    @click.group(cls=TickstoreGroup)
    def group():
        pass

    group.add_command(backfill_cmd)
    group.add_command(query_cmd)
    return group


def test_cli_backfill_then_query(sim, data_dir, tmp_path):
    import io

    from click.testing import CliRunner

    root = str(tmp_path / "cli")
    cli, runner = _cli(), CliRunner()
    res = runner.invoke(cli, ["backfill", "funding", "BTCUSDT-PERP", "-e", "binance", "--from", "2020-01-01",
                              "--to", "2020-01-11", "--root", root, "--base-url", sim.base_url, "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "funding binance:BTC/USDT:USDT: 10 days, 0 already complete, 10 written (30 rows)" in res.output
    want = _csv_funding(data_dir, "binance", "2020-01-01", "2020-01-11")
    res = runner.invoke(cli, ["query", "funding", "BTCUSDT", "-e", "binance", "--from", "2020-01-03", "-n", "4",
                              "--format", "csv", "--root", root])
    assert res.exit_code == 0, res.output
    got = pd.read_csv(io.StringIO(res.output))
    after = [(t, r) for t, r in want if t >= pd.Timestamp("2020-01-03", tz="UTC")][:4]
    assert [pd.Timestamp(t) for t in got["ts"]] == [t for t, _ in after] and got["rate"].tolist() == [r for _, r in after]
    res = runner.invoke(cli, ["query", "funding", "BTCUSDT", "-e", "binance", "-n", "2", "-f", "json", "--root", root])
    assert [r["rate"] for r in json.loads(res.output)] == [r for _, r in want[-2:]]
    res = runner.invoke(cli, ["query", "oi", "BTCUSTD", "-e", "binance", "--root", root])
    assert res.exit_code == 1 and "error: binance: unknown market 'BTCUSTD'" in res.output and "BTCUSDT" in res.output
    res = runner.invoke(cli, ["backfill", "trades", "BTC", "-e", "hyperliquid", "--from", "2024-01-01",
                              "--to", "2024-01-02", "--root", root, "--base-url", sim.base_url])
    assert res.exit_code == 1 and "no public trade history" in res.output
    for name in ("backfill", "query"):
        assert cli.commands[name].help and len(cli.commands[name].help) > 40
