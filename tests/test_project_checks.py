"""Checks before anything runs (issue 18): outside a project nothing happens (item 6), missing
tooling is named before Terraform starts (item 7), settings that would break live stages are
refused at load and stage names are answered with what to type (item 8), and the prepared-shell
gate is the first error Terraform prints (issue 19, item 5)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cdk.settings import SettingsError, load_settings
from forkstage.cli import main
from localcloud.net import free_port
from tests import procs

REPO = Path(__file__).resolve().parent.parent
FORKSTAGE = str(Path(sys.executable).parent / "forkstage")
NOT_A_PROJECT = "not a forkstage project: no forkstage.toml in {here} or above"


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "TF_", "FORKSTAGE_", "CDKTF_")) and k != "STAGE"
    }
    env.update({"HOME": str(tmp / "user-home"), **extra})
    return env


def _listening(endpoint: str) -> bool:
    port = int(endpoint.rsplit(":", 1)[1])
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# -- item 6: outside a project ---------------------------------------------------------------

OUTSIDE = [
    ["stages"],
    ["deploy", "--stage", "staging"],
    ["plan", "--stage", "pr-1"],
    ["destroy", "--stage", "pr-1"],
    ["reset", "--stage", "pr-1"],
    ["prune", "--open", "pr-1"],
    ["outputs", "--stage", "staging"],
    ["summary", "--stage", "staging"],
    ["env", "--stage", "staging"],
    ["synth", "--stage", "staging"],
    ["bundle"],
    ["schema-diff", "--stage", "pr-1"],
    ["unlock", "--stage", "staging"],
    ["local", "up"],
    ["local", "down"],
    ["local", "status"],
    ["local", "serve", "--stage", "pr-1"],
    ["backend", "start"],
    ["backend", "stop"],
    ["backend", "status"],
    ["backend", "serve"],
    ["backend", "credentials", "--policy", "admin"],
    ["backend", "versions", "--stage", "staging"],
    ["backend", "bootstrap"],
    ["migrate", "--stage", "staging"],
    ["migrations", "--stage", "staging"],
    ["providers", "refresh", "neon"],
]


@pytest.mark.parametrize("with_cdktf_json", [False, True], ids=["empty", "cdktf.json-only"])
def test_outside_a_project_every_command_exits_2_creating_and_starting_nothing(
    tmp_path: Path, with_cdktf_json: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "somewhere"
    here.mkdir()
    if with_cdktf_json:  # a cdktf app that is no forkstage project: not a silent app "forkstage"
        (here / "cdktf.json").write_text('{"language": "python", "app": "python3 main.py"}\n')
    before = _tree(tmp_path)
    endpoint = f"http://127.0.0.1:{free_port()}"
    for name in [k for k in os.environ if k.startswith(("FORKSTAGE_", "TF_", "AWS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", endpoint)
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.chdir(here)
    for argv in OUTSIDE:  # in-process: the same code path as the CLI, 50 times faster
        done = CliRunner().invoke(main, argv)
        assert done.exit_code == 2, (argv, done.output)
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("Error: " + NOT_A_PROJECT.format(here=here)), argv
        assert "forkstage init" in lines[-1]
    # one as a process too: its own start-up creates nothing either
    done = procs.run([FORKSTAGE, "stages"], cwd=here, env=dict(os.environ), timeout=60)
    assert done.returncode == 2, procs.failure(done)
    assert _tree(tmp_path) == before  # no .forkstage, no cdktf.out, nothing in $HOME
    assert not _listening(endpoint)


def test_outside_a_project_what_needs_none_still_works(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for argv in (["--help"], ["--version"], ["ci", "render", "github"], ["init", "--help"]):
        done = procs.run([FORKSTAGE, *argv], cwd=tmp_path, env=env, timeout=60)
        assert done.returncode == 0, procs.failure(done)
    # given what they need: a database URL and --dir, an endpoint, a data folder
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    url = "postgresql://u:p@127.0.0.1:9/db"
    done = procs.run(
        [FORKSTAGE, "migrations", "--database-url-env", "DB", "--dir", str(migrations)],
        cwd=tmp_path,
        env={**env, "DB": url},
        timeout=60,
    )
    assert "not a forkstage project" not in done.stderr  # it tried the database itself
    status = procs.run(
        [FORKSTAGE, "backend", "status", "--endpoint", f"http://127.0.0.1:{free_port()}"],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert status.returncode == 1
    assert "no forkstage state server answers" in status.stderr
    creds = procs.run(
        [FORKSTAGE, "backend", "credentials", "--policy", "admin", "--data", str(tmp_path / "d")],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert creds.returncode == 0, procs.failure(creds)
    assert not (tmp_path / ".forkstage").exists()


# -- item 7: tooling checked before Terraform runs --------------------------------------------


@pytest.fixture
def bare_app(tmp_path: Path) -> Path:
    """A `forkstage init` app with no node_modules (npm install not run yet)."""
    done = procs.run(
        [FORKSTAGE, "init", "app", "--name", "shop"], cwd=tmp_path, env=_env(tmp_path), timeout=60
    )
    procs.assert_ok(done)
    return tmp_path / "app"


def _path_without_node_modules() -> str:
    return os.pathsep.join(
        e for e in os.environ.get("PATH", "").split(os.pathsep) if "node_modules" not in e
    )


def test_without_miniflare_deploy_exits_2_before_anything_is_created(
    tmp_path: Path, bare_app: Path
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    home = tmp_path / "home"
    env = _env(
        tmp_path,
        PATH=_path_without_node_modules(),
        FORKSTAGE_HOME=str(home),
        FORKSTAGE_BACKEND_ENDPOINT=endpoint,
    )
    before = _tree(bare_app)
    done = procs.run(
        [FORKSTAGE, "deploy", "--stage", "staging", "--json"], cwd=bare_app, env=env, timeout=60
    )
    assert done.returncode == 2, procs.failure(done)
    assert json.loads(done.stdout) == {
        "error": "missing the local cloud's Node packages (Miniflare): "
        f"run `npm install` in {bare_app}",
        "exit_code": 2,
    }
    # no state server (its data), no synth or init (the work folder), no resource
    assert not [p.name for p in home.glob("*") if p.name in ("state", "work", "providers")]
    assert not _listening(endpoint)
    assert _tree(bare_app) == before


def test_missing_postgresql_and_cdktf_cli_are_named_too(tmp_path: Path, bare_app: Path) -> None:
    # node_modules with Miniflare but no cdktf-cli, and no PostgreSQL binaries
    modules = bare_app / "node_modules"
    (modules / ".bin").mkdir(parents=True)
    (modules / "miniflare").mkdir()
    (modules / "miniflare" / "package.json").write_text("{}")
    home = tmp_path / "home"
    env = _env(
        tmp_path,
        PATH=_path_without_node_modules(),
        FORKSTAGE_HOME=str(home),
        FORKSTAGE_PG_BINDIR=str(tmp_path / "no-postgres"),
    )
    done = procs.run(
        [FORKSTAGE, "deploy", "--stage", "staging", "--via", "cdktf"],
        cwd=bare_app,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2, procs.failure(done)
    error = done.stderr.strip().splitlines()[-1]
    assert error == (
        "Error: missing the PostgreSQL server binaries (initdb, pg_ctl): install PostgreSQL "
        "(Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql); "
        f"cdktf-cli (npx cdktf, --via cdktf): run `npm install` in {bare_app}"
    )
    # `forkstage env` prepares a shell for plain `npx cdktf`: the same check, before anything
    env_done = procs.run(
        [FORKSTAGE, "env", "--stage", "staging"],
        cwd=bare_app,
        env={k: v for k, v in env.items() if k != "FORKSTAGE_PG_BINDIR"},
        timeout=60,
    )
    assert env_done.returncode == 2, procs.failure(env_done)
    assert env_done.stdout == ""  # nothing for eval
    assert env_done.stderr.strip().splitlines()[-1] == (
        f"Error: missing cdktf-cli (npx cdktf, --via cdktf): run `npm install` in {bare_app}"
    )
    assert not [p.name for p in home.glob("*") if p.name in ("state", "work", "providers")]


# -- item 8: settings that cannot break live stages ------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[stages]\nowner = "stagin"\n',
            "forkstage.toml: stages.owner 'stagin' is not in stages.long_lived (staging, prod); "
            "did you mean 'staging'? (the owner stage is long-lived: list it there)",
        ),
        (
            '[stages]\nowner = "main-db"\nlong_lived = ["qa"]\n',
            "forkstage.toml: stages.owner 'main-db' is not in stages.long_lived (qa) "
            "(the owner stage is long-lived: list it there)",
        ),
        *[
            (
                f'[app]\nname = "{name}"\n',
                f"forkstage.toml: app.name {name!r} must be lowercase letters, digits and "
                "hyphens, starting with a letter, not ending with a hyphen, at most 30 "
                "characters (Neon and Cloudflare names are <name>-<construct>-<stage>)",
            )
            for name in ("Ledger App!", "ledger_app", "-shop", "shop-", "9shop", "a" * 31, "a--b")
        ],
    ],
)
def test_settings_that_would_break_live_stages_are_refused_at_load(
    tmp_path: Path, text: str, message: str
) -> None:
    (tmp_path / "forkstage.toml").write_text(text)
    with pytest.raises(SettingsError) as info:
        load_settings(tmp_path, environ={})
    assert str(info.value) == message


def test_valid_names_load(tmp_path: Path) -> None:
    (tmp_path / "forkstage.toml").write_text('[app]\nname = "ledger-app-2"\n')
    assert load_settings(tmp_path, environ={}).app == "ledger-app-2"


@pytest.fixture
def custom_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "forkstage.toml").write_text(
        '[stages]\nowner = "main-db"\nlong_lived = ["main-db", "qa"]\n'
        'referencing = ["preview-*"]\npersonal = []\n'
    )
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_stage_help_and_errors_name_the_projects_own_classes(custom_project: Path) -> None:
    classes = "main-db, qa (long-lived), preview-* (pull requests)"
    shown = CliRunner().invoke(main, ["deploy", "--help"], terminal_width=200)
    assert f"Stage name: {classes}." in " ".join(shown.output.split())
    typo = CliRunner().invoke(main, ["deploy", "--stage", "main-bd"])
    assert typo.exit_code == 2
    assert typo.stderr == (
        f"Error: 'main-bd' is not a stage of this project: stages are {classes}; "
        "add it under [stages] in forkstage.toml; did you mean main-db?\n"
    )


@pytest.mark.parametrize("command", ["deploy", "destroy", "outputs", "synth"])
def test_a_positional_stage_is_answered_with_the_option(custom_project: Path, command: str) -> None:
    done = CliRunner().invoke(main, [command, "preview-7"])
    assert done.exit_code == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: the stage is an option: use --stage preview-7 (stages: main-db, qa "
        "(long-lived), preview-* (pull requests))"
    )
    missing = CliRunner().invoke(main, [command])
    assert missing.exit_code == 2
    assert missing.stderr.strip().splitlines()[-1].startswith("Error: --stage is required")
    assert not (custom_project / ".forkstage").exists()


# -- issue 19, item 5: the gate is the first error block -------------------------------------


def test_the_gate_is_the_first_error_terraform_prints(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = procs.run(
        [FORKSTAGE, "synth", "--stage", "pr-147", "--out", str(out)],
        cwd=REPO,
        env=_env(tmp_path, FORKSTAGE_HOME=str(tmp_path / "home")),
        timeout=120,
    )
    procs.assert_ok(done)
    from forkstage.engine import run_terraform, terraform_env

    folder = out / "stacks" / "stack-pr-147"
    for args in (["init", "-input=false", "-no-color"], ["plan", "-input=false", "-no-color"]):
        ran = run_terraform(args, cwd=folder, env=terraform_env(tmp_path / "tf-home"))
        assert ran.returncode == 1
        blocks = re.split(r"^Error: ", ran.stderr, flags=re.MULTILINE)[1:]
        assert blocks, ran.stderr
        first = blocks[0]
        if args[0] == "init":
            assert len(blocks) == 1  # the only error: nothing else ran
            assert 'eval "$(forkstage env --stage pr-147)"' in first, ran.stderr
    assert not (folder / ".terraform").exists()


# -- items 3-5: the app command, the Worker bundle, a folder that would shadow forkstage ------


@pytest.fixture
def app_with_node(tmp_path: Path, bare_app: Path) -> Path:
    (bare_app / "node_modules").symlink_to(REPO / "node_modules")
    return bare_app


def _synth(app: Path, tmp: Path, stage: str = "staging") -> subprocess.CompletedProcess[str]:
    return procs.run(
        [FORKSTAGE, "synth", "--stage", stage],
        cwd=app,
        env=_env(tmp, FORKSTAGE_HOME=str(tmp / "home")),
        timeout=120,
    )


def test_the_worker_bundle_is_built_when_missing_and_again_when_its_source_changes(
    tmp_path: Path, app_with_node: Path
) -> None:
    app = app_with_node
    bundle = app / "worker" / "dist" / "index.js"
    assert not bundle.exists()  # init writes the source only
    procs.assert_ok(_synth(app, tmp_path))
    first = bundle.read_text()
    assert "// forkstage-bundle-sha256: " in first
    check = procs.run([FORKSTAGE, "bundle", "--check"], cwd=app, env=_env(tmp_path), timeout=60)
    assert (check.returncode, check.stdout) == (0, "worker/dist/index.js is up to date\n")

    source = app / "worker" / "src" / "index.js"
    source.write_text(source.read_text().replace('"not found"', '"nothing here"'))
    stale = procs.run([FORKSTAGE, "bundle", "--check"], cwd=app, env=_env(tmp_path), timeout=60)
    assert stale.returncode == 1
    assert stale.stderr == (
        "Error: worker/dist/index.js is stale: it must be built (forkstage bundle)\n"
    )
    procs.assert_ok(_synth(app, tmp_path))
    assert '"nothing here"' in bundle.read_text() and bundle.read_text() != first


def test_a_missing_entry_point_and_an_app_command_that_cannot_start_are_one_line(
    tmp_path: Path, bare_app: Path
) -> None:
    (bare_app / "worker" / "src" / "index.js").unlink()
    done = _synth(bare_app, tmp_path)
    assert done.returncode == 2, procs.failure(done)
    assert done.stderr == (
        "Error: the Worker's entry point worker/src/index.js is missing: restore it, or set "
        "[paths] worker in forkstage.toml to the folder holding src/index.js\n"
    )
    (bare_app / "cdktf.json").write_text('{"language": "python", "app": "pyhton3 main.py"}\n')
    done = _synth(bare_app, tmp_path)
    assert done.returncode == 2, procs.failure(done)
    assert done.stderr == (
        "Error: the app command 'pyhton3 main.py' (cdktf.json \"app\") cannot start: "
        "No such file or directory\n"
    )


def test_an_app_folder_with_its_own_cdk_package_is_named_not_a_traceback(
    tmp_path: Path, bare_app: Path
) -> None:
    (bare_app / "cdk").mkdir()
    (bare_app / "cdk" / "__init__.py").write_text("")
    message = (
        f"{bare_app}/cdk would shadow forkstage's 'cdk' package (the app's folder comes first "
        "on the import path): rename it, or keep the app in its own folder "
        "(e.g. forkstage init infra)"
    )
    done = _synth(bare_app, tmp_path)
    assert (done.returncode, done.stderr) == (2, f"Error: {message}\n")
    # the plain cdktf path runs the app itself: the same line, from main.py
    plain = procs.run(
        [sys.executable, "main.py"],
        cwd=bare_app,
        env=_env(tmp_path, STAGE="staging"),
        timeout=60,
    )
    assert (plain.returncode, plain.stderr) == (2, f"error: {message}\n")


# -- item 2: init never overwrites ------------------------------------------------------------


def test_init_appends_to_a_gitignore_and_refuses_an_existing_package_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".gitignore").write_text("*.log")  # no newline at the end
    done = CliRunner().invoke(main, ["init", "--name", "shop"])
    assert done.exit_code == 0, done.output
    ignored = (tmp_path / ".gitignore").read_text()
    assert ignored.startswith("*.log\n\n# forkstage (build and runtime output")
    assert "node_modules/\n" in ignored and ".forkstage/\n" in ignored
    assert ".gitignore (appended)" in done.stdout

    other = tmp_path / "other"
    other.mkdir()
    (other / "package.json").write_text('{"name": "web"}\n')
    before = _tree(other)
    refused = CliRunner().invoke(main, ["init", "other", "--name", "shop"])
    assert refused.exit_code == 2
    lines = refused.stderr.strip().splitlines()
    assert lines[0].startswith(f"{other}/package.json exists: add to it devDependencies {{")
    assert '"miniflare": "4.20260426.0"' in lines[0]
    assert lines[-1] == (
        "Error: forkstage init writes nothing: 1 file(s) already there (init never overwrites)"
    )
    assert _tree(other) == before
    bad = CliRunner().invoke(main, ["init", "third", "--name", "Ledger App!"])
    assert bad.exit_code == 2 and not (tmp_path / "third").exists()


@pytest.mark.parametrize(
    ("direct_url", "expected"),
    [
        (None, "forkstage==0.3.1"),  # from an index
        (
            {
                "url": "https://git.example.invalid/org/forkstage.git",
                "vcs_info": {"vcs": "git", "commit_id": "c" * 40, "requested_revision": "main"},
            },
            "forkstage @ git+https://git.example.invalid/org/forkstage.git@" + "c" * 40,
        ),
        (
            {
                "url": "https://git.example.invalid/mono.git",
                "vcs_info": {"vcs": "git", "commit_id": "d" * 40},
                "subdirectory": "tools/forkstage",
            },
            "forkstage @ git+https://git.example.invalid/mono.git@"
            + "d" * 40
            + "#subdirectory=tools/forkstage",
        ),
        (
            {"url": "file://{repo}/vendor/forkstage-0.3.1-py3-none-any.whl"},
            "./vendor/forkstage-0.3.1-py3-none-any.whl",
        ),
        ({"url": "file://{repo}", "dir_info": {"editable": True}}, "."),
        ({"url": "file:///somewhere/else/forkstage-0.3.1-py3-none-any.whl"}, "forkstage==0.3.1"),
    ],
)
def test_ci_install_follows_how_forkstage_was_installed(
    tmp_path: Path, direct_url: dict[str, object] | None, expected: str
) -> None:
    from forkstage.scaffold import requirement_from

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    raw = None if direct_url is None else json.dumps(direct_url).replace("{repo}", str(repo))
    assert requirement_from(raw, "0.3.1", repo / "infra") == expected


def test_a_second_server_for_the_same_home_says_why_and_the_first_can_still_be_stopped(
    tmp_path: Path,
) -> None:
    """The endpoint's port changed while this home's server runs: the new one refuses the
    data folder, the error says so, and `backend stop` still finds the running one."""
    (tmp_path / "forkstage.toml").write_text('[app]\nname = "shop"\n')
    home = tmp_path / "home"
    first, second = (f"http://127.0.0.1:{free_port()}" for _ in range(2))

    def backend(command: str, endpoint: str) -> subprocess.CompletedProcess[str]:
        env = _env(tmp_path, FORKSTAGE_HOME=str(home), FORKSTAGE_BACKEND_ENDPOINT=endpoint)
        return procs.run([FORKSTAGE, "backend", command], cwd=tmp_path, env=env, timeout=60)

    procs.assert_ok(backend("start", first))
    try:
        again = backend("start", second)
        assert again.returncode == 1
        assert again.stderr.startswith(
            "Error: the embedded state server exited (code 3): another state server is "
            f"already using {home / 'state'}; see "
        )
    finally:
        stopped = backend("stop", second)
    assert stopped.stdout == "state server stopped\n"
    assert not _listening(first)
