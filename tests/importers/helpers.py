"""Helpers of the importer tests: run an import, write small files from published docs."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

from collectors.importers import ImportOptions, import_files


def run(store, *paths, fmt=None, force=False, **options):
    """``import_files`` of ``paths`` without a progress bar; returns the report."""
    return import_files(store, [str(p) for p in paths], format=fmt, options=ImportOptions(**options), progress=False,
                        force=force)


def write(path: Path, text: str, *, gz: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_zip(path: Path, member: str, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, text)
    return path
