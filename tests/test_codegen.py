"""Generated provider bindings: in sync with the snapshots, faithful snapshots, correct synth."""

from __future__ import annotations

import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

from cdk import core
from cdk.providers import codegen, refresh
from cdk.providers import schema as sch
from cdk.providers.generated import cloudflare, neon
from cdk.providers.pins import CLOUDFLARE, NEON, PINS, ProviderPin
from forkstage.cli import main as cli_main
from forkstage.commands.providers import direct_engine

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- generated == rendered


@pytest.fixture(scope="module")
def rendered() -> dict[str, str]:
    return codegen.render_all()


def test_committed_generated_code_is_what_the_snapshots_render_to(rendered, tmp_path):
    codegen.write(tmp_path, rendered)
    for name in rendered:
        committed = (codegen.GENERATED_DIR / name).read_bytes()
        assert (tmp_path / name).read_bytes() == committed, (
            f"cdk/providers/generated/{name} is stale or hand-edited: run `make generate`"
        )
    assert sorted(p.name for p in codegen.GENERATED_DIR.glob("*.py")) == sorted(rendered)


def test_check_mode_names_the_stale_file(rendered, tmp_path, capsys):
    codegen.write(tmp_path, rendered)
    assert codegen.main(["--check", "--outdir", str(tmp_path)]) == 0
    edited = tmp_path / "neon.py"
    edited.write_text(edited.read_text().replace("neon_branch", "neon_brunch", 1))
    assert codegen.main(["--check", "--outdir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{edited}: out of date" in err
    assert "cloudflare.py" not in err


def test_a_snapshot_change_changes_the_generated_code(rendered, tmp_path):
    shutil.copytree(sch.SCHEMAS_DIR, tmp_path, dirs_exist_ok=True)
    path = tmp_path / "neon.json"
    doc = json.loads(path.read_text())
    branch = doc["provider_schemas"][NEON.fqn]["resource_schemas"]["neon_branch"]["block"]
    del branch["attributes"]["protected"]
    path.write_text(sch.dump_snapshot(doc))
    again = codegen.render_all(tmp_path)
    assert again["cloudflare.py"] == rendered["cloudflare.py"]
    assert "protected" in rendered["neon.py"].split("class Branch(")[1].split("\nclass ")[0]
    assert "protected" not in again["neon.py"].split("class Branch(")[1].split("\nclass ")[0]


@pytest.mark.parametrize("runtime", ["cdktf", "cdktn"])
def test_reserved_names_cover_the_base_classes_of_both_runtimes(runtime):
    lib = importlib.import_module(runtime)  # only read here: classes, no construct is made
    bases = (lib.TerraformResource, lib.TerraformDataSource, lib.TerraformProvider)
    members = {n for b in bases for n in dir(b) if not n.startswith("_")}
    assert members <= codegen.RESERVED, sorted(members - codegen.RESERVED)
    assert codegen.py_name("provider") == "provider_attribute"
    assert codegen.py_name("from") == "from_attribute"
    assert codegen.py_name("database_host") == "database_host"


# --------------------------------------------------------------------------- snapshots


def _walk(block: sch.Block, where: str):
    for a in block.attributes:
        yield f"{where}.{a.name}", a
        if a.nested:
            yield from _walk(sch.Block(a.nested.attributes, (), ""), f"{where}.{a.name}")
    for b in block.block_types:
        yield from _walk(b.block, f"{where}.{b.name}")


@pytest.mark.parametrize("pin", list(PINS.values()), ids=list(PINS))
def test_snapshot_is_well_formed_and_holds_exactly_the_pinned_types(pin: ProviderPin):
    text = sch.snapshot_path(pin).read_text()
    doc = json.loads(text)
    assert text == sch.dump_snapshot(doc), "snapshot must be pretty-printed with sorted keys"
    assert list(doc["provider_schemas"]) == [pin.fqn]
    assert set(doc["provider_schemas"][pin.fqn]) == {
        "provider",
        "resource_schemas",
        "data_source_schemas",
    }
    ps = sch.load(pin)
    assert sorted(ps.resources) == sorted(pin.resources)
    assert sorted(ps.data_sources) == sorted(pin.data_sources)
    tops = [("provider", ps.provider), *ps.resources.items(), *ps.data_sources.items()]
    count = 0
    for name, schema in tops:
        for where, a in _walk(schema.block, name):
            count += 1
            assert (a.type is None) != (a.nested is None), where
            flags = (a.required, a.optional, a.computed)
            assert flags in {
                (True, False, False),
                (False, True, False),
                (False, False, True),
                (False, True, True),
            }, where
    assert count > 10


def _attr(pin: ProviderPin, kind: str, tf_type: str, path: str) -> sch.Attribute:
    ps = sch.load(pin)
    top = ps.provider if kind == "provider" else getattr(ps, kind)[tf_type]
    found = dict(_walk(top.block, tf_type))
    return found[f"{tf_type}.{path}"]


@pytest.mark.parametrize(
    ("pin", "kind", "tf_type", "path", "type_", "flags"),
    [
        (NEON, "provider", "neon", "api_key", "string", "optional"),
        (NEON, "resources", "neon_project", "id", "string", "computed"),
        (NEON, "resources", "neon_project", "default_branch_id", "string", "computed"),
        (NEON, "resources", "neon_project", "database_password", "string", "computed,sensitive"),
        (NEON, "resources", "neon_project", "connection_uri", "string", "computed,sensitive"),
        (NEON, "resources", "neon_project", "database_host", "string", "computed"),
        (NEON, "resources", "neon_project", "pg_version", "number", "optional,computed"),
        (NEON, "resources", "neon_project", "store_password", "string", "optional"),
        (NEON, "resources", "neon_project", "branch.role_name", "string", "optional,computed"),
        (NEON, "resources", "neon_branch", "project_id", "string", "required"),
        (NEON, "resources", "neon_branch", "parent_timestamp", "number", "optional,computed"),
        (NEON, "resources", "neon_endpoint", "branch_id", "string", "required"),
        (NEON, "resources", "neon_endpoint", "host", "string", "computed"),
        (NEON, "resources", "neon_endpoint", "pg_settings", ["map", "string"], "optional"),
        (
            NEON,
            "data_sources",
            "neon_branch_role_password",
            "password",
            "string",
            "computed,sensitive",
        ),
        (NEON, "data_sources", "neon_branch_role_password", "role_name", "string", "required"),
        # sensitive since the v5.22.0 pin (internal/provider.go ProviderSchema)
        (CLOUDFLARE, "provider", "cloudflare", "api_token", "string", "optional,sensitive"),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_hyperdrive_config",
            "account_id",
            "string",
            "required",
        ),
        (CLOUDFLARE, "resources", "cloudflare_hyperdrive_config", "id", "string", "computed"),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_hyperdrive_config",
            "origin.password",
            "string",
            "required,sensitive",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_hyperdrive_config",
            "origin.port",
            "number",
            "optional",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_hyperdrive_config",
            "caching.disabled",
            "bool",
            "optional,computed",
        ),
        (CLOUDFLARE, "resources", "cloudflare_workers_script", "script_name", "string", "required"),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script",
            "compatibility_flags",
            ["set", "string"],
            "optional,computed",
        ),
        (CLOUDFLARE, "resources", "cloudflare_workers_script", "bindings.id", "string", "optional"),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script",
            "bindings.type",
            "string",
            "required",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script",
            "bindings.text",
            "string",
            "optional,sensitive",
        ),
        # added by hand from provider-behaviour.md (workers_script_subdomain/schema.go, v5.14.0)
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script_subdomain",
            "id",
            "string",
            "computed",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script_subdomain",
            "account_id",
            "string",
            "required",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script_subdomain",
            "script_name",
            "string",
            "required",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script_subdomain",
            "enabled",
            "bool",
            "required",
        ),
        (
            CLOUDFLARE,
            "resources",
            "cloudflare_workers_script_subdomain",
            "previews_enabled",
            "bool",
            "optional,computed",
        ),
    ],
)
def test_snapshot_attribute_facts(pin, kind, tf_type, path, type_, flags):
    a = _attr(pin, kind, tf_type, path)
    assert a.type == type_
    names = ("required", "optional", "computed", "sensitive", "write_only")
    assert ",".join(n for n in names if getattr(a, n)) == flags


def test_snapshot_nesting_modes():
    project = sch.load(NEON).resources["neon_project"].block
    branch = {b.name: b for b in project.block_types}["branch"]
    assert (branch.nesting_mode, branch.max_items) == ("list", 1)
    hd = {
        a.name: a
        for a in sch.load(CLOUDFLARE).resources["cloudflare_hyperdrive_config"].block.attributes
    }
    assert hd["origin"].nested is not None and hd["origin"].nested.nesting_mode == "single"
    assert hd["origin"].required
    ws = sch.load(CLOUDFLARE).resources["cloudflare_workers_script"].block.attributes
    bindings = {a.name: a for a in ws}["bindings"]
    assert bindings.nested is not None and bindings.nested.nesting_mode == "list"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a.update(computed=True), "exactly one of required/optional/computed"),
        (lambda a: a.pop("type"), "neither type nor nested_type"),
        (lambda a: a.update(type="text"), "is not a Terraform type"),
        (lambda a: a.update(type=["list"]), "is not a Terraform type"),
    ],
)
def test_parser_rejects_malformed_attributes(mutate, message):
    doc = json.loads(sch.snapshot_path(NEON).read_text())
    attrs = doc["provider_schemas"][NEON.fqn]["resource_schemas"]["neon_branch"]["block"]
    mutate(attrs["attributes"]["project_id"])
    with pytest.raises(sch.SchemaError, match=message):
        sch.parse(doc, NEON)


# --------------------------------------------------------------------------- synth


def _stack(tmp_path: Path) -> tuple[Any, dict[str, Any]]:
    app = core.App(outdir=str(tmp_path / "out"))
    stack = core.TerraformStack(app, "pr-7")
    neon.NeonProvider(stack, "neon")
    cloudflare.CloudflareProvider(stack, "cloudflare")
    project = neon.Project(
        stack, "project", name="shop", store_password="yes", branch={"name": "main"}
    )
    branch = neon.Branch(
        stack, "branch", project_id=project.id, parent_id=project.default_branch_id, name="pr-7"
    )
    endpoint = neon.Endpoint(stack, "endpoint", project_id=project.id, branch_id=branch.id)
    password = neon.DataNeonBranchRolePassword(
        stack,
        "password",
        project_id=project.id,
        branch_id=branch.id,
        role_name=project.database_user,
    )
    hyperdrive = cloudflare.HyperdriveConfig(
        stack,
        "hyperdrive",
        account_id="acc-1",
        name="shop-pr-7",
        origin={
            "host": endpoint.host,
            "port": 5432,
            "scheme": "postgresql",
            "database": project.database_name,
            "user": project.database_user,
            "password": password.password,
        },
        caching={"disabled": True},
    )
    cloudflare.WorkersScript(
        stack,
        "worker",
        account_id="acc-1",
        script_name="shop-pr-7",
        content="export default {}",
        main_module="index.js",
        compatibility_flags=("nodejs_compat",),
        bindings=[{"type": "hyperdrive", "name": "HYPERDRIVE", "id": hyperdrive.id}],
    )
    app.synth()
    out = tmp_path / "out" / "stacks" / "pr-7" / "cdk.tf.json"
    return app, json.loads(out.read_text())


OTHER_RUNTIME_SCRIPT = """
import sys
from pathlib import Path
from cdk.core import RUNTIME
from tests.test_codegen import _stack
_stack(Path(sys.argv[1]))
print(RUNTIME)
"""


def _without_metadata(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_metadata(v) for k, v in node.items() if k != "//"}
    if isinstance(node, list):
        return [_without_metadata(v) for v in node]
    return node


def test_the_same_bindings_synthesize_the_same_config_on_the_other_runtime(tmp_path):
    """One set of bindings, generated once from the snapshots, for cdktf and cdktn alike."""
    for side in ("here", "other"):
        (tmp_path / side).mkdir()
    _, here = _stack(tmp_path / "here")
    other = "cdktn" if core.RUNTIME == "cdktf" else "cdktf"
    done = subprocess.run(
        [sys.executable, "-c", OTHER_RUNTIME_SCRIPT, str(tmp_path / "other")],
        cwd=ROOT,
        env={**os.environ, "FORKSTAGE_CDK": other},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [other]
    there = json.loads((tmp_path / "other" / "out" / "stacks" / "pr-7" / "cdk.tf.json").read_text())
    assert _without_metadata(there) == _without_metadata(here)
    assert here["//"]["metadata"]["version"] != there["//"]["metadata"]["version"]


def _body(doc: dict[str, Any], section: str, tf_type: str, name: str) -> dict[str, Any]:
    body = dict(doc[section][tf_type][name])
    body.pop("//")
    return body


def test_synth_renders_types_references_and_pinned_providers(tmp_path):
    _, doc = _stack(tmp_path)
    assert set(doc) == {"//", "data", "provider", "resource", "terraform"}
    assert set(doc["terraform"]) == {"backend", "required_providers"}
    assert doc["terraform"]["required_providers"] == {
        "neon": {"source": "kislerdm/neon", "version": NEON.version},
        "cloudflare": {"source": "cloudflare/cloudflare", "version": CLOUDFLARE.version},
    }
    assert doc["provider"] == {"neon": [{}], "cloudflare": [{}]}
    assert set(doc["resource"]) == {
        "neon_project",
        "neon_branch",
        "neon_endpoint",
        "cloudflare_hyperdrive_config",
        "cloudflare_workers_script",
    }
    assert set(doc["data"]) == {"neon_branch_role_password"}
    assert _body(doc, "resource", "neon_project", "project") == {
        "name": "shop",
        "store_password": "yes",
        "branch": [{"name": "main"}],
    }
    assert _body(doc, "resource", "neon_branch", "branch") == {
        "project_id": "${neon_project.project.id}",
        "parent_id": "${neon_project.project.default_branch_id}",
        "name": "pr-7",
    }
    assert _body(doc, "resource", "neon_endpoint", "endpoint") == {
        "project_id": "${neon_project.project.id}",
        "branch_id": "${neon_branch.branch.id}",
    }
    assert _body(doc, "data", "neon_branch_role_password", "password") == {
        "project_id": "${neon_project.project.id}",
        "branch_id": "${neon_branch.branch.id}",
        "role_name": "${neon_project.project.database_user}",
    }
    assert _body(doc, "resource", "cloudflare_hyperdrive_config", "hyperdrive") == {
        "account_id": "acc-1",
        "name": "shop-pr-7",
        "origin": {
            "host": "${neon_endpoint.endpoint.host}",
            "port": 5432,
            "scheme": "postgresql",
            "database": "${neon_project.project.database_name}",
            "user": "${neon_project.project.database_user}",
            "password": "${data.neon_branch_role_password.password.password}",
        },
        "caching": {"disabled": True},
    }
    assert _body(doc, "resource", "cloudflare_workers_script", "worker") == {
        "account_id": "acc-1",
        "script_name": "shop-pr-7",
        "content": "export default {}",
        "main_module": "index.js",
        "compatibility_flags": ["nodejs_compat"],
        "bindings": [
            {
                "type": "hyperdrive",
                "name": "HYPERDRIVE",
                "id": "${cloudflare_hyperdrive_config.hyperdrive.id}",
            }
        ],
    }


def test_getters_are_typed_references(tmp_path):
    app = core.App(outdir=str(tmp_path))
    stack = core.TerraformStack(app, "s")
    project = neon.Project(stack, "p")
    endpoint = neon.Endpoint(stack, "e", project_id=project.id, branch_id="br-1")
    for value in (project.id, project.database_password, endpoint.host, endpoint.proxy_host):
        assert isinstance(value, str) and core.Token.is_unresolved(value)
    assert core.Token.is_unresolved(endpoint.suspend_timeout_seconds)  # a number token
    assert isinstance(endpoint.pg_settings, dict) or core.Token.is_unresolved(endpoint.pg_settings)
    assert neon.Project.TF_RESOURCE_TYPE == "neon_project"
    assert neon.DataNeonBranchRolePassword.TF_RESOURCE_TYPE == "neon_branch_role_password"
    assert cloudflare.WorkersScript.TF_RESOURCE_TYPE == "cloudflare_workers_script"
    assert (
        cloudflare.WorkersScriptSubdomain.TF_RESOURCE_TYPE == "cloudflare_workers_script_subdomain"
    )


def test_provider_alias_and_config_reach_the_output(tmp_path):
    app = core.App(outdir=str(tmp_path))
    stack = core.TerraformStack(app, "s")
    other = neon.NeonProvider(stack, "neon2", alias="other", api_key="${var.neon_key}")
    neon.Project(stack, "p", provider=other)
    app.synth()
    doc = json.loads((tmp_path / "stacks" / "s" / "cdk.tf.json").read_text())
    assert doc["provider"]["neon"] == [{"alias": "other", "api_key": "${var.neon_key}"}]
    assert doc["resource"]["neon_project"]["p"]["provider"] == "neon.other"


HCL_SCRIPT = """
import sys
from cdk import core
from cdk.providers.generated import cloudflare, neon

app = core.App(outdir=sys.argv[1], hcl_output=True)
stack = core.TerraformStack(app, "s")
neon.NeonProvider(stack, "neon")
cloudflare.CloudflareProvider(stack, "cloudflare")
project = neon.Project(stack, "p", branch={"name": "main"}, allowed_ips=["10.0.0.1"])
cloudflare.HyperdriveConfig(
    stack,
    "h",
    account_id="a",
    name="n",
    origin={
        "host": project.database_host,
        "database": "d",
        "user": "u",
        "password": project.database_password,
        "scheme": "postgres",
    },
)
app.synth()
"""


@pytest.mark.parametrize("runtime", ["cdktf", "cdktn"])
def test_hcl_output_renders_blocks_and_nested_attributes(tmp_path, runtime):
    # The node process reads SYNTH_HCL_OUTPUT when it starts, hence a child interpreter.
    env = {**os.environ, "SYNTH_HCL_OUTPUT": "true", "FORKSTAGE_CDK": runtime}
    done = subprocess.run(
        [sys.executable, "-c", HCL_SCRIPT, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    hcl = (tmp_path / "stacks" / "s" / "cdk.tf").read_text()
    assert (
        'resource "neon_project" "p" {\nallowed_ips = [\n"10.0.0.1"\n]\nbranch {\nname = "main"\n}'
        in hcl
    )
    assert 'origin = {\nhost = "${neon_project.p.database_host}"' in hcl


# --------------------------------------------------------------------------- typed keyword-only


def test_unknown_or_missing_keyword_arguments_raise_type_error(tmp_path):
    stack = core.TerraformStack(core.App(outdir=str(tmp_path)), "s")
    with pytest.raises(TypeError, match="nme"):
        neon.Project(stack, "p", nme="typo")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="project_id"):
        neon.Branch(stack, "b")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        neon.Branch(stack, "b2", "positional-project")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="bindngs"):
        cloudflare.WorkersScript(stack, "w", account_id="a", script_name="s", bindngs=[])  # type: ignore[call-arg]


def test_nested_dicts_are_checked(tmp_path):
    stack = core.TerraformStack(core.App(outdir=str(tmp_path)), "s")
    origin = {"host": "h", "database": "d", "user": "u", "password": "p", "scheme": "postgres"}
    with pytest.raises(
        TypeError, match=r"origin: HyperdriveConfigOrigin got unexpected key\(s\) hots"
    ):
        cloudflare.HyperdriveConfig(
            stack,
            "h1",
            account_id="a",
            name="n",
            origin={**origin, "hots": "x"},  # type: ignore[arg-type]
        )
    partial = {k: v for k, v in origin.items() if k != "password"}
    with pytest.raises(TypeError, match=r"missing required key\(s\) password"):
        cloudflare.HyperdriveConfig(stack, "h2", account_id="a", name="n", origin=partial)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"bindings\[1\]: WorkersScriptBindings"):
        cloudflare.WorkersScript(
            stack,
            "w",
            account_id="a",
            script_name="s",
            bindings=[{"type": "plain_text", "name": "A", "text": "x"}, {"typ": "x"}],  # type: ignore[typeddict-unknown-key, typeddict-item]
        )
    # a rejected construct never joined the tree
    assert [c.node.id for c in stack.node.children] == []


# --------------------------------------------------------------------------- refresh


def _full_schema_fixture() -> dict[str, Any]:
    doc = json.loads(sch.snapshot_path(NEON).read_text())
    full = copy.deepcopy(doc)
    raw = full["provider_schemas"][NEON.fqn]
    raw["resource_schemas"]["neon_role"] = {
        "version": 0,
        "block": {"attributes": {"id": {"type": "string", "computed": True}}},
    }
    raw["data_source_schemas"]["neon_branches"] = {
        "version": 0,
        "block": {"attributes": {"id": {"type": "string", "computed": True}}},
    }
    raw["ephemeral_resource_schemas"] = {"neon_x": {"version": 0, "block": {}}}
    full["provider_schemas"]["registry.terraform.io/hashicorp/random"] = {"provider": {}}
    return full


def test_refresh_filter_keeps_only_the_pinned_types():
    committed = json.loads(sch.snapshot_path(NEON).read_text())
    assert refresh.filter_schema(_full_schema_fixture(), NEON) == committed


def test_refresh_filter_names_types_the_provider_lacks():
    full = _full_schema_fixture()
    del full["provider_schemas"][NEON.fqn]["resource_schemas"]["neon_endpoint"]
    with pytest.raises(refresh.RefreshError, match="has no resource neon_endpoint"):
        refresh.filter_schema(full, NEON)
    with pytest.raises(
        refresh.RefreshError, match=r"no provider registry\.terraform\.io/kislerdm/neon"
    ):
        refresh.filter_schema({"provider_schemas": {}}, NEON)


def test_refresh_fails_in_one_line_when_init_cannot_install(tmp_path):
    # .invalid never resolves, so this runs the real engine and fails the same way everywhere.
    pin = ProviderPin(
        name="neon", source="kislerdm/neon", version="0.15.0", hostname="registry.invalid"
    )
    out = tmp_path / "neon.json"
    with pytest.raises(refresh.RefreshError) as err:
        refresh.refresh(pin, direct_engine(tmp_path / "home"), out)
    message = str(err.value)
    assert message.startswith("terraform init could not install kislerdm/neon 0.15.0 (")
    assert "\n" not in message
    assert not out.exists()


def test_refresh_cli_rejects_unknown_provider():
    result = CliRunner().invoke(cli_main, ["providers", "refresh", "aws"])
    assert result.exit_code == 2
    err = result.stderr
    assert err.count("\n") == 1 and "neon|cloudflare" in err


def test_generated_modules_import_nothing_heavy():
    for module in (neon, cloudflare):
        text = Path(module.__file__ or "").read_text()
        imports = {ln.split()[1] for ln in text.splitlines() if ln.startswith(("import ", "from "))}
        assert imports <= {
            "__future__",
            "collections.abc",
            "typing",
            "constructs",
            "cdk",  # from cdk import core: cdktf or cdktn, whichever the app runs on
            "cdk.providers",
            "cdk.providers.pins",
        }


def test_typed_dicts_know_their_required_keys_at_runtime():
    # origin.host is optional since v5.19 (an origin may be a Workers VPC service instead)
    assert cloudflare.HyperdriveConfigOrigin.__required_keys__ == {
        "database",
        "password",
        "scheme",
        "user",
    }
    assert cloudflare.WorkersScriptBindings.__required_keys__ == {"name", "type"}
    assert neon.ProjectBranch.__required_keys__ == set()
