"""ListBuckets, HeadBucket, CreateBucket, DeleteBucket, GetBucketLocation, GetBucketVersioning."""

from __future__ import annotations

from backend.http.message import Response
from backend.s3 import xmlio
from backend.s3.common import require_bucket
from backend.s3.request import S3Request
from backend.store.records import validate_bucket_name


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
