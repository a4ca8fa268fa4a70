"""Symbols: venue-native ids <-> ccxt unified symbols <-> tickstore symbols.

Three spellings of one market, and the only place that converts between them::

    venue-native id     ccxt unified        tickstore symbol
    BTCUSDT  (binance)  BTC/USDT:USDT       binance:BTC/USDT:USDT     USD-M perpetual
    BTCUSDT  (binance)  BTC/USDT            binance:BTC/USDT          spot
    BTCUSD_PERP         BTC/USD:BTC         binance:BTC/USD:BTC       COIN-M perpetual
    BTCUSDT  (bybit)    BTC/USDT:USDT       bybit:BTC/USDT:USDT       v5 linear (or spot)
    BTC      (hl)       BTC/USDC:USDC       hyperliquid:BTC/USDC:USDC perpetual

A bare native id is ambiguous on Binance and Bybit (``BTCUSDT`` is both the spot pair and
the perpetual), so ``resolve`` takes ``market_type`` (the websocket endpoint or REST
category a frame came from knows it); suffixed forms (``BTCUSDT-PERP``, cryptofeed's
``BTC-USDT-PERP``) and unified symbols are unambiguous. Unknown names raise
``SymbolNotFound`` listing close matches (difflib).

Market metadata comes from ccxt where available: a registry starts from a small built-in
table (enough to run offline and in tests) and ``Markets.set_markets`` merges markets a
ccxt exchange loaded (``exchange.markets``) or any list of ccxt market structures.
``Markets.install(exchange)`` goes the other way: it hands the registry's markets to a
ccxt exchange through ``exchange.set_markets`` so no ``load_markets`` call ever needs the
internet.
"""

from __future__ import annotations

import difflib
import enum
import re
from dataclasses import dataclass

from tickstore.errors import SymbolError

__all__ = [
    "MarketType",
    "MarketInfo",
    "SymbolNotFound",
    "Markets",
    "MARKETS",
    "EXCHANGES",
    "resolve",
    "tickstore_symbol",
    "split_symbol",
    "native_id",
]

#: ccxt exchange ids the collectors speak; tickstore symbols start with one of them.
EXCHANGES = ("binance", "bybit", "hyperliquid")
EXAMPLES = {"binance": "binance:BTC/USDT:USDT", "bybit": "bybit:BTC/USDT:USDT", "hyperliquid": "hyperliquid:BTC/USDC:USDC"}


class MarketType(enum.Enum):
    """ccxt's market ``type``: what a bare native id needs to become unambiguous."""

    SPOT = "spot"
    SWAP = "swap"  # perpetual
    FUTURE = "future"  # dated delivery contract


class SymbolNotFound(SymbolError):
    """A name matches no known market; the message lists close matches."""


@dataclass(frozen=True)
class MarketInfo:
    """One market, in the few ccxt market-structure fields the collectors rely on.

    ``native`` is the id the venue's wire protocol uses (``BTCUSDT``, ``BTCUSD_PERP``,
    Hyperliquid's coin name ``BTC``); ``ccxt_id`` is ccxt's ``market['id']`` (the same,
    except on Hyperliquid where ccxt uses the asset index ``"0"``).
    """

    exchange: str
    symbol: str  # ccxt unified
    native: str
    type: MarketType
    base: str
    quote: str
    settle: str | None = None
    ccxt_id: str | None = None
    funding_interval_h: float | None = None  # None for spot / where the venue varies it

    @property
    def linear(self) -> bool | None:
        return None if self.type is MarketType.SPOT else self.settle == self.quote

    @property
    def tickstore(self) -> str:
        return f"{self.exchange}:{self.symbol}"

    def ccxt_market(self) -> dict:
        """A ccxt market structure (the keys ccxt's public REST methods read)."""
        spot = self.type is MarketType.SPOT
        linear = self.linear
        market = {
            "id": self.ccxt_id or self.native,
            "lowercaseId": (self.ccxt_id or self.native).lower(),
            "symbol": self.symbol,
            "base": self.base,
            "quote": self.quote,
            "settle": self.settle,
            "baseId": self.ccxt_id if self.exchange == "hyperliquid" else self.base,
            "quoteId": self.quote,
            "settleId": self.settle,
            "type": self.type.value,
            "spot": spot,
            "margin": False,
            "swap": self.type is MarketType.SWAP,
            "future": self.type is MarketType.FUTURE,
            "option": False,
            "active": True,
            "contract": not spot,
            "linear": linear,
            "inverse": None if spot else not linear,
            "subType": None if spot else ("linear" if linear else "inverse"),
            "contractSize": None if spot else (100.0 if self.exchange == "binance" and not linear else 1.0),
            "precision": {"amount": None, "price": None},
            "limits": {"amount": {}, "price": {}, "cost": {}, "leverage": {}},
            "info": {"symbol": self.native},
        }
        if self.exchange == "hyperliquid":
            market["baseName"] = self.native
            market["info"] = {"name": self.native}
        if self.exchange == "bybit" and self.funding_interval_h:
            market["info"]["fundingInterval"] = int(self.funding_interval_h * 60)
        return market


def _builtin() -> list[MarketInfo]:
    rows: list[MarketInfo] = []
    S, P = MarketType.SPOT, MarketType.SWAP
    for base in ("BTC", "ETH", "SOL", "DOGE", "BNB", "XRP"):
        rows.append(MarketInfo("binance", f"{base}/USDT", f"{base}USDT", S, base, "USDT"))
        rows.append(MarketInfo("binance", f"{base}/USDT:USDT", f"{base}USDT", P, base, "USDT", "USDT", funding_interval_h=8.0))
        rows.append(MarketInfo("bybit", f"{base}/USDT", f"{base}USDT", S, base, "USDT"))
        rows.append(MarketInfo("bybit", f"{base}/USDT:USDT", f"{base}USDT", P, base, "USDT", "USDT", funding_interval_h=8.0))
    rows.append(MarketInfo("binance", "ADA/BTC", "ADABTC", S, "ADA", "BTC"))  # the recorded 1m klines
    for base in ("BTC", "ETH"):
        # COIN-M: quoted in USD, margined and settled in the coin (contract = 100 USD for BTC).
        rows.append(MarketInfo("binance", f"{base}/USD:{base}", f"{base}USD_PERP", P, base, "USD", base, funding_interval_h=8.0))
    # Hyperliquid perps: ccxt's market id is the asset index in the `meta` universe.
    # ccxt upper-cases the base (coin "kPEPE" -> "KPEPE/USDC:USDC"); the coin stays the wire id.
    for index, coin in ((0, "BTC"), (1, "ETH"), (4, "DYDX"), (5, "SOL"), (12, "DOGE"), (15, "kPEPE")):
        base = coin.upper()
        rows.append(MarketInfo("hyperliquid", f"{base}/USDC:USDC", coin, P, base, "USDC", "USDC", ccxt_id=str(index), funding_interval_h=1.0))
    return rows


_SUFFIX_PERP = re.compile(r"^(?P<body>.+?)[-_]?(?:PERP|SWAP)$", re.IGNORECASE)


def _squash(text: str) -> str:
    """Upper-case and drop separators: the key under which native spellings collide."""
    return re.sub(r"[-_/:]", "", text).upper()


class Markets:
    """A registry of known markets per exchange; see the module docstring."""

    def __init__(self, markets: list[MarketInfo] | None = None):
        self._by_symbol: dict[tuple[str, str], MarketInfo] = {}
        for m in markets if markets is not None else _builtin():
            self._add(m)

    def _add(self, m: MarketInfo) -> None:
        self._by_symbol[(m.exchange, m.symbol)] = m

    # -- metadata in ------------------------------------------------------------------
    def set_markets(self, exchange: str, markets) -> int:
        """Merge ccxt market structures (a list, or ``exchange.markets``' dict) for ``exchange``.

        Returns the number of markets merged. Options and markets without a symbol are skipped.
        """
        _check_exchange(exchange)
        values = markets.values() if isinstance(markets, dict) else markets
        n = 0
        for mk in values:
            mtype = mk.get("type")
            if mtype not in ("spot", "swap", "future") or not mk.get("symbol"):
                continue
            ccxt_id = str(mk["id"])
            native = (mk.get("baseName") or ccxt_id) if exchange == "hyperliquid" else ccxt_id
            info = mk.get("info") or {}
            interval = None
            if exchange == "bybit" and info.get("fundingInterval"):
                interval = float(info["fundingInterval"]) / 60.0
            elif exchange == "hyperliquid":
                interval = 1.0
            elif mtype != "spot":
                interval = 8.0
            self._add(
                MarketInfo(
                    exchange,
                    mk["symbol"],
                    native,
                    MarketType(mtype),
                    mk["base"],
                    mk["quote"],
                    mk.get("settle"),
                    ccxt_id=ccxt_id if ccxt_id != native else None,
                    funding_interval_h=interval,
                )
            )
            n += 1
        return n

    def install(self, exchange) -> None:
        """Give a ccxt exchange object this registry's markets (no ``load_markets`` needed)."""
        exchange.set_markets([m.ccxt_market() for m in self.markets(exchange.id)])

    # -- lookups ----------------------------------------------------------------------
    def markets(self, exchange: str) -> list[MarketInfo]:
        _check_exchange(exchange)
        return [m for (ex, _), m in self._by_symbol.items() if ex == exchange]

    def info(self, exchange: str, symbol: str, *, market_type: MarketType | None = None) -> MarketInfo:
        """The market named ``symbol`` (unified, native or suffixed) on ``exchange``.

        Raises
        ------
        SymbolNotFound
            unknown name (message lists close matches) or a bare native id that is both a
            spot and a derivative market and ``market_type`` was not given.
        """
        exchange = _check_exchange(exchange)
        if not isinstance(symbol, str) or not symbol.strip():
            raise SymbolNotFound(f"{exchange}: symbol must be a non-empty string, got {symbol!r}")
        text = symbol.strip()
        exact = self._by_symbol.get((exchange, text))
        if exact is not None:
            return exact
        candidates = self.markets(exchange)
        want = market_type
        # the venue's own id as is (BTCUSD_PERP, BTCUSDT_210924) ...
        hits = [c for c in candidates if c.native.upper() == text.upper() and (want is None or c.type is want)]
        body = text
        m = _SUFFIX_PERP.match(text)
        if not hits and m:
            body, want = m.group("body"), MarketType.SWAP
        key = _squash(body)
        typed = [c for c in candidates if want is None or c.type is want]
        if not hits:  # ... then spelled with separators or a -PERP suffix ...
            hits = [c for c in typed if _squash(c.native) == key]
        if not hits:  # ... then the pair spelled any way ("BTC-USDT")
            hits = [c for c in typed if c.type is not MarketType.FUTURE and _squash(c.symbol.split(":")[0]) == key]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            # Hyperliquid's coin "BTC" squashes like nothing else; a pair squashes like
            # both its spot and perp markets: ask for the type rather than guess.
            raise SymbolNotFound(
                f"{exchange}: {symbol!r} is ambiguous, it names {sorted(c.symbol for c in hits)}; "
                f"pass market_type=MarketType.SPOT or SWAP, or use the unified symbol"
            )
        names = sorted({c.symbol for c in candidates} | {c.native for c in candidates})
        close = difflib.get_close_matches(text, names, n=5, cutoff=0.5) or difflib.get_close_matches(
            text.upper(), [n.upper() for n in names], n=5, cutoff=0.5
        )
        kind = f" ({want.value})" if want is not None else ""
        raise SymbolNotFound(
            f"{exchange}: unknown market {symbol!r}{kind}; close matches: {close or 'none'}; "
            f"load the venue's markets with Markets.set_markets(exchange, ccxt_exchange.markets)"
        )

    def resolve(self, exchange: str, symbol: str, *, market_type: MarketType | None = None) -> str:
        """ccxt unified symbol of ``symbol`` on ``exchange`` (see ``info``)."""
        return self.info(exchange, symbol, market_type=market_type).symbol

    def tickstore_symbol(self, exchange: str, symbol: str, *, market_type: MarketType | None = None) -> str:
        """``<exchange>:<unified>`` for a native, suffixed or unified name."""
        return self.info(exchange, symbol, market_type=market_type).tickstore

    def native_id(self, exchange: str, symbol: str) -> str:
        """The venue's wire id of a unified (or any accepted) name."""
        return self.info(exchange, symbol).native

    def venue_info(self, venue: str, symbol: str) -> MarketInfo:
        """The market of a tickstore symbol that must belong to ``venue``.

        Raises ``SymbolError`` naming the venue and an example when it does not.
        """
        exchange, _, unified = str(symbol).partition(":")
        if exchange != venue or not unified:
            raise SymbolError(f"{symbol!r} is not a {venue} tickstore symbol like {EXAMPLES[venue]!r}")
        return self.info(venue, unified)

    def from_tickstore(self, symbol: str) -> MarketInfo:
        """The market of a tickstore symbol ``<exchange>:<unified>``."""
        exchange, unified = split_symbol(symbol)
        return self.info(exchange, unified)


def _check_exchange(exchange: str) -> str:
    if exchange not in EXCHANGES:
        close = difflib.get_close_matches(str(exchange), EXCHANGES, n=3, cutoff=0.4)
        raise SymbolNotFound(f"unknown exchange {exchange!r}; known: {list(EXCHANGES)}; close matches: {close or 'none'}")
    return exchange


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"bybit:BTC/USDT:USDT"`` -> ``("bybit", "BTC/USDT:USDT")``.

    Raises ``SymbolError`` when the text has no ``<exchange>:`` prefix or names an unknown exchange.
    """
    exchange, sep, unified = str(symbol).partition(":")
    if not sep or not unified:
        raise SymbolError(f"tickstore symbol must be '<exchange>:<ccxt unified symbol>', got {symbol!r}")
    if exchange not in EXCHANGES:
        raise SymbolNotFound(
            f"tickstore symbol {symbol!r} starts with unknown exchange {exchange!r}; known: {list(EXCHANGES)}"
        )
    return exchange, unified


#: The process-wide registry: the built-in table plus whatever ``set_markets`` merged.
MARKETS = Markets()
resolve = MARKETS.resolve
tickstore_symbol = MARKETS.tickstore_symbol
native_id = MARKETS.native_id
