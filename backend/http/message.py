"""An HTTP message as the layers above see it: request headers and the response to send.

``Response.stream`` lets a large object go back out a chunk at a time, so a download never costs
the server its size in memory either.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import overload


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
