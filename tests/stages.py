"""Stages a wrapper test needs, made by the test itself (never left by an earlier one): any one
test runs alone, and one failure does not take its neighbours down."""

from __future__ import annotations

from tests.wrapper_env import Sandbox


def instances(box: Sandbox, stage: str) -> int | None:
    """The stage's managed resource instances (None: the backend has no workspace for it)."""
    if f"env:/{stage}/forkstage/terraform.tfstate" not in box.object_keys():
        return None
    state = box.state(stage)
    managed = [r for r in state["resources"] if r["mode"] == "managed"]
    return sum(len(r["instances"]) for r in managed)


def ensure_live(box: Sandbox, *stages: str) -> None:
    """Deploy whichever of ``stages`` is not live: the owner first, pull requests side by side
    (a shared module sandbox pays only for what is missing)."""
    assert box.forkstage("stages").returncode == 0  # starts the sandbox's state server
    missing = [s for s in stages if not instances(box, s)]
    if "staging" in missing:
        done = box.forkstage("deploy", "--stage", "staging")
        assert done.returncode == 0, done.stderr
    procs = [box.popen("deploy", "--stage", s) for s in missing if s != "staging"]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err


def destroy_by_hand(box: Sandbox, stage: str) -> None:
    """A plain terraform destroy in the prepared stack folder, outside forkstage: the workspace
    stays, with an empty state."""
    stack = box.home / "work" / "local" / stage / "stacks" / f"stack-{stage}"
    by_hand = box.bash(
        f'eval "$(forkstage env --stage {stage})" && cd {stack} && '
        "forkstage-terraform destroy -auto-approve -input=false -no-color"
    )
    assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
