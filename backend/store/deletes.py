"""Deletes as S3 makes them: a marker each time, one transaction for a DeleteObjects batch."""

from __future__ import annotations

import sqlite3

from backend.errors import S3Error
from backend.limits import Limits
from backend.store import versions
from backend.store.quota import Quota
from backend.store.records import ObjectMeta

_TOP = "\U0010ffff"  # above every key character: the end of a prefix's key range


def mark(
    conn: sqlite3.Connection, bucket: str, key: str, limit: Quota | None, limits: Limits
) -> tuple[ObjectMeta | None, list[str]]:
    """A delete marker, even over a marker or on a key that never existed (as S3 does).

    Markers of one key are bounded by retention; a stage may hold at most ``max_keys`` keys
    that are nothing but markers, so deletes of made-up keys cannot grow the store without
    end (past that, such a delete changes nothing and answers without a version id).
    """
    if limit is not None and versions.current(conn, bucket, key) is None:
        dead = conn.execute(
            "SELECT count(*) FROM current WHERE bucket=? AND key >= ? AND key < ? AND deleted=1",
            (bucket, limit.prefix, limit.prefix + _TOP),
        ).fetchone()[0]
        if dead >= limit.max_keys:
            return None, []
    return versions.insert(conn, bucket, key, None, limits)


def one(
    conn: sqlite3.Connection,
    bucket: str,
    key: str,
    version_id: str | None,
    limit: Quota | None,
    limits: Limits,
) -> tuple[ObjectMeta | None, list[str]]:
    """A DeleteObject: erase the named version for good, else add a marker."""
    if version_id:
        return versions.erase(conn, bucket, key, version_id)
    return mark(conn, bucket, key, limit, limits)


def many(
    conn: sqlite3.Connection,
    bucket: str,
    items: list[tuple[str, str | None]],
    limit: Quota | None,
    limits: Limits,
) -> tuple[list[ObjectMeta | S3Error | None], list[str]]:
    """Every (key, version id) of a DeleteObjects batch; a refusal is that item's answer."""
    results: list[ObjectMeta | S3Error | None] = []
    files: list[str] = []
    for key, version_id in items:
        meta: ObjectMeta | None
        try:
            meta, gone = one(conn, bucket, key, version_id, limit, limits)
        except S3Error as exc:  # raised before the item changed anything
            results.append(exc)
            continue
        results.append(meta)
        files += gone
    return results, files
