"""Guards that refuse a run before (or stop it right after) Terraform could do harm.

They read the backend with boto3, not through Terraform: a refusal costs no init and writes
nothing, and it is the only line a refused command prints.
"""

from __future__ import annotations

from cdk.stage import Stage
from forkstage.context import Project
from forkstage.errors import Failed, Refused
from forkstage.state import StateReader

# Resource types only an owner stage may ever delete (a referencing stage must never plan it).
OWNER_ONLY_TYPES = frozenset({"neon_project"})


def check_owner_deployed(stage: Stage, reader: StateReader) -> None:
    """A referencing stage needs its owner's outputs; without them Terraform would write an
    empty state into the owner's workspace and then fail."""
    if not stage.owner:
        return
    owner = reader.state(stage.owner)
    if owner is None or not owner.outputs:
        raise Refused(
            f"stage {stage.name} references {stage.owner}, which is not deployed: "
            f"deploy it first (forkstage deploy --stage {stage.owner})"
        )


def check_destroy_allowed(
    project: Project, stage: Stage, reader: StateReader, *, force: bool
) -> None:
    """A protected stage, or an owner whose referencing stages still have resources, stays up
    unless forced."""
    if force:
        return
    if stage.name in project.settings.protected:
        raise Refused(f"stage {stage.name} is protected: pass --force to destroy it anyway")
    if stage.is_referencing:
        return
    dependents = []
    for name in reader.stages():
        if name == stage.name:
            continue
        other = project.parse_stage_or_none(name)
        if other is not None and other.owner == stage.name:
            state = reader.state(name)
            if state is not None and state.resources > 0:
                dependents.append(name)
    if dependents:
        raise Refused(
            f"stage {stage.name} is referenced by {', '.join(dependents)}: destroy "
            "those first, or pass --force"
        )


def check_has_state(stage: Stage, reader: StateReader) -> None:
    """Destroying a stage the backend does not know would only create its workspace."""
    if stage.workspace not in reader.stages():
        raise Refused(f"stage {stage.name} has no state in the backend: nothing to destroy")


def check_destroy_plan(stage: Stage, changes: list[dict[str, str]]) -> None:
    """The destroy plan may only delete this stage's own resources."""
    for change in changes:
        if change["action"] != "delete":
            raise Failed(
                f"destroy plan for {stage.name} would {change['action']} "
                f"{change['address']}: refusing"
            )
        if stage.is_referencing and change["type"] in OWNER_ONLY_TYPES:
            raise Failed(
                f"destroy plan for {stage.name} would delete {change['address']}, "
                f"which belongs to {stage.owner}: refusing"
            )


def check_owner_untouched(stage: Stage, before: int | None, after: int | None) -> None:
    """A referencing stage's destroy must leave its owner's state serial where it was."""
    if before != after:
        raise Failed(
            f"the state of {stage.owner} changed during the destroy of "
            f"{stage.name} (serial {before} -> {after})"
        )
