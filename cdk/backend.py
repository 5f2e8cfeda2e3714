"""The S3 backend block and the identical config for cross-stage remote-state reads.

Credentials are never part of either: Terraform's AWS SDK reads them from the environment, so
nothing secret can land in cdk.tf.json.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from cdk.core import S3Backend, TerraformStack
from cdk.settings import BackendSettings


def needs_skip_checksum(backend: BackendSettings) -> bool:
    """Stores that are neither AWS nor the embedded server (R2, MinIO, ...) get
    ``skip_s3_checksum``: R2 lists SHA-256 checksums only as COMPOSITE and community R2 setups
    report failed writes without it (hashicorp/terraform #33847)."""
    if backend.embedded or not backend.endpoint:
        return False
    host = (urllib.parse.urlsplit(backend.endpoint).hostname or "").lower()
    return not (host == "amazonaws.com" or host.endswith(".amazonaws.com"))


def s3_config(backend: BackendSettings) -> dict[str, Any]:
    """Keyword arguments shared by ``S3Backend`` and ``DataTerraformRemoteStateS3``."""
    config: dict[str, Any] = {
        "bucket": backend.bucket,
        "key": backend.key,
        "region": backend.region,
    }
    if backend.endpoint:
        config.update(
            endpoints={"s3": backend.endpoint},
            use_path_style=True,
            skip_credentials_validation=True,
            skip_requesting_account_id=True,
            skip_region_validation=True,
            skip_metadata_api_check=True,
        )
    if needs_skip_checksum(backend):
        config["skip_s3_checksum"] = True
    return config


def add_s3_backend(stack: TerraformStack, backend: BackendSettings) -> S3Backend:
    """Declare the stack's state backend with S3-native locking (``use_lockfile``)."""
    block = S3Backend(stack, **s3_config(backend))
    # cdktf 0.21's S3Backend has no use_lockfile field; Terraform >= 1.10 understands it.
    stack.add_override("terraform.backend.s3.use_lockfile", True)
    return block
