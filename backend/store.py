"""Durable, versioned object storage in one SQLite file.

Why SQLite: WAL mode with ``synchronous=FULL`` makes every acknowledged commit durable and atomic
across ``kill -9`` and power loss, and a single writer connection behind a lock lets conditional
writes (``If-None-Match: *`` for Terraform's lock) be decided inside the very transaction that
writes — no window between the check and the write. Every write is a new version (with a sha256
that is checked again on every read); a delete is a delete marker. Readers use their own
connections and see only committed data.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from backend.errors import (
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    EntityTooLarge,
    EntityTooSmall,
    InternalError,
    InvalidArgument,
    InvalidBucketName,
    InvalidPart,
    InvalidPartOrder,
    MethodNotAllowed,
    NoSuchBucket,
    NoSuchKey,
    NoSuchUpload,
    NoSuchVersion,
    PreconditionFailed,
)

T = TypeVar("T")
DB_NAME = "state.sqlite3"
MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10000
MAX_BATCH = 128
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

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

_VCOLS = (
    "v.seq, v.bucket, v.key, v.version_id, v.deleted, v.size, v.etag, v.sha256, "
    "v.content_type, v.checksums, v.metadata, v.created, v.parts"
)


class _Job:
    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


@dataclass(frozen=True)
class ObjectMeta:
    bucket: str
    key: str
    version_id: str
    seq: int
    deleted: bool
    size: int
    etag: str
    sha256: str
    content_type: str
    checksums: dict[str, str]
    metadata: dict[str, str]
    created: float
    parts: int
    is_latest: bool = True


@dataclass(frozen=True)
class NewObject:
    """What a writer hands the store: the payload and its already-verified digests."""

    data: bytes
    etag: str
    sha256: str
    content_type: str = "binary/octet-stream"
    checksums: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Conditions:
    if_none_match: str | None = None
    if_match: str | None = None


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    last: str | None


@dataclass(frozen=True)
class VersionListing:
    versions: list[ObjectMeta]
    truncated: bool
    next_key: str | None
    next_version: str | None


@dataclass(frozen=True)
class PartInfo:
    number: int
    etag: str
    size: int
    checksums: dict[str, str]


def _meta(row: tuple[Any, ...], is_latest: bool = True) -> ObjectMeta:
    return ObjectMeta(
        seq=row[0],
        bucket=row[1],
        key=row[2],
        version_id=row[3],
        deleted=bool(row[4]),
        size=row[5],
        etag=row[6],
        sha256=row[7],
        content_type=row[8],
        checksums=json.loads(row[9]),
        metadata=json.loads(row[10]),
        created=row[11],
        parts=row[12],
        is_latest=is_latest,
    )


def new_version_id() -> str:
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


def validate_bucket_name(name: str) -> str:
    if not _BUCKET_RE.match(name) or ".." in name:
        raise InvalidBucketName(BucketName=name)
    return name


class Store:
    """The state server's storage; safe to use from many threads."""

    def __init__(self, data_dir: Path, *, retain: int = 100, max_object_bytes: int) -> None:
        if retain < 1:
            raise ValueError("retain must be at least 1")
        self.path = Path(data_dir) / DB_NAME
        self.retain = retain
        self.max_object_bytes = max_object_bytes
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.executescript(_SCHEMA)
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._buckets = {r[0] for r in self._writer.execute("SELECT name FROM buckets")}
        self._closed = False
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer_loop, name="store-writer", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
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

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            self._readers.put(conn)

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's transaction; return once it is durably committed."""
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

        Each job runs inside its own savepoint, so a refused write (a failed precondition)
        rolls back alone; nobody is answered before the shared COMMIT has returned.
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
                    job.error = exc
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for job in batch:
                if job.error is None:
                    job.error = InternalError("the write could not be committed")
                    job.result = None
        finally:
            for job in batch:
                job.done.set()

    def _require_bucket(self, bucket: str) -> None:
        if bucket not in self._buckets:
            raise NoSuchBucket(BucketName=bucket)

    # -- buckets ---------------------------------------------------------------------------

    def bucket_exists(self, bucket: str) -> bool:
        return bucket in self._buckets

    def list_buckets(self) -> list[tuple[str, float]]:
        with self._read() as conn:
            return list(conn.execute("SELECT name, created FROM buckets ORDER BY name"))

    def create_bucket(self, bucket: str, *, exist_ok: bool = False) -> None:
        validate_bucket_name(bucket)

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM buckets WHERE name=?", (bucket,)).fetchone():
                if exist_ok:
                    return
                raise BucketAlreadyOwnedByYou(BucketName=bucket)
            conn.execute("INSERT INTO buckets VALUES (?, ?)", (bucket, time.time()))

        self._write(op)
        self._buckets.add(bucket)

    def delete_bucket(self, bucket: str) -> None:
        self._require_bucket(bucket)

        def op(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM versions WHERE bucket=? LIMIT 1", (bucket,)).fetchone():
                raise BucketNotEmpty(BucketName=bucket)
            conn.execute("DELETE FROM buckets WHERE name=?", (bucket,))

        self._write(op)
        self._buckets.discard(bucket)

    # -- reads -----------------------------------------------------------------------------

    def head(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta:
        """The newest live version (or the named one); delete markers raise NoSuchKey."""
        meta, _ = self._fetch(bucket, key, version_id, with_data=False)
        return meta

    def get(self, bucket: str, key: str, version_id: str | None = None) -> tuple[ObjectMeta, bytes]:
        meta, data = self._fetch(bucket, key, version_id, with_data=True)
        assert data is not None
        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise InternalError("stored object failed its integrity check")
        return meta, data

    def _fetch(
        self, bucket: str, key: str, version_id: str | None, *, with_data: bool
    ) -> tuple[ObjectMeta, bytes | None]:
        self._require_bucket(bucket)
        data_col = ", b.data" if with_data else ""
        data_join = " LEFT JOIN blobs b ON b.seq = v.seq" if with_data else ""
        with self._read() as conn:
            if version_id is None:
                row = conn.execute(
                    f"SELECT {_VCOLS}, 1{data_col} FROM current c JOIN versions v ON v.seq = c.seq"
                    f"{data_join} WHERE c.bucket=? AND c.key=?",
                    (bucket, key),
                ).fetchone()
                if row is None or row[4]:
                    raise NoSuchKey(Key=key)
            else:
                row = conn.execute(
                    f"SELECT {_VCOLS}, (c.seq = v.seq){data_col} FROM versions v"
                    " LEFT JOIN current c ON c.bucket = v.bucket AND c.key = v.key"
                    f"{data_join} WHERE v.bucket=? AND v.key=? AND v.version_id=?",
                    (bucket, key, version_id),
                ).fetchone()
                if row is None:
                    raise NoSuchVersion(Key=key, VersionId=version_id)
                if row[4]:
                    raise MethodNotAllowed(
                        headers={"x-amz-delete-marker": "true", "x-amz-version-id": version_id}
                    )
        meta = _meta(row, bool(row[13]))
        return meta, (row[14] if with_data else None)

    def list_objects(
        self, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
    ) -> Listing:
        """Live keys after ``after``, rolling keys up to ``delimiter`` into common prefixes."""
        self._require_bucket(bucket)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        cursor = max(after, prefix) if after else prefix
        inclusive = not after or after < prefix
        last: str | None = None
        with self._read() as conn:
            conn.execute("BEGIN")
            while len(objects) + len(prefixes) < max_keys:
                op = ">=" if inclusive else ">"
                rows = conn.execute(
                    f"SELECT {_VCOLS} FROM current c JOIN versions v ON v.seq = c.seq"
                    f" WHERE c.bucket=? AND c.key {op} ? AND c.deleted=0 ORDER BY c.key LIMIT 200",
                    (bucket, cursor),
                ).fetchall()
                if not rows:
                    return Listing(objects, prefixes, False, last)
                for row in rows:
                    key: str = row[2]
                    if not key.startswith(prefix):
                        return Listing(objects, prefixes, False, last)
                    if len(objects) + len(prefixes) >= max_keys:
                        return Listing(objects, prefixes, True, last)
                    cut = key.find(delimiter, len(prefix)) if delimiter else -1
                    if cut >= 0:
                        common = key[: cut + len(delimiter)]
                        prefixes.append(common)
                        last = common + "\U0010ffff"
                        cursor, inclusive = common + "\U0010ffff", False
                        break
                    objects.append(_meta(row))
                    last = key
                    cursor, inclusive = key, False
            more = conn.execute(
                "SELECT c.key FROM current c WHERE c.bucket=? AND c.key > ? AND c.deleted=0"
                " ORDER BY c.key LIMIT 1",
                (bucket, cursor),
            ).fetchone()
        truncated = more is not None and more[0].startswith(prefix)
        return Listing(objects, prefixes, truncated, last)

    def list_versions(
        self,
        bucket: str,
        *,
        prefix: str,
        key_marker: str,
        version_marker: str,
        max_keys: int,
    ) -> VersionListing:
        self._require_bucket(bucket)
        where = "v.bucket=? AND v.key >= ?"
        args: list[object] = [bucket, prefix]
        with self._read() as conn:
            conn.execute("BEGIN")
            if key_marker and version_marker:
                row = conn.execute(
                    "SELECT seq FROM versions WHERE bucket=? AND key=? AND version_id=?",
                    (bucket, key_marker, version_marker),
                ).fetchone()
                if row is None:
                    raise InvalidArgument("version-id-marker does not name a version of key-marker")
                where += " AND ((v.key = ? AND v.seq < ?) OR v.key > ?)"
                args += [key_marker, row[0], key_marker]
            elif key_marker:
                where += " AND v.key > ?"
                args.append(key_marker)
            rows = conn.execute(
                f"SELECT {_VCOLS}, (c.seq = v.seq) FROM versions v LEFT JOIN current c"
                f" ON c.bucket = v.bucket AND c.key = v.key WHERE {where}"
                " ORDER BY v.key, v.seq DESC LIMIT ?",
                (*args, max_keys + 1),
            ).fetchall()
        rows = [r for r in rows if r[2].startswith(prefix)]
        truncated = len(rows) > max_keys
        rows = rows[:max_keys]
        versions = [_meta(r, bool(r[13])) for r in rows]
        if truncated and versions:
            return VersionListing(versions, True, versions[-1].key, versions[-1].version_id)
        return VersionListing(versions, False, None, None)

    # -- writes ----------------------------------------------------------------------------

    def _current(self, conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
        row = conn.execute(
            f"SELECT {_VCOLS} FROM current c JOIN versions v ON v.seq = c.seq"
            " WHERE c.bucket=? AND c.key=?",
            (bucket, key),
        ).fetchone()
        return _meta(row) if row else None

    @staticmethod
    def _check(current: ObjectMeta | None, cond: Conditions, key: str) -> None:
        live = current is not None and not current.deleted
        if cond.if_none_match is not None:
            if cond.if_none_match.strip() != "*":
                raise InvalidArgument("If-None-Match on writes supports only '*'")
            if live:
                raise PreconditionFailed(Condition="If-None-Match")
        if cond.if_match is not None:
            if not live or current is None:
                raise NoSuchKey(Key=key)
            wanted = [t.strip().strip('"') for t in cond.if_match.split(",")]
            if "*" not in wanted and current.etag not in wanted:
                raise PreconditionFailed(Condition="If-Match")

    def _insert(
        self,
        conn: sqlite3.Connection,
        bucket: str,
        key: str,
        obj: NewObject | None,
        parts: int = 0,
    ) -> ObjectMeta:
        version_id = new_version_id()
        now = time.time()
        if obj is None:  # delete marker
            values: tuple[object, ...] = (bucket, key, version_id, 1, 0, "", "", "", "{}", "{}")
        else:
            values = (
                bucket,
                key,
                version_id,
                0,
                len(obj.data),
                obj.etag,
                obj.sha256,
                obj.content_type,
                json.dumps(obj.checksums),
                json.dumps(obj.metadata),
            )
        cur = conn.execute(
            "INSERT INTO versions (bucket, key, version_id, deleted, size, etag, sha256,"
            " content_type, checksums, metadata, created, parts)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*values, now, parts),
        )
        seq = cur.lastrowid
        assert seq is not None
        if obj is not None:
            conn.execute("INSERT INTO blobs (seq, data) VALUES (?, ?)", (seq, obj.data))
        conn.execute(
            "INSERT OR REPLACE INTO current (bucket, key, seq, deleted) VALUES (?, ?, ?, ?)",
            (bucket, key, seq, int(obj is None)),
        )
        self._trim(conn, bucket, key)
        row = conn.execute(f"SELECT {_VCOLS} FROM versions v WHERE v.seq=?", (seq,)).fetchone()
        return _meta(row)

    def _trim(self, conn: sqlite3.Connection, bucket: str, key: str) -> None:
        """Keep the newest ``retain`` versions of a key."""
        row = conn.execute(
            "SELECT seq FROM versions WHERE bucket=? AND key=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
            (bucket, key, self.retain),
        ).fetchone()
        if row is None:
            return
        doomed = "SELECT seq FROM versions WHERE bucket=? AND key=? AND seq <= ?"
        conn.execute(f"DELETE FROM blobs WHERE seq IN ({doomed})", (bucket, key, row[0]))
        conn.execute(
            "DELETE FROM versions WHERE bucket=? AND key=? AND seq <= ?", (bucket, key, row[0])
        )

    def put(self, bucket: str, key: str, obj: NewObject, cond: Conditions) -> ObjectMeta:
        self._require_bucket(bucket)
        if len(obj.data) > self.max_object_bytes:
            raise EntityTooLarge()

        def op(conn: sqlite3.Connection) -> ObjectMeta:
            self._check(self._current(conn, bucket, key), cond, key)
            return self._insert(conn, bucket, key, obj)

        return self._write(op)

    def delete(self, bucket: str, key: str, version_id: str | None = None) -> ObjectMeta | None:
        """Add a delete marker (or, with a version id, erase that version for good)."""
        self._require_bucket(bucket)

        def mark(conn: sqlite3.Connection) -> ObjectMeta | None:
            current = self._current(conn, bucket, key)
            if current is None or current.deleted:
                return None
            return self._insert(conn, bucket, key, None)

        def erase(conn: sqlite3.Connection) -> ObjectMeta | None:
            row = conn.execute(
                f"SELECT {_VCOLS} FROM versions v WHERE v.bucket=? AND v.key=? AND v.version_id=?",
                (bucket, key, version_id),
            ).fetchone()
            if row is None:
                raise NoSuchVersion(Key=key, VersionId=version_id or "")
            seq = row[0]
            conn.execute("DELETE FROM blobs WHERE seq=?", (seq,))
            conn.execute("DELETE FROM versions WHERE seq=?", (seq,))
            newest = conn.execute(
                "SELECT seq, deleted FROM versions WHERE bucket=? AND key=? ORDER BY seq DESC"
                " LIMIT 1",
                (bucket, key),
            ).fetchone()
            if newest is None:
                conn.execute("DELETE FROM current WHERE bucket=? AND key=?", (bucket, key))
            else:
                conn.execute(
                    "UPDATE current SET seq=?, deleted=? WHERE bucket=? AND key=?",
                    (newest[0], newest[1], bucket, key),
                )
            return _meta(row)

        return self._write(erase if version_id else mark)

    # -- multipart -------------------------------------------------------------------------

    def create_upload(
        self,
        bucket: str,
        key: str,
        *,
        content_type: str,
        metadata: dict[str, str],
        algo: str | None,
    ) -> str:
        self._require_bucket(bucket)
        upload_id = secrets.token_urlsafe(24)
        self._write(
            lambda conn: conn.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upload_id, bucket, key, content_type, json.dumps(metadata), algo, time.time()),
            )
        )
        return upload_id

    def _upload(
        self, conn: sqlite3.Connection, upload_id: str, bucket: str, key: str
    ) -> tuple[str, dict[str, str], str | None]:
        row = conn.execute(
            "SELECT content_type, metadata, algorithm FROM uploads"
            " WHERE upload_id=? AND bucket=? AND key=?",
            (upload_id, bucket, key),
        ).fetchone()
        if row is None:
            raise NoSuchUpload(UploadId=upload_id)
        return row[0], json.loads(row[1]), row[2]

    def upload_algorithm(self, upload_id: str, bucket: str, key: str) -> str | None:
        self._require_bucket(bucket)
        with self._read() as conn:
            return self._upload(conn, upload_id, bucket, key)[2]

    def put_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        *,
        data: bytes,
        etag: str,
        sha256: str,
        checksums: dict[str, str],
    ) -> None:
        self._require_bucket(bucket)
        if len(data) > self.max_object_bytes:
            raise EntityTooLarge()

        def op(conn: sqlite3.Connection) -> None:
            self._upload(conn, upload_id, bucket, key)
            conn.execute(
                "INSERT OR REPLACE INTO parts VALUES (?, ?, ?, ?, ?, ?, ?)",
                (upload_id, number, etag, len(data), sha256, json.dumps(checksums), data),
            )

        self._write(op)

    def complete_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        wanted: list[tuple[int, str, dict[str, str]]],
        cond: Conditions,
        assemble: Callable[[list[bytes], list[PartInfo], str | None], NewObject],
    ) -> ObjectMeta:
        """Stitch the named parts into one new version; all checks inside the transaction."""
        self._require_bucket(bucket)
        numbers = [n for n, _, _ in wanted]
        if numbers != sorted(set(numbers)):
            raise InvalidPartOrder()
        if len(numbers) > MAX_PARTS:
            raise InvalidArgument("too many parts")

        def op(conn: sqlite3.Connection) -> ObjectMeta:
            content_type, metadata, algo = self._upload(conn, upload_id, bucket, key)
            stored = {
                r[0]: r
                for r in conn.execute(
                    "SELECT part_number, etag, size, checksums FROM parts WHERE upload_id=?",
                    (upload_id,),
                )
            }
            infos: list[PartInfo] = []
            total = 0
            for i, (number, etag, sums) in enumerate(wanted):
                row = stored.get(number)
                if row is None or (etag and etag != row[1]):
                    raise InvalidPart(PartNumber=str(number))
                part_sums: dict[str, str] = json.loads(row[3])
                for name, value in sums.items():
                    if name in part_sums and part_sums[name] != value:
                        raise InvalidPart(PartNumber=str(number))
                if i < len(wanted) - 1 and row[2] < MIN_PART_BYTES:
                    raise EntityTooSmall(PartNumber=str(number))
                total += row[2]
                infos.append(PartInfo(number, row[1], row[2], part_sums))
            if total > self.max_object_bytes:
                raise EntityTooLarge()
            self._check(self._current(conn, bucket, key), cond, key)
            chunks = [
                conn.execute(
                    "SELECT data FROM parts WHERE upload_id=? AND part_number=?",
                    (upload_id, n),
                ).fetchone()[0]
                for n in numbers
            ]
            built = assemble(chunks, infos, algo)
            obj = NewObject(
                data=built.data,
                etag=built.etag,
                sha256=built.sha256,
                content_type=content_type,
                checksums=built.checksums,
                metadata=metadata,
            )
            meta = self._insert(conn, bucket, key, obj, parts=len(numbers))
            conn.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            conn.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
            return meta

        return self._write(op)

    def abort_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._require_bucket(bucket)

        def op(conn: sqlite3.Connection) -> None:
            self._upload(conn, upload_id, bucket, key)
            conn.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
            conn.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))

        self._write(op)

    # -- maintenance -----------------------------------------------------------------------

    def integrity_check(self) -> str:
        with self._read() as conn:
            return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
