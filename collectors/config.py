"""What a collector runs from: ``CollectorConfig``, and its TOML form (``load_config``).

``collectors.collector.Collector`` runs one ``CollectorConfig``; ``collectors.daemon`` reads
several from one file (``[[feeds]]``) through ``read_toml`` and ``_config_from_doc``.
Every error is a ``CollectorError`` naming the field (and the file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tickstore.errors import TickstoreError

from .exchanges import BadFrame
from .exchanges.binance import MAX_FRAME_BYTES, Channel, Endpoints
from .journal import JournalConfig
from .session import BackoffPolicy
from .venues import Venue, feed_class

__all__ = ["CollectorConfig", "CollectorError", "STATUS_PREFIX", "load_config", "read_toml"]


class CollectorError(TickstoreError, ValueError):
    """A collector configuration that cannot run; the message names the field."""


@dataclass(frozen=True)
class CollectorConfig:
    """What to collect, from where, into which store.

    ``venue`` picks the exchange; ``symbols`` are its tickstore symbols (the market
    follows from the unified symbol: ``binance:BTC/USDT:USDT``, ``bybit:BTC/USDT``,
    ``hyperliquid:BTC/USDC:USDC``). ``channels`` apply to every symbol; ones a market lacks
    are skipped for it (spot has no mark or liquidations, Hyperliquid no liquidation
    stream; see ``collectors.venues`` for what each channel is on each venue), ones a venue
    never offers are refused. ``endpoints`` overrides the venue's hosts per market
    (``binance.Market``, ``bybit.Category`` or ``hyperliquid.Market`` keys: the simulator's
    127.0.0.1 ports); ``journal`` defaults to ``<store>-journal`` beside the store root
    (never inside it: the store owns its root), ``<store>-journal/<name>`` for a named feed
    of the daemon (``collectors.daemon``).

    ``partial_book_rows``: with partial-book channels only (Binance ``book5`` =
    ``depth5@100ms``, ...), ``"frames"`` stores every frame as a book row at its exchange
    time, ``"grid"`` samples them onto the ``book_interval_ms`` grid instead, ``"both"``
    does both; ``replay`` of the collector's journal takes the same option (same default).
    ``keep_diffs``: also store every depth diff in ``book_diffs`` (one row per level, its
    ``ordinal`` in the diff), as ``replay``/``import`` ``--keep-diffs`` do.
    ``klines``: store closed klines (channel ``klines``) in ``ohlcv_1m``
    (True) or ignore kline frames (False); they are never counted as bad frames.
    """

    store: str
    symbols: tuple[str, ...]
    venue: Venue = Venue.BINANCE
    channels: tuple[Channel, ...] = (Channel.TRADES, Channel.QUOTES, Channel.DEPTH, Channel.MARK, Channel.LIQUIDATIONS)
    journal: str | None = None
    book_levels: int = 5
    book_interval_ms: int = 100
    snapshot_limit: int = 1000
    flush_interval_s: float = 2.0
    streams_per_connection: int = 200
    endpoints: dict = field(default_factory=dict)  # Market -> Endpoints
    stale_after_s: float = 15.0
    ping_interval_s: float = 20.0
    max_connection_age_s: float = 23.5 * 3600
    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    rest_timeout_s: float = 10.0
    snapshot_min_interval_s: float = 1.0
    max_frame_bytes: int = MAX_FRAME_BYTES
    journal_options: JournalConfig = field(default_factory=JournalConfig)
    max_backlog_rows: int = 500_000  # rows held in memory while the store fails (~100 MB); beyond: journal only
    stop_retry_s: float = 5.0  # how long stop() retries a failing store before leaving it to the journal
    store_retry_max_s: float = 30.0  # the longest wait between two attempts at a failing store
    name: str = ""  # feed name of a multi-feed daemon; "" = the only feed
    partial_book_rows: str = "frames"
    klines: bool = True
    keep_diffs: bool = False

    def __post_init__(self):
        def bad(name, why):
            raise CollectorError(f"collector config: {name} {why}, got {getattr(self, name)!r}")

        if not isinstance(self.name, str) or (self.name and not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name)):
            bad("name", "must be letters, digits, '_', '-' or '.'")

        if not isinstance(self.venue, Venue):
            bad("venue", f"must be one of {[v.value for v in Venue]}")
        if isinstance(self.symbols, str) or not self.symbols:
            bad("symbols", "must be a non-empty list of tickstore symbols like 'binance:BTC/USDT:USDT'")
        if len(set(self.symbols)) != len(self.symbols):
            bad("symbols", "must not repeat a symbol")
        feed = feed_class(self.venue)
        for s in self.symbols:
            try:
                feed.market_of(s)
            except (BadFrame, ValueError) as exc:
                why = str(exc)
                raise CollectorError(f"collector config: {why if why.startswith('symbols: ') else 'symbols: ' + why}") from None
        if not self.channels or not all(isinstance(c, Channel) for c in self.channels):
            bad("channels", f"must be a non-empty list of {[c.name.lower() for c in Channel]}")
        if not 1 <= self.book_levels <= 500:
            bad("book_levels", "must be in 1..500")
        if self.partial_book_rows not in ("frames", "grid", "both"):
            bad("partial_book_rows", "must be 'frames', 'grid' or 'both'")
        if not isinstance(self.klines, bool):
            bad("klines", "must be true or false")
        if not isinstance(self.keep_diffs, bool):
            bad("keep_diffs", "must be true or false")
        for name in ("book_interval_ms", "snapshot_limit", "streams_per_connection", "max_frame_bytes", "max_backlog_rows"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) <= 0:
                bad(name, "must be a positive integer")
        if self.streams_per_connection > 1024:
            bad("streams_per_connection", "must be <= 1024 (Binance's limit per connection)")
        for name in ("flush_interval_s", "stale_after_s", "ping_interval_s", "max_connection_age_s", "rest_timeout_s"):
            if getattr(self, name) <= 0:
                bad(name, "must be > 0")
        if self.snapshot_min_interval_s < 0:
            bad("snapshot_min_interval_s", "must be >= 0")
        if self.stop_retry_s < 0:
            bad("stop_retry_s", "must be >= 0")
        if self.store_retry_max_s < self.flush_interval_s:
            bad("store_retry_max_s", f"must be >= flush_interval_s ({self.flush_interval_s})")
        try:
            feed.check(self)  # channels offered, endpoint keys, depth limits of the venue
        except ValueError as exc:
            raise CollectorError(f"collector config: {exc}") from None

    @property
    def journal_dir(self) -> Path:
        if self.journal is not None:
            return Path(self.journal).expanduser()
        root = Path(self.store).expanduser().resolve()
        default = root.with_name(root.name + "-journal")
        return default / self.name if self.name else default

    def endpoints_of(self, market) -> Endpoints:
        """Where a market of the venue is (``endpoints`` or the venue's default)."""
        ep = self.endpoints.get(market)
        return ep if ep is not None else feed_class(self.venue).ENDPOINTS[market]

    @property
    def quarantine_dir(self) -> Path:
        """Where refused frames and rows are kept with their reasons (``collectors.quarantine``)."""
        return self.journal_dir / "quarantine"

    @property
    def status_path(self) -> Path:
        """The JSON health file rewritten at every flush (read by ``tickstore status``)."""
        root = Path(self.store).expanduser()
        return root / (f"{STATUS_PREFIX}.{self.name}.json" if self.name else f"{STATUS_PREFIX}.json")


STATUS_PREFIX = "_collector_status"


# -- config files ------------------------------------------------------------------------------
# section -> key -> (CollectorConfig field or None for a nested option, accepted types)
_TOML_KEYS = {
    "collector": {
        "name": ("name", str), "venue": ("venue", str), "exchange": ("exchange", str),
        "store": ("store", str), "journal": ("journal", str),
        "symbols": ("symbols", list), "channels": ("channels", list),
        "flush_interval_s": ("flush_interval_s", (int, float)),
        "streams_per_connection": ("streams_per_connection", int),
        "max_frame_bytes": ("max_frame_bytes", int), "klines": ("klines", bool),
        "max_backlog_rows": ("max_backlog_rows", int), "stop_retry_s": ("stop_retry_s", (int, float)),
        "store_retry_max_s": ("store_retry_max_s", (int, float)),
    },
    "book": {
        "levels": ("book_levels", int), "interval_ms": ("book_interval_ms", int),
        "partial_rows": ("partial_book_rows", str), "keep_diffs": ("keep_diffs", bool),
        "snapshot_limit": ("snapshot_limit", int), "snapshot_min_interval_s": ("snapshot_min_interval_s", (int, float)),
    },
    "session": {
        "stale_after_s": ("stale_after_s", (int, float)), "ping_interval_s": ("ping_interval_s", (int, float)),
        "max_connection_age_s": ("max_connection_age_s", (int, float)), "rest_timeout_s": ("rest_timeout_s", (int, float)),
    },
    "backoff": {k: (k, (int, float)) for k in ("initial_s", "max_s", "factor", "jitter", "reset_after_s")},
    "journal": {
        "segment_bytes": ("segment_bytes", int), "fsync": ("fsync", str),
        "fsync_interval_s": ("fsync_interval_s", (int, float)), "keep_committed": ("keep_committed", bool),
    },
}
# a channel by its name (book5) or its Binance stream suffix (depth5@100ms)
_CHANNEL_NAMES = {c.name.lower(): c for c in Channel} | {c.value: c for c in Channel}


def load_config(path, *, overrides: dict | None = None) -> CollectorConfig:
    """Read a TOML collector config; every error names the file and the field.

    Sections: ``[collector]`` (venue, store, journal, symbols, channels, flush_interval_s,
    streams_per_connection, max_frame_bytes, max_backlog_rows, stop_retry_s,
    store_retry_max_s), ``[book]`` (levels, interval_ms, partial_rows, keep_diffs,
    snapshot_limit), ``[session]`` (stale_after_s, ping_interval_s, max_connection_age_s,
    rest_timeout_s), ``[backoff]``, ``[journal]`` (segment_bytes, fsync, fsync_interval_s,
    keep_committed) and ``[endpoints.<market>]`` (ws, rest; markets: binance spot, usdm,
    coinm; bybit linear, spot; hyperliquid perp). ``overrides`` replace ``[collector]`` keys
    (the CLI's ``--store``).

    ``venue`` (``exchange`` is accepted as its synonym, the ccxt word the symbols use) is
    binance, bybit or hyperliquid; without either it is the exchange every symbol names.
    """
    path, doc = read_toml(path)
    doc.setdefault("collector", {}).update(overrides or {})
    return _config_from_doc(doc, path)


def read_toml(path) -> tuple[Path, dict]:
    """Parse a collector config file; unreadable or invalid TOML raises ``CollectorError``."""
    import tomllib

    path = Path(path).expanduser()
    try:
        return path, tomllib.loads(path.read_text())
    except OSError as exc:
        raise CollectorError(f"cannot read collector config {str(path)!r}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise CollectorError(f"{path}: not valid TOML: {exc}") from None


def _config_from_doc(doc: dict, path, prefix: str = "") -> CollectorConfig:
    """One ``CollectorConfig`` from a parsed TOML document (sections as in ``load_config``).

    ``prefix`` names where the document sits in the file (``feeds[1].``): its
    ``[collector]`` keys are then reported as ``feeds[1].<key>``, other sections as
    ``feeds[1].<section>.<key>``.
    """
    from .journal import FsyncPolicy

    def fail(where: str, why: str):
        if prefix:
            where = where.strip("[]")
            where = prefix + (where[len("collector."):] if where.startswith("collector.") else where)
        raise CollectorError(f"{path}: {where}: {why}")

    kwargs: dict = {}
    nested: dict[str, dict] = {"backoff": {}, "journal": {}}
    for section, body in doc.items():
        if section == "endpoints":
            continue
        known = _TOML_KEYS.get(section)
        if known is None:
            fail(f"[{section}]", f"unknown section; known: {sorted(list(_TOML_KEYS) + ['endpoints'])}")
        if not isinstance(body, dict):
            fail(section, "must be a table")
        for key, value in body.items():
            if key not in known:
                fail(f"{section}.{key}", f"unknown key; known keys of [{section}]: {sorted(known)}")
            name, types = known[key]
            if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
                fail(f"{section}.{key}", f"expected {getattr(types, '__name__', 'a number')}, got {value!r}")
            if section in nested:
                nested[section][name] = value
            else:
                kwargs[name] = value
    if "store" not in kwargs:
        fail("collector.store", "missing (the store root, e.g. store = \"~/ticks\")")
    if "symbols" not in kwargs:
        fail("collector.symbols", "missing (e.g. symbols = [\"binance:BTC/USDT:USDT\"])")
    kwargs["store"] = str(Path(kwargs["store"]).expanduser())
    if "journal" in kwargs:
        kwargs["journal"] = str(Path(kwargs["journal"]).expanduser())
    if not all(isinstance(s, str) for s in kwargs["symbols"]):
        fail("collector.symbols", f"must be a list of strings, got {kwargs['symbols']!r}")
    kwargs["symbols"] = tuple(kwargs["symbols"])
    exchange = kwargs.pop("exchange", None)
    if exchange is not None and "venue" in kwargs and exchange != kwargs["venue"]:
        fail("collector.exchange", f"{exchange!r} contradicts venue {kwargs['venue']!r} (give one of them)")
    field_name = "collector.venue" if "venue" in kwargs else "collector.exchange"
    venue = kwargs.get("venue", exchange)
    if venue is None:  # the exchange the symbols name (binance when they disagree: its error names them)
        named = {s.partition(":")[0] for s in kwargs["symbols"]}
        venue = named.pop() if len(named) == 1 and next(iter(named)) in [v.value for v in Venue] else "binance"
    try:
        kwargs["venue"] = Venue(venue)
    except ValueError:
        fail(field_name, f"must be one of {[v.value for v in Venue]}, got {venue!r}")
    feed = feed_class(kwargs["venue"])
    if "channels" in kwargs:
        bad = [c for c in kwargs["channels"] if c not in _CHANNEL_NAMES]
        if bad:
            fail("collector.channels", f"unknown {bad}; known: {sorted(_CHANNEL_NAMES)}")
        kwargs["channels"] = tuple(_CHANNEL_NAMES[c] for c in kwargs["channels"])
    endpoints = {}
    for m, ep in (doc.get("endpoints") or {}).items():
        try:
            market = feed.markets(m)
        except ValueError:
            fail(f"[endpoints.{m}]", f"unknown market of {feed.venue.value}; known: {[x.value for x in feed.markets]}")
        if not isinstance(ep, dict) or set(ep) - {"ws", "rest"}:
            fail(f"endpoints.{m}", f"must have only the keys ws and rest, got {ep!r}")
        default = feed.ENDPOINTS[market]
        endpoints[market] = Endpoints(ep.get("ws", default.ws), ep.get("rest", default.rest), default.depth_path)
    kwargs["endpoints"] = endpoints
    try:
        if nested["backoff"]:
            kwargs["backoff"] = BackoffPolicy(**nested["backoff"])
        if nested["journal"]:
            j = dict(nested["journal"])
            if "fsync" in j:
                try:
                    j["fsync"] = FsyncPolicy(j["fsync"])
                except ValueError:
                    fail("journal.fsync", f"must be one of {[p.value for p in FsyncPolicy]}, got {j['fsync']!r}")
            kwargs["journal_options"] = JournalConfig(**j)
        return CollectorConfig(**kwargs)
    except CollectorError as exc:
        msg = str(exc)
        if msg.startswith(f"{path}: "):
            raise
        if prefix and msg.startswith("collector config: "):
            msg = msg[len("collector config: "):]  # -> "feeds[1].name must be ..."
        raise CollectorError(f"{path}: {prefix}{msg}") from None
    except (TickstoreError, ValueError) as exc:
        raise CollectorError(f"{path}: {prefix}{exc}") from None
