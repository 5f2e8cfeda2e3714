"""The synthesized per-stage configs of the real AppStack (issue: synthesizer)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SENTINELS = {
    "NEON_API_KEY": "neon-key-sentinel-7731",
    "CLOUDFLARE_API_TOKEN": "cf-token-sentinel-7732",
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL7733",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-sentinel-7734",
}


def env(tmp: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "STAGE"))}
    return {
        **base,
        **SENTINELS,
        "PATH": f"{BIN}{os.pathsep}{REPO / 'node_modules' / '.bin'}{os.pathsep}{base['PATH']}",
        "FORKSTAGE_HOME": str(tmp / "home"),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "CDKTF_HOME": str(tmp / "cdktf-home"),
        "CHECKPOINT_DISABLE": "1",
        **extra,
    }


def synth(tmp: Path, stage: str) -> Path:
    out = tmp / f"out-{stage}"
    proc = subprocess.run(
        [str(BIN / "forkstage"), "synth", "--stage", stage, "--out", str(out)],
        cwd=REPO,
        env=env(tmp),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def outdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("synth")
    out = synth(tmp, "pr-147")
    synth(tmp, "dev_sam")
    return out.parent


def stack(outdir: Path, stage: str, from_run: str | None = None) -> dict[str, Any]:
    run = from_run or stage
    return json.loads(
        (outdir / f"out-{run}" / "stacks" / f"stack-{stage}" / "cdk.tf.json").read_text()
    )


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


def single(block: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    items = block[kind]
    assert len(items) == 1, (kind, list(items))
    return next(iter(items.items()))


def test_pr_stage_references_staging_and_owns_only_its_branch(outdir: Path) -> None:
    cfg = stack(outdir, "pr-147")
    resources = cfg["resource"]
    assert "neon_project" not in resources
    assert set(resources) == {
        "neon_branch",
        "neon_endpoint",
        "cloudflare_hyperdrive_config",
        "cloudflare_workers_script",
        "terraform_data",
    }
    remote_name, remote = single(cfg["data"], "terraform_remote_state")
    assert remote["backend"] == "s3" and remote["workspace"] == "staging"
    ref = f"data.terraform_remote_state.{remote_name}.outputs"

    branch_name, branch = single(resources, "neon_branch")
    assert branch["project_id"] == f"${{{ref}.neon_project_id}}"
    endpoint_name, endpoint = single(resources, "neon_endpoint")
    assert endpoint["branch_id"] == f"${{neon_branch.{branch_name}.id}}"
    password_name, password = single(cfg["data"], "neon_branch_role_password")
    assert password["branch_id"] == f"${{neon_branch.{branch_name}.id}}"
    hd_name, hd = single(resources, "cloudflare_hyperdrive_config")
    assert hd["origin"]["host"] == f"${{neon_endpoint.{endpoint_name}.host}}"
    assert (
        hd["origin"]["password"] == f"${{data.neon_branch_role_password.{password_name}.password}}"
    )
    assert hd["origin"]["port"] == 5432 and hd["origin"]["scheme"] == "postgresql"
    _, worker = single(resources, "cloudflare_workers_script")
    assert worker["bindings"] == [
        {
            "type": "hyperdrive",
            "name": "HYPERDRIVE",
            "id": f"${{cloudflare_hyperdrive_config.{hd_name}.id}}",
        }
    ]
    assert worker["script_name"] == "forkstage-api-pr-147"

    backend = cfg["terraform"]["backend"]["s3"]
    assert backend["use_lockfile"] is True and backend["use_path_style"] is True
    assert remote["config"] == {k: v for k, v in backend.items() if k != "use_lockfile"}

    guard = resources["terraform_data"]["workspace_guard"]
    [condition] = guard["lifecycle"]["precondition"]
    assert condition["condition"] == '${terraform.workspace == "pr-147"}'
    assert remote["lifecycle"]["precondition"] == [condition]


def test_no_credentials_or_passwords_in_any_synthesized_file(outdir: Path) -> None:
    for path in outdir.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            for name, sentinel in SENTINELS.items():
                assert sentinel not in text, f"{name} leaked into {path}"
            for match in re.finditer(
                r'"(password|api_key|api_token|secret_key|access_key)"\s*:\s*"([^"]*)"', text
            ):
                assert match.group(2).startswith("${"), f"literal {match.group(1)} in {path}"


def test_owner_writes_exactly_what_the_pr_side_reads(outdir: Path) -> None:
    pr = stack(outdir, "pr-147")
    staging = stack(outdir, "staging", from_run="pr-147")
    read = set(re.findall(r"data\.terraform_remote_state\.[\w]+\.outputs\.(\w+)", json.dumps(pr)))
    assert read == {"neon_project_id", "neon_database_name", "neon_database_user", "neon_branch_id"}
    assert read <= set(staging["output"])
    assert "neon_project" in staging["resource"]
    assert "terraform_remote_state" not in staging.get("data", {})
    _, project = single(staging["resource"], "neon_project")
    assert project["store_password"] == "yes"


def test_personal_stage_creates_its_own_project(outdir: Path) -> None:
    dev = stack(outdir, "dev_sam")
    assert "neon_project" in dev["resource"]
    assert "terraform_remote_state" not in dev.get("data", {})
    _, worker = single(dev["resource"], "cloudflare_workers_script")
    assert re.fullmatch(r"forkstage-api-dev-sam-[0-9a-f]{6}", worker["script_name"])


@pytest.mark.slow
def test_cdktf_cli_synth_is_identical(outdir: Path, tmp_path: Path) -> None:
    out = tmp_path / "cdktf"
    proc = subprocess.run(
        ["npx", "cdktf", "synth", "--output", str(out)],
        cwd=REPO,
        env=env(tmp_path, STAGE="pr-147"),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("stack-pr-147", "stack-staging", "stack-prod"):
        ours = (outdir / "out-pr-147" / "stacks" / name / "cdk.tf.json").read_text()
        theirs = (out / "stacks" / name / "cdk.tf.json").read_text()
        assert json.loads(ours) == json.loads(theirs)
        assert ours == theirs
