"""Prepare a real S3 (or Cloudflare R2) bucket to hold Terraform state safely.

A state bucket needs versioning (history and rollback), encryption at rest, no public access
and TLS-only access. Each step is idempotent and reported; R2 lacks some of these APIs, and the
steps it cannot take are skipped and said so rather than silently dropped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError


@dataclass(frozen=True)
class Step:
    name: str
    status: str  # "done", "exists" or "skipped"
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"step": self.name, "status": self.status, "detail": self.detail}


def _tls_only_policy(bucket: str) -> str:
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": "s3:*",
                    "Resource": [arn, f"{arn}/*"],
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )


def _exists(s3: Any, bucket: str) -> bool:
    """True if we own it; a bucket someone else owns (403) is an error the caller reports."""
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            return False
        raise
    return True


def bootstrap(s3: Any, bucket: str, *, region: str, r2: bool) -> list[Step]:
    steps: list[Step] = []
    if _exists(s3, bucket):
        steps.append(Step("create bucket", "exists", bucket))
    else:
        try:
            if region == "us-east-1" or r2:
                s3.create_bucket(Bucket=bucket)
            else:
                s3.create_bucket(
                    Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": region}
                )
            steps.append(Step("create bucket", "done", bucket))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                raise
            steps.append(Step("create bucket", "exists", bucket))
    if r2:
        steps.append(Step("versioning", "skipped", "R2 has no object versioning: no state history"))
        steps.append(Step("encryption", "skipped", "R2 always encrypts objects at rest"))
        steps.append(
            Step("public access block", "skipped", "R2 buckets are private unless made public")
        )
        steps.append(Step("TLS-only policy", "skipped", "R2 accepts HTTPS only"))
        return steps
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    steps.append(Step("versioning", "done", "Enabled"))
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    steps.append(Step("encryption", "done", "AES256 by default"))
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    steps.append(Step("public access block", "done", "all four settings on"))
    s3.put_bucket_policy(Bucket=bucket, Policy=_tls_only_policy(bucket))
    steps.append(Step("TLS-only policy", "done", "deny aws:SecureTransport=false"))
    return steps
