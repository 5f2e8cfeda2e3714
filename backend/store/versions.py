"""Writing versions inside the writer's transaction: add one (trimming the key), erase one.

Shared by plain writes and CompleteMultipartUpload; every function runs on the writer's
connection within a job's savepoint, so a refusal raised later in the job undoes it all.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from backend.errors import MethodNotAllowed, NoSuchKey, NoSuchVersion
from backend.limits import Limits
from backend.store import retention
from backend.store.records import VCOLS, ObjectMeta, meta_from_row, new_version_id


@dataclass(frozen=True)
class Body:
    """What a new version stores: inline bytes or a file already made durable."""

    size: int
    etag: str
    sha256: str
    content_type: str = "binary/octet-stream"
    checksums: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    data: bytes | None = None
    file: str | None = None


def current(conn: sqlite3.Connection, bucket: str, key: str) -> ObjectMeta | None:
    row = conn.execute(
        f"SELECT {VCOLS} FROM current c JOIN versions v ON v.seq = c.seq"
        " WHERE c.bucket=? AND c.key=?",
        (bucket, key),
    ).fetchone()
    return meta_from_row(row) if row else None


def _point_current(conn: sqlite3.Connection, bucket: str, key: str, seq: int, deleted: int) -> None:
    # an upsert, not INSERT OR REPLACE: REPLACE's hidden delete would skip the usage triggers
    conn.execute(
        "INSERT INTO current (bucket, key, seq, deleted) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (bucket, key) DO UPDATE SET seq=excluded.seq, deleted=excluded.deleted",
        (bucket, key, seq, deleted),
    )


def insert(
    conn: sqlite3.Connection,
    bucket: str,
    key: str,
    body: Body | None,
    limits: Limits,
    *,
    parts: int = 0,
) -> tuple[ObjectMeta, list[str]]:
    """Add a version (``None``: a delete marker) and trim the key: (its meta, files to unlink)."""
    version_id = new_version_id()
    now = time.time()
    if body is None:
        values: tuple[object, ...] = (bucket, key, version_id, 1, 0, "", "", "", "{}", "{}", None)
    else:
        values = (
            bucket,
            key,
            version_id,
            0,
            body.size,
            body.etag,
            body.sha256,
            body.content_type,
            json.dumps(body.checksums),
            json.dumps(body.metadata),
            body.file,
        )
    cur = conn.execute(
        "INSERT INTO versions (bucket, key, version_id, deleted, size, etag, sha256,"
        " content_type, checksums, metadata, file, created, parts)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (*values, now, parts),
    )
    seq = cur.lastrowid
    assert seq is not None
    if body is not None and body.file is None:
        conn.execute("INSERT INTO blobs (seq, data) VALUES (?, ?)", (seq, body.data or b""))
    _point_current(conn, bucket, key, seq, int(body is None))
    _, files = retention.trim(conn, bucket, key, limits, now)
    # the row as VCOLS orders it, without reading it back
    return meta_from_row((seq, *values[:10], now, parts, values[10])), files


def erase(
    conn: sqlite3.Connection, bucket: str, key: str, version_id: str
) -> tuple[ObjectMeta, list[str]]:
    """Remove one version for good; the newest remaining one becomes current again."""
    row = conn.execute(
        f"SELECT {VCOLS} FROM versions v WHERE v.bucket=? AND v.key=? AND v.version_id=?",
        (bucket, key, version_id),
    ).fetchone()
    if row is None:
        raise NoSuchVersion(Key=key, VersionId=version_id)
    meta = meta_from_row(row)
    conn.execute("DELETE FROM blobs WHERE seq=?", (meta.seq,))
    conn.execute("DELETE FROM versions WHERE seq=?", (meta.seq,))
    newest = conn.execute(
        "SELECT seq, deleted FROM versions WHERE bucket=? AND key=? ORDER BY seq DESC LIMIT 1",
        (bucket, key),
    ).fetchone()
    if newest is None:
        conn.execute("DELETE FROM current WHERE bucket=? AND key=?", (bucket, key))
    else:
        _point_current(conn, bucket, key, newest[0], newest[1])
    return meta, [meta.file] if meta.file else []


def lookup(
    conn: sqlite3.Connection, bucket: str, key: str, version_id: str | None, *, with_data: bool
) -> tuple[Any, ...]:
    """The row of the newest version (or the named one), ``is latest`` and, asked for, the
    inline body after VCOLS; a delete marker raises as S3 answers it (naming the marker)."""
    data_col = ", b.data" if with_data else ""
    data_join = " LEFT JOIN blobs b ON b.seq = v.seq" if with_data else ""
    if version_id is None:
        row = conn.execute(
            f"SELECT {VCOLS}, 1{data_col} FROM current c JOIN versions v ON v.seq = c.seq"
            f"{data_join} WHERE c.bucket=? AND c.key=?",
            (bucket, key),
        ).fetchone()
        if row is None:
            raise NoSuchKey(Key=key)
        if row[4]:  # S3 names the delete marker that hides the key
            raise NoSuchKey(
                Key=key, headers={"x-amz-delete-marker": "true", "x-amz-version-id": row[3]}
            )
        return tuple(row)
    row = conn.execute(
        f"SELECT {VCOLS}, (c.seq = v.seq){data_col} FROM versions v"
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
    return tuple(row)
