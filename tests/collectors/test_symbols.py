"""collectors.symbols: native <-> unified <-> tickstore symbols, with ccxt metadata."""

from __future__ import annotations

import json

import ccxt
import pytest
import yaml

from collectors.symbols import (
    MARKETS,
    Markets,
    MarketType,
    SymbolNotFound,
    native_id,
    resolve,
    split_symbol,
    tickstore_symbol,
)
from tickstore.errors import SymbolError, TickstoreError


@pytest.mark.parametrize(
    "exchange, text, market_type, unified",
    [
        ("binance", "BTC/USDT:USDT", None, "BTC/USDT:USDT"),
        ("binance", "BTCUSDT", MarketType.SWAP, "BTC/USDT:USDT"),
        ("binance", "BTCUSDT", MarketType.SPOT, "BTC/USDT"),
        ("binance", "btcusdt", MarketType.SPOT, "BTC/USDT"),  # stream names are lower case
        ("binance", "BTCUSDT-PERP", None, "BTC/USDT:USDT"),
        ("binance", "BTC-USDT-PERP", None, "BTC/USDT:USDT"),  # cryptofeed spelling
        ("binance", "BTCUSD_PERP", None, "BTC/USD:BTC"),  # COIN-M
        ("binance", "BTC-USDT", MarketType.SPOT, "BTC/USDT"),
        ("bybit", "ETHUSDT", MarketType.SWAP, "ETH/USDT:USDT"),
        ("bybit", "ETH-USDT-PERP", None, "ETH/USDT:USDT"),
        ("hyperliquid", "BTC", None, "BTC/USDC:USDC"),
        ("hyperliquid", "kPEPE", None, "KPEPE/USDC:USDC"),
        ("hyperliquid", "BTC-PERP", None, "BTC/USDC:USDC"),
    ],
)
def test_resolve_native_suffixed_and_unified(exchange, text, market_type, unified):
    assert resolve(exchange, text, market_type=market_type) == unified
    assert tickstore_symbol(exchange, text, market_type=market_type) == f"{exchange}:{unified}"
    # and back: the unified symbol maps to the venue's wire id, which maps to it again
    native = native_id(exchange, unified)
    kind = MARKETS.info(exchange, unified).type
    assert resolve(exchange, native, market_type=kind) == unified


def test_bare_native_id_that_is_spot_and_perp_is_ambiguous():
    with pytest.raises(SymbolNotFound) as err:
        resolve("bybit", "BTCUSDT")
    msg = str(err.value)
    assert "ambiguous" in msg and "BTC/USDT" in msg and "BTC/USDT:USDT" in msg and "market_type" in msg
    assert isinstance(err.value, TickstoreError) and isinstance(err.value, ValueError)


def test_unknown_symbol_lists_close_matches():
    with pytest.raises(SymbolNotFound) as err:
        resolve("binance", "BTCUSTD")
    msg = str(err.value)
    assert "'BTCUSTD'" in msg and "BTCUSDT" in msg and "close matches" in msg
    with pytest.raises(SymbolNotFound, match="'ETHH'.*ETH"):
        resolve("hyperliquid", "ETHH")


def test_unknown_exchange_and_malformed_tickstore_symbols():
    with pytest.raises(SymbolNotFound, match="'bybt'.*bybit"):
        resolve("bybt", "BTCUSDT")
    with pytest.raises(SymbolError, match="BTC/USDT:USDT"):
        split_symbol("BTC/USDT:USDT")  # no exchange prefix: the ':' is the settle separator
    with pytest.raises(SymbolError, match="'kraken'"):
        split_symbol("kraken:BTC/USD")
    assert split_symbol("bybit:BTC/USDT:USDT") == ("bybit", "BTC/USDT:USDT")
    assert MARKETS.from_tickstore("hyperliquid:BTC/USDC:USDC").native == "BTC"
    with pytest.raises(SymbolNotFound):
        resolve("binance", "  ")


def test_set_markets_from_real_binance_exchange_info(data_dir):
    # the recorded GET /fapi/v1/exchangeInfo answer, parsed by ccxt itself
    line = (data_dir / "cryptofeed" / "BINANCE_FUTURES.0").read_text().splitlines()[0]
    info = json.loads(line.split(": ", 1)[1])
    parsed = [ccxt.binance().parse_market(s) for s in info["symbols"]]
    markets = Markets([])
    assert markets.set_markets("binance", parsed) == len(parsed)
    for raw, cm in zip(info["symbols"], parsed):
        m = markets.info("binance", raw["symbol"])
        assert m.native == raw["symbol"] and m.symbol == cm["symbol"]
        assert (m.base, m.quote) == (raw["baseAsset"], raw["quoteAsset"])
        assert m.type is MarketType(cm["type"])
    # the recording's delivery contract and the perpetual share a pair, not an id
    assert markets.resolve("binance", "BTCUSDT") == "BTC/USDT:USDT"
    assert markets.resolve("binance", "SUSHI-USDT-PERP") == "SUSHI/USDT:USDT"


def test_set_markets_from_real_hyperliquid_meta(data_dir):
    doc = yaml.safe_load((data_dir / "hyperliquid-python-sdk" / "test_get_funding_history[None].yaml").read_text())
    meta = next(json.loads(i["response"]["body"]["string"]) for i in doc["interactions"]
                if json.loads(i["request"]["body"])["type"] == "meta")
    ex = ccxt.hyperliquid()
    parsed = [ex.parse_market({**u, "baseId": i}) for i, u in enumerate(meta["universe"])]
    markets = Markets([])
    markets.set_markets("hyperliquid", parsed)
    for i, u in enumerate(meta["universe"]):
        m = markets.info("hyperliquid", u["name"])
        assert m.native == u["name"] and m.ccxt_id == str(i) and m.funding_interval_h == 1.0
    # the built-in offline table agrees with ccxt on the indexes it holds
    for m in MARKETS.markets("hyperliquid"):
        assert markets.info("hyperliquid", m.native).symbol == m.symbol
        assert markets.info("hyperliquid", m.native).ccxt_id == m.ccxt_id


def test_install_gives_ccxt_markets_without_a_request():
    for exchange, unified, wire_id in (
        ("binance", "BTC/USDT:USDT", "BTCUSDT"),
        ("bybit", "ETH/USDT", "ETHUSDT"),
        ("hyperliquid", "SOL/USDC:USDC", "5"),
    ):
        ex = getattr(ccxt, exchange)()
        MARKETS.install(ex)  # would raise on any HTTP: no markets request is made
        market = ex.market(unified)
        assert market["id"] == wire_id and market["symbol"] == unified
    assert ccxt.hyperliquid().safe_market_structure(MARKETS.info("hyperliquid", "BTC").ccxt_market())["baseName"] == "BTC"
