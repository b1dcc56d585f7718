# -*- test-case-name: tests.test_store -*-
"""
The store's database: its tables, its format, and opening it, which
refuses a store of another format (or a database of something else)
before anything is written to it.
"""

from __future__ import annotations

import os
import sqlite3
import time

#: The format of the database this code writes; a store of another format
#: is refused with a clear message, never misread.
FORMAT = 2
#: The formats this code reads: format 1 differs only in having no batches
#: packed with one shared stamp, so it is taken up as format 2.
READS = ("1", "2")
#: The database's file name in the store's folder.
DATABASE = "logio.sqlite3"
#: The page size of a new store's database.
PAGE_SIZE = 16384

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS topics (
    id INTEGER PRIMARY KEY, app TEXT NOT NULL, proc TEXT NOT NULL, host TEXT NOT NULL,
    UNIQUE (app, proc, host)
);
CREATE TABLE IF NOT EXISTS batches (
    first INTEGER PRIMARY KEY, count INTEGER NOT NULL, topic INTEGER NOT NULL,
    oldest TEXT NOT NULL, newest TEXT NOT NULL, size INTEGER NOT NULL, records BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_newest ON batches (newest);
"""


class StoreError(Exception):
    """
    The store cannot be opened: the message says why and what to do.
    """


def openDatabase(directory: str) -> tuple[sqlite3.Connection, int]:
    """
    Open (or create) the database in C{directory}.

    @return: The connection, and the store's id.
    @raise StoreError: If the folder or database cannot be used, or holds
        a store of another format.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, DATABASE)
        connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        # What the file holds is read before anything is written to it: a
        # store of another format is left exactly as it was.
        known = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        meta = dict(connection.execute("SELECT key, value FROM meta").fetchall()) if known else {}
        if meta and (meta.get("format") not in READS or not meta.get("id", "").isdigit()):
            connection.close()
            raise StoreError(
                f"--store {directory}: it holds a store of format {meta.get('format')!r}, and "
                f"this logio reads formats {', '.join(READS)} only: use another folder, or the "
                "logio that wrote it"
            )
        if meta and meta["format"] != str(FORMAT):
            # What is written from now on, an older logio would misread.
            connection.execute("UPDATE meta SET value = ? WHERE key = 'format'", (str(FORMAT),))
        if not meta and connection.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            connection.close()
            raise StoreError(
                f"--store {directory}: {DATABASE} there is a database of something else: "
                "use another folder"
            )
        if not meta:
            # Before the first table: with bigger pages than SQLite's 4 KiB
            # a batch spans fewer overflow pages, which takes about a
            # seventh off the writer's time per record.
            connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        # Deleting (retention) need not overwrite what it deletes: on, as
        # some builds have it, it makes deletes 14 times slower.
        connection.execute("PRAGMA secure_delete=OFF")
        # The write-ahead log shrinks back to a few MB after a checkpoint.
        connection.execute("PRAGMA journal_size_limit=8388608")
        if not meta:
            # The tables and the store's id, at once: a store is whole or
            # not there.
            ident = int(time.time() * 1000)
            connection.executescript(
                f"BEGIN; {_SCHEMA} INSERT INTO meta (key, value) "
                f"VALUES ('format', '{FORMAT}'), ('id', '{ident}'); COMMIT;"
            )
            return connection, ident
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"--store {directory}: cannot use it: {e}") from None
    return connection, int(meta["id"])
