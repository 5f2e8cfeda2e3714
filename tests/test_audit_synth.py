"""Issue 20, the audit's synth findings: previews' Hyperdrive does not cache reads, R2 (any S3
store that is neither AWS nor the embedded server) gets ``skip_s3_checksum`` in the backend and
the remote-state read, and ``suspend_timeout_seconds`` is sent only when configured."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from cdk.backend import needs_skip_checksum, s3_config
from cdk.settings import BackendSettings, Settings
from cdk.settings.model import NeonCompute
from tests.test_synth import BIN, REPO, env, single

R2 = "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com"


@pytest.fixture(scope="module")
def r2_stacks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("audit-synth")
    found = {}
    for stage in ("staging", "pr-147"):
        out = tmp / stage
        proc = subprocess.run(
            [str(BIN / "forkstage"), "synth", "--stage", stage, "--out", str(out)],
            cwd=REPO,
            env=env(tmp, FORKSTAGE_BACKEND_ENDPOINT=R2, FORKSTAGE_BACKEND_REGION="auto"),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        found[stage] = json.loads((out / "stacks" / f"stack-{stage}" / "cdk.tf.json").read_text())
    return found


def test_previews_hyperdrive_does_not_cache_reads(r2_stacks: dict[str, dict[str, Any]]) -> None:
    _, preview = single(r2_stacks["pr-147"]["resource"], "cloudflare_hyperdrive_config")
    assert preview["caching"] == {"disabled": True}
    _, owner = single(r2_stacks["staging"]["resource"], "cloudflare_hyperdrive_config")
    assert "caching" not in owner  # Cloudflare's default for the owner stage


def test_r2_gets_skip_s3_checksum_in_backend_and_remote_state(
    r2_stacks: dict[str, dict[str, Any]],
) -> None:
    for cfg in r2_stacks.values():
        backend = cfg["terraform"]["backend"]["s3"]
        assert (backend["endpoints"], backend["region"]) == ({"s3": R2}, "auto")
        assert backend["skip_s3_checksum"] is True
    _, remote = single(r2_stacks["pr-147"]["data"], "terraform_remote_state")
    assert remote["config"]["skip_s3_checksum"] is True
    assert remote["config"]["region"] == "auto"


def test_suspend_timeout_is_sent_only_when_configured(
    r2_stacks: dict[str, dict[str, Any]],
) -> None:
    _, endpoint = single(r2_stacks["pr-147"]["resource"], "neon_endpoint")
    assert endpoint["autoscaling_limit_max_cu"] == 0.25
    assert "suspend_timeout_seconds" not in endpoint  # a paid-plan feature on Neon
    configured = NeonCompute(suspend_timeout_seconds=600).for_stage(True)
    assert configured.suspend_timeout_seconds == 600


@pytest.mark.parametrize(
    ("backend", "skip"),
    [
        (BackendSettings(), False),  # the embedded server
        (BackendSettings(kind="s3", endpoint=""), False),  # AWS S3, no endpoint
        (BackendSettings(kind="s3", endpoint="https://s3.eu-west-3.amazonaws.com"), False),
        (BackendSettings(kind="s3", endpoint=R2), True),
        (BackendSettings(kind="s3", endpoint="https://minio.example.org:9000"), True),
    ],
)
def test_skip_s3_checksum_only_off_aws_and_the_embedded_server(
    backend: BackendSettings, skip: bool
) -> None:
    assert needs_skip_checksum(backend) is skip
    assert s3_config(backend).get("skip_s3_checksum", False) is skip


def test_hyperdrive_caching_setting() -> None:
    default = Settings(root=REPO)
    assert (
        default.hyperdrive_caching_disabled(True),
        default.hyperdrive_caching_disabled(False),
    ) == (True, None)
    on = Settings(root=REPO, hyperdrive_caching="on")
    assert (on.hyperdrive_caching_disabled(True), on.hyperdrive_caching_disabled(False)) == (
        False,
        False,
    )
    off = Settings(root=REPO, hyperdrive_caching="off")
    assert off.hyperdrive_caching_disabled(False) is True


def test_the_cloudflare_pin_has_the_hyperdrive_read_fix() -> None:
    """v5.17.0 (PR #6676) stopped the in-place update of every Hyperdrive on every plan; the
    pin names the tag and commit its schema snapshot was transcribed from, and the behaviour
    table cites them (and the shared reference by its relative path)."""
    from cdk.providers.pins import CLOUDFLARE

    version = tuple(int(part) for part in CLOUDFLARE.version.split("."))
    assert version >= (5, 17, 0)
    assert CLOUDFLARE.tag == f"v{CLOUDFLARE.version}"
    assert len(CLOUDFLARE.commit) == 40 and int(CLOUDFLARE.commit, 16) >= 0
    schema = json.loads((REPO / "cdk/providers/schemas/cloudflare.json").read_text())
    resources = schema["provider_schemas"][CLOUDFLARE.fqn]["resource_schemas"]
    assert {resources[name]["version"] for name in CLOUDFLARE.resources} == {500}
    origin = resources["cloudflare_hyperdrive_config"]["block"]["attributes"]["origin"]
    assert "service_id" in origin["nested_type"]["attributes"]  # new since v5.14.0
    doc = " ".join((REPO / "docs/provider-behaviour.md").read_text().split())
    assert f"`cloudflare/cloudflare` {CLOUDFLARE.tag}, commit {CLOUDFLARE.commit[:8]}" in doc
    assert "hyperdrive_config/custom.go" in doc and "#6676" in doc
    assert "../shared/reference/provider-behaviour.md" in doc and "/work/shared" not in doc
