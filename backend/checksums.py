"""The additional checksums S3 clients send (``x-amz-checksum-*``), computed with the stdlib.

SHA-1/SHA-256 come from hashlib and CRC32 from zlib. CRC32C and CRC64NVME have no stdlib
implementation (botocore only has them through the optional CRT), so they use a small table-driven
version here: slow on big bodies, but clients only send them when asked to, and a server that
accepts a checksum it cannot check would store objects it cannot vouch for.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Callable

ALGORITHMS = ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")


def _reflected_table(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _reflected_table(0x82F63B78)
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5)


def _crc32c(data: bytes) -> bytes:
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ 0xFFFFFFFF).to_bytes(4, "big")


def _crc64nvme(data: bytes) -> bytes:
    mask = 0xFFFFFFFFFFFFFFFF
    crc = mask
    table = _CRC64NVME_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return (crc ^ mask).to_bytes(8, "big")


_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "crc32": lambda d: (zlib.crc32(d) & 0xFFFFFFFF).to_bytes(4, "big"),
    "crc32c": _crc32c,
    "crc64nvme": _crc64nvme,
    "sha1": lambda d: hashlib.sha1(d, usedforsecurity=False).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}


class Running:
    """An incremental checksum, for bodies that arrive (or are read back) in chunks."""

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = (
            hashlib.new(algorithm, usedforsecurity=False)
            if algorithm in ("sha1", "sha256")
            else None
        )
        self._crc = 0
        self._crc_mask = 0xFFFFFFFFFFFFFFFF if algorithm == "crc64nvme" else 0xFFFFFFFF
        self._table = (
            _CRC32C_TABLE
            if algorithm == "crc32c"
            else _CRC64NVME_TABLE
            if algorithm == "crc64nvme"
            else None
        )
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        if self._table is not None:
            self._crc = self._crc_mask

    def update(self, data: bytes) -> None:
        if self._hash is not None:
            self._hash.update(data)
        elif self._table is None:
            self._crc = zlib.crc32(data, self._crc)
        else:
            crc, table = self._crc, self._table
            for b in data:
                crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
            self._crc = crc

    def digest(self) -> bytes:
        if self._hash is not None:
            return self._hash.digest()
        if self._table is None:
            return (self._crc & 0xFFFFFFFF).to_bytes(4, "big")
        width = 8 if self.algorithm == "crc64nvme" else 4
        return (self._crc ^ self._crc_mask).to_bytes(width, "big")

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


def start(algorithm: str) -> Running:
    return Running(algorithm)


def compute(algorithm: str, data: bytes) -> str:
    """The base64 value S3 puts in ``x-amz-checksum-<algorithm>``."""
    return base64.b64encode(_DIGESTS[algorithm](data)).decode("ascii")


def header_name(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm}"
