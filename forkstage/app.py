"""The cdktf app's entry point (``main.py`` calls ``run``): what every forkstage app needs.

`npx cdktf synth`, `forkstage synth` and every deploy run the app command of cdktf.json; this
does the same steps for any app: refuse a folder that shadows forkstage's packages (one line),
start the jsii kernel early, read forkstage.toml beside main.py, build the Worker bundle when it
is missing or stale, synthesize the named stage alone (else the long-lived stages) with the
prepared-shell gate. Bad input is one line on stderr and exit 2, never a traceback.

Imported by the app process only: nothing here may import the wrapper's CLI side.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

from forkstage.shadow import shadowing

# A one-shot process: the cyclic collector would only walk the ~100k objects that importing
# cdktf creates (about 90 collections, 15-25 ms) to free memory the exit frees anyway.
gc.disable()


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    exit_now(2)


def _stack_class(stack: str | type[Any]) -> type[Any]:
    if not isinstance(stack, str):
        return stack
    module, _, attr = stack.partition(":")
    if not attr:
        _fail(f"run({stack!r}): name the stack class as 'module:Class', e.g. 'stacks.app:AppStack'")
    found = getattr(importlib.import_module(module), attr, None)
    if not isinstance(found, type):
        _fail(f"run({stack!r}): {module} has no class {attr}")
    return found


def run(stack: str | type[Any], main_file: str) -> NoReturn:
    """Synthesize ``stack`` (a ``ForkstageStack`` subclass, or ``"module:Class"``) for the stage
    named in the environment; ``main_file`` is the app's ``__file__`` (its folder holds
    forkstage.toml). Exits: 0, or 2 with one line on stderr."""
    root = Path(main_file).resolve().parent
    problem = shadowing(root)
    if problem:
        _fail(problem)
    from cdk.runtime import RuntimeChoiceError, check_app

    try:  # cdktf or cdktn ([app] cdk), installed and the one the app's own code imports
        check_app(root, Path(main_file))
    except RuntimeChoiceError as exc:
        _fail(str(exc))
    from cdk.kernel import memoize_overrides, start_early

    # Before the imports below: node boots and loads cdktf while Python imports it, and jsii
    # scans each class for overridden members once instead of once per construct.
    start_early()
    memoize_overrides()

    from cdk.app import ForkstageApp, named_stage, stages_to_synth
    from cdk.settings import SettingsError, load_settings
    from cdk.stage import StageError
    from forkstage.bundle import BundleError, WorkerBundle

    try:
        settings = load_settings(root)
        stage = named_stage(os.environ)
        stages = stages_to_synth(settings, stage)
        WorkerBundle(root=root, worker=settings.worker_path).ensure()
        cls = _stack_class(stack)
        app = ForkstageApp(prepared=os.environ.get("FORKSTAGE_PREPARED") or None)
        for each in stages:
            cls(app, stage=each, settings=settings)
        app.synth()
    except (StageError, SettingsError, BundleError) as exc:
        _fail(str(exc))
    exit_now(0)


def exit_now(code: int) -> NoReturn:
    """Exit without tearing the interpreter down object by object (70-100 ms after a synth).

    The exit handlers still run first (jsii's stops the node kernel and drains its output),
    then the standard streams are flushed; every file was written synchronously by then.
    """
    import atexit

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
