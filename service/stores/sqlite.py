"""Registered styles in SQLite: the embedded default, one file in ADAIN_STATE_DIR.

WAL journal with synchronous=FULL: a committed registration survives a kill -9 or a power cut,
and a crash mid-write leaves the previous state, never a torn entry. Several processes on one host
may share the file (SQLite locks it); replicas on several machines need Redis."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

from service.stores.base import StoreDown, StoreFull, StyleEntry, StyleStore, Timing

SCHEMA = """CREATE TABLE IF NOT EXISTS styles (
    id TEXT PRIMARY KEY,
    sort_key TEXT NOT NULL UNIQUE,   -- registration order (StyleEntry.sort_key)
    value BLOB NOT NULL              -- service/stores/codec.py, version 1
)"""


class SQLiteStyles(StyleStore):
    backend = "sqlite"

    def __init__(self, path: Path, capacity: int, timing: Timing | None = None) -> None:
        super().__init__(capacity, timing)
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None  # opened on first use: building an app touches no disk

    @property
    def _db(self) -> sqlite3.Connection:
        """The one connection (used under the lock: calls come from worker threads and take ~0.1 ms)."""
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(SCHEMA)
            except (OSError, sqlite3.Error) as e:
                raise StoreDown(f"sqlite at {self.path}: {e}") from None
            self._conn = db
        return self._conn

    def _run(self, op: str, sql: str, args: tuple = ()) -> list[tuple]:
        with self.timed(op), self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.OperationalError as e:  # locked for too long, disk full, file gone ...
                raise StoreDown(f"sqlite: {e}") from None

    def add(self, entry: StyleEntry) -> StyleEntry:
        with self.timed("add"), self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # the count and the insert as one
                try:
                    row = self._db.execute("SELECT value FROM styles WHERE id = ?", (entry.id,)).fetchone()
                    old = self.entry(entry.id, row[0]) if row else None
                    if old is not None:
                        if entry.name and entry.name != old.name:
                            old = replace(old, name=entry.name)
                            self._db.execute("UPDATE styles SET value = ? WHERE id = ?", (old.to_bytes(), old.id))
                        self._db.execute("COMMIT")
                        return old
                    if self._db.execute("SELECT COUNT(*) FROM styles").fetchone()[0] >= self.capacity:
                        raise StoreFull(self.capacity)
                    self._db.execute("INSERT OR REPLACE INTO styles (id, sort_key, value) VALUES (?, ?, ?)",
                                     (entry.id, entry.sort_key, entry.to_bytes()))
                    self._db.execute("COMMIT")
                    return entry
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                raise StoreDown(f"sqlite: {e}") from None

    def get(self, style_id: str) -> StyleEntry | None:
        rows = self._run("get", "SELECT value FROM styles WHERE id = ?", (style_id,))
        return self.entry(style_id, rows[0][0]) if rows else None

    def delete(self, style_id: str) -> bool:
        with self.timed("delete"), self._lock:
            try:
                return self._db.execute("DELETE FROM styles WHERE id = ?", (style_id,)).rowcount > 0
            except sqlite3.OperationalError as e:
                raise StoreDown(f"sqlite: {e}") from None

    def page(self, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        rows = self._run("list", "SELECT sort_key, id, value FROM styles WHERE sort_key > ? ORDER BY sort_key "
                         "LIMIT ?", (after or "", limit))
        return [(key, self.entry(i, v)) for key, i, v in rows]

    def count(self) -> int:
        return self._run("count", "SELECT COUNT(*) FROM styles")[0][0]

    def ping(self) -> None:
        self._run("ping", "SELECT 1")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
