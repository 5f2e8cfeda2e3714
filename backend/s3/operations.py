"""The S3 operations by name, and the routing that picks one for a request.

Each operation gets an authenticated, authorized ``S3Request`` (body already read, decoded and
checked against its declared digests) and returns a ``Response``; refusals are raised as
``backend.errors`` exceptions and rendered in one place (``respond``). The handler uses
exactly ``route``, ``OPERATIONS`` and ``PAYLOAD_OPS`` from here; the operations themselves live
in ``objects``, ``multipart``, ``buckets`` and ``listing`` beside it.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.errors import MethodNotAllowed, NotImplementedOp
from backend.http.message import Headers, Response
from backend.s3 import buckets, listing, metadata, multipart, objects
from backend.s3.request import S3Request

# Sub-resources we do not serve: asking for them must not fall through to a plain GET/PUT.
_UNSUPPORTED = {
    "acl",
    "analytics",
    "accelerate",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "website",
}


def _bucket_route(method: str, params: dict[str, str]) -> str:
    if method == "GET":
        if "versions" in params:
            return "ListObjectVersions"
        if "location" in params:
            return "GetBucketLocation"
        if "versioning" in params:
            return "GetBucketVersioning"
        if "uploads" in params:
            return "ListMultipartUploads"
        return "ListObjectsV2" if params.get("list-type") == "2" else "ListObjects"
    if method == "HEAD":
        return "HeadBucket"
    if method == "PUT":
        return "PutBucketVersioning" if "versioning" in params else "CreateBucket"
    if method == "DELETE":
        return "DeleteBucket"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    raise MethodNotAllowed()


def route(method: str, bucket: str, key: str, params: dict[str, str], headers: Headers) -> str:
    """The S3 operation name for a request (used by policy, logging and dispatch)."""
    unsupported = _UNSUPPORTED.intersection(params)
    if unsupported:
        raise NotImplementedOp(f"sub-resource ?{sorted(unsupported)[0]} is not supported")
    if not bucket:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise MethodNotAllowed()
    if not key:
        return _bucket_route(method, params)
    metadata.refuse_unsupported(method, key, params, headers)
    if method == "GET":
        return "ListParts" if "uploadId" in params else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        if "x-amz-copy-source" in headers:
            raise NotImplementedOp("CopyObject is not supported")
        if "partNumber" in params or "uploadId" in params:
            return "UploadPart"
        return "PutObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in params else "DeleteObject"
    if method == "POST":
        if "uploads" in params:
            return "CreateMultipartUpload"
        if "uploadId" in params:
            return "CompleteMultipartUpload"
    raise MethodNotAllowed()


OPERATIONS: dict[str, Callable[[S3Request], Response]] = {
    "ListBuckets": buckets.list_buckets,
    "HeadBucket": buckets.head_bucket,
    "CreateBucket": buckets.create_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "PutBucketVersioning": buckets.put_bucket_versioning,
    "DeleteObjects": buckets.delete_objects,
    "ListObjectsV2": listing.list_objects_v2,
    "ListObjects": listing.list_objects,
    "ListObjectVersions": listing.list_object_versions,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "PutObject": objects.put_object,
    "DeleteObject": objects.delete_object,
    "CreateMultipartUpload": multipart.create_multipart_upload,
    "UploadPart": multipart.upload_part,
    "CompleteMultipartUpload": multipart.complete_multipart_upload,
    "AbortMultipartUpload": multipart.abort_multipart_upload,
    "ListMultipartUploads": multipart.list_multipart_uploads,
    "ListParts": multipart.list_parts,
}

# Operations whose body is payload to store (everything else must send a small or empty body).
PAYLOAD_OPS = {"PutObject", "UploadPart"}
