"""The docs checks catch what they should: each rule on sample docs (tests/docs/samples/good
breaks none, tests/docs/samples/bad breaks each), the exact messages, and the consumer runner on
snippets that work, raise, or try to leave the machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from devkit.emulator import Emulator
from devkit.template import load_yaml
from schwab_tokens.commands import parser
from tests.docs import checker
from tests.docs.checker import Project
from tests.docs.consumer import ConsumerFailed, run_consumer

SAMPLES = Path(__file__).resolve().parent / "samples"


def sample(name: str) -> Project:
    root = SAMPLES / name
    return checker.load_project(root, load_yaml((root / "template.yaml").read_text()), parser)


def messages(problems: list[checker.Problem]) -> list[str]:
    return [str(problem) for problem in problems]


def test_the_good_sample_breaks_no_rule() -> None:
    problems = checker.all_checks(sample("good"))
    assert not problems, checker.report(problems)


def test_structure_rule() -> None:
    assert messages(checker.check_structure(sample("bad"))) == [
        "README.md:26: consumer marker without a block: <!-- docs-test: consumer --> must be on "
        "the line right above a ```python fence",
        "README.md:18: shell command in a ```(untagged) block: '$ schwab-tokens status': shell "
        "commands go in ```sh (or bash/console/shell) blocks, where this test checks them",
        "README.md:22: consumer marker above a ```sh block: only ```python blocks can be run as "
        "a consumer",
    ]


def test_link_rule() -> None:
    assert messages(checker.check_links(sample("bad"))) == [
        "README.md:3: broken anchor 'docs/deploy.md#choosing-a-store': docs/deploy.md has no "
        "heading whose slug is 'choosing-a-store'",
        "README.md:3: broken link 'docs/nowhere.md': docs/nowhere.md does not exist",
        "README.md:4: broken anchor '#no-such-heading': README.md has no heading whose slug is "
        "'no-such-heading'",
        "README.md:4: link '../../../../../etc/hosts': points outside the repository",
    ]


def test_command_rule() -> None:
    refused = "is refused by the CLI: schwab_tokens.commands.parser() says: unrecognized arguments"
    assert messages(checker.check_commands(sample("bad"))) == [
        f"README.md:7: `schwab-tokens login --store <StoreUrl> --no-such-flag` {refused}: "
        "--no-such-flag",
        "README.md:8: `make tets` is not a target: the Makefile and the files it includes define "
        "no 'tets'; did you mean `make test`?",
        f"README.md:9: `schwab-tokens refresh --format json` {refused}: --format json",
        "README.md:10: cannot parse 'echo \"an open quote': as the shell would: No closing "
        "quotation",
        f"README.md:13: `schwab-tokens refresh --forse` {refused}: --forse",
        "README.md:13: `make nothing` is not a target: the Makefile and the files it includes "
        "define no 'nothing'",
        "README.md:13: `make tset` is not a target: the Makefile and the files it includes "
        "define no 'tset'; did you mean `make test`?",
    ]


def test_table_rule() -> None:
    missing = "is missing from the table: template.yaml has it; the `| parameter |` table must "
    assert messages(checker.check_tables(sample("bad"))) == [
        "docs/deploy.md:6: `Region` is not a parameter of template.yaml: the table lists exactly "
        "the template's parameters",
        "docs/deploy.md:7: parameter row without a name: the first cell holds the parameter's "
        "name in backticks",
        f"docs/deploy.md:3: parameter `AlarmEmail` {missing}list every parameter",
        f"docs/deploy.md:3: parameter `HostedLogin` {missing}list every parameter",
        "docs/deploy.md:13: output `StoreUrl` listed twice: first at line 11",
    ]


def test_a_missing_deploy_page_is_named(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Nothing else\n")
    project = checker.load_project(tmp_path, {"Parameters": {"A": {}}}, parser)
    assert messages(checker.check_tables(project)) == [
        "docs/deploy.md:1: missing file: it must hold the `| parameter |` and `| output |` "
        "tables of template.yaml"
    ]


def test_mention_rule() -> None:
    assert messages(checker.check_mentions(sample("bad"))) == [
        "README.md:15: the `HostedLogn` parameter: template.yaml has no parameter 'HostedLogn'; "
        "did you mean `HostedLogin`?",
        "README.md:15: the `LoginURL` output: template.yaml has no output 'LoginURL'; did you "
        "mean `LoginUrl`?",
        "README.md:15: `HostedLogin=Enabld`: HostedLogin takes one of Enabled, Disabled; not "
        "Enabld",
        "README.md:15: `Colour=Blue`: template.yaml has no parameter 'Colour'",
    ]


def test_python_rule() -> None:
    assert messages(checker.check_python(sample("bad"))) == [
        "README.md:29: python block does not compile: invalid syntax (block at line 28)"
    ]


def test_no_consumer_block_is_seen_as_none(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("```python\nprint('not marked')\n```\n")
    project = checker.load_project(tmp_path, {}, parser)
    assert checker.consumer_blocks(project) == []  # test_docs then fails, naming the marker


# -- the pieces ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Getting started", "getting-started"),
        ("The `--store` flag", "the---store-flag"),
        ("E-mails, alarms & the runbook", "e-mails-alarms--the-runbook"),
        ("Reading the token (Lambda, schwab-py)", "reading-the-token-lambda-schwab-py"),
        ("[Deploy](deploy.md) it", "deploy-it"),
        ("What it costs: $0.26/month", "what-it-costs-026month"),
        ("snake_case stays", "snake_case-stays"),
    ],
)
def test_slug(heading: str, anchor: str) -> None:
    assert checker.slug(heading) == anchor


@pytest.mark.parametrize(
    ("line", "commands"),
    [
        ("A=1 B=2 schwab-tokens status", [["schwab-tokens", "status"]]),
        (
            "schwab-tokens status --json | jq .",
            [["schwab-tokens", "status", "--json"], ["jq", "."]],
        ),
        (
            "make setup && make test; make demo",
            [["make", "setup"], ["make", "test"], ["make", "demo"]],
        ),
        (
            'L=$(schwab-tokens login-link --store "$S") && echo "$L"',
            [["schwab-tokens", "login-link", "--store", "$S"], ["echo", "$L"]],
        ),
        (
            "schwab-tokens export --format access > view.json 2>&1",
            [["schwab-tokens", "export", "--format", "access"]],
        ),
        (
            "schwab-tokens login --store <StoreUrl>",
            [["schwab-tokens", "login", "--store", "<StoreUrl>"]],
        ),
        (
            "if schwab-tokens status; then echo ok; fi",
            [["schwab-tokens", "status"], ["echo", "ok"], ["fi"]],
        ),
        ("env -i X=1 nohup schwab-tokens watch &", [["schwab-tokens", "watch"]]),
    ],
)
def test_simple_commands(line: str, commands: list[list[str]]) -> None:
    assert checker.simple_commands(line) == commands


def test_synopsis_brackets_are_tolerated_inline_only() -> None:
    line = "schwab-tokens login-link [--valid 24h] ..."
    assert checker.simple_commands(line, synopsis=True) == [
        ["schwab-tokens", "login-link", "--valid", "24h"]
    ]
    assert checker.simple_commands(line)[0][2:] == ["[--valid", "24h]", "..."]


def test_shell_lines_join_continuations_and_skip_output() -> None:
    block = checker.Block(
        "x.md",
        "console",
        10,
        (
            "$ schwab-tokens login \\",
            ">   --paste  # a comment",
            "output # not a comment",
            "$ make",
        ),
    )
    assert list(checker.shell_lines(block)) == [(11, "schwab-tokens login --paste"), (14, "make")]


def test_make_targets_follow_includes() -> None:
    assert checker.make_targets(SAMPLES / "good" / "Makefile") == {"setup", "test", "demo", "build"}


def test_a_placeholder_is_a_value_even_for_a_choice() -> None:
    cli = parser()
    assert checker.cli_error(cli, ["export", "--format", "<format>"]) is None
    assert checker.cli_error(cli, ["export", "--format", "pdf"]) == (
        "argument --format: invalid choice: 'pdf' (choose from 'access', 'schwab-py', 'schwabdev')"
    )


# -- running consumer snippets ---------------------------------------------------------------------
def consumer(name: str, index: int) -> checker.Block:
    return checker.consumer_blocks(sample(name))[index]


@pytest.mark.parametrize("index", [0, 1, 2], ids=["requests", "schwab-py", "schwabdev"])
def test_good_consumer_snippets_run(
    index: int,
    consumer_env: dict[str, str],
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    emulator.reset_counters()
    block = consumer("good", index)
    namespace = run_consumer(block, consumer_env, emulator.base_url, monkeypatch, tmp_path)
    assert callable(namespace.get("handler") or namespace.get("lambda_handler"))
    assert emulator.token_calls == 0  # a consumer never calls the token endpoint
    if "schwabdev" in block.source():  # its /tmp/schwabdev/tokens.db: the test's own tmp_path
        assert (tmp_path / "schwabdev" / "tokens.db").is_file()


def test_a_snippet_that_raises_fails_naming_doc_and_line(
    consumer_env: dict[str, str], emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConsumerFailed) as failed:
        run_consumer(consumer("bad", 0), consumer_env, emulator.base_url, monkeypatch)
    assert str(failed.value).splitlines() == [
        "docs/reading.md:11: consumer snippet (block at line 6) raised KeyError: 'TOKEN_URL'",
        '    docs/reading.md:11 in <module>: READER = TokenReader(os.environ["TOKEN_URL"])',
    ]


def test_a_snippet_that_calls_schwab_itself_fails(
    consumer_env: dict[str, str], emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConsumerFailed) as failed:
        run_consumer(consumer("bad", 1), consumer_env, emulator.base_url, monkeypatch)
    assert str(failed.value).splitlines() == [
        "docs/reading.md:22: consumer snippet (block at line 17) raised ConnectionError: the "
        "snippet tried to reach api.schwabapi.com: nothing may leave this machine (a consumer "
        "takes Schwab's base URL from SCHWAB_API_BASE)",
        '    docs/reading.md:22 in handler: requests.get("https://api.schwabapi.com/trader/v1/'
        'accounts/accountNumbers", timeout=5)',
    ]


def test_a_refused_connection_fails_even_when_the_snippet_swallows_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code = (
        "import urllib.request",
        "try:",
        "    urllib.request.urlopen('https://example.com/', timeout=2)",
        "except OSError:",
        "    pass",
    )
    block = checker.Block("x.md", "python", 4, code, consumer=True)
    with pytest.raises(ConsumerFailed, match=r"^x\.md:4: consumer snippet tried to reach "):
        run_consumer(block, {}, "http://127.0.0.1:9", monkeypatch)


def test_schwabdev_may_not_call_the_token_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    code = (
        "import schwabdev",
        "schwabdev.tokens.requests.post('http://127.0.0.1:9/v1/oauth/token')",
    )
    block = checker.Block("x.md", "python", 1, code, consumer=True)
    with pytest.raises(ConsumerFailed, match="Schwabdev called Schwab's token endpoint"):
        run_consumer(block, {}, "http://127.0.0.1:9", monkeypatch)
