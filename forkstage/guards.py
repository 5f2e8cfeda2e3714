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
    project: Project, stage: Stage, reader: StateReader, *, force: bool, cascade: bool = False
) -> list[str]:
    """Refuse up front what would leave a stage half-destroyed; return the stages to destroy
    first (``cascade``).

    A protected stage needs ``force``. An owner whose referencing stages still have resources
    is refused even with ``force``: the provider will not delete a branch with child branches,
    so the destroy would stop halfway, with the owner's Worker and endpoint already gone.
    With ``cascade`` every referencing stage with a workspace (empty ones too, so none is left
    orphaned) is returned, to be destroyed through its own guarded pipeline first.
    """
    if stage.name in project.settings.protected and not force:
        raise Refused(f"stage {stage.name} is protected: pass --force to destroy it anyway")
    if stage.is_referencing:
        return []
    dependents = referencing_stages(project, stage, reader)
    live = [name for name, resources in dependents.items() if resources > 0]
    if cascade:
        protected = [n for n in dependents if n in project.settings.protected]
        if protected and not force:
            raise Refused(
                f"stage {stage.name} is referenced by protected {', '.join(protected)}: "
                "pass --force with --cascade to destroy them too"
            )
        return sorted(dependents)
    if live:
        first = " && ".join(f"forkstage destroy --stage {name}" for name in live)
        raise Refused(
            f"stage {stage.name} is referenced by {', '.join(live)}, which still "
            f"{'has' if len(live) == 1 else 'have'} resources: destroy "
            f"{'it' if len(live) == 1 else 'them'} first ({first}), or pass --cascade to "
            f"destroy {'it' if len(live) == 1 else 'them'} and then {stage.name}"
        )
    return []


def referencing_stages(project: Project, stage: Stage, reader: StateReader) -> dict[str, int]:
    """The stages in the backend that reference ``stage``, with their resource counts."""
    found = {}
    for name in reader.stages():
        other = project.parse_stage_or_none(name) if name != stage.name else None
        if other is not None and other.owner == stage.name:
            state = reader.state(name)
            found[name] = state.resources if state is not None else 0
    return found


def has_state(stage: Stage, reader: StateReader) -> bool:
    """Whether the backend holds a workspace for the stage (an empty state counts)."""
    return stage.workspace in reader.stages()


def check_has_state(stage: Stage, reader: StateReader) -> None:
    """``destroy --strict``: a stage the backend does not know is an error, not a no-op."""
    if not has_state(stage, reader):
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
