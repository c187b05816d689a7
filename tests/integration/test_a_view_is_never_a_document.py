"""A view is never a document: the refresh token never lands where bots and ReaderPolicy read.

Three guards, each tested as a user meets it: every command that writes or reads the document
refuses an access view's URL and names the store's; no text the package prints (messages, help,
docs) suggests a view's URL for `--store`; and a reader of a view that finds a whole document
there refuses it, saying the store is misconfigured, while the next writer puts a view back.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from devkit import REPO
from devkit.user import cli_env, login, run_cli
from schwab_tokens import TokenReader
from schwab_tokens.commands import parser
from schwab_tokens.errors import MisplacedDocument
from schwab_tokens.stores import store_from_url

LIBRARY = REPO / "layers" / "schwab_tokens" / "schwab_tokens"

#: Each command that writes or reads the token document, with what it needs besides --store.
DOCUMENT_COMMANDS = {
    "login": ["--paste"],
    "refresh": [],
    "status": [],
    "watch": [],
    "doctor": [],
    "login-link": ["--login-url", "https://example.lambda-url.us-east-1.on.aws/"],
    "import": ["token.json"],
}

#: (a view's URL, the store's URL the refusal must name)
VIEWS = [
    ("{tmp}/tokens.access.json", "{tmp}/tokens.json"),
    ("file:{tmp}/tokens.access.json", "file:{tmp}/tokens.json"),
    ("s3://bucket-name/schwab/tokens.access.json", "s3://bucket-name/schwab/tokens.json"),
    ("ssm:/stack/tokens.access", "secretsmanager://stack/tokens"),
]


#: Every command with the view of a local file; every kind of view with the command that writes
#: the document first (one rule, ``store_from_url``, refuses them all: each once is enough).
CASES = [(command, *VIEWS[0]) for command in DOCUMENT_COMMANDS] + [
    ("login", view, document) for view, document in VIEWS[1:]
]


@pytest.mark.parametrize(("command", "view", "document"), CASES)
def test_every_document_command_refuses_a_view_url_and_names_the_store(
    emulator, tmp_path: Path, command: str, view: str, document: str
) -> None:
    view, document = view.format(tmp=tmp_path), document.format(tmp=tmp_path)
    run = run_cli([command, "--store", view, *DOCUMENT_COMMANDS[command]], cli_env(emulator))
    assert run.code == 2, run.text
    assert "is an access view" in run.err and document in run.err, run.err
    assert list(tmp_path.iterdir()) == []  # nothing written, no lock, no second view


#: `--store` followed by something that names an access view: a literal view URL, or a
#: placeholder or variable that holds one (the view's url, the AccessTokenUrl output).
_VIEW_AS_STORE = re.compile(
    r"--store[ =]+[\"'`]?(?:\S*\.access\.json|ssm:\S*|<AccessTokenUrl>|\$TOKEN_ACCESS_URL"
    r"|\{[^}]*(?:view|access)[^}]*\})",
    re.IGNORECASE,
)


def _message_templates() -> list[tuple[str, str]]:
    """Every string the library's code holds (f-string parts with their placeholders spelled
    as the source spells them), with where it is."""
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        source = path.read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.JoinedStr | ast.Constant) and (
                isinstance(node, ast.JoinedStr) or isinstance(node.value, str)
            ):
                text = ast.get_source_segment(source, node) or ""
                found.append((f"{path.relative_to(REPO)}:{node.lineno}", text))
    return found


def test_no_message_help_or_doc_puts_a_view_where_the_document_goes() -> None:
    texts = _message_templates()
    cli = parser()
    subparsers = next(a for a in cli._actions if a.choices and "login" in a.choices)
    texts += [(f"help of {name}", sub.format_help()) for name, sub in subparsers.choices.items()]
    texts += [("help", cli.format_help())]
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        texts += [(str(doc.relative_to(REPO)), doc.read_text())]
    assert len(texts) > 500  # the scan really read the code, the help and the docs
    offending = [
        (where, found.group(0)) for where, text in texts for found in _VIEW_AS_STORE.finditer(text)
    ]
    assert offending == []


def test_the_scan_finds_what_it_looks_for() -> None:
    """The pattern above catches the advice that used to be printed (and its spellings)."""
    for bad in (
        "run `schwab-tokens login --store tokens.access.json`",
        'f"schwab-tokens refresh --store {self.view.url}"',
        "schwab-tokens login --store ssm:/stack/tokens.access",
        "schwab-tokens login --store <AccessTokenUrl>",
    ):
        assert _VIEW_AS_STORE.search(bad), bad
    assert not _VIEW_AS_STORE.search("schwab-tokens login --store {store.url}")


def test_a_whole_document_at_a_views_place_is_refused_then_repaired(
    emulator, tmp_path: Path
) -> None:
    """A view's place holding the refresh token (an older version followed its own advice
    there): readers refuse it, saying the store is misconfigured; the next writer puts the
    view back, and then readers work."""
    store = store_from_url(str(tmp_path / "tokens.json"))
    token = login(store, emulator)
    misplaced = tmp_path / "tokens.access.json"
    misplaced.write_bytes(token.to_json())

    with pytest.raises(MisplacedDocument, match="misconfigured") as refused:
        TokenReader(store.view.url).access_token()
    assert token.refresh_token not in str(refused.value)
    doctor = run_cli(["doctor", "--store", store.url], cli_env(emulator))
    assert "FAIL  access view:" in doctor.out and "misconfigured" in doctor.out, doctor.out

    refreshed = run_cli(["refresh", "--store", store.url], cli_env(emulator))
    assert refreshed.code == 0, refreshed.text
    assert token.refresh_token.encode() not in misplaced.read_bytes()
    assert TokenReader(store.view.url).access_token() == token.access_token
