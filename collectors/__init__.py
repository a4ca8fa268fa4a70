"""Collectors: venue feeds -> normalised events -> tickstore tables.

::

    exchanges/<venue>.py   subscriptions, symbol mapping and parsers (raw frame -> events)
    events.py              the normalised events and the EventBatcher (events -> frames)
    book.py                full L2 book from snapshot + diffs, sampled onto a time grid
    capture.py             readers for recorded captures (hftbacktest, cryptofeed)
    replay.py              recorded frames -> the same parsers/book/batcher -> the store
    cli.py                 click commands plugged into the ``tickstore`` CLI

Dependencies point one way: ``collectors -> tickstore``.
"""
