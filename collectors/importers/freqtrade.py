"""freqtrade data folders (https://www.freqtrade.io/en/stable/data-download/).

::

    user_data/data/<exchange>/<PAIR>-<timeframe>.<ext>                      spot candles
    user_data/data/<exchange>/futures/<PAIR>-<timeframe>-<candle type>.<ext>  futures
        PAIR: the ccxt symbol with / : and the like made _ (freqtrade's pair_to_filename):
              BTC_USDT (spot), BTC_USDT_USDT (a perpetual: BTC/USDT:USDT)
        timeframe: 1m ... 1w; calendar months are written 1Mo (1M on case-blind disks)
        candle type: futures | mark | index | premiumIndex | funding_rate
        ext (--data-format-ohlcv): feather (default), parquet, json, json.gz (jsongz)
        columns: date (UTC), open, high, low, close, volume; json/jsongz files hold
        [[epoch ms, open, high, low, close, volume], ...]

    spot, futures  -> ohlcv_<timeframe>
    mark, index, premiumIndex -> mark_ohlcv_<tf>, index_ohlcv_<tf>, premium_ohlcv_<tf> (created:
                     bars of those prices have no built-in table)
    funding_rate   -> funding: ``date`` is the settlement time, snapped to the hour
                     (``collectors.funding.settlement_times``), ``open`` the rate; the interval
                     from the spacing of the settlements (the timeframe for a lone row)

``<PAIR>-trades.<ext>`` files and other candle types (``open_interest``) are refused with a
message: freqtrade keeps ccxt's ``fetch_trades`` answers there, which on Binance are
aggregate trades without their first/last trade ids (neither a ``trades`` nor an
``agg_trades`` row). The exchange comes from the folder (``data/<exchange>/``) or
``--venue``; freqtrade's ``binanceusdm`` is Binance USD-M.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from collectors.funding import SettlementError, funding_intervals, settlement_times

from .core import (
    DataImportError,
    Format,
    ImportOptions,
    MalformedInput,
    Member,
    MissingOption,
    Sink,
    epoch_to_ns,
    load_json,
    ohlcv_frame,
    ohlcv_schema,
    ohlcv_table,
    user_symbol,
    utc_index,
)
from .detect import Detected

__all__ = ["sniff", "parse"]

_EXT = r"\.(?:feather|parquet|json|json\.gz)$"
_NAME = re.compile(r"^(?P<pair>[A-Za-z0-9]+_[A-Za-z0-9]+(?:_[A-Za-z0-9]+)?(?:-\d{6})?)-(?P<tf>\d+(?:Mo|mo|s|m|h|d|w|M|y))"
                   r"(?:-(?P<type>[A-Za-z_]+))?" + _EXT)
_TRADES = re.compile(r"^(?P<pair>[A-Za-z0-9_]+(?:-\d{6})?)-trades" + _EXT)
_TYPES = ("futures", "mark", "index", "premiumIndex", "funding_rate", "spot")
_EXCHANGES = {"binance": "binance", "binanceusdm": "binance", "binancecoinm": "binance", "binanceus": "binanceus",
              "bybit": "bybit", "hyperliquid": "hyperliquid"}
_PARQUET = b"PAR1"
_PRICE = {"mark": "mark", "index": "index", "premiumIndex": "premium"}
_ARROW = b"ARROW1"


def sniff(member: Member, head: bytes, options: ImportOptions, fmt: Format) -> Detected | None:
    where = member.where()
    name = member.path.name
    m = _NAME.match(name)
    if m is None:
        if _TRADES.match(name) and (head.startswith((_ARROW, _PARQUET)) or _rows_of(head) == 7):
            raise DataImportError(f"{where}: freqtrade trade files are not imported: they hold ccxt fetch_trades "
                                  f"answers, on Binance aggregate trades without their first/last trade ids; import "
                                  f"the venue's own trade files (Binance's archive, Bybit's history) instead")
        return None
    if not (head.startswith((_ARROW, _PARQUET)) or _rows_of(head) == 6):
        return None  # not freqtrade's columns (a REST body named like one goes to its own format)
    if m.group("type") is not None and m.group("type") not in _TYPES:
        raise DataImportError(f"{where}: freqtrade candle type {m.group('type')!r} is not imported; "
                              f"the stored types are {list(_TYPES)}")
    parts = [p for p in member.path.parent.parts]
    futures = bool(parts) and parts[-1] == "futures"
    folder = parts[-2] if futures and len(parts) > 1 else (parts[-1] if parts else "")
    venue = options.venue or _EXCHANGES.get(folder)
    if venue is None:
        raise MissingOption(f"{where}: the folder {folder!r} is not a freqtrade exchange folder the store knows "
                            f"({sorted(_EXCHANGES)}); pass --venue")
    pair = m.group("pair").upper().split("_")
    ctype = m.group("type") or ("futures" if futures else "spot")
    unified = f"{pair[0]}/{pair[1]}" + (f":{pair[2]}" if len(pair) == 3 else "")
    if ctype != "spot" and len(pair) == 2:
        unified += f":{pair[1]}"  # freqtrade futures pairs are settled in the quote (linear)
    sym = user_symbol(options, venue, options.market, where=where) or f"{venue}:{unified}"
    kind = {"futures": "ohlcv", "spot": "ohlcv", "funding_rate": "funding_rate"}.get(ctype, ctype)
    tf = m.group("tf")
    tf = tf[:-2] + "M" if tf.endswith(("Mo", "mo")) else tf  # freqtrade writes 1M as 1Mo
    return Detected(Format.FREQTRADE, kind, venue, None, sym, {"interval": tf})


def _rows_of(head: bytes) -> int | None:
    """The number of values in the first row of a JSON array of arrays (freqtrade's json:
    6 for candles, 7 for trades), else None."""
    m = re.match(rb"\s*\[\s*\[([^\[\]]*)\]", head)
    return m.group(1).count(b",") + 1 if m else None


def _read(member: Member) -> pd.DataFrame:
    where = member.where()
    head = member.head(8)
    if head.startswith((_ARROW, _PARQUET)):
        import pyarrow as pa
        import pyarrow.feather as feather
        import pyarrow.parquet as pq

        what = "feather" if head.startswith(_ARROW) else "parquet"
        try:
            buf = pa.BufferReader(member.read())
            df = (feather.read_table(buf) if what == "feather" else pq.read_table(buf)).to_pandas()
        except (pa.ArrowInvalid, OSError) as exc:
            raise MalformedInput(where, None, f"not a readable {what} file ({exc})") from None
        missing = {"date", "open", "high", "low", "close", "volume"} - set(df.columns)
        if missing:
            raise MalformedInput(where, None, f"missing columns {sorted(missing)}; has {list(df.columns)}")
        date = pd.DatetimeIndex(df["date"])
        if date.tz is None:
            raise MalformedInput(where, None, "column date is naive; freqtrade writes UTC times")
        ts = date.tz_convert("UTC").as_unit("ns").asi8
    else:
        rows = load_json(member)
        try:
            arr = np.array(rows, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise MalformedInput(where, None, f"expected [[date ms, open, high, low, close, volume], ...] ({exc})") from None
        if arr.ndim != 2 or arr.shape[1] != 6:
            raise MalformedInput(where, None, f"expected rows of 6 values, got shape {arr.shape}")
        ts = epoch_to_ns(arr[:, 0].astype(np.int64), where=where, what="date")
        df = pd.DataFrame(arr[:, 1:], columns=["open", "high", "low", "close", "volume"])
    bad = df[["open", "high", "low", "close", "volume"]].isna().any(axis=1).to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise MalformedInput(where, None, f"row {i} ({pd.Timestamp(int(ts[i]), tz='UTC')}) has an empty value")
    return pd.DataFrame({c: df[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")},
                        index=utc_index(ts))


def parse(member: Member, det: Detected, options: ImportOptions, sink: Sink) -> None:
    where = member.where()
    df = _read(member)
    tf = det.hints["interval"]
    if det.kind == "funding_rate":
        try:
            snapped = settlement_times(df.index, source=where)
        except SettlementError as exc:
            raise MalformedInput(where, None, str(exc).split(": ", 1)[-1]) from None
        hours = pd.Timedelta(tf.replace("M", "MS") if tf.endswith("M") else tf).total_seconds() / 3600
        t = snapped.asi8
        sink.frame("funding", det.symbol, pd.DataFrame({
            "rate": df["open"].to_numpy(), "interval_h": funding_intervals(t, nominal=hours),
        }, index=utc_index(t)))
        return
    price = _PRICE.get(det.kind)
    table = ohlcv_table(tf) if price is None else f"{price}_{ohlcv_table(tf)}"
    schema = ohlcv_schema(table, what=f"{tf} OHLCV bars" + (f" of the {price} price" if price else ""))
    if det.kind not in ("ohlcv",) and price is None:
        raise DataImportError(f"{where}: freqtrade candle type {det.kind!r} is not stored")
    sink.frame(table, det.symbol, ohlcv_frame(df.index.asi8, df["open"], df["high"], df["low"], df["close"], df["volume"]), schema)
