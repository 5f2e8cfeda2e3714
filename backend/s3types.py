"""The types the HTTP layer hands to the S3 operations and gets back.

``Payload`` is a request body received whole, hashed as it arrived, and held in memory only when
it is small: larger bodies live in a spool file in the data directory, so a client's upload
never costs the server its size in memory. ``Response.stream`` lets a large object go back out
the same way, a chunk at a time.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, overload

from backend import checksums

if TYPE_CHECKING:
    from backend.credentials import Credential
    from backend.limits import Limits
    from backend.policy import Access
    from backend.store import Store

CHUNK = 1 << 20


class Headers:
    """Request headers: case-insensitive names, every value kept in arrival order."""

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = []
        self._index: dict[str, list[str]] = {}
        for name, value in items:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))
        self._index.setdefault(name.lower(), []).append(value)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def get_all(self, name: str) -> list[str] | None:
        values = self._index.get(name.lower())
        return list(values) if values else None

    def count(self, name: str) -> int:
        return len(self._index.get(name.lower(), ()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)


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


@dataclass(frozen=True)
class Quota:
    """What a stage credential may hold under its workspace prefix."""

    prefix: str
    max_keys: int
    max_bytes: int


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    # A large body goes out a chunk at a time; the operation sets Content-Length itself.
    stream: Iterable[bytes] | None = None

    @classmethod
    def xml(cls, body: bytes, status: int = 200) -> Response:
        return cls(status, {"Content-Type": "application/xml"}, body)


@dataclass
class S3Request:
    op: str
    method: str
    bucket: str
    key: str
    params: dict[str, str]
    headers: Headers
    payload: Payload
    access: Access
    store: Store
    limits: Limits
    quota: Quota | None = None
    # the authenticated credential: listings and HEAD show each key as its GET would
    cred: Credential | None = None


def b64_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")
