"""forkstage.toml is strict, and its [stages] classes decide which names are stages (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from cdk.settings import Settings, SettingsError, load_settings
from cdk.stage import Stage, StageClasses, StageError, StageKind
from forkstage.ci.options import CiOptionError, CiOptions, check_stage_classes
from forkstage.cli import main

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CLASSES = "staging, prod (long-lived), pr-* (pull requests), dev_* (personal)"


def settings_from(tmp_path: Path, text: str, **env: str) -> Settings:
    (tmp_path / "forkstage.toml").write_text(text)
    return load_settings(tmp_path, environ=env)


def refused(tmp_path: Path, text: str, **env: str) -> str:
    with pytest.raises(SettingsError) as info:
        settings_from(tmp_path, text, **env)
    return str(info.value)


# --- stage classes -----------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["fresh", "repo"])
@pytest.mark.parametrize(
    ("name", "kind", "owner"),
    [
        ("staging", "owner", None),
        ("prod", "owner", None),
        ("pr-147", "referencing", "staging"),
        ("dev_sam", "personal", None),
    ],
)
def test_default_and_repo_classes_accept_each_kind(
    tmp_path: Path, root: str, name: str, kind: StageKind, owner: str | None
) -> None:
    settings = load_settings(tmp_path if root == "fresh" else REPO, environ={})
    assert settings.parse_stage(name) == Stage(name=name, kind=kind, owner=owner)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("pr147", ""),
        ("staging2", "; did you mean staging?"),  # one edit from a long-lived stage
        ("stagin", "; did you mean staging?"),
        ("prd", "; did you mean prod?"),
        ("preview-12", ""),
        ("dev-sam", ""),
        ("feature", ""),
    ],
)
def test_a_name_in_no_class_is_refused_naming_the_classes(
    tmp_path: Path, name: str, hint: str
) -> None:
    with pytest.raises(StageError) as info:
        load_settings(tmp_path, environ={}).parse_stage(name)
    assert str(info.value) == (
        f"{name!r} is not a stage of this project: stages are {DEFAULT_CLASSES}; "
        "add it under [stages] in forkstage.toml" + hint
    )


def test_syntax_checks_still_come_first(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="is not a pull-request stage: use pr-<number>"):
        load_settings(tmp_path, environ={}).parse_stage("pr-12a")


def test_a_project_chooses_its_own_personal_and_long_lived_stages(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        '[stages]\nowner = "main-db"\nlong_lived = ["main-db", "qa"]\npersonal = ["sandbox-*"]\n',
    )
    assert settings.parse_stage("sandbox-1") == Stage(name="sandbox-1", kind="personal")
    assert settings.parse_stage("main-db").kind == "owner"  # the owner is always long-lived
    assert settings.parse_stage("qa").kind == "owner"
    assert settings.parse_stage("pr-9") == Stage(name="pr-9", kind="referencing", owner="main-db")
    with pytest.raises(StageError) as info:
        settings.parse_stage("dev_sam")
    assert "stages are main-db, qa (long-lived), pr-* (pull requests), sandbox-* (personal);" in (
        str(info.value)
    )
    with pytest.raises(StageError):
        settings.parse_stage("prod")


def test_long_lived_wins_over_a_broad_pattern() -> None:
    classes = StageClasses(long_lived=("staging", "preview-main"), referencing=("preview-*",))
    assert classes.parse("preview-main").kind == "owner"
    assert classes.parse("preview-3").kind == "referencing"
    assert classes.describe() == (
        "staging, preview-main (long-lived), preview-* (pull requests), dev_* (personal)"
    )


def test_stage_parse_keeps_working_for_apps_that_pass_no_classes() -> None:
    assert Stage.parse("pr-1") == Stage(name="pr-1", kind="referencing", owner="staging")
    assert Stage.parse("anything").kind == "owner"
    assert Stage.parse("dev_sam", classes=StageClasses()).kind == "personal"
    with pytest.raises(StageError):
        Stage.parse("anything", classes=StageClasses())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[stages]\nowner = "Staging"\n',
            "forkstage.toml: stages.owner: stage name 'Staging' is invalid: use lowercase letters, "
            "digits, '-' or '_', starting with a letter (e.g. staging, prod, pr-147, dev_sam)",
        ),
        (
            '[stages]\nlong_lived = ["staging", "pr-x"]\n',
            "forkstage.toml: stages.long_lived: stage name 'pr-x' is not a pull-request stage: "
            "use pr-<number>, e.g. pr-147",
        ),
        (
            '[stages]\npersonal = [" "]\n',
            'forkstage.toml: stages.personal holds an empty pattern: use e.g. ["dev_*"]',
        ),
    ],
)
def test_stage_classes_in_the_file_are_checked(tmp_path: Path, text: str, message: str) -> None:
    assert refused(tmp_path, text) == message


# --- a strict file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[neon]\nfork_form = "owner-branch"\n',
            "forkstage.toml: unknown setting neon.fork_form; did you mean neon.fork_from?",
        ),
        (
            '[neno]\nregion = "aws-us-east-1"\n',
            "forkstage.toml: unknown section [neno]; did you mean [neon]? "
            "(sections: app, stages, neon, cloudflare, backend, target, paths, ci, local)",
        ),
        (
            "[deploy]\nparallel = 2\n",
            "forkstage.toml: unknown section [deploy] "
            "(sections: app, stages, neon, cloudflare, backend, target, paths, ci, local)",
        ),
        (
            '[neon]\naccount_id = "abc"\n',
            "forkstage.toml: unknown setting neon.account_id; did you mean cloudflare.account_id?",
        ),
        (
            '[app]\ncolour = "red"\n',
            "forkstage.toml: unknown setting app.colour (app takes name, cdk)",
        ),
        (
            '[stages]\npersonel = ["dev_*"]\n',
            "forkstage.toml: unknown setting stages.personel; did you mean stages.personal?",
        ),
        (
            'name = "shop"\n',
            "forkstage.toml: unknown setting name "
            "(sections: app, stages, neon, cloudflare, backend, target, paths, ci, local)",
        ),
        ("neon = 16\n", "forkstage.toml: neon must be a section ([neon]), not a value"),
    ],
)
def test_unknown_sections_and_keys_are_refused_with_the_closest(
    tmp_path: Path, text: str, message: str
) -> None:
    assert refused(tmp_path, text) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[neon]\npg_version = "16"\n', "neon.pg_version must be an integer (e.g. 16)"),
        ("[neon]\npg_version = true\n", "neon.pg_version must be an integer (e.g. 16)"),
        ("[app]\nname = 3\n", 'app.name must be a string (e.g. "forkstage")'),
        (
            '[stages]\nreferencing = "pr-*"\n',
            'stages.referencing must be a list of strings (e.g. ["pr-*"])',
        ),
        (
            "[stages]\nlong_lived = [1]\n",
            'stages.long_lived must be a list of strings (e.g. ["staging", "prod"])',
        ),
        (
            '[neon]\nfork_from = "main"\n',
            'neon.fork_from must be one of "default", "owner-branch"',
        ),
        ('[backend]\nkind = "r2"\n', 'backend.kind must be one of "embedded", "s3"'),
        ('[target]\nkind = "aws"\n', 'target.kind must be one of "local", "cloud"'),
    ],
)
def test_type_and_enum_errors_name_the_key_and_what_it_may_be(
    tmp_path: Path, text: str, message: str
) -> None:
    assert refused(tmp_path, text) == f"forkstage.toml: {message}"


def test_environment_overrides_are_checked_too(tmp_path: Path) -> None:
    assert refused(tmp_path, "", FORKSTAGE_TARGET="aws") == (
        'FORKSTAGE_TARGET must be one of "local", "cloud"'
    )
    assert refused(tmp_path, "", FORKSTAGE_BACKEND_KIND="r2") == (
        'FORKSTAGE_BACKEND_KIND must be one of "embedded", "s3"'
    )
    settings = settings_from(tmp_path, '[target]\nkind = "local"\n', FORKSTAGE_TARGET="cloud")
    assert settings.target == "cloud"


def test_the_repository_files_are_valid_and_complete(tmp_path: Path) -> None:
    repo = load_settings(REPO, environ={})
    assert repo.fork_from == "owner-branch"
    assert repo.personal == ("dev_*",)
    fixture = load_settings(REPO / "tests" / "fixture_app", environ={})
    assert fixture.stage_classes.describe() == (
        "staging (long-lived), pr-* (pull requests), dev_* (personal)"
    )


def test_a_bad_file_is_exit_2_through_the_cli_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "cdktf.json").write_text('{"app": "python main.py"}')
    (app / "forkstage.toml").write_text('[neon]\nfork_form = "owner-branch"\n')
    monkeypatch.chdir(app)
    monkeypatch.setenv("FORKSTAGE_HOME", str(tmp_path / "home"))
    for command in ("deploy", "synth", "plan"):
        result = CliRunner().invoke(main, [command, "--stage", "pr-1"])
        assert result.exit_code == 2, result.output
        assert result.output == (
            "Error: forkstage.toml: unknown setting neon.fork_form; did you mean neon.fork_from?\n"
        )
    assert sorted(p.name for p in app.iterdir()) == ["cdktf.json", "forkstage.toml"]
    assert not (tmp_path / "home").exists()


# --- rendered CI pipelines must deploy stages of the project ----------------------------------


def test_ci_options_are_checked_against_the_project_classes() -> None:
    classes = load_settings(REPO, environ={}).stage_classes
    check_stage_classes(CiOptions(), classes)
    with pytest.raises(CiOptionError) as info:
        check_stage_classes(CiOptions(stage_prefix="preview-"), classes)
    assert str(info.value) == (
        "--stage-prefix 'preview-': 'preview-1' is not a stage of this project: stages are "
        f"{DEFAULT_CLASSES}; add it under [stages] in forkstage.toml"
    )
    with pytest.raises(CiOptionError, match="'dev_x1', a personal stage, not a pull-request"):
        check_stage_classes(CiOptions(stage_prefix="dev_x"), classes)
    with pytest.raises(CiOptionError, match="--owner-stage 'prod' is not this project's owner"):
        check_stage_classes(CiOptions(owner_stage="prod"), classes)
