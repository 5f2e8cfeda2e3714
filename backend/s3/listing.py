"""ListObjects (v1 and v2) and ListObjectVersions.

Entries are shown as the caller's GET would describe them: for an outputs-only credential a
state's size and ETag are those of its redacted view (``common.listed``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from backend.errors import InvalidArgument, NotImplementedOp
from backend.http.message import Response
from backend.s3 import xmlio
from backend.s3.common import MAX_LIST_KEYS, STORAGE_CLASS, encoder, etag, int_param, listed
from backend.s3.request import S3Request
from backend.store.records import Listing, ObjectMeta

RETENTION_HEADER = "x-forkstage-retention"


OWNER = "<Owner>" + xmlio.el("ID", "forkstage") + xmlio.el("DisplayName", "forkstage") + "</Owner>"


def _contents(meta: ObjectMeta, enc: Callable[[str], str], owner: bool) -> str:
    return (
        "<Contents>"
        + xmlio.el("Key", enc(meta.key))
        + xmlio.el("LastModified", xmlio.iso(meta.created))
        + xmlio.el("ETag", etag(meta.etag))
        + xmlio.el("Size", meta.size)
        + (OWNER if owner else "")
        + xmlio.el("StorageClass", STORAGE_CLASS)
        + "</Contents>"
    )


def _fetch_owner(p: dict[str, str]) -> bool:
    value = p.get("fetch-owner")
    if value is None:
        return False
    if value.lower() not in ("true", "false"):
        raise InvalidArgument("fetch-owner must be true or false", ArgumentName="fetch-owner")
    return value.lower() == "true"


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None


def _max_keys(p: dict[str, str]) -> int:
    return min(int_param(p, "max-keys", MAX_LIST_KEYS, 0, 2**31 - 1), MAX_LIST_KEYS)


def list_objects_v2(req: S3Request) -> Response:
    p = req.params
    enc = encoder(p)
    max_keys = _max_keys(p)
    prefix, delimiter = p.get("prefix", ""), p.get("delimiter", "")
    token = p.get("continuation-token")
    after = _untoken(token) if token is not None else p.get("start-after", "")
    found = req.store.list_objects(
        req.bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    if delimiter:
        inner += xmlio.el("Delimiter", enc(delimiter))
    inner += xmlio.el("MaxKeys", max_keys)
    inner += xmlio.el("KeyCount", len(found.objects) + len(found.prefixes))
    inner += xmlio.el("IsTruncated", found.truncated)
    if token is not None:
        inner += xmlio.el("ContinuationToken", token)
    if "start-after" in p:
        inner += xmlio.el("StartAfter", enc(p["start-after"]))
    if found.truncated and found.last is not None:
        inner += xmlio.el("NextContinuationToken", _token(found.last))
    return _listing_result(req, inner, found, enc, owner=_fetch_owner(p))


def _listing_result(
    req: S3Request, inner: str, found: Listing, enc: Callable[[str], str], *, owner: bool
) -> Response:
    """The part ListObjects v1 and v2 answer alike: keys, common prefixes, encoding."""
    if "encoding-type" in req.params:
        inner += xmlio.el("EncodingType", "url")
    inner += "".join(_contents(listed(req, m), enc, owner) for m in found.objects)
    inner += "".join(
        f"<CommonPrefixes>{xmlio.el('Prefix', enc(cp))}</CommonPrefixes>" for cp in found.prefixes
    )
    return Response.xml(xmlio.document("ListBucketResult", inner))


def list_objects(req: S3Request) -> Response:
    p = req.params
    enc = encoder(p)
    max_keys = _max_keys(p)
    prefix, delimiter, marker = p.get("prefix", ""), p.get("delimiter", ""), p.get("marker", "")
    found = req.store.list_objects(
        req.bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    inner += xmlio.el("Marker", enc(marker))
    if delimiter:
        inner += xmlio.el("Delimiter", enc(delimiter))
    inner += xmlio.el("MaxKeys", max_keys) + xmlio.el("IsTruncated", found.truncated)
    if found.truncated and found.last is not None:
        inner += xmlio.el("NextMarker", enc(found.last.rstrip("\U0010ffff")))
    return _listing_result(req, inner, found, enc, owner=True)  # v1 always names the owner


def list_object_versions(req: S3Request) -> Response:
    p = req.params
    enc = encoder(p)
    if p.get("delimiter"):
        raise NotImplementedOp("ListObjectVersions with a delimiter is not supported")
    max_keys = _max_keys(p)
    prefix = p.get("prefix", "")
    key_marker, version_marker = p.get("key-marker", ""), p.get("version-id-marker", "")
    found = req.store.list_versions(
        req.bucket,
        prefix=prefix,
        key_marker=key_marker,
        version_marker=version_marker,
        max_keys=max_keys,
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    inner += xmlio.el("KeyMarker", enc(key_marker)) + xmlio.el("VersionIdMarker", version_marker)
    inner += xmlio.el("MaxKeys", max_keys) + xmlio.el("IsTruncated", found.truncated)
    if found.truncated and found.next_key is not None:
        inner += xmlio.el("NextKeyMarker", enc(found.next_key))
        inner += xmlio.el("NextVersionIdMarker", found.next_version or "")
    if "encoding-type" in p:
        inner += xmlio.el("EncodingType", "url")
    for v in found.versions:
        common = (
            xmlio.el("Key", enc(v.key))
            + xmlio.el("VersionId", v.version_id)
            + xmlio.el("IsLatest", v.is_latest)
            + xmlio.el("LastModified", xmlio.iso(v.created))
        )
        if v.deleted:
            inner += f"<DeleteMarker>{common}</DeleteMarker>"
        else:
            inner += (
                f"<Version>{common}{xmlio.el('ETag', etag(v.etag))}{xmlio.el('Size', v.size)}"
                f"{xmlio.el('StorageClass', STORAGE_CLASS)}</Version>"
            )
    resp = Response.xml(xmlio.document("ListVersionsResult", inner))
    # what retention keeps, for `backend versions` (history.py) to show each version's expiry
    limits = req.store.limits
    resp.headers[RETENTION_HEADER] = (
        f"versions={limits.retain_versions}; days={limits.retain_days:g}"
    )
    return resp
