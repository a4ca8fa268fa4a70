"""An offline REST exchange: the history endpoints ccxt calls, served on 127.0.0.1.

A real ``ThreadingHTTPServer`` in a daemon thread answers the paths (and the paging rules)
of the three venues, so ``collectors.backfill`` runs through unmodified ccxt with no
internet. Point ccxt at it with ``sim.urls(exchange_id)`` (what ``backfill.make_exchange``
does with ``base_url``)::

    Binance   GET /fapi/v1/fundingRate        ascending from startTime, limit <= 1000
              GET /fapi/v1/klines /api/v3/klines /dapi/v1/klines   ascending, <= 1500 (spot 1000)
              GET /fapi/v1/aggTrades /api/v3/aggTrades   ascending, <= 1000, startTime..endTime < 1 h;
                                                         aggregates of the recorded trades (aggregate_trades)
              GET /futures/data/openInterestHist         ascending, <= 500 (USD-M: symbol; COIN-M:
                                                         pair + contractType, the value in the base coin)
    Bybit     GET /v5/market/funding/history   newest first inside [startTime, endTime], <= 200
              GET /v5/market/kline             newest first inside [start, end], <= 1000
              GET /v5/market/open-interest     newest first inside [startTime, endTime], <= 200
    Hyperliquid POST /info {"type":"fundingHistory"}   ascending from startTime, <= 500
                POST /info {"type":"candleSnapshot"}   ascending from startTime, <= 5000
                POST /info {"type":"userFillsByTime"}  ascending from startTime, <= 2000

Without ``startTime`` a Binance endpoint answers the most recent ``limit`` rows, like the
real one. Venue ordering matters: a paginator written for Binance silently loses rows on
Bybit, and this server reproduces both.

Data: ``SimData`` holds rows per (venue, kind, native id[, interval]); ``SimData.recorded``
loads the real shared recordings (funding CSVs, Hyperliquid cassettes, Binance 1m klines,
Tardis trades), ``SimData.put_*`` adds generated rows. Faults for tests:
``fail_next(n, status=429)`` answers the next ``n`` requests with that status (Retry-After
set), ``fail_from(k, status=503)`` answers every request after the ``k``-th with it until
``clear_faults()``. Every request is logged in ``sim.requests``.
"""

from __future__ import annotations

import bisect
import csv
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

__all__ = ["SimData", "RestSim", "Request"]

_INTERVAL_MS = {
    "1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "30m": 1_800_000,
    "1h": 3_600_000, "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "8h": 28_800_000,
    "12h": 43_200_000, "1d": 86_400_000,
}
# Bybit spells intervals as minutes ("1", "60", "D") for klines, "5min"/"1h"/"1d" for OI.
_BYBIT_KLINE = {"1": "1m", "3": "3m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "120": "2h",
                "240": "4h", "360": "6h", "720": "12h", "D": "1d"}
_BYBIT_OI = {"5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "4h": "4h", "1d": "1d"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict  # query parameters (GET) or the JSON body (POST)
    status: int


@dataclass
class SimData:
    """Rows the server answers from, each list sorted by its first element (time in ms).

    funding[(venue, native)]           -> [(ts, rate)]
    klines[(venue, native, interval)]  -> [(ts, o, h, l, c, v)]
    trades[(venue, native)]            -> [(ts, id, price, qty, buyer_is_maker)]
    oi[(venue, native, interval)]      -> [(ts, oi, oi_value)]
    fills[user]                        -> [fill dict as Hyperliquid's userFillsByTime answers]
    """

    funding: dict = field(default_factory=lambda: defaultdict(list))
    klines: dict = field(default_factory=lambda: defaultdict(list))
    trades: dict = field(default_factory=lambda: defaultdict(list))
    oi: dict = field(default_factory=lambda: defaultdict(list))
    fills: dict = field(default_factory=lambda: defaultdict(list))

    def put_funding(self, venue: str, native: str, rows) -> None:
        self._put(self.funding, (venue, native), rows)

    def put_klines(self, venue: str, native: str, interval: str, rows) -> None:
        self._put(self.klines, (venue, native, interval), rows)

    def put_trades(self, venue: str, native: str, rows) -> None:
        # a trade is identified by its id, and several trades share a millisecond
        self._put(self.trades, (venue, native), rows, ident=lambda r: (r[0], r[1]))

    def put_oi(self, venue: str, native: str, interval: str, rows) -> None:
        self._put(self.oi, (venue, native, interval), rows)

    @staticmethod
    def _put(table, key, rows, *, ident=lambda r: r[0]) -> None:
        # Rows with an identity already present replace it: a test that edits one value
        # and backfills again sees the edit, not a duplicate.
        current = {ident(r): r for r in table[key]}
        for r in rows:
            r = tuple(r)
            current[ident(r)] = r
        table[key] = sorted(current.values(), key=ident)

    @classmethod
    def recorded(cls, data_dir: str | Path) -> "SimData":
        """The real recordings under ``data_dir`` (the shared data folder), where present.

        - ``historical-funding-rates-fetcher/*binance*.csv`` -> binance BTCUSDT funding
        - ``historical-funding-rates-fetcher/*bybit*.csv``   -> bybit BTCUSDT funding
          (both files store UTC+3 wall-clock times: 3 h are subtracted)
        - ``hyperliquid-python-sdk/test_get_funding_history[None].yaml`` -> hyperliquid BTC funding
        - ``hyperliquid-python-sdk/test_get_candles_snapshot.yaml``      -> hyperliquid kPEPE 1h candles
        - ``nautilus_trader/ADABTC-1m-2021-11-27.csv``  -> binance spot ADABTC 1m klines
        - ``nautilus_trader/trades.csv``                -> binance USD-M BTCUSDT trades (Tardis)
        """
        root = Path(data_dir)
        data = cls()
        for venue in ("binance", "bybit"):
            for path in sorted((root / "historical-funding-rates-fetcher").glob(f"BTC-USDT_{venue}_*.csv")):
                data.put_funding(venue, "BTCUSDT", _funding_csv(path))
        cassettes = root / "hyperliquid-python-sdk"
        path = cassettes / "test_get_funding_history[None].yaml"
        if path.exists():
            rows = [(int(r["time"]), float(r["fundingRate"])) for r in _cassette(path, "fundingHistory")]
            data.put_funding("hyperliquid", "BTC", rows)
        path = cassettes / "test_get_candles_snapshot.yaml"
        if path.exists():
            for r in _cassette(path, "candleSnapshot"):
                data.put_klines("hyperliquid", r["s"], r["i"], [(int(r["t"]), float(r["o"]), float(r["h"]), float(r["l"]), float(r["c"]), float(r["v"]))])
        path = root / "nautilus_trader" / "ADABTC-1m-2021-11-27.csv"
        if path.exists():
            with open(path, newline="") as fh:
                data.put_klines("binance", "ADABTC", "1m", [(int(r[0]), *map(float, r[1:6])) for r in csv.reader(fh)])
        path = root / "nautilus_trader" / "trades.csv"
        if path.exists():
            with open(path, newline="") as fh:
                rows = [
                    (int(r["timestamp"]) // 1000, int(r["id"]), float(r["price"]), float(r["amount"]), r["side"] == "sell")
                    for r in csv.DictReader(fh)
                ]
            data.put_trades("binance", "BTCUSDT", rows)
        return data


def _funding_csv(path: Path) -> list[tuple[int, float]]:
    # Symbol,Date,Funding Rate / BTC-USDT,2020-01-01 03:00:00.000,-0.00012359  (UTC+3 wall clock)
    out = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            local = datetime.fromisoformat(r["Date"]).replace(tzinfo=timezone(timedelta(hours=3)))
            out.append((int(local.timestamp() * 1000 + 0.5), float(r["Funding Rate"])))
    return out


def _cassette(path: Path, kind: str) -> list[dict]:
    import yaml  # dev dependency; only the recorded-data loader needs it

    with open(path) as fh:
        doc = yaml.safe_load(fh)
    for it in doc["interactions"]:
        if json.loads(it["request"]["body"]).get("type") == kind:
            return json.loads(it["response"]["body"]["string"])
    raise ValueError(f"{path}: no {kind!r} interaction in the cassette")


def _window(rows, start, end, limit, *, newest_first=False, key=lambda r: r[0]):
    """Rows with ``start <= t <= end`` (either bound optional), paged like the venue.

    Oldest-first venues answer the first ``limit`` rows from ``start`` (the last ``limit``
    when no ``start`` is given); newest-first venues answer the last ``limit`` rows before
    ``end``, newest first.
    """
    keys = [key(r) for r in rows]
    lo = 0 if start is None else bisect.bisect_left(keys, int(start))
    hi = len(rows) if end is None else bisect.bisect_right(keys, int(end))
    sel = rows[lo:hi]
    if newest_first:
        return list(reversed(sel[-limit:])) if limit else []
    return sel[:limit] if start is not None else sel[-limit:]


def aggregate_trades(rows) -> list[tuple]:
    """Trades ``(ts, id, price, qty, buyer_is_maker)`` as Binance's aggTrades serves them:
    consecutive fills of one millisecond, price and taker side in one aggregate ``(ts, agg
    id, price, qty, buyer_is_maker, first id, last id)``; aggregate ids count from the first
    trade id (a recorded tape cannot tell two taker orders of one ms, price and side apart,
    so they are aggregated together: the rows stay exact, the grouping is a model)."""
    out: list = []
    for t, i, px, q, m in rows:
        last = out[-1] if out else None
        if last is not None and (last[0], last[2], last[4]) == (t, px, m) and last[6] + 1 == i:
            out[-1] = (t, last[1], px, float(Decimal(repr(last[3])) + Decimal(repr(q))), m, last[5], i)
        else:
            out.append((t, (rows[0][1] if out else i) + len(out), px, q, m, i, i))
    return out


def _num(v) -> str:
    return repr(float(v))


class _Fail(Exception):
    def __init__(self, status: int, body: dict):
        self.status, self.body = status, body


class RestSim:
    """The server; ``with RestSim(data) as sim: ...`` starts and stops it."""

    def __init__(self, data: SimData | None = None, *, host: str = "127.0.0.1", port: int = 0):
        self.data = data if data is not None else SimData()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._fail_next: list[int] = []
        self._fail_from: tuple[int, int] | None = None
        sim = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                u = urlsplit(self.path)
                params = {k: v[-1] for k, v in parse_qs(u.query).items()}
                sim._serve(self, "GET", u.path, params)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                except ValueError:
                    body = None
                sim._serve(self, "POST", urlsplit(self.path).path, body)

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "RestSim":
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "RestSim":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- faults -----------------------------------------------------------------------
    def fail_next(self, n: int = 1, *, status: int = 429) -> None:
        with self._lock:
            self._fail_next.extend([status] * n)

    def fail_from(self, k: int, *, status: int = 503) -> None:
        """Every request after the ``k``-th from now fails with ``status``."""
        with self._lock:
            self._fail_from = (len(self.requests) + k, status)

    def clear_faults(self) -> None:
        with self._lock:
            self._fail_next.clear()
            self._fail_from = None

    # -- dispatch ---------------------------------------------------------------------
    def _serve(self, h: BaseHTTPRequestHandler, method: str, path: str, params) -> None:
        with self._lock:
            status = None
            if self._fail_next:
                status = self._fail_next.pop(0)
            elif self._fail_from is not None and len(self.requests) >= self._fail_from[0]:
                status = self._fail_from[1]
            self.requests.append(Request(method, path, params if isinstance(params, dict) else {}, status or 200))
        try:
            if status is not None:
                raise _Fail(status, {"code": -1003 if status == 429 else -1001, "msg": f"simulated HTTP {status}",
                                     "retCode": 10006 if status == 429 else 10016, "retMsg": f"simulated HTTP {status}"})
            route = _ROUTES.get((method, path))
            if route is None:
                raise _Fail(404, {"code": -1, "msg": f"no such endpoint {method} {path}"})
            body = route(self, params)
            payload, status = json.dumps(body).encode(), 200
        except _Fail as f:
            payload, status = json.dumps(f.body).encode(), f.status
        except (KeyError, ValueError, TypeError) as exc:
            payload, status = json.dumps({"code": -1102, "msg": f"bad request: {type(exc).__name__} {exc}"}).encode(), 400
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(payload)))
        if status == 429:
            h.send_header("Retry-After", "0")
        h.end_headers()
        h.wfile.write(payload)

    # -- Binance ----------------------------------------------------------------------
    def _limit(self, p, default, maximum) -> int:
        n = int(p.get("limit", default))
        if not 1 <= n <= maximum:
            raise _Fail(400, {"code": -1130, "msg": f"Data sent for parameter 'limit' is not valid: {n} (1..{maximum})"})
        return n

    def binance_funding(self, p):
        rows = self.data.funding.get(("binance", p["symbol"]), [])
        sel = _window(rows, p.get("startTime"), p.get("endTime"), self._limit(p, 100, 1000))
        return [{"symbol": p["symbol"], "fundingTime": t, "fundingRate": f"{r:.8f}"} for t, r in sel]

    def binance_klines(self, p, maximum):
        rows = self.data.klines.get(("binance", p["symbol"], p["interval"]), [])
        step = _INTERVAL_MS[p["interval"]]
        sel = _window(rows, p.get("startTime"), p.get("endTime"), self._limit(p, 500, maximum))
        return [[t, _num(o), _num(h), _num(lo), _num(c), _num(v), t + step - 1, "0", 0, "0", "0", "0"] for t, o, h, lo, c, v in sel]

    def binance_agg_trades(self, p):
        start, end = p.get("startTime"), p.get("endTime")
        if start is not None and end is not None and int(end) - int(start) > 3_600_000:
            raise _Fail(400, {"code": -1127, "msg": "More than 1 hours between startTime and endTime."})
        rows = aggregate_trades(self.data.trades.get(("binance", p["symbol"]), []))
        limit = self._limit(p, 500, 1000)
        if "fromId" in p:
            ids = [r[1] for r in rows]
            i = bisect.bisect_left(ids, int(p["fromId"]))
            sel = rows[i : i + limit]
        else:
            sel = _window(rows, start, end, limit)
        return [{"a": a, "p": _num(px), "q": _num(q), "f": f, "l": last, "T": t, "m": m} for t, a, px, q, m, f, last in sel]

    def binance_oi(self, p):
        if "pair" in p:  # COIN-M (dapi): the pair and contract type name the contract
            contract = {"PERPETUAL": "PERP"}.get(p["contractType"], p["contractType"])
            native, who = f"{p['pair']}_{contract}", {"pair": p["pair"], "contractType": p["contractType"]}
        else:
            native, who = p["symbol"], {"symbol": p["symbol"]}
        rows = self.data.oi.get(("binance", native, p["period"]), [])
        sel = _window(rows, p.get("startTime"), p.get("endTime"), self._limit(p, 30, 500))
        return [{**who, "sumOpenInterest": _num(a), "sumOpenInterestValue": _num(v), "timestamp": t} for t, a, v in sel]

    # -- Bybit ------------------------------------------------------------------------
    @staticmethod
    def _bybit(result: dict) -> dict:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": int(time.time() * 1000)}

    def bybit_funding(self, p):
        if "startTime" in p and "endTime" not in p:
            # the real API refuses startTime alone (retCode 10001)
            return {"retCode": 10001, "retMsg": "endTime is required when startTime is passed", "result": {}, "retExtInfo": {}, "time": 0}
        rows = self.data.funding.get(("bybit", p["symbol"]), [])
        sel = _window(rows, p.get("startTime"), p.get("endTime"), self._limit(p, 200, 200), newest_first=True)
        return self._bybit({"category": p["category"], "list": [
            {"symbol": p["symbol"], "fundingRate": f"{r:.8f}", "fundingRateTimestamp": str(t)} for t, r in sel]})

    def bybit_kline(self, p):
        interval = _BYBIT_KLINE[p["interval"]]
        rows = self.data.klines.get(("bybit", p["symbol"], interval), [])
        sel = _window(rows, p.get("start"), p.get("end"), self._limit(p, 200, 1000), newest_first=True)
        return self._bybit({"category": p["category"], "symbol": p["symbol"], "list": [
            [str(t), _num(o), _num(h), _num(lo), _num(c), _num(v), "0"] for t, o, h, lo, c, v in sel]})

    def bybit_oi(self, p):
        interval = _BYBIT_OI[p["intervalTime"]]
        rows = self.data.oi.get(("bybit", p["symbol"], interval), [])
        end = p.get("endTime")
        if p.get("cursor"):
            end = min(int(end), int(p["cursor"])) if end is not None else int(p["cursor"])
        limit = self._limit(p, 50, 200)
        sel = _window(rows, p.get("startTime"), end, limit, newest_first=True)
        cursor = str(sel[-1][0] - 1) if len(sel) == limit else ""
        return self._bybit({"symbol": p["symbol"], "category": p["category"], "nextPageCursor": cursor, "list": [
            {"openInterest": _num(a), "timestamp": str(t)} for t, a, _ in sel]})

    # -- Hyperliquid ------------------------------------------------------------------
    def hyperliquid_info(self, body):
        if not isinstance(body, dict):
            raise _Fail(422, {"error": "Failed to deserialize the JSON body"})
        kind = body.get("type")
        if kind == "fundingHistory":
            rows = self.data.funding.get(("hyperliquid", body["coin"]), [])
            sel = _window(rows, body["startTime"], body.get("endTime"), 500)
            return [{"coin": body["coin"], "fundingRate": f"{r:.8f}", "premium": "0.0", "time": t} for t, r in sel]
        if kind == "candleSnapshot":
            req = body["req"]
            rows = self.data.klines.get(("hyperliquid", req["coin"], req["interval"]), [])
            step = _INTERVAL_MS[req["interval"]]
            sel = _window(rows, req["startTime"], req.get("endTime"), 5000)
            return [{"t": t, "T": t + step - 1, "s": req["coin"], "i": req["interval"], "o": _num(o), "h": _num(h),
                     "l": _num(lo), "c": _num(c), "v": _num(v), "n": 0} for t, o, h, lo, c, v in sel]
        if kind == "userFillsByTime":
            # ascending from startTime, at most 2000 fills per answer
            rows = self.data.fills.get(body["user"].lower(), [])
            return _window(rows, body["startTime"], body.get("endTime"), 2000, key=lambda f: f["time"])
        raise _Fail(422, {"error": f"unsupported info type {kind!r} in the simulator"})


_ROUTES = {
    ("GET", "/fapi/v1/fundingRate"): RestSim.binance_funding,
    ("GET", "/fapi/v1/klines"): lambda s, p: s.binance_klines(p, 1500),
    ("GET", "/dapi/v1/klines"): lambda s, p: s.binance_klines(p, 1500),
    ("GET", "/api/v3/klines"): lambda s, p: s.binance_klines(p, 1000),
    ("GET", "/fapi/v1/aggTrades"): RestSim.binance_agg_trades,
    ("GET", "/api/v3/aggTrades"): RestSim.binance_agg_trades,
    ("GET", "/futures/data/openInterestHist"): RestSim.binance_oi,
    ("GET", "/v5/market/funding/history"): RestSim.bybit_funding,
    ("GET", "/v5/market/kline"): RestSim.bybit_kline,
    ("GET", "/v5/market/open-interest"): RestSim.bybit_oi,
    ("POST", "/info"): RestSim.hyperliquid_info,
}
