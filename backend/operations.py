"""One small function per S3 operation, plus the routing that picks it.

Each operation gets an authenticated, authorized ``S3Request`` (body already read, decoded and
checked against its declared digests) and returns a ``Response``; refusals are raised as
``backend.errors`` exceptions and rendered by the server in one place.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from urllib.parse import quote

from backend import checksums, redact, xmlio
from backend.errors import (
    BadDigest,
    IncompleteBody,
    InvalidArgument,
    InvalidDigest,
    InvalidRange,
    InvalidRequest,
    MethodNotAllowed,
    NoSuchBucket,
    NotImplementedOp,
    PreconditionFailed,
)
from backend.policy import Access
from backend.s3types import Headers, Response, S3Request
from backend.store import (
    MAX_PARTS,
    Conditions,
    Listing,
    NewObject,
    ObjectMeta,
    PartInfo,
    validate_bucket_name,
)

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
    "delete",
}
MAX_LIST_KEYS = 1000
STORAGE_CLASS = "STANDARD"


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
        if method == "GET":
            if "versions" in params:
                return "ListObjectVersions"
            if "location" in params:
                return "GetBucketLocation"
            if "versioning" in params:
                return "GetBucketVersioning"
            if "uploads" in params:
                raise NotImplementedOp("ListMultipartUploads is not supported")
            return "ListObjectsV2" if params.get("list-type") == "2" else "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "PUT":
            if "versioning" in params:
                raise NotImplementedOp("versioning is always on for this server")
            return "CreateBucket"
        if method == "DELETE":
            return "DeleteBucket"
        raise MethodNotAllowed()
    if method == "GET":
        if "uploadId" in params:
            raise NotImplementedOp("ListParts is not supported")
        return "GetObject"
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


# -- helpers -----------------------------------------------------------------------------------


def _etag(value: str) -> str:
    return f'"{value}"'


def _b64_sha256(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def _int_param(params: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer", ArgumentName=name) from None
    if value < low or value > high:
        raise InvalidArgument(f"{name} must be between {low} and {high}", ArgumentName=name)
    return value


def _user_metadata(headers: Headers) -> dict[str, str]:
    meta = {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")}
    if sum(len(k) + len(v) for k, v in meta.items()) > 2048:
        raise InvalidArgument("user metadata exceeds 2 KB")
    return meta


def verified_checksums(req: S3Request) -> dict[str, str]:
    """Check every digest the client declared against the body; return the ones to keep."""
    data = req.payload.read()
    declared: dict[str, str] = {}
    trailer_names = {
        t.strip().lower() for t in req.headers.get("x-amz-trailer", "").split(",") if t.strip()
    }
    for algo in checksums.ALGORITHMS:
        name = checksums.header_name(algo)
        value = req.headers.get(name) or req.payload.trailers.get(name)
        if name in trailer_names and name not in req.payload.trailers:
            raise IncompleteBody(f"the declared trailer {name} is missing")
        if value:
            declared[algo] = value.strip()
    for algo, value in declared.items():
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest(f"x-amz-checksum-{algo} is not valid base64") from None
        if checksums.compute(algo, data) != value:
            raise BadDigest(f"the x-amz-checksum-{algo} you specified did not match the body")
    md5_header = req.headers.get("Content-MD5")
    if md5_header is not None:
        try:
            wanted = base64.b64decode(md5_header.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise InvalidDigest() from None
        if len(wanted) != 16:
            raise InvalidDigest()
        if hashlib.md5(data, usedforsecurity=False).digest() != wanted:
            raise BadDigest("the Content-MD5 you specified did not match the body")
    return declared


def _new_object(req: S3Request) -> NewObject:
    sums = verified_checksums(req)
    sha = req.payload.sha256
    sums.pop("sha256", None)  # always derived from the stored sha256
    return NewObject(
        data=req.payload.read(),
        etag=req.payload.md5,
        sha256=sha,
        content_type=req.headers.get("Content-Type") or "binary/octet-stream",
        checksums=sums,
        metadata=_user_metadata(req.headers),
    )


def _conditions(req: S3Request) -> Conditions:
    return Conditions(
        if_none_match=req.headers.get("If-None-Match"), if_match=req.headers.get("If-Match")
    )


def _checksum_headers(meta: ObjectMeta) -> dict[str, str]:
    out = {checksums.header_name(a): v for a, v in meta.checksums.items()}
    out[checksums.header_name("sha256")] = _b64_sha256(meta.sha256)
    out["x-amz-checksum-type"] = "FULL_OBJECT"
    return out


def _object_headers(meta: ObjectMeta) -> dict[str, str]:
    headers = {
        "ETag": _etag(meta.etag),
        "Last-Modified": xmlio.http_date(meta.created),
        "Content-Type": meta.content_type,
        "x-amz-version-id": meta.version_id,
        "Accept-Ranges": "bytes",
    }
    headers.update(meta.metadata)
    if meta.parts:
        headers["x-amz-mp-parts-count"] = str(meta.parts)
    return headers


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) inclusive, None to serve everything; InvalidRange when unsatisfiable.

    Like S3, a Range header that does not parse (or asks for several ranges) is ignored.
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":
            suffix = int(last_s)
            if suffix < 0:
                return None
            if suffix == 0 or size == 0:
                raise _unsatisfiable(size)
            return max(0, size - suffix), size - 1
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first < 0 or (last_s and last < first):
        return None
    if first >= size:
        raise _unsatisfiable(size)
    return first, min(last, size - 1)


def _unsatisfiable(size: int) -> InvalidRange:
    return InvalidRange(headers={"Content-Range": f"bytes */{size}"}, RangeRequested="")


def _read_view(req: S3Request, meta: ObjectMeta, data: bytes | None) -> tuple[ObjectMeta, bytes]:
    """What the caller may see: the object, or its outputs-only redaction."""
    if req.access is not Access.OUTPUTS_ONLY:
        return meta, data if data is not None else b""
    if data is None:
        meta, data = req.store.get(req.bucket, req.key, meta.version_id)
    body = redact.outputs_only(data)
    shown = ObjectMeta(
        bucket=meta.bucket,
        key=meta.key,
        version_id=meta.version_id,
        seq=meta.seq,
        deleted=False,
        size=len(body),
        etag=hashlib.md5(body, usedforsecurity=False).hexdigest(),
        sha256=hashlib.sha256(body).hexdigest(),
        content_type="application/json",
        checksums={},
        metadata={},
        created=meta.created,
        parts=0,
        is_latest=meta.is_latest,
    )
    return shown, body


def _check_read_conditions(req: S3Request, meta: ObjectMeta) -> Response | None:
    if_match = req.headers.get("If-Match")
    if if_match is not None:
        wanted = [t.strip().strip('"') for t in if_match.split(",")]
        if "*" not in wanted and meta.etag not in wanted:
            raise PreconditionFailed(Condition="If-Match")
    if_none = req.headers.get("If-None-Match")
    if if_none is not None:
        tags = [t.strip().strip('"') for t in if_none.split(",")]
        if "*" in tags or meta.etag in tags:
            return Response(304, {"ETag": _etag(meta.etag)})
    return None


# -- object operations -------------------------------------------------------------------------


def get_object(req: S3Request) -> Response:
    return _read_object(req, with_body=True)


def head_object(req: S3Request) -> Response:
    return _read_object(req, with_body=False)


def _read_object(req: S3Request, *, with_body: bool) -> Response:
    version = req.params.get("versionId") or None
    data: bytes | None
    if with_body:
        meta, data = req.store.get(req.bucket, req.key, version)
    else:
        meta, data = req.store.head(req.bucket, req.key, version), None
    meta, body = _read_view(req, meta, data)
    not_modified = _check_read_conditions(req, meta)
    if not_modified is not None:
        return not_modified
    headers = _object_headers(meta)
    span = _parse_range(req.headers.get("Range"), meta.size)
    status = 200
    if span is not None:
        first, last = span
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{meta.size}"
        length = last - first + 1
        whole = length == meta.size
        if with_body:
            body = body[first : last + 1]
    else:
        length, whole = meta.size, True
    if whole and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers.update(_checksum_headers(meta))
    headers["Content-Length"] = str(length)
    return Response(status, headers, body if with_body else b"")


def put_object(req: S3Request) -> Response:
    obj = _new_object(req)
    meta = req.store.put(req.bucket, req.key, obj, _conditions(req))
    headers = {"ETag": _etag(meta.etag), "x-amz-version-id": meta.version_id}
    for algo in meta.checksums:
        headers[checksums.header_name(algo)] = meta.checksums[algo]
    if "sha256" in verified_algos(req):
        headers[checksums.header_name("sha256")] = _b64_sha256(meta.sha256)
    return Response(200, headers)


def verified_algos(req: S3Request) -> set[str]:
    return {
        a
        for a in checksums.ALGORITHMS
        if req.headers.get(checksums.header_name(a))
        or req.payload.trailers.get(checksums.header_name(a))
    }


def delete_object(req: S3Request) -> Response:
    version = req.params.get("versionId") or None
    meta = req.store.delete(req.bucket, req.key, version)
    headers: dict[str, str] = {}
    if meta is not None:
        headers["x-amz-version-id"] = meta.version_id
        if meta.deleted:
            headers["x-amz-delete-marker"] = "true"
    return Response(204, headers)


# -- multipart ---------------------------------------------------------------------------------


def create_multipart_upload(req: S3Request) -> Response:
    algo = (req.headers.get("x-amz-checksum-algorithm") or "").lower() or None
    if algo is not None and algo not in checksums.ALGORITHMS:
        raise InvalidArgument(f"unsupported x-amz-checksum-algorithm {algo!r}")
    upload_id = req.store.create_upload(
        req.bucket,
        req.key,
        content_type=req.headers.get("Content-Type") or "binary/octet-stream",
        metadata=_user_metadata(req.headers),
        algo=algo,
    )
    inner = xmlio.el("Bucket", req.bucket) + xmlio.el("Key", req.key)
    inner += xmlio.el("UploadId", upload_id)
    resp = Response.xml(xmlio.document("InitiateMultipartUploadResult", inner))
    if algo:
        resp.headers["x-amz-checksum-algorithm"] = algo.upper()
    return resp


def upload_part(req: S3Request) -> Response:
    number = _int_param(req.params, "partNumber", 0, 1, MAX_PARTS)
    upload_id = req.params.get("uploadId", "")
    if not number or not upload_id:
        raise InvalidArgument("UploadPart needs partNumber and uploadId")
    sums = verified_checksums(req)
    etag, sha = req.payload.md5, req.payload.sha256
    sums.setdefault("sha256", _b64_sha256(sha))
    req.store.put_part(
        req.bucket,
        req.key,
        upload_id,
        number,
        data=req.payload.read(),
        etag=etag,
        sha256=sha,
        checksums=sums,
    )
    headers = {"ETag": _etag(etag)}
    for algo in verified_algos(req):
        headers[checksums.header_name(algo)] = sums[algo]
    return Response(200, headers)


def _assemble(chunks: list[bytes], infos: list[PartInfo], algo: str | None) -> NewObject:
    data = b"".join(chunks)
    digest = hashlib.md5(b"".join(bytes.fromhex(p.etag) for p in infos), usedforsecurity=False)
    sums: dict[str, str] = {}
    if algo and algo != "sha256":
        sums[algo] = checksums.compute(algo, data)
    return NewObject(
        data=data,
        etag=f"{digest.hexdigest()}-{len(infos)}",
        sha256=hashlib.sha256(data).hexdigest(),
        checksums=sums,
    )


def complete_multipart_upload(req: S3Request) -> Response:
    upload_id = req.params.get("uploadId", "")
    wanted = xmlio.complete_parts(req.payload.read())
    meta = req.store.complete_upload(
        req.bucket, req.key, upload_id, wanted, _conditions(req), _assemble
    )
    inner = xmlio.el("Location", f"/{req.bucket}/{quote(req.key)}")
    inner += xmlio.el("Bucket", req.bucket) + xmlio.el("Key", req.key)
    inner += xmlio.el("ETag", _etag(meta.etag))
    resp = Response.xml(xmlio.document("CompleteMultipartUploadResult", inner))
    resp.headers["x-amz-version-id"] = meta.version_id
    return resp


def abort_multipart_upload(req: S3Request) -> Response:
    req.store.abort_upload(req.bucket, req.key, req.params.get("uploadId", ""))
    return Response(204)


# -- bucket operations -------------------------------------------------------------------------


def list_buckets(req: S3Request) -> Response:
    owner = xmlio.el("ID", "forkstage") + xmlio.el("DisplayName", "forkstage")
    buckets = "".join(
        "<Bucket>" + xmlio.el("Name", name) + xmlio.el("CreationDate", xmlio.iso(ts)) + "</Bucket>"
        for name, ts in req.store.list_buckets()
    )
    inner = f"<Owner>{owner}</Owner><Buckets>{buckets}</Buckets>"
    return Response.xml(xmlio.document("ListAllMyBucketsResult", inner))


def head_bucket(req: S3Request) -> Response:
    _require(req)
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
    _require(req)
    return Response.xml(xmlio.document("LocationConstraint", ""))


def get_bucket_versioning(req: S3Request) -> Response:
    _require(req)
    return Response.xml(xmlio.document("VersioningConfiguration", xmlio.el("Status", "Enabled")))


def _require(req: S3Request) -> None:
    if not req.store.bucket_exists(req.bucket):
        raise NoSuchBucket(BucketName=req.bucket)


def _encoder(params: dict[str, str]) -> Callable[[str], str]:
    kind = params.get("encoding-type")
    if kind is None:
        return lambda s: s
    if kind != "url":
        raise InvalidArgument("encoding-type must be url", ArgumentName="encoding-type")
    return lambda s: quote(s, safe="/")


def _contents(meta: ObjectMeta, enc: Callable[[str], str]) -> str:
    return (
        "<Contents>"
        + xmlio.el("Key", enc(meta.key))
        + xmlio.el("LastModified", xmlio.iso(meta.created))
        + xmlio.el("ETag", _etag(meta.etag))
        + xmlio.el("Size", meta.size)
        + xmlio.el("StorageClass", STORAGE_CLASS)
        + "</Contents>"
    )


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeError):
        raise InvalidArgument(
            "The continuation token provided is incorrect", ArgumentName="continuation-token"
        ) from None


def list_objects_v2(req: S3Request) -> Response:
    p = req.params
    enc = _encoder(p)
    max_keys = min(_int_param(p, "max-keys", MAX_LIST_KEYS, 0, 2**31 - 1), MAX_LIST_KEYS)
    prefix, delimiter = p.get("prefix", ""), p.get("delimiter", "")
    token = p.get("continuation-token")
    after = _untoken(token) if token is not None else p.get("start-after", "")
    listing = req.store.list_objects(
        req.bucket, prefix=prefix, delimiter=delimiter, after=after, max_keys=max_keys
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    if delimiter:
        inner += xmlio.el("Delimiter", enc(delimiter))
    inner += xmlio.el("MaxKeys", max_keys)
    inner += xmlio.el("KeyCount", len(listing.objects) + len(listing.prefixes))
    inner += xmlio.el("IsTruncated", listing.truncated)
    if token is not None:
        inner += xmlio.el("ContinuationToken", token)
    if "start-after" in p:
        inner += xmlio.el("StartAfter", enc(p["start-after"]))
    if listing.truncated and listing.last is not None:
        inner += xmlio.el("NextContinuationToken", _token(listing.last))
    return _listing_result(inner, listing, p, enc)


def _listing_result(
    inner: str, listing: Listing, p: dict[str, str], enc: Callable[[str], str]
) -> Response:
    """The part ListObjects v1 and v2 answer alike: keys, common prefixes, encoding."""
    if "encoding-type" in p:
        inner += xmlio.el("EncodingType", "url")
    inner += "".join(_contents(m, enc) for m in listing.objects)
    inner += "".join(
        f"<CommonPrefixes>{xmlio.el('Prefix', enc(cp))}</CommonPrefixes>" for cp in listing.prefixes
    )
    return Response.xml(xmlio.document("ListBucketResult", inner))


def list_objects(req: S3Request) -> Response:
    p = req.params
    enc = _encoder(p)
    max_keys = min(_int_param(p, "max-keys", MAX_LIST_KEYS, 0, 2**31 - 1), MAX_LIST_KEYS)
    prefix, delimiter, marker = p.get("prefix", ""), p.get("delimiter", ""), p.get("marker", "")
    listing = req.store.list_objects(
        req.bucket, prefix=prefix, delimiter=delimiter, after=marker, max_keys=max_keys
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    inner += xmlio.el("Marker", enc(marker))
    if delimiter:
        inner += xmlio.el("Delimiter", enc(delimiter))
    inner += xmlio.el("MaxKeys", max_keys) + xmlio.el("IsTruncated", listing.truncated)
    if listing.truncated and listing.last is not None:
        inner += xmlio.el("NextMarker", enc(listing.last.rstrip("\U0010ffff")))
    return _listing_result(inner, listing, p, enc)


def list_object_versions(req: S3Request) -> Response:
    p = req.params
    enc = _encoder(p)
    if p.get("delimiter"):
        raise NotImplementedOp("ListObjectVersions with a delimiter is not supported")
    max_keys = min(_int_param(p, "max-keys", MAX_LIST_KEYS, 0, 2**31 - 1), MAX_LIST_KEYS)
    prefix = p.get("prefix", "")
    key_marker, version_marker = p.get("key-marker", ""), p.get("version-id-marker", "")
    listing = req.store.list_versions(
        req.bucket,
        prefix=prefix,
        key_marker=key_marker,
        version_marker=version_marker,
        max_keys=max_keys,
    )
    inner = xmlio.el("Name", req.bucket) + xmlio.el("Prefix", enc(prefix))
    inner += xmlio.el("KeyMarker", enc(key_marker)) + xmlio.el("VersionIdMarker", version_marker)
    inner += xmlio.el("MaxKeys", max_keys) + xmlio.el("IsTruncated", listing.truncated)
    if listing.truncated and listing.next_key is not None:
        inner += xmlio.el("NextKeyMarker", enc(listing.next_key))
        inner += xmlio.el("NextVersionIdMarker", listing.next_version or "")
    if "encoding-type" in p:
        inner += xmlio.el("EncodingType", "url")
    for v in listing.versions:
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
                f"<Version>{common}{xmlio.el('ETag', _etag(v.etag))}{xmlio.el('Size', v.size)}"
                f"{xmlio.el('StorageClass', STORAGE_CLASS)}</Version>"
            )
    return Response.xml(xmlio.document("ListVersionsResult", inner))


OPERATIONS: dict[str, Callable[[S3Request], Response]] = {
    "ListBuckets": list_buckets,
    "HeadBucket": head_bucket,
    "CreateBucket": create_bucket,
    "DeleteBucket": delete_bucket,
    "GetBucketLocation": get_bucket_location,
    "GetBucketVersioning": get_bucket_versioning,
    "ListObjectsV2": list_objects_v2,
    "ListObjects": list_objects,
    "ListObjectVersions": list_object_versions,
    "GetObject": get_object,
    "HeadObject": head_object,
    "PutObject": put_object,
    "DeleteObject": delete_object,
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
}

# Operations whose body is payload to store (everything else must send a small or empty body).
PAYLOAD_OPS = {"PutObject", "UploadPart"}
