"""README.md and docs/*.md hold to their conventions (``tests/docs/checker.py`` says which):
links resolve, every documented command parses with the real CLI, every make target exists,
docs/deploy.md's tables are exactly the template's parameters and outputs, every Python block
compiles, and every block marked ``<!-- docs-test: consumer -->`` runs as a consumer runs it,
against the Schwab emulator and moto's server. The checks themselves are tested on sample docs
in ``test_checker.py``.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest

from devkit import REPO
from devkit.emulator import Emulator
from devkit.template import load_template
from schwab_tokens.commands import parser
from tests.docs import checker
from tests.docs.checker import Block, Problem, Project
from tests.docs.consumer import ConsumerFailed, run_consumer
from tests.requirements import INSTALL_SCRIPT, require_tool


@cache
def project() -> Project:
    return checker.load_project(REPO, load_template(), parser)


def _passes(check: Callable[[Project], list[Problem]]) -> None:
    problems = check(project())
    if problems:
        pytest.fail(checker.report(problems), pytrace=False)


def test_the_docs_exist() -> None:
    names = [doc.name for doc in project().docs]
    assert "README.md" in names, "README.md is missing"
    assert any(name.startswith("docs/") for name in names), "docs/ holds no .md page"


def test_fences_and_markers_are_well_formed() -> None:
    _passes(checker.check_structure)


def test_relative_links_resolve() -> None:
    _passes(checker.check_links)


def test_every_command_parses_and_every_make_target_exists() -> None:
    _passes(checker.check_commands)


def test_deploy_tables_list_exactly_the_templates_parameters_and_outputs() -> None:
    _passes(checker.check_tables)


def test_parameters_and_outputs_named_in_prose_exist() -> None:
    _passes(checker.check_mentions)


def test_python_blocks_compile() -> None:
    _passes(checker.check_python)


def test_the_docs_hold_a_consumer_snippet() -> None:
    if not checker.consumer_blocks(project()):
        pytest.fail(
            f"no ```python block in README.md or docs/*.md is marked {checker.CONSUMER_MARKER!r} "
            "(on the line right above its fence): the docs must hold at least one consumer "
            "snippet, which this test runs against the emulator",
            pytrace=False,
        )


@pytest.mark.parametrize(
    "block", checker.consumer_blocks(project()), ids=lambda block: f"{block.path}:{block.line}"
)
def test_consumer_snippet_runs(
    block: Block,
    consumer_env: dict[str, str],
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    try:
        run_consumer(block, consumer_env, emulator.base_url, monkeypatch, tmp_path / "tmp")
    except ConsumerFailed as exc:
        pytest.fail(str(exc), pytrace=False)


UNIT = REPO / "contrib" / "systemd" / "schwab-tokens-watch.service"


def test_the_systemd_unit_runs_a_watch_the_cli_accepts() -> None:
    """docs/local-use.md ships this unit: its ExecStart must be a command line the CLI takes."""
    exec_start = next(
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    argv = shlex.split(exec_start.replace("%h", "/home/you"))
    assert argv[0] == "/home/you/.local/bin/schwab-tokens"
    args = parser().parse_args(argv[1:])
    assert args.name == "watch" and args.store == "/home/you/.local/share/schwab-tokens/tokens.json"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    """systemd parses every line of the unit (it only warns on a bad one, hence the stderr check)
    and finds the program where ``pipx install .`` puts it."""
    analyze = require_tool(
        "systemd-analyze",
        f"apt-get install systemd, or {INSTALL_SCRIPT}",
        shutil.which("systemd-analyze"),
    )
    home = tmp_path / "home"
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "schwab-tokens").symlink_to(
        Path(sys.executable).with_name("schwab-tokens")
    )
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    verified = subprocess.run(
        [analyze, "verify", "--user", str(UNIT)],
        env={**os.environ, "HOME": str(home), "XDG_RUNTIME_DIR": str(runtime)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (verified.returncode, verified.stderr) == (0, "")


# -- promises about the pages themselves -----------------------------------------------------------
README_MOST_LINES = 150


def test_the_readme_stays_short() -> None:
    """The README is the front door: what the tool is, the two commands, the journey, links."""
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) < README_MOST_LINES, f"README.md has {len(lines)} lines"


def _sections(page: str) -> list[tuple[str, str]]:
    """``page``'s ``## `` sections as (heading, text), in order."""
    parts = (REPO / "docs" / page).read_text().split("\n## ")
    return [(part.split("\n", 1)[0], part) for part in parts[1:]]


def test_one_schwab_approval_covers_both_callbacks() -> None:
    """Getting started deploys before it has the Schwab app created, and the app step lists both
    the laptop's callback and the stack's; if Schwab refuses the second, the laptop login stays
    (an approved app whose callbacks change can go back to review for days)."""
    headings = [heading for heading, _ in _sections("getting-started.md")]
    deploy = next(i for i, h in enumerate(headings) if h.endswith("Deploy"))
    create = next(i for i, h in enumerate(headings) if "Create a Schwab app" in h)
    assert deploy < create, headings
    app = dict(_sections("getting-started.md"))[headings[create]]
    assert "https://127.0.0.1:8182" in app and "SchwabCallbackUrl" in " ".join(
        text for h, text in _sections("getting-started.md")[deploy : create + 1]
    )
    refused = app.split("**If Schwab refuses the second callback URL**", 1)
    assert len(refused) == 2, "the app step says what to do if Schwab refuses the second URL"
    assert "https://127.0.0.1:8182" in refused[1] and "schwab-tokens login" in refused[1]
    deploy_page = (REPO / "docs" / "deploy.md").read_text()
    assert "If Schwab refuses the second URL" in deploy_page
    assert "deploy with `HostedLogin=Enabled` first" in deploy_page
