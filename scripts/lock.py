"""`make lock`: every hash-locked requirements file of the project, compiled by uv from its inputs.

The locks (docs/development.md#locks):

- ``requirements/dev.lock``: what `make setup` installs, here and in CI: pyproject.toml's
  dependencies, its dev extra and its build-system requirements. One universal resolution, for
  Python 3.11 and later on any platform.
- ``requirements/NAME.lock`` from ``requirements/NAME.in``: pip itself (pip.lock, which every
  venv installs first), and the venvs of `make tools` (the SAM CLI, checkov); universal too.
- ``requirements.lock`` beside each ``requirements.in`` of ``layers/*/`` and ``functions/*/``: what
  ships in a Lambda. Wheels for CPython 3.12 on linux/arm64 only, at the versions of
  requirements/dev.lock (what ships is what the tests ran), and without the Lambda runtime's
  boto3 and its dependencies (``RUNTIME``) unless the input names them. uv resolves them for
  that platform; then pip, run as the makefile builders run it, picks the one file per pin that
  ships, and the lock keeps that file's hash only (``shipped_hashes``, ``keep_hashes``).

Each lock records its inputs in its header (``#   input: ...`` lines). ``problems`` compares
them, and the pins, with today's inputs, without the network: tests/test_locks.py runs it.

    python scripts/lock.py [--upgrade] [--root DIR]

Without ``--upgrade`` a pin stays where it is unless an input no longer allows it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DEV_LOCK = "requirements/dev.lock"
#: Where a requirements.in beside a layer's Makefile or a function's app.py is locked for Lambda.
LAMBDA_FOLDERS = ("layers", "functions")
#: What the Lambda python3.12 runtime brings (boto3 and what it needs): never shipped unless an
#: input names it (layers/schwab_tokens ships urllib3 2, which requests needs).
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")
#: Never in a Lambda lock: a second copy would shadow the runtime's.
NEVER_SHIPPED = ("boto3", "botocore")
#: Every function has the schwab-tokens layer: what it ships, a function's lock leaves out.
FUNCTIONS_LAYER_LOCK = "layers/schwab_tokens/requirements.lock"
#: uv's target for what ships: the platform the makefile builders install for with pip (their
#: --only-binary=:all: is compile_lock's --no-build)...
LAMBDA_TARGET = ("--python-platform", "aarch64-manylinux2014", "--python-version", "3.12")
#: ...and the makefile builders' own flags (layers/*/Makefile, functions/Makefile), with which
#: pip picks the one file per pin that ships.
PIP_LAMBDA_TARGET = (
    "--platform",
    "manylinux2014_aarch64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)
#: The environment a Lambda lock's markers are read in, to compare its pins with dev.lock's.
LAMBDA_ENVIRONMENT = {
    "python_version": "3.12",
    "python_full_version": "3.12.0",
    "implementation_name": "cpython",
    "implementation_version": "3.12.0",
    "platform_python_implementation": "CPython",
    "platform_machine": "aarch64",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
}
#: Development and tools: every platform, from pyproject.toml's requires-python up.
UNIVERSAL = ("--universal", "--python-version", "3.11")
_INPUT = re.compile(r"^#   input: (.+)$", re.M)
_HASH = re.compile(r"sha256:[0-9a-f]{64}")
FIX = "run `make lock`"


@dataclass(frozen=True)
class Lock:
    """One lock file: ``path`` (relative to the root), compiled from ``source``; ``kind`` is
    ``dev``, ``tool`` or ``lambda``."""

    path: str
    source: str
    kind: str


@dataclass(frozen=True)
class Pin:
    """A pinned requirement of a lock: its canonical name, version, marker and sha256 hashes."""

    name: str
    version: str
    marker: Marker | None
    hashes: tuple[str, ...]


def locks(root: Path) -> list[Lock]:
    """Every lock the tree at ``root`` should have, in the order they are compiled (dev.lock
    first: the Lambda locks are constrained by it)."""
    found = [Lock(DEV_LOCK, "pyproject.toml", "dev")]
    found += [
        Lock(f"requirements/{path.stem}.lock", f"requirements/{path.name}", "tool")
        for path in sorted((root / "requirements").glob("*.in"))
    ]
    for folder in LAMBDA_FOLDERS:
        for source in sorted((root / folder).glob("*/requirements.in")):
            where = f"{folder}/{source.parent.name}"
            found.append(Lock(f"{where}/requirements.lock", f"{where}/requirements.in", "lambda"))
    return found


def lock_files(root: Path) -> list[str]:
    """Every lock file present under ``root``, relative to it."""
    patterns = ("requirements/*.lock", *(f"{f}/*/requirements.lock" for f in LAMBDA_FOLDERS))
    return sorted(path.relative_to(root).as_posix() for p in patterns for path in root.glob(p))


def _requirement_lines(text: str, source: str) -> list[str]:
    lines = []
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line.startswith("-"):
            raise ValueError(f"{source}: {line!r}: name requirements only, no pip options")
        if line:
            lines.append(line)
    return lines


def inputs(root: Path, lock: Lock) -> list[Requirement]:
    """The requirements ``lock`` is compiled from, as its source says today.

    Raises ValueError for a source line that is not a requirement (a pip option)."""
    if lock.kind == "dev":
        pyproject = tomllib.loads((root / "pyproject.toml").read_text())
        project = pyproject["project"]
        strings = [
            *project["dependencies"],
            *project["optional-dependencies"]["dev"],
            *_build_inputs(pyproject),
        ]
    else:
        strings = _requirement_lines((root / lock.source).read_text(), lock.source)
    return sorted((Requirement(s) for s in strings), key=str)


def _build_inputs(pyproject: dict[str, object]) -> list[str]:
    # The editable install runs without build isolation (Makefile: setup): the build backend is
    # locked too.
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    return list(build_system["requires"])


def recorded_inputs(text: str) -> list[str]:
    """The inputs a lock file's header says it was compiled from."""
    return _INPUT.findall(text)


def pins(text: str, path: str) -> list[Pin]:
    """The pinned requirements of a lock file's text.

    Raises ValueError for a line that is not an exact pin (``name==version``) or a hash."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *hashes = line.split("--hash=")
        parsed = Requirement(requirement.strip())
        specifiers = list(parsed.specifier)
        if len(specifiers) != 1 or specifiers[0].operator != "==":
            raise ValueError(f"{path}: {requirement.strip()!r} is not pinned with ==: {FIX}")
        name, version = canonicalize_name(parsed.name), specifiers[0].version
        found.append(Pin(name, version, parsed.marker, tuple(h.strip() for h in hashes)))
    return found


def _by_name(requirements: Iterable[str]) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for requirement in requirements:
        grouped.setdefault(canonicalize_name(Requirement(requirement).name), []).append(requirement)
    return {name: " and ".join(sorted(found)) for name, found in grouped.items()}


def _shipped_versions(lock_pins: list[Pin]) -> dict[str, str]:
    return {
        pin.name: pin.version
        for pin in lock_pins
        if pin.marker is None or pin.marker.evaluate(LAMBDA_ENVIRONMENT)
    }


def problems(root: Path) -> list[str]:
    """What is wrong between the locks under ``root`` and their inputs, each naming its fix
    (empty when they agree). Reads files only: no network."""
    found: list[str] = []
    expected = locks(root)
    for orphan in sorted(set(lock_files(root)) - {lock.path for lock in expected}):
        found.append(f"{orphan} has no input: delete it, or give it its .in and {FIX}")
    dev_pins: dict[str, str] = {}
    for lock in expected:
        file = root / lock.path
        if not file.exists():
            found.append(f"{lock.path} is missing ({lock.source} is its input): {FIX}")
            continue
        text = file.read_text()
        current = inputs(root, lock)
        found += _input_drift(lock, _by_name(map(str, current)), _by_name(recorded_inputs(text)))
        try:
            lock_pins = pins(text, lock.path)
        except ValueError as error:
            found.append(str(error))
            continue
        found += _pins_outside(lock, current, lock_pins)
        if lock.kind == "dev":
            dev_pins = _shipped_versions(lock_pins)
        elif lock.kind == "lambda":
            found += _lambda_problems(lock, lock_pins, dev_pins)
    return found


def _input_drift(lock: Lock, current: dict[str, str], recorded: dict[str, str]) -> list[str]:
    found = []
    for name in sorted(current.keys() - recorded.keys()):
        found.append(
            f"{lock.source} asks for {current[name]}, but {lock.path} was locked without "
            f"{name}: {FIX}"
        )
    for name in sorted(recorded.keys() - current.keys()):
        found.append(
            f"{lock.path} was locked from {recorded[name]}, which {lock.source} no longer asks "
            f"for: {FIX}"
        )
    for name in sorted(current.keys() & recorded.keys()):
        if current[name] != recorded[name]:
            found.append(
                f"{lock.source} asks for {current[name]}, but {lock.path} was locked from "
                f"{recorded[name]}: {FIX}"
            )
    return found


def _pins_outside(lock: Lock, current: list[Requirement], lock_pins: list[Pin]) -> list[str]:
    found = []
    for pin in lock_pins:
        if not pin.hashes or not all(_HASH.fullmatch(h) for h in pin.hashes):
            found.append(f"{lock.path}: {pin.name}=={pin.version} lacks sha256 hashes: {FIX}")
    for requirement in current:
        name = canonicalize_name(requirement.name)
        versions = [pin.version for pin in lock_pins if pin.name == name]
        if not versions:
            found.append(f"{lock.path} pins no {name} ({lock.source}: {requirement}): {FIX}")
        for version in versions:
            if not requirement.specifier.contains(version, prereleases=True):
                found.append(
                    f"{lock.path} pins {name}=={version}, outside {lock.source}'s "
                    f"{requirement}: {FIX}"
                )
    return found


def _lambda_problems(lock: Lock, lock_pins: list[Pin], dev_pins: dict[str, str]) -> list[str]:
    found = []
    for pin in lock_pins:
        if len(pin.hashes) > 1:
            # pip takes any file a hash allows: with more than the one that ships, a build could
            # silently install another (charset-normalizer's pure-Python wheel for the compiled).
            found.append(
                f"{lock.path}: {pin.name}=={pin.version} allows {len(pin.hashes)} files; a Lambda "
                f"lock keeps only the hash of the wheel that ships: {FIX}"
            )
        if pin.name in NEVER_SHIPPED:
            found.append(
                f"{lock.path} ships {pin.name}, which the Lambda runtime has: drop what asks for "
                f"it from {lock.source}"
            )
        tested = dev_pins.get(pin.name)
        if tested is not None and tested != pin.version:
            found.append(
                f"{lock.path} ships {pin.name}=={pin.version}, but the tests run "
                f"{pin.name}=={tested} ({DEV_LOCK}): {FIX}"
            )
    return found


# -- compiling ------------------------------------------------------------------------------------
def _target(lock: Lock) -> str:
    if lock.kind == "lambda":
        return (
            "For Lambda: CPython 3.12 on linux/arm64, at requirements/dev.lock's versions, the\n"
            "# hash of the one wheel pip installs for each; the runtime's boto3 and its\n"
            "# dependencies only where an input names them."
        )
    return "For Python 3.11 and later on any platform (a universal resolution)."


def header(lock: Lock, current: list[Requirement]) -> str:
    """The lines `make lock` writes above uv's output: what the lock is for and its inputs."""
    lines = [
        "# Hash-locked by `make lock` (scripts/lock.py: uv pip compile --generate-hashes). Do not",
        "# edit: tests/test_locks.py compares these inputs and pins with " + lock.source + ".",
        "# " + _target(lock),
        "# Inputs:",
        *(f"#   input: {requirement}" for requirement in current),
    ]
    return "\n".join(lines) + "\n"


def compile_lock(root: Path, lock: Lock, uv: Path, upgrade: bool) -> None:
    """Writes ``lock`` from its inputs with uv (network: the package index), leaving the file
    untouched when nothing changed (its venv is made anew only when its lock is newer).

    Raises subprocess.CalledProcessError when uv cannot resolve them."""
    current = inputs(root, lock)
    file = root / lock.path
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder) / "requirements.lock"
        if file.exists():
            shutil.copy(file, output)  # uv keeps the pins its inputs still allow
        args = [str(uv), "pip", "compile", "--quiet", "--generate-hashes", "--no-header"]
        # pip --require-hashes wants a dependency asked for with extras (aws-sam-cli:
        # boto3-stubs[s3, ...]) pinned with them.
        args += ["--no-strip-extras"]
        # Wheels only (uv's --only-binary :all:): no package's build runs to learn its metadata,
        # and what ships is what the makefile builders can install (pip --only-binary=:all:).
        args += ["--no-build", "--output-file", str(output)]
        args += ["--upgrade"] if upgrade else []
        stdin = None
        if lock.kind == "dev":
            pyproject = tomllib.loads((root / "pyproject.toml").read_text())
            args += ["pyproject.toml", "--extra", "dev", "-", *UNIVERSAL]
            stdin = "\n".join(_build_inputs(pyproject)) + "\n"
        elif lock.kind == "tool":
            args += [lock.source, *UNIVERSAL]
        else:
            named = {canonicalize_name(requirement.name) for requirement in current}
            args += [lock.source, *LAMBDA_TARGET, "--constraints", DEV_LOCK]
            provided = set(RUNTIME)
            if lock.path.startswith("functions/"):
                layer = (root / FUNCTIONS_LAYER_LOCK).read_text()
                provided |= {pin.name for pin in pins(layer, FUNCTIONS_LAYER_LOCK)}
            for package in sorted(provided):
                if package not in named:
                    args += ["--no-emit-package", package]
        # uv would otherwise try to download a Python 3.12 for the Lambda target; it needs none.
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        subprocess.run(args, cwd=root, input=stdin, text=True, check=True, env=env)
        text = output.read_text()
        if lock.kind == "lambda":
            text = keep_hashes(text, shipped_hashes(root, output))
    text = header(lock, current) + text
    changed = not file.exists() or file.read_text() != text
    if changed:
        file.write_text(text)
    state = "written" if changed else "unchanged"
    print(f"{lock.path}: {len(pins(text, lock.path))} pins from {lock.source}, {state}")


def shipped_hashes(root: Path, requirements: Path) -> dict[str, str]:
    """Name -> sha256 of the file pip installs for each pin of a Lambda lock (``requirements``,
    with every file's hash), as the makefile builders run it (network: the package index's
    metadata, not the wheels).

    Raises subprocess.CalledProcessError when pip cannot install the lock for Lambda, and
    ValueError when the index gives no hash for a file."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
                *("--dry-run", "--ignore-installed", "--no-deps", "--report", str(report)),
                *(*PIP_LAMBDA_TARGET, "--require-hashes", "-r", str(requirements)),
            ],
            cwd=root,
            check=True,
        )
        installs = json.loads(report.read_text())["install"]
    found: dict[str, str] = {}
    for item in installs:
        name = canonicalize_name(item["metadata"]["name"])
        sha256 = item["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha256:
            raise ValueError(f"{requirements}: the index gives no sha256 for {name}'s file")
        found[name] = sha256
    return found


def keep_hashes(text: str, keep: dict[str, str]) -> str:
    """A lock's text with, for each pin, only the hash ``keep`` names for it.

    Raises ValueError for a pin ``keep`` has no hash for, or one the pin did not list."""
    out = []
    pin = None
    for line in text.splitlines():
        if line.lstrip().startswith("--hash="):
            continue
        if line and not line[0].isspace() and not line.startswith("#"):
            requirement = line.rstrip(" \\")
            pin = canonicalize_name(Requirement(requirement).name)
            if pin not in keep:
                raise ValueError(f"pip would not install {pin} from the lock")
            if f"--hash=sha256:{keep[pin]}" not in text:
                raise ValueError(f"pip picked a file for {pin} that the lock does not list")
            out += [f"{requirement} \\", f"    --hash=sha256:{keep[pin]}"]
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--upgrade", action="store_true", help="move every pin to the newest version allowed"
    )
    parser.add_argument("--root", type=Path, default=REPO, help="the checkout (default: this one)")
    args = parser.parse_args(argv)
    uv = Path(sys.executable).with_name("uv")
    if not uv.exists():
        print(f"uv is not installed beside {sys.executable}: run `make setup`", file=sys.stderr)
        return 2
    root = args.root.resolve()
    (root / "requirements").mkdir(exist_ok=True)
    for lock in locks(root):
        compile_lock(root, lock, uv, args.upgrade)
    left = problems(root)
    for problem in left:
        print(problem, file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main())
