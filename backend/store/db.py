"""The SQLite file under the store: schema, in-place migration, readers and the one writer.

Why SQLite: WAL mode with ``synchronous=FULL`` makes every acknowledged commit durable and atomic
across ``kill -9`` and power loss, and a single writer connection lets conditional writes
(``If-None-Match: *`` for Terraform's lock) and quotas be decided inside the very transaction
that writes — no window between the check and the write. Waiting writes are committed together
(group commit: one fsync for many small writes, such as the lock writes of many stages).
``completed`` remembers what recently completed multipart uploads became, so a retried
CompleteMultipartUpload gets the same answer (created by ``_SCHEMA`` in old files too).
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

from backend.errors import InsufficientStorage, InternalError
from backend.store import diskspace, quota

T = TypeVar("T")
DB_NAME = "state.sqlite3"
MAX_BATCH = 128
PAGE_SIZE = 4096  # SQLite's default page size, which the store keeps
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
CREATE TABLE IF NOT EXISTS completed (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    etag TEXT NOT NULL,
    checksums TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS completed_by_age ON completed (created);
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
        self.done = False  # set by whichever thread committed it, under the commit lock


class Database:
    """Pooled reader connections and one writer connection; safe to use from many threads.

    Group commit without a writer thread: a writing thread queues its job, then takes the commit
    lock; whoever holds it runs every queued job in one transaction and one fsync. A lone write
    (Terraform's lock or state PUT) so commits on its own thread with no hand-off, and writes
    that arrive while a commit is on disk are batched into the next one.
    """

    def __init__(self, path: Path, *, wal_limit: int = diskspace.WAL_MAX) -> None:
        self.path = path
        self.wal_limit = wal_limit  # bytes of log before a checkpoint (the reserve counts them)
        self._queue_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._writer = self.connect()
        migrate(self._writer)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._closed = False
        self._pending: list[_Job] = []

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=10000")
        # the log's size is bounded, so the disk reserve can count what SQLite may still take
        conn.execute(f"PRAGMA wal_autocheckpoint={self.wal_limit // PAGE_SIZE}")
        conn.execute(f"PRAGMA journal_size_limit={2 * self.wal_limit}")
        return conn

    def close(self) -> None:
        with self._commit_lock:
            with self._queue_lock:
                if self._closed:
                    return
                self._closed = True
            with contextlib.suppress(sqlite3.Error):
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
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

        Each job runs inside its own savepoint, so a refused write (a failed precondition, a
        quota) rolls back alone; nobody is answered before the shared COMMIT has returned.
        A full disk surfaces as InsufficientStorage (the caller may free space and retry).
        """
        job: _Job = _Job(fn)
        with self._queue_lock:
            if self._closed:
                raise InternalError("the store is closed")
            self._pending.append(job)
        while not job.done:
            with self._commit_lock:
                if job.done:
                    break
                with self._queue_lock:
                    batch = self._pending[:MAX_BATCH]
                    del self._pending[:MAX_BATCH]
                if batch:
                    self._run_batch(self._writer, batch)
        if job.error is not None:
            raise job.error
        result: T = job.result
        return result

    @staticmethod
    def _run_batch(conn: sqlite3.Connection, batch: list[_Job]) -> None:
        alone = len(batch) == 1  # then the transaction is the job's own: no savepoint needed
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if not alone:
                    conn.execute("SAVEPOINT op")
                try:
                    job.result = job.fn(conn)
                except BaseException as exc:  # handed to the waiting request thread
                    if not alone:
                        conn.execute("ROLLBACK TO op")
                    job.error = InsufficientStorage() if disk_full(exc) else exc
                if not alone:
                    conn.execute("RELEASE op")
            conn.execute("ROLLBACK" if alone and batch[0].error is not None else "COMMIT")
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
                job.done = True
