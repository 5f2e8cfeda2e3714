"""GetObject, HeadObject, PutObject, DeleteObject."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

from backend import checksums
from backend.errors import PreconditionFailed
from backend.http.message import Response
from backend.s3 import metadata, xmlio
from backend.s3.common import (
    b64_of_hex,
    checksum_headers,
    conditions,
    etag,
    object_headers,
    parse_range,
    redacted,
    redacted_view,
    verified_algos,
    verified_checksums,
)
from backend.s3.metadata import RESPONSE_OVERRIDES
from backend.s3.policy import Access
from backend.s3.request import S3Request
from backend.store.records import NewObject, ObjectMeta


def _http_date(value: str | None) -> float | None:
    """An HTTP date as a timestamp; None when absent or unparseable (S3 then ignores it)."""
    if not value:
        return None
    try:
        stamp = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return stamp.timestamp() if stamp.tzinfo is not None else None


def _check_read_conditions(req: S3Request, meta: ObjectMeta) -> Response | None:
    """RFC 9110's order, as S3 applies it: If-Match, else If-Unmodified-Since (412); then
    If-None-Match, else If-Modified-Since (304). Last-Modified counts in whole seconds."""
    modified = int(meta.created)
    if_match = req.headers.get("If-Match")
    if if_match is not None:
        wanted = [t.strip().strip('"') for t in if_match.split(",")]
        if "*" not in wanted and meta.etag not in wanted:
            raise PreconditionFailed(Condition="If-Match")
    else:
        since = _http_date(req.headers.get("If-Unmodified-Since"))
        if since is not None and modified > since:
            raise PreconditionFailed(Condition="If-Unmodified-Since")
    if_none = req.headers.get("If-None-Match")
    if if_none is not None:
        tags = [t.strip().strip('"') for t in if_none.split(",")]
        if "*" not in tags and meta.etag not in tags:
            return None
    else:
        since = _http_date(req.headers.get("If-Modified-Since"))
        if since is None or modified > since:
            return None
    return Response(304, {"ETag": etag(meta.etag), "Last-Modified": xmlio.http_date(meta.created)})


def get_object(req: S3Request) -> Response:
    return _read_object(req, with_body=True)


def head_object(req: S3Request) -> Response:
    return _read_object(req, with_body=False)


def _read_object(req: S3Request, *, with_body: bool) -> Response:
    version = req.params.get("versionId") or None
    outputs_only = req.access is Access.OUTPUTS_ONLY
    meta, inline = req.store.fetch(req.bucket, req.key, version, with_data=with_body)
    shown: bytes | None = None
    if outputs_only and with_body:
        meta, shown = redacted(req, meta, req.store.whole(meta, inline))
    elif outputs_only:
        meta = redacted_view(req, meta)
    not_modified = _check_read_conditions(req, meta)
    if not_modified is not None:
        return not_modified
    headers = object_headers(meta)
    for param, header in RESPONSE_OVERRIDES.items():
        if param in req.params:
            headers[header] = req.params[param]
    span = parse_range(req.headers.get("Range"), meta.size)
    status = 200
    if span is not None:
        first, last = span
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{meta.size}"
    else:
        first, last = 0, meta.size - 1
    length = last - first + 1
    if length == meta.size and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers.update(checksum_headers(meta))
    headers["Content-Length"] = str(length)
    if not with_body or length == 0:
        return Response(status, headers)
    if shown is not None:
        return Response(status, headers, shown[first : last + 1])
    body = req.store.body(meta, inline, first, last)
    if isinstance(body, bytes):
        return Response(status, headers, body)
    return Response(status, headers, stream=body)


def put_object(req: S3Request) -> Response:
    sums = verified_checksums(req)
    sums.pop("sha256", None)  # always derived from the stored sha256
    obj = NewObject(
        payload=req.payload,
        content_type=req.headers.get("Content-Type") or "binary/octet-stream",
        checksums=sums,
        metadata=metadata.stored(req.headers),
    )
    meta = req.store.put(req.bucket, req.key, obj, conditions(req), limit=req.quota)
    headers = {"ETag": etag(meta.etag), "x-amz-version-id": meta.version_id}
    for algo in meta.checksums:
        headers[checksums.header_name(algo)] = meta.checksums[algo]
    if "sha256" in verified_algos(req):
        headers[checksums.header_name("sha256")] = b64_of_hex(meta.sha256)
    return Response(200, headers)


def delete_object(req: S3Request) -> Response:
    version = req.params.get("versionId") or None
    meta = req.store.delete(req.bucket, req.key, version, limit=req.quota)
    headers: dict[str, str] = {}
    if meta is not None:
        headers["x-amz-version-id"] = meta.version_id
        if meta.deleted:
            headers["x-amz-delete-marker"] = "true"
    return Response(204, headers)
