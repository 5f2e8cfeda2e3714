"""The two state credentials the rendered pipelines use, as policies ``backend bootstrap`` prints.

- owner (``FORKSTAGE_STATE_*``, only on the main branch and in the prune): every workspace.
- pull request (``FORKSTAGE_PR_STATE_*``, preview jobs): its own workspaces read/write, the
  owner stage's state read-only, plus what ``terraform init`` needs (listing ``env:/`` and
  reading the default key).

S3 permissions cannot limit a read to a state's outputs: a credential that may read staging's
outputs reads staging's whole state (only the embedded server redacts). R2 API tokens are scoped
per bucket (Object Read & Write or Object Read only, optionally to listed buckets), with no key
prefix: on R2 a PR token that can write its preview's state can write every state in the bucket.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StatePolicy:
    """One credential: who uses it and the IAM policy document (S3) or token scope (R2)."""

    name: str
    used_by: str
    document: dict[str, Any] | None  # an IAM policy (S3); None on R2
    r2_scope: str

    def render(self, *, r2: bool) -> str:
        head = f"{self.name} ({self.used_by}):"
        if r2:
            return f"{head}\n  R2 API token: {self.r2_scope}"
        return f"{head}\n{json.dumps(self.document, indent=2)}"


def _arn(bucket: str, key: str = "") -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key else "")


def state_policies(
    *, bucket: str, key: str, owner_stage: str, stage_prefix: str = "pr-"
) -> tuple[StatePolicy, StatePolicy]:
    """The owner's and the pull requests' policies for ``bucket`` (state key ``key``).

    Terraform's S3 backend keeps workspace ``w`` at ``env:/w/<key>`` and, with
    ``use_lockfile``, its lock at ``<that>.tflock``; the default workspace at ``<key>``.
    """
    owner = StatePolicy(
        name="owner credential (FORKSTAGE_STATE_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)",
        used_by=f"main-branch deploy of {owner_stage} and the nightly prune",
        document={
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": _arn(bucket)},
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": _arn(bucket, "*"),
                },
            ],
        },
        r2_scope=f"Object Read & Write, applied to bucket {bucket} only",
    )
    previews = f"env:/{stage_prefix}*/{key}"
    pr = StatePolicy(
        name="pull-request credential (FORKSTAGE_PR_STATE_ACCESS_KEY_ID / _SECRET_ACCESS_KEY)",
        used_by="preview deploy and destroy jobs",
        document={
            "Version": "2012-10-17",
            "Statement": [
                {
                    # terraform init lists the workspaces (prefix env:/)
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": _arn(bucket),
                    "Condition": {"StringLike": {"s3:prefix": ["env:/*", key]}},
                },
                {
                    # the default key (init) and the owner's whole state (its outputs: S3
                    # cannot grant less than the object)
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": [_arn(bucket, key), _arn(bucket, f"env:/{owner_stage}/{key}")],
                },
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                    "Resource": [_arn(bucket, previews), _arn(bucket, f"{previews}.tflock")],
                },
            ],
        },
        r2_scope=(
            f"Object Read & Write, applied to bucket {bucket} only. R2 tokens cannot be narrowed "
            "to key prefixes, so this token can also read and overwrite every state in the "
            f"bucket, {owner_stage}'s included; use R2 for previews only where every "
            "pull-request author may hold the owner's access, or use S3 or the embedded server"
        ),
    )
    return owner, pr


def render_policies(
    *, bucket: str, key: str, owner_stage: str, stage_prefix: str = "pr-", r2: bool
) -> str:
    """Both credentials, for ``forkstage backend bootstrap`` to print."""
    owner, pr = state_policies(
        bucket=bucket, key=key, owner_stage=owner_stage, stage_prefix=stage_prefix
    )
    note = (
        "A credential that may read a state's outputs reads the whole state (S3 permissions "
        "cannot limit a read to outputs; only the embedded server redacts)."
    )
    return "\n\n".join([owner.render(r2=r2), pr.render(r2=r2), note]) + "\n"
