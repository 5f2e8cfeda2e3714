"""A full disk: writes are refused (507), yet a lock can be released and space freed via S3.

The reserve counts what SQLite may still write (its log, checkpoints), so on a small disk with a
1 MiB reserve the server's own writes stop while a lock release still has room; an outside
process filling the last byte is met by the emergency file; a first start on a full disk is one
line.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, _start

from backend.limits import KIB, MIB, Limits
from backend.s3 import credentials

LOCK = "env:/staging/forkstage/terraform.tfstate.tflock"


def _unavailable(reason: str) -> None:
    """Skip on a developer's machine; under CI (tests/conftest.py) the skip fails with it."""
    pytest.skip(reason)


@contextlib.contextmanager
def mounted_tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A filesystem of ``size`` at ``mnt`` (root only), small enough to fill in a moment: a
    tmpfs, or where tmpfs cannot be mounted (some containers) an ext4 image on a loop device."""
    if os.geteuid() != 0:
        _unavailable("mounting a small filesystem needs root")
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
    )
    reasons = [f"tmpfs: {mounted.stderr.decode().strip()}"]
    if mounted.returncode != 0:
        image = mnt.parent / f"{mnt.name}.ext4"
        steps = (
            ["truncate", "-s", size.upper(), str(image)],
            ["mkfs.ext4", "-q", "-F", "-m", "0", str(image)],
            ["mount", "-o", "loop", str(image), str(mnt)],
        )
        for step in steps:
            done = subprocess.run(step, capture_output=True)
            if done.returncode != 0:
                reasons.append(f"loop ext4 ({step[0]}): {done.stderr.decode().strip()}")
                _unavailable(f"cannot mount a small filesystem: {'; '.join(reasons)}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "mnt", "64m") as mnt:
        yield mnt


def _fill(path: Path) -> None:
    """Another process's file takes every free byte."""
    block = b"\0" * MIB
    with path.open("wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(block)
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)


def _versions(s3: Any) -> list[tuple[str, str]]:
    listed = s3.list_object_versions(Bucket=BUCKET)
    return [(v["Key"], v["VersionId"]) for v in listed.get("Versions", [])]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    resp = exc.value.response
    return resp["ResponseMetadata"]["HTTPStatusCode"], resp["Error"]["Code"]


def test_full_disk_refuses_writes_but_deletes_free_space(tmpfs: Path) -> None:
    limits = Limits(disk_reserve_bytes=4 * MIB, memory_body_bytes=64 * KIB)
    data = tmpfs / "state"
    for running in _start(data, limits=limits):
        s3, store = running.client(), running.server.store
        assert (data / "reserve.bin").stat().st_size == 2 * MIB  # half the reserve
        s3.put_object(Bucket=BUCKET, Key=LOCK, Body=b'{"ID": "1"}', IfNoneMatch="*")
        big = s3.put_object(Bucket=BUCKET, Key="big", Body=os.urandom(12 * MIB))["VersionId"]
        before = _versions(s3)

        _fill(tmpfs / "filler")
        assert store.free_bytes() < 64 * KIB
        for key, body in (("state", b"{}"), ("large", os.urandom(200 * KIB))):
            with pytest.raises(ClientError) as exc:
                s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            assert _code(exc) == (507, "InsufficientStorage")
        with pytest.raises(ClientError) as exc:
            s3.create_multipart_upload(Bucket=BUCKET, Key="mp")
        assert _code(exc) == (507, "InsufficientStorage")
        assert _versions(s3) == before
        assert not list((data / "tmp").iterdir())

        s3.delete_object(Bucket=BUCKET, Key=LOCK)  # the lock release still works
        assert not (data / "reserve.bin").exists()  # SQLite hit the full disk: reserve given
        with pytest.raises(ClientError) as exc:
            s3.head_object(Bucket=BUCKET, Key=LOCK)
        assert _code(exc)[0] == 404
        s3.delete_object(Bucket=BUCKET, Key="big", VersionId=big)  # frees 12 MiB
        assert store.free_bytes() > 4 * MIB
        assert (data / "reserve.bin").exists()  # taken back once there was room
        s3.put_object(Bucket=BUCKET, Key=LOCK, Body=b'{"ID": "2"}', IfNoneMatch="*")
        assert s3.get_object(Bucket=BUCKET, Key=LOCK)["Body"].read() == b'{"ID": "2"}'
        assert store.sweep().orphans_removed == 0


def _fill_with_own_writes(s3: Any, threads: int = 4) -> int:
    """PUT 96 KiB states from a few threads until every one is refused; how many landed."""
    landed: list[int] = []

    def writer(n: int) -> None:
        count = 0
        for i in range(1000):
            try:
                s3.put_object(Bucket=BUCKET, Key=f"fill/{n}/{i}", Body=os.urandom(96 * KIB))
            except ClientError as exc:
                assert exc.response["Error"]["Code"] == "InsufficientStorage"
                break
            count += 1
        landed.append(count)

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return sum(landed)


def test_a_1_mib_reserve_on_a_small_disk_keeps_lock_release_possible(tmp_path: Path) -> None:
    """8 MiB of tmpfs, 1 MiB reserved: the server's own writes stop with the reserve (and the
    room SQLite's log may still take) intact; locks are released and an upload aborted there,
    and after an outside process took the last byte and the server restarted."""
    limits = Limits(disk_reserve_bytes=MIB)
    with mounted_tmpfs(tmp_path / "mnt", "8m") as mnt:
        data = mnt / "state"
        for running in _start(data, limits=limits):
            assert (data / "reserve.bin").stat().st_size == 512 * KIB  # half the reserve
            stage = running.issue(policy="stage", stage="pr-1")
            s3, pr = running.client(), running.client(stage)
            locks = [f"env:/pr-1/forkstage/terraform.tfstate{n}.tflock" for n in (1, 2)]
            for lock in locks:
                pr.put_object(Bucket=BUCKET, Key=lock, Body=b'{"ID": "1"}', IfNoneMatch="*")
            upload = pr.create_multipart_upload(Bucket=BUCKET, Key="env:/pr-1/mp")["UploadId"]
            landed = _fill_with_own_writes(s3)
            free = running.server.store.free_bytes()
            print(f"{landed} writes of 96 KiB landed; {free} bytes free after")  # with -s
            assert landed > 10
            assert free >= 768 * KIB, free  # the reserve, give or take a commit in flight
            pr.delete_object(Bucket=BUCKET, Key=locks[0])  # a release while the reserve holds
            pr.abort_multipart_upload(Bucket=BUCKET, Key="env:/pr-1/mp", UploadId=upload)
            assert (data / "reserve.bin").exists()  # not needed so far
            _fill(mnt / "filler")  # then another process takes every byte
        for running in _start(data, limits=limits):  # a restart on the full disk
            pr = running.client(credentials.load(data)[1])
            pr.delete_object(Bucket=BUCKET, Key=locks[1])  # the emergency file makes room
            for lock in locks:
                with pytest.raises(ClientError) as exc:
                    pr.head_object(Bucket=BUCKET, Key=lock)
                assert _code(exc)[0] == 404
            with pytest.raises(ClientError) as exc:
                pr.put_object(Bucket=BUCKET, Key=locks[0], Body=b"{}", IfNoneMatch="*")
            assert _code(exc) == (507, "InsufficientStorage")
        # a first start on this full disk: one line, no traceback
        fresh = [sys.executable, "-m", "backend", "serve", "--port", "0", "--disk-reserve", "1MiB"]
        done = subprocess.run(
            [*fresh, "--data", str(mnt / "fresh")], capture_output=True, text=True, timeout=60
        )
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("error: the disk holding") and "reserve" in lines[0]
