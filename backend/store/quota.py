"""What a stage credential holds under its workspace prefix, and the limit on it.

Usage (live keys; bytes of every kept version and unfinished part) is kept per workspace prefix
``env:/<ws>/`` by SQLite triggers, so every path that adds or drops a row (a write, a trim, the
janitor, an abort) counts alike, and a write reads its prefix's usage in O(1) inside its own
transaction: concurrent writes cannot both squeeze under the limit, and a stage with many keys
and versions does not slow down the single writer for everyone else. A write is refused only
when it grows a usage past its limit; deletes and aborts only ever shrink it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from backend.errors import QuotaExceeded

_WS = "env:/"


@dataclass(frozen=True)
class Quota:
    """What a stage credential may hold under its workspace prefix."""

    prefix: str
    max_keys: int
    max_bytes: int


def _rest(col: str) -> str:
    return f"substr({col}, 6)"


def _valid(col: str) -> str:
    rest = _rest(col)
    return (
        f"(substr({col}, 1, 5) = '{_WS}' AND instr({rest}, '/') > 1"
        f" AND length({rest}) > instr({rest}, '/'))"
    )


def _prefix(col: str) -> str:
    rest = _rest(col)
    return f"('{_WS}' || substr({rest}, 1, instr({rest}, '/')))"


_UPSERT = "ON CONFLICT (bucket, prefix) DO UPDATE SET keys = keys + excluded.keys,"
_UPSERT += " bytes = bytes + excluded.bytes"


def _statements() -> list[str]:
    new_k, old_k = "NEW.key", "OLD.key"
    upload_of = "SELECT u.bucket, {p} FROM uploads u WHERE u.upload_id = {side}.upload_id"
    return [
        "CREATE TABLE IF NOT EXISTS usage (bucket TEXT NOT NULL, prefix TEXT NOT NULL,"
        " keys INTEGER NOT NULL, bytes INTEGER NOT NULL, PRIMARY KEY (bucket, prefix))"
        " WITHOUT ROWID",
        f"CREATE TRIGGER IF NOT EXISTS usage_version_in AFTER INSERT ON versions"
        f" WHEN {_valid(new_k)} BEGIN INSERT INTO usage VALUES"
        f" (NEW.bucket, {_prefix(new_k)}, 0, NEW.size) {_UPSERT}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_version_out AFTER DELETE ON versions"
        f" WHEN {_valid(old_k)} BEGIN UPDATE usage SET bytes = bytes - OLD.size"
        f" WHERE bucket = OLD.bucket AND prefix = {_prefix(old_k)}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_key_in AFTER INSERT ON current"
        f" WHEN NEW.deleted = 0 AND {_valid(new_k)} BEGIN INSERT INTO usage VALUES"
        f" (NEW.bucket, {_prefix(new_k)}, 1, 0) {_UPSERT}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_key_out AFTER DELETE ON current"
        f" WHEN OLD.deleted = 0 AND {_valid(old_k)} BEGIN UPDATE usage SET keys = keys - 1"
        f" WHERE bucket = OLD.bucket AND prefix = {_prefix(old_k)}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_key_flip AFTER UPDATE ON current"
        f" WHEN OLD.deleted != NEW.deleted AND {_valid(new_k)} BEGIN INSERT INTO usage VALUES"
        f" (NEW.bucket, {_prefix(new_k)}, OLD.deleted - NEW.deleted, 0) {_UPSERT}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_part_in AFTER INSERT ON parts BEGIN"
        f" INSERT INTO usage SELECT u.bucket, {_prefix('u.key')}, 0, NEW.size FROM uploads u"
        f" WHERE u.upload_id = NEW.upload_id AND {_valid('u.key')} {_UPSERT}; END",
        f"CREATE TRIGGER IF NOT EXISTS usage_part_out AFTER DELETE ON parts BEGIN"
        f" UPDATE usage SET bytes = bytes - OLD.size WHERE (bucket, prefix) IN"
        f" ({upload_of.format(p=_prefix('u.key'), side='OLD')} AND {_valid('u.key')}); END",
    ]


def install(conn: sqlite3.Connection) -> None:
    """Create the usage table and its triggers, and count what is stored already."""
    for statement in _statements():
        conn.execute(statement)
    recount(conn)


def _tallies() -> list[str]:
    """(bucket, prefix, keys, bytes) from the rows: versions, live keys, unfinished parts."""
    return [
        f"SELECT bucket, {_prefix('key')}, 0, sum(size) FROM versions"
        f" WHERE {_valid('key')} GROUP BY 1, 2",
        f"SELECT bucket, {_prefix('key')}, count(*), 0 FROM current"
        f" WHERE deleted = 0 AND {_valid('key')} GROUP BY 1, 2",
        f"SELECT u.bucket, {_prefix('u.key')}, 0, sum(p.size)"
        f" FROM parts p JOIN uploads u USING (upload_id) WHERE {_valid('u.key')} GROUP BY 1, 2",
    ]


def recount(conn: sqlite3.Connection) -> None:
    """Recompute every workspace's usage from the rows (migration)."""
    conn.execute("DELETE FROM usage")
    for select in _tallies():
        conn.execute(f"INSERT INTO usage {select} {_UPSERT}")


def consistent(conn: sqlite3.Connection) -> bool:
    """True if the counters equal a recount from the rows (zero rows ignored)."""
    fresh: dict[tuple[str, str], tuple[int, int]] = {}
    for select in _tallies():
        for bucket, prefix, keys, size in conn.execute(select):
            k, b = fresh.get((bucket, prefix), (0, 0))
            fresh[(bucket, prefix)] = (k + keys, b + size)
    counted = {
        (bucket, prefix): (keys, size)
        for bucket, prefix, keys, size in conn.execute("SELECT * FROM usage")
    }
    return {k: v for k, v in fresh.items() if v != (0, 0)} == {
        k: v for k, v in counted.items() if v != (0, 0)
    }


def _upper(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix`` (prefix non-empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def measure(conn: sqlite3.Connection, bucket: str, prefix: str) -> tuple[int, int]:
    """(live keys, bytes) under any prefix, counted from the rows with indexed range scans."""
    if not prefix:
        span, args = "", [bucket]
    else:
        span, args = " AND key >= ? AND key < ?", [bucket, prefix, _upper(prefix)]
    keys = conn.execute(
        f"SELECT count(*) FROM current WHERE bucket = ?{span} AND deleted = 0", args
    ).fetchone()[0]
    stored = conn.execute(
        f"SELECT coalesce(sum(size), 0) FROM versions WHERE bucket = ?{span}", args
    ).fetchone()[0]
    pending = conn.execute(
        "SELECT coalesce(sum(p.size), 0) FROM parts p JOIN uploads u USING (upload_id)"
        f" WHERE u.bucket = ?{span.replace('key', 'u.key')}",
        args,
    ).fetchone()[0]
    return int(keys), int(stored) + int(pending)


def is_workspace_prefix(prefix: str) -> bool:
    rest = prefix[len(_WS) :]
    return prefix.startswith(_WS) and rest.endswith("/") and "/" not in rest[:-1] and len(rest) > 1


def usage(conn: sqlite3.Connection, bucket: str, prefix: str) -> tuple[int, int]:
    """(live keys, bytes) under ``prefix``: O(1) for a workspace prefix, a range scan otherwise."""
    if not is_workspace_prefix(prefix):
        return measure(conn, bucket, prefix)
    row = conn.execute(
        "SELECT keys, bytes FROM usage WHERE bucket = ? AND prefix = ?", (bucket, prefix)
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def enforce(
    conn: sqlite3.Connection, bucket: str, limit: Quota | None, before: tuple[int, int]
) -> None:
    """Refuse (rolling the write back) when it grew a usage past the credential's limit."""
    if limit is None:
        return
    keys, size = usage(conn, bucket, limit.prefix)
    if keys > limit.max_keys and keys > before[0]:
        raise QuotaExceeded(
            f"quota exceeded under {limit.prefix}: at most {limit.max_keys} live keys,"
            f" {before[0]} in use; this write would make {keys}",
            Limit="keys",
        )
    if size > limit.max_bytes and size > before[1]:
        raise QuotaExceeded(
            f"quota exceeded under {limit.prefix}: at most {limit.max_bytes} bytes (every kept"
            f" version and unfinished part), {before[1]} in use; this write would make {size}",
            Limit="bytes",
        )


def before(conn: sqlite3.Connection, bucket: str, limit: Quota | None) -> tuple[int, int]:
    return usage(conn, bucket, limit.prefix) if limit is not None else (0, 0)


def enforce_uploads(conn: sqlite3.Connection, bucket: str, limit: Quota) -> None:
    """An unfinished upload is a key in the making: a stage may hold as many as it may keys.

    Empty uploads hold no bytes, so without this a credential could pile up upload records
    (expired only after a day) faster than anything else bounds them.
    """
    pending = conn.execute(
        "SELECT count(*) FROM uploads WHERE bucket = ? AND key >= ? AND key < ?",
        (bucket, limit.prefix, _upper(limit.prefix)),
    ).fetchone()[0]
    if pending >= limit.max_keys:
        raise QuotaExceeded(
            f"quota exceeded under {limit.prefix}: at most {limit.max_keys} unfinished multipart"
            f" uploads, {pending} open; complete or abort some",
            Limit="uploads",
        )
