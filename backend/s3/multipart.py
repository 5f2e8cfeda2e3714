"""Multipart uploads: create, upload a part, complete, abort, list uploads, list parts."""

from __future__ import annotations

from urllib.parse import quote

from backend import checksums
from backend.errors import InvalidArgument, InvalidRequest
from backend.http.message import Response
from backend.s3 import metadata, xmlio
from backend.s3.common import (
    STORAGE_CLASS,
    b64_of_hex,
    conditions,
    encoder,
    etag,
    int_param,
    verified_algos,
    verified_checksums,
)
from backend.s3.request import S3Request
from backend.store.multipart import split_algorithm
from backend.store.records import MAX_PARTS, NewObject

MAX_UPLOADS = 1000
_OWNER = xmlio.el("ID", "forkstage") + xmlio.el("DisplayName", "forkstage")


# S3's checksum types per algorithm: the first is the default when the client names none.
CHECKSUM_TYPES = {
    "crc32": ("COMPOSITE", "FULL_OBJECT"),
    "crc32c": ("COMPOSITE", "FULL_OBJECT"),
    "crc64nvme": ("FULL_OBJECT",),
    "sha1": ("COMPOSITE",),
    "sha256": ("COMPOSITE",),
}


def _checksum_type(algo: str | None, wanted: str | None) -> str | None:
    if algo is None:
        if wanted is not None:
            raise InvalidRequest("x-amz-checksum-type needs x-amz-checksum-algorithm")
        return None
    allowed = CHECKSUM_TYPES[algo]
    kind = (wanted or allowed[0]).upper()
    if kind not in allowed:
        raise InvalidRequest(
            f"the {kind} checksum type is not supported for {algo.upper()}"
            f" (use {' or '.join(allowed)})"
        )
    return kind


def create_multipart_upload(req: S3Request) -> Response:
    algo = (req.headers.get("x-amz-checksum-algorithm") or "").lower() or None
    if algo is not None and algo not in checksums.ALGORITHMS:
        raise InvalidArgument(f"unsupported x-amz-checksum-algorithm {algo!r}")
    kind = _checksum_type(algo, req.headers.get("x-amz-checksum-type"))
    upload_id = req.store.create_upload(
        req.bucket,
        req.key,
        content_type=req.headers.get("Content-Type") or "binary/octet-stream",
        metadata=metadata.stored(req.headers),
        algo=algo,
        composite=kind == "COMPOSITE",
        limit=req.quota,
    )
    inner = xmlio.el("Bucket", req.bucket) + xmlio.el("Key", req.key)
    inner += xmlio.el("UploadId", upload_id)
    resp = Response.xml(xmlio.document("InitiateMultipartUploadResult", inner))
    if algo and kind:
        resp.headers["x-amz-checksum-algorithm"] = algo.upper()
        resp.headers["x-amz-checksum-type"] = kind
    return resp


def upload_part(req: S3Request) -> Response:
    number = int_param(req.params, "partNumber", 0, 1, MAX_PARTS)
    upload_id = req.params.get("uploadId", "")
    if not number or not upload_id:
        raise InvalidArgument("UploadPart needs partNumber and uploadId")
    sums = verified_checksums(req)
    sums.setdefault("sha256", b64_of_hex(req.payload.sha256))
    obj = NewObject(payload=req.payload, checksums=sums)
    req.store.put_part(req.bucket, req.key, upload_id, number, obj, limit=req.quota)
    headers = {"ETag": etag(req.payload.md5)}
    for algo in verified_algos(req):
        headers[checksums.header_name(algo)] = sums[algo]
    return Response(200, headers)


def complete_multipart_upload(req: S3Request) -> Response:
    upload_id = req.params.get("uploadId", "")
    wanted = xmlio.complete_parts(req.payload.read())
    expected = {}
    for algo in checksums.ALGORITHMS:
        value = req.headers.get(checksums.header_name(algo))
        if value:
            expected[algo] = value.strip()
    kind = req.headers.get("x-amz-checksum-type")
    meta = req.store.complete_upload(
        req.bucket,
        req.key,
        upload_id,
        wanted,
        conditions(req),
        limit=req.quota,
        expected=expected,
        checksum_type=kind.strip().upper() if kind else None,
    )
    inner = xmlio.el("Location", f"/{req.bucket}/{quote(req.key)}")
    inner += xmlio.el("Bucket", req.bucket) + xmlio.el("Key", req.key)
    inner += xmlio.el("ETag", etag(meta.etag))
    for algo, value in meta.checksums.items():
        inner += xmlio.el(f"Checksum{algo.upper()}", value)
    if meta.checksums:
        composite = any("-" in v for v in meta.checksums.values())
        inner += xmlio.el("ChecksumType", "COMPOSITE" if composite else "FULL_OBJECT")
    resp = Response.xml(xmlio.document("CompleteMultipartUploadResult", inner))
    resp.headers["x-amz-version-id"] = meta.version_id
    return resp


def abort_multipart_upload(req: S3Request) -> Response:
    req.store.abort_upload(req.bucket, req.key, req.params.get("uploadId", ""))
    return Response(204)


def list_multipart_uploads(req: S3Request) -> Response:
    p = req.params
    enc = encoder(p)
    max_uploads = min(int_param(p, "max-uploads", MAX_UPLOADS, 0, 2**31 - 1), MAX_UPLOADS)
    prefix, delimiter = p.get("prefix", ""), p.get("delimiter", "")
    key_marker, upload_marker = p.get("key-marker", ""), p.get("upload-id-marker", "")
    found = req.store.list_uploads(
        req.bucket,
        prefix=prefix,
        delimiter=delimiter,
        key_marker=key_marker,
        upload_marker=upload_marker if key_marker else "",
        max_uploads=max_uploads,
    )
    inner = xmlio.el("Bucket", req.bucket) + xmlio.el("KeyMarker", enc(key_marker))
    inner += xmlio.el("UploadIdMarker", upload_marker)
    inner += xmlio.el("NextKeyMarker", enc(found.next_key or ""))
    inner += xmlio.el("NextUploadIdMarker", found.next_upload or "")
    inner += xmlio.el("Prefix", enc(prefix))
    if delimiter:
        inner += xmlio.el("Delimiter", enc(delimiter))
    inner += xmlio.el("MaxUploads", max_uploads) + xmlio.el("IsTruncated", found.truncated)
    if "encoding-type" in p:
        inner += xmlio.el("EncodingType", "url")
    for up in found.uploads:
        inner += (
            "<Upload>"
            + xmlio.el("Key", enc(up.key))
            + xmlio.el("UploadId", up.upload_id)
            + f"<Initiator>{_OWNER}</Initiator><Owner>{_OWNER}</Owner>"
            + xmlio.el("StorageClass", STORAGE_CLASS)
            + xmlio.el("Initiated", xmlio.iso(up.created))
            + _upload_checksum(up.algorithm)
            + "</Upload>"
        )
    inner += "".join(
        f"<CommonPrefixes>{xmlio.el('Prefix', enc(cp))}</CommonPrefixes>" for cp in found.prefixes
    )
    return Response.xml(xmlio.document("ListMultipartUploadsResult", inner))


def _upload_checksum(column: str | None) -> str:
    algo, kind = split_algorithm(column)
    if algo is None or kind is None:
        return ""
    return xmlio.el("ChecksumAlgorithm", algo.upper()) + xmlio.el("ChecksumType", kind)


def list_parts(req: S3Request) -> Response:
    p = req.params
    upload_id = p.get("uploadId", "")
    max_parts = min(int_param(p, "max-parts", MAX_UPLOADS, 0, 2**31 - 1), MAX_UPLOADS)
    marker = int_param(p, "part-number-marker", 0, 0, MAX_PARTS)
    parts, truncated = req.store.list_parts(
        req.bucket, req.key, upload_id, marker=marker, max_parts=max_parts
    )
    inner = xmlio.el("Bucket", req.bucket) + xmlio.el("Key", req.key)
    inner += xmlio.el("UploadId", upload_id) + xmlio.el("PartNumberMarker", marker)
    if parts:
        inner += xmlio.el("NextPartNumberMarker", parts[-1].number)
    inner += xmlio.el("MaxParts", max_parts) + xmlio.el("IsTruncated", truncated)
    inner += f"<Initiator>{_OWNER}</Initiator><Owner>{_OWNER}</Owner>"
    inner += xmlio.el("StorageClass", STORAGE_CLASS)
    for part in parts:
        sums = "".join(
            xmlio.el(f"Checksum{algo.upper()}", value) for algo, value in part.checksums.items()
        )
        inner += (
            "<Part>"
            + xmlio.el("PartNumber", part.number)
            + xmlio.el("LastModified", xmlio.iso(part.created))
            + xmlio.el("ETag", etag(part.etag))
            + xmlio.el("Size", part.size)
            + sums
            + "</Part>"
        )
    return Response.xml(xmlio.document("ListPartsResult", inner))
