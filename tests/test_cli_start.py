"""The CLI starts fast: `--help` imports no command module, `stages` only what it uses."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from forkstage.cli import COMMANDS, command_doc, main
from tests.wrapper_env import REPO

# Costly imports a start must not pay for unless the command uses them.
HEAVY = ("psycopg", "boto3", "botocore", "backend.serve", "forkstage.pipeline", "cdktf")


def imported_by(*args: str) -> set[str]:
    """Modules imported by `forkstage ARGS` in a fresh interpreter (the command runs)."""
    code = (
        "import sys, json, contextlib, io\n"
        "from forkstage.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        f"    main({list(args)!r}, prog_name='forkstage')\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_lines_read_from_the_source_are_click_s(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    doc = command_doc(name)
    assert doc is not None, f"{name}: no docstring found in its module's source"
    for limit in (30, 45, 60, 200):
        read = click.Command(name, help=doc).get_short_help_str(limit)
        assert read == command.get_short_help_str(limit)


def test_help_imports_no_command_module() -> None:
    modules = imported_by("--help")
    assert not {m for m in modules if m.startswith("forkstage.commands.")} - {"forkstage.commands"}
    assert not [m for m in HEAVY if m in modules]
