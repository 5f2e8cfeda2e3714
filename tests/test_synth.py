"""The synthesized per-stage configs of the real AppStack (issue: synthesizer), one stack per
named stage (issue 11), and the gate that stops Terraform in a shell `forkstage env` did not
prepare (issue 10)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
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


def synth(tmp: Path, stage: str, **extra: str) -> Path:
    out = tmp / f"out-{stage}"
    proc = subprocess.run(
        [str(BIN / "forkstage"), "synth", "--stage", stage, "--out", str(out)],
        cwd=REPO,
        env=env(tmp, **extra),
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
    synth(tmp, "staging")
    synth(tmp, "dev_sam")
    return out.parent


def stack(outdir: Path, stage: str) -> dict[str, Any]:
    return json.loads(
        (outdir / f"out-{stage}" / "stacks" / f"stack-{stage}" / "cdk.tf.json").read_text()
    )


def stacks_in(out: Path) -> set[str]:
    return {p.name for p in (out / "stacks").iterdir()}


def run_app(tmp: Path, out: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    """main.py as cdktf-cli runs it (cdktf.json's "app"), writing into ``out``."""
    return subprocess.run(
        [str(BIN / "python"), "main.py"],
        cwd=REPO,
        env=env(tmp, CDKTF_OUTDIR=str(out), **extra),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
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
        "cloudflare_workers_script_subdomain",
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
    staging = stack(outdir, "staging")
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


def test_a_named_stage_is_synthesized_alone(outdir: Path) -> None:
    for stage in ("pr-147", "staging", "dev_sam"):
        assert stacks_in(outdir / f"out-{stage}") == {f"stack-{stage}"}


def test_no_stage_named_synthesizes_the_long_lived_stages(tmp_path: Path) -> None:
    proc = run_app(tmp_path, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert stacks_in(tmp_path / "out") == {"stack-staging", "stack-prod"}


def test_forkstage_stage_and_stage_naming_two_stages_is_an_error(tmp_path: Path) -> None:
    proc = run_app(tmp_path, tmp_path / "out", FORKSTAGE_STAGE="pr-147", STAGE="pr-148")
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert "FORKSTAGE_STAGE=pr-147 and STAGE=pr-148 name different stages" in line
    assert 'eval "$(forkstage env --stage pr-148)"' in line
    assert not (tmp_path / "out" / "stacks").exists()
    same = run_app(tmp_path, tmp_path / "same", FORKSTAGE_STAGE="pr-147", STAGE="pr-147")
    assert same.returncode == 0, same.stderr
    assert stacks_in(tmp_path / "same") == {"stack-pr-147"}


def test_an_unprepared_stack_stops_terraform_init_naming_forkstage_env(
    outdir: Path, tmp_path: Path
) -> None:
    """Same cdk.tf.json either way; unprepared, a gate file beside it fails init at once."""
    folder = outdir / "out-pr-147" / "stacks" / "stack-pr-147"
    gate = folder / "forkstage-env.tf"
    assert 'eval "$(forkstage env --stage pr-147)"' in gate.read_text()
    from forkstage.engine import run_terraform, terraform_env

    started = time.perf_counter()
    init = run_terraform(["init", "-no-color"], cwd=folder, env=terraform_env(tmp_path / "home"))
    assert time.perf_counter() - started < 10
    assert init.returncode != 0
    assert 'eval "$(forkstage env --stage pr-147)"' in init.stderr + init.stdout
    assert not (folder / ".terraform").exists()

    prepared = tmp_path / "prepared"
    stale = prepared / "stacks" / "stack-pr-147" / "forkstage-env.tf"
    stale.parent.mkdir(parents=True)
    stale.write_text("left by an unprepared synth\n")
    proc = run_app(tmp_path, prepared, STAGE="pr-147", FORKSTAGE_PREPARED="pr-147")
    assert proc.returncode == 0, proc.stderr
    assert not stale.exists()
    theirs = prepared / "stacks" / "stack-pr-147" / "cdk.tf.json"
    assert theirs.read_bytes() == (folder / "cdk.tf.json").read_bytes()
    other = run_app(tmp_path, tmp_path / "other", STAGE="pr-148", FORKSTAGE_PREPARED="pr-147")
    assert other.returncode == 0, other.stderr
    assert (tmp_path / "other" / "stacks" / "stack-pr-148" / "forkstage-env.tf").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["cdktf", "cdktn"])
def test_cli_synth_is_identical(outdir: Path, tmp_path: Path, runtime: str) -> None:
    """`npx cdktf synth` on cdktf, `npx cdktn synth` on cdktn (issue 24): what forkstage writes."""
    out = tmp_path / runtime
    choice = {"FORKSTAGE_CDK": runtime}  # this repository's app runs on cdktf unless told
    if runtime != "cdktf":
        outdir = synth(tmp_path, "pr-147", **choice).parent
    proc = subprocess.run(
        ["npx", runtime, "synth", "--output", str(out)],
        cwd=REPO,
        env=env(tmp_path, STAGE="pr-147", **choice),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ours_dir = outdir / "out-pr-147" / "stacks"
    assert stacks_in(out) == stacks_in(ours_dir.parent) == {"stack-pr-147"}
    ours = (ours_dir / "stack-pr-147" / "cdk.tf.json").read_text()
    theirs = (out / "stacks" / "stack-pr-147" / "cdk.tf.json").read_text()
    assert json.loads(ours) == json.loads(theirs)
    assert ours == theirs
    assert (
        json.loads(ours)["//"]["metadata"]["version"]
        == {"cdktf": "0.21.0", "cdktn": "0.24.0"}[runtime]
    )
    files = sorted(p.relative_to(ours_dir) for p in ours_dir.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(out / "stacks") for p in (out / "stacks").rglob("*") if p.is_file()
    )
    for name in files:
        assert (ours_dir / name).read_bytes() == (out / "stacks" / name).read_bytes(), name


def test_neon_settings_database_urls_and_the_password_guard(outdir: Path, tmp_path: Path) -> None:
    """Issue 12: retention within the Free plan, cheap PR compute, sensitive database URLs
    (pooled = first host label + -pooler), and a postcondition on the role password."""
    staging, pr = stack(outdir, "staging"), stack(outdir, "pr-147")
    _, project = single(staging["resource"], "neon_project")
    assert project["history_retention_seconds"] == 21600 and "org_id" not in project
    _, owner_endpoint = single(staging["resource"], "neon_endpoint")
    assert "autoscaling_limit_max_cu" not in owner_endpoint  # owner stages keep Neon's defaults
    _, pr_endpoint = single(pr["resource"], "neon_endpoint")
    assert (
        pr_endpoint["autoscaling_limit_min_cu"],
        pr_endpoint["autoscaling_limit_max_cu"],
    ) == (0.25, 0.25)
    assert "suspend_timeout_seconds" not in pr_endpoint  # issue 20: only when configured
    for cfg in (staging, pr):
        endpoint_name, _ = single(cfg["resource"], "neon_endpoint")
        password_name, password = single(cfg["data"], "neon_branch_role_password")
        [check] = password["lifecycle"]["postcondition"]
        assert check["condition"] == '${self.password != ""}'
        assert (
            "empty password for role ${self.role_name} on branch forkstage-branch-"
            in (check["error_message"])
        )
        outputs = cfg["output"]
        assert {"neon_branch_id", "neon_endpoint_host"} <= set(outputs)
        direct, pooled = outputs["database_url"], outputs["database_url_pooled"]
        assert direct["sensitive"] is True and pooled["sensitive"] is True
        host = f"neon_endpoint.{endpoint_name}.host"
        secret = f"data.neon_branch_role_password.{password_name}.password"
        assert direct["value"].startswith("postgresql://") and secret in direct["value"]
        assert f"@${{{host}}}/" in direct["value"]
        assert f'@${{replace({host}, "/^([^.]+)/", "$1-pooler")}}/' in pooled["value"]
        assert direct["value"].endswith("?sslmode=require")

    out = tmp_path / "org"
    proc = subprocess.run(
        [str(BIN / "forkstage"), "synth", "--stage", "staging", "--out", str(out)],
        cwd=REPO,
        env=env(tmp_path, NEON_ORG_ID="org-cool-sky-12345678"),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads((out / "stacks" / "stack-staging" / "cdk.tf.json").read_text())
    assert single(cfg["resource"], "neon_project")[1]["org_id"] == "org-cool-sky-12345678"


def test_the_cloud_target_synthesizes_what_the_real_providers_need(tmp_path: Path) -> None:
    """Issue 12: with FORKSTAGE_TARGET=cloud, staging's project carries the org and a Free-plan
    retention, every Cloudflare resource the configured account, and every stage workers.dev
    switched on, a workers.dev `worker_url` and sensitive database URLs."""
    account, subdomain = "0123456789abcdef0123456789abcdef", "acme-previews"
    cloud = env(
        tmp_path,
        FORKSTAGE_TARGET="cloud",
        NEON_ORG_ID="org-cool-sky-12345678",
        CLOUDFLARE_ACCOUNT_ID=account,
        CLOUDFLARE_WORKERS_SUBDOMAIN=subdomain,
    )
    for stage in ("staging", "pr-147"):
        out = tmp_path / stage
        proc = subprocess.run(
            [str(BIN / "forkstage"), "synth", "--stage", stage, "--out", str(out)],
            cwd=REPO,
            env=cloud,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        cfg = json.loads((out / "stacks" / f"stack-{stage}" / "cdk.tf.json").read_text())
        resources = cfg["resource"]
        if stage == "staging":
            _, project = single(resources, "neon_project")
            assert project["org_id"] == "org-cool-sky-12345678"
            assert project["history_retention_seconds"] <= 21600
        else:
            assert "neon_project" not in resources
        cloudflare = [
            body for kind, items in resources.items() if kind.startswith("cloudflare_")
            for body in items.values()
        ]  # fmt: skip
        assert len(cloudflare) == 3 and all(b["account_id"] == account for b in cloudflare)
        _, on = single(resources, "cloudflare_workers_script_subdomain")
        assert on["enabled"] is True
        script_name, _ = single(resources, "cloudflare_workers_script")
        assert on["script_name"] == f"${{cloudflare_workers_script.{script_name}.script_name}}"
        outputs = cfg["output"]
        assert outputs["worker_url"]["value"].endswith(f".{subdomain}.workers.dev")
        assert outputs["worker_url"]["value"].startswith("https://")
        assert "sensitive" not in outputs["worker_url"]
        for name in ("database_url", "database_url_pooled"):
            assert outputs[name]["sensitive"] is True
