"""What a rendered pipeline may vary: validated here because every value lands in YAML and shell.

Anything that reaches a template is checked against a narrow pattern, so a crafted branch name
or version cannot inject YAML keys or shell commands into a pipeline that holds cloud secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdk.stage import StageClasses, StageError, validate_stage_name

_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
_PYTHON = re.compile(r"3\.[0-9]{1,2}")
_NODE = re.compile(r"[1-9][0-9]")
# [registry[:port]/]name[/name...][:tag][@sha256:digest], as `docker pull` takes it.
_IMAGE = re.compile(
    r"(?:[a-z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._/-][a-z0-9]+)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)


class CiOptionError(ValueError):
    """An option value that cannot go into a pipeline; the message says what would."""


@dataclass(frozen=True, kw_only=True)
class CiOptions:
    """Choices baked into a rendered pipeline (defaults match a fresh forkstage project)."""

    stage_prefix: str = "pr-"
    owner_stage: str = "staging"
    main_branch: str = "main"
    python: str = "3.11"
    node: str = "20"
    image: str = ""  # GitLab job image; "" = the python-nodejs image for --python and --node
    test_command: str = ""  # run after a preview deploy, with DATABASE_URL; "" = no test step

    def __post_init__(self) -> None:
        _check_prefix(self.stage_prefix)
        try:
            validate_stage_name(self.owner_stage)
        except StageError as exc:
            raise CiOptionError(f"--owner-stage: {exc}") from None
        if self.owner_stage.startswith(self.stage_prefix):
            raise CiOptionError(
                f"--owner-stage {self.owner_stage!r} starts with the preview prefix "
                f"{self.stage_prefix!r}: pick a long-lived name such as staging"
            )
        branch = self.main_branch
        if not _BRANCH.fullmatch(branch) or ".." in branch or branch.endswith(("/", ".lock")):
            raise CiOptionError(
                f"--main-branch {branch!r} is not a plain branch name: use letters, digits, "
                "'.', '_', '-' or '/', e.g. main"
            )
        if not _PYTHON.fullmatch(self.python):
            raise CiOptionError(
                f"--python {self.python!r} is not a Python 3 version: use e.g. 3.11"
            )
        if not _NODE.fullmatch(self.node):
            raise CiOptionError(f"--node {self.node!r} is not a Node.js major version: use e.g. 20")
        if self.image and (
            not _IMAGE.fullmatch(self.image) or ":" not in self.image.split("/")[-1]
        ):
            raise CiOptionError(
                f"--image {self.image!r} is not an image pinned by tag or digest: "
                "use e.g. nikolaik/python-nodejs:python3.12-nodejs22 or name@sha256:<digest>"
            )
        command = self.test_command
        if command and (
            command != command.strip()
            or len(command) > 500
            or any(ord(c) < 32 or ord(c) == 127 for c in command)
        ):
            raise CiOptionError(
                f"--test-command {command!r} must be one line (at most 500 characters, no "
                "surrounding spaces): e.g. 'npm test' or 'make test-preview'"
            )

    @property
    def job_image(self) -> str:
        """The GitLab job image: --image, else Python and Node in one image, pinned by tag."""
        return self.image or f"nikolaik/python-nodejs:python{self.python}-nodejs{self.node}"

    def changed(self) -> dict[str, str]:
        """Options that differ from the defaults, for the re-render hint inside each file."""
        defaults = CiOptions()
        return {
            name: value for name, value in vars(self).items() if value != getattr(defaults, name)
        }


def _check_prefix(prefix: str) -> None:
    # The prefix is only half a stage name: both the smallest and the largest PR number must
    # give a valid stage, or deploys would fail on the first (or the millionth) pull request.
    for number in ("1", "999999999"):
        try:
            validate_stage_name(prefix + number)
        except StageError as exc:
            raise CiOptionError(
                f"--stage-prefix {prefix!r} does not make valid stage names ({exc})"
            ) from None


def check_stage_classes(options: CiOptions, classes: StageClasses) -> None:
    """The pipeline's stages must be stages of the project (``[stages]`` in forkstage.toml).

    Otherwise every pull request's deploy would fail with exit 2, or the main branch would
    deploy a stage that is no owner: checked when rendering, inside a project.
    """
    for number in ("1", "999999999"):
        name = options.stage_prefix + number
        try:
            stage = classes.parse(name)
        except StageError as exc:
            raise CiOptionError(f"--stage-prefix {options.stage_prefix!r}: {exc}") from None
        if not stage.is_referencing:
            raise CiOptionError(
                f"--stage-prefix {options.stage_prefix!r} makes {name!r}, a {stage.kind} stage, "
                f"not a pull-request stage: stages are {classes.describe()}"
            )
    if options.owner_stage != classes.owner:
        raise CiOptionError(
            f"--owner-stage {options.owner_stage!r} is not this project's owner stage "
            f"{classes.owner!r} (stages.owner in forkstage.toml)"
        )
