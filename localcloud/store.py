"""One JSON document in a file, shared by processes under an fcntl lock: the local cloud's state.

The stand-in providers run in processes Terraform starts and stops (several at once, each with
gRPC worker threads), and local tools read the same files; so every read holds a shared lock and
every change an exclusive one, on a sibling ``.lock`` file that is never replaced. A change is
written to a temporary file and renamed over the document, so a reader never sees half a file
and a process killed mid-write leaves the previous document.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def write_json_atomic(
    path: Path, doc: Any, *, mode: int = 0o600, fsync: bool = False, indent: int | None = 1
) -> None:
    """``doc`` as ``path`` (sorted keys), via a temporary file renamed over it."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle, indent=indent, sort_keys=True)
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


class JsonStore(Generic[T]):
    """``path`` decoded to a ``T`` for the length of a ``with`` block, under a file lock.

    ``read()`` holds a shared lock; ``change()`` an exclusive one and saves the document when
    the block succeeds. Calls nest within one thread (the inner block gets the outer document),
    but a change nested in a read is refused: it could not be saved.
    """

    def __init__(
        self,
        path: Path,
        *,
        decode: Callable[[Any], T],
        encode: Callable[[T], Any],
        mode: int = 0o600,
        folder_mode: int | None = None,
        fsync: bool = False,
    ) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_suffix(".lock")
        self.decode = decode
        self.encode = encode
        self.mode = mode
        self.folder_mode = folder_mode
        self.fsync = fsync
        self._held = threading.local()

    def load(self) -> T:
        """The document as it is now, to look at: changing it changes nothing on disk."""
        with self.read() as doc:
            return doc

    @contextmanager
    def read(self) -> Iterator[T]:
        with self._locked(write=False) as doc:
            yield doc

    @contextmanager
    def change(self) -> Iterator[T]:
        with self._locked(write=True) as doc:
            yield doc

    @contextmanager
    def _locked(self, *, write: bool) -> Iterator[T]:
        held = getattr(self._held, "doc", None)
        if held is not None:
            if write and not self._held.write:
                raise RuntimeError(f"a change nested in a read of {self.path} would be lost")
            yield held
            return
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        if self.folder_mode is not None:
            folder.chmod(self.folder_mode)
        with open(self.lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX if write else fcntl.LOCK_SH)
            try:
                try:
                    raw = json.loads(self.path.read_text())
                except FileNotFoundError:
                    raw = {}
                doc = self.decode(raw)
                self._held.doc, self._held.write = doc, write
                yield doc
                if write:
                    write_json_atomic(self.path, self.encode(doc), mode=self.mode, fsync=self.fsync)
            finally:
                self._held.doc = None
                fcntl.flock(lock, fcntl.LOCK_UN)
