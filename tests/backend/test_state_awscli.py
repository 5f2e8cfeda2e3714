"""The AWS CLI (awscli from PyPI) as a real client of the state server, over loopback.

Each test gets its own server and an isolated CLI configuration: config and credentials files in a
temporary directory, keys only in the environment, no instance metadata, no inherited profile.
The multipart threshold and chunk size are 5 MB so a 12 MiB file goes up in three parts.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import BUCKET, Running

from backend.s3.credentials import Credential

AWS = str(Path(sys.executable).parent / "aws")
MIB = 1024 * 1024


class Cli:
    """``aws`` with one credential, against one endpoint; never echoes the secret."""

    def __init__(self, running: Running, cred: Credential, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        config, shared = home / "config", home / "credentials"
        config.write_text(
            "[default]\nregion = us-east-1\nmax_attempts = 1\n"
            "s3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n"
            "  addressing_style = path\n"
        )
        shared.write_text("")
        self.endpoint, self.secret = running.endpoint, cred.secret_access_key
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(shared),
            "AWS_ACCESS_KEY_ID": cred.access_key_id,
            "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_PAGER": "",
        }

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [AWS, "--endpoint-url", self.endpoint, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        out = result.stdout + result.stderr
        assert self.secret not in out, "the CLI printed a secret"
        if ok:
            assert result.returncode == 0, f"aws {' '.join(args)} -> {result.returncode}:\n{out}"
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--output", "json").stdout)


@pytest.fixture
def cli(state_server: Running, tmp_path: Path) -> Cli:
    return Cli(state_server, state_server.admin, tmp_path / "aws-admin")


def test_multipart_cp_round_trip_head_ranged_get_ls_rm(cli: Cli, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(12 * MIB + 12345))
    url = f"s3://{BUCKET}/env:/ci/big.bin"
    cli.run("s3", "cp", str(big), url)
    back = tmp_path / "back.bin"
    cli.run("s3", "cp", url, str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()

    head = cli.json("s3api", "head-object", "--bucket", BUCKET, "--key", "env:/ci/big.bin")
    assert head["ContentLength"] == big.stat().st_size
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # three parts of 5, 5, 2 MiB

    part = tmp_path / "part.bin"
    got = cli.json(
        "s3api", "get-object", "--bucket", BUCKET, "--key", "env:/ci/big.bin",
        "--range", f"bytes={5 * MIB - 7}-{5 * MIB + 8}", str(part),
    )  # fmt: skip
    assert part.read_bytes() == big.read_bytes()[5 * MIB - 7 : 5 * MIB + 9]
    assert got["ContentRange"] == f"bytes {5 * MIB - 7}-{5 * MIB + 8}/{big.stat().st_size}"

    listing = cli.run("s3", "ls", f"s3://{BUCKET}/", "--recursive").stdout
    assert any(
        line.split()[-1] == "env:/ci/big.bin" and line.split()[2] == str(big.stat().st_size)
        for line in listing.splitlines()
    ), listing

    cli.run("s3", "rm", url)
    gone = cli.run("s3api", "head-object", "--bucket", BUCKET, "--key", "env:/ci/big.bin", ok=False)
    assert gone.returncode != 0 and "404" in gone.stderr
    assert "big.bin" not in cli.run("s3", "ls", f"s3://{BUCKET}/", "--recursive", ok=False).stdout


def test_sync_up_down_again_and_recursive_rm(cli: Cli, tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = {
        "a.txt": b"alpha\n",
        "sub/b.bin": os.urandom(70_000),
        "sub/deeper/c.json": b'{"c": 3}',
        "sub/space name.txt": b"",
    }
    past = time.time() - 120  # older than any Last-Modified the server will report
    for name, data in files.items():
        path = tree / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (past, past))
    prefix = f"s3://{BUCKET}/env:/ci/tree/"
    up = cli.run("s3", "sync", str(tree), prefix).stdout
    assert sum(line.startswith("upload:") for line in up.splitlines()) == len(files), up

    down = tmp_path / "down"
    cli.run("s3", "sync", prefix, str(down))
    assert {
        p.relative_to(down).as_posix(): p.read_bytes() for p in down.rglob("*") if p.is_file()
    } == files

    again = cli.run("s3", "sync", str(tree), prefix).stdout
    assert again.strip() == "", f"a second sync transferred again:\n{again}"

    listing = cli.run("s3", "ls", prefix, "--recursive").stdout
    assert sorted(line.split(None, 3)[3] for line in listing.splitlines()) == sorted(
        f"env:/ci/tree/{n}" for n in files
    )
    removed = cli.run("s3", "rm", prefix, "--recursive").stdout
    assert sum(line.startswith("delete:") for line in removed.splitlines()) == len(files)
    empty = cli.run("s3", "ls", prefix, "--recursive", ok=False)  # exit 1: nothing listed
    assert (empty.returncode, empty.stdout.strip()) == (1, "")


def test_stage_credential_cp_outside_its_workspace_fails(
    state_server: Running, tmp_path: Path
) -> None:
    stage = Cli(state_server, state_server.issue(policy="stage", stage="pr-7"), tmp_path / "aws")
    src = tmp_path / "f.txt"
    src.write_bytes(b"from pr-7\n")
    stage.run("s3", "cp", str(src), f"s3://{BUCKET}/env:/pr-7/f.txt")  # its own: allowed
    for target in ("env:/staging/f.txt", "env:/pr-70/f.txt", "f.txt"):
        refused = stage.run("s3", "cp", str(src), f"s3://{BUCKET}/{target}", ok=False)
        assert refused.returncode != 0 and "AccessDenied" in refused.stderr, refused.stderr
    keys = [o["Key"] for o in state_server.client().list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["env:/pr-7/f.txt"]
