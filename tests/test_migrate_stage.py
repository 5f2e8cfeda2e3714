"""Stage -> branch database URL, read from the stage's Terraform state."""

from __future__ import annotations

from forkstage.databases import url_from_state


def state(*, owner: bool) -> dict:  # type: ignore[type-arg]
    resources = [
        {
            "mode": "managed",
            "type": "neon_endpoint",
            "name": "e",
            "instances": [{"attributes": {"host": "ep-cool-41.example", "id": "ep-1"}}],
        },
        {
            "mode": "data",
            "type": "neon_branch_role_password",
            "name": "p",
            "instances": [{"attributes": {"role_name": "app owner", "password": "p@ss/w%rd"}}],
        },
    ]
    if owner:
        resources.append(
            {
                "mode": "managed",
                "type": "neon_project",
                "name": "x",
                "instances": [{"attributes": {"database_name": "app"}}],
            }
        )
    else:
        resources.append(
            {
                "mode": "data",
                "type": "terraform_remote_state",
                "name": "s",
                "instances": [
                    {"attributes": {"outputs": {"value": {"neon_database_name": "app"}}}}
                ],
            }
        )
    return {"version": 4, "resources": resources}


def test_owner_and_referencing_states_give_the_same_quoted_url() -> None:
    expected = (
        "postgresql://app%20owner:p%40ss%2Fw%25rd@ep-cool-41.example:5432/app?sslmode=require"
    )
    assert url_from_state(state(owner=True)) == expected
    assert url_from_state(state(owner=False)) == expected


def test_no_endpoint_means_no_url() -> None:
    broken = state(owner=True)
    broken["resources"] = [r for r in broken["resources"] if r["type"] != "neon_endpoint"]
    assert url_from_state(broken) is None


def test_stage_without_a_deployed_branch_exits_2(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from click.testing import CliRunner

    from forkstage import embedded
    from forkstage.cli import main
    from tests.wrapper_env import REPO, free_port

    home = tmp_path / "home"
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("FORKSTAGE_HOME", str(home))
    monkeypatch.setenv("FORKSTAGE_BACKEND_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    monkeypatch.delenv("FORKSTAGE_DATABASE_URL", raising=False)
    try:
        result = CliRunner().invoke(main, ["migrate", "--stage", "pr-7"])
    finally:
        embedded.stop(home)
    assert result.exit_code == 2
    assert result.output == (
        "Error: stage pr-7 has no deployed branch endpoint: deploy it first, or set "
        "FORKSTAGE_DATABASE_URL / pass --database-url-env NAME\n"
    )
