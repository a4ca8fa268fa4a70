"""Click commands of the collectors, plugged into the ``tickstore`` CLI.

Each command is registered in ``setup.cfg`` under the entry-point group ``tickstore.cli``
(``replay = collectors.cli:replay``) and calls one library function. Library errors
(``TickstoreError``) are turned into a one-line message by the ``tickstore`` group, not
here.
"""

from __future__ import annotations

import click

from .venues import Venue, feed_class

__all__ = ["replay", "demo", "collect", "status", "journal"]


def _root(ctx: click.Context, root: str | None) -> str:
    """``--root`` of the command, else the ``tickstore --root`` of the group (or its env/default)."""
    if root:
        return root
    parent = ctx.find_root()
    if parent is not ctx and parent.params.get("root"):
        return parent.params["root"]
    raise click.UsageError("give the store folder with --root DIR")


@click.command("replay")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--root", metavar="DIR", help="Store root folder (created if absent). [default: the group's --root]")
@click.option("--venue", type=click.Choice([v.value for v in Venue]), default=None,
              help="Venue of every file. [default: detected per file from its frames]")
@click.option(
    "--market",
    type=click.Choice(sorted({m.value for v in Venue for m in feed_class(v).markets})),
    default=None,
    help="Market of every file: binance spot/usdm/coinm, bybit linear/spot, hyperliquid perp. "
    "[default: detected per file from its frames]",
)
@click.option("--levels", default=5, show_default=True, help="Book depth stored (table book, or book_<N>).")
@click.option("--interval-ms", default=100, show_default=True, help="Book snapshot grid in exchange time.")
@click.option("--keep-diffs", is_flag=True, help="Also store every depth diff in book_diffs.")
@click.option("--skip-bad-lines", is_flag=True, help="Count lines that are no capture line and go on (default: stop there).")
@click.option("--no-book-state", is_flag=True,
              help="Neither continue books from the store's saved book state nor save it (each book starts from a snapshot).")
@click.option("--partial-book-rows", type=click.Choice(["frames", "grid", "both"]), default="frames", show_default=True,
              help="Captures of Binance partial books only (depth5/10/20, no diffs): a book row per frame at its "
              "exchange time, on the grid, or both (the collector's [book] partial_rows).")
@click.pass_context
def replay(ctx, files, root, venue, market, levels, interval_ms, keep_diffs, skip_bad_lines, no_book_state,
           partial_book_rows):
    """Replay recorded captures of Binance, Bybit v5 or Hyperliquid into the store.

    FILES are hftbacktest '<recv_ts> <json>' files, cryptofeed raw captures (*.ws.1.0,
    *.http.0.0), cryptofeed v3 containers (*.jsonl.zst) or a collector journal folder;
    gzip/zstd/plain. The venue and market of each connection are detected from its
    frames (or give --venue/--market). Files are merged by receive time, so a day's files
    and their REST snapshot files may be given in any order. Books continue from where the
    previous replay into this store left them (<root>/_book_state.json), so consecutive
    day files may be replayed one run at a time. Replaying a file again writes nothing.
    Exits 1 with a message when a file yields no rows, its venue or market cannot be told,
    or the input is damaged (rows before the damage are stored).
    """
    from tickstore import Tickstore

    from .replay import replay as run

    with Tickstore(_root(ctx, root)) as store:
        report = run(
            list(files),
            store=store,
            venue=venue,
            market=market,
            book_levels=levels,
            book_interval_ms=interval_ms,
            keep_diffs=keep_diffs,
            skip_bad_lines=skip_bad_lines,
            book_state=not no_book_state,
            partial_book_rows=partial_book_rows,
        )
    click.echo(report.summary())


# -- live collection (collectors.collector) ---------------------------------------------------
@click.command("demo")
@click.option("--seconds", default=10.0, show_default=True, help="How long to collect.")
@click.option("--root", metavar="DIR", default=None, help="Store root folder. [default: a new temporary folder]")
@click.option("--seed", default=0, show_default=True, help="Seed of the simulated market.")
@click.option("--faults/--no-faults", default=True, show_default=True,
              help="Make the exchange drop a connection, skip a book update and send a malformed frame.")
@click.option("--venue", type=click.Choice(["binance", "bybit", "hyperliquid"]), default="binance", show_default=True,
              help="Which simulated exchange (and wire protocol) to collect from.")
def demo(seconds, root, seed, faults, venue):
    """Run the live pipeline offline: a simulated exchange on 127.0.0.1 -> collector -> store.

    The simulator speaks the venue's real websocket protocol (Binance combined streams,
    Bybit v5 topics, Hyperliquid subscriptions). Prints the rows written per table, the
    gap ledger and the exchange-to-receive latency.
    """
    import logging
    import tempfile

    from .demo import run_demo

    logging.basicConfig(level=logging.ERROR)
    root = root or tempfile.mkdtemp(prefix="tickstore-demo-")
    click.echo(run_demo(root, seconds=seconds, seed=seed, faults=faults, venue=venue).summary())


@click.command("collect")
@click.option("--config", "config_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="TOML collector config (see collectors/configs/, e.g. three_venues.toml).")
@click.option("--root", metavar="DIR", default=None, help="Store root folder, overriding the config's collector.store.")
@click.option("--seconds", type=float, default=None, help="Stop after this long. [default: run until SIGINT/SIGTERM]")
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), default="INFO", show_default=True)
@click.option("--save-config", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Write the subscriptions about to run (every field explicit) to this TOML file first.")
def collect(config_path, root, seconds, log_level, save_path):
    """Collect live data from a config file until Ctrl-C / SIGTERM, flushing everything on stop.

    The config is one feed (``[collector]`` ...) or several ``[[feeds]]`` tables, all run
    in this process (see collectors/daemon.py). Frames are journaled before they count as
    received; after a crash, the next start replays what the store had not committed yet.
    Health: ``tickstore status --root DIR``.
    """
    import logging

    from .daemon import Daemon, load_feeds, save_config

    logging.basicConfig(level=getattr(logging, log_level), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    feeds = load_feeds(config_path, overrides={"store": root} if root else None)
    if save_path:
        save_config(feeds, save_path)
    all_stats = Daemon(feeds).run(seconds=seconds)
    for cfg, stats in zip(feeds, all_stats):
        click.echo(f"stopped{' ' + cfg.name if cfg.name else ''}: {stats.as_dict()}")


@click.command("status")
@click.option("--root", metavar="DIR", help="Store root folder. [default: the group's --root]")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="Output format.")
@click.pass_context
def status(ctx, root, fmt):
    """Health of the collector(s) writing into a store: per stream the last receive time,
    its age, the exchange-to-receive lag, events, and today's (UTC) rows in the gap ledger;
    per feed its health (ok, or degraded with the error: a failing store, a connection
    whose frames cannot be journaled) and the backlog waiting for the store.

    Read from the status file each collector rewrites at every flush, so it works for a
    running collector and for one that has stopped (column running).
    """
    from tickstore.cli import emit

    from .status import status_frame

    emit(status_frame(_root(ctx, root)), fmt)


@click.group("journal")
def journal():
    """Inspect or repair a collector journal (the folder of seg-*.jnl files)."""


@journal.command("check")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def journal_check(directory):
    """Read every record of the journal at DIRECTORY; report damage (changes nothing)."""
    from .journal import JournalCorruptionError, read_records

    n = 0
    try:
        for _ in read_records(directory):
            n += 1
    except JournalCorruptionError as exc:
        raise click.ClickException(f"{n} records read, then: {exc}") from None
    click.echo(f"journal {directory}: {n} records, no damage")


@journal.command("salvage")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
def journal_salvage(directory):
    """Keep every intact record of a damaged journal so the collector can start again.

    Each damaged byte range is copied to DIRECTORY/damaged/ and overwritten in place by a
    padding record that readers skip, so every other record keeps its place and the
    checkpoint stays valid; the records inside a damaged range are lost. Stop the
    collector first.
    """
    from .journal import salvage

    click.echo(salvage(directory).summary())


# -- REST history and queries (collectors.backfill) -------------------------------------------
__all__ += ["backfill", "query"]

_QUERY_TABLES = {"funding": "funding", "oi": "open_interest", "liquidations": "liquidations"}


@click.command("backfill")
@click.argument("kind", type=click.Choice(["funding", "ohlcv", "trades", "agg_trades", "oi"]))
@click.argument("symbol")
@click.option("--exchange", "-e", required=True, type=click.Choice(["binance", "bybit", "hyperliquid"]),
              help="ccxt exchange id.")
@click.option("--from", "start", required=True, metavar="DATE", help="First UTC day fetched, e.g. 2024-01-01.")
@click.option("--to", "end", required=True, metavar="DATE", help="First UTC day NOT fetched (the range is half-open).")
@click.option("--timeframe", "-t", default=None, metavar="TF",
              help="Bar size for ohlcv (table ohlcv_<TF>) [1m]; sampling period for oi [1h].")
@click.option("--refresh", is_flag=True, help="Fetch days the store already holds complete (writes only differences).")
@click.option("--root", metavar="DIR", help="Store root folder (created if absent). [default: the group's --root]")
@click.option("--base-url", metavar="URL", help="Talk to this REST root instead of the venue (e.g. a local simulator).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar.")
@click.pass_context
def backfill(ctx, kind, symbol, exchange, start, end, timeframe, refresh, root, base_url, progress):
    """Backfill settled funding, OHLCV bars, (aggregated) trades or open interest of SYMBOL through ccxt.

    SYMBOL is unified (BTC/USDT:USDT) or the venue's id (BTCUSDT, BTCUSDT-PERP, BTC). Each
    day becomes a version with source "rest" only if it differs from what the store holds;
    days already complete are skipped, so an interrupted run resumes. Example:

        tickstore backfill funding BTCUSDT -e bybit --from 2024-01-01 --to 2024-02-01
    """
    from tickstore import Tickstore

    from .backfill import backfill as run

    with Tickstore(_root(ctx, root)) as store:
        r = run(store, kind, symbol, exchange=exchange, start=start, end=end, timeframe=timeframe,
                refresh=refresh, base_url=base_url, progress=progress)
    click.echo(
        f"{r.table} {r.symbol}: {r.days} days, {r.skipped} already complete, {r.written} written "
        f"({r.rows} rows), {r.unchanged} unchanged, {r.empty} empty; {r.requests} requests, {r.retries} retries"
    )


@click.command("query")
@click.argument("what", type=click.Choice(sorted(_QUERY_TABLES)))
@click.argument("symbol")
@click.option("--exchange", "-e", required=True, type=click.Choice(["binance", "bybit", "hyperliquid"]),
              help="ccxt exchange id.")
@click.option("--from", "start", metavar="TIME", help="First event time (inclusive). [default: the last N rows]")
@click.option("--to", "end", metavar="TIME", help="End event time (exclusive).")
@click.option("--as-of", "as_of", help="Knowledge time or snapshot name (default: latest).")
@click.option("-n", "limit", type=click.IntRange(min=0), default=20, show_default=True,
              help="At most N rows: the first N from --from, else the last N.")
@click.option("--format", "-f", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="Output format.")
@click.option("--root", metavar="DIR", help="Store root folder. [default: the group's --root]")
@click.pass_context
def query(ctx, what, symbol, exchange, start, end, as_of, limit, fmt, root):
    """Print settled funding, open interest or liquidations of a perpetual.

    SYMBOL may be the venue's id; it is resolved to the tickstore symbol
    (<exchange>:<unified>) of the perpetual. Example:

        tickstore query funding BTC -e hyperliquid --from 2023-06-01 -n 48 --format csv
    """
    from pathlib import Path

    from tickstore import NotFoundError, Tickstore
    from tickstore.cli import emit

    from .symbols import MARKETS, MarketType

    sym = MARKETS.tickstore_symbol(exchange, symbol, market_type=MarketType.SWAP)
    path = Path(_root(ctx, root)).expanduser()
    if not path.is_dir():
        raise NotFoundError(f"no tickstore at {path} (the folder does not exist); give --root DIR")
    with Tickstore(path) as store:
        frame = store[_QUERY_TABLES[what]].select(sym, start, end, as_of=as_of)
    emit(frame.head(limit) if start is not None else frame.tail(limit), fmt)


# -- files researchers already have (collectors.importers) --------------------------------------
__all__ += ["import_"]


@click.command("import")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "-F", "fmt", default=None, metavar="FORMAT",
              help="tardis, binance-vision, hyperliquid-archive, bybit-history, binance-rest, hyperliquid-rest, "
                   "freqtrade, ccxt or funding-csv. [default: detected per file]")
@click.option("--kind", default=None, help="The data kind where the file cannot tell it (e.g. Tardis liquidations, a bar interval).")
@click.option("--market", default=None, help="spot, usdm, coinm (Binance); linear, spot (Bybit). [default: from the path or file]")
@click.option("--symbol", default=None, help="Tickstore symbol (binance:BTC/USDT:USDT) or the venue's id, where the file names none.")
@click.option("--venue", default=None, type=click.Choice(["binance", "binanceus", "bybit", "hyperliquid"]),
              help="ccxt exchange id, where the file does not say it.")
@click.option("--levels", type=click.IntRange(1, 500), default=None,
              help="Book depth stored (table book, or book_<N>). [default: 5; Tardis book_snapshot_N: N]")
@click.option("--interval-ms", default=100, show_default=True, help="Book snapshot grid in exchange time.")
@click.option("--keep-diffs", is_flag=True, help="Also store order-book diffs in book_diffs.")
@click.option("--utc-offset", default=None, metavar="OFFSET", help="Offset of naive local times in the file (e.g. 3h).")
@click.option("--force", is_flag=True, help="Parse files the import ledger lists as done (still adds only missing rows).")
@click.option("--root", metavar="DIR", help="Store root folder (created if absent). [default: the group's --root]")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@click.pass_context
def import_(ctx, paths, fmt, kind, market, symbol, venue, levels, interval_ms, keep_diffs, utc_offset, force, root, progress):
    """Import files (or folders) of market data into the store, as the live collectors store them.

    Tardis CSVs, Binance's public archive (data.binance.vision zips or CSVs), Hyperliquid's
    S3 archive (.lz4), Bybit's history files, Binance and Hyperliquid REST answers, freqtrade
    data folders, ccxt json.dump files and funding-history CSVs. The format, market and
    symbol are read from each file's name and content; a file that does not say enough
    stops the run before anything is written, naming the option to pass. Each file lands
    as new versions with source "import:<format>" and the file in the reason; rows the store
    already holds are not added again, so importing a file twice changes nothing and an
    interrupted import is resumed by running it again. Quotes, mark, open interest and book
    diffs keep one stream per span: a file's rows of them inside the span of a day that
    another source's rows cover (the collector's, a backfill's, another data kind's) are
    kept out and reported. Examples:

        tickstore import ~/tardis/binance-futures_trades_2024-01-01_BTCUSDT.csv.gz
        tickstore import ADABTC-1m-2021-11-27.csv --market spot
    """
    from tickstore import Tickstore

    from .importers import ImportOptions, import_files

    options = ImportOptions(market=market, kind=kind, symbol=symbol, venue=venue, book_levels=levels,
                            book_interval_ms=interval_ms, keep_diffs=keep_diffs, utc_offset=utc_offset)
    with Tickstore(_root(ctx, root)) as store:
        report = import_files(store, list(paths), format=fmt, options=options, progress=progress, force=force)
    click.echo(report.summary())
