"""Which CDK runtime an app runs on (issue 24): `[app] cdk` in forkstage.toml, FORKSTAGE_CDK for
one run, and one line with exit 2 when the app's imports or the installed packages disagree.

"Not installed" is a real environment: a venv beside this one holding the same packages (linked)
but cdktn's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from cdk.runtime import DEFAULT, ENV, RuntimeChoiceError, configured, imported_runtimes
from tests import procs
from tests.wrapper_env import REPO

BIN = Path(sys.executable).parent
SITE = Path(next(p for p in sys.path if p.endswith("site-packages")))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`forkstage init --cdk cdktn`: an app on cdktn (Node tooling linked from this checkout)."""
    folder = tmp_path_factory.mktemp("choice") / "shop"
    done = procs.run(
        [str(BIN / "forkstage"), "init", str(folder), "--name", "shop", "--cdk", "cdktn"],
        cwd=folder.parent,
        timeout=60,
    )
    procs.assert_ok(done)
    (folder / "node_modules").symlink_to(REPO / "node_modules")
    return folder


@pytest.fixture(scope="module")
def without_cdktn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of a venv with every package of this one but cdktn."""
    home = tmp_path_factory.mktemp("no-cdktn")
    venv.create(home, with_pip=False, symlinks=True)
    [site] = list(home.glob("lib/python*/site-packages"))
    for entry in SITE.iterdir():
        if not entry.name.startswith("cdktn"):
            (site / entry.name).symlink_to(entry)
    return home / "bin" / "python"


def synth(app: Path, *, python: Path = BIN / "python", **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FORKSTAGE_", "STAGE"))}
    env.update(FORKSTAGE_HOME=str(app / ".forkstage"), **extra)
    env["PATH"] = (
        f"{python.parent}{os.pathsep}{REPO / 'node_modules' / '.bin'}{os.pathsep}" + env["PATH"]
    )
    return procs.run(
        [str(python), "-m", "forkstage", "synth", "--stage", "pr-1", "--out", str(app / "out")],
        cwd=app,
        env=env,
        timeout=120,
    )


def one_line_exit_2(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, procs.failure(done)
    [line] = done.stderr.strip().splitlines()
    return line


def test_the_setting_the_override_and_the_default(tmp_path: Path) -> None:
    (tmp_path / "app" / "stacks").mkdir(parents=True)
    assert configured(tmp_path / "app", {}) == (DEFAULT, "the default")
    (tmp_path / "forkstage.toml").write_text('[app]\nname = "x"\ncdk = "cdktn"\n')
    assert configured(tmp_path / "app" / "stacks", {}) == ("cdktn", "forkstage.toml [app] cdk")
    assert configured(tmp_path / "app", {ENV: "cdktf"}) == ("cdktf", ENV)
    with pytest.raises(RuntimeChoiceError, match=r'^FORKSTAGE_CDK must be "cdktf" or "cdktn"'):
        configured(tmp_path, {ENV: "pulumi"})


def test_the_app_s_imports_are_followed_from_its_entry(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "__init__.py").write_text("")
    (tmp_path / "stacks" / "app.py").write_text("from cdktn import TerraformOutput\n")
    (tmp_path / "stacks" / "unused.py").write_text("import cdktf\n")  # not imported: not counted
    (tmp_path / "main.py").write_text(
        '"""Docs may say: from cdktf import App."""\nfrom forkstage.app import run\n'
        'run("stacks.app:AppStack", __file__)\n'
    )
    assert imported_runtimes(tmp_path, tmp_path / "main.py") == {
        "cdktn": tmp_path / "stacks" / "app.py"
    }


def test_an_app_importing_the_other_runtime_is_refused_in_one_line(shop: Path) -> None:
    stack = shop / "stacks" / "app.py"
    original = stack.read_text()
    stack.write_text(original.replace("from constructs", "from cdktf import Fn\nfrom constructs"))
    try:
        line = one_line_exit_2(synth(shop))
    finally:
        stack.write_text(original)
    assert line == (
        "Error: stacks/app.py imports cdktf but the app runs on cdktn (forkstage.toml [app] cdk): "
        'import from cdk.core (or cdktn), or set [app] cdk = "cdktf" in forkstage.toml'
    )
    assert not (shop / "out" / "stacks").exists()
    done = synth(shop)
    assert done.returncode == 0, procs.failure(done)


def test_a_runtime_that_is_not_installed_says_what_to_install(
    shop: Path, without_cdktn: Path
) -> None:
    line = one_line_exit_2(synth(shop, python=without_cdktn))
    assert line == (
        "Error: this app runs on cdktn (forkstage.toml [app] cdk) but cdktn is not installed: "
        "pip install 'forkstage[cdktn]'"
    )
    # the same app on cdktf (FORKSTAGE_CDK for one run) synthesizes there
    done = synth(shop, python=without_cdktn, FORKSTAGE_CDK="cdktf")
    assert done.returncode == 0, procs.failure(done)


def test_an_unknown_runtime_in_the_settings_is_refused(shop: Path) -> None:
    settings = shop / "forkstage.toml"
    original = settings.read_text()
    settings.write_text(original.replace('cdk = "cdktn"', 'cdk = "pulumi"'))
    try:
        line = one_line_exit_2(synth(shop))
    finally:
        settings.write_text(original)
    assert line == 'Error: forkstage.toml: app.cdk must be one of "cdktf", "cdktn"'


@pytest.mark.parametrize(
    ("cdk", "cli", "install"),
    [("cdktf", "cdktf-cli", "forkstage=="), ("cdktn", "cdktn-cli", "forkstage[cdktn]==")],
)
def test_init_writes_the_runtime_its_cli_and_how_ci_installs_it(
    tmp_path: Path, cdk: str, cli: str, install: str
) -> None:
    args = [] if cdk == "cdktf" else ["--cdk", cdk]  # cdktf is init's default
    done = procs.run(
        [str(BIN / "forkstage"), "init", "app", "--name", "shop", *args], cwd=tmp_path, timeout=60
    )
    procs.assert_ok(done)
    settings = (tmp_path / "app" / "forkstage.toml").read_text()
    assert f'\ncdk = "{cdk}"\n' in settings
    assert f'\ninstall = "{install}' in settings
    tools = json.loads((tmp_path / "app" / "package.json").read_text())["devDependencies"]
    assert {k for k in tools if k.startswith("cdkt")} == {cli}
    assert configured(tmp_path / "app", {}) == (cdk, "forkstage.toml [app] cdk")


def test_the_cdktn_extra_goes_into_every_kind_of_install_requirement() -> None:
    from forkstage.scaffold import with_extra

    assert with_extra("forkstage==0.1.0", "cdktn") == "forkstage[cdktn]==0.1.0"
    assert with_extra("forkstage", "cdktn") == "forkstage[cdktn]"
    assert with_extra("forkstage @ git+https://x/y@abc", "cdktn") == (
        "forkstage[cdktn] @ git+https://x/y@abc"
    )
    assert with_extra("./tools/forkstage", "cdktn") == "./tools/forkstage[cdktn]"
    assert with_extra(".", "cdktn") == ".[cdktn]"
    assert with_extra("forkstage[cdktn]==0.1.0", "cdktn") == "forkstage[cdktn]==0.1.0"


def test_init_says_to_install_cdktn_where_it_is_missing(
    tmp_path: Path, without_cdktn: Path
) -> None:
    init = [str(without_cdktn), "-m", "forkstage", "init"]
    missing = procs.run([*init, "shop", "--cdk", "cdktn"], cwd=tmp_path, timeout=60)
    procs.assert_ok(missing)
    steps = missing.stdout.split("next:\n")[1].splitlines()
    assert steps[0].split("#")[0].strip() == "pip install 'forkstage[cdktn]'"
    other = procs.run([*init, "other", "--cdk", "cdktf"], cwd=tmp_path, timeout=60)
    procs.assert_ok(other)
    assert "pip install" not in other.stdout  # cdktf comes with forkstage
