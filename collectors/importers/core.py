"""What every importer shares: errors, options, reading files, times, symbols, the sink.

::

    path ──open_members──> Member (zip entries, tar entries (plain or gzip/bz2/xz: Binance's
      │                     T_DEPTH .tar.gz), gzip, lz4 frame or plain; bytes counted for
      │                     the progress bar)
      ├── Member.lines()         numbered raw lines  (JSON-per-line formats)
      └── csv_blocks(member)     numbered CSV blocks as typed DataFrames (CSV formats): a
                                 value that does not parse is reported with its line
    format parser ──> Sink.frame(table, symbol, df)   vectorised rows (CSV formats)
                  └─> Sink.events([...])              collectors.events (frame formats, via the
                                                      live parsers and book builder)

Every error a file can cause is a ``DataImportError`` naming the file (and line, where
there is one); it is raised while the file is parsed, before anything of it is written.
"""

from __future__ import annotations

import bisect
import enum
import gzip
import io
import os
import re
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np
import pandas as pd

from collectors.events import EventBatcher
from collectors.exchanges import binance as bn
from collectors.symbols import EXCHANGES, MARKETS, SymbolNotFound
from tickstore.errors import SymbolError, TickstoreError

if TYPE_CHECKING:
    from tickstore.schemas import Schema

__all__ = [
    "Format",
    "DataImportError",
    "MissingOption",
    "MalformedInput",
    "EmptyInput",
    "ImportOptions",
    "Member",
    "open_members",
    "csv_blocks",
    "epoch_to_ns",
    "resolve_symbol",
    "Sink",
]


class Format(enum.Enum):
    """The file formats ``import_files`` reads; the value is the ``--format`` word."""

    TARDIS = "tardis"
    BINANCE_VISION = "binance-vision"
    HYPERLIQUID_ARCHIVE = "hyperliquid-archive"
    BYBIT_HISTORY = "bybit-history"
    BINANCE_REST = "binance-rest"
    HYPERLIQUID_REST = "hyperliquid-rest"
    FREQTRADE = "freqtrade"
    CCXT = "ccxt"
    FUNDING_CSV = "funding-csv"


# -- errors ------------------------------------------------------------------------------------
class DataImportError(TickstoreError, ValueError):
    """A file that cannot be imported; nothing of it is written. The message names the file."""


class MissingOption(DataImportError):
    """The file does not say enough (format, market, symbol, venue): the message names the option."""


class MalformedInput(DataImportError):
    """A line or value that does not parse: the message names the file, the line and the value."""

    def __init__(self, path, line: int | None, problem: str, text=None):
        self.path, self.line, self.problem = str(path), line, problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        excerpt = ""
        if text is not None:
            s = text.decode("utf-8", "replace") if isinstance(text, (bytes, bytearray)) else str(text)
            excerpt = f": {s[:160]!r}" + ("..." if len(s) > 160 else "")
        super().__init__(f"{where}: {problem}{excerpt}")


def damaged_input(where, exc: BaseException) -> "MalformedInput | None":
    """``MalformedInput`` for an error a decompressor raises on a damaged or cut file (a
    download that stopped early, a flipped bit): gzip/zlib, zip (bad CRC), tar, lz4, zstd.
    None for any other error."""
    kind = type(exc)
    known = (isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile, zipfile.BadZipFile, tarfile.TarError))
             or (kind.__name__ == "ZstdError" and kind.__module__.startswith("zstandard"))
             or (isinstance(exc, RuntimeError) and str(exc).startswith("LZ4F_")))  # lz4.frame's errors
    if not known:
        return None
    return MalformedInput(where, None, f"the file is damaged or incomplete ({type(exc).__name__}: {exc}); "
                                       f"download it again: nothing of it was imported")


class EmptyInput(DataImportError):
    """A file (or a part of an archive) that holds no data: zero bytes, blank lines, only a
    header row, or an empty JSON array. Raised while files are detected, before anything is
    written; the message names the file."""


# -- options -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImportOptions:
    """What the files may not say themselves (``tickstore import`` options).

    ``market``: ``spot``, ``usdm``, ``coinm`` (Binance), ``linear``/``spot`` (Bybit), ``perp``;
    ``symbol``: a tickstore symbol (``binance:BTC/USDT:USDT``) or the venue's id; ``venue``:
    a ccxt exchange id. ``book_levels``/``book_interval_ms``: the book table and grid
    (default: the collector's, 5 levels every 100 ms; Tardis ``book_snapshot_N``: N levels).
    ``keep_diffs``: also store order-book diffs in ``book_diffs``. ``utc_offset``: the
    offset of naive local times (``funding-csv``), e.g. ``"3h"``. ``kind``: the data kind
    where the file cannot tell it (a Tardis ``trades`` and ``liquidations`` CSV look alike;
    the file name says which).
    """

    market: str | None = None
    kind: str | None = None
    symbol: str | None = None
    venue: str | None = None
    book_levels: int | None = None
    book_interval_ms: int = 100
    keep_diffs: bool = False
    utc_offset: str | None = None

    def key(self) -> str:
        """A stable text of the options that change what a file imports to (for the ledger)."""
        return "|".join(f"{k}={getattr(self, k)}" for k in ("market", "kind", "symbol", "venue", "book_levels",
                                                            "book_interval_ms", "keep_diffs", "utc_offset"))


# -- reading -----------------------------------------------------------------------------------
_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"
_LZ4 = b"\x04\x22\x4d\x18"
_ZSTD = b"\x28\xb5\x2f\xfd"


class _ZstdFrames(io.RawIOBase):
    """The decompressed bytes of a zstd file of one or more frames, strictly: a file that ends
    inside a frame raises ``EOFError`` (zstandard's ``stream_reader`` returns what it has and
    stops, so a cut download would import as a shorter file)."""

    def __init__(self, src):
        import zstandard

        self._src, self._new = src, zstandard.ZstdDecompressor().decompressobj
        self._obj, self._started = self._new(), False
        self._buf, self._at = b"", 0  # decompressed bytes not yet read, from _at

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self._at >= len(self._buf):
            data = self._src.read(1 << 20)
            if not data:
                if self._started and not self._obj.eof:
                    raise EOFError("the zstd stream ended inside a frame (a cut file)")
                return 0
            out = []
            while data:
                if self._obj.eof:  # the next frame
                    self._obj = self._new()
                self._started = True
                out.append(self._obj.decompress(data))
                data = self._obj.unused_data if self._obj.eof else b""
            self._buf, self._at = b"".join(out), 0
        n = min(len(b), len(self._buf) - self._at)
        b[:n] = self._buf[self._at:self._at + n]
        self._at += n
        return n

    def close(self) -> None:
        self._src.close()
        super().close()


class _Counted(io.RawIOBase):
    """A binary file that reports where each read was: ``on_read(offset, n)`` (for the
    progress bar, which counts each byte of the file once: ``ReadBytes``)."""

    def __init__(self, fh, on_read: Callable[[int, int], None] | None):
        self._fh, self._on_read = fh, on_read

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._fh.seekable()

    def seek(self, offset, whence=0):
        return self._fh.seek(offset, whence)

    def tell(self):
        return self._fh.tell()

    def readinto(self, b) -> int:
        at = self._fh.tell() if self._on_read is not None else 0
        n = self._fh.readinto(b)
        if n and self._on_read is not None:
            self._on_read(at, n)
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


class _Closing(io.BufferedReader):
    """A buffered reader that also closes what it was read through (a zip archive, its file)."""

    def __init__(self, raw, extra):
        super().__init__(raw, 1 << 20)
        self._extra = extra

    def close(self) -> None:
        try:
            super().close()
        finally:
            for obj in self._extra:
                obj.close()


@dataclass
class Member:
    """One data stream of a file: the file itself, or one entry of a zip or tar archive.

    ``name`` is what formats are detected from (the zip entry's name, or the file's name
    without ``.gz``/``.lz4``/``.zst``); ``path`` is the file on disk (error messages).
    """

    path: Path
    name: str
    _open: Callable[[], io.BufferedIOBase]
    optional: bool = False  # a part of a container that may hold other things (a cassette's other calls)

    def open(self) -> io.BufferedIOBase:
        return self._open()

    def head(self, n: int = 4096) -> bytes:
        """The first ``n`` decompressed bytes (detection), without a UTF-8 byte-order mark."""
        with self.open() as fh:
            return fh.read(n).removeprefix(_BOM)

    def where(self) -> str:
        return str(self.path) if self.name == _strip(self.path.name) else f"{self.path}:{self.name}"

    def lines(self) -> Iterator[tuple[int, bytes]]:
        """``(line number from 1, line without its newline)`` of every non-empty line (a
        byte order mark before the first is not part of it: detection reads past it too)."""
        with self.open() as fh:
            for i, line in enumerate(fh, 1):
                line = line.rstrip(b"\r\n")
                if i == 1:
                    line = line.removeprefix(_BOM)
                if line:
                    yield i, line

    def read(self) -> bytes:
        with self.open() as fh:
            return fh.read()


def _strip(name: str) -> str:
    for ext in (".gz", ".lz4", ".zst"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def open_members(path, on_read: Callable[[int, int], None] | None = None) -> list[Member]:
    """The data streams of ``path``, decompressing by magic bytes (gzip, zip, tar, lz4 frame, zstd).

    ``on_read(offset, n)``: called for every read of the file's bytes (each member reads
    through its own handle: a tar entry from the archive's start, a zip entry from its
    header; ``ReadBytes`` counts each byte once).

    Raises
    ------
    DataImportError
        The file cannot be opened, or is an empty zip or tar archive.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        raise DataImportError(f"cannot open {path}: {exc.strerror or exc}") from None
    magic = head[:4]

    def raw():
        return _Counted(open(path, "rb"), on_read)

    if head[257:262] == b"ustar" or (magic.startswith((_GZIP, b"BZh", b"\xfd7zX")) and _is_tar(path)):
        return _tar_members(path, raw)

    if magic == _ZIP:
        try:
            with zipfile.ZipFile(path) as z:
                names = [i.filename for i in z.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as exc:
            raise MalformedInput(path, None, f"not a readable zip archive ({exc})") from None
        return _entries(path, "zip", names, raw, lambda src: zipfile.ZipFile(io.BufferedReader(src, 1 << 20)),
                        lambda z, name: z.open(name))
    if magic.startswith(_GZIP):
        return [Member(path, _strip(path.name), lambda: io.BufferedReader(gzip.GzipFile(fileobj=raw()), 1 << 20))]
    if magic == _LZ4:
        import lz4.frame

        return [Member(path, _strip(path.name), lambda: io.BufferedReader(lz4.frame.LZ4FrameFile(raw()), 1 << 20))]
    if magic == _ZSTD:
        return [Member(path, _strip(path.name), lambda: io.BufferedReader(_ZstdFrames(raw()), 1 << 20))]
    if path.suffix in (".yaml", ".yml") and magic.startswith(b"inte"):
        return _cassette(path)
    return [Member(path, path.name, lambda: io.BufferedReader(raw(), 1 << 20))]


def _is_tar(path: Path) -> bool:
    """A compressed tar archive (``.tar.gz``: reads its first header only)."""
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def _tar_members(path: Path, raw) -> list[Member]:
    """One member per regular file of a tar archive (Binance's T_DEPTH download is a
    ``<SYMBOL>_T_DEPTH_<date>.tar.gz`` of a ``..._depth_snap.csv`` and a ``..._depth_update.csv``)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise MalformedInput(path, None, f"not a readable tar archive ({exc})") from None
    return _entries(path, "tar", names, raw, lambda src: tarfile.open(fileobj=src, mode="r|*"), _tar_entry)


def _tar_entry(tf: tarfile.TarFile, name: str) -> "io.BufferedReader | None":
    """The entry ``name`` of a tar archive opened as a stream: read up to it and no further
    (``extractfile(name)`` would list, i.e. decompress, the whole archive first)."""
    for info in tf:
        if info.name == name:
            return tf.extractfile(info)
    return None


def _entries(path: Path, what: str, names: list[str], raw, open_archive, open_entry) -> list[Member]:
    """A member per entry of an archive, each opened through its own read of the file."""
    if not names:
        raise DataImportError(f"{path}: the {what} archive holds no file")

    def opener(name):
        def _open():
            src = raw()
            try:
                archive = open_archive(src)
                entry = open_entry(archive, name)
            except BaseException:
                src.close()
                raise
            if entry is None:
                archive.close()
                src.close()
                raise DataImportError(f"{path}: {name} is no longer in the {what} archive")
            return _Closing(entry, (archive, src))
        return _open

    return [Member(path, n, opener(n)) for n in names]


def _cassette(path: Path) -> list[Member]:
    """A vcrpy cassette (``interactions:`` of recorded HTTP calls): one member per response
    body, named ``<file>#<n>:<request type>`` (the ``type`` of a JSON POST body, e.g.
    Hyperliquid's ``fundingHistory``)."""
    try:
        import yaml
    except ImportError:
        raise DataImportError(f"{path}: reading vcrpy cassettes needs PyYAML (pip install PyYAML)") from None
    import orjson

    try:
        doc = yaml.safe_load(path.read_text())
        items = []
        for i, it in enumerate(doc["interactions"]):
            body = it["response"]["body"]["string"]
            try:
                req = orjson.loads(it["request"].get("body") or "{}")
                what = req.get("type", "") if isinstance(req, dict) else ""
            except orjson.JSONDecodeError:
                what = ""
            data = body.encode() if isinstance(body, str) else bytes(body)
            items.append(Member(path, f"{path.name}#{i}:{what}", lambda data=data: io.BufferedReader(io.BytesIO(data)),
                                optional=True))
    except (yaml.YAMLError, KeyError, TypeError) as exc:
        raise MalformedInput(path, None, f"not a vcrpy cassette ({type(exc).__name__}: {exc})") from None
    return items


_BLOCK_LINES = 200_000
_BOM = b"\xef\xbb\xbf"
_FIELDS = re.compile(rb",")


def csv_blocks(member: Member, columns: list[str], dtypes: dict, *, header: bool | None, required=()) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """Blocks of a CSV stream as typed frames, with the file line number of every row.

    ``columns`` names the fields in file order; ``dtypes`` maps some of them to numpy
    dtypes (the others stay text). ``header``: the first line is a header (True), is not
    (False), or is one when it does not start with a digit (None, e.g. Binance's archive,
    which added header rows in 2022). A row with the wrong number of fields, a value that
    does not convert, or an empty field in ``required`` raises ``MalformedInput`` naming
    the line.
    """
    where = member.where()
    ncols = len(columns)
    with member.open() as fh:
        line_no = 0
        first = True
        while True:
            block = []
            numbers = []
            for line in fh:
                line_no += 1
                line = line.rstrip(b"\r\n")
                if not line:
                    continue
                if first:
                    first = False
                    line = line.removeprefix(_BOM)  # a CSV saved by a spreadsheet: not part of the first value
                    if header or (header is None and not line[:1].isdigit() and not line[:1] == b"-"):
                        continue
                block.append(line)
                numbers.append(line_no)
                if len(block) >= _BLOCK_LINES:
                    break
            if not block:
                return
            yield np.asarray(numbers), _parse_block(where, block, numbers, columns, dtypes, ncols, required)


def _parse_block(where, block, numbers, columns, dtypes, ncols, required) -> pd.DataFrame:
    for i, line in enumerate(block):
        if line.count(b",") != ncols - 1:
            # checked here, not left to pandas: a short row would be padded with NaN
            n = line.count(b",") + 1
            raise MalformedInput(where, numbers[i], f"expected {ncols} comma-separated fields ({','.join(columns)}), got {n}", line)
    data = b"\n".join(block)
    try:
        df = pd.read_csv(io.BytesIO(data), header=None, names=columns, dtype=dtypes, engine="c", keep_default_na=False,
                         na_values=[""])
    except (ValueError, OverflowError):
        df = pd.read_csv(io.BytesIO(data), header=None, names=columns, dtype=str, keep_default_na=False)
        for name, dt in dtypes.items():
            text = df[name]
            if np.dtype(dt).kind == "b":
                bad = ~text.str.lower().isin(["true", "false", ""])
            else:
                conv = pd.to_numeric(text.where(text != ""), errors="coerce")
                bad = conv.isna() & (text != "")
                if np.dtype(dt).kind in "iu":
                    bad |= conv.notna() & (conv != np.floor(conv.fillna(0)))
            if bad.any():
                i = int(np.argmax(bad.to_numpy()))
                raise MalformedInput(where, numbers[i], f"{name} {text.iloc[i]!r} is not a {np.dtype(dt).name}", block[i]) from None
        raise MalformedInput(where, numbers[0], "the block does not parse as CSV") from None
    for name in required:
        missing = df[name].isna().to_numpy()
        if missing.any():
            i = int(np.argmax(missing))
            raise MalformedInput(where, numbers[i], f"{name} is empty", block[i])
    return df


# -- times -------------------------------------------------------------------------------------
def epoch_to_ns(values, *, where: str = "", lines=None, what: str = "timestamp") -> np.ndarray:
    """Epoch times in s, ms, us or ns -> int64 ns, the unit read from each value.

    Binance's archive switched spot files from milliseconds to microseconds on 2025-01-01
    (one monthly file or folder can hold both), so the unit is decided per value by
    magnitude, unambiguous for any time from 2001-09-09 to the year 5138: ``>= 1e17`` ns,
    ``>= 1e14`` us, ``>= 1e11`` ms, else seconds. Floats may carry a fraction (seconds
    ``1585180700.0647``); it is kept to the nanosecond float64 can hold.
    """
    v = np.asarray(values)
    if v.dtype.kind not in "iuf":
        raise MalformedInput(where, None, f"{what} values are not numbers (dtype {v.dtype})")
    if v.dtype.kind == "f":
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.argmax(bad))
            raise MalformedInput(where, None if lines is None else int(lines[i]), f"{what} is empty")
        whole = np.floor(v)
        if (whole == v).all() and (np.abs(v) < 2**62).all():
            v = v.astype(np.int64)
        else:  # fractional values: scale in float (seconds with a fraction, ms with us digits)
            scale = np.where(v >= 1e17, 1.0, np.where(v >= 1e14, 1e3, np.where(v >= 1e11, 1e6, 1e9)))
            _check_epoch(v, where, lines, what)
            return np.rint(v * scale).astype(np.int64)
    v = v.astype(np.int64, copy=False)
    _check_epoch(v, where, lines, what)
    scale = np.where(v >= 10**17, 1, np.where(v >= 10**14, 1_000, np.where(v >= 10**11, 1_000_000, 1_000_000_000)))
    return v * scale


def _check_epoch(v, where, lines, what) -> None:
    bad = v < 10**9  # before 2001-09-09: no crypto venue; a unit or field mix-up
    if bad.any():
        i = int(np.argmax(bad))
        raise MalformedInput(where, None if lines is None else int(lines[i]),
                             f"{what} {v[i].item()} is not an epoch time after 2001 (s, ms, us or ns)")


# -- symbols -----------------------------------------------------------------------------------
def resolve_symbol(venue: str, native: str, market: str | None, *, where: str = "") -> str:
    """The tickstore symbol of a venue-native id (``BTCUSDT``, ``BTCUSD_PERP``, ``BTC``).

    ``market``: Binance ``spot``/``usdm``/``coinm`` (``binanceus``: spot only); Bybit
    ``spot``, ``linear`` or ``inverse`` (``linear``: the id says which of linear and inverse
    it is, as Bybit's derivatives files and Tardis' ``bybit`` hold both); Hyperliquid
    ``perp``. Binance ids are split by ``collectors.exchanges.binance``; Bybit and
    Hyperliquid ids are named as the live parsers name what a frame says
    (``collectors.symbols.Markets.wire_info``: ccxt's symbols by the venues' naming rules):
    ``BTCUSDT`` -> ``BTC/USDT:USDT``, ``BTCPERP`` -> ``BTC/USDC:USDC``, ``BTC-14MAR25`` ->
    ``BTC/USDC:USDC-250314``, ``BTCUSD`` (inverse) -> ``BTC/USD:BTC``, ``kPEPE`` ->
    ``KPEPE/USDC:USDC``. What those rules cannot name is refused rather than guessed: a
    Bybit inverse future (its delivery date is not in the id: pass ``--symbol``), Hyperliquid
    spot pairs (``@107``, ``PURR/USDC``) and other dexes' perpetuals (``xyz:TSLA``).
    """
    try:
        if venue in ("binance", "binanceus"):
            if market is None:
                raise MissingOption(f"{where}: cannot tell the Binance market of {native!r}; pass --market spot, usdm or coinm")
            return bn.to_tickstore(native, bn.Market(market), venue)
        if venue == "bybit":
            categories = ("spot",) if market == "spot" else ("inverse",) if market == "inverse" else ("linear", "inverse")
            why = []
            for category in categories:
                try:
                    return MARKETS.wire_symbol("bybit", native, category=category)
                except SymbolNotFound as exc:
                    why.append(str(exc))
            raise MissingOption(f"{where}: cannot name Bybit {'/'.join(categories)} id {native!r} as ccxt does "
                                f"({'; '.join(why)}); pass --symbol with its ccxt symbol, e.g. bybit:BTC/USD:BTC-241227")
        if venue == "hyperliquid":
            try:
                return MARKETS.wire_symbol("hyperliquid", native)
            except SymbolNotFound as exc:
                raise DataImportError(f"{where}: {exc}") from None
    except (SymbolError, ValueError) as exc:
        if isinstance(exc, DataImportError):
            raise
        raise DataImportError(f"{where}: cannot map {venue} id {native!r} to a tickstore symbol: {exc}") from None
    raise DataImportError(f"{where}: venue {venue!r} is not one the store collects (binance, binanceus, bybit, hyperliquid)")


def one_symbol_for(options: ImportOptions, natives, *, where: str) -> None:
    """``--symbol`` names one market: refused for a file whose rows name several."""
    distinct = list(dict.fromkeys(str(n) for n in natives))
    if options.symbol is not None and len(distinct) > 1:
        raise MissingOption(f"{where}: --symbol {options.symbol} was given, but the file holds {distinct[0]!r} and "
                            f"{distinct[1]!r}; import it without --symbol")


#: the market word of each venue's perpetuals (``resolve_symbol``), for files of perpetuals only
PERPETUAL_MARKET = {"binance": "usdm", "bybit": "linear", "hyperliquid": "perp"}


def user_symbol(opts: ImportOptions, venue: str | None, market: str | None, *, where: str = "") -> str | None:
    """``--symbol`` as a tickstore symbol (it may be given as one, or as the venue's id)."""
    if opts.symbol is None:
        return None
    s = opts.symbol.strip()
    if ":" in s and s.split(":", 1)[0] in EXCHANGES:
        return s
    venue = opts.venue or venue
    if venue is None:
        raise MissingOption(f"{where}: --symbol {s!r} is not a tickstore symbol like 'binance:BTC/USDT:USDT'; "
                            f"give one, or pass --venue")
    if "/" in s:
        return f"{venue}:{s}"
    return resolve_symbol(venue, s.replace("/", ""), opts.market or market, where=where)


# -- the sink ----------------------------------------------------------------------------------
class Sink:
    """Where a format parser puts what it read: frames per (table, symbol), or events.

    Events go through an ``EventBatcher`` exactly as in the live collector (``BookTop`` rows
    to the book table, ``DepthDiff`` to ``book_diffs``); ``drain`` hands everything over as
    frames, in arrival order per (table, symbol).
    """

    def __init__(self, consume: Callable[..., None], *, book_table: str = "book", batch: int = 200_000):
        self._consume = consume  # consume(table, symbol, df, schema, kind)
        self.batcher = EventBatcher(book_table)
        self._batch = batch
        self.state: dict = {}  # shared by the members of one file (e.g. a book built across them)
        self.columns_of: Callable[[str], list | None] = lambda table: None  # a stored table's columns
        self.book_states = None  # the store's book state, saved once the file is committed (run.py)
        self.kind: str | None = None  # the data kind of the member being read: the rows' stream
        self._at_end: list[tuple[str | None, Callable[[], list]]] = []

    def begin(self, kind: str | None) -> None:
        """The rows that follow come from a member of data kind ``kind`` (what was received
        before is handed over under the kind it came from)."""
        self.flush()
        self.kind = kind

    def at_end(self, fn: Callable[[], list]) -> None:
        """Run ``fn`` (returning events, e.g. a book's last grid rows) when the file is read;
        its rows are of the data kind being read now."""
        self._at_end.append((self.kind, fn))

    def close(self) -> None:
        for kind, fn in self._at_end:
            self.begin(kind)
            self.events(fn())
        self._at_end.clear()
        self.flush()

    def frame(self, table: str, symbol: str, df: pd.DataFrame, schema=None) -> None:
        """Rows for ``table``; ``schema``: the table is not built in and is created with it."""
        if len(df):
            self.flush()  # events received before this frame go first
            self._consume(table, symbol, df, schema, self.kind)

    def events(self, events) -> None:
        self.batcher.extend(events)
        if self.batcher.count >= self._batch:
            self.flush()

    def flush(self) -> None:
        if self.batcher.count:
            for (table, symbol), df in self.batcher.drain().items():
                self._consume(table, symbol, df, None, self.kind)


def timeframe_of(ts_ns, *, where: str) -> str:
    """A bar interval (``1m``, ``4h``, ``1d``, ``1M``) from the open times of the first bars
    (callers pass up to ``TIMEFRAME_BARS``): the largest step every spacing is a multiple of,
    so a bar missing near the start (a venue that skips bars without trades, an outage) does
    not make 1-minute bars 2-minute ones. Bars opening on the 1st of months at 00:00 UTC,
    28-31 days apart, are calendar months."""
    ts = np.unique(np.asarray(ts_ns, dtype=np.int64))
    if len(ts) < 2:
        raise MissingOption(f"{where}: cannot tell the bar interval from fewer than two bars; name the file like "
                            f"BTCUSDT-1h-2024-01-01.json or pass --kind <interval> (e.g. --kind 1h)")
    steps = np.diff(ts)
    days = pd.DatetimeIndex(ts, tz="UTC")
    if (days.day == 1).all() and (days.normalize() == days).all() and (steps >= 28 * 86400 * 10**9).all():
        months = np.diff(days.year * 12 + days.month)
        return f"{int(np.gcd.reduce(months))}M"
    if (steps % 1_000_000_000).any():
        raise MissingOption(f"{where}: bar times {ts[:3].tolist()} ns are not whole seconds apart; pass --kind <interval>")
    step = int(np.gcd.reduce(steps // 1_000_000_000))
    unit, seconds = next((u, n) for u, n in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)) if step % n == 0)
    return f"{step // seconds}{unit}"


TIMEFRAME_BARS = 1000  # the bars ``timeframe_of`` is given by the importers


def ohlcv_table(interval: str) -> str:
    """The table of bars of ``interval`` (ccxt/Binance spelling): ``1m`` -> ``ohlcv_1m``,
    ``1w`` -> ``ohlcv_7d``, ``1M``/``1mo`` -> ``ohlcv_1mo`` (calendar months: not built in)."""
    m = re.fullmatch(r"(\d+)(s|m|h|d|w|mo|M)", interval)
    if not m:
        raise DataImportError(f"{interval!r} is not a bar interval like 1m, 4h, 1d, 1w, 1mo")
    n, unit = int(m.group(1)), m.group(2)
    if unit == "w":
        return f"ohlcv_{7 * n}d"
    if unit in ("mo", "M"):
        return f"ohlcv_{n}mo"
    return f"ohlcv_{n}{unit}"


def ohlcv_schema(table: str, *, what: str = "OHLCV bars") -> "Schema | None":
    """``None`` for a built-in bar table; the schema of one the importers create (calendar
    months ``ohlcv_<n>mo``; bars of the mark/index/premium price ``mark_ohlcv_<interval>``...)."""
    from tickstore.errors import UnknownTableError
    from tickstore.schemas import Column, Partition, Schema, builtin_schema

    try:
        builtin_schema(table)
        return None
    except UnknownTableError:
        pass
    return Schema(table, tuple(Column(c, "float64") for c in ("open", "high", "low", "close", "volume")), key=("ts",),
                  partition=Partition.YEAR if table.endswith(("h", "d", "mo")) else Partition.MONTH,
                  description=f"{what}; ts is the bar open")


def ohlcv_frame(ts_ns, o, h, l, c, v) -> pd.DataFrame:
    return pd.DataFrame({"open": np.asarray(o, np.float64), "high": np.asarray(h, np.float64),
                         "low": np.asarray(l, np.float64), "close": np.asarray(c, np.float64),
                         "volume": np.asarray(v, np.float64)}, index=utc_index(ts_ns))


class JsonLines(list):
    """The documents of a JSON-lines file, with the file line of each (``lines``)."""

    lines: list


def load_json(member: Member):
    """A JSON document, or the documents of a JSON-lines file (one per line) as a
    ``JsonLines`` list that remembers their line numbers.

    Raises ``MalformedInput`` naming the line of a JSON-lines document that does not parse.
    """
    import orjson

    raw = member.read().removeprefix(_BOM)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as whole:
        docs = JsonLines()
        docs.lines = []
        for i, line in enumerate(raw.split(b"\n"), 1):
            if not line.strip():
                continue
            try:
                docs.append(orjson.loads(line))
                docs.lines.append(i)
            except orjson.JSONDecodeError as exc:
                if i == 1 and len(docs) == 0 and raw.count(b"\n") <= 1:
                    raise MalformedInput(member.where(), None, f"not JSON ({whole})") from None
                raise MalformedInput(member.where(), i, f"not JSON ({exc})", line) from None
        return docs


def first_json(head: bytes):
    """The first line of ``head`` as JSON (the first document of a JSON-lines file, or a
    one-line document), or None: tells a format from a file whose later lines are broken."""
    import orjson

    try:
        return orjson.loads(head.split(b"\n", 1)[0])
    except orjson.JSONDecodeError:
        return None


def records(doc) -> tuple[list, list | None]:
    """The records of a body (a JSON array), or of a JSON-lines file of bodies (each line an
    array, or one record): ``(records, line of each record or None)``."""
    if isinstance(doc, JsonLines):
        if all(isinstance(d, list) for d in doc) and any(d and isinstance(d[0], (dict, list)) for d in doc):
            out, lines = [], []
            for body, line in zip(doc, doc.lines):
                out += body
                lines += [line] * len(body)
            return out, lines
        return list(doc), list(doc.lines)
    return (doc if isinstance(doc, list) else [doc]), None


def field_values(rows: list, key, dtype, *, where: str, lines=None, what: str | None = None) -> np.ndarray:
    """``rows[i][key]`` of every record as a numpy array of ``dtype`` (numbers may be JSON
    strings, as Binance and Hyperliquid write them). A record without ``key``, or whose
    value is null or does not convert, raises ``MalformedInput`` naming the record: its
    line in a JSON-lines file, else its position in the array."""
    what = what or str(key)
    values = []
    for i, r in enumerate(rows):
        try:
            v = r[key]
            if v is None or isinstance(v, (dict, list)):
                raise ValueError(f"{what} is {v!r}")
            values.append(v)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            problem = f"{what} is missing" if isinstance(exc, (KeyError, IndexError, TypeError)) else str(exc)
            _bad_record(where, lines, i, problem, r)
    try:
        return np.array(values, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        for i, v in enumerate(values):
            try:
                np.array([v], dtype=dtype)
            except (TypeError, ValueError, OverflowError):
                _bad_record(where, lines, i, f"{what} {v!r} is not a {np.dtype(dtype).name}", rows[i])
        raise


def record_groups(rows: list, lines, keys):
    """``(key, records, their lines)`` per distinct key (first-seen order) of ``keys``
    (one key per record, e.g. its symbol)."""
    for key in dict.fromkeys(keys):
        sel = [i for i, k in enumerate(keys) if k == key]
        yield key, [rows[i] for i in sel], None if lines is None else [lines[i] for i in sel]


def funding_frame(ts_ns, rate, *, where: str, label: str, nominal: float | None) -> pd.DataFrame:
    """Settled funding rows (the ``funding`` table) from settlement stamps as venues and
    tools write them: each snapped to its hour (``collectors.funding.settlement_times``,
    which refuses what is not a settlement), sorted, the interval from the spacing
    (``nominal`` hours for a lone row). ``label`` names the series in errors."""
    from collectors.funding import SettlementError, funding_intervals, settlement_times

    try:
        snapped = settlement_times(np.asarray(ts_ns, dtype=np.int64), source=f"{where} {label}".strip())
    except SettlementError as exc:
        raise MalformedInput(where, None, str(exc)) from None
    order = np.argsort(snapped.asi8, kind="stable")
    t = snapped.asi8[order]
    return pd.DataFrame({"rate": np.asarray(rate, dtype=np.float64)[order],
                         "interval_h": funding_intervals(t, nominal=nominal)}, index=utc_index(t))


def _bad_record(where: str, lines, i: int, problem: str, record) -> None:
    import orjson

    text = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    if lines is not None:
        raise MalformedInput(where, int(lines[i]), problem, text) from None
    raise MalformedInput(where, None, f"record {i + 1} of the array: {problem}", text) from None


def utc_index(ns) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]"), tz="UTC", name="ts")


def utc(ns) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]"), tz="UTC")


class ReadBytes:
    """How many distinct bytes of a file were read, however often and in whatever order its
    members read them (a compressed tar archive is decompressed from its start for each
    entry; a zip archive reads its directory at the end first): the union of the ranges
    ``add(offset, n)`` was given. ``add`` returns the bytes new to the count."""

    def __init__(self):
        self._spans: list[list[int]] = []  # sorted, disjoint, not touching [start, stop)
        self.total = 0

    def add(self, offset: int, n: int) -> int:
        start, stop = int(offset), int(offset) + int(n)
        if stop <= start:
            return 0
        spans = self._spans
        i = bisect.bisect_left(spans, [start]) if spans else 0
        if i and spans[i - 1][1] >= start:  # touches the span before
            i -= 1
        j = i
        covered = 0
        lo, hi = start, stop
        while j < len(spans) and spans[j][0] <= stop:
            a, b = spans[j]
            covered += min(b, stop) - max(a, start) if min(b, stop) > max(a, start) else 0
            lo, hi = min(lo, a), max(hi, b)
            j += 1
        spans[i:j] = [[lo, hi]]
        new = (stop - start) - covered
        self.total += new
        return new


def file_size(path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
