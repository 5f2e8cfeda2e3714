"""Installs the stand-in providers where Terraform finds them, offline: the "local cloud".

Terraform loads the stand-ins from a ``filesystem_mirror`` that answers for exactly the pinned
sources (``kislerdm/neon``, ``cloudflare/cloudflare`` at their pinned versions); ``direct`` is
excluded for them, so a local run can never fetch the real providers (and needs no network).
Each mirror entry is a two-line launcher that execs ``<this venv's python> -m
localcloud.providers.<name>``: its bytes depend only on the interpreter path, so its hash
stays put across versions of our code (Terraform pins the hash in the lock file and refuses a
changed package at the same version).

Lock files. ``init`` records the launcher's local ``h1:`` hash; a real run would then reject
the real package, and a local run rejects a lock file made by a real run. ``-lockfile=readonly``
cannot help (it fails when the entry is missing), and ``dev_overrides`` still needs ``init`` to
accept the lock file. So a local run gets a lock file of its own: ``isolated_lock_file(workdir)``
sets any other lock file aside for the run and puts it back after, deleting the stand-in one.
cdktf-cli runs Terraform in its own stack folder and, when no lock file pins every required
provider, runs ``terraform providers lock``, which asks the registry even for mirrored
providers: ``write_lock_file`` gives that folder the lock file ``init`` would write for the
stand-ins, and ``drop_lock_file`` takes it away again before a run against the real providers.
Lock files are gitignored either way; a stand-in one must never be committed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import sys
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from cdk.providers.pins import CLOUDFLARE, NEON, ProviderPin

LOCK_FILE = ".terraform.lock.hcl"
ASIDE_SUFFIX = ".forkstage-aside"
# pin -> module run by its launcher
STANDINS: tuple[tuple[ProviderPin, str], ...] = (
    (NEON, "localcloud.providers.neon"),
    (CLOUDFLARE, "localcloud.providers.cloudflare"),
)


def platform_dir() -> str:
    """Terraform's name for this platform, e.g. ``linux_amd64``."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{sys.platform.replace('linux2', 'linux')}_{arch}"


def mirror_dir(home: Path) -> Path:
    return Path(home) / "providers"


def launcher_path(home: Path, pin: ProviderPin) -> Path:
    return (
        mirror_dir(home)
        / pin.hostname
        / pin.namespace
        / pin.type
        / pin.version
        / platform_dir()
        / f"terraform-provider-{pin.type}_v{pin.version}"
    )


def launcher_text(module: str, python: str | None = None) -> str:
    # sys.prefix/bin/python, not sys.executable: `python` and `python3` of one venv must write
    # the same bytes (Terraform pins the launcher's hash); not resolved: it is a venv symlink
    interpreter = python or str(Path(sys.prefix) / "bin" / "python")
    quoted = "'" + interpreter.replace("'", "'\"'\"'") + "'"
    # -P and no PYTHONPATH: Terraform starts it in the stack folder, and a project's own
    # packages (a backend/ or localcloud/ of a web app) must never shadow forkstage's
    return f'#!/bin/sh\nunset PYTHONPATH\nexec {quoted} -P -m {module} "$@"\n'


def install(home: Path) -> dict[str, Path]:
    """Write (only when changed) every launcher; return source address -> launcher path."""
    installed: dict[str, Path] = {}
    for pin, module in STANDINS:
        path = launcher_path(home, pin)
        text = launcher_text(module)
        if not path.is_file() or path.read_text() != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
        installed[pin.fqn] = path
    return installed


def provider_installation(home: Path) -> str:
    """The CLI-config block for ``terraform_env(home, provider_installation=...)``.

    It also installs the launchers under ``home/providers``.
    """
    install(home)
    sources = ", ".join(f'"{pin.fqn}"' for pin, _ in STANDINS)
    mirror = str(mirror_dir(home)).replace("\\", "\\\\").replace('"', '\\"')
    return (
        "provider_installation {\n"
        "  filesystem_mirror {\n"
        f'    path    = "{mirror}"\n'
        f"    include = [{sources}]\n"
        "  }\n"
        "  direct {\n"
        f"    exclude = [{sources}]\n"
        "  }\n"
        "}\n"
    )


def package_hash(launcher: Path) -> str:
    """Terraform's ``h1:`` hash of an unpacked package directory (here: one launcher file)."""
    lines = []
    for path in sorted(p for p in launcher.parent.iterdir() if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.name}\n")
    summary = hashlib.sha256("".join(lines).encode()).digest()
    return "h1:" + base64.b64encode(summary).decode()


def is_standin_lock(lock_file: Path, home: Path) -> bool:
    """Whether a lock file pins a stand-in (so it must not meet a real run).

    A registry install always records ``zh:`` hashes; an entry for a stand-in source without
    any is a mirror install, ours even if made by an older launcher.
    """
    try:
        text = lock_file.read_text()
    except FileNotFoundError:
        return False
    launchers = [launcher_path(home, pin) for pin, _ in STANDINS]
    if any(package_hash(path) in text for path in launchers if path.is_file()):
        return True
    for pin, _ in STANDINS:
        match = re.search(r'provider "' + re.escape(pin.fqn) + r'" \{(.*?)\n\}', text, re.S)
        if match and "zh:" not in match.group(1):
            return True
    return False


@contextmanager
def isolated_lock_file(workdir: Path, home: Path) -> Iterator[None]:
    """Run a local (stand-in) Terraform session in ``workdir`` without touching its lock file."""
    install(home)
    lock = Path(workdir) / LOCK_FILE
    aside = lock.with_name(LOCK_FILE + ASIDE_SUFFIX)
    if lock.exists():
        if is_standin_lock(lock, home) or aside.exists():
            lock.unlink()  # left by an interrupted local run
        else:
            lock.replace(aside)
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)
        if aside.exists():
            aside.replace(lock)


def lock_file_text(home: Path, sources: Collection[str] | None = None) -> str:
    """What ``terraform init`` writes into a lock file for the stand-ins under ``home``
    (those of ``sources``, fully qualified addresses, when given)."""
    blocks = []
    for pin, _ in sorted(STANDINS, key=lambda standin: standin[0].fqn):
        if sources is not None and pin.fqn not in sources:
            continue
        blocks.append(
            f'provider "{pin.fqn}" {{\n'
            f'  version     = "{pin.version}"\n'
            f'  constraints = "{pin.version}"\n'
            "  hashes = [\n"
            f'    "{package_hash(launcher_path(home, pin))}",\n'
            "  ]\n"
            "}\n"
        )
    return (
        '# This file is maintained automatically by "terraform init".\n'
        "# Manual edits may be lost in future updates.\n\n" + "\n".join(blocks)
    )


def write_lock_file(stack_dir: Path, home: Path, sources: Collection[str] | None = None) -> Path:
    """Pin the stand-ins (of ``sources``) in a stack folder another tool (cdktf-cli) runs
    Terraform in. A lock file from a real run is set aside (``drop_lock_file`` puts it back).
    """
    install(home)
    lock = Path(stack_dir) / LOCK_FILE
    aside = lock.with_name(LOCK_FILE + ASIDE_SUFFIX)
    lock.parent.mkdir(parents=True, exist_ok=True)
    if lock.exists() and not is_standin_lock(lock, home) and not aside.exists():
        lock.replace(aside)
    tmp = lock.with_name(f".{LOCK_FILE}.{os.getpid()}")
    tmp.write_text(lock_file_text(home, sources))
    tmp.replace(lock)
    return lock


def drop_lock_file(stack_dir: Path, home: Path) -> None:
    """Before a real-provider run in that folder: no stand-in lock file, the set-aside one back."""
    lock = Path(stack_dir) / LOCK_FILE
    aside = lock.with_name(LOCK_FILE + ASIDE_SUFFIX)
    if lock.exists() and is_standin_lock(lock, home):
        lock.unlink()
    if aside.exists() and not lock.exists():
        aside.replace(lock)
