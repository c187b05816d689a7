"""The README's install line works as printed, from a clone, into an environment of its own.

`pip install .` into a distribution's system Python stops with "externally-managed-environment"
(PEP 668), so the README installs with pipx. This test takes the README's `pipx install` line
(from README.md itself, never a copy) and runs it in a copy of the clone with a fresh pipx in a
new virtual environment, changing only where pipx installs (PIPX_HOME and PIPX_BIN_DIR in the
test's folder); then the installed `schwab-tokens --version` must print this package's version.

It needs the package index (pip downloads pipx and the package's dependencies, or takes them
from pip's cache), as the build tests do (tests/template/test_build.py): about 30 s here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import schwab_tokens
from devkit import REPO
from tests.docs.checker import parse_doc, shell_lines

NEEDS_THE_INDEX = "this test needs the package index (or pip's cache), as the build tests do"


def readme_commands() -> list[tuple[str, int, str]]:
    """(section heading, line, command) of every command in README.md's shell blocks."""
    readme = parse_doc(REPO / "README.md", REPO)
    headings = [(n, line) for n, line in enumerate(readme.lines, 1) if line.startswith("## ")]
    return [
        (max(((n, h) for n, h in headings if n < line), default=(0, ""))[1], line, command)
        for block in readme.blocks
        if block.lang in ("sh", "bash", "shell", "console")
        for line, command in shell_lines(block)
    ]


def readme_install_lines() -> list[str]:
    """Every `pipx install` command of README.md."""
    return [command for _, _, command in readme_commands() if command.startswith("pipx install")]


def test_each_readme_path_installs_the_cli_before_using_it() -> None:
    """The AWS journey and the no-AWS path each run `schwab-tokens`: each installs it first."""
    installed: set[str] = set()
    users = set()
    for section, line, command in readme_commands():
        if command.startswith("pipx install"):
            installed.add(section)
        elif command.startswith("schwab-tokens "):
            users.add(section)
            assert section in installed, (
                f"README.md:{line}: `{command}` runs before anything in {section!r} installs "
                "the command"
            )
    assert len(users) >= 2, users  # the journey and the no-AWS path


def copy_of_the_clone(target: Path) -> Path:
    """The files a clone of this working tree has (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a file deleted in the working tree is listed but absent
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def run(
    argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


@pytest.mark.slow  # long (pip from the package index): scheduled first
def test_the_readmes_install_line_gives_a_working_cli(tmp_path: Path) -> None:
    lines = readme_install_lines()
    assert lines, "README.md has no `pipx install` line: it must install the CLI before using it"
    assert len(set(lines)) == 1, f"README.md installs in more than one way: {sorted(set(lines))}"
    words = shlex.split(lines[0])

    venv = tmp_path / "venv"
    made = run([sys.executable, "-m", "venv", str(venv)])
    assert made.returncode == 0, made.stderr
    pipx = run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "pipx"])
    assert pipx.returncode == 0, f"installing pipx failed ({NEEDS_THE_INDEX}):\n{pipx.stderr}"

    clone = copy_of_the_clone(tmp_path / "clone")
    env = {
        **os.environ,
        "PIPX_HOME": str(tmp_path / "pipx"),
        "PIPX_BIN_DIR": str(tmp_path / "bin"),
        "PIPX_MAN_DIR": str(tmp_path / "man"),
    }
    installed = run([str(venv / "bin" / "pipx"), *words[1:]], cwd=clone, env=env)
    assert installed.returncode == 0, (
        f"`{lines[0]}` failed ({NEEDS_THE_INDEX}):\n{installed.stdout}{installed.stderr}"
    )

    version = run([str(tmp_path / "bin" / "schwab-tokens"), "--version"], cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.split() == ["schwab-tokens", schwab_tokens.__version__]
