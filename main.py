"""CDKTF entry point (`npx cdktf synth` runs this): the stage named in the environment.

`FORKSTAGE_STAGE` (falling back to `STAGE`) names the stage; the long-lived stages from
forkstage.toml are synthesized too, unless `FORKSTAGE_SYNTH_ONLY=1` (the wrapper's deploys).
"""

import gc

# A one-shot process: the cyclic collector would only walk the ~100k objects that importing
# cdktf creates (about 90 collections, 15-25 ms) to free memory the exit frees anyway.
gc.disable()

import atexit  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from cdk.kernel import memoize_overrides, start_early  # noqa: E402

# Before the imports below: node boots and loads cdktf while Python imports it, and jsii scans
# each class for overridden members once instead of once per construct (see cdk/kernel.py).
start_early()
memoize_overrides()

from cdk.settings import SettingsError, load_settings  # noqa: E402
from cdk.stage import StageError  # noqa: E402
from stacks.app import build_app  # noqa: E402


def main() -> int:
    stage = os.environ.get("FORKSTAGE_STAGE") or os.environ.get("STAGE") or None
    only = os.environ.get("FORKSTAGE_SYNTH_ONLY") == "1"
    try:
        build_app(load_settings(Path(__file__).resolve().parent), stage, only=only).synth()
    except (StageError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
