"""Helpers of the importer tests: run an import, write small files from published docs."""

from __future__ import annotations

import gzip
import io
import tarfile
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


def write_tar(path: Path, members: list[tuple[str, str]]) -> Path:
    """A gzip tar archive of text members ``(name, text)``, in that order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tf:
        for name, text in members:
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def bybit_frames(data_dir: Path, topic: str, conn: str = "BYBIT.ws.2") -> list[tuple[int, str]]:
    """(local receive time in us, frame text) of the ``topic`` frames one connection of the
    real ``cryptofeed/BYBIT.jsonl.zst`` capture received (``BYBIT.ws.2``: linear)."""
    import json

    import zstandard

    raw = zstandard.ZstdDecompressor().stream_reader(open(data_dir / "cryptofeed" / "BYBIT.jsonl.zst", "rb")).read()
    out = []
    for line in raw.decode().splitlines():
        o = json.loads(line)
        if o.get("t") == "recv" and o.get("conn") == conn and f'"{topic}"' in o["data"]:
            out.append((round(o["ts"] * 1_000_000), o["data"]))
    return out
