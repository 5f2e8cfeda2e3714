"""Deployed stages keep working: today's synth of every stage matches the committed baseline.

tests/data/synth-baseline/<stage>.json is `forkstage synth --stage <stage>` of the code before
the constructs were reworked (migrations moved under the branch, defaults from the stack). Every
resource, data source, output and provider must keep its address and its body, so a stage
deployed by the old code plans as a no-op. Only what legitimately varies is normalised, in the
baseline and in today's output alike: cdktf's "//" metadata (construct paths), and what is
derived from the app's inputs: the Worker bundle's hash and the migrations folder's digest (each
checked against its files first), and the content hash in each asset's path (its folder, named
after the construct path, is kept). A deliberate change of the deployed config updates these
files in the same commit; a refactor never does.

One deliberate change so far (issue 10): the Worker's code is no longer inlined as ``content``
(which put the whole 78 KB bundle into every plan and diff) but shipped as a file asset,
``content_file`` + ``content_sha256``, so ``cloudflare_workers_script.api_script_CD6F5F56`` of
every baseline carries those two attributes instead of ``content``. A deployed stage sees it
as one in-place update of that resource (tests/test_upgrade.py allows exactly that one).

Deliberate changes of issue 12 (the real cloud), each what the real providers need
(docs/provider-behaviour.md): a new ``cloudflare_workers_script_subdomain`` per stage (workers.dev
on, a create) with the ``worker_url`` output; ``history_retention_seconds = 21600`` on owned
projects (Neon's Free-plan cap; the provider's unset default of 86400 is refused there: an
in-place update); cheap compute limits on referencing stages' endpoints (in place); a
postcondition on the role-password read (no resource change); the sensitive outputs
``database_url`` and ``database_url_pooled``. tests/test_upgrade.py allows exactly these.

Deliberate changes of issue 19 (guards in the config), lifecycle settings only, so no plan
changes: ``prevent_destroy`` on the project and branch of the owner (staging) and protected
(prod) stages, and on every stage that owns its project ``replace_triggered_by`` on the branch
(the project's id) and the endpoint (the branch's id): a new project holds none of the old one's.

Deliberate changes of issue 20 (the provider audit), pr-147 only: ``caching { disabled = true }``
on the preview's Hyperdrive (reads are not cached for 60 s; an in-place update), and no
``suspend_timeout_seconds`` on its endpoint (sent only when configured: a paid-plan setting on
Neon; Optional+Computed, so dropping it keeps the deployed value and plans nothing).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

REPO = Path(__file__).resolve().parent.parent
BASELINE = Path(__file__).resolve().parent / "data" / "synth-baseline"
STAGES = ("pr-147", "staging", "prod", "dev_sam")
BUNDLE = REPO / "worker" / "dist" / "index.js"
ASSET_DIR = re.compile(r"(assets/[A-Za-z0-9_-]+)/[0-9A-F]{32}")
BUNDLE_SHA256 = "<sha256 of worker/dist/index.js>"


def normalise(doc: dict[str, Any], stack_dir: Path) -> dict[str, Any]:
    """``doc`` without "//" metadata and with input-derived values checked and replaced;
    ``stack_dir`` is where it was synthesized (its assets are checked against their sources)."""
    from cdk.migrations import directory_digest

    doc = _without_metadata(doc)
    digest = directory_digest(REPO / "migrations")
    for script in doc["resource"].get("cloudflare_workers_script", {}).values():
        assert "content" not in script, "the Worker's code must not be inlined"
        # a relative path inside the stack folder, holding exactly the committed bundle
        assert (stack_dir / script["content_file"]).read_bytes() == BUNDLE.read_bytes()
        assert script["content_sha256"] == hashlib.sha256(BUNDLE.read_bytes()).hexdigest()
        script["content_file"] = ASSET_DIR.sub(r"\1/<content hash>", script["content_file"])
        script["content_sha256"] = BUNDLE_SHA256
    for data in doc["resource"].get("terraform_data", {}).values():
        if "triggers_replace" in data:
            assert data["triggers_replace"][0] == digest, "stale migrations digest"
            data["triggers_replace"][0] = "<digest of migrations/>"
        for provisioner in data.get("provisioner", []):
            run = provisioner["local-exec"]
            run["command"] = ASSET_DIR.sub(r"\1/<content hash>", run["command"])
    return doc


def _without_metadata(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_metadata(v) for k, v in node.items() if k != "//"}
    if isinstance(node, list):
        return [_without_metadata(v) for v in node]
    return node


def synth_stage(stage: str, out: Path, runtime: str = "cdktf") -> dict[str, Any]:
    """`forkstage synth --stage <stage> --out <out>` (its own home) and read stack-<stage>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "STAGE"))}
    env["FORKSTAGE_HOME"] = str(out.parent / f"home-{stage}")
    env["FORKSTAGE_CDK"] = runtime
    forkstage = Path(sys.executable).parent / "forkstage"
    proc = subprocess.run(
        [str(forkstage), "synth", "--stage", stage, "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc: dict[str, Any] = json.loads(
        (out / "stacks" / f"stack-{stage}" / "cdk.tf.json").read_text()
    )
    return doc


def addresses(doc: dict[str, Any]) -> set[str]:
    found = {f"{kind}.{name}" for kind, items in doc["resource"].items() for name in items}
    found |= {
        f"data.{kind}.{name}" for kind, items in doc.get("data", {}).items() for name in items
    }
    found |= {f"output.{name}" for name in doc["output"]}
    return found | {f"provider.{name}" for name in doc["provider"]}


@pytest.mark.parametrize("runtime", ["cdktf", "cdktn"])
@pytest.mark.parametrize("stage", STAGES)
def test_stage_synthesizes_as_the_deployed_baseline(
    stage: str, runtime: str, tmp_path: Path
) -> None:
    """On cdktn too (issue 24): a stage deployed with the cdktf app plans no changes on cdktn."""
    out = tmp_path / stage
    ours = normalise(synth_stage(stage, out, runtime), out / "stacks" / f"stack-{stage}")
    baseline = json.loads((BASELINE / f"{stage}.json").read_text())
    assert addresses(ours) == addresses(baseline)
    for section in ("resource", "data", "output", "provider", "terraform"):
        assert ours.get(section) == baseline.get(section), section
    assert ours == baseline


def test_baseline_addresses_are_the_ones_deployed_stages_have() -> None:
    pr = json.loads((BASELINE / "pr-147.json").read_text())
    assert {
        "terraform_data.migrations_run_827536EB",
        "terraform_data.workspace_guard",
        "neon_branch.branch_1A550295",
        "data.terraform_remote_state.db_owner_state_686A9453",
    } <= addresses(pr)


# --------------------------------------------------------------------------- derived ids


def test_logical_id_is_cdktf_s_own() -> None:
    from constructs import Construct

    from cdk.core import App, TerraformResource, TerraformStack
    from cdk.stack import logical_id

    stack = TerraformStack(App(), "s")
    paths = [
        ("migrations", "run"),
        ("db", "owner", "state"),
        ("shop", "shopping", "cart"),  # a part ending the previous one is not repeated
        ("a.b c", "Default", "Resource", "x"),  # disallowed characters; hidden parts
        ("solo",),
        ("x" * 300, "y"),  # the readable half is cut
    ]
    for path in paths:
        scope: Construct = stack
        for part in path[:-1]:
            scope = Construct(scope, part)
        element = TerraformResource(scope, path[-1], terraform_resource_type="terraform_data")
        assert logical_id(*path) == stack.get_logical_id(element), path
    assert logical_id("migrations", "run") == "migrations_run_827536EB"


def _stack_with_two_branches(tmp_path: Path) -> dict[str, Any]:
    from cdk.cloudflare import Hyperdrive
    from cdk.core import App
    from cdk.neon import NeonBranch, NeonProject
    from cdk.settings import load_settings
    from cdk.stack import ForkstageStack
    from cdk.stage import Stage

    settings = load_settings(REPO, environ={})
    app = App(outdir=str(tmp_path / "out"))
    stack = ForkstageStack(app, stage=Stage.parse("dev_two"), settings=settings)
    project = NeonProject(stack, "db")
    for id_ in ("branch", "other"):
        branch = NeonBranch(
            stack, id_, project=project, migrations_dir=settings.migrations_path, name=id_
        )
        Hyperdrive(stack, f"{id_}-hyperdrive", origin=branch.origin, name=id_)
    app.synth()
    doc: dict[str, Any] = json.loads(
        (tmp_path / "out" / "stacks" / "stack-dev_two" / "cdk.tf.json").read_text()
    )
    return doc


def test_two_branches_never_share_an_id_or_an_asset_folder(tmp_path: Path) -> None:
    from cdk.stack import logical_id

    doc = _stack_with_two_branches(tmp_path)
    runs = {name: d for name, d in doc["resource"]["terraform_data"].items() if "provisioner" in d}
    # the first branch keeps the address the stack's migrations had; the other its own path's
    first, other = "migrations_run_827536EB", logical_id("other", "migrations", "run")
    assert set(runs) == {first, other}
    folders = {d["provisioner"][0]["local-exec"]["command"].split("/")[1] for d in runs.values()}
    assert folders == {"migrations_files_2699D836", logical_id("other", "migrations", "files")}
    waits = {
        h["name"]: h["depends_on"] for h in doc["resource"]["cloudflare_hyperdrive_config"].values()
    }
    assert waits == {"branch": [f"terraform_data.{first}"], "other": [f"terraform_data.{other}"]}
