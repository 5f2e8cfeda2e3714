"""SigV4 authentication, per-credential policies, outputs-only redaction, the credentials file."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import stat
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, Running, raw_request

from backend.s3 import credentials
from backend.s3.credentials import Credential

STAGING = "env:/staging/forkstage/terraform.tfstate"
PR = "env:/pr-147/forkstage/terraform.tfstate"
STATE = {
    "version": 4,
    "terraform_version": "1.15.5",
    "serial": 7,
    "lineage": "3f1c-lineage",
    "outputs": {
        "project_id": {"value": "proj-1", "type": "string"},
        "db_password": {"value": "hunter2", "type": "string", "sensitive": True},
        "hosts": {"value": ["a", "b"], "type": ["list", "string"]},
    },
    "resources": [
        {
            "mode": "managed",
            "type": "neon_project",
            "name": "p",
            "instances": [{"attributes": {"connection_uri": "postgres://u:hunter2@h/db"}}],
        }
    ],
    "check_results": None,
}


def status(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    r = exc.value.response
    return r["ResponseMetadata"]["HTTPStatusCode"], str(r["Error"]["Code"])


def test_unsigned_wrong_secret_unknown_key_and_expired_are_refused(state_server: Running) -> None:
    ep, admin = state_server.endpoint, state_server.admin
    path = f"/{BUCKET}/env%3A/staging/x"
    wrong = Credential(admin.access_key_id, "not-the-secret", "admin")
    unknown = Credential("FSAUNKNOWN0000000000", admin.secret_access_key, "admin")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=16)
    cases = [
        (None, {}, "AccessDenied"),
        (wrong, {}, "SignatureDoesNotMatch"),
        (unknown, {}, "InvalidAccessKeyId"),
        (admin, {"when": old}, "RequestTimeTooSkewed"),
        (admin, {"when": future}, "RequestTimeTooSkewed"),
    ]
    for cred, extra, code in cases:
        for method in ("PUT", "GET", "DELETE"):
            resp = raw_request(
                ep, method, path, cred, body=b"x" if method == "PUT" else b"", **extra
            )
            assert (resp.status, resp.code) == (403, code), (method, code, resp.body)
    # signed, then tampered with in transit: path, query and a signed header
    signed_for_other_key = raw_request(
        ep, "PUT", path, admin, body=b"x", send_headers={"x-amz-meta-evil": "1"}
    )
    assert signed_for_other_key.status == 403
    assert state_server.client().list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_skew_within_limit_is_accepted(state_server: Running) -> None:
    when = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=14)
    resp = raw_request(
        state_server.endpoint, "PUT", f"/{BUCKET}/ok", state_server.admin, body=b"1", when=when
    )
    assert resp.status == 200


def test_stage_policy(state_server: Running) -> None:
    running = state_server
    admin = running.client()
    admin.put_object(Bucket=BUCKET, Key=STAGING, Body=json.dumps(STATE).encode())
    admin.put_object(Bucket=BUCKET, Key="env:/other/forkstage/terraform.tfstate", Body=b"{}")
    admin.put_object(Bucket=BUCKET, Key="forkstage/terraform.tfstate", Body=b"{}")
    admin.put_object(Bucket=BUCKET, Key=STAGING + ".tflock", Body=b"{}")
    cred = running.issue(policy="stage", stage="pr-147", read_outputs=["staging"])
    s3 = running.client(cred)

    s3.put_object(Bucket=BUCKET, Key=PR, Body=b"{}")
    s3.put_object(Bucket=BUCKET, Key=PR + ".tflock", Body=b"{}", IfNoneMatch="*")
    s3.delete_object(Bucket=BUCKET, Key=PR + ".tflock")
    assert s3.get_object(Bucket=BUCKET, Key=PR)["Body"].read() == b"{}"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="env:/")["Contents"]]
    assert PR in keys and STAGING in keys
    s3.list_object_versions(Bucket=BUCKET, Prefix="env:/pr-147/")
    s3.head_bucket(Bucket=BUCKET)

    denied = [
        lambda: s3.put_object(Bucket=BUCKET, Key=STAGING, Body=b"{}"),
        lambda: s3.delete_object(Bucket=BUCKET, Key=STAGING),
        lambda: s3.put_object(Bucket=BUCKET, Key=STAGING + ".tflock", Body=b"{}"),
        lambda: s3.get_object(Bucket=BUCKET, Key=STAGING + ".tflock"),
        lambda: s3.get_object(Bucket=BUCKET, Key="env:/other/forkstage/terraform.tfstate"),
        lambda: s3.get_object(Bucket=BUCKET, Key="forkstage/terraform.tfstate"),
        lambda: s3.put_object(
            Bucket=BUCKET, Key="env:/pr-1470/forkstage/terraform.tfstate", Body=b""
        ),
        lambda: s3.put_object(Bucket=BUCKET, Key="env:/pr-147", Body=b""),
        lambda: s3.create_multipart_upload(Bucket=BUCKET, Key=STAGING),
        lambda: s3.list_object_versions(Bucket=BUCKET, Prefix="env:/"),
        lambda: s3.list_buckets(),
        lambda: s3.create_bucket(Bucket="mine"),
        lambda: s3.delete_object(
            Bucket=BUCKET,
            Key=PR,
            VersionId=admin.list_object_versions(Bucket=BUCKET, Prefix=PR)["Versions"][0][
                "VersionId"
            ],
        ),
    ]
    for attempt in denied:
        with pytest.raises(ClientError) as exc:
            attempt()
        assert status(exc) == (403, "AccessDenied")
    # a key the stage may not read but that does not exist is simply not there
    with pytest.raises(ClientError) as exc:
        s3.head_object(Bucket=BUCKET, Key="env:/nobody/forkstage/terraform.tfstate")
    assert status(exc)[0] == 404
    # nothing changed for the others
    assert json.loads(admin.get_object(Bucket=BUCKET, Key=STAGING)["Body"].read()) == STATE
    assert len(admin.list_object_versions(Bucket=BUCKET, Prefix=STAGING)["Versions"]) == 2


def test_outputs_only_read_is_a_consistent_redacted_state(state_server: Running) -> None:
    running = state_server
    running.client().put_object(Bucket=BUCKET, Key=STAGING, Body=json.dumps(STATE).encode())
    cred = running.issue(policy="stage", stage="pr-147", read_outputs=["staging"])
    s3 = running.client(cred)
    got = s3.get_object(Bucket=BUCKET, Key=STAGING, ChecksumMode="ENABLED")  # validates checksum
    body = got["Body"].read()
    seen = json.loads(body)
    assert seen == {
        "version": 4,
        "terraform_version": "1.15.5",
        "serial": 7,
        "lineage": "3f1c-lineage",
        "outputs": {
            "project_id": {"value": "proj-1", "type": "string"},
            "hosts": {"value": ["a", "b"], "type": ["list", "string"]},
        },
        "resources": [],
        "check_results": None,
    }
    assert b"hunter2" not in body
    head = s3.head_object(Bucket=BUCKET, Key=STAGING, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(body) == got["ContentLength"]
    assert head["ETag"] == got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
    assert head["ChecksumSHA256"] == got["ChecksumSHA256"]
    ranged = s3.get_object(Bucket=BUCKET, Key=STAGING, Range="bytes=0-5242879")
    assert ranged["Body"].read() == body
    old_version = running.client().list_object_versions(Bucket=BUCKET, Prefix=STAGING)
    vid = old_version["Versions"][0]["VersionId"]
    by_version = s3.get_object(Bucket=BUCKET, Key=STAGING, VersionId=vid)["Body"].read()
    assert b"hunter2" not in by_version
    # an object under the readable workspace that is not a state is not served at all
    running.client().put_object(Bucket=BUCKET, Key="env:/staging/notes.txt", Body=b"secret notes")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=BUCKET, Key="env:/staging/notes.txt")
    assert status(exc) == (403, "AccessDenied")


def test_credentials_file_shape_mode_and_idempotence(tmp_path: Path) -> None:
    data = tmp_path / "state"
    admin = credentials.ensure_admin(data)
    assert credentials.ensure_admin(data) == admin
    pr = credentials.issue(data, policy="stage", stage="pr-147", read_outputs=["staging"])
    assert credentials.issue(data, policy="stage", stage="pr-147", read_outputs=("staging",)) == pr
    other = credentials.issue(data, policy="stage", stage="pr-147")
    assert other.access_key_id != pr.access_key_id
    path = data / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = json.loads(path.read_text())
    assert raw["credentials"][1] == {
        "access_key_id": pr.access_key_id,
        "secret_access_key": pr.secret_access_key,
        "policy": "stage",
        "stage": "pr-147",
        "read_outputs": ["staging"],
    }
    assert credentials.load(data) == [admin, pr, other]
    assert pr.secret_access_key not in repr(pr)
    for bad in (
        {"policy": "root"},
        {"policy": "stage"},
        {"policy": "stage", "stage": "../x"},
        {"policy": "stage", "stage": "pr-1", "read_outputs": ["a/b"]},
        {"policy": "admin", "stage": "pr-1"},
    ):
        with pytest.raises(ValueError):
            credentials.issue(data, **bad)  # type: ignore[arg-type]
    assert len(credentials.load(data)) == 3


def test_server_picks_up_new_credentials_while_running(state_server: Running) -> None:
    cred = state_server.issue(policy="stage", stage="pr-9")
    state_server.client(cred).put_object(
        Bucket=BUCKET, Key="env:/pr-9/forkstage/terraform.tfstate", Body=b"{}"
    )
    # and forgets removed ones
    path = state_server.data_dir / "credentials.json"
    raw = json.loads(path.read_text())
    raw["credentials"] = [c for c in raw["credentials"] if c["access_key_id"] != cred.access_key_id]
    path.write_text(json.dumps(raw) + " ")  # size changes even within one mtime tick
    with pytest.raises(ClientError) as exc:
        state_server.client(cred).get_object(
            Bucket=BUCKET, Key="env:/pr-9/forkstage/terraform.tfstate"
        )
    assert status(exc) == (403, "InvalidAccessKeyId")
