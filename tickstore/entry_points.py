"""The entry points of one group, read straight from the installed distributions' metadata.

The CLI looks up its plugins (group ``tickstore.cli``) on every run, ``select`` included (a
plugin named like a built-in replaces it). ``importlib.metadata.entry_points(group=...)``
costs a new process ~30 ms (measured: 25-40 ms; importing it pulls in ``email``, ``csv``,
``zipfile``..., then it makes a ``Distribution`` object per installed package); this reads
the same files by the same rules in ~1-2 ms, and asks ``importlib.metadata`` wherever it
could not answer exactly as it would.

The rules (those of ``importlib.metadata``, which tests/tickstore/test_entry_points.py
checks this against, in the installed environment and in hand-made ones):

- ``sys.path`` in order; in each folder, the entries named ``*.dist-info`` or
  ``*.egg-info`` in ``os.listdir`` order (folders or not: an ``.egg-info`` *file* is a
  distribution without entry points);
- a distribution's name is its folder's name up to the first ``-``, normalised (PEP 503,
  ``-`` as ``_``); the first folder of a name wins: a later one (further down ``sys.path``,
  or another version beside it) is skipped, even if the first has no entry points;
- ``<folder>/entry_points.txt`` (PyPA "Entry points specification",
  https://packaging.python.org/en/latest/specifications/entry-points/): ``[group]``
  sections of ``name = object reference`` lines; lines are stripped, blank lines and
  ``#`` comments skipped, lines before the first section ignored; ``name`` and value split
  at the first ``=``. A line without ``=``, or a file that is not UTF-8, is an error
  (``TypeError`` / ``UnicodeDecodeError``, as ``importlib.metadata`` raises), here naming
  the file.

``importlib.metadata`` answers instead when a ``sys.path`` entry is a file (a zip) or an
``.egg`` folder, when a metadata folder's name does not give the distribution's name (it
would read the name from ``METADATA``), or when ``PathFinder`` is not the one finder on
``sys.meta_path`` that finds distributions (an import hook with its own; the
``importlib_metadata`` backport, once imported, replaces ``PathFinder``'s).
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import sys

__all__ = ["EntryPoint", "entry_points"]

_EXTS = (".dist-info", ".egg-info")
# the object reference, exactly as importlib.metadata.EntryPoint.pattern reads it
_REFERENCE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class EntryPoint:
    """One entry point: ``name = value`` in section ``group``; ``value`` is an object
    reference ``module[:attr.attr...]`` (``load`` imports it)."""

    __slots__ = ("name", "value", "group")

    def __init__(self, name: str, value: str, group: str):
        self.name, self.value, self.group = name, value, group

    def __repr__(self) -> str:
        return f"EntryPoint(name={self.name!r}, value={self.value!r}, group={self.group!r})"

    def _match(self) -> re.Match:
        m = _REFERENCE.match(self.value)
        if m is None:
            raise ValueError(f"entry point {self.name!r}: {self.value!r} is not an object reference (module:attr)")
        return m

    @property
    def module(self) -> str:
        return self._match().group("module")

    @property
    def attr(self) -> str | None:
        return self._match().group("attr")

    def load(self):
        """The module, or the object the reference names in it (imported now)."""
        m = self._match()
        attrs = filter(None, (m.group("attr") or "").split("."))
        return functools.reduce(getattr, attrs, importlib.import_module(m.group("module")))


class _Unreadable(Exception):
    """What this reader cannot decide as ``importlib.metadata`` would: ask it."""


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` of the distributions on ``sys.path``, in the order
    ``importlib.metadata.entry_points(group=group)`` gives them."""
    try:
        return _scan(group)
    except _Unreadable:
        from importlib import metadata

        return [EntryPoint(ep.name, ep.value, ep.group) for ep in metadata.entry_points(group=group)]


def _scan(group: str) -> list[EntryPoint]:
    from importlib.machinery import PathFinder

    if [f for f in sys.meta_path if getattr(f, "find_distributions", None) is not None] != [PathFinder]:
        # an import hook with distributions of its own (the importlib_metadata backport
        # even takes PathFinder's away from it)
        raise _Unreadable
    seen: set[str] = set()
    out: list[EntryPoint] = []
    for root in sys.path:
        if not isinstance(root, str):
            raise _Unreadable
        for folder in _metadata_folders(root):
            name = _dist_name(folder)
            if name in seen:
                continue
            seen.add(name)
            text = _read(os.path.join(root, folder, "entry_points.txt"))
            if text is not None:
                out += (ep for ep in _parse(text, os.path.join(root, folder)) if ep.group == group)
    return out


def _metadata_folders(root: str) -> list[str]:
    try:
        children = os.listdir(root or ".")
    except NotADirectoryError:
        raise _Unreadable from None  # a zip file on sys.path
    except OSError:
        return []  # absent or unreadable: importlib.metadata finds nothing there either
    if os.path.basename(root).lower().endswith(".egg"):
        raise _Unreadable  # its EGG-INFO's name is in its metadata
    return [c for c in children if c.lower().endswith(_EXTS)]


def _dist_name(folder: str) -> str:
    stem, ext = os.path.splitext(folder)
    name = stem.partition("-")[0]
    if ext not in _EXTS or not name:
        raise _Unreadable  # e.g. Foo.DIST-INFO: importlib.metadata reads the name from METADATA
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None
    except UnicodeDecodeError as exc:
        raise UnicodeDecodeError(exc.encoding, exc.object, exc.start, exc.end, f"{exc.reason} (in {path})") from None


def _parse(text: str, where: str) -> list[EntryPoint]:
    out, group = [], None
    for line in map(str.strip, text.splitlines()):
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
        elif group is not None:
            name, eq, value = line.partition("=")
            if not eq:
                raise TypeError(f"{where}/entry_points.txt: [{group}] line {line!r} is not 'name = value'")
            out.append(EntryPoint(name.strip(), value.strip(), group))
    return out
