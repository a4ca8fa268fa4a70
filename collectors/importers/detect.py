"""Which format, data kind, venue, market and symbol a file holds, from its name and first bytes.

Each format module answers for itself (``sniff(member, head, options) -> Detected | None``);
``detect`` asks them in a fixed order (most specific first) and the first answer wins.
``--format`` skips the guessing but the module still reads the kind; a file no module
recognises raises ``MissingOption`` quoting its first line and listing the formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collectors.book import book_table

from .core import EmptyInput, Format, ImportOptions, Member, MissingOption

__all__ = ["Detected", "detect", "parser_of"]


@dataclass(frozen=True)
class Detected:
    """What a file holds. ``symbol`` is a tickstore symbol when the file's name or content
    names a single one, else ``None`` (rows name theirs, or ``--symbol`` must)."""

    format: Format
    kind: str
    venue: str | None = None
    market: str | None = None
    symbol: str | None = None
    hints: dict = field(default_factory=dict, compare=False)

    def book_table(self, options: ImportOptions) -> str:
        levels = options.book_levels or self.hints.get("levels") or 5
        return book_table(int(levels))


def _modules():
    from . import (binance_rest, binance_vision, bybit_history, ccxt_dump, freqtrade, funding_csv, hyperliquid_archive,
                   hyperliquid_rest, tardis)

    # order: formats with an unmistakable header or wrapper first; bare JSON arrays last
    return {
        Format.TARDIS: tardis,
        Format.BINANCE_VISION: binance_vision,
        Format.FUNDING_CSV: funding_csv,
        Format.HYPERLIQUID_ARCHIVE: hyperliquid_archive,
        Format.BYBIT_HISTORY: bybit_history,
        Format.FREQTRADE: freqtrade,
        Format.HYPERLIQUID_REST: hyperliquid_rest,
        Format.BINANCE_REST: binance_rest,
        Format.CCXT: ccxt_dump,
    }


def detect(member: Member, fmt: Format | None, options: ImportOptions) -> Detected:
    """The ``Detected`` of one member; see the module docstring.

    Raises
    ------
    MissingOption
        No format recognises the file (or not the one given): the message quotes the
        start of the file and names ``--format``/``--kind``/``--market``/``--symbol``.
    """
    head = member.head(_HEAD)
    _refuse_empty(member, head)
    modules = _modules()
    wanted = [fmt] if fmt is not None else list(modules)
    for f in wanted:
        # each module is told the format the user asked for (None: guessing), so a shape
        # it would only take when asked (a bare numeric CSV) is never guessed
        found = modules[f].sniff(member, head, options, fmt)
        if found is not None:
            return found
    first = head.split(b"\n", 1)[0][:120].decode("utf-8", "replace")
    if fmt is not None:
        raise MissingOption(f"{member.where()} does not look like a {fmt.value} file (it starts {first!r}); "
                            f"check --format, or --kind for the data kind")
    raise MissingOption(
        f"cannot tell the format of {member.where()} from its name and first line {first!r}; "
        f"pass --format, one of {[f.value for f in Format]}"
    )


_HEAD = 1 << 16


def _refuse_empty(member: Member, head: bytes) -> None:
    """``EmptyInput`` for a member with no data: no bytes (after decompression), only blank
    lines, a lone header line (a line starting with a letter, as every header of these
    formats does and no data line does) or an empty JSON array/object."""
    where = member.where()
    text = head.strip()
    if not text:
        raise EmptyInput(f"{where} is empty (no data after decompression): nothing to import")
    if len(head) >= _HEAD:
        return  # more follows: not empty
    lines = [ln.strip() for ln in head.splitlines() if ln.strip()]
    if text in (b"[]", b"{}"):
        raise EmptyInput(f"{where} holds an empty JSON {'array' if text == b'[]' else 'object'}: nothing to import")
    if len(lines) == 1 and lines[0][:1].isalpha():
        first = lines[0][:120].decode("utf-8", "replace")
        raise EmptyInput(f"{where} holds only a header line ({first!r}), no rows: nothing to import")


def parser_of(fmt: Format):
    """The ``parse(member, detected, options, sink)`` function of a format."""
    return _modules()[fmt].parse
