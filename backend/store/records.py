"""The store's value types: what a stored version looks like, what a writer hands in.

Kept apart from the storage code so the operations, the listings and the tests can name these
without pulling in SQLite plumbing.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from backend.errors import InvalidArgument, InvalidBucketName, NoSuchKey, PreconditionFailed
from backend.payload import Payload

MIN_PART_BYTES = 5 * 1024 * 1024
MAX_PARTS = 10000
_BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_LIKE = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")
# S3's reserved prefixes and suffixes (access points, Object Lambda, directory/table buckets)
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
VERSION_ID = re.compile(r"[0-9a-f]{24}")  # new_version_id(): 14 hex of time, 10 random

# The columns every version query selects, in ``meta_from_row`` order (``file`` last).
VCOLS = (
    "v.seq, v.bucket, v.key, v.version_id, v.deleted, v.size, v.etag, v.sha256, "
    "v.content_type, v.checksums, v.metadata, v.created, v.parts, v.file"
)
NCOLS = 14  # len(VCOLS)


@dataclass(frozen=True)
class ObjectMeta:
    bucket: str
    key: str
    version_id: str
    seq: int
    deleted: bool
    size: int
    etag: str
    sha256: str
    content_type: str
    checksums: dict[str, str]
    metadata: dict[str, str]
    created: float
    parts: int
    is_latest: bool = True
    file: str | None = None  # relative path under objects/ when the body is file-backed


@dataclass(frozen=True)
class NewObject:
    """What a writer hands the store: the payload and its already-verified digests."""

    payload: Payload
    content_type: str = "binary/octet-stream"
    checksums: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Conditions:
    if_none_match: str | None = None
    if_match: str | None = None


@dataclass(frozen=True)
class Listing:
    objects: list[ObjectMeta]
    prefixes: list[str]
    truncated: bool
    last: str | None


@dataclass(frozen=True)
class VersionListing:
    versions: list[ObjectMeta]
    truncated: bool
    next_key: str | None
    next_version: str | None


@dataclass(frozen=True)
class PartInfo:
    number: int
    etag: str
    size: int
    checksums: dict[str, str]
    created: float = 0.0


@dataclass(frozen=True)
class UploadInfo:
    upload_id: str
    bucket: str
    key: str
    created: float
    algorithm: str | None


@dataclass(frozen=True)
class UploadListing:
    uploads: list[UploadInfo]
    prefixes: list[str]
    truncated: bool
    next_key: str | None
    next_upload: str | None


def meta_from_row(row: tuple[Any, ...], is_latest: bool = True) -> ObjectMeta:
    return ObjectMeta(
        seq=row[0],
        bucket=row[1],
        key=row[2],
        version_id=row[3],
        deleted=bool(row[4]),
        size=row[5],
        etag=row[6],
        sha256=row[7],
        content_type=row[8],
        checksums=json.loads(row[9]),
        metadata=json.loads(row[10]),
        created=row[11],
        parts=row[12],
        is_latest=is_latest,
        file=row[13],
    )


def new_version_id() -> str:
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(5)}"


def validate_bucket_name(name: str) -> str:
    """S3's general-purpose bucket naming rules (3-63 of a-z 0-9 . -, no IP address, no empty
    or hyphen-edged label between dots, none of the reserved prefixes and suffixes)."""
    if (
        not _BUCKET_RE.fullmatch(name)
        or ".." in name
        or ".-" in name
        or "-." in name
        or _IP_LIKE.fullmatch(name)
        or name.startswith(_RESERVED_PREFIXES)
        or name.endswith(_RESERVED_SUFFIXES)
    ):
        raise InvalidBucketName(BucketName=name)
    return name


def check_conditions(current: ObjectMeta | None, cond: Conditions, key: str) -> None:
    """If-None-Match: * (Terraform's lock) and If-Match, decided inside the writing transaction."""
    live = current is not None and not current.deleted
    if cond.if_none_match is not None:
        if cond.if_none_match.strip() != "*":
            raise InvalidArgument("If-None-Match on writes supports only '*'")
        if live:
            raise PreconditionFailed(Condition="If-None-Match")
    if cond.if_match is not None:
        if not live or current is None:
            raise NoSuchKey(Key=key)
        wanted = [t.strip().strip('"') for t in cond.if_match.split(",")]
        if "*" not in wanted and current.etag not in wanted:
            raise PreconditionFailed(Condition="If-Match")
