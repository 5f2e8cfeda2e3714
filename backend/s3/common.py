"""What the S3 operations share: parameters, digests, headers, ranges, the redacted view."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from urllib.parse import quote

from backend import checksums
from backend.errors import (
    AccessDenied,
    BadDigest,
    IncompleteBody,
    InvalidArgument,
    InvalidDigest,
    InvalidRange,
    InvalidRequest,
    NoSuchBucket,
    S3Error,
)
from backend.s3 import policy, xmlio
from backend.s3.policy import Access
from backend.s3.request import S3Request
from backend.store import redact
from backend.store.records import Conditions, ObjectMeta

MAX_LIST_KEYS = 1000
STORAGE_CLASS = "STANDARD"
_DIGITS = re.compile(r"[0-9]{1,12}")
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_BIG_DIGITS = 18  # a Range number longer than this (without leading zeros) is past any size
_BIG = 10**_BIG_DIGITS


def etag(value: str) -> str:
    return f'"{value}"'


def b64_of_hex(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode("ascii")


def int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    """A numeric query parameter: ASCII digits only (no sign, space, ``_`` or other digits)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw):
        raise InvalidArgument(f"{name} must be a non-negative integer", ArgumentName=name)
    value = int(raw)
    if value < low or value > high:
        raise InvalidArgument(f"{name} must be between {low} and {high}", ArgumentName=name)
    return value


def conditions(req: S3Request) -> Conditions:
    return Conditions(
        if_none_match=req.headers.get("If-None-Match"), if_match=req.headers.get("If-Match")
    )


def verified_checksums(req: S3Request) -> dict[str, str]:
    """Check every digest the client declared against the body; return the ones to keep.

    Digests of a spooled body are computed from its file a chunk at a time, never whole.
    """
    payload = req.payload
    declared: dict[str, str] = {}
    trailer_names = {
        t.strip().lower() for t in req.headers.get("x-amz-trailer", "").split(",") if t.strip()
    }
    for algo in checksums.ALGORITHMS:
        name = checksums.header_name(algo)
        value = req.headers.get(name) or payload.trailers.get(name)
        if name in trailer_names and name not in payload.trailers:
            raise IncompleteBody(f"the declared trailer {name} is missing")
        if value:
            declared[algo] = value.strip()
    for algo, value in declared.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"x-amz-checksum-{algo} is not valid base64") from None
        actual = b64_of_hex(payload.sha256) if algo == "sha256" else payload.checksum(algo)
        if actual != value:
            raise BadDigest(f"the x-amz-checksum-{algo} you specified did not match the body")
    md5_header = req.headers.get("Content-MD5")
    if md5_header is not None:
        try:
            wanted = base64.b64decode(md5_header.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDigest() from None
        if len(wanted) != 16:
            raise InvalidDigest()
        if wanted != bytes.fromhex(payload.md5):
            raise BadDigest("the Content-MD5 you specified did not match the body")
    return declared


def verified_algos(req: S3Request) -> set[str]:
    return {
        a
        for a in checksums.ALGORITHMS
        if req.headers.get(checksums.header_name(a))
        or req.payload.trailers.get(checksums.header_name(a))
    }


def checksum_headers(meta: ObjectMeta) -> dict[str, str]:
    out = {checksums.header_name(a): v for a, v in meta.checksums.items()}
    if any("-" in v for v in out.values()):  # a multipart COMPOSITE checksum: "<b64>-<parts>"
        out["x-amz-checksum-type"] = "COMPOSITE"
        return out
    out[checksums.header_name("sha256")] = b64_of_hex(meta.sha256)
    out["x-amz-checksum-type"] = "FULL_OBJECT"
    return out


def object_headers(meta: ObjectMeta) -> dict[str, str]:
    headers = {
        "ETag": etag(meta.etag),
        "Last-Modified": xmlio.http_date(meta.created),
        "Content-Type": meta.content_type,
        "x-amz-version-id": meta.version_id,
        "Accept-Ranges": "bytes",
    }
    headers.update(meta.metadata)
    if meta.parts:
        headers["x-amz-mp-parts-count"] = str(meta.parts)
    return headers


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, None to serve everything; InvalidRange when unsatisfiable.

    Exactly S3's forms: ``bytes=A-B``, ``bytes=A-``, ``bytes=-N`` with ASCII digits. Anything
    else (several ranges, signs, spaces, ``_``, other digits, A > B) is ignored: a full 200.
    Numbers of any length are read as their value would be, without converting thousands of
    digits: past ``_BIG`` only their order matters (first past the end: 416; last: clamped).
    """
    if not header:
        return None
    found = _RANGE.fullmatch(header.strip())
    if found is None:
        return None
    first_s, last_s = (g.lstrip("0") or ("0" if g else "") for g in found.groups())
    if not first_s and not last_s:
        return None
    if not first_s:
        suffix = _bounded(last_s)
        if suffix == 0 or size == 0:
            raise unsatisfiable(size)
        return max(0, size - suffix), size - 1
    if last_s and (len(last_s), last_s) < (len(first_s), first_s):  # last < first, any length
        return None
    first = _bounded(first_s)
    if first >= size:
        raise unsatisfiable(size)
    last = _bounded(last_s) if last_s else size - 1
    return first, min(last, size - 1)


def _bounded(digits: str) -> int:
    """The value of ASCII digits without leading zeros, or ``_BIG`` for a longer number."""
    return int(digits) if len(digits) <= _BIG_DIGITS else _BIG


def unsatisfiable(size: int) -> InvalidRange:
    return InvalidRange(headers={"Content-Range": f"bytes */{size}"}, RangeRequested="")


def require_bucket(req: S3Request) -> None:
    if not req.store.bucket_exists(req.bucket):
        raise NoSuchBucket(BucketName=req.bucket)


def encoder(params: dict[str, str]) -> Callable[[str], str]:
    kind = params.get("encoding-type")
    if kind is None:
        return lambda s: s
    if kind != "url":
        raise InvalidArgument("encoding-type must be url", ArgumentName="encoding-type")
    return lambda s: quote(s, safe="/")


def redacted(req: S3Request, meta: ObjectMeta, body: bytes) -> tuple[ObjectMeta, bytes]:
    """The outputs-only view of a version: its body and the meta that describes that body."""
    shown = redact.outputs_only(body)
    size, md5, sha = req.store.views.remember(meta.version_id, shown)
    return redacted_meta(meta, size, md5, sha), shown


def redacted_meta(meta: ObjectMeta, size: int, md5: str, sha: str) -> ObjectMeta:
    return ObjectMeta(
        bucket=meta.bucket,
        key=meta.key,
        version_id=meta.version_id,
        seq=meta.seq,
        deleted=False,
        size=size,
        etag=md5,
        sha256=sha,
        content_type="application/json",
        checksums={},
        metadata={},
        created=meta.created,
        parts=0,
        is_latest=meta.is_latest,
    )


def redacted_view(req: S3Request, meta: ObjectMeta) -> ObjectMeta:
    """The meta an outputs-only reader sees (cached per version id: no body read on a hit)."""
    cached = req.store.views.get(meta.version_id)
    if cached is not None:
        return redacted_meta(meta, *cached)
    full = req.store.get(meta.bucket, meta.key, meta.version_id)[1]
    return redacted(req, meta, full)[0]


def listed(req: S3Request, meta: ObjectMeta) -> ObjectMeta:
    """A listing entry as this credential's GET of it would describe it."""
    if req.cred is None:
        return meta
    try:
        access = policy.decide(req.cred, "GetObject", key=meta.key)
    except AccessDenied:
        return meta  # not readable at all: the listing shows what any listing shows
    if access is not Access.OUTPUTS_ONLY:
        return meta
    try:
        return redacted_view(req, meta)
    except S3Error:
        return meta  # not a Terraform state (its GET is refused) or gone meanwhile
