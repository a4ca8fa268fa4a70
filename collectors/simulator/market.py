"""The generated market every dialect speaks about, and the dialect interface.

One ``SymbolMarket`` per simulated symbol: a seeded random walk in integer ticks, stepped
every ``tick_ms`` of simulated time. Each step yields a venue-neutral ``Tick``::

    Tick(now_ms, bids, asks, trades, ctx, liquidation)
         |       |     |     |       |    +-- perps, with probability liquidation_prob
         |       |     |     |       +------- perps, every 1000 ms: mark, index, funding, OI
         |       |     |     +--------------- Poisson(trades_per_tick) prints at the touch
         |       +-----+--------------------- level changes (qty 0 = level removed)
         +----------------------------------- simulated exchange time of the step

A ``Dialect`` (``simulator/binance.py``, ``bybit.py``, ``hyperliquid.py``) turns ticks into
that venue's wire frames, answers its control messages (subscribe, ping) and its REST
paths. ``GeneratedMarket`` steps the symbols of one market (one listening port) through
its dialect. Trades do not move the book (documented simplification). Frames are a pure
function of (config, step) and the subscriptions made, so two runs with one seed and
``start_ms`` send identical bytes.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from collectors.exchanges import UnknownSymbol
from collectors.symbols import MARKETS
from tickstore.errors import SymbolError

__all__ = ["Frame", "TradeTick", "Ctx", "LiqTick", "Tick", "SymbolMarket", "Dialect", "GeneratedMarket", "dialect_class"]

# (price, tick size) a symbol starts from, by base asset; others start at 100 / 0.01.
START = {"BTC": (60_000.0, 0.1), "ETH": (3_000.0, 0.01), "SOL": (150.0, 0.01), "BNB": (550.0, 0.01)}


@dataclass
class Frame:
    """One data frame: ``stream`` is the dialect's routing key (a client gets the frame when
    it subscribed to that key; "" = withheld by ``skip_sequence``), ``trade_ids`` the
    store's trade ids it carries (the ``SentLog`` records them when sent intact),
    ``poisoned`` a frame ``Simulator.poison`` mutated."""

    stream: str
    symbol: str
    payload: bytes
    trade_ids: tuple = ()
    depth: bool = False
    poisoned: bool = False


@dataclass(slots=True)
class TradeTick:
    serial: int  # contiguous per symbol
    price: int  # ticks
    qty: float
    buyer: bool  # buyer was the aggressor


@dataclass(slots=True)
class Ctx:
    mark: float
    index: float
    settle: float  # estimated settlement price
    funding: float  # predicted rate of the current interval
    oi: float  # contracts


@dataclass(slots=True)
class LiqTick:
    sell: bool  # the forced order sells (a long was liquidated)
    price: int  # ticks: the order's limit
    avg: int  # ticks: its average fill
    qty: float


@dataclass
class Tick:
    now_ms: int
    bids: list  # [(ticks, qty)] changes
    asks: list
    trades: list = field(default_factory=list)
    ctx: Ctx | None = None
    liquidation: LiqTick | None = None


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:  # normal approximation; Knuth's loop is O(lam)
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class SymbolMarket:
    """One symbol's simulated market: order book in integer ticks, trade serials, funding, OI."""

    def __init__(self, symbol: str, native: str, rng: random.Random, *, price: float, tick: float,
                 qty_decimals: int, levels: int, perp: bool):
        self.symbol, self.native, self.rng, self.perp = symbol, native, rng, perp
        self.tick = tick
        self.decimals = max(0, -int(math.floor(math.log10(tick) + 1e-9)))
        self.qty_decimals = qty_decimals
        self.levels = levels
        self.mid = int(round(price / tick))
        self.bids: dict[int, float] = {}
        self.asks: dict[int, float] = {}
        self.trade_serial = rng.randrange(10**8, 10**9)
        self.funding = 0.0001
        self.oi = round(rng.uniform(5_000, 50_000), 3)
        self.now_ms = 0  # time of the last step
        self.ctx: Ctx | None = None  # the last one generated
        self._set_levels()

    # -- formatting helpers the dialects share ----------------------------------------------
    def px(self, ticks: int) -> str:
        return f"{ticks * self.tick:.{self.decimals}f}"

    def q(self, qty: float) -> str:
        return f"{qty:.{self.qty_decimals}f}"

    def qty(self) -> float:
        return round(self.rng.lognormvariate(-1.0, 1.0), self.qty_decimals) or 10**-self.qty_decimals

    def best(self) -> tuple[int, float, int, float]:
        b = max(self.bids)
        a = min(self.asks)
        return b, self.bids[b], a, self.asks[a]

    def top(self, n: int) -> tuple[list, list]:
        """Best ``n`` (ticks, qty) levels a side, best first."""
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]

    # -- the walk -------------------------------------------------------------------------
    def _set_levels(self) -> tuple[list, list]:
        """Bring the book to ``levels`` levels a side around ``mid``; return the changes."""
        want_b = set(range(self.mid - self.levels, self.mid))
        want_a = set(range(self.mid + 1, self.mid + 1 + self.levels))
        changes_b, changes_a = [], []
        for side, want, changes in ((self.bids, want_b, changes_b), (self.asks, want_a, changes_a)):
            for p in sorted(set(side) - want):
                del side[p]
                changes.append((p, 0.0))
            for p in sorted(want - set(side)):
                side[p] = self.qty()
                changes.append((p, side[p]))
        return changes_b, changes_a

    def step(self, now_ms: int, *, tick_ms: int, trades_per_tick: float, liquidation_prob: float) -> Tick:
        rng = self.rng
        self.now_ms = now_ms
        self.mid += rng.choice((-1, 0, 0, 1))
        bids, asks = self._set_levels()
        for _ in range(rng.randint(1, 3)):
            side, changes = (self.bids, bids) if rng.random() < 0.5 else (self.asks, asks)
            p = rng.choice(list(side)[:10]) if len(side) > 10 else next(iter(side))
            side[p] = self.qty()
            changes.append((p, side[p]))
        tick = Tick(now_ms, bids, asks)
        bt, _, at, _ = self.best()
        for _ in range(poisson(rng, trades_per_tick)):
            self.trade_serial += 1
            buyer = rng.random() < 0.5
            tick.trades.append(TradeTick(self.trade_serial, at if buyer else bt, self.qty(), buyer))
        if self.perp and now_ms % 1000 < tick_ms:
            self.funding = min(0.0075, max(-0.0075, self.funding + rng.gauss(0, 0.00002)))
            self.oi = max(1.0, round(self.oi * (1 + rng.gauss(0, 1e-4)), 3))
            mid = (bt + at) / 2 * self.tick
            tick.ctx = self.ctx = Ctx(mid * (1 + rng.gauss(0, 1e-5)), mid, mid * (1 + rng.gauss(0, 2e-5)), self.funding, self.oi)
        if self.perp and rng.random() < liquidation_prob:
            sell = rng.random() < 0.5
            tick.liquidation = LiqTick(sell, bt - 5 if sell else at + 5, bt if sell else at, self.qty())
        return tick


class Dialect:
    """One venue's wire protocol over the generated market of one of its markets.

    Subclasses set ``exchange`` and ``markets`` (the venue's market enum: one listening port
    each) and implement the hooks. ``app_ping``: the venue's clients keep alive with an
    application ping (Bybit, Hyperliquid), so the server sends no websocket pings and
    counts any client message as a sign of life; otherwise (Binance) it pings and expects
    pongs. ``source`` below is the ``GeneratedMarket`` (or, Binance only, a ``ReplayMarket``).
    """

    exchange: str = ""
    markets: type[enum.Enum]
    app_ping: bool = False
    sent = None  # the simulator's SentLog, set by the server (REST snapshots are counted)

    def __init__(self, config, market):
        self.config = config
        self.market = market

    # -- symbols (class level: SimulatorConfig validates with them) --------------------------
    @classmethod
    def market_of(cls, symbol: str):
        """The market (listening port) serving a tickstore symbol; ``UnknownSymbol`` if none."""
        raise NotImplementedError

    @classmethod
    def native_of(cls, symbol: str) -> str:
        raise NotImplementedError

    def grid(self, base: str) -> tuple[float, float, int]:
        """(start price, tick size, quantity decimals) of a base asset on this market."""
        price, tick = START.get(base, (100.0, 0.01))
        return price, tick, 3

    @property
    def perp(self) -> bool:
        return True

    # -- the server -------------------------------------------------------------------------
    def endpoints(self, port: int):
        """``binance.Endpoints`` a client of this market connects to."""
        raise NotImplementedError

    def ws_route(self, path: str, query: dict) -> set[str] | None:
        """Routing keys subscribed by the URL itself ({} if none); None: no such websocket path."""
        raise NotImplementedError

    def control(self, conn, data: bytes, source) -> list[Frame]:
        """A client's text message -> frames for that client only (acks, pongs, and the
        snapshots a venue sends on subscribe); may change ``conn.streams``."""
        raise NotImplementedError

    def http(self, method: str, path: str, query: dict, body: bytes, source, now_ms: int) -> tuple[int, object]:
        """(status, JSON body) of a REST request."""
        return 404, {"error": f"no route {method} {path} on the simulated {self.exchange} {self.market.value} market"}

    # -- generation -------------------------------------------------------------------------
    def encode(self, m: SymbolMarket, tick: Tick) -> list[Frame]:
        """The frames of one symbol's step."""
        raise NotImplementedError

    def rest_book(self, m: SymbolMarket, limit: int, now_ms: int) -> dict:
        """The body of the venue's REST order-book snapshot of ``m``."""
        raise NotImplementedError

    def after_step(self, source, now_ms: int) -> list[Frame]:
        """Frames about every symbol at once, after each symbol's step (market-wide channels)."""
        return []


def market_info(venue: str, symbol: str):
    """The symbol registry's entry for a ``<venue>:<unified>`` symbol this dialect serves."""
    try:
        return MARKETS.venue_info(venue, symbol)
    except SymbolError as exc:
        raise UnknownSymbol(str(exc)) from None


def dialect_class(market) -> type[Dialect]:
    """The dialect of a market enum member (``binance.Market.USDM``, ``bybit.Category.SPOT``...)."""
    for cls in _dialects():
        if isinstance(market, cls.markets):
            return cls
    raise ValueError(f"no simulated venue serves market {market!r}")


def dialect_of_symbol(symbol: str) -> type[Dialect]:
    exchange = str(symbol).partition(":")[0]
    for cls in _dialects():
        if cls.exchange == exchange:
            return cls
    names = [c.exchange for c in _dialects()]
    raise UnknownSymbol(f"{symbol!r} is not a tickstore symbol of a simulated venue {names} (like 'binance:BTC/USDT:USDT')")


def _dialects() -> tuple[type[Dialect], ...]:
    # imported here: the dialect modules import this one
    from .binance import BinanceDialect
    from .bybit import BybitDialect
    from .hyperliquid import HyperliquidDialect

    return BinanceDialect, BybitDialect, HyperliquidDialect


class GeneratedMarket:
    """The deterministic generated feed of one market: ``step(i)`` -> frames of step ``i``."""

    def __init__(self, config, market, start_ms: int):
        cls = dialect_class(market)
        self.config = config
        self.market = market
        self.start_ms = start_ms
        self.dialect = cls(config, market)
        self.symbols: dict[str, SymbolMarket] = {}
        for s in config.symbols:
            if cls.exchange != s.partition(":")[0] or cls.market_of(s) is not market:
                continue
            base = s.partition(":")[2].split("/")[0]
            price, tick, qd = self.dialect.grid(base)
            self.symbols[s] = SymbolMarket(
                s, cls.native_of(s), random.Random(f"{config.seed}:{s}"), price=price, tick=tick, qty_decimals=qd,
                levels=config.book_levels, perp=self.dialect.perp,
            )
            self.symbols[s].now_ms = start_ms  # a snapshot asked for before step 0 has a time
        self.by_native = {m.native: m for m in self.symbols.values()}
        self.skip: set[str] = set()  # symbols whose next book update is withheld
        self.max_steps = int(config.max_seconds * 1000 / config.tick_ms)

    def step(self, i: int) -> list[Frame]:
        cfg = self.config
        now = self.start_ms + i * cfg.tick_ms
        out: list[Frame] = []
        for sym, m in self.symbols.items():
            tick = m.step(now, tick_ms=cfg.tick_ms, trades_per_tick=cfg.trades_per_tick, liquidation_prob=cfg.liquidation_prob)
            frames = self.dialect.encode(m, tick)
            if sym in self.skip and any(f.depth for f in frames):
                # withheld: the book moved (and its sequence advanced), nobody hears it
                self.skip.discard(sym)
                frames = [Frame("", sym, b"", depth=True)] + [f for f in frames if not f.depth]
            out += frames
        return out + self.dialect.after_step(self, now)

    def snapshot(self, native: str, limit: int, now_ms: int) -> dict | None:
        """The REST book body of ``native`` (Binance's ``/depth``), None for an unknown symbol."""
        m = self.by_native.get(native)
        return None if m is None else self.dialect.rest_book(m, limit, now_ms)
