"""Collectors: venue feeds -> normalised events -> tickstore tables.

::

    exchanges/<venue>.py   subscriptions, symbol mapping and parsers (raw frame -> events)
    events.py              the normalised events and the EventBatcher (events -> frames)
    book.py                full L2 book from snapshot + diffs, sampled onto a time grid
    capture.py             readers for recorded captures (hftbacktest, cryptofeed)
    replay.py              recorded frames -> the same parsers/book/batcher -> the store
    session.py             one websocket connection: subscribe, keep alive, reconnect, gaps
    venues.py              what differs per venue for the live collector (Binance, Bybit, Hyperliquid)
    collector.py           live collection: sessions -> journal -> parsers/books -> the store
    daemon.py              every configured feed in one process ([[feeds]] TOML)
    simulator/             the offline exchange: Binance, Bybit v5 and Hyperliquid dialects on 127.0.0.1
    cli.py                 click commands plugged into the ``tickstore`` CLI

Dependencies point one way: ``collectors -> tickstore``.
"""
