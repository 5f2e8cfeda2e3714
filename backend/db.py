"""The SQLite file under the store: schema, in-place migration, readers and the one writer.

Why SQLite: WAL mode with ``synchronous=FULL`` makes every acknowledged commit durable and atomic
across ``kill -9`` and power loss, and a single writer connection lets conditional writes
(``If-None-Match: *`` for Terraform's lock) and quotas be decided inside the very transaction
that writes — no window between the check and the write. Waiting writes are committed together
(group commit: one fsync for many small writes, such as the lock writes of many stages).
"""

from __future__ import annotations

import contextlib
import errno
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from backend import quota
from backend.errors import InsufficientStorage, InternalError

T = TypeVar("T")
DB_NAME = "state.sqlite3"
MAX_BATCH = 128
SCHEMA_VERSION = 2  # 0/1: before issue #13 (every body inline); 2: file-backed bodies, usage
_SQLITE_FULL = 13

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (name TEXT PRIMARY KEY, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL UNIQUE,
    deleted INTEGER NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    content_type TEXT NOT NULL,
    checksums TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created REAL NOT NULL,
    parts INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_by_key ON versions (bucket, key, seq);
CREATE TABLE IF NOT EXISTS blobs (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS current (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    metadata TEXT NOT NULL,
    algorithm TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    checksums TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (upload_id, part_number)
);
"""

# Added by schema version 2; old files get them by ALTER TABLE (old rows keep their inline data).
_NEW_COLUMNS = (
    ("versions", "file", "TEXT"),
    ("parts", "file", "TEXT"),
    ("parts", "created", "REAL NOT NULL DEFAULT 0"),
)
_V2 = """
CREATE INDEX IF NOT EXISTS uploads_by_key ON uploads (bucket, key, upload_id);
CREATE INDEX IF NOT EXISTS uploads_by_age ON uploads (created);
"""


def disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL or ENOSPC: the disk, not the request, is the problem."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "full" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a state file of any earlier version up to ``SCHEMA_VERSION``, in one transaction."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            for table, column, decl in _NEW_COLUMNS:
                names = {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}
                if column not in names:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            for statement in _V2.split(";"):
                if statement.strip():
                    conn.execute(statement)
            quota.install(conn)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Job:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class Database:
    """Pooled reader connections and one writer thread; safe to use from many threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        self._writer = self.connect()
        migrate(self._writer)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer_loop, name="store-writer", daemon=True)
        self._thread.start()

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._thread.join()
        self._writer.close()
        while True:
            try:
                self._readers.get_nowait().close()
            except queue.Empty:
                break

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self.connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._readers.put(conn)

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's transaction; return once it is durably committed.

        A full disk surfaces as InsufficientStorage (the caller may free space and retry).
        """
        job: _Job = _Job(fn)
        with self._write_lock:
            if self._closed:
                raise InternalError("the store is closed")
            self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    def _writer_loop(self) -> None:
        """Group commit: drain waiting writes into one transaction and pay for one fsync.

        Each job runs inside its own savepoint, so a refused write (a failed precondition, a
        quota) rolls back alone; nobody is answered before the shared COMMIT has returned.
        """
        conn = self._writer
        while True:
            job = self._jobs.get()
            if job is None:
                return
            batch = [job]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    extra = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if extra is None:
                    stop = True
                    break
                batch.append(extra)
            self._run_batch(conn, batch)
            if stop:
                return

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT op")
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:  # handed to the waiting request thread
                    conn.execute("ROLLBACK TO op")
                    job.error = InsufficientStorage() if disk_full(exc) else exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            full = disk_full(exc) or any(isinstance(j.error, InsufficientStorage) for j in batch)
            for job in batch:
                if job.error is None:
                    job.error = (
                        InsufficientStorage()
                        if full
                        else InternalError("the write could not be committed")
                    )
                    job.result = None
        finally:
            for job in batch:
                job.done.set()
