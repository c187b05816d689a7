"""The CLI is consistent: every command that needs the app credentials takes
``--credentials-secret``, an unknown flag is named, a bad paste can be pasted again, and the
help agrees with docs/cli.md. Each through the CLI as a subprocess, against the emulator and
moto's server."""

from __future__ import annotations

import inspect
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from devkit import REPO
from devkit.user import (
    CLI,
    Run,
    cli_env,
    follow_authorize,
    login,
    login_by_listener,
    paste_login,
    run_cli,
)
from schwab_tokens.commands import COMMANDS, common
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.listener import MAX_UNUSABLE_LINKS
from schwab_tokens.stores import store_from_url
from tests.helpers import assert_no_secrets, secrets_of, snapshot

CREDENTIALS = ["schwab-tokens/credentials", "ssm:/schwab-tokens/credentials"]


def only_aws_credentials(emulator) -> dict[str, str]:
    """A laptop's shell with AWS credentials but no app key or secret, and no
    SCHWAB_CREDENTIALS_SECRET: the flag is the only way to the app credentials."""
    env = cli_env(emulator)
    del env["SCHWAB_APP_KEY"], env["SCHWAB_APP_SECRET"]
    return env


# -- --credentials-secret on every command that reads the app credentials --------------------------
@pytest.mark.parametrize("name", CREDENTIALS, ids=["secret", "ssm"])
def test_refresh_reads_the_credentials_named_by_the_flag(
    emulator, aws_endpoint, tmp_path: Path, name: str
) -> None:
    store_credentials(name, AppCredentials(emulator.app_key, emulator.app_secret))
    url = str(tmp_path / "tokens.json")
    login(store_from_url(url), emulator)
    emulator.reset_counters()
    run = run_cli(
        ["refresh", "--force", "--store", url, "--credentials-secret", name],
        only_aws_credentials(emulator),
    )
    assert run.code == 0, run.err
    assert run.out.startswith("refreshed:") and emulator.token_calls == 1
    assert_no_secrets(run.text, secrets_of(emulator))


def test_watch_reads_the_credentials_named_by_the_flag(
    emulator, aws_endpoint, tmp_path: Path
) -> None:
    name = "ssm:/schwab-tokens/credentials"
    store_credentials(name, AppCredentials(emulator.app_key, emulator.app_secret))
    url = str(tmp_path / "tokens.json")
    emulator.configure(access_lifetime=3)  # due at every check
    login(store_from_url(url), emulator)
    emulator.reset_counters()
    proc = subprocess.Popen(
        [*CLI, "watch", "--interval", "0.2", "--store", url, "--credentials-secret", name],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=only_aws_credentials(emulator),
    )
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stdout or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 30
    # Until the refresh is reported (stored), not merely sent to Schwab.
    while not any(line.startswith("refreshed:") for line in said) and proc.poll() is None:
        assert time.monotonic() < deadline, "watch never refreshed"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    reader.join(timeout=10)
    err = proc.stderr.read() if proc.stderr else ""
    assert proc.returncode == 0, err
    assert any(line.startswith("refreshed:") for line in said), err
    assert_no_secrets("".join(said) + err, secrets_of(emulator))


def test_every_command_that_reads_the_credentials_takes_the_flag(emulator) -> None:
    """The same flag, with the same help, on each (one definition): every command whose code
    reads the app credentials, i.e. calls ``with_app`` or a helper of ``common`` that does."""
    sources = {
        name: inspect.getsource(helper)
        for name, helper in inspect.getmembers(common, inspect.isfunction)
        if helper.__module__ == common.__name__
    }
    calls = {"with_app("}
    while (
        grown := {f"{name}(" for name, source in sources.items() if any(c in source for c in calls)}
        - calls
    ):
        calls |= grown
    readers = [m.NAME for m in COMMANDS if any(call in inspect.getsource(m) for call in calls)]
    assert {"login", "login-link", "refresh", "watch", "import"} <= set(readers), readers
    helps = {}
    for command in readers:
        run = run_cli([command, "--help"], cli_env(emulator))
        assert run.code == 0, run.err
        options = run.out.split("options:", 1)[1].split("exit codes:", 1)[0]
        entry = re.search(r"--credentials-secret NAME\s+(.*?)(?=\n  -|\Z)", options, re.S)
        assert entry, f"{command} has no --credentials-secret"
        helps[command] = " ".join(entry[1].split())
    assert len(set(helps.values())) == 1, helps


# -- a typo in --credentials-secret is named as one ------------------------------------------------
TYPOS = ["schwab-tokens/credentails", "ssm:/schwab-tokens/credentails"]


def assert_named_as_a_typo(run: Run, name: str) -> None:
    assert run.code == 5, run.text
    assert name.removeprefix("ssm:") in run.err
    assert "does not exist in us-east-1" in run.err and "CredentialsSecretName" in run.err
    # Following the advice must not create the misspelt secret.
    assert f"--credentials-secret {name}" not in run.err, run.err


@pytest.mark.parametrize("typo", TYPOS, ids=["secret", "ssm"])
def test_a_misspelt_credentials_secret_is_named_as_a_typo(
    emulator, aws_endpoint, tmp_path: Path, typo: str
) -> None:
    store_credentials(typo.replace("credentails", "credentials"), AppCredentials("k", "s"))
    url = str(tmp_path / "tokens.json")
    login(store_from_url(url), emulator)
    before = snapshot(url)
    env = only_aws_credentials(emulator)
    refresh = run_cli(["refresh", "--force", "--store", url, "--credentials-secret", typo], env)
    assert_named_as_a_typo(refresh, typo)
    link = run_cli(
        [
            "login-link",
            "--store",
            url,
            "--login-url",
            "https://example.lambda-url.us-east-1.on.aws/",
            "--credentials-secret",
            typo,
        ],
        env,
    )
    assert_named_as_a_typo(link, typo)
    assert snapshot(url) == before and emulator.calls_by_grant == {"authorization_code": 1}


@pytest.mark.parametrize("typo", TYPOS, ids=["secret", "ssm"])
def test_login_with_a_misspelt_credentials_secret_creates_nothing(
    emulator, aws_endpoint, tmp_path: Path, typo: str
) -> None:
    """Without the key and secret, `login` only reads the name: a typo is named as one, and the
    user is told that only a login given the key and secret creates a secret."""
    url = str(tmp_path / "tokens.json")
    run = paste_login(
        ["--store", url, "--callback-url", emulator.callback_url, "--credentials-secret", typo],
        only_aws_credentials(emulator),
    )
    assert_named_as_a_typo(run, typo)
    assert "SCHWAB_APP_KEY and SCHWAB_APP_SECRET" in run.err
    assert "/v1/oauth/authorize" not in run.out and not Path(url).exists()


# -- unknown flags ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "usage"),
    [
        (["--bogus"], "usage: schwab-tokens [-h]"),
        (["refresh", "--bogus"], "usage: schwab-tokens refresh"),
        (["--bogus", "status"], "usage: schwab-tokens status"),
    ],
)
def test_an_unknown_flag_is_named(emulator, args: list[str], usage: str) -> None:
    run = run_cli(args, cli_env(emulator))
    assert run.code == 2
    assert "unrecognized arguments: --bogus" in run.err, run.err
    assert run.err.startswith(usage), run.err


def test_no_command_names_the_commands(emulator) -> None:
    run = run_cli([], cli_env(emulator))
    assert run.code == 2
    assert "login" in run.err and "refresh" in run.err and "watch" in run.err


# -- a bad paste can be pasted again ---------------------------------------------------------------
def wrong_state(link: str) -> str:
    return re.sub(r"state=[^&]*", "state=not-this-login", link)


def no_code(link: str) -> str:
    return re.sub(r"code=[^&]*&?", "", link)


def login_command(emulator, url: str, mode: str) -> list[str]:
    how = ["--paste"] if mode == "paste" else ["--no-browser"]
    return [*CLI, "login", *how, "--store", url, "--callback-url", emulator.callback_url]


@pytest.mark.parametrize("mode", ["paste", "listener"])
@pytest.mark.parametrize(
    ("spoil", "message"),
    [(wrong_state, "state does not match"), (no_code, "no code=")],
    ids=["wrong_state", "no_code"],
)
def test_a_bad_paste_is_followed_by_a_good_one(
    emulator, tmp_path: Path, mode: str, spoil, message: str
) -> None:
    url = str(tmp_path / "tokens.json")

    def two_lines(authorize_url: str) -> str:
        link = follow_authorize(authorize_url)
        return f"{spoil(link)}\n{link}"

    run = login_by_listener(login_command(emulator, url, mode), cli_env(emulator), two_lines)
    assert run.code == 0, run.text
    assert message in run.err and "paste" in run.err.lower()
    assert "Logged in" in run.out
    assert emulator.calls_by_grant == {"authorization_code": 1}
    assert store_from_url(url).read().token
    assert_no_secrets(run.text, secrets_of(emulator))


@pytest.mark.parametrize("mode", ["paste", "listener"])
def test_end_of_input_cancels_the_login(emulator, tmp_path: Path, mode: str) -> None:
    url = str(tmp_path / "tokens.json")
    run = login_by_listener(
        login_command(emulator, url, mode),
        cli_env(emulator),
        lambda authorize_url: wrong_state(follow_authorize(authorize_url)),
    )
    assert run.code == 3, run.text
    assert "login cancelled" in run.err
    assert emulator.calls_by_grant == {} and not Path(url).exists()


def test_bad_pastes_are_bounded(emulator, tmp_path: Path) -> None:
    url = str(tmp_path / "tokens.json")

    def too_many(authorize_url: str) -> str:
        link = follow_authorize(authorize_url)
        return "\n".join([wrong_state(link)] * MAX_UNUSABLE_LINKS + [link])

    run = paste_login(
        ["--store", url, "--callback-url", emulator.callback_url], cli_env(emulator), too_many
    )
    assert run.code == 3, run.text
    assert f"{MAX_UNUSABLE_LINKS} links" in run.err and "login cancelled" not in run.err
    assert emulator.calls_by_grant == {} and not Path(url).exists()


# -- the help agrees with docs/cli.md --------------------------------------------------------------
def documented_flags() -> dict[str, set[str]]:
    """Each command's flags as docs/cli.md's command table shows them."""
    found: dict[str, set[str]] = {}
    for line in (REPO / "docs" / "cli.md").read_text().splitlines():
        synopsis = re.match(r"\| `schwab-tokens ([a-z-]+)([^`]*)`", line)
        if synopsis:
            found[synopsis[1]] = set(re.findall(r"--[a-z-]+", synopsis[2]))
    return found


def test_each_command_takes_the_flags_the_docs_show(emulator) -> None:
    documented = documented_flags()
    assert set(documented) == {command.NAME for command in COMMANDS}  # every one, documented
    for command, flags in documented.items():
        run = run_cli([command, "--help"], cli_env(emulator))
        usage = run.out.split("\n\n", 1)[0]
        # Every command takes --store and --region (the docs say so once, above the table).
        shown = set(re.findall(r"--[a-z-]+", usage)) - {"--store", "--region"}
        assert shown == flags, f"{command}: --help shows {sorted(shown)}, docs {sorted(flags)}"


def test_export_help_and_docs_name_the_same_default_store(emulator) -> None:
    run = run_cli(["export", "--help"], cli_env(emulator))
    help_text = " ".join(run.out.split())
    default = (
        "default: $TOKEN_ACCESS_URL, then the access view of $TOKEN_STORE_URL, then of tokens.json"
    )
    assert default in help_text, help_text
    docs = (REPO / "docs" / "cli.md").read_text()
    row = next(line for line in docs.splitlines() if line.startswith("| `schwab-tokens export"))
    assert (
        "`TOKEN_ACCESS_URL`, then the access view of `TOKEN_STORE_URL`, then of `tokens.json`"
        in row
    )


def test_exit_code_3_covers_a_cancelled_login_in_help_and_docs(emulator) -> None:
    run = run_cli(["--help"], cli_env(emulator))
    line = next(x for x in run.out.splitlines() if x.startswith("  3 "))
    assert "login cancelled" in line, line
    docs = (REPO / "docs" / "cli.md").read_text()
    row = next(x for x in docs.splitlines() if x.startswith("| 3 |"))
    assert "login cancelled" in row, row


def test_a_credentials_parameter_ssm_refuses_is_refused_before_any_call(
    emulator, tmp_path: Path
) -> None:
    """`/aws...` and `/ssm...` are reserved by SSM: said at once, with the way out, before the
    browser is sent to Schwab (a login's code is single-use)."""
    run = run_cli(
        [
            "login",
            "--paste",
            "--store",
            str(tmp_path / "tokens.json"),
            "--credentials-secret",
            "ssm:/aws-bot/credentials",
        ],
        cli_env(emulator),
    )
    assert run.code == 2, run.text
    assert "not beginning with aws or ssm" in run.err and "another name" in run.err
    assert "/v1/oauth/authorize" not in run.out
    assert list(tmp_path.iterdir()) == []
