"""A full disk: writes are refused (507), yet a lock can be released and space freed via S3."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, _start

from backend.limits import KIB, MIB, Limits

LOCK = "env:/staging/forkstage/terraform.tfstate.tflock"


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (root only): small enough to fill in a moment."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


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
