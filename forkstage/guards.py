"""Guards that refuse a run before (or stop it right after) Terraform could do harm.

They read the backend with boto3, not through Terraform: a refusal costs no init and writes
nothing, and it is the only line a refused command prints.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdk.stage import Stage
from forkstage.context import Project
from forkstage.errors import Failed, Refused
from forkstage.state import StateReader

# Resource types only an owner stage may ever delete (a referencing stage must never plan it).
OWNER_ONLY_TYPES = frozenset({"neon_project"})
# Terraform merges ``*_override.tf.json`` into the config: forkstage writes this one only for
# its own checked plans, to lift the ``prevent_destroy`` the constructs put on stateful
# resources (cdk.guard.keep), so plain cdktf and terraform keep the guard.
LIFT_FILE = "forkstage_lift_override.tf.json"


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


def check_not_referenced(project: Project, stage: Stage, reader: StateReader) -> None:
    """``deploy --allow-replace`` of an owner: its branch has the referencing stages' branches
    as children, which Neon will not let go; refused before anything is applied."""
    live = [n for n, count in referencing_stages(project, stage, reader).items() if count > 0]
    if live:
        first = " && ".join(f"forkstage destroy --stage {name}" for name in live)
        raise Refused(
            f"stage {stage.name} is referenced by {', '.join(live)}, whose branches fork the one "
            f"this deploy would replace: destroy {'it' if len(live) == 1 else 'them'} first "
            f"({first}); nothing was changed"
        )


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


def guarded_addresses(stack_dir: Path) -> list[str]:
    """The resources of the synthesized stack that carry ``lifecycle.prevent_destroy``."""
    config = json.loads((stack_dir / "cdk.tf.json").read_text())
    found = []
    for kind, items in sorted((config.get("resource") or {}).items()):
        for name, body in sorted(items.items()):
            if ((body or {}).get("lifecycle") or {}).get("prevent_destroy") is True:
                found.append(f"{kind}.{name}")
    return found


@contextlib.contextmanager
def lifted(stack_dir: Path, addresses: list[str]) -> Iterator[None]:
    """Within the block Terraform plans as if the addresses had no ``prevent_destroy``: only
    around a plan forkstage checks itself (and for ``--via cdktf``, its run)."""
    body: dict[str, Any] = {}
    for address in addresses:
        kind, name = address.split(".", 1)
        body.setdefault(kind, {})[name] = {"lifecycle": {"prevent_destroy": False}}
    path = stack_dir / LIFT_FILE
    if body:
        path.write_text(json.dumps({"resource": body}, indent=2))
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def drop_lift(stack_dir: Path) -> None:
    """A lift left by a run that was killed never outlives it into the next run."""
    (stack_dir / LIFT_FILE).unlink(missing_ok=True)


def guarded_changes(changes: list[dict[str, str]], guarded: list[str]) -> list[dict[str, str]]:
    """The planned changes that would delete or replace a guarded resource."""
    keep = set(guarded)
    return [c for c in changes if c["address"] in keep and c["action"] in ("delete", "replace")]


def forcing_attributes(shown: dict[str, Any]) -> dict[str, str]:
    """Per resource address, why it is replaced (``terraform show -json`` of the plan): the
    attributes that force it (``replace_paths``), or that it follows another's replacement."""
    found: dict[str, str] = {}
    for change in shown.get("resource_changes") or []:
        address = str(change.get("address", ""))
        paths = (change.get("change") or {}).get("replace_paths") or []
        names = sorted({".".join(str(p) for p in path) for path in paths if path})
        if names:
            found[address] = f"{', '.join(names)} {'forces' if len(names) == 1 else 'force'} it"
        elif change.get("action_reason") == "replace_by_triggers":
            found[address] = "replace_triggered_by: it follows that replacement"
    return found


def refuse_replacement(
    stage: Stage, touched: list[dict[str, str]], forcing: dict[str, str]
) -> Refused:
    """The refusal of a deploy that would delete or replace a guarded resource; the ones an
    attribute forces first."""
    parts = []
    ranked = sorted(touched, key=lambda c: "force" not in forcing.get(c["address"], ""))
    for change in ranked:
        verb = "replace" if change["action"] == "replace" else "destroy"
        why = forcing.get(change["address"])
        parts.append(f"{verb} {change['address']}" + (f" ({why})" if why else ""))
    return Refused(
        f"deploy of {stage.name} would {' and '.join(parts)}: its data, and every branch forked "
        "from it, would be lost; nothing was changed. Pass --allow-replace to deploy it anyway"
    )
