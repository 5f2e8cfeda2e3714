"""What a rendered pipeline may vary: validated here because every value lands in YAML and shell.

Anything that reaches a template is checked against a narrow pattern, so a crafted branch name
or version cannot inject YAML keys or shell commands into a pipeline that holds cloud secrets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cdk.settings.sections import valid_install
from cdk.stage import StageClasses, StageError, validate_stage_name

_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,99}")
_PYTHON = re.compile(r"3\.[0-9]{1,2}")
_NODE = re.compile(r"[1-9][0-9]")
_APP_DIR = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*")
_REPO_FILE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9._/-]{0,200}")
# Derived from the project and its repository, not flags: left out of the re-render hint.
FROM_PROJECT = ("install", "app_dir", "pip_key_files", "plugin_key_files", "node_lock")
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
    node: str = "22"  # Node 20 is end of life
    image: str = ""  # GitLab job image; "" = the python-nodejs image for --python and --node
    test_command: str = ""  # run after a preview deploy, with DATABASE_URL; "" = no test step
    # From the project ([ci] install, where the app is in its repository, which files exist):
    install: str = "forkstage"  # the pip requirement the jobs install forkstage from
    app_dir: str = "."  # the app's folder, relative to the repository root
    pip_key_files: tuple[str, ...] = ("forkstage.toml",)  # the pip cache's key
    plugin_key_files: tuple[str, ...] = ("forkstage.toml",)  # the provider cache's key
    node_lock: str = ""  # the app's package-lock.json when the repository has one

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
            raise CiOptionError(f"--node {self.node!r} is not a Node.js major version: use e.g. 22")
        if self.image and (
            not _IMAGE.fullmatch(self.image) or ":" not in self.image.split("/")[-1]
        ):
            raise CiOptionError(
                f"--image {self.image!r} is not an image pinned by tag or digest: "
                "use e.g. nikolaik/python-nodejs:python3.12-nodejs22 or name@sha256:<digest>"
            )
        if not valid_install(self.install):
            raise CiOptionError(
                f"[ci] install {self.install!r} is not one pip requirement: use a version "
                "(forkstage==0.1.0), a path (.) or a pinned VCS URL"
            )
        if self.app_dir != "." and (
            not _APP_DIR.fullmatch(self.app_dir) or ".." in self.app_dir.split("/")
        ):
            raise CiOptionError(
                f"the app folder {self.app_dir!r} must be a plain path inside the repository"
            )
        files = [*self.pip_key_files, *self.plugin_key_files, self.node_lock]
        for path in filter(None, files):
            if not _REPO_FILE.fullmatch(path) or ".." in path.split("/"):
                raise CiOptionError(f"cache key file {path!r} is not a plain repository path")
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

    @property
    def app_prefix(self) -> str:
        """``infra/`` for an app in a subfolder, ``""`` at the repository root."""
        return "" if self.app_dir == "." else self.app_dir.rstrip("/") + "/"

    def changed(self) -> dict[str, str]:
        """Options that differ from the defaults, for the re-render hint inside each file."""
        defaults = CiOptions()
        return {
            name: value
            for name, value in vars(self).items()
            if name not in FROM_PROJECT and value != getattr(defaults, name)
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
