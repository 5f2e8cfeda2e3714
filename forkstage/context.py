"""The project a command runs in: root folder, settings, runtime home, and stage parsing.

Every command resolves these the same way, and turns bad settings or stage names into exit 2
before anything runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from cdk.settings import Settings, SettingsError, load_settings
from cdk.stage import Stage, StageError
from forkstage.engine import find_project_root, forkstage_home
from forkstage.errors import BadInput


@dataclass
class Project:
    """A forkstage project on disk."""

    root: Path

    @classmethod
    def load(cls, start: Path | None = None) -> Project:
        """The project around ``start`` (default: the current folder); BadInput (exit 2)
        outside one, before anything is created or started."""
        found = cls.find(start)
        if found is None:
            here = (start or Path.cwd()).resolve()
            raise BadInput(
                f"not a forkstage project: no forkstage.toml in {here} or above; "
                "run `forkstage init` to make one, or cd into the app's folder"
            )
        return found

    @classmethod
    def unless_given(cls, given: bool, *, flags: str) -> Project | None:
        """The project around the working folder; outside one None when the command was given
        what it needs without one (``flags``), else BadInput naming them."""
        found = cls.find()
        if found is not None or given:
            return found
        raise BadInput(
            f"not a forkstage project: no forkstage.toml in {Path.cwd().resolve()} or above; "
            f"run `forkstage init` to make one, or pass {flags}"
        )

    @classmethod
    def find(cls, start: Path | None = None) -> Project | None:
        """The project around ``start``, None outside one (for commands that need none)."""
        root = find_project_root(start)
        return None if root is None else cls(root=root)

    @cached_property
    def settings(self) -> Settings:
        try:
            return load_settings(self.root)
        except SettingsError as exc:
            raise BadInput(str(exc)) from None

    @property
    def home(self) -> Path:
        return forkstage_home(self.root)

    def parse_stage(self, name: str) -> Stage:
        """The stage of this project's classes (``[stages]``); BadInput (exit 2) otherwise."""
        try:
            return self.settings.parse_stage(name)
        except StageError as exc:
            raise BadInput(str(exc)) from None

    def parse_stage_or_none(self, name: str) -> Stage | None:
        """For names found in a backend: a foreign workspace is skipped, not an error."""
        try:
            return self.parse_stage(name)
        except BadInput:
            return None

    def app_command(self) -> str:
        """The cdktf app command from cdktf.json (what `npx cdktf synth` runs)."""
        path = self.root / "cdktf.json"
        try:
            app = json.loads(path.read_text()).get("app")
        except (OSError, ValueError):
            raise BadInput(
                f"no readable cdktf.json in {self.root}: every forkstage app has one "
                '(`forkstage init` writes it, with "app": "python3 main.py")'
            ) from None
        if not isinstance(app, str) or not app.strip():
            raise BadInput(f'{path} has no "app" command')
        return app

    def provider_installation(self) -> str:
        """The Terraform CLI config block that installs providers for this project's target.

        The local target answers for the pinned Neon and Cloudflare sources with the offline
        stand-ins; the cloud target lets Terraform install the real providers.
        """
        if self.settings.target == "local":
            from localcloud.registry import provider_installation

            return provider_installation(self.home)
        return ""
