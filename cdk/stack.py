"""``ForkstageStack``: one stage's stack, with everything the ``forkstage`` wrapper relies on.

It is ``stack-<stage>``, declares the S3 backend (``use_lockfile``), pins itself to the stage's
workspace with the guard and publishes the ``stage`` output. Constructs find the stage and the
settings with ``ForkstageStack.of(self)``, so an app passes only what differs from the defaults:
physical names (``<app>-<id>-<stage>``), account id, region, versions come from there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from constructs import Construct, IConstruct

from cdk.backend import add_s3_backend
from cdk.core import TerraformOutput, TerraformStack
from cdk.guard import WorkspaceGuard
from cdk.settings import Settings
from cdk.stage import Stage


def logical_id(*path: str) -> str:
    """The id cdktf gives an element at ``path`` below its stack (its ``makeUniqueId``).

    ``<path joined by _>_<md5 of the path joined by />`` (first 8 hex digits, upper case);
    "Default" parts are left out, a part already ending the previous one is not repeated in the
    readable half, and a lone part is used as it is.
    """
    parts = [p for p in path if p != "Default"]
    if not parts:
        raise ValueError("a logical id needs at least one path part")
    if len(parts) == 1 and len(_clean(parts[0])) <= 255:
        return _clean(parts[0])
    digest = hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()
    human: list[str] = []
    for part in parts:
        if not human or not human[-1].endswith(part):
            human.append(part)
    readable = "_".join(_clean(p) for p in human if p != "Resource")[:240]
    return f"{readable}_{digest[:8].upper()}"


def _clean(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "", part)


@dataclass(frozen=True)
class FormerScope:
    """A stack-level scope a construct lived in before it moved; reserved, so ids stay unique."""

    scope: Construct
    path: tuple[str, ...]

    def logical_id(self, child: str) -> str:
        """The id ``child`` had when it lived here."""
        return logical_id(*self.path, child)


class ForkstageStack(TerraformStack):
    """A stage's stack: backend block, workspace guard, providers on demand, ``stage`` output."""

    def __init__(self, scope: Construct, *, stage: Stage, settings: Settings) -> None:
        super().__init__(scope, stage.stack_id)
        self.stage = stage
        self.settings = settings
        add_s3_backend(self, settings.backend)
        self.guard = WorkspaceGuard(self, "workspace", workspace=stage.workspace)
        self._providers: dict[str, object] = {}
        self.output("stage", stage.name)
        added = getattr(scope, "forkstage_stage_added", None)  # a ForkstageApp writes its gate
        if callable(added):
            added(stage.name)

    @staticmethod
    def of(construct: IConstruct) -> ForkstageStack:
        """The stack ``construct`` belongs to (free when ``construct`` is the stack itself)."""
        stack = ForkstageStack.find(construct)
        if stack is None:
            raise TypeError(
                f"{construct.node.path} is not inside a ForkstageStack: forkstage's constructs "
                "take the stage and settings from it"
            )
        return stack

    @staticmethod
    def find(construct: IConstruct) -> ForkstageStack | None:
        """Like ``of``, but None inside a plain ``TerraformStack``."""
        if isinstance(construct, ForkstageStack):
            return construct
        stack = TerraformStack.of(construct)
        return stack if isinstance(stack, ForkstageStack) else None

    def resource_name(self, id_: str, *, limit: int = 63) -> str:
        """The default physical name of construct ``id_``: ``<app>-<id>-<stage>``."""
        return self.stage.resource_name(self.settings.app, id_, limit=limit)

    def use_provider(self, name: str, make: Callable[[Construct, str], object]) -> None:
        """Declare provider ``name`` once, when the first construct that needs it is added."""
        if name not in self._providers:
            self._providers[name] = make(self, name)

    def output(self, name: str, value: Any, *, sensitive: bool = False) -> TerraformOutput:
        """A stage output under exactly ``name`` (what ``forkstage outputs`` shows)."""
        # None, not False: an output that is not sensitive has no "sensitive" key at all.
        return TerraformOutput(self, name, value=value, sensitive=sensitive or None, static_id=True)

    def former_scope(self, id_: str) -> FormerScope | None:
        """Reserve the stack-level scope ``id_`` that a construct is moving out of.

        The first caller gets the scope (an empty placeholder that keeps the name taken, so no
        construct added later can be given the ids derived from it); every later caller, e.g. a
        second branch's migrations, gets None and keeps its own path-derived ids.
        """
        if self.node.try_find_child(id_) is not None:
            return None
        return FormerScope(Construct(self, id_), (id_,))
