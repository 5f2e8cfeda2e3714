"""Request bodies as every room sees them: received whole, hashed as they arrived, kept small.

``Payload`` is a request body held in memory only when it is small: larger bodies live in a spool
file in the data directory, so a client's upload never costs the server its size in memory. The
HTTP layer fills a ``PayloadSink``, the S3 operations read the ``Payload`` and the store makes it
durable, so it lives here, above none of them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from backend import checksums

CHUNK = 1 << 20


class Payload:
    """A request body, complete and hashed (md5 and sha256 hex) as it arrived."""

    def __init__(
        self,
        *,
        size: int,
        md5: str,
        sha256: str,
        data: bytes | None = None,
        path: Path | None = None,
        trailers: dict[str, str] | None = None,
    ) -> None:
        if (data is None) == (path is None):
            raise ValueError("a payload is either in memory or in a spool file")
        self.size = size
        self.md5 = md5
        self.sha256 = sha256
        self.trailers = trailers or {}
        self._data = data
        self._path = path
        self._sums: dict[str, str] = {}

    @classmethod
    def from_bytes(cls, data: bytes, trailers: dict[str, str] | None = None) -> Payload:
        return cls(
            size=len(data),
            md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
            trailers=trailers,
        )

    @property
    def in_memory(self) -> bool:
        return self._data is not None

    @property
    def path(self) -> Path | None:
        return self._path

    def read(self) -> bytes:
        """The whole body; for small bodies (XML documents, inline objects)."""
        if self._data is not None:
            return self._data
        assert self._path is not None
        return self._path.read_bytes()

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        if self._data is not None:
            for start in range(0, len(self._data), size):
                yield self._data[start : start + size]
            return
        assert self._path is not None
        with self._path.open("rb") as fh:
            while block := fh.read(size):
                yield block

    def checksum(self, algorithm: str) -> str:
        """The base64 ``x-amz-checksum-<algorithm>`` value of the body (computed once)."""
        if algorithm not in self._sums:
            if self._data is not None:
                self._sums[algorithm] = checksums.compute(algorithm, self._data)
            else:
                state = checksums.start(algorithm)
                for block in self.chunks():
                    state.update(block)
                self._sums[algorithm] = state.b64()
        return self._sums[algorithm]

    def persist(self, dest: Path) -> None:
        """Make the body the durable file ``dest`` (fsync'd, and its directory too)."""
        if self._path is not None:
            fd = os.open(self._path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self._path, dest)
            self._path = None
            self._data = None
        else:
            assert self._data is not None
            tmp = dest.with_name(dest.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, self._data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def discard(self) -> None:
        """Remove the spool file, if any (idempotent)."""
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None


EMPTY = Payload.from_bytes(b"")


class PayloadSink:
    """Collects a body as it streams in: memory up to ``memory_limit``, then a spool file."""

    def __init__(self, spool_dir: Path, *, memory_limit: int) -> None:
        self._spool_dir = spool_dir
        self._memory_limit = memory_limit
        self._buf = bytearray()
        self._fh: int | None = None
        self._path: Path | None = None
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha = hashlib.sha256()
        self.size = 0

    def write(self, block: bytes) -> None:
        if not block:
            return
        self._md5.update(block)
        self._sha.update(block)
        self.size += len(block)
        if self._fh is None and len(self._buf) + len(block) <= self._memory_limit:
            self._buf += block
            return
        if self._fh is None:
            self._spool_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix="body-", dir=self._spool_dir)
            self._fh, self._path = fd, Path(name)
            if self._buf:
                os.write(fd, self._buf)
                self._buf = bytearray()
        view = memoryview(block)
        while view:
            written = os.write(self._fh, view)
            view = view[written:]

    def finish(self, trailers: dict[str, str] | None = None) -> Payload:
        md5, sha = self._md5.hexdigest(), self._sha.hexdigest()
        if self._fh is None:
            return Payload(
                size=self.size, md5=md5, sha256=sha, data=bytes(self._buf), trailers=trailers
            )
        os.close(self._fh)
        self._fh = None
        path, self._path = self._path, None
        return Payload(size=self.size, md5=md5, sha256=sha, path=path, trailers=trailers)

    def abort(self) -> None:
        """Drop whatever arrived (idempotent)."""
        if self._fh is not None:
            os.close(self._fh)
            self._fh = None
        if self._path is not None:
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()
            self._path = None
        self._buf = bytearray()
