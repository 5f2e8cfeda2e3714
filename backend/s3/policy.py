"""Who may do what: the per-credential policies, decided by operation and key prefix.

``admin`` may do everything. A ``stage`` credential owns the keys of its Terraform workspace
(``env:/<stage>/``), may list keys (Terraform's workspace discovery lists ``env:/``), and may read
the *outputs* of the workspaces named in ``read_outputs`` — served as a redacted state.
"""

from __future__ import annotations

import enum

from backend.errors import AccessDenied
from backend.s3.credentials import Credential

WORKSPACE_PREFIX = "env:/"
LOCK_SUFFIX = ".tflock"

# Operations any stage credential may run on a bucket it names.
# (DeleteObjects is then decided key by key as DeleteObject, in ``buckets.delete_objects``.)
_STAGE_BUCKET_OPS = {
    "HeadBucket",
    "ListObjectsV2",
    "ListObjects",
    "GetBucketLocation",
    "DeleteObjects",
}
_OBJECT_READS = {"GetObject", "HeadObject"}
_OBJECT_WRITES = {
    "PutObject",
    "DeleteObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "AbortMultipartUpload",
    "ListParts",  # not a read: another stage's unfinished uploads are not outputs
}
# Bucket-level listings a stage may run only under its own workspace prefix.
_OWN_PREFIX_LISTINGS = {"ListObjectVersions", "ListMultipartUploads"}


class Access(enum.Enum):
    FULL = "full"
    OUTPUTS_ONLY = "outputs-only"


def workspace_prefix(stage: str) -> str:
    return f"{WORKSPACE_PREFIX}{stage}/"


def workspace_of(key: str) -> str | None:
    """The workspace a key belongs to, or None for keys outside ``env:/<ws>/``."""
    if not key.startswith(WORKSPACE_PREFIX):
        return None
    rest = key[len(WORKSPACE_PREFIX) :]
    name, sep, tail = rest.partition("/")
    return name if sep and name and tail else None


def decide(
    cred: Credential,
    op: str,
    *,
    key: str | None = None,
    prefix: str = "",
    version_delete: bool = False,
) -> Access:
    """Full access, outputs-only access, or AccessDenied."""
    if cred.policy == "admin":
        return Access.FULL
    if cred.policy != "stage" or not cred.stage:
        raise AccessDenied()
    own = workspace_prefix(cred.stage)
    if op in _STAGE_BUCKET_OPS:
        return Access.FULL
    if op in _OWN_PREFIX_LISTINGS:
        if prefix.startswith(own):
            return Access.FULL
        raise AccessDenied(f"stage {cred.stage} may run {op} only with a prefix under {own}")
    if key is None:
        raise AccessDenied(f"stage {cred.stage} may not run {op}")
    if key.startswith(own) and workspace_of(key) == cred.stage:
        if version_delete:
            raise AccessDenied("only admin may delete object versions permanently")
        if op in _OBJECT_READS or op in _OBJECT_WRITES:
            return Access.FULL
        raise AccessDenied(f"stage {cred.stage} may not run {op}")
    other = workspace_of(key)
    if (
        op in _OBJECT_READS
        and other is not None
        and other in cred.read_outputs
        and not key.endswith(LOCK_SUFFIX)
    ):
        return Access.OUTPUTS_ONLY
    raise AccessDenied(f"stage {cred.stage} may not access this key")
