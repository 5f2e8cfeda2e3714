"""CDKTF entry point (`npx cdktf synth|deploy|destroy` runs it): the stage named in the environment.

`FORKSTAGE_STAGE` or `STAGE` names the stage, whose stack is then synthesized alone, so a bare
`cdktf deploy|destroy|diff` acts on it and on nothing else; with no stage named, the long-lived
stages from forkstage.toml are. A stack that `forkstage env` did not prepare this shell for
(`FORKSTAGE_PREPARED=<stage>`) still synthesizes the same cdk.tf.json, plus a `forkstage-env.tf`
beside it that stops Terraform's init and plan at once, naming the command to run: unprepared,
cdktf would run whatever `terraform` is on PATH, without the stage's credentials or workspace.
"""

import gc

# A one-shot process: the cyclic collector would only walk the ~100k objects that importing
# cdktf creates (about 90 collections, 15-25 ms) to free memory the exit frees anyway.
gc.disable()

import atexit  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402

from cdk.kernel import memoize_overrides, start_early  # noqa: E402

# Before the imports below: node boots and loads cdktf while Python imports it, and jsii scans
# each class for overridden members once instead of once per construct (see cdk/kernel.py).
start_early()
memoize_overrides()

from cdk.settings import SettingsError, load_settings  # noqa: E402
from cdk.stage import StageError  # noqa: E402
from stacks.app import build_app, stages_to_synth  # noqa: E402

GATE_FILE = "forkstage-env.tf"
GATE = """\
# Written by the cdktf app (main.py): no `forkstage env` prepared this shell for stage {stage},
# so Terraform would run without the pinned engine, the stage's credentials and its workspace.
# It stops init and plan here; a synth in a prepared shell removes it.
forkstage: run  eval "$(forkstage env --stage {stage})"  first (this shell is not prepared)
"""


def named_stage(environ: Mapping[str, str]) -> str | None:
    """``FORKSTAGE_STAGE`` or ``STAGE``; both naming different stages is an error, not a choice."""
    wrapper, plain = environ.get("FORKSTAGE_STAGE") or None, environ.get("STAGE") or None
    if wrapper and plain and wrapper != plain:
        raise StageError(
            f"FORKSTAGE_STAGE={wrapper} and STAGE={plain} name different stages: for {plain} run "
            f'eval "$(forkstage env --stage {plain})" (or unset STAGE to use {wrapper})'
        )
    return wrapper or plain


def gate_unprepared(outdir: Path, stages: list[str], prepared: str | None) -> None:
    """Beside each stack's cdk.tf.json: the gate file unless this shell was prepared for it."""
    for stage in stages:
        gate = outdir / "stacks" / f"stack-{stage}" / GATE_FILE
        if stage == prepared:
            gate.unlink(missing_ok=True)
        else:
            gate.write_text(GATE.format(stage=stage))


def main() -> int:
    try:
        stage = named_stage(os.environ)
        settings = load_settings(Path(__file__).resolve().parent)
        stages = [s.name for s in stages_to_synth(settings, stage)]
        app = build_app(settings, stage)
        app.synth()
    except (StageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    gate_unprepared(Path(app.outdir), stages, os.environ.get("FORKSTAGE_PREPARED"))
    return 0


def exit_now(code: int) -> None:
    """Exit without tearing the interpreter down object by object (70-100 ms after a synth).

    The exit handlers still run first (jsii's stops the node kernel and drains its output),
    then the standard streams are flushed; every file was written synchronously by then.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
