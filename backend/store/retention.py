"""Which versions are kept, and the janitor that applies it (and expires abandoned uploads).

A key keeps its newest version always (even a delete marker). A non-current version is dropped
once ``retain_versions`` newer versions exist, or ``retain_days`` after it stopped being current
(the creation of the next newer version: like S3's NoncurrentDays, so a state that sat unchanged
for months is still kept that long after its replacement). Applied on every write of a key and
by a periodic sweep, which also aborts multipart uploads older than ``upload_expiry_hours`` and
removes files no row references.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.limits import Limits

if TYPE_CHECKING:
    from backend.store.db import Database
    from backend.store.diskspace import Reserve
    from backend.store.objectfiles import ObjectFiles

DAY = 86400.0
SWEEP_BATCH = 64


def trim(
    conn: sqlite3.Connection, bucket: str, key: str, limits: Limits, now: float
) -> tuple[int, list[str]]:
    """Drop the versions of one key that retention no longer keeps: (how many, files)."""
    bound = -1
    row = conn.execute(
        "SELECT seq FROM versions WHERE bucket=? AND key=? ORDER BY seq DESC LIMIT 1 OFFSET ?",
        (bucket, key, limits.retain_versions),
    ).fetchone()
    if row is not None:
        bound = row[0]
    cutoff = now - limits.retain_days * DAY
    # fast path: nothing has aged out while the second-oldest version is younger than the cutoff
    oldest = conn.execute(
        "SELECT created FROM versions WHERE bucket=? AND key=? ORDER BY seq LIMIT 1 OFFSET 1",
        (bucket, key),
    ).fetchone()
    if oldest is not None and oldest[0] < cutoff:
        # the newest version created before the cutoff is the last one still inside the
        # window: everything older was replaced before the cutoff
        row = conn.execute(
            "SELECT max(seq) FROM versions WHERE bucket=? AND key=? AND created < ?",
            (bucket, key, cutoff),
        ).fetchone()
        bound = max(bound, row[0] - 1)
    if bound < 0:
        return 0, []
    args = (bucket, key, bound)
    doomed = "SELECT seq FROM versions WHERE bucket=? AND key=? AND seq <= ?"
    files = [
        r[0]
        for r in conn.execute(
            "SELECT file FROM versions WHERE bucket=? AND key=? AND seq <= ? AND file IS NOT NULL",
            args,
        )
    ]
    conn.execute(f"DELETE FROM blobs WHERE seq IN ({doomed})", args)
    cur = conn.execute("DELETE FROM versions WHERE bucket=? AND key=? AND seq <= ?", args)
    return cur.rowcount, files


def drop_upload(conn: sqlite3.Connection, upload_id: str) -> list[str]:
    """Delete an upload and its parts (parts first: the usage triggers look the upload up)."""
    files = [
        r[0]
        for r in conn.execute(
            "SELECT file FROM parts WHERE upload_id=? AND file IS NOT NULL", (upload_id,)
        )
    ]
    conn.execute("DELETE FROM parts WHERE upload_id=?", (upload_id,))
    conn.execute("DELETE FROM uploads WHERE upload_id=?", (upload_id,))
    return files


@dataclass(frozen=True)
class SweepReport:
    versions_dropped: int
    uploads_aborted: int
    orphans_removed: int


class Janitor:
    """Runs ``sweep`` at start and then every ``interval`` seconds on a daemon thread."""

    def __init__(
        self,
        db: Database,
        files: ObjectFiles,
        reserve: Reserve,
        limits: Limits,
        *,
        interval: float = 3600.0,
    ) -> None:
        self._db, self._files, self._reserve, self._limits = db, files, reserve, limits
        self.interval = interval
        self.last_error: BaseException | None = None
        self._stop = threading.Event()
        self._sweep_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="store-janitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # kept for `status`; the next round tries again
                self.last_error = exc

    def sweep(self, now: float | None = None) -> SweepReport:
        """Apply retention to every key, abort expired uploads, remove orphan files."""
        now = time.time() if now is None else now
        with self._sweep_lock:
            dropped = self._trim_all(now)
            aborted = self._expire_uploads(now)
            orphans = self._remove_orphans()
            self._reserve.ensure()
        return SweepReport(dropped, aborted, orphans)

    def _trim_all(self, now: float) -> int:
        limits = self._limits
        with self._db.read() as conn:
            keys = conn.execute(
                "SELECT bucket, key FROM versions GROUP BY bucket, key"
                " HAVING count(*) > 1 AND (count(*) > ? OR min(created) < ?)",
                (limits.retain_versions, now - limits.retain_days * DAY),
            ).fetchall()
        dropped = 0
        for start in range(0, len(keys), SWEEP_BATCH):
            batch = keys[start : start + SWEEP_BATCH]

            def op(
                conn: sqlite3.Connection, batch: list[tuple[str, str]] = batch
            ) -> tuple[int, list[str]]:
                files: list[str]
                count, files = 0, []
                for bucket, key in batch:
                    n, gone = trim(conn, bucket, key, limits, now)
                    count, files = count + n, files + gone
                return count, files

            count, files = self._db.write(op)
            dropped += count
            self._files.unlink(files)
        return dropped

    def _expire_uploads(self, now: float) -> int:
        cutoff = now - self._limits.upload_expiry_hours * 3600
        with self._db.read() as conn:
            ids = [
                r[0]
                for r in conn.execute("SELECT upload_id FROM uploads WHERE created < ?", (cutoff,))
            ]
        for upload_id in ids:

            def op(conn: sqlite3.Connection, uid: str = upload_id) -> list[str]:
                return drop_upload(conn, uid)

            self._files.unlink(self._db.write(op))
        return len(ids)

    def _remove_orphans(self) -> int:
        """Orphans: on disk, not in flight, not referenced. Listed in that order (see
        ``ObjectFiles.orphans``) so a write committing meanwhile is seen as referenced."""
        candidates = self._files.orphans(set())
        with self._db.read() as conn:
            conn.execute("BEGIN")
            referenced = {
                r[0]
                for r in conn.execute(
                    "SELECT file FROM versions WHERE file IS NOT NULL"
                    " UNION ALL SELECT file FROM parts WHERE file IS NOT NULL"
                )
            }
        doomed = [rel for rel in candidates if rel.removesuffix(".tmp") not in referenced]
        self._files.unlink(doomed)
        return len(doomed)
