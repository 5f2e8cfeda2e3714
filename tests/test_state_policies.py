"""Issue 20: the pipelines' two state credentials, as ``backend bootstrap`` prints them.

The owner's reaches every workspace; the pull requests' reads the default key and lists
``env:/`` (what ``terraform init`` needs), reads the owner stage's state (whole: S3 cannot grant
a read of outputs only) and writes only preview workspaces and their lock files. R2 tokens have
no key-prefix scope, which the printed text says.
"""

from __future__ import annotations

import fnmatch
import json
from typing import Any

from forkstage.ci.policies import render_policies, state_policies
from tests.backend.test_state_cli import invoke, moto_endpoint  # noqa: F401 (fixture)

KEY = "forkstage/terraform.tfstate"


def allowed(document: dict[str, Any], action: str, key: str) -> bool:
    """Whether ``document`` allows ``action`` on object ``key`` of bucket acme (no conditions)."""
    arn = f"arn:aws:s3:::acme/{key}"
    for statement in document["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if action in actions and any(fnmatch.fnmatchcase(arn, r) for r in resources):
            return True
    return False


def test_the_pr_credential_writes_previews_only_and_reads_the_owner() -> None:
    owner, pr = state_policies(bucket="acme", key=KEY, owner_stage="staging")
    assert owner.document is not None and pr.document is not None
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert allowed(owner.document, action, f"env:/staging/{KEY}")
        assert allowed(pr.document, action, f"env:/pr-147/{KEY}")
        assert allowed(pr.document, action, f"env:/pr-147/{KEY}.tflock")
    assert allowed(pr.document, "s3:GetObject", f"env:/staging/{KEY}")  # the whole state
    assert allowed(pr.document, "s3:GetObject", KEY)  # init reads the default key
    for key in (f"env:/staging/{KEY}", f"env:/prod/{KEY}", KEY, f"env:/staging/{KEY}.tflock"):
        assert not allowed(pr.document, "s3:PutObject", key)
        assert not allowed(pr.document, "s3:DeleteObject", key)
    assert not allowed(pr.document, "s3:GetObject", f"env:/prod/{KEY}")
    (listing,) = [s for s in pr.document["Statement"] if s["Action"] == "s3:ListBucket"]
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["env:/*", KEY]}}


def test_r2_says_a_token_is_scoped_per_bucket_only() -> None:
    text = render_policies(bucket="acme", key=KEY, owner_stage="staging", r2=True)
    assert "R2 API token: Object Read & Write, applied to bucket acme only" in text
    assert "cannot be narrowed to key prefixes" in text
    assert "S3 permissions cannot limit a read to outputs" in text


def test_bootstrap_prints_both_policies(moto_endpoint: str) -> None:  # noqa: F811
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    args = ("bootstrap", "--bucket", "acme-policies", "--endpoint", moto_endpoint)
    text = invoke(*args, env=env)
    assert text.exit_code == 0, text.output
    assert "owner credential (FORKSTAGE_STATE_ACCESS_KEY_ID" in text.output
    assert "pull-request credential (FORKSTAGE_PR_STATE_ACCESS_KEY_ID" in text.output
    assert '"arn:aws:s3:::acme-policies/env:/pr-*/forkstage/terraform.tfstate"' in text.output
    doc = json.loads(invoke(*args, "--json", env=env).output)
    assert len(doc["policies"]) == 2 and doc["steps"][0]["status"] == "exists"
