"""The ``tickstore`` command line: a thin layer over the library.

::

    tickstore [--root DIR] select TABLE SYMBOL... [--start] [--end] [--as-of] [--columns a,b]
                                                 [--format table|csv|json] [-n N]
    tickstore ls [TABLE [SYMBOL]]        tables; symbols of a table; dates of a symbol
    tickstore ls -l [TABLE]              tables with their ts clock, partition, key;
                                         the columns of TABLE (dtype, default)
    tickstore versions TABLE SYMBOL DATE
    tickstore snapshot NAME | --list
    tickstore prune --before T [--reason R] | --list
    tickstore verify
    tickstore reindex [TABLE...]
    tickstore export TABLE SYMBOL... [--start] [--end] [--as-of] --format parquet|arrow|csv -o PATH
    tickstore demo [--root DIR]

Each command calls one library function and formats what it returns. Library errors
(``TickstoreError``) become one ``error: ...`` line and exit code 1, in one place:
``TickstoreGroup.invoke``. Click's own usage errors keep click's convention (exit 2).

Other packages add commands through the entry-point group ``tickstore.cli`` (each entry
point is a click command); a plugin named like a built-in replaces it (the collectors
replace ``demo`` with a live one). ``TICKSTORE_NO_PLUGINS=1`` runs the built-ins only.
This module never imports ``collectors`` or ``research``.

Start-up: nothing heavy is imported before a command needs it. ``--help`` reads the
plugins' names from their entry points and their one-line help from their source (ast),
without importing them; a plugin is imported when its command runs (a plugin that fails
to import fails then, with the reason). The store is imported by the commands that open
it; ``select`` reads numpy columns (``Table.select_columns``) and prints them through
``render`` without importing pandas.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from .errors import NotFoundError, TickstoreError

if TYPE_CHECKING:
    import pandas as pd

    from .store import Tickstore

__all__ = ["main", "TickstoreGroup", "emit", "emit_fields"]

PLUGIN_GROUP = "tickstore.cli"
NO_PLUGINS_ENV = "TICKSTORE_NO_PLUGINS"  # =1: built-in commands only (e.g. to bypass a broken plugin)
DEFAULT_ROOT = "~/ticks"
FORMATS = ("table", "csv", "json")
# export.FORMATS and export.LAYOUTS, spelt out so that --help does not import pandas
# (tests/tickstore/test_cli.py checks that they agree)
EXPORT_FORMATS = ("parquet", "arrow", "csv")
EXPORT_LAYOUTS = ("auto", "file", "days")


class CliError(click.ClickException):
    """A one-line ``error: ...`` on stderr and exit code 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", file=file or sys.stderr, err=file is None)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class TickstoreGroup(click.Group):
    """The command group; turns every library error into a clean one-line message, once,
    and holds the plugins (entry-point group ``tickstore.cli``), imported on use."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugins: dict[str, _Plugin] | None = None

    def plugins(self) -> dict[str, "_Plugin"]:
        if self._plugins is None:
            self._plugins = {} if os.environ.get(NO_PLUGINS_ENV, "") not in ("", "0") else _plugins()
        return self._plugins

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(self.plugins()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        plugin = self.plugins().get(name)  # a plugin named like a built-in replaces it
        return plugin.command() if plugin is not None else self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help: built-ins' help, plugins' from their source."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = []
        for name in names:
            plugin = self.plugins().get(name)
            if plugin is not None:
                rows.append((name, plugin.short_help(limit)))
            elif not self.commands[name].hidden:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TickstoreError as exc:
            raise CliError(_one_line(exc) or type(exc).__name__) from None


class _StoreRef:
    """Opens the store named by ``--root`` on first use (``--help`` never touches disk)."""

    def __init__(self, root: str):
        self.root = root
        self._store: Tickstore | None = None

    def open(self) -> Tickstore:
        if self._store is None:
            from .store import Tickstore

            path = Path(self.root).expanduser()
            # Reading commands must not create a store where a typo in --root pointed.
            if path.exists() and not path.is_dir():
                raise NotFoundError(f"--root {path} is a file, not a tickstore folder")
            if not path.is_dir():
                raise NotFoundError(
                    f"no tickstore at {path} (the folder does not exist); give --root DIR or set TICKSTORE_ROOT"
                )
            self._store = Tickstore(path)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def _store(ctx: click.Context) -> Tickstore:
    return ctx.find_object(_StoreRef).open()


@click.group(cls=TickstoreGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--root",
    envvar="TICKSTORE_ROOT",
    default=DEFAULT_ROOT,
    metavar="DIR",
    show_default="$TICKSTORE_ROOT or ~/ticks",
    help="Store root folder.",
)
@click.pass_context
def main(ctx: click.Context, root: str) -> None:
    """A bitemporal HDF5 tickstore: read, list, audit and check a store from the shell.

    Times are ISO 8601 (no offset means UTC). --start/--end are event time (half-open);
    --as-of is knowledge time: a time or a snapshot name.
    """
    ref = ctx.obj = _StoreRef(root)
    ctx.call_on_close(ref.close)


# -- output -------------------------------------------------------------------------------
def emit(frame: pd.DataFrame, fmt: str) -> None:
    """Print ``frame`` (its index as the first columns) as CSV or JSON records per
    ``tickstore.render``, or as pandas' table; shared by plugin commands."""
    from . import render

    if fmt == "table":
        click.echo(render.NO_ROWS if frame.empty else frame.to_string())
    else:
        emit_fields(render.fields_of_frame(frame), fmt)


def emit_fields(fields: list, fmt: str) -> None:
    """Print ``tickstore.render`` fields as a table, CSV or JSON records (ISO UTC times)."""
    from . import render

    if fmt == "table":
        click.echo(render.table(fields), nl=False)
        return
    for chunk in (render.csv_chunks if fmt == "csv" else render.json_chunks)(fields):
        click.echo(chunk, nl=False)


def _format_option(f):
    return click.option(
        "--format", "-f", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
    )(f)


# -- commands -----------------------------------------------------------------------------
@main.command()
@click.argument("table")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--start", help="First event time (inclusive), e.g. 2024-08-08T12:00.")
@click.option("--end", help="End event time (exclusive).")
@click.option("--as-of", "as_of", help="Knowledge time or snapshot name (default: latest).")
@click.option("--columns", help="Comma-separated columns (default: all).")
@_format_option
@click.option("-n", "--limit", type=click.IntRange(min=0), help="Print at most N rows.")
@click.pass_context
def select(ctx, table, symbols, start, end, as_of, columns, fmt, limit):
    """Print rows of TABLE for SYMBOL(s), as known at --as-of.

    Several symbols give one frame with a 'symbol' column. The table shows every value
    exactly (floats unrounded, times to the ns when they have them); csv and json give
    times in ISO 8601 UTC. Example:

        tickstore select trades binance:BTC/USDT:USDT --start 2024-08-08 --end 2024-08-09 -n 10
    """
    from .render import fields_of_columns

    cols = None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]
    target = symbols[0] if len(symbols) == 1 else list(symbols)
    t = _store(ctx)[table]
    rows = t.select_columns(target, start, end, as_of=as_of, columns=cols, limit=limit)
    emit_fields(fields_of_columns(rows, t.schema), fmt)


def _describe_tables(store: Tickstore, names: list[str]) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for name in names:
        sc = store[name].schema
        rows.append(
            {
                "table": name,
                "ts clock": sc.clock.value if sc.clock is not None else "(not declared)",
                "partition": sc.partition.value,
                "key": ",".join(sc.key) if sc.key else "-",
                "columns": len(sc.columns),
                "description": sc.description,
            }
        )
    return pd.DataFrame(rows, columns=["table", "ts clock", "partition", "key", "columns", "description"]).set_index("table")


def _describe_columns(store: Tickstore, name: str) -> pd.DataFrame:
    import pandas as pd

    sc = store[name].schema
    clock = sc.clock.value if sc.clock is not None else "(not declared)"
    rows = [{"column": "ts", "dtype": "datetime (index)", "default": "", "note": clock}]
    for c in sc.columns:
        note = "receive time" if c.name == "recv_ts" else ("key" if sc.key and c.name in sc.key else "")
        rows.append({"column": c.name, "dtype": c.dtype, "default": "" if c.default is None else str(c.default), "note": note})
    return pd.DataFrame(rows).set_index("column")


@main.command("ls")
@click.argument("table", required=False)
@click.argument("symbol", required=False)
@click.option("--as-of", "as_of", help="Dates visible at this knowledge time or snapshot (with SYMBOL).")
@click.option(
    "--long", "-l", "long_", is_flag=True,
    help="Describe: every table with the clock its ts is (exchange event / transaction / receive time), "
    "partition and key; with TABLE, its columns.",
)
@click.pass_context
def ls_(ctx, table, symbol, as_of, long_):
    """List tables, symbols of TABLE, or dates of SYMBOL (-l: describe tables / TABLE's columns)."""
    store = _store(ctx)
    if long_ and symbol is None:
        names = store.tables()
        if table is None and not names:
            return
        click.echo(_describe_tables(store, names).to_string() if table is None else _describe_columns(store, table).to_string())
        return
    if table is None:
        items = store.tables()
    elif symbol is None:
        items = store[table].symbols()
    else:
        items = [d.strftime("%Y-%m-%d") for d in store[table].dates(symbol, as_of=as_of)]
    for item in items:
        click.echo(item)


@main.command()
@click.argument("table")
@click.argument("symbol")
@click.argument("date")
@_format_option
@click.option("--long", "-l", "long_", is_flag=True, help="Table format: also show checksum and path.")
@click.pass_context
def versions(ctx, table, symbol, date, fmt, long_):
    """Show the versions of one day of SYMBOL: the audit trail.

    Each row is one immutable file: when it was committed and superseded, the operation
    (insert, append, delete, compact), rows, reason and source.
    """
    frame = _store(ctx)[table].versions(symbol, date).droplevel("symbol")
    if fmt == "table" and not long_:
        frame = frame.drop(columns=["checksum", "path"])
    emit(frame, fmt)


@main.command()
@click.argument("name", required=False)
@click.option("--note", default="", help="A note stored with the snapshot.")
@click.option("--list", "list_", is_flag=True, help="List the snapshots instead of creating one.")
@_format_option
@click.pass_context
def snapshot(ctx, name, note, list_, fmt):
    """Create a named as-of point (NAME), or --list them.

    --as-of NAME then reads what is visible now. Snapshot names are permanent.
    """
    if list_ == (name is not None):
        raise click.UsageError("give a snapshot NAME to create one, or --list (not both)")
    store = _store(ctx)
    if list_:
        emit(store.snapshots(), fmt)
        return
    at = store.snapshot(name, note=note)
    from .export import iso_utc

    click.echo(f"snapshot {name} as of {iso_utc([at])[0]}")


@main.command()
@click.option("--before", help="Forget versions visible at no knowledge time at or after this (ISO time).")
@click.option("--reason", default="", help="Why (kept in the prune log).")
@click.option("--list", "list_", is_flag=True, help="Show the prune log instead of pruning.")
@_format_option
@click.pass_context
def prune(ctx, before, reason, list_, fmt):
    """Forget history before --before (snapshots keep what they name), or --list the log.

    Corrections and deletes keep their old versions until a prune: every version visible
    at no knowledge time at or after --before, and at no snapshot, is removed from the
    index and from disk. Reads as of an earlier time then fail with a clear error; reads
    as of a snapshot still work. Each prune is logged (when, before, why, what it
    removed). Example:

        tickstore prune --before 2024-01-01 --reason "keep one year of corrections"
    """
    if list_ == (before is not None):
        raise click.UsageError("give --before T to prune, or --list (not both)")
    store = _store(ctx)
    if list_:
        emit(store.prunes(), fmt)
        return
    from .clock import ns_to_timestamp
    from .export import iso_utc

    r = store.prune(before, reason=reason)
    click.echo(
        f"pruned before {iso_utc([ns_to_timestamp(r['before'])])[0]}: {r['versions']} versions, "
        f"{r['bytes'] / 1e6:.1f} MB; reads as of earlier times now fail (snapshots still read)"
    )


@main.command("export")
@click.argument("table")
@click.argument("symbols", nargs=-1, required=True)
@click.option("--start", help="First event time (inclusive), e.g. 2024-08-08.")
@click.option("--end", help="End event time (exclusive).")
@click.option("--as-of", "as_of", help="Knowledge time or snapshot name (default: latest).")
@click.option("--columns", help="Comma-separated columns (default: all).")
@click.option("--format", "-f", "fmt", type=click.Choice(EXPORT_FORMATS), default="parquet", show_default=True,
              help="File format (arrow: an Arrow IPC file).")
@click.option("--output", "-o", "output", required=True, type=click.Path(), help="File or folder to write.")
@click.option("--layout", type=click.Choice(EXPORT_LAYOUTS), default="auto", show_default=True,
              help="file: one file; days: a hive-partitioned folder (date=YYYY-MM-DD/); auto: days when the rows span several.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output.")
@click.pass_context
def export_(ctx, table, symbols, start, end, as_of, columns, fmt, output, layout, overwrite):
    """Write what select returns to Parquet, Arrow or CSV, with the pin of the read.

    Times are UTC. The pin (which files and versions the read used, with checksums) is in
    the file's metadata (Parquet/Arrow), or in <file>.pin.json beside a CSV. Example:

        tickstore export trades binance:BTC/USDT:USDT --start 2024-08-01 --end 2024-09-01 -o btc/
    """
    from .export import export

    cols = None if columns is None else [c.strip() for c in columns.split(",") if c.strip()]
    target = symbols[0] if len(symbols) == 1 else list(symbols)
    result = export(_store(ctx)[table], target, start, end, path=output, format=fmt, as_of=as_of, columns=cols,
                    layout=layout, overwrite=overwrite)
    click.echo(result.summary())


@main.command()
@click.option("--no-checksums", is_flag=True, help="Skip the sha256 and key range of every file (faster).")
@click.pass_context
def verify(ctx, no_checksums):
    """Check every index against its files, and the snapshots file.

    Each indexed file must exist and match its size and sha256, and every index field
    the files determine (rows, first/last ts, key range, commit and supersede times,
    operation, reason, source) must agree; no data file may lie outside every index.

    Exits 1 when a problem is found; writes in progress (or that died and await rollback)
    are reported as pending, not as problems.
    """
    report = _store(ctx).verify(checksums=not no_checksums)
    click.echo(str(report))
    if not report.ok:
        raise CliError(f"verify found {len(report.problems)} problem(s) in {_store(ctx).root}")


@main.command()
@click.argument("tables", nargs=-1)
@click.option("--symbol", "symbols", multiple=True, help="Only this symbol's index (repeatable).")
@click.pass_context
def reindex(ctx, tables, symbols):
    """Rebuild the index of TABLES (default: all) from the files alone.

    Works whatever state the index is in (damaged, truncated, missing). Files that cannot
    be read or are not data files are left in place and listed (exit 1); leftover
    temporaries and files of writes that died before committing are removed and listed.
    An unreadable data file is also recorded as damaged in its symbol's index: its
    partition then refuses reads and writes until the file is restored (a good copy put
    back) or deleted, and reindex runs again.
    """
    store = _store(ctx)
    present = store.tables()
    for name in tables:
        store[name]  # unknown names fail here, with the list of built-in tables
        if name not in present:
            raise NotFoundError(f"table {name!r} holds no data in {store.root}; tables are {present or 'none'}")
    report = store.reindex(list(tables) or None, symbols=list(symbols) or None)
    click.echo(str(report))
    if not report.ok:
        raise CliError(f"reindex left {len(report.skipped)} file(s) out of the index (listed above); the rest is indexed")


@main.command()
@click.option(
    "--root",
    "demo_root",
    type=click.Path(file_okay=False),
    help="Empty or new folder for the demo store (default: a fresh temp dir).",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, exists=True),
    help="Shared data folder (default: $TICKSTORE_DATA or ../shared/data).",
)
@click.pass_context
def demo(ctx, demo_root, data_dir):
    """Run the offline demo: as-of reads that never change.

    Builds a small store from real recorded trades: inserts a day, snapshots it, appends
    live rows, corrects a price, deletes the day, and re-reads as of each step. It never
    touches your own store: it writes into --root (an empty folder; the global --root
    counts when given on the command line) or into a new temp dir.
    """
    root = demo_root
    group = ctx.parent
    if root is None and group is not None and group.get_parameter_source("root") == ParameterSource.COMMANDLINE:
        root = group.params["root"]
    if root is None:
        import tempfile  # here: with shutil, random, bz2 and lzma it costs a start ~7 ms

        root = tempfile.mkdtemp(prefix="tickstore-demo-")
    click.echo(f"demo store: {root}")
    from .demo import run_demo

    run_demo(root, data_dir=data_dir, out=click.echo)


# -- plugins ------------------------------------------------------------------------------
def _broken_plugin(name: str, exc: BaseException) -> click.Command:
    message = _one_line(f"plugin command {name!r} failed to load ({type(exc).__name__}: {exc})")

    @click.command(name, help=f"(unavailable) {message}", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    def broken(args):
        raise CliError(message)

    return broken


def _plugins() -> dict[str, "_Plugin"]:
    # what importlib.metadata.entry_points(group=...) finds, in ~2 ms instead of ~30
    from .entry_points import entry_points

    return {ep.name: _Plugin(ep) for ep in entry_points(PLUGIN_GROUP)}


class _Plugin:
    """One entry point of group ``tickstore.cli`` (``entry_points.EntryPoint``): a click
    command imported on first use.

    A plugin that fails to import does not break the other commands: its command fails
    with the reason when run.
    """

    def __init__(self, ep):
        self.ep = ep
        self._command: click.Command | None = None

    def command(self) -> click.Command:
        if self._command is None:
            try:
                cmd = self.ep.load()
                if not isinstance(cmd, click.Command):
                    raise TypeError(f"{self.ep.value} is a {type(cmd).__name__}, not a click command")
            except Exception as exc:  # noqa: BLE001 - any import failure of third-party code
                cmd = _broken_plugin(self.ep.name, exc)
            self._command = cmd
        return self._command

    def short_help(self, limit: int) -> str:
        """The command's one-line help, read from its module's source without importing it
        (the ``help=`` of its click decorator, else its docstring); once it is imported,
        click's own."""
        if self._command is not None:
            return self._command.get_short_help_str(limit)
        text = None
        try:
            text = _help_in_source(self.ep.module, self.ep.attr)
        except (ImportError, OSError, SyntaxError, ValueError, AttributeError):
            pass
        return click.utils.make_default_short_help(text or f"(plugin {self.ep.value})", limit)


def _help_in_source(module: str, name: str) -> str | None:
    """The help text of the click command ``name`` defined in ``module`` (its source is
    parsed, not run: finding it imports the parent packages only)."""
    tree = _source_tree(module)
    if tree is None:
        return None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            for dec in node.decorator_list:  # @click.command(..., help="...")
                func = dec.func if isinstance(dec, ast.Call) else None
                if getattr(func, "attr", getattr(func, "id", None)) not in ("command", "group"):
                    continue
                for kw in dec.keywords:
                    if kw.arg == "help" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        return kw.value.value
            return ast.get_docstring(node)
    return None


@functools.lru_cache(maxsize=None)
def _source_tree(module: str) -> ast.Module | None:
    """The parsed source of ``module`` (once per module: several plugins share one)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return ast.parse(Path(spec.origin).read_text(encoding="utf-8"))


if __name__ == "__main__":
    main(prog_name="tickstore")
