"""ListBuckets, HeadBucket, CreateBucket, DeleteBucket, GetBucketLocation, Get/PutBucketVersioning
and DeleteObjects (a bucket-level POST, each key checked against the caller's policy)."""

from __future__ import annotations

from backend import checksums
from backend.errors import AccessDenied, InvalidRequest, NotImplementedOp, S3Error
from backend.http import wire
from backend.http.message import Response
from backend.s3 import policy, xmlio
from backend.s3.common import require_bucket, verified_checksums
from backend.s3.request import S3Request
from backend.store.records import ObjectMeta, validate_bucket_name


def list_buckets(req: S3Request) -> Response:
    owner = xmlio.el("ID", "forkstage") + xmlio.el("DisplayName", "forkstage")
    buckets = "".join(
        "<Bucket>" + xmlio.el("Name", name) + xmlio.el("CreationDate", xmlio.iso(ts)) + "</Bucket>"
        for name, ts in req.store.list_buckets()
    )
    inner = f"<Owner>{owner}</Owner><Buckets>{buckets}</Buckets>"
    return Response.xml(xmlio.document("ListAllMyBucketsResult", inner))


def head_bucket(req: S3Request) -> Response:
    require_bucket(req)
    return Response(200, {"x-amz-bucket-region": "us-east-1"})


def create_bucket(req: S3Request) -> Response:
    validate_bucket_name(req.bucket)
    xmlio.check_well_formed(req.payload.read())
    req.store.create_bucket(req.bucket)
    return Response(200, {"Location": f"/{req.bucket}"})


def delete_bucket(req: S3Request) -> Response:
    req.store.delete_bucket(req.bucket)
    return Response(204)


def get_bucket_location(req: S3Request) -> Response:
    require_bucket(req)
    return Response.xml(xmlio.document("LocationConstraint", ""))


def get_bucket_versioning(req: S3Request) -> Response:
    require_bucket(req)
    return Response.xml(xmlio.document("VersioningConfiguration", xmlio.el("Status", "Enabled")))


def put_bucket_versioning(req: S3Request) -> Response:
    """Versioning is always on: ``Enabled`` is a no-op, anything else is refused."""
    require_bucket(req)
    status, mfa = xmlio.versioning_status(req.payload.read())
    if mfa is not None and mfa != "Disabled":
        raise NotImplementedOp("MFA delete is not supported")
    if status != "Enabled":
        raise NotImplementedOp(
            f"versioning is always Enabled on this server; Status {status or '(none)'} is not"
            " supported (Suspended would stop keeping state history)"
        )
    return Response(200)


def delete_objects(req: S3Request) -> Response:
    """Up to 1,000 deletes in one request and one transaction; refusals are per key."""
    require_bucket(req)
    has_sum = any(req.headers.get(checksums.header_name(a)) for a in checksums.ALGORITHMS)
    if req.headers.get("Content-MD5") is None and not has_sum:
        raise InvalidRequest(
            "Missing required header for this request: Content-MD5 (or an x-amz-checksum-*)"
        )
    verified_checksums(req)
    items, quiet = xmlio.delete_request(req.payload.read())
    allowed: list[tuple[str, str | None]] = []
    refused: dict[int, S3Error] = {}
    for i, (key, version) in enumerate(items):
        try:
            wire.check_key(key)
            if req.cred is not None:
                policy.decide(req.cred, "DeleteObject", key=key, version_delete=bool(version))
        except S3Error as exc:
            refused[i] = exc
            continue
        allowed.append((key, version))
    done = iter(req.store.delete_many(req.bucket, allowed, limit=req.quota) if allowed else [])
    inner = ""
    for i, (key, version) in enumerate(items):
        result = refused.get(i) or next(done)
        if isinstance(result, S3Error):
            inner += _delete_error(key, version, result)
        elif not quiet:
            inner += _deleted(key, version, result)
    return Response.xml(xmlio.document("DeleteResult", inner))


def _deleted(key: str, version: str | None, meta: ObjectMeta | None) -> str:
    out = xmlio.el("Key", key)
    if version:
        out += xmlio.el("VersionId", version)
    if meta is not None and meta.deleted:
        out += xmlio.el("DeleteMarker", True) + xmlio.el("DeleteMarkerVersionId", meta.version_id)
    return f"<Deleted>{out}</Deleted>"


def _delete_error(key: str, version: str | None, err: S3Error) -> str:
    out = xmlio.el("Key", key)
    if version:
        out += xmlio.el("VersionId", version)
    message = "Access Denied" if isinstance(err, AccessDenied) else err.message
    return f"<Error>{out}{xmlio.el('Code', err.code)}{xmlio.el('Message', message)}</Error>"
