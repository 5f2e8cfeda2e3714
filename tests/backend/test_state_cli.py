"""``forkstage backend ...`` through click's CliRunner (and serve as a real child process)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner
from conftest import BUCKET, Running, free_port

from backend import credentials
from backend.cli import backend

KEY = "env:/staging/forkstage/terraform.tfstate"
NO_AWS_ENV = {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None, "AWS_SESSION_TOKEN": None}


def invoke(*args: str, env: dict[str, str | None] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(backend, list(args), env={**NO_AWS_ENV, **(env or {})})


def test_credentials_command(tmp_path: Path) -> None:
    data = str(tmp_path / "state")
    first = invoke(
        "credentials",
        "--policy",
        "stage",
        "--stage",
        "pr-147",
        "--read-outputs",
        "staging",
        "--data",
        data,
        "--json",
    )
    assert first.exit_code == 0, first.output
    cred = json.loads(first.output)
    assert set(cred) == {"access_key_id", "secret_access_key", "policy", "stage", "read_outputs"}
    assert (cred["policy"], cred["stage"], cred["read_outputs"]) == ("stage", "pr-147", ["staging"])
    again = invoke(
        "credentials",
        "--policy",
        "stage",
        "--stage",
        "pr-147",
        "--read-outputs",
        "staging",
        "--data",
        data,
    )
    assert again.exit_code == 0
    assert again.output == (
        f"AWS_ACCESS_KEY_ID={cred['access_key_id']}\n"
        f"AWS_SECRET_ACCESS_KEY={cred['secret_access_key']}\n"
    )
    admin = invoke("credentials", "--policy", "admin", "--data", data, "--json")
    assert json.loads(admin.output)["policy"] == "admin"
    bad = invoke("credentials", "--policy", "stage", "--data", data)
    assert bad.exit_code == 2 and "needs --stage" in bad.output
    bad = invoke("credentials", "--policy", "stage", "--stage", "a/b", "--data", data)
    assert bad.exit_code == 2 and "invalid stage name" in bad.output
    assert len(credentials.load(Path(data))) == 2


def _states(running: Running) -> list[str]:
    s3 = running.client()
    ids = []
    for serial in (1, 2, 3):
        body = json.dumps({"version": 4, "serial": serial, "lineage": f"L{serial}", "outputs": {}})
        ids.append(s3.put_object(Bucket=BUCKET, Key=KEY, Body=body.encode())["VersionId"])
    return ids


def test_versions_and_rollback(state_server: Running) -> None:
    ids = _states(state_server)
    common = ["--endpoint", state_server.endpoint, "--data", str(state_server.data_dir)]
    listed = invoke("versions", "--stage", "staging", *common, "--json")
    assert listed.exit_code == 0, listed.output
    versions = json.loads(listed.output)["versions"]
    assert [v["version_id"] for v in versions] == ids[::-1]
    assert [v["serial"] for v in versions] == [3, 2, 1]
    assert [v["latest"] for v in versions] == [True, False, False]
    table = invoke("versions", "--stage", "staging", *common)
    assert table.output.splitlines()[0].split()[:2] == ["VERSION", "ID"]
    assert ids[0] in table.output

    s3 = state_server.client()
    s3.put_object(Bucket=BUCKET, Key=KEY + ".tflock", Body=b'{"ID": "x"}')
    locked = invoke("rollback", "--stage", "staging", "--version", ids[0], *common)
    assert locked.exit_code == 3 and "locked" in locked.output
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())["serial"] == 3
    s3.delete_object(Bucket=BUCKET, Key=KEY + ".tflock")

    missing = invoke("rollback", "--stage", "staging", "--version", "nope", *common)
    assert missing.exit_code == 2 and "no version" in missing.output

    done = invoke("rollback", "--stage", "staging", "--version", ids[0], *common, "--json")
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    restored = json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    assert restored["lineage"] == "L1" and restored["serial"] == 4 == result["serial"]
    assert result["version_id"] == s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    # the rollback's own lock is gone again
    s3.put_object(Bucket=BUCKET, Key=KEY + ".tflock", Body=b"{}", IfNoneMatch="*")


def test_versions_with_env_credentials_and_no_server(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    out = invoke(
        "versions",
        "--stage",
        "staging",
        "--endpoint",
        unreachable,
        env={"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"},
    )
    assert out.exit_code == 1 and "cannot reach" in out.output
    none = invoke("versions", "--stage", "staging", "--data", str(tmp_path / "empty"))
    assert none.exit_code == 2 and "no credentials" in none.output


def test_serve_prints_endpoint_logs_requests_and_stops(tmp_path: Path) -> None:
    data = tmp_path / "state"
    port = free_port()
    proc = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "forkstage"),
            "backend",
            "serve",
            "--port",
            str(port),
            "--data",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        second = proc.stdout.readline()
        assert first == (
            f"forkstage state server listening on http://127.0.0.1:{port} (bucket {BUCKET})\n"
        )
        assert second == f"credentials file: {data / 'credentials.json'}\n"
        admin = credentials.load(data)[0]
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=admin.access_key_id,
            aws_secret_access_key=admin.secret_access_key,
            region_name="us-east-1",
        )
        s3.put_object(Bucket=BUCKET, Key="env:/staging/x", Body=b"1")
        busy = invoke("serve", "--port", "0", "--data", str(data))
        assert busy.exit_code == 3 and "already using" in busy.output
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "PUT /forkstage-state/env:/staging/x 200" in err
    assert "admin" in err
    assert admin.secret_access_key not in err + out and admin.access_key_id not in err + out
    assert "AWS4-HMAC-SHA256" not in err


def test_serve_rejects_bad_options(tmp_path: Path) -> None:
    half = invoke("serve", "--tls-cert", __file__, "--data", str(tmp_path))
    assert half.exit_code == 2 and "--tls-key" in half.output
    assert invoke("serve", "--retain", "0", "--data", str(tmp_path)).exit_code == 2


@pytest.fixture
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bootstrap_against_moto(moto_endpoint: str) -> None:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    first = invoke(
        "bootstrap", "--bucket", "acme-tfstate", "--endpoint", moto_endpoint, "--json", env=env
    )
    assert first.exit_code == 0, first.output
    steps = json.loads(first.output)["steps"]
    assert [(s["step"], s["status"]) for s in steps] == [
        ("create bucket", "done"),
        ("versioning", "done"),
        ("encryption", "done"),
        ("public access block", "done"),
        ("TLS-only policy", "done"),
    ]
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    assert s3.get_bucket_versioning(Bucket="acme-tfstate")["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket="acme-tfstate")["ServerSideEncryptionConfiguration"]
    assert rules["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket="acme-tfstate")["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    policy = json.loads(s3.get_bucket_policy(Bucket="acme-tfstate")["Policy"])
    assert policy["Statement"][0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    again = invoke("bootstrap", "--bucket", "acme-tfstate", "--endpoint", moto_endpoint, env=env)
    assert again.exit_code == 0
    assert again.output.splitlines()[0] == "create bucket: exists (acme-tfstate)"

    r2 = invoke(
        "bootstrap",
        "--bucket",
        "acme-r2",
        "--endpoint",
        moto_endpoint,
        "--r2",
        "--region",
        "us-east-1",
        env=env,
    )
    assert r2.exit_code == 0, r2.output
    assert "versioning: skipped (R2 has no object versioning" in r2.output
    bad = invoke("bootstrap", "--bucket", "Bad_Bucket", "--endpoint", moto_endpoint, env=env)
    assert bad.exit_code == 2 and "invalid bucket name" in bad.output
    assert invoke("bootstrap", "--bucket", "acme-r2", "--r2", env=env).exit_code == 2
