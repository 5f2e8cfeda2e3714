"""Large bodies as durable files under ``<data>/objects``, referenced by their SQLite rows.

Order of events keeps every acknowledged write whole and leaks nothing for long: the body is
made durable (fsync file and directory) *before* the commit that references it, and a file is
unlinked only *after* the commit that dropped its row. A crash in between leaves an orphan file
(no row), removed at the next start or sweep; files of writes still in flight are never orphans.
Reads verify the stored sha256 while streaming and hold the last chunk back until it matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from backend.errors import InsufficientStorage, InternalError
from backend.payload import CHUNK, Payload
from backend.store.db import disk_full

OBJECTS_DIR = "objects"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ObjectFiles:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / OBJECTS_DIR
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        fresh = not self.root.exists()
        self.root.mkdir(exist_ok=True)
        for i in range(256):
            (self.root / f"{i:02x}").mkdir(exist_ok=True)
        if fresh:
            _fsync_dir(self.root)
            _fsync_dir(data_dir)

    def path(self, rel: str) -> Path:
        return self.root / rel

    @contextlib.contextmanager
    def placed(self, payload: Payload) -> Iterator[str]:
        """Persist ``payload`` as a new file; it is removed again if the block raises."""
        rel = f"{secrets.token_hex(1)}/{secrets.token_hex(16)}"
        with self._lock:
            self._pending.add(rel)
        try:
            try:
                payload.persist(self.path(rel))
            except OSError as exc:
                if disk_full(exc):
                    raise InsufficientStorage() from None
                raise
            yield rel
        except BaseException:
            self.unlink([rel])
            raise
        finally:
            with self._lock:
                self._pending.discard(rel)

    def unlink(self, rels: Iterable[str | None]) -> None:
        for rel in rels:
            if rel:
                with contextlib.suppress(FileNotFoundError):
                    self.path(rel).unlink()
                with contextlib.suppress(FileNotFoundError):
                    self.path(rel + ".tmp").unlink()

    def orphans(self, referenced: set[str]) -> list[str]:
        """Files no row references and no write in flight is about to reference.

        The directory is listed *before* the in-flight set is read, and the caller reads
        ``referenced`` after this returns: a file seen on disk was either still in flight
        here or its commit is visible to the caller's later read.
        """
        on_disk: list[str] = []
        for sub in sorted(self.root.iterdir()):
            if sub.is_dir():
                on_disk += [f"{sub.name}/{entry.name}" for entry in os.scandir(sub)]
        with self._lock:
            busy = set(self._pending)
        return [
            rel
            for rel in on_disk
            if rel.removesuffix(".tmp") not in busy and rel.removesuffix(".tmp") not in referenced
        ]

    def read_all(self, rel: str, sha256: str) -> bytes:
        """The whole body, checked (for redaction: bounded by the maximum object size)."""
        try:
            data = self.path(rel).read_bytes()
        except FileNotFoundError:
            raise InternalError("a stored object's file is missing") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise InternalError("stored object failed its integrity check")
        return data

    def stream(self, rel: str, size: int, sha256: str, first: int, last: int) -> Iterable[bytes]:
        """Bytes ``first..last`` (inclusive); the file is opened now, so a later trim or
        delete of the row cannot pull it away mid-answer. A whole read is checked against
        ``sha256``; a ranged one against the stored size."""
        try:
            fh = self.path(rel).open("rb")
        except FileNotFoundError:
            raise InternalError("a stored object's file is missing") from None
        if os.fstat(fh.fileno()).st_size != size:
            fh.close()
            raise InternalError("stored object failed its integrity check")
        whole = first == 0 and last == size - 1
        return _chunks(fh, first, last - first + 1, sha256 if whole else None)


def _chunks(fh: BinaryIO, offset: int, length: int, sha256: str | None) -> Iterator[bytes]:
    """Yield ``length`` bytes from ``offset``; with ``sha256``, the last chunk only if it holds.

    On a mismatch the generator raises instead of yielding the last chunk, so the client never
    receives a complete (corrupt) body: the HTTP layer cuts the connection short.
    """
    digest = hashlib.sha256() if sha256 is not None else None
    try:
        fh.seek(offset)
        held: bytes | None = None
        left = length
        while left > 0:
            block = fh.read(min(CHUNK, left))
            if not block:
                raise InternalError("a stored object's file is shorter than its record")
            left -= len(block)
            if digest is not None:
                digest.update(block)
            if held is not None:
                yield held
            held = block
        if digest is not None and digest.hexdigest() != sha256:
            raise InternalError("stored object failed its integrity check")
        if held is not None:
            yield held
    finally:
        fh.close()
