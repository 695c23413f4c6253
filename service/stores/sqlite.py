"""Registered styles in SQLite: the embedded default, one file in ADAIN_STATE_DIR.

WAL journal with synchronous=FULL: a committed registration survives a kill -9 or a power cut,
and a crash mid-write leaves the previous state, never a torn entry. Several processes on one host
may share the file (SQLite locks it); replicas on several machines need Redis. Video jobs have a
file of their own beside it (``SQLiteJobs``)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Collection
from pathlib import Path

from service.stores.base import QuotaFull, StoreDown, StoreFull, StyleEntry, StyleStore, Timing, merged
from service.stores.jobs import ACTIVE, JobStore, VideoJob, now


SCHEMA = """CREATE TABLE IF NOT EXISTS styles (
    id TEXT PRIMARY KEY,
    sort_key TEXT NOT NULL UNIQUE,   -- registration order (StyleEntry.sort_key)
    value BLOB NOT NULL,             -- service/stores/codec.py, version 1
    owner TEXT NOT NULL DEFAULT 'local',  -- the tenant (rows from before tenants: local)
    expires REAL                     -- unix time after which the style is gone; NULL = never
)"""
# a file written before tenants has the first three columns only: they are added, rows kept
UPGRADE = {"owner": "ALTER TABLE styles ADD COLUMN owner TEXT NOT NULL DEFAULT 'local'",
           "expires": "ALTER TABLE styles ADD COLUMN expires REAL"}
SWEEP = "DELETE FROM styles WHERE expires <= ?"
LIVE = "(expires IS NULL OR expires > ?)"  # rows not expired yet (swept at the next registration)
INDEXES = ("CREATE INDEX IF NOT EXISTS styles_by_owner ON styles (owner, sort_key)",
           "CREATE INDEX IF NOT EXISTS styles_by_expiry ON styles (expires) WHERE expires IS NOT NULL")


class SQLiteFile:
    """One SQLite file, opened on first use (building an app touches no disk), one connection used
    under a lock (calls come from worker threads and take ~0.1 ms)."""

    schema = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                db.execute(self.schema)
                self.upgrade(db)
            except (OSError, sqlite3.Error) as e:
                raise StoreDown(f"sqlite at {self.path}: {e}") from None
            self._conn = db
        return self._conn

    def upgrade(self, db: sqlite3.Connection) -> None:
        """Bring a file written by an older version up to this schema, keeping its rows."""

    def _execute(self, sql: str, args: tuple = ()) -> tuple[list[tuple], int]:
        """(rows, rowcount), both read under the lock: the connection is shared by threads, and a
        cursor still steps through it while its rows are fetched."""
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                return cursor.fetchall(), cursor.rowcount
            except sqlite3.OperationalError as e:  # locked for too long, disk full, file gone ...
                raise StoreDown(f"sqlite: {e}") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class SQLiteStyles(SQLiteFile, StyleStore):
    backend = "sqlite"
    schema = SCHEMA

    def __init__(self, path: Path, capacity: int, timing: Timing | None = None) -> None:
        StyleStore.__init__(self, capacity, timing)
        SQLiteFile.__init__(self, path)

    def upgrade(self, db: sqlite3.Connection) -> None:
        columns = {row[1] for row in db.execute("PRAGMA table_info(styles)")}
        for column, sql in UPGRADE.items():
            if column not in columns:
                db.execute(sql)
        for sql in INDEXES:
            db.execute(sql)

    def _run(self, op: str, sql: str, args: tuple = ()) -> list[tuple]:
        with self.timed(op):
            return self._execute(sql, args)[0]

    def add(self, entry: StyleEntry, owner_limit: int) -> StyleEntry:
        with self.timed("add"), self._lock:
            try:
                db = self._db
                db.execute("BEGIN IMMEDIATE")  # the sweep, the counts and the insert as one
                try:
                    db.execute(SWEEP, (now(),))
                    row = db.execute("SELECT value FROM styles WHERE id = ?", (entry.id,)).fetchone()
                    old = self.entry(entry.id, row[0]) if row else None
                    if old is not None:
                        entry = merged(old, entry)
                    elif db.execute("SELECT COUNT(*) FROM styles").fetchone()[0] >= self.capacity:
                        raise StoreFull(self.capacity)
                    elif db.execute("SELECT COUNT(*) FROM styles WHERE owner = ?",
                                    (entry.owner,)).fetchone()[0] >= owner_limit:
                        raise QuotaFull(entry.owner, owner_limit)
                    db.execute("INSERT OR REPLACE INTO styles (id, sort_key, value, owner, expires) "
                               "VALUES (?, ?, ?, ?, ?)",
                               (entry.id, entry.sort_key, entry.to_bytes(), entry.owner, entry.expires))
                    db.execute("COMMIT")
                    return entry
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as e:
                raise StoreDown(f"sqlite: {e}") from None

    def get(self, style_id: str) -> StyleEntry | None:
        rows = self._run("get", "SELECT value FROM styles WHERE id = ?", (style_id,))
        return self.entry(style_id, rows[0][0]) if rows else None

    def delete(self, style_id: str) -> bool:
        with self.timed("delete"):
            return self._execute("DELETE FROM styles WHERE id = ?", (style_id,))[1] > 0

    def page(self, owner: str | None, after: str | None, limit: int) -> list[tuple[str, StyleEntry | None]]:
        mine, args = ("AND owner = ? ", (owner,)) if owner is not None else ("", ())
        rows = self._run("list", f"SELECT sort_key, id, value FROM styles WHERE sort_key > ? AND {LIVE} {mine}"
                         "ORDER BY sort_key LIMIT ?", (after or "", now(), *args, limit))
        return [(key, self.entry(i, v)) for key, i, v in rows]

    def count(self, owner: str | None = None) -> int:
        mine, args = ("AND owner = ?", (owner,)) if owner is not None else ("", ())
        return self._run("count", f"SELECT COUNT(*) FROM styles WHERE {LIVE} {mine}", (now(), *args))[0][0]

    def ping(self) -> None:
        self._run("ping", "SELECT 1")


JOBS_SCHEMA = """CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    value TEXT NOT NULL,             -- service/stores/jobs.py VideoJob as JSON
    expires REAL NOT NULL            -- unix time; swept after it
)"""


UNITS_SCHEMA = """CREATE TABLE IF NOT EXISTS units (
    job TEXT NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,             -- service/segments.py Unit as JSON
    PRIMARY KEY (job, name)
)"""
NEVER = 1e18  # the expiry of a job that has not ended (unix time, ~3e10 years on)
IS_ACTIVE = f"expires > ? AND json_extract(value, '$.state') IN ({', '.join('?' * len(ACTIVE))})"
ACTIVE_JOBS = f"SELECT id FROM jobs WHERE {IS_ACTIVE} ORDER BY json_extract(value, '$.created')"
# a new job only while its tenant has fewer than a limit active: one statement, so SQLite runs the
# count and the insert alone (no other writer between them)
PUT_WITHIN = (f"INSERT OR REPLACE INTO jobs (id, value, expires) SELECT ?, ?, ? WHERE (SELECT COUNT(*) FROM jobs "
              f"WHERE {IS_ACTIVE} AND json_extract(value, '$.tenant') = ?) < ?")


class SQLiteJobs(SQLiteFile, JobStore):
    """Video jobs in SQLite, their files (the clip, codes, segments, the MP4) beside it in the
    state folder: every process sharing that folder (one host) sees them."""

    backend = "sqlite"
    schema = JOBS_SCHEMA

    def __init__(self, path: Path, folder: Path, ttl: float) -> None:
        JobStore.__init__(self, folder, ttl)
        SQLiteFile.__init__(self, path)

    def upgrade(self, db: sqlite3.Connection) -> None:
        db.execute(UNITS_SCHEMA)

    def active(self) -> list[str]:
        return [r[0] for r in self._execute(ACTIVE_JOBS, (now(), *ACTIVE))[0]]

    def put_units(self, job_id: str, units: dict[str, str]) -> None:
        # one statement however many segments: the units as one JSON object, unpacked by SQLite
        self._execute("INSERT OR REPLACE INTO units (job, name, value) SELECT ?, key, value FROM json_each(?)",
                      (job_id, json.dumps(units)))

    def units(self, job_id: str) -> dict[str, str]:
        return dict(self._execute("SELECT name, value FROM units WHERE job = ?", (job_id,))[0])

    def swap_unit(self, job_id: str, name: str, old: str, new: str) -> bool:
        return self._execute("UPDATE units SET value = ? WHERE job = ? AND name = ? AND value = ? AND EXISTS "
                             "(SELECT 1 FROM jobs WHERE id = ? AND expires > ?)",
                             (new, job_id, name, old, job_id, now()))[1] > 0

    def _expires(self, job: VideoJob) -> float:
        return self.expires(job) or NEVER

    def put(self, job: VideoJob, limit: int | None = None) -> bool:
        if limit is None:
            self._execute("INSERT OR REPLACE INTO jobs (id, value, expires) VALUES (?, ?, ?)",
                          (job.id, job.to_json(), self._expires(job)))
            return True
        return self._execute(PUT_WITHIN, (job.id, job.to_json(), self._expires(job), now(), *ACTIVE, job.tenant,
                                          limit))[1] > 0

    def update(self, job: VideoJob) -> bool:
        return self._execute("UPDATE jobs SET value = ?, expires = ? WHERE id = ? AND expires > ?",
                             (job.to_json(), self._expires(job), job.id, now()))[1] > 0

    def get(self, job_id: str) -> VideoJob | None:
        rows = self._execute("SELECT value FROM jobs WHERE id = ? AND expires > ?", (job_id, now()))[0]
        return VideoJob.from_json(job_id, rows[0][0]) if rows else None

    def delete(self, job_id: str) -> bool:
        found = self._execute("DELETE FROM jobs WHERE id = ?", (job_id,))[1] > 0
        self.drop_units(job_id)
        self.remove_files(job_id)
        return found

    def drop_units(self, job_id: str) -> None:
        self._execute("DELETE FROM units WHERE job = ?", (job_id,))

    def sweep(self, busy: Collection[str] = ()) -> int:
        """Expired jobs with their files (the records carry their expiry), then files of no job."""
        ids = [r[0] for r in self._execute("SELECT id FROM jobs WHERE expires <= ?", (now(),))[0]]
        for job_id in ids:
            self.delete(job_id)
        return len(ids) + super().sweep(busy)
