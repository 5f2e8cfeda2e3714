"""Stage names, the project's stage classes, and the names derived from them.

A stage name ends up in a Terraform workspace, an S3 key, a stack id and three providers'
resource names, so it is validated once here and everything else derives from it. A name must
also belong to one of the project's stage classes (long-lived, pull-request or personal): a typo
such as ``pr147`` would otherwise become a stage that owns a whole Neon project.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

StageKind = Literal["owner", "referencing", "personal"]

MAX_STAGE_LENGTH = 40
_GENERIC = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
_PR = re.compile(r"pr-[1-9][0-9]{0,8}")
_DEV = re.compile(r"dev_[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")


class StageError(ValueError):
    """A stage name that cannot be used; the message says what would be valid."""


def validate_stage_name(name: str) -> str:
    """Return ``name`` if usable as a stage, else raise StageError with a one-line reason."""
    shown = name if len(name) <= 50 else name[:47] + "..."
    if not name:
        raise StageError("stage name is empty: use e.g. staging, prod, pr-147 or dev_sam")
    if len(name) > MAX_STAGE_LENGTH:
        raise StageError(
            f"stage name {shown!r} is {len(name)} characters long: use at most {MAX_STAGE_LENGTH}"
        )
    if name.startswith(("pr-", "pr_")) or name == "pr":
        if not _PR.fullmatch(name):
            raise StageError(
                f"stage name {shown!r} is not a pull-request stage: use pr-<number>, e.g. pr-147"
            )
        return name
    if name.startswith("dev_") and not _DEV.fullmatch(name):
        raise StageError(
            f"stage name {shown!r} is not a personal stage: use dev_<name>, e.g. dev_sam"
        )
    if not _GENERIC.fullmatch(name):
        raise StageError(
            f"stage name {shown!r} is invalid: use lowercase letters, digits, '-' or '_', "
            "starting with a letter (e.g. staging, prod, pr-147, dev_sam)"
        )
    return name


def short_hash(text: str, length: int = 6) -> str:
    """A stable suffix that keeps truncated names unique."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def physical_name(
    *parts: str, limit: int, separator: str = "-", allow_underscore: bool = False
) -> str:
    """Join parts into a provider-safe name of at most ``limit`` characters.

    Characters a provider rejects become the separator; when the name had to be rewritten or
    cut, a hash of the original is appended, so two stages never collide.
    """
    full = separator.join(p for p in parts if p)
    allowed = "a-z0-9_-" if allow_underscore else "a-z0-9-"
    clean = re.sub(f"[^{allowed}]+", separator, full.lower()).strip("-_")
    clean = re.sub(r"-{2,}", "-", clean)
    if clean == full and len(clean) <= limit:
        return clean
    # Rewritten or cut: `dev_sam` and `dev-sam` must not end up with the same name.
    suffix = short_hash(full)
    return clean[: limit - len(suffix) - 1].rstrip("-_") + separator + suffix


@dataclass(frozen=True)
class Stage:
    """One deployment stage and how it relates to the owner stage.

    ``owner``: a long-lived stage, owns its Neon project. ``referencing``: a pull-request stage,
    forks a branch of ``owner``'s project. ``personal``: owns its own project like a long-lived
    stage, but is nobody's owner and is never pruned.
    """

    name: str
    kind: StageKind
    owner: str | None = None

    @classmethod
    def parse(
        cls,
        name: str,
        *,
        owner_stage: str = "staging",
        referencing: tuple[str, ...] = ("pr-*",),
        classes: StageClasses | None = None,
    ) -> Stage:
        """The stage ``name`` of ``classes``; StageError if invalid or in no class.

        Prefer ``Settings.parse_stage``, which passes the project's own classes. Without
        ``classes`` (older apps) only the syntax is checked and a name that matches no
        ``referencing`` pattern is an owner, as before stage classes existed.
        """
        if classes is not None:
            return classes.parse(name)
        validate_stage_name(name)
        if name != owner_stage and any(fnmatchcase(name, p) for p in referencing):
            return cls(name=name, kind="referencing", owner=owner_stage)
        return cls(name=name, kind="owner")

    @property
    def is_referencing(self) -> bool:
        return self.kind == "referencing"

    @property
    def stack_id(self) -> str:
        return f"stack-{self.name}"

    @property
    def workspace(self) -> str:
        return self.name

    def resource_name(self, app: str, id_: str, *, limit: int = 63) -> str:
        """``<app>-<id>-<stage>``, provider-safe: Neon project and branch, Worker, Hyperdrive.

        63 characters: the strictest of their documented limits.
        """
        return physical_name(app, id_, self.name, limit=limit)


@dataclass(frozen=True)
class StageClasses:
    """Which names are stages of a project (``[stages]`` in forkstage.toml).

    The owner is always long-lived. Classes are tried in order: long-lived names, then
    referencing patterns, then personal patterns (``fnmatch`` globs such as ``pr-*``).
    """

    owner: str = "staging"
    long_lived: tuple[str, ...] = ("staging", "prod")
    referencing: tuple[str, ...] = ("pr-*",)
    personal: tuple[str, ...] = ("dev_*",)

    @property
    def long_lived_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([self.owner, *self.long_lived]))

    def describe(self) -> str:
        """``staging, prod (long-lived), pr-* (pull requests), dev_* (personal)``."""
        parts = [f"{', '.join(self.long_lived_names)} (long-lived)"]
        if self.referencing:
            parts.append(f"{', '.join(self.referencing)} (pull requests)")
        if self.personal:
            parts.append(f"{', '.join(self.personal)} (personal)")
        return ", ".join(parts)

    def parse(self, name: str) -> Stage:
        """The syntax checks first, then the class; StageError names the classes otherwise."""
        validate_stage_name(name)
        if name in self.long_lived_names:
            return Stage(name=name, kind="owner")
        if any(fnmatchcase(name, p) for p in self.referencing):
            return Stage(name=name, kind="referencing", owner=self.owner)
        if any(fnmatchcase(name, p) for p in self.personal):
            return Stage(name=name, kind="personal")
        raise StageError(
            f"{name!r} is not a stage of this project: stages are {self.describe()}; "
            "add it under [stages] in forkstage.toml"
        )
