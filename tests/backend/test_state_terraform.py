"""The real Terraform engine against the state server, over HTTP and HTTPS (aws-chunked)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import BUCKET, STATE_KEY, Running, backend_block

pytestmark = pytest.mark.slow

STAGING_KEY = f"env:/staging/{STATE_KEY}"
PR_KEY = f"env:/pr-147/{STATE_KEY}"


def staging_config(endpoint: str, *, payload_bytes: int = 0) -> str:
    blob = ""
    if payload_bytes:
        # A big attribute (stored twice: input and output) makes a state over 6 MiB: Terraform
        # then reads it with ranged GETs and writes it with a multipart upload.
        blob = f"""
resource "terraform_data" "big" {{
  input = format("%0{payload_bytes}d", 7)
}}"""
    return f"""
terraform {{{backend_block(endpoint)}}}
resource "terraform_data" "db" {{
  input = "neon-project-${{terraform.workspace}}"
}}
{blob}
output "project_id" {{
  value = terraform_data.db.output
}}
output "db_password" {{
  value     = "pw-${{terraform.workspace}}"
  sensitive = true
}}
"""


def pr_config(endpoint: str) -> str:
    return f"""
terraform {{{backend_block(endpoint)}}}
data "terraform_remote_state" "staging" {{
  backend   = "s3"
  workspace = "staging"
  config = {{
    bucket                      = "{BUCKET}"
    key                         = "{STATE_KEY}"
    region                      = "us-east-1"
    endpoints                   = {{ s3 = "{endpoint}" }}
    use_path_style              = true
    skip_credentials_validation = true
    skip_requesting_account_id  = true
  }}
}}
resource "terraform_data" "branch" {{
  input = "branch-of-${{data.terraform_remote_state.staging.outputs.project_id}}"
}}
output "from_staging" {{
  value = data.terraform_remote_state.staging.outputs.project_id
}}
output "branch" {{
  value = terraform_data.branch.output
}}
"""


def _lifecycle(running: Running, terraform_dir, ca: Path | None) -> None:
    s3 = running.client()
    staging = terraform_dir(staging_config(running.endpoint), running.admin, ca_bundle=ca)
    staging.ok("init", "-no-color")
    staging.ok("workspace", "new", "-no-color", "staging")
    staging.ok("apply", "-auto-approve", "-no-color")
    outputs = json.loads(staging.ok("output", "-json").stdout)
    assert outputs["project_id"]["value"] == "neon-project-staging"

    pr = terraform_dir(pr_config(running.endpoint), running.admin, ca_bundle=ca)
    pr.ok("init", "-no-color")
    pr.ok("workspace", "new", "-no-color", "pr-147")
    pr.ok("apply", "-auto-approve", "-no-color")
    assert json.loads(pr.ok("output", "-json").stdout)["from_staging"]["value"] == (
        "neon-project-staging"
    )

    # state pull / push: a pushed state with a higher serial becomes the stored state
    pulled = json.loads(pr.ok("state", "pull").stdout)
    pulled["serial"] += 5
    (pr.path / "pushed.tfstate").write_text(json.dumps(pulled))
    pr.ok("state", "push", "pushed.tfstate")
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=PR_KEY)["Body"].read())
    assert stored["serial"] >= pulled["serial"] and stored["lineage"] == pulled["lineage"]

    # force-unlock: a lock left behind blocks plans until it is force-unlocked
    lock = {"ID": "stale-lock-1", "Operation": "OperationTypeApply", "Who": "ci@runner"}
    s3.put_object(Bucket=BUCKET, Key=PR_KEY + ".tflock", Body=json.dumps(lock).encode())
    blocked = pr.run("plan", "-no-color")
    assert blocked.returncode == 1 and "Error acquiring the state lock" in blocked.stderr
    pr.ok("force-unlock", "-force", "stale-lock-1")
    pr.ok("plan", "-no-color")

    pr.ok("destroy", "-auto-approve", "-no-color")
    pr.ok("workspace", "select", "-no-color", "default")
    pr.ok("workspace", "delete", "-no-color", "pr-147")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="env:/").get("Contents", [])
    assert [o["Key"] for o in listed] == [STAGING_KEY]
    assert "pr-147" not in pr.ok("workspace", "list").stdout
    # staging untouched by the PR's destroy
    assert json.loads(staging.ok("output", "-json").stdout)["project_id"]["value"] == (
        "neon-project-staging"
    )


def test_terraform_lifecycle_over_http(state_server: Running, terraform_dir) -> None:
    _lifecycle(state_server, terraform_dir, None)


def test_terraform_lifecycle_over_https_aws_chunked(tls_server: Running, terraform_dir) -> None:
    assert tls_server.endpoint.startswith("https://")
    _lifecycle(tls_server, terraform_dir, tls_server.ca_bundle)


@pytest.mark.parametrize("fixture", ["state_server", "tls_server"])
def test_state_over_6_mib_uses_range_and_multipart(
    fixture: str, request: pytest.FixtureRequest, terraform_dir
) -> None:
    running: Running = request.getfixturevalue(fixture)
    ca = running.ca_bundle
    config = staging_config(running.endpoint, payload_bytes=3_600_000)
    tf = terraform_dir(config, running.admin, ca_bundle=ca)
    tf.ok("init", "-no-color")
    tf.ok("workspace", "new", "-no-color", "staging")
    tf.ok("apply", "-auto-approve", "-no-color", timeout=240)
    s3 = running.client()
    head = s3.head_object(Bucket=BUCKET, Key=STAGING_KEY)
    assert head["ContentLength"] > 6 * 1024 * 1024
    assert head["ETag"].rstrip('"').split("-")[-1].isdigit() and "-" in head["ETag"]
    # a second plan reads the big state back through ranged GETs and finds nothing to do
    plan = tf.ok("plan", "-no-color", "-detailed-exitcode", timeout=240)
    assert "No changes" in plan.stdout
    pulled = json.loads(tf.ok("state", "pull", timeout=240).stdout)
    assert pulled["outputs"]["project_id"]["value"] == "neon-project-staging"


def test_pr_credential_reads_only_staging_outputs(state_server: Running, terraform_dir) -> None:
    running = state_server
    staging = terraform_dir(staging_config(running.endpoint), running.admin)
    staging.ok("init", "-no-color")
    staging.ok("workspace", "new", "-no-color", "staging")
    staging.ok("apply", "-auto-approve", "-no-color")

    pr_cred = running.issue(policy="stage", stage="pr-147", read_outputs=["staging"])
    pr = terraform_dir(pr_config(running.endpoint), pr_cred)
    pr.ok("init", "-no-color")
    pr.ok("workspace", "select", "-or-create", "-no-color", "pr-147")
    pr.ok("apply", "-auto-approve", "-no-color")
    outs = json.loads(pr.ok("output", "-json").stdout)
    assert outs["from_staging"]["value"] == "neon-project-staging"

    # the sensitive output is not there at all
    leaky = pr_config(running.endpoint) + (
        'output "pw" {\n  value = nonsensitive(data.terraform_remote_state.staging.outputs'
        ".db_password)\n}\n"
    )
    (pr.path / "main.tf").write_text(leaky)
    failed = pr.run("plan", "-no-color")
    assert failed.returncode == 1
    assert "db_password" in failed.stderr and "Unsupported attribute" in failed.stderr

    s3 = running.client(pr_cred)
    seen = json.loads(s3.get_object(Bucket=BUCKET, Key=STAGING_KEY)["Body"].read())
    assert seen["resources"] == [] and set(seen["outputs"]) == {"project_id"}
    with pytest.raises(ClientError) as denied:
        s3.put_object(Bucket=BUCKET, Key=STAGING_KEY, Body=b"{}")
    assert denied.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    full = json.loads(running.client().get_object(Bucket=BUCKET, Key=STAGING_KEY)["Body"].read())
    assert full["resources"] and "db_password" in full["outputs"]


def test_concurrent_applies_one_loses_the_lock(state_server: Running, terraform_dir) -> None:
    running = state_server
    config = staging_config(running.endpoint).replace(
        'input = "neon-project-${terraform.workspace}"',
        'input = "neon-project-${terraform.workspace}"\n  triggers_replace = [var.run]',
    )
    config += 'variable "run" {\n  type = string\n}\n'
    a = terraform_dir(config, running.admin)
    a.ok("init", "-no-color")
    a.ok("workspace", "new", "-no-color", "staging")
    a.ok("apply", "-auto-approve", "-no-color", "-var", "run=0")
    b = terraform_dir(config, running.admin, extra={"TF_WORKSPACE": "staging"})
    b.ok("init", "-no-color")
    s3 = running.client()

    # Hold the lock while both applies start: exactly like a slow apply in progress.
    lock = {"ID": "held-by-test", "Operation": "OperationTypeApply", "Who": "test"}
    s3.put_object(
        Bucket=BUCKET, Key=STAGING_KEY + ".tflock", Body=json.dumps(lock).encode(), IfNoneMatch="*"
    )
    results: dict[str, object] = {}

    def apply(name: str, tf, *extra: str) -> None:
        results[name] = tf.run("apply", "-auto-approve", "-no-color", *extra, "-var", f"run={name}")

    loser = threading.Thread(target=apply, args=("a", a))
    # generous: under load the loser may take a while, and the waiter backs off 1, 2, 4, 8 s...
    waiter = threading.Thread(target=apply, args=("b", b, "-lock-timeout=120s"))
    loser.start()
    waiter.start()
    started = time.monotonic()
    loser.join(timeout=120)
    # Release between the waiter's retries (about 1 s and 3 s after it starts), not during
    # one: Terraform's s3 client fails outright when the lock vanishes between its refused PUT
    # and the GET that reads the holder's info.
    time.sleep(max(0.0, started + 2.2 - time.monotonic()))
    serial_during = json.loads(s3.get_object(Bucket=BUCKET, Key=STAGING_KEY)["Body"].read())[
        "serial"
    ]
    s3.delete_object(Bucket=BUCKET, Key=STAGING_KEY + ".tflock")  # the slow apply finishes
    waiter.join(timeout=120)
    lost, won = results["a"], results["b"]
    assert lost.returncode == 1 and "Error acquiring the state lock" in lost.stderr  # type: ignore[attr-defined]
    assert won.returncode == 0, won.stderr  # type: ignore[attr-defined]
    final = json.loads(s3.get_object(Bucket=BUCKET, Key=STAGING_KEY)["Body"].read())
    assert final["serial"] > serial_during
    (resource,) = [r for r in final["resources"] if r["name"] == "db"]
    assert resource["instances"][0]["attributes"]["triggers_replace"]["value"] == ["b"]


def test_two_real_applies_race_without_lost_update(
    state_server: Running, terraform_dir, tmp_path: Path
) -> None:
    """Two applies started together: exactly one takes the lock, the other is refused it; the
    state holds the winner's value. The lock holder's apply waits (a local-exec step) until the
    other has returned, so the two always overlap: a broken lock lets both win."""
    running = state_server
    flag = tmp_path / "other-returned"
    config = staging_config(running.endpoint)
    config += 'resource "terraform_data" "n" {\n  input = var.n\n}\nvariable "n" {}\n'
    config += f"""
resource "terraform_data" "gate" {{
  triggers_replace = [var.n]
  provisioner "local-exec" {{
    command = "for i in $(seq 600); do [ -e {flag} ] && exit 0; sleep 0.1; done; exit 1"
  }}
}}
"""
    dirs = [terraform_dir(config, running.admin, extra={"TF_WORKSPACE": "staging"}) for _ in "ab"]
    s3 = running.client()
    for tf in dirs:
        tf.ok("init", "-no-color")
    results: list[object] = [None, None]
    order: list[int] = []

    def apply(i: int) -> None:
        results[i] = dirs[i].run("apply", "-auto-approve", "-no-color", "-var", f"n={i}")
        order.append(i)
        flag.touch()  # the first to return lets the lock holder finish

    threads = [threading.Thread(target=apply, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=150)
    winners = [i for i, r in enumerate(results) if r.returncode == 0]  # type: ignore[attr-defined]
    assert len(winners) == 1, [r.stderr for r in results]  # type: ignore[attr-defined]
    (winner,) = winners
    loser = results[1 - winner]
    assert loser.returncode == 1  # type: ignore[attr-defined]
    assert "Error acquiring the state lock" in loser.stderr  # type: ignore[attr-defined]
    assert order == [1 - winner, winner]
    final = json.loads(s3.get_object(Bucket=BUCKET, Key=STAGING_KEY)["Body"].read())
    (n,) = [r for r in final["resources"] if r["name"] == "n"]
    assert n["instances"][0]["attributes"]["input"]["value"] == str(winner)
