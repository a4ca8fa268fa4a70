"""Symbols: venue-native ids <-> ccxt unified symbols <-> tickstore symbols.

Three spellings of one market, and the only place that converts between them::

    venue-native id     ccxt unified        tickstore symbol
    BTCUSDT  (binance)  BTC/USDT:USDT       binance:BTC/USDT:USDT     USD-M perpetual
    BTCUSDT  (binance)  BTC/USDT            binance:BTC/USDT          spot
    BTCUSD_PERP         BTC/USD:BTC         binance:BTC/USD:BTC       COIN-M perpetual
    BTCUSDT  (us)       BTC/USDT            binanceus:BTC/USDT        Binance.US spot
    BTCUSDT  (bybit)    BTC/USDT:USDT       bybit:BTC/USDT:USDT       v5 linear (or spot)
    BTC      (hl)       BTC/USDC:USDC       hyperliquid:BTC/USDC:USDC perpetual

Venues are ccxt exchange ids: ``binance`` and ``binanceus`` (Binance.US) speak one wire
protocol but are different venues (their own books, their trade ids collide), so a
symbol always names which one; ``venue_of_url`` tells them apart by host and
``binance_venues(market)`` says which venues a Binance market can come from (futures only
exist on ``binance``). Binance ids follow fixed rules (``binance_unified``,
``binance_native``: quote-asset suffixes, ``_PERP``/``_YYMMDD``), which every Binance id
conversion of the collectors uses (this module is the one mapping); ``register_binance``
declares a pair the rules cannot split.

A bare native id is ambiguous on Binance and Bybit (``BTCUSDT`` is both the spot pair and
the perpetual), so ``resolve`` takes ``market_type`` (the websocket endpoint or REST
category a frame came from knows it); suffixed forms (``BTCUSDT-PERP``, cryptofeed's
``BTC-USDT-PERP``) and unified symbols are unambiguous. Unknown names raise
``SymbolNotFound`` listing close matches (difflib).

Ids seen on the wire (a frame of the venue names them, so the market exists) go through
``Markets.wire_info``: the registry first, then the venue's own naming rules, which give
ccxt's unified symbol for every market the venue lists (checked against ccxt's parse of
the venues' recorded instrument lists)::

    bybit spot      <BASE><QUOTE>               BTC/USDT, MNT/USD1, BTC/RLUSD (known quotes)
    bybit linear    <BASE>USDT / <BASE>PERP      BTC/USDT:USDT / BTC/USDC:USDC (USDC perpetual)
                    <BASE>USDT-14AUG26           BTC/USDT:USDT-260814 (USDC futures: BTC-26DEC25)
    bybit inverse   <BASE>USD                    BTC/USD:BTC (inverse futures need the loaded
                                                 markets: their delivery date is not in the id)
    hyperliquid     <COIN>                       COIN/USDC:USDC (ccxt upper-cases: kPEPE -> KPEPE)

Hyperliquid spot ids (``@107``, ``PURR/USDC``) and builder-deployed perps (``xyz:TSLA``) are
refused with ``SymbolNotFound`` saying so: the collectors take Hyperliquid perpetuals of the
main dex only. User-typed names (configs, CLI) go through ``info`` and must be known.

Market metadata comes from ccxt where available: a registry starts from a small built-in
table (enough to run offline and in tests) and ``Markets.set_markets`` merges markets a
ccxt exchange loaded (``exchange.markets``) or any list of ccxt market structures.
``Markets.install(exchange)`` goes the other way: it hands the registry's markets to a
ccxt exchange through ``exchange.set_markets`` so no ``load_markets`` call ever needs the
internet.

Contract values (``contract_value``): a contract of an inverse (coin-margined) market is
worth a fixed amount of its quote currency, USD: Binance COIN-M 100 USD for BTC contracts
and 10 USD for every other coin (the ``contractSize`` of Binance's dapi exchangeInfo);
Bybit inverse 1 USD ("BTCUSD(inverse) is USD", Bybit v5 open-interest docs). A market
merged from ccxt keeps ccxt's ``contractSize``. Open interest is valued with it on every
path (``oi_value`` = contracts x contract value, in the quote currency; ``inverse_oi_value``).
"""

from __future__ import annotations

import datetime as _dt
import difflib
import enum
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from tickstore.errors import SymbolError

__all__ = [
    "BinanceMarket",
    "BINANCE_FAMILY",
    "binance_unified",
    "binance_native",
    "binance_market",
    "binance_venues",
    "is_coinm_id",
    "BYBIT_CATEGORIES",
    "register_binance",
    "venue_of_url",
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
    "contract_value",
    "inverse_oi_value",
]

#: ccxt exchange ids the collectors speak; tickstore symbols start with one of them.
EXCHANGES = ("binance", "binanceus", "bybit", "hyperliquid")
#: the venues that speak Binance's wire protocol (``collectors.exchanges.binance``)
BINANCE_FAMILY = ("binance", "binanceus")
EXAMPLES = {
    "binance": "binance:BTC/USDT:USDT",
    "binanceus": "binanceus:BTC/USDT",
    "bybit": "bybit:BTC/USDT:USDT",
    "hyperliquid": "hyperliquid:BTC/USDC:USDC",
}


class MarketType(enum.Enum):
    """ccxt's market ``type``: what a bare native id needs to become unambiguous."""

    SPOT = "spot"
    SWAP = "swap"  # perpetual
    FUTURE = "future"  # dated delivery contract


class SymbolNotFound(SymbolError):
    """A name matches no known market; the message lists close matches."""


# -- the Binance family: one set of id rules ---------------------------------------------------
class BinanceMarket(enum.Enum):
    """The three Binance markets (``collectors.exchanges.binance.Market`` is this class);
    they differ in hosts, ids and depth sequencing. Binance.US has ``SPOT`` only."""

    SPOT = "spot"
    USDM = "usdm"
    COINM = "coinm"

    @property
    def is_futures(self) -> bool:
        return self is not BinanceMarket.SPOT


# Longest first so that e.g. FDUSD wins over USD-like tails and USDT over DT.
_SPOT_QUOTES = tuple(
    sorted(
        "USDT FDUSD USDC BUSD TUSD USDP DAI BTC ETH BNB XRP TRX DOGE DOT EUR TRY GBP BRL AUD "
        "JPY RUB UAH ZAR NGN PLN RON ARS MXN COP CZK IDRT BIDR BKRW BVND PAX VAI UST AEUR EURI USD".split(),
        key=len,
        reverse=True,
    )
)
_DELIVERY = re.compile(r"^(?P<pair>[A-Z0-9]+)_(?P<expiry>\d{6})$")
_COINM_NATIVE = re.compile(r"^(?P<base>[A-Z0-9]+)USD_(?P<expiry>PERP|\d{6})$")
_UNIFIED = re.compile(r"^(?P<base>[A-Z0-9]+)/(?P<quote>[A-Z0-9]+)(?::(?P<settle>[A-Z0-9]+)(?:-(?P<expiry>\d{6}))?)?$")

# Explicit (market, native) <-> unified pairs, consulted before the rules.
_REGISTERED: dict[tuple[BinanceMarket, str], str] = {}
_REGISTERED_BACK: dict[tuple[BinanceMarket, str], str] = {}


def register_binance(native: str, unified: str, market: BinanceMarket) -> None:
    """Declare a Binance id the suffix rules cannot split (e.g. a new spot quote asset)."""
    if not _UNIFIED.match(unified):
        raise SymbolNotFound(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    market = BinanceMarket(market)
    _REGISTERED[(market, native.upper())] = unified
    _REGISTERED_BACK[(market, unified)] = native.upper()


def binance_market(unified: str) -> BinanceMarket:
    """``BTC/USDT`` -> SPOT, ``BTC/USDT:USDT`` -> USDM (settle = quote), ``BTC/USD:BTC`` -> COINM."""
    m = _UNIFIED.match(unified)
    if not m:
        raise SymbolNotFound(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    settle = m["settle"]
    if settle is None:
        return BinanceMarket.SPOT
    if settle == m["quote"]:
        return BinanceMarket.USDM
    if settle == m["base"]:
        return BinanceMarket.COINM
    raise SymbolNotFound(f"{unified!r}: settle {settle!r} is neither the quote nor the base asset")


def binance_native(unified: str, market: BinanceMarket | None = None) -> str:
    """ccxt unified symbol -> Binance id, e.g. ``BTC/USD:BTC`` -> ``BTCUSD_PERP``."""
    market = BinanceMarket(market) if market is not None else binance_market(unified)
    hit = _REGISTERED_BACK.get((market, unified))
    if hit:
        return hit
    m = _UNIFIED.match(unified)
    if not m:
        raise SymbolNotFound(f"{unified!r} is not a ccxt unified symbol like 'BTC/USDT' or 'BTC/USDT:USDT'")
    base, quote, settle, expiry = m["base"], m["quote"], m["settle"], m["expiry"]
    if market is BinanceMarket.SPOT:
        if settle:
            raise SymbolNotFound(f"{unified!r} is a derivative symbol, not a {market.value} one")
        return base + quote
    actual = binance_market(unified)
    if actual is not market:
        raise SymbolNotFound(f"{unified!r} is not a {market.value} symbol (it is {actual.value})")
    if market is BinanceMarket.USDM:
        return base + quote + (f"_{expiry}" if expiry else "")
    return f"{base}{quote}_{expiry or 'PERP'}"


def binance_unified(native: str, market: BinanceMarket) -> str:
    """Binance id -> ccxt unified symbol, e.g. (``BTCUSD_PERP``, COINM) -> ``BTC/USD:BTC``."""
    market = BinanceMarket(market)
    native = native.upper()
    hit = _REGISTERED.get((market, native))
    if hit:
        return hit
    if market is BinanceMarket.COINM:
        m = _COINM_NATIVE.match(native)
        if not m:
            raise SymbolNotFound(f"{native!r} is not a COIN-M id like 'BTCUSD_PERP' or 'BTCUSD_240927'")
        base, expiry = m["base"], m["expiry"]
        return f"{base}/USD:{base}" + ("" if expiry == "PERP" else f"-{expiry}")
    expiry = None
    if market is BinanceMarket.USDM:
        m = _DELIVERY.match(native)
        if m:
            native, expiry = m["pair"], m["expiry"]
    for quote in _SPOT_QUOTES:
        if native.endswith(quote) and len(native) > len(quote):
            base = native[: -len(quote)]
            if market is BinanceMarket.SPOT:
                return f"{base}/{quote}"
            return f"{base}/{quote}:{quote}" + (f"-{expiry}" if expiry else "")
    raise SymbolNotFound(
        f"cannot split {market.value} id {native!r} into base/quote (known quotes: {', '.join(_SPOT_QUOTES)}); "
        f"declare it with register_symbol({native!r}, 'BASE/QUOTE...', Market.{market.name})"
    )


def is_coinm_id(native: str) -> bool:
    """Whether a Binance id is a COIN-M contract's (``BTCUSD_PERP``, ``BTCUSD_240927``)."""
    return bool(_COINM_NATIVE.match(native.upper()))


def binance_venues(market: BinanceMarket) -> tuple[str, ...]:
    """The venues a Binance-protocol market can be on: futures exist on ``binance`` only,
    spot on both ``binance`` and ``binanceus`` (frames alone cannot tell those apart)."""
    return ("binance", "binanceus") if BinanceMarket(market) is BinanceMarket.SPOT else ("binance",)


_VENUE_HOSTS = (
    ("binance.us", "binanceus"),
    ("binance.com", "binance"),
    ("binance.vision", "binance"),  # the public data archive
    ("binancefuture.com", "binance"),  # the futures testnet
    ("bybit.com", "bybit"),
    ("bytick.com", "bybit"),
    ("hyperliquid.xyz", "hyperliquid"),
    ("hyperliquid-testnet.xyz", "hyperliquid"),
)


def venue_of_url(url: str) -> str | None:
    """The ccxt venue id a websocket/REST URL belongs to (``wss://stream.binance.us:9443``
    -> ``binanceus``), None when the host does not say (e.g. a local simulator)."""
    host = (urlsplit(str(url)).hostname or "").lower()
    for suffix, venue in _VENUE_HOSTS:
        if host == suffix or host.endswith("." + suffix):
            return venue
    return None


def _binance_info(exchange: str, native: str, market: BinanceMarket) -> "MarketInfo":
    """A ``MarketInfo`` derived by the Binance id rules (markets not in the registry)."""
    unified = binance_unified(native, market)
    m = _UNIFIED.match(unified)
    kind = MarketType.SPOT if market is BinanceMarket.SPOT else (MarketType.FUTURE if m["expiry"] else MarketType.SWAP)
    return MarketInfo(
        exchange, unified, native.upper(), kind, m["base"], m["quote"], m["settle"],
        funding_interval_h=8.0 if kind is MarketType.SWAP else None,
    )


# -- Bybit and Hyperliquid ids seen on the wire: the venues' naming rules ----------------------
#: Bybit v5 categories whose ids ``Markets.wire_info`` can name
BYBIT_CATEGORIES = ("spot", "linear", "inverse")
# Quote coins of Bybit spot pairs, longest first (so XUSD wins over USD, USD1 over nothing).
_BYBIT_SPOT_QUOTES = tuple(
    sorted("USDT USDC USDE USD1 RLUSD XUSD EUR BTC ETH SOL BRL BRZ GBP AED PLN TRY DAI USD".split(), key=len, reverse=True)
)
_BYBIT_USDT_PERP = re.compile(r"^(?P<base>[A-Z0-9]+)USDT$")
_BYBIT_USDC_PERP = re.compile(r"^(?P<base>[A-Z0-9]+)PERP$")
_BYBIT_DATED = re.compile(r"^(?P<base>[A-Z0-9]+?)(?P<usdt>USDT)?-(?P<day>\d{2})(?P<mon>[A-Z]{3})(?P<yy>\d{2})$")
_BYBIT_INVERSE_PERP = re.compile(r"^(?P<base>[A-Z0-9]+)USD$")
_MONTHS = {m: i for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split(), 1)}
_CCXT_COMMON = {"XBT": "BTC", "BCHSV": "BSV"}  # ccxt's commonCurrencies (safeCurrencyCode)
_HL_COIN = re.compile(r"^[A-Za-z0-9]+$")


def _code(coin: str) -> str:
    """ccxt's currency code of a venue coin name (upper case, common aliases)."""
    coin = coin.upper()
    return _CCXT_COMMON.get(coin, coin)


def bybit_wire_info(native: str, category: str) -> "MarketInfo":
    """The market of a Bybit v5 id in ``category`` (``spot``/``linear``/``inverse``) by
    Bybit's naming, as ccxt names it (see the module docstring); ``SymbolNotFound`` if the
    id follows none of the rules."""
    if category not in BYBIT_CATEGORIES:
        raise SymbolNotFound(f"bybit category must be one of {list(BYBIT_CATEGORIES)}, got {category!r}")
    nid = str(native).upper()
    S, P, F = MarketType.SPOT, MarketType.SWAP, MarketType.FUTURE
    if category == "spot":
        for quote in _BYBIT_SPOT_QUOTES:
            if nid.endswith(quote) and len(nid) > len(quote):
                base = _code(nid[: -len(quote)])
                return MarketInfo("bybit", f"{base}/{quote}", nid, S, base, quote)
        raise SymbolNotFound(
            f"bybit spot id {native!r} ends in no known quote coin ({', '.join(_BYBIT_SPOT_QUOTES)}); "
            f"load Bybit's markets with Markets.set_markets('bybit', ccxt_exchange.markets)"
        )
    if category == "linear":
        m = _BYBIT_DATED.match(nid)
        if m:
            try:
                day = _dt.date(2000 + int(m["yy"]), _MONTHS[m["mon"]], int(m["day"]))
            except (KeyError, ValueError):
                raise SymbolNotFound(f"bybit linear id {native!r}: {m['day']}{m['mon']}{m['yy']} is not a date") from None
            base, quote = _code(m["base"]), "USDT" if m["usdt"] else "USDC"
            return MarketInfo("bybit", f"{base}/{quote}:{quote}-{day:%y%m%d}", nid, F, base, quote, quote)
        for rx, quote in ((_BYBIT_USDT_PERP, "USDT"), (_BYBIT_USDC_PERP, "USDC")):
            m = rx.match(nid)
            if m:
                base = _code(m["base"])
                return MarketInfo("bybit", f"{base}/{quote}:{quote}", nid, P, base, quote, quote)
        raise SymbolNotFound(
            f"bybit linear id {native!r} is none of <BASE>USDT, <BASE>PERP, <BASE>USDT-DDMMMYY, <BASE>-DDMMMYY; "
            f"load Bybit's markets with Markets.set_markets('bybit', ccxt_exchange.markets)"
        )
    m = _BYBIT_INVERSE_PERP.match(nid)
    if m:  # 1 contract = 1 USD, margined and settled in the coin
        base = _code(m["base"])
        return MarketInfo("bybit", f"{base}/USD:{base}", nid, P, base, "USD", base)
    raise SymbolNotFound(
        f"bybit inverse id {native!r} is not an inverse perpetual <BASE>USD; an inverse future's delivery date is "
        f"not in its id: load Bybit's markets with Markets.set_markets('bybit', ccxt_exchange.markets)"
    )


def hyperliquid_wire_info(coin: str) -> "MarketInfo":
    """The market of a Hyperliquid coin of the main perp dex (``BTC`` -> ``BTC/USDC:USDC``);
    ``SymbolNotFound`` for spot ids (``@107``, ``PURR/USDC``) and builder-deployed perps
    (``xyz:TSLA``), which the collectors do not take."""
    coin = str(coin)
    if coin.startswith("@") or "/" in coin:
        raise SymbolNotFound(
            f"hyperliquid {coin!r} is a spot market (spot ids are '@<index>' or 'PURR/USDC'); the collectors "
            f"store Hyperliquid perpetuals only"
        )
    if ":" in coin:
        raise SymbolNotFound(
            f"hyperliquid {coin!r} is a builder-deployed (HIP-3) perpetual: its collateral is not in the id; "
            f"load its dex's markets with Markets.set_markets('hyperliquid', ...) to store it"
        )
    if not _HL_COIN.match(coin):
        raise SymbolNotFound(f"hyperliquid coin {coin!r} is not a perpetual's name like 'BTC' or 'kPEPE'")
    base = _code(coin)
    return MarketInfo("hyperliquid", f"{base}/USDC:USDC", coin, MarketType.SWAP, base, "USDC", "USDC", funding_interval_h=1.0)


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
    contract_size: float | None = None  # ccxt's contractSize when merged from ccxt; None: the venue's rule

    @property
    def contract_value(self) -> float | None:
        """The quote-currency (USD) value of one contract of an inverse market; None for
        linear and spot markets (their contracts are the base coin: value them at a price)."""
        if self.type is MarketType.SPOT or self.linear:
            return None
        if self.contract_size is not None:
            return float(self.contract_size)
        return _inverse_rule(self.exchange, self.base)

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
            "contractSize": None if spot else (self.contract_value if not linear else 1.0),
            "precision": {"amount": None, "price": None},
            "limits": {"amount": {}, "price": {}, "cost": {}, "leverage": {}},
            "info": {"symbol": self.native},
        }
        if self.exchange == "hyperliquid":
            market["baseName"] = self.native
            market["info"] = {"name": self.native}
        if self.exchange == "binance" and linear is False:  # dapi's pair + contractType (ccxt's OI history reads them)
            market["info"].update(pair=f"{self.base}{self.quote}", contractType=(
                "PERPETUAL" if self.type is MarketType.SWAP else "CURRENT_QUARTER"))
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
    for base in ("BTC", "ETH"):  # Binance.US: spot only, also quoted in USD
        rows.append(MarketInfo("binanceus", f"{base}/USDT", f"{base}USDT", S, base, "USDT"))
        rows.append(MarketInfo("binanceus", f"{base}/USD", f"{base}USD", S, base, "USD"))
    for base in ("BTC", "ETH"):
        # COIN-M: quoted in USD, margined and settled in the coin (contract = 100 USD for BTC).
        rows.append(MarketInfo("binance", f"{base}/USD:{base}", f"{base}USD_PERP", P, base, "USD", base, funding_interval_h=8.0))
        # Bybit inverse perpetuals: 1 contract = 1 USD, margined and settled in the coin
        rows.append(MarketInfo("bybit", f"{base}/USD:{base}", f"{base}USD", P, base, "USD", base, funding_interval_h=8.0))
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
                    contract_size=float(mk["contractSize"]) if mk.get("contractSize") and mtype != "spot" else None,
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
        if not hits and exchange in BINANCE_FAMILY:  # ... then Binance's id rules
            derived = self._binance_rules(exchange, text, market_type)
            if derived is not None:
                return derived
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

    def _binance_rules(self, exchange: str, text: str, market_type: MarketType | None) -> MarketInfo | None:
        """A Binance-family market the registry does not hold, derived by the id rules:
        any unified symbol, or a native id with the ``market_type`` that makes it unambiguous."""
        try:
            if _UNIFIED.match(text):
                market = binance_market(text)
                native = binance_native(text, market)
            elif market_type is not None:
                native = text.upper()
                coinm = bool(_COINM_NATIVE.match(native))
                market = BinanceMarket.SPOT if market_type is MarketType.SPOT else BinanceMarket.COINM if coinm else BinanceMarket.USDM
            else:
                return None
            info = _binance_info(exchange, native, market)
        except SymbolNotFound:
            return None
        if market_type is not None and info.type is not market_type:
            return None
        if exchange == "binanceus" and market is not BinanceMarket.SPOT:
            raise SymbolNotFound(f"binanceus: {text!r} is a {market.value} market; Binance.US lists spot markets only")
        return info

    def wire_info(self, exchange: str, native: str, *, category: str | None = None) -> MarketInfo:
        """The market of a venue-native id read from a frame (the venue names it, so it
        exists): the registry's market of that id, else the venue's naming rules
        (``bybit_wire_info``, ``hyperliquid_wire_info``). ``category``: Bybit's
        ``spot``/``linear``/``inverse`` (a bare id is both a spot pair and a perpetual).

        Raises ``SymbolNotFound`` saying why (a Hyperliquid spot id, an id no rule fits).
        """
        exchange = _check_exchange(exchange)
        if exchange == "bybit":
            if category not in BYBIT_CATEGORIES:
                raise SymbolNotFound(f"bybit id {native!r} needs its category, one of {list(BYBIT_CATEGORIES)}; got {category!r}")
            want = (MarketType.SPOT,) if category == "spot" else (MarketType.SWAP, MarketType.FUTURE)
            inverse = category == "inverse"
            nid = str(native).upper()
            for c in self.markets("bybit"):
                if c.native.upper() == nid and c.type in want and (c.type is MarketType.SPOT or c.linear is not inverse):
                    return c
            return bybit_wire_info(native, category)
        if exchange == "hyperliquid":
            for c in self.markets("hyperliquid"):
                if c.native == native and c.type is not MarketType.SPOT:
                    return c
            return hyperliquid_wire_info(native)
        # Binance ids: binance_unified (collectors.exchanges.binance.to_tickstore) by market
        raise SymbolNotFound(f"{exchange} wire ids are named by binance_unified(native, market), not wire_info")

    def wire_symbol(self, exchange: str, native: str, *, category: str | None = None) -> str:
        """``<exchange>:<unified>`` of a venue-native id read from a frame (see ``wire_info``)."""
        return self.wire_info(exchange, native, category=category).tickstore

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


def _inverse_rule(exchange: str, base: str) -> float:
    """USD per contract of an inverse market by the venue's rule (see the module docstring)."""
    if exchange in BINANCE_FAMILY:
        return 100.0 if base == "BTC" else 10.0
    if exchange == "bybit":
        return 1.0
    raise SymbolNotFound(f"{exchange} lists no inverse contracts; no contract value for {base!r}")


_INVERSE = re.compile(r"^(?P<base>[^/]+)/(?P<quote>[^:]+):(?P<settle>[^-]+)(?:-\d{6})?$")


def contract_value(symbol: str, markets: "Markets | None" = None) -> float | None:
    """The quote-currency value of one contract of a tickstore symbol's inverse market
    (``binance:BTC/USD:BTC`` -> 100.0, ``binance:ETH/USD:ETH`` -> 10.0, ``bybit:BTC/USD:BTC``
    -> 1.0); None for linear and spot markets. A market merged from ccxt (``set_markets``)
    uses ccxt's ``contractSize``; others the venue's rule."""
    exchange, unified = split_symbol(symbol)
    m = _INVERSE.match(unified)
    if m is None or m["settle"] == m["quote"]:
        return None  # spot, or settled in the quote currency: linear
    known = (markets or MARKETS)._by_symbol.get((exchange, unified))
    if known is not None:
        return known.contract_value
    return _inverse_rule(exchange, m["base"])


def inverse_oi_value(symbol: str, contracts, markets: "Markets | None" = None):
    """Open interest of ``contracts`` of an inverse market in its quote currency (USD): the
    ``oi_value`` every path stores for it; None for linear and spot markets (whose paths
    value the base-coin amount at a price or take the venue's quote value)."""
    cv = contract_value(symbol, markets)
    return None if cv is None else contracts * cv


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
