"""Free space: refuse writes below a reserve, and keep deletes working on a full disk.

A write is refused (InsufficientStorage, 507) unless, after everything it may still cost the
disk, the data directory keeps ``limits.disk_reserve_bytes`` free. What it may cost is more than
its body: an inline body is written twice (the write-ahead log, then the database when the log
is checkpointed), every commit adds a few pages, and SQLite's log itself may still grow up to
its limit (``wal_limit``: SQLite's own 4 MiB for the default reserve, down to 1 MiB for a small
one; ``db`` checkpoints there and truncates the file back to twice that) while the pages it
holds may still be copied into the database. So the reserve is what a lock release or an upload
abort has to work with, whatever the server wrote before.

Some other process may still fill the disk to the last byte; then even a delete cannot commit.
So the store keeps a preallocated emergency file, sized from the reserve (half of it, at most
8 MiB), that it gives back to the filesystem when a delete or an abort hits a full disk and
recreates once there is room again: the way out (release a lock, delete old versions, abort
uploads) stays open.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from backend.errors import InsufficientStorage

RESERVE_NAME = "reserve.bin"
RESERVE_BYTES = 8 * 1024 * 1024  # the emergency file's largest size
MIN_EMERGENCY = 64 * 1024
WAL_NAME = "state.sqlite3-wal"
WAL_MIN = 1024 * 1024  # the smallest write-ahead log limit (a checkpoint every 256 pages)
WAL_MAX = 4 * 1024 * 1024  # SQLite's own default (1000 pages): no more checkpoints than usual
COMMIT_SLACK = 64 * 1024  # the pages one write's commit adds besides its body (rows, indexes)


class ReserveTooLarge(ValueError):
    """The reserve cannot fit the disk at all: a configuration error, said at start."""


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def emergency_size(reserve: int) -> int:
    """The emergency file for a reserve: half of it, between 64 KiB and 8 MiB (none for 0)."""
    if reserve <= 0:
        return 0
    return min(RESERVE_BYTES, max(MIN_EMERGENCY, reserve // 2))


def wal_limit(reserve: int) -> int:
    """The write-ahead log's size before a checkpoint, for a reserve: a quarter of it, between
    1 MiB and SQLite's own 4 MiB (which a default 64 MiB reserve keeps, and no reserve too)."""
    if reserve <= 0:
        return WAL_MAX
    return min(WAL_MAX, max(WAL_MIN, reserve // 4))


def sqlite_headroom(path: Path, limit: int) -> int:
    """What SQLite may still take without another write: the log growing to its ``limit``,
    and the pages it holds copied into the database by the next checkpoint."""
    try:
        wal = os.stat(path / WAL_NAME).st_size
    except FileNotFoundError:
        wal = 0
    return max(0, limit - wal) + min(max(wal, limit), 2 * limit)


def check(path: Path, incoming: int, reserve: int, *, inline_limit: int = 0) -> None:
    """InsufficientStorage when a write of ``incoming`` body bytes (held in the database when
    it is at most ``inline_limit``) could leave less than ``reserve`` free."""
    free = free_bytes(path)
    if reserve <= 0:
        if free < incoming:
            raise InsufficientStorage()
        return
    inline = incoming if incoming <= inline_limit else 0
    need = incoming + inline + COMMIT_SLACK
    limit = wal_limit(reserve)
    if free - need - 3 * limit >= reserve:  # room whatever the log holds: no need to look
        return
    need += sqlite_headroom(path, limit)
    if free - need < reserve:
        raise InsufficientStorage(
            f"the state server's disk has {free} bytes free; this write may take {need} and"
            f" {reserve} are kept in reserve: delete objects, abort uploads, or free disk space"
        )


def check_fits(path: Path, reserve: int) -> None:
    """ReserveTooLarge when the reserve (with the emergency file and SQLite's own room) is at
    least the size of the whole filesystem holding ``path``: no write could ever be taken."""
    if reserve <= 0:
        return
    st = os.statvfs(path)
    total = st.f_blocks * st.f_frsize
    if reserve + emergency_size(reserve) + 2 * wal_limit(reserve) + COMMIT_SLACK >= total:
        raise ReserveTooLarge(
            f"--disk-reserve {reserve} bytes does not fit the disk holding {path}"
            f" ({total} bytes in all): give a smaller reserve or another --data"
        )


class Reserve:
    """The preallocated emergency file (``<data>/reserve.bin``)."""

    def __init__(self, data_dir: Path, size: int = RESERVE_BYTES) -> None:
        self.path = data_dir / RESERVE_NAME
        self.size = size
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        if self.size <= 0:
            return True
        try:
            return self.path.stat().st_size == self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Create the file (or resize one of an earlier reserve) if the disk has room for it
        above the reserve it belongs to (twice its size); True if held."""
        with self._lock:
            if self.held:
                return True
            with contextlib.suppress(OSError):
                if self.path.stat().st_size > self.size:  # a larger reserve's: give some back
                    os.truncate(self.path, self.size)
                    return True
            if free_bytes(self.path.parent) < 2 * self.size:
                return False
            tmp = self.path.with_name(RESERVE_NAME + ".tmp")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.posix_fallocate(fd, 0, self.size)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, self.path)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                return False
            return True

    def release(self) -> bool:
        """Give the reserved space back (a delete hit a full disk); True if there was any."""
        with self._lock:
            try:
                self.path.unlink()
            except FileNotFoundError:
                return False
            return True
