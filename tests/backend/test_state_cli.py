"""``forkstage backend ...`` through click's CliRunner (and serve as a real child process)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner, Result
from conftest import BUCKET, Running, free_port, raw_request

from backend.s3 import credentials
from forkstage.cli import main

KEY = "env:/staging/forkstage/terraform.tfstate"
# Nothing of the caller's reaches these commands: no AWS keys, profiles or config files, no
# backend overrides; each test says which backend it means.
NO_AWS_ENV: dict[str, str | None] = {
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_CONFIG_FILE": "/nonexistent/aws-config",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": None,
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": None,
    "FORKSTAGE_BACKEND_KIND": None,
    "FORKSTAGE_BACKEND_ENDPOINT": None,
    "FORKSTAGE_BACKEND_BUCKET": None,
    "FORKSTAGE_STATE_ACCESS_KEY_ID": None,
    "FORKSTAGE_STATE_SECRET_ACCESS_KEY": None,
}


def invoke(*args: str, env: Mapping[str, str | None] | None = None) -> Result:
    """``forkstage backend <args>``, errors mapped by the CLI as for a user."""
    return CliRunner().invoke(main, ["backend", *args], env={**NO_AWS_ENV, **(env or {})})


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
    # the embedded backend of FORKSTAGE_HOME, at the server's port: its admin key is found there
    home = {"FORKSTAGE_HOME": str(state_server.data_dir.parent)}
    common = ["--endpoint", state_server.endpoint]

    listed = invoke("versions", "--stage", "staging", *common, "--json", env=home)
    assert listed.exit_code == 0, listed.output
    versions = json.loads(listed.output)["versions"]
    assert [v["version_id"] for v in versions] == ids[::-1]
    assert [v["serial"] for v in versions] == [3, 2, 1]
    assert [v["latest"] for v in versions] == [True, False, False]
    # what the server keeps: the newest always, older ones by the count and age rules
    assert versions[0]["expires"] is None
    assert [v["writes_left"] for v in versions[1:]] == [99, 98]
    assert all(v["expires"] > v["last_modified"] for v in versions[1:])
    table = invoke("versions", "--stage", "staging", *common, env=home)
    lines = table.output.splitlines()
    assert lines[0].split()[:2] == ["VERSION", "ID"] and "KEPT UNTIL (UTC)" in lines[0]
    assert "always (newest)" in lines[1] and lines[3].startswith(ids[0])
    assert lines[3].rstrip().endswith(f"{versions[2]['expires'][:10]} or 98 writes")

    status = invoke("status", *common, "--json", env=home)
    assert status.exit_code == 0, status.output
    health = json.loads(status.output)
    assert health["endpoint"] == state_server.endpoint and health["free_bytes"] > 0
    assert health["connections"] >= 1 and health["max_connections"] == 256
    text = invoke("status", *common, env=home)
    assert text.output.splitlines()[0] == f"state server: {state_server.endpoint}"
    assert "of 256" in text.output.splitlines()[2]
    gone = invoke("status", "--endpoint", "http://127.0.0.1:9", env=home)
    assert gone.exit_code == 1 and "no forkstage state server answers" in gone.output

    s3 = state_server.client()
    s3.put_object(Bucket=BUCKET, Key=KEY + ".tflock", Body=b'{"ID": "x"}')
    locked = invoke("rollback", "--stage", "staging", "--version", ids[0], *common, env=home)
    assert locked.exit_code == 3 and "locked" in locked.output
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())["serial"] == 3
    s3.delete_object(Bucket=BUCKET, Key=KEY + ".tflock")

    missing = invoke("rollback", "--stage", "staging", "--version", "nope", *common, env=home)
    assert missing.exit_code == 2 and "no version" in missing.output

    done = invoke(
        "rollback", "--stage", "staging", "--version", ids[0], *common, "--json", env=home
    )
    assert done.exit_code == 0, done.output
    result = json.loads(done.output)
    restored = json.loads(s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read())
    assert restored["lineage"] == "L1" and restored["serial"] == 4 == result["serial"]
    assert result["version_id"] == s3.head_object(Bucket=BUCKET, Key=KEY)["VersionId"]
    # the rollback's own lock is gone again
    s3.put_object(Bucket=BUCKET, Key=KEY + ".tflock", Body=b"{}", IfNoneMatch="*")


def test_versions_with_env_credentials_and_no_server(tmp_path: Path) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"
    s3_backend = {
        "FORKSTAGE_BACKEND_KIND": "s3",
        "FORKSTAGE_BACKEND_ENDPOINT": unreachable,
        "FORKSTAGE_HOME": str(tmp_path / "empty"),
    }
    out = invoke(
        "versions",
        "--stage",
        "staging",
        env={**s3_backend, "AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "s"},
    )
    assert out.exit_code == 1 and "cannot reach" in out.output
    none = invoke("versions", "--stage", "staging", env=s3_backend)
    assert none.exit_code == 2 and "no credentials" in none.output
    assert not (tmp_path / "empty").exists()


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
        alone = subprocess.run(
            [sys.executable, "-m", "backend", "serve", "--port", "0", "--data", str(data)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert alone.returncode == 3
        assert alone.stderr == f"error: another state server is already using {data}\n"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert 'PUT "/forkstage-state/env:/staging/x" 200' in err  # target quoted (issue #13)
    assert "admin" in err
    assert admin.secret_access_key not in err + out and admin.access_key_id not in err + out
    assert "AWS4-HMAC-SHA256" not in err


FORKSTAGE = [str(Path(sys.executable).parent / "forkstage")]


def test_serve_signs_with_the_projects_region(tmp_path: Path) -> None:
    """`forkstage backend serve` in a project checks the region Terraform's backend block sends."""
    (tmp_path / "forkstage.toml").write_text(
        '[app]\nname = "shop"\n[backend]\nregion = "eu-west-1"\n'
    )
    data, port = tmp_path / "state", free_port()
    proc = subprocess.Popen(
        [*FORKSTAGE, "backend", "serve", "--port", str(port), "--data", str(data), "--quiet"],
        cwd=tmp_path,
        env={**os.environ, "FORKSTAGE_HOME": str(tmp_path / "home")},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("forkstage state server listening")
        admin = credentials.load(data)[0]
        # signed for us-east-1 (botocore would follow the region the error names)
        wrong = raw_request(f"http://127.0.0.1:{port}", "GET", f"/{BUCKET}", admin)
        assert (wrong.status, wrong.code) == (400, "AuthorizationHeaderMalformed")
        assert b"<Region>eu-west-1</Region>" in wrong.body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


def test_serve_rejects_bad_options(tmp_path: Path) -> None:
    half = invoke("serve", "--tls-cert", __file__, "--data", str(tmp_path))
    assert half.exit_code == 2 and "--tls-key" in half.output
    assert invoke("serve", "--retain", "0", "--data", str(tmp_path)).exit_code == 2
    size = invoke("serve", "--max-object-size", "64MB", "--data", str(tmp_path / "s"))
    assert size.exit_code == 2 and "--max-object-size: '64MB' is not a size" in size.output
    conns = invoke("serve", "--max-connections", "0", "--data", str(tmp_path / "s"))
    assert conns.exit_code == 2 and "--max-connections must be at least 1" in conns.output
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tls-cert", __file__], "--tls-cert and --tls-key go together: give both or neither"),
        (["--retain", "0"], "--retain must be at least 1"),
        (["--port", "70000"], "--port must be between 0 and 65535"),
        (["--bucket", "Bad_Bucket"], "invalid bucket name 'Bad_Bucket'"),
        (["--idle-timeout", "-1"], "--idle-timeout must be greater than 0"),
        (
            ["--disk-reserve", "lots"],
            "--disk-reserve: 'lots' is not a size (bytes, or a unit: 256KiB, 64MiB, 1GiB)",
        ),
    ],
)
def test_module_serve_rejects_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    """``python -m backend serve``: same checks, one ``error:`` line, exit 2, nothing written."""
    data = tmp_path / "state"
    done = subprocess.run(
        [sys.executable, "-m", "backend", "serve", "--data", str(data), *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {message}\n")
    assert not data.exists()


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
