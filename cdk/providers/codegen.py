"""Render typed construct classes from the schema snapshots: ``python -m cdk.providers.codegen``.

The generated modules are committed, so a synth imports a few hundred lines instead of a 93 MB
prebuilt provider package; ``--check`` (and tests/test_codegen.py) catches hand edits and
snapshots changed without regenerating.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cdk.providers import schema as sch
from cdk.providers.model import RESERVED, build, py_name
from cdk.providers.pins import PINS, ProviderPin

__all__ = ["GENERATED_DIR", "RESERVED", "main", "py_name", "render_all", "stale", "write"]

PACKAGE_DIR = Path(__file__).parent
GENERATED_DIR = PACKAGE_DIR / "generated"
TEMPLATES_DIR = PACKAGE_DIR / "templates"

# --------------------------------------------------------------------------- rendering


def _env() -> Any:
    import jinja2  # only codegen needs jinja2; generated modules never import it

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )


def pin_var_of(pin: ProviderPin) -> str:
    from cdk.providers import pins

    for var in dir(pins):
        if getattr(pins, var) is pin and var.isupper() and var != "PINS":
            return var
    raise LookupError(f"pin {pin.name!r} is not a module-level constant in cdk/providers/pins.py")


def render_module(provider: sch.ProviderSchema) -> str:
    module = build(provider, pin_var_of(provider.pin))
    body = _env().get_template("module.py.j2").render(m=module)
    typing_names = [n for n in ("Any", "Required", "TypedDict") if re.search(rf"\b{n}\b", body)]
    abc_names = [n for n in ("Mapping", "Sequence") if re.search(rf"\b{n}\[", body)]
    header = (
        _env()
        .get_template("header.py.j2")
        .render(m=module, typing_names=typing_names, abc_names=abc_names)
    )
    return format_source(header + body)


def render_init(pins: Iterable[ProviderPin]) -> str:
    return format_source(_env().get_template("init.py.j2").render(pins=list(pins)))


def ruff_binary() -> str:
    candidate = Path(sys.executable).parent / "ruff"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("ruff")
    if not found:
        raise FileNotFoundError("ruff is needed to format generated code: run `make install`")
    return found


def format_source(text: str) -> str:
    """Format as the pinned ``ruff format`` would, since the output is committed."""
    done = subprocess.run(
        [ruff_binary(), "format", "--stdin-filename", str(GENERATED_DIR / "x.py"), "-"],
        input=text,
        text=True,
        capture_output=True,
        check=False,
        cwd=PACKAGE_DIR.parent.parent,
    )
    if done.returncode != 0:
        raise RuntimeError(f"ruff format failed on generated code: {done.stderr.strip()}")
    return done.stdout


def render_all(schemas_dir: Path | None = None) -> dict[str, str]:
    """File name (relative to generated/) -> content, for every pinned provider."""
    out: dict[str, str] = {}
    for pin in PINS.values():
        path = (schemas_dir or sch.SCHEMAS_DIR) / f"{pin.name}.json"
        out[f"{pin.name}.py"] = render_module(sch.load(pin, path))
    out["__init__.py"] = render_init(PINS.values())
    return out


def write(outdir: Path, files: dict[str, str]) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = outdir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def stale(outdir: Path, files: dict[str, str]) -> list[Path]:
    """Generated files that differ from what the snapshots render to (or are missing/extra)."""
    bad = [
        outdir / n
        for n, t in files.items()
        if not (outdir / n).exists() or (outdir / n).read_text() != t
    ]
    extra = [p for p in sorted(outdir.glob("*.py")) if p.name not in files]
    return bad + extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cdk.providers.codegen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if generated code is stale")
    parser.add_argument("--outdir", type=Path, default=GENERATED_DIR)
    args = parser.parse_args(argv)
    files = render_all()
    if args.check:
        bad = stale(args.outdir, files)
        for path in bad:
            print(
                f"{path}: out of date with cdk/providers/schemas; run `make generate`",
                file=sys.stderr,
            )
        return 1 if bad else 0
    for path in write(args.outdir, files):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
