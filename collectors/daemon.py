"""The collector daemon: every configured feed in one process, one config file.

A config file is either the single-feed form read by ``collectors.collector.load_config``
(``[collector]``, ``[book]``, ``[session]``, ``[backoff]``, ``[journal]``,
``[endpoints.<market>]``) or a list of feeds::

    [collector]                  # optional defaults shared by every feed (any section)
    store = "~/ticks"

    [[feeds]]
    name = "binance-spot"        # required, unique: names the journal and the status file
    symbols = ["binance:BTC/USDT"]
    channels = ["trades", "depth"]
    [feeds.endpoints.spot]       # per-feed sections override the shared ones
    ws = "ws://127.0.0.1:9001"

    [[feeds]]
    name = "binance-usdm"
    symbols = ["binance:BTC/USDT:USDT"]

    [[feeds]]
    name = "bybit"
    exchange = "bybit"           # or venue = ...; without either: the exchange the symbols name
    symbols = ["bybit:BTC/USDT:USDT", "bybit:BTC/USDT"]
    [feeds.endpoints.linear]     # bybit markets: linear, spot; hyperliquid: perp
    ws = "ws://127.0.0.1:9002/v5/public/linear"

A feed's ``[collector]`` keys sit directly in its ``[[feeds]]`` table, its other sections
under it (``[feeds.book]``; ``[feeds.journal_options]`` for ``[journal]``, as ``journal``
is the feed's journal folder); errors name the
feed's field (``feeds[1].symbols``). Without ``journal`` a feed journals into
``<store>-journal/<name>``; two feeds may not share a journal or a name.

``save_config`` writes feeds back as TOML; loading that file gives equal configs.
``Daemon`` starts every feed's ``Collector`` on one shared ``Tickstore`` per store root
and on SIGINT/SIGTERM stops them all, each flushing and committing everything journaled.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from tickstore import Tickstore

from .collector import Collector, CollectorStats, run_until_stopped
from .config import CollectorConfig, CollectorError, _config_from_doc, read_toml
from .venues import feed_class

__all__ = ["load_feeds", "save_config", "dump_config", "Daemon"]

log = logging.getLogger(__name__)

_SECTIONS = ("collector", "book", "session", "backoff", "journal", "endpoints")


def load_feeds(path, *, overrides: dict | None = None) -> tuple[CollectorConfig, ...]:
    """Read a single-feed or ``[[feeds]]`` TOML config; every error names the field.

    ``overrides`` replace ``[collector]`` keys of every feed (the CLI's ``--store``).
    """
    path, doc = read_toml(path)
    feeds = doc.pop("feeds", None)
    if feeds is None:
        doc.setdefault("collector", {}).update(overrides or {})
        return (_config_from_doc(doc, path),)
    if not isinstance(feeds, list) or not feeds or not all(isinstance(f, dict) for f in feeds):
        raise CollectorError(f"{path}: feeds: must be one or more [[feeds]] tables, got {feeds!r}")
    out = []
    for i, feed in enumerate(feeds):
        where = f"feeds[{i}]."
        merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in doc.items()}
        if isinstance(merged.get("endpoints"), dict):
            merged["endpoints"] = {m: dict(ep) if isinstance(ep, dict) else ep for m, ep in merged["endpoints"].items()}
        col = merged.setdefault("collector", {})
        for key, value in feed.items():
            section = {"journal_options": "journal"}.get(key, key)  # "journal" is the journal path
            if key == "journal_options" or (isinstance(value, dict) and key in _SECTIONS and key not in ("collector", "journal")):
                if not isinstance(value, dict):
                    raise CollectorError(f"{path}: {where}{key}: must be a table, got {value!r}")
                if section == "endpoints":
                    eps = merged.setdefault("endpoints", {})
                    for m, ep in value.items():
                        eps[m] = {**(eps.get(m) or {}), **ep} if isinstance(ep, dict) else ep
                else:
                    merged.setdefault(section, {}).update(value)
            elif isinstance(value, dict):
                known = sorted([*_SECTIONS[1:4], "endpoints", "journal_options"])
                raise CollectorError(f"{path}: {where}{key}: unknown section; known: {known}")
            else:
                col[key] = value
        col.update(overrides or {})
        if not col.get("name"):
            raise CollectorError(f"{path}: {where}name: missing (every [[feeds]] table needs a unique name)")
        out.append(_config_from_doc(merged, path, prefix=where))
    seen_names: dict[str, int] = {}
    seen_journals: dict[Path, int] = {}
    for i, cfg in enumerate(out):
        if cfg.name in seen_names:
            raise CollectorError(f"{path}: feeds[{i}].name: {cfg.name!r} repeats feeds[{seen_names[cfg.name]}].name")
        seen_names[cfg.name] = i
        j = cfg.journal_dir.resolve()
        if j in seen_journals:
            raise CollectorError(f"{path}: feeds[{i}].journal: {str(j)!r} is also the journal of feeds[{seen_journals[j]}]")
        seen_journals[j] = i
    return tuple(out)


# -- writing TOML (the stack has no TOML writer) ----------------------------------------------
def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise CollectorError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _feed_tables(cfg: CollectorConfig) -> tuple[dict, dict[str, dict]]:
    """(flat [collector] keys, other sections) of one feed, every field explicit."""
    col = {
        "name": cfg.name, "venue": cfg.venue.value, "store": cfg.store, "journal": str(cfg.journal_dir),
        "symbols": list(cfg.symbols), "channels": [c.name.lower() for c in cfg.channels],
        "flush_interval_s": cfg.flush_interval_s, "streams_per_connection": cfg.streams_per_connection,
        "max_frame_bytes": cfg.max_frame_bytes, "max_backlog_rows": cfg.max_backlog_rows,
        "stop_retry_s": cfg.stop_retry_s, "store_retry_max_s": cfg.store_retry_max_s,
    }
    if not cfg.name:
        del col["name"]
    if cfg.journal is None:  # the default (beside the store) stays a default
        del col["journal"]
    b, j = cfg.backoff, cfg.journal_options
    sections = {
        "book": {"levels": cfg.book_levels, "interval_ms": cfg.book_interval_ms, "snapshot_limit": cfg.snapshot_limit,
                 "snapshot_min_interval_s": cfg.snapshot_min_interval_s},
        "session": {"stale_after_s": cfg.stale_after_s, "ping_interval_s": cfg.ping_interval_s,
                    "max_connection_age_s": cfg.max_connection_age_s, "rest_timeout_s": cfg.rest_timeout_s},
        "backoff": {"initial_s": b.initial_s, "max_s": b.max_s, "factor": b.factor, "jitter": b.jitter,
                    "reset_after_s": b.reset_after_s},
        "journal": {"segment_bytes": j.segment_bytes, "fsync": j.fsync.value, "fsync_interval_s": j.fsync_interval_s,
                    "keep_committed": j.keep_committed},
    }
    defaults = feed_class(cfg.venue).ENDPOINTS
    for market, ep in sorted(cfg.endpoints.items(), key=lambda kv: kv[0].value):
        if ep.depth_path != defaults[market].depth_path:
            raise CollectorError(f"endpoints.{market.value}: depth_path {ep.depth_path!r} cannot be written to TOML")
        sections[f"endpoints.{market.value}"] = {"ws": ep.ws, "rest": ep.rest}
    return col, sections


def dump_config(feeds) -> str:
    """TOML text of ``feeds`` (one unnamed feed: the single-feed form; else ``[[feeds]]``)."""
    feeds = tuple(feeds)
    if not feeds or not all(isinstance(f, CollectorConfig) for f in feeds):
        raise CollectorError(f"feeds: must be one or more CollectorConfig, got {feeds!r}")
    lines = ["# written by collectors.daemon.save_config", ""]

    def table(header: str, body: dict) -> None:
        lines.append(f"[{header}]" if not header.startswith("[") else header)
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in body.items())
        lines.append("")

    if len(feeds) == 1 and not feeds[0].name:
        col, sections = _feed_tables(feeds[0])
        table("collector", col)
        for name, body in sections.items():
            table(name, body)
    else:
        for i, cfg in enumerate(feeds):
            if not cfg.name:
                raise CollectorError(f"feeds[{i}].name: every feed of several needs a name")
            col, sections = _feed_tables(cfg)
            table("[[feeds]]", col)
            for name, body in sections.items():
                table(f"feeds.{'journal_options' if name == 'journal' else name}", body)
    return "\n".join(lines)


def save_config(feeds, path) -> Path:
    """Write ``feeds`` to ``path`` as TOML (atomically); ``load_feeds(path)`` gives them back."""
    path = Path(path).expanduser()
    text = dump_config(feeds)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path


# -- the daemon -------------------------------------------------------------------------------
class Daemon:
    """Runs one ``Collector`` per feed in this process; ``run()`` until SIGINT/SIGTERM."""

    def __init__(self, feeds):
        self.feeds = tuple(feeds)
        if not self.feeds:
            raise CollectorError("feeds: at least one feed is needed")
        names = [f.name for f in self.feeds]
        if len(set(names)) != len(names):
            raise CollectorError(f"feeds: names must be unique, got {names}")
        journals = [f.journal_dir.resolve() for f in self.feeds]
        if len(set(journals)) != len(journals):
            raise CollectorError(f"feeds: journals must differ, got {[str(j) for j in journals]}")
        self.collectors: list[Collector] = []
        self._stores: dict[Path, Tickstore] = {}
        self._stop = threading.Event()

    def request_stop(self) -> None:
        self._stop.set()

    def start(self) -> "Daemon":
        try:
            for cfg in self.feeds:
                root = Path(cfg.store).expanduser().resolve()
                store = self._stores.get(root)
                if store is None:
                    store = self._stores[root] = Tickstore(root)
                self.collectors.append(Collector(cfg, store=store).start())
        except BaseException:
            self.stop()
            raise
        log.info("daemon started %d feeds: %s", len(self.collectors), [c.config.name or "-" for c in self.collectors])
        return self

    def stop(self) -> None:
        """Stop every feed (each flushes and commits), then close the stores (idempotent)."""
        errors = []
        for c in self.collectors:
            try:
                c.stop()
            except Exception as exc:  # noqa: BLE001 - the other feeds must still flush
                log.exception("stopping feed %r failed", c.config.name)
                errors.append(exc)
        for store in self._stores.values():
            store.close()
        self._stores.clear()
        if errors:
            raise errors[0]

    def run(self, *, seconds: float | None = None, install_signals: bool = True) -> list[CollectorStats]:
        """Start, wait for SIGINT/SIGTERM (or ``seconds``), stop. Returns each feed's counters."""
        run_until_stopped(self, seconds=seconds, install_signals=install_signals)
        return [c.stats for c in self.collectors]

