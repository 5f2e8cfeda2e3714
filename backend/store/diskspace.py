"""Free space: refuse writes below a reserve, and keep deletes working on a full disk.

Writes are refused (InsufficientStorage, 507) while the data directory's free space minus the
incoming body is below ``limits.disk_reserve_bytes``. Some other process may still fill the disk
to the last byte; then even a delete cannot commit (SQLite needs a few pages of WAL). So the
store keeps a small preallocated file that it gives back to the filesystem when a delete or an
abort hits a full disk, and recreates once there is room again: the way out (release a lock,
delete old versions, abort uploads) stays open.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from backend.errors import InsufficientStorage

RESERVE_NAME = "reserve.bin"
RESERVE_BYTES = 8 * 1024 * 1024


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the filesystem holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def check(path: Path, incoming: int, reserve: int) -> None:
    """InsufficientStorage when writing ``incoming`` bytes would leave less than ``reserve``."""
    free = free_bytes(path)
    if free - incoming < reserve:
        raise InsufficientStorage(
            f"the state server's disk has {free} bytes free; this write needs {incoming} and"
            f" {reserve} are kept in reserve: delete objects, abort uploads, or free disk space"
        )


class Reserve:
    """The preallocated emergency file (``<data>/reserve.bin``)."""

    def __init__(self, data_dir: Path, size: int = RESERVE_BYTES) -> None:
        self.path = data_dir / RESERVE_NAME
        self.size = size
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        try:
            return self.path.stat().st_size >= self.size
        except FileNotFoundError:
            return False

    def ensure(self) -> bool:
        """Create the file if it is missing and the disk has room for it; True if held."""
        with self._lock:
            if self.held:
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
