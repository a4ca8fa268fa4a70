"""The public surface of ``tickstore`` is small and deliberate."""

import tickstore


def test_all_is_exactly_the_public_surface():
    assert sorted(tickstore.__all__) == sorted(
        [
            "Tickstore", "Table", "Commit", "Selection", "Pin", "PinnedFile", "PinnedPart", "VerifyReport", "Schema", "Column",
            "Partition", "TradeKind", "TsClock", "Clock", "SystemClock", "FrozenClock", "TickstoreError", "UnknownTableError", "SymbolError",
            "SchemaError", "FrameError", "DuplicateKeyError", "NotFoundError", "SnapshotError", "LockedError",
            "FormatVersionError", "CorruptionError", "PinError", "PrunedError", "StorageError", "ReindexReport",
        ]
    )
    for name in tickstore.__all__:
        assert getattr(tickstore, name).__module__.startswith("tickstore.")


def test_every_error_derives_from_the_one_root():
    for name in tickstore.__all__:
        obj = getattr(tickstore, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, tickstore.TickstoreError)


def test_tickstore_imports_neither_collectors_nor_research():
    import pathlib
    import re

    for path in pathlib.Path(tickstore.__file__).parent.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+(collectors|research)\b", text, re.M), path
