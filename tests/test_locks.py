"""The hash-locked requirements (docs/development.md#locks) agree with what they are locked from:
pyproject.toml, requirements/*.in and the requirements.in of each layer and function.

The checks read files only (``scripts.lock.problems``): a dependency added, removed or
re-bounded without `make lock`, or a lock edited by hand, fails here without the network. The
last test runs `make lock`'s script itself, which needs the package index (like the build
tests).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from devkit import REPO
from scripts.lock import (
    DEV_LOCK,
    LAMBDA_FOLDERS,
    PIP_LAMBDA_TARGET,
    lock_files,
    locks,
    pins,
    problems,
)

LAYER_LOCK = "layers/schwab_tokens/requirements.lock"


def locked(root: Path, path: str) -> dict[str, str]:
    """The pins of one lock file: name -> version (the last, for a name pinned per Python)."""
    return {pin.name: pin.version for pin in pins((root / path).read_text(), path)}


def test_the_locks_agree_with_pyproject_and_their_inputs() -> None:
    assert problems(REPO) == []


def test_every_input_has_its_lock_and_every_lock_its_input() -> None:
    expected = {lock.path for lock in locks(REPO)}
    assert set(lock_files(REPO)) == expected
    assert {DEV_LOCK, LAYER_LOCK, "layers/powertools/requirements.lock"} <= expected
    # The SAM CLI and checkov of `make tools`, and the pip every venv starts from.
    assert {"requirements/sam.lock", "requirements/checkov.lock", "requirements/pip.lock"} <= (
        expected
    )


def test_the_internet_facing_layer_pins_the_whole_http_stack_with_hashes() -> None:
    """requests' own dependencies, not only requests and urllib3, are pinned and hashed; the
    runtime's boto3 is not shipped."""
    layer = pins((REPO / LAYER_LOCK).read_text(), LAYER_LOCK)
    assert {pin.name for pin in layer} == {
        "requests",
        "urllib3",
        "idna",
        "certifi",
        "charset-normalizer",
    }
    assert all(pin.hashes for pin in layer)
    # What ships is what the tests run.
    dev = locked(REPO, DEV_LOCK)
    assert {pin.name: pin.version for pin in layer} == {pin.name: dev[pin.name] for pin in layer}


# -- drift, on a copy of the tree ----------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of what the locks are made from and the locks themselves."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root)
    shutil.copytree(REPO / "requirements", root / "requirements")
    for folder in LAMBDA_FOLDERS:
        for path in (REPO / folder).glob("*/requirements.*"):
            target = root / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, target)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pinned_line(root: Path, path: str, name: str) -> str:
    """The start of the line that pins ``name`` in a lock."""
    return f"\n{name}=={locked(root, path)[name]} "


Change = Callable[[Path], None]

DRIFT: dict[str, tuple[Change, str]] = {
    "a dev dependency added to pyproject.toml": (
        lambda root: edit(
            root / "pyproject.toml", '"pyyaml>=6",', '"pyyaml>=6",\n    "tomli-w>=1",'
        ),
        "pyproject.toml asks for tomli-w>=1, but requirements/dev.lock was locked without tomli-w",
    ),
    "a dependency removed from pyproject.toml": (
        lambda root: edit(root / "pyproject.toml", '    "pyyaml>=6",\n', ""),
        "requirements/dev.lock was locked from pyyaml>=6, which pyproject.toml no longer asks for",
    ),
    "a dependency re-bounded in pyproject.toml": (
        lambda root: edit(root / "pyproject.toml", '"requests>=2.32"', '"requests>=2.32,<2.40"'),
        "pyproject.toml asks for requests<2.40,>=2.32, but requirements/dev.lock was locked from "
        "requests>=2.32",
    ),
    "a dependency re-bounded past its pin": (
        lambda root: edit(root / "pyproject.toml", '"requests>=2.32"', '"requests>=99"'),
        "outside pyproject.toml's requests>=99",
    ),
    "a lock pin edited outside pyproject.toml's specifier": (
        lambda root: edit(
            root / DEV_LOCK, pinned_line(root, DEV_LOCK, "requests"), "\nrequests==2.31.0 "
        ),
        "requirements/dev.lock pins requests==2.31.0, outside pyproject.toml's requests>=2.32",
    ),
    "a layer shipping another version than the tests run": (
        lambda root: edit(root / LAYER_LOCK, pinned_line(root, LAYER_LOCK, "idna"), "\nidna==3.1 "),
        f"{LAYER_LOCK} ships idna==3.1, but the tests run idna==",
    ),
    "a requirement added to a layer": (
        lambda root: edit(
            root / "layers/schwab_tokens/requirements.in",
            "urllib3>=2.0,<3",
            "urllib3>=2.0,<3\nrich",
        ),
        "layers/schwab_tokens/requirements.in asks for rich, but "
        f"{LAYER_LOCK} was locked without rich",
    ),
    "a function given requirements without a lock": (
        lambda root: write(root / "functions/example_consumer/requirements.in", "apprise>=1.9\n"),
        "functions/example_consumer/requirements.lock is missing",
    ),
    "a tool's version changed without a lock": (
        lambda root: edit(root / "requirements/sam.in", "aws-sam-cli==", "aws-sam-cli==9"),
        "requirements/sam.in asks for aws-sam-cli==9",
    ),
    "a hash removed from a lock": (
        lambda root: edit(
            root / LAYER_LOCK,
            pinned_line(root, LAYER_LOCK, "certifi") + "\\\n",
            pinned_line(root, LAYER_LOCK, "certifi").rstrip() + "\n#",
        ),
        "lacks sha256 hashes",
    ),
    "a Lambda lock allowing a second file for a pin": (
        lambda root: edit(
            root / LAYER_LOCK,
            pinned_line(root, LAYER_LOCK, "charset-normalizer") + "\\\n",
            pinned_line(root, LAYER_LOCK, "charset-normalizer")
            + "\\\n    --hash=sha256:"
            + "0" * 64
            + " \\\n",
        ),
        "allows 2 files; a Lambda lock keeps only the hash of the wheel that ships",
    ),
    "a lock left behind by a removed input": (
        lambda root: (root / "layers/schwab_tokens/requirements.in").unlink(),
        f"{LAYER_LOCK} has no input",
    ),
}


@pytest.mark.parametrize("change", sorted(DRIFT))
def test_drift_between_the_locks_and_their_inputs_fails_naming_the_fix(
    tree: Path, change: str
) -> None:
    assert problems(tree) == []  # the copy agrees before the change
    apply, expected = DRIFT[change]
    apply(tree)
    found = problems(tree)
    assert any(expected in problem for problem in found), "\n".join(found)
    for problem in found:
        assert "make lock" in problem or "delete it" in problem, problem


def test_a_lambda_lock_shipping_boto3_fails(tree: Path) -> None:
    """The runtime's boto3 and botocore: a second copy in a layer would shadow them."""
    lock = tree / LAYER_LOCK
    lock.write_text(lock.read_text() + "boto3==1.40.0 \\\n    --hash=sha256:" + "0" * 64 + "\n")
    found = problems(tree)
    assert any(f"{LAYER_LOCK} ships boto3, which the Lambda runtime has" in p for p in found), found


# -- `make lock` itself (network: the package index) ---------------------------------------------
@pytest.mark.slow
def test_make_lock_settles_a_new_dependency_and_moves_no_other_pin(tree: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    assert uv.exists(), "uv is a dev dependency (pyproject.toml): run `make setup`"
    before = {path: locked(tree, path) for path in lock_files(tree)}
    edit(tree / "pyproject.toml", '"pyyaml>=6",', '"pyyaml>=6",\n    "tomli-w>=1",')
    assert problems(tree)
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock.py"), "--root", str(tree)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert problems(tree) == []
    after = {path: locked(tree, path) for path in lock_files(tree)}
    assert "tomli-w" in after[DEV_LOCK]
    del after[DEV_LOCK]["tomli-w"]
    assert after == before


def test_every_venv_of_development_and_ci_installs_only_hash_checked_locks() -> None:
    """make setup and make tools: every pip install names a lock and checks its hashes; the one
    exception installs the project itself, adding nothing (--no-deps)."""
    installs = [
        line.strip()
        for makefile in (REPO / "Makefile", REPO / "mk" / "tools.mk")
        for line in makefile.read_text().splitlines()
        if "pip install" in line and not line.lstrip().startswith("#")
    ]
    assert len(installs) >= 6, installs
    for line in installs:
        if line.endswith("-e ."):
            assert "--no-deps" in line and "--no-build-isolation" in line, line
        else:
            assert "--require-hashes" in line and re.search(r"-r \$\(\w+_LOCK\)", line), line


def test_every_lambda_builder_installs_its_lock_as_make_lock_resolved_it() -> None:
    """The makefile builders' pip flags are the ones `make lock` picks the shipped file with."""
    makefiles = [REPO / "functions" / "Makefile", *sorted((REPO / "layers").glob("*/Makefile"))]
    for makefile in makefiles:
        command = makefile.read_text().replace("\\\n", " ")
        assert "-r requirements.lock" in command, makefile
        assert "--require-hashes" in command, makefile
        assert " ".join(PIP_LAMBDA_TARGET) in " ".join(command.split()), makefile
