"""forkstage as another team gets it: the wheel, installed into a fresh virtualenv outside this
checkout, and an app made by `forkstage init` in a repository of its own.

One of each per test run (the ``installed`` fixture in tests/conftest.py), shared by every test
that needs forkstage installed (this issue's, the pipeline rehearsal's, the CDK Terrain one's).
Offline and fast: the wheel is built without build isolation from a copy of the checkout's files
(tracked and untracked, never ignored ones), installed ``--no-deps`` into a venv whose ``.pth``
points at the dev venv's site-packages (its dependencies, not its editable forkstage), and the
app's node_modules is this checkout's (npm's cache holds no package documents to resolve a fresh
`npm install` offline).

Its PATH has the venv's bin first and nothing of this checkout (.venv/bin, node_modules/.bin),
so a command that only works inside this repository fails here.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from localcloud.net import free_port
from tests import procs

REPO = Path(__file__).resolve().parent.parent
DEV_SITE = Path(sysconfig.get_paths()["purelib"])
# Not part of the wheel's sources (and big): left out of the copy the wheel is built from.
_SKIP_TOP = ("tests/", "bench/", "docs/", ".make/")
# The temporary repository's own code, at its root: it must come out of everything unchanged.
PRE_EXISTING = {
    "backend/__init__.py": '"""The team\'s web app backend (not forkstage\'s)."""\n',
    "cdk/__init__.py": '"""The team\'s own CDK code (not forkstage\'s constructs)."""\n',
    "README.md": "# shop\n",
}
APP = "infra"
APP_NAME = "shop"


def wheel_sources(dest: Path) -> Path:
    """Copy the files a wheel is built from (git's tracked + untracked, not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        src = REPO / rel
        if rel.startswith(_SKIP_TOP) or not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(src.read_bytes())
        target.chmod(src.stat().st_mode & 0o777)
    return dest


def build_wheel(work: Path) -> Path:
    source = wheel_sources(work / "src")
    out = work / "dist"
    procs.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "--no-index",
            "-w",
            str(out),
            str(source),
        ],
        cwd=work,
        timeout=300,
        check=True,
    )
    (wheel,) = out.glob("forkstage-*.whl")
    return wheel


def make_venv(folder: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed (no deps) and the dev venv's packages behind it."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(folder)
    python = folder / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    # after the venv's own site-packages: the wheel's forkstage wins over the editable one
    (site / "zz-dev-dependencies.pth").write_text(f"{DEV_SITE}\n")
    procs.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=folder,
        timeout=300,
        check=True,
    )
    return folder


def clean_path(bindir: Path) -> str:
    """PATH with ``bindir`` first and nothing of this checkout."""
    kept = [
        entry
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and not Path(entry).resolve().is_relative_to(REPO)
    ]
    return os.pathsep.join([str(bindir), *kept])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Installed:
    """The wheel venv, the temporary repository and the initialised app in it."""

    work: Path
    wheel: Path
    venv: Path
    repo: Path
    init: subprocess.CompletedProcess[str]
    home: Path
    endpoint: str
    pre_existing: dict[str, str] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    @property
    def app(self) -> Path:
        return self.repo / APP

    def wheel_files(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AWS_", "TF_", "FORKSTAGE_", "CDKTF_", "VIRTUAL_ENV", "PYTHON"))
            and k != "STAGE"
        }
        env.update(
            {
                "PATH": clean_path(self.bin),
                "FORKSTAGE_HOME": str(self.home),
                "FORKSTAGE_BACKEND_ENDPOINT": self.endpoint,
                "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
            }
        )
        env.update(extra)
        return env

    def run(
        self, argv: list[str], *, cwd: Path | None = None, timeout: float = 240, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return procs.run(argv, cwd=cwd or self.app, env=self.env(**extra), timeout=timeout)

    def forkstage(
        self, *args: str, cwd: Path | None = None, timeout: float = 240, **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return self.run([str(self.bin / "forkstage"), *args], cwd=cwd, timeout=timeout, **extra)

    def new_app(self, repo: Path, *args: str, name: str = APP_NAME) -> Path:
        """Another app by the installed `forkstage init` (extra ``args``, e.g. ``--cdk cdktn``)
        in a fresh git repository ``repo``, with this checkout's node_modules: for tests that
        change their app (the shared one stays as init wrote it)."""
        repo.mkdir(parents=True)
        procs.run(["git", "init", "-q", "-b", "main"], cwd=repo, timeout=30, check=True)
        done = self.forkstage("init", APP, "--name", name, *args, cwd=repo, timeout=60)
        procs.assert_ok(done)
        (repo / APP / "node_modules").symlink_to(REPO / "node_modules")
        # .gitignore's `node_modules/` matches folders, not this symlink: never commit it
        with (repo / ".git" / "info" / "exclude").open("a") as exclude:
            exclude.write(f"/{APP}/node_modules\n")
        return repo / APP

    def unchanged(self) -> dict[str, bool]:
        """Each pre-existing file of the repository: still byte for byte what it was."""
        return {rel: digest(self.repo / rel) == sha for rel, sha in self.pre_existing.items()}


def install(work: Path) -> Installed:
    """Build, install, make the repository, `forkstage init infra --name shop`, Node packages."""
    wheel = build_wheel(work / "wheel")
    venv_dir = make_venv(work / "venv", wheel)
    repo = work / "repo"
    for rel, text in PRE_EXISTING.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    procs.run(["git", "init", "-q", "-b", "main"], cwd=repo, timeout=30, check=True)
    procs.run(["git", "add", "-A"], cwd=repo, timeout=30, check=True)
    procs.run([*git, "commit", "-qm", "the team's app"], cwd=repo, timeout=30, check=True)
    installed = Installed(
        work=work,
        wheel=wheel,
        venv=venv_dir,
        repo=repo,
        init=subprocess.CompletedProcess([], 0),
        home=work / "home",
        endpoint=f"http://127.0.0.1:{free_port()}",
        pre_existing={rel: digest(repo / rel) for rel in PRE_EXISTING},
    )
    installed.init = installed.forkstage("init", APP, "--name", APP_NAME, cwd=repo, timeout=60)
    procs.assert_ok(installed.init)
    # `npm install` offline: this checkout's packages (the same pins as the app's package.json)
    (installed.app / "node_modules").symlink_to(REPO / "node_modules")
    return installed
