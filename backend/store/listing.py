"""Listings read from one snapshot: live keys, versions, unfinished multipart uploads."""

from __future__ import annotations

import sqlite3

from backend.errors import InvalidArgument
from backend.store.records import (
    VCOLS,
    VERSION_ID,
    Listing,
    ObjectMeta,
    UploadInfo,
    UploadListing,
    VersionListing,
    meta_from_row,
)

_TOP = "\U0010ffff"


def objects(
    conn: sqlite3.Connection, bucket: str, *, prefix: str, delimiter: str, after: str, max_keys: int
) -> Listing:
    """Live keys after ``after``, rolling keys up to ``delimiter`` into common prefixes."""
    found: list[ObjectMeta] = []
    prefixes: list[str] = []
    if max_keys == 0:
        return Listing(found, prefixes, False, None)  # S3: nothing asked, nothing truncated
    after = _past_group(after, prefix, delimiter)
    cursor = max(after, prefix) if after else prefix
    inclusive = not after or after < prefix
    last: str | None = None
    conn.execute("BEGIN")
    while len(found) + len(prefixes) < max_keys:
        op = ">=" if inclusive else ">"
        rows = conn.execute(
            f"SELECT {VCOLS} FROM current c JOIN versions v ON v.seq = c.seq"
            f" WHERE c.bucket=? AND c.key {op} ? AND c.deleted=0 ORDER BY c.key LIMIT 200",
            (bucket, cursor),
        ).fetchall()
        if not rows:
            return Listing(found, prefixes, False, last)
        for row in rows:
            key: str = row[2]
            if not key.startswith(prefix):
                return Listing(found, prefixes, False, last)
            if len(found) + len(prefixes) >= max_keys:
                return Listing(found, prefixes, True, last)
            cut = key.find(delimiter, len(prefix)) if delimiter else -1
            if cut >= 0:
                common = key[: cut + len(delimiter)]
                prefixes.append(common)
                last = common + _TOP
                cursor, inclusive = common + _TOP, False
                break
            found.append(meta_from_row(row))
            last = key
            cursor, inclusive = key, False
    more = conn.execute(
        "SELECT c.key FROM current c WHERE c.bucket=? AND c.key > ? AND c.deleted=0"
        " ORDER BY c.key LIMIT 1",
        (bucket, cursor),
    ).fetchone()
    truncated = more is not None and more[0].startswith(prefix)
    return Listing(found, prefixes, truncated, last)


def _past_group(after: str, prefix: str, delimiter: str) -> str:
    """A marker inside a group that rolls up to a common prefix (or that prefix itself, as a
    v1 NextMarker is) continues after the whole group: the group's entry is not after it."""
    if not after or not delimiter or not after.startswith(prefix):
        return after
    cut = after.find(delimiter, len(prefix))
    if cut < 0:
        return after
    return max(after, after[: cut + len(delimiter)] + _TOP)


def versions(
    conn: sqlite3.Connection,
    bucket: str,
    *,
    prefix: str,
    key_marker: str,
    version_marker: str,
    max_keys: int,
) -> VersionListing:
    where = "v.bucket=? AND v.key >= ?"
    args: list[object] = [bucket, prefix]
    conn.execute("BEGIN")
    if key_marker and version_marker:
        row = conn.execute(
            "SELECT seq FROM versions WHERE bucket=? AND key=? AND version_id=?",
            (bucket, key_marker, version_marker),
        ).fetchone()
        if row is not None:
            where += " AND ((v.key = ? AND v.seq < ?) OR v.key > ?)"
            args += [key_marker, row[0], key_marker]
        elif VERSION_ID.fullmatch(version_marker):
            # removed since (retention, an erase): version ids grow with time, so the listing
            # resumes after the position it had, as S3 does
            where += " AND ((v.key = ? AND v.version_id < ?) OR v.key > ?)"
            args += [key_marker, version_marker, key_marker]
        else:
            raise InvalidArgument(
                "version-id-marker is not a version id", ArgumentName="version-id-marker"
            )
    elif key_marker:
        where += " AND v.key > ?"
        args.append(key_marker)
    rows = conn.execute(
        f"SELECT {VCOLS}, (c.seq = v.seq) FROM versions v LEFT JOIN current c"
        f" ON c.bucket = v.bucket AND c.key = v.key WHERE {where}"
        " ORDER BY v.key, v.seq DESC LIMIT ?",
        (*args, max_keys + 1),
    ).fetchall()
    rows = [r for r in rows if r[2].startswith(prefix)]
    truncated = len(rows) > max_keys
    rows = rows[:max_keys]
    found = [meta_from_row(r, bool(r[-1])) for r in rows]
    if truncated and found:
        return VersionListing(found, True, found[-1].key, found[-1].version_id)
    return VersionListing(found, False, None, None)


def uploads(
    conn: sqlite3.Connection,
    bucket: str,
    *,
    prefix: str,
    delimiter: str,
    key_marker: str,
    upload_marker: str,
    max_uploads: int,
) -> UploadListing:
    """ListMultipartUploads: by key, then upload id; after (key-marker, upload-id-marker)."""
    where, args = "bucket=? AND key >= ?", [bucket, prefix]
    if key_marker and upload_marker:
        where += " AND ((key = ? AND upload_id > ?) OR key > ?)"
        args += [key_marker, upload_marker, key_marker]
    elif key_marker:
        where += " AND key > ?"
        # a marker that is a common prefix (the last entry of a page) skips that whole group
        rolled = delimiter and key_marker.startswith(prefix) and key_marker.endswith(delimiter)
        args.append(key_marker + _TOP if rolled else key_marker)
    found: list[UploadInfo] = []
    prefixes: list[str] = []
    last: tuple[str, str] | None = None
    truncated = False
    rows = conn.execute(
        f"SELECT upload_id, bucket, key, created, algorithm FROM uploads WHERE {where}"
        " ORDER BY key, upload_id",
        args,
    )
    for upload_id, b, key, created, algo in rows:
        if not key.startswith(prefix):
            break
        cut = key.find(delimiter, len(prefix)) if delimiter else -1
        common = key[: cut + len(delimiter)] if cut >= 0 else None
        if common is not None and prefixes and prefixes[-1] == common:
            continue
        if len(found) + len(prefixes) >= max_uploads:
            truncated = True
            break
        if common is not None:
            prefixes.append(common)
            last = (common, "")
        else:
            found.append(UploadInfo(upload_id, b, key, created, algo))
            last = (key, upload_id)
    if truncated and last is not None:
        return UploadListing(found, prefixes, True, last[0], last[1])
    return UploadListing(found, prefixes, False, None, None)
