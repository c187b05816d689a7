"""Hardening: what a person types, the files we create, the login listener and the pre-flight.

Every refusal here is a usage error (exit 2) that names the setting and the right form, or a
configuration error (exit 5) that changes nothing; the CLI runs as a subprocess, as users run it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from devkit.emulator import Emulator
from devkit.user import CLI, cli_env, login, paste_login, run_cli
from schwab_tokens import __version__
from schwab_tokens.listener import CallbackListener, listen_for_login
from schwab_tokens.login_flow import complete_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.stores.file import FileStore
from schwab_tokens.token import Token
from tests.helpers import assert_no_secrets


def secrets_of(emulator: Emulator) -> set[str]:
    return set(emulator.issued_secrets()) | {emulator.app_secret}


# -- store URLs and numbers ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("store", "names"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("s3:/bucket/key", "s3://BUCKET/KEY"),
        ("S3://bucket/key", "s3://BUCKET/KEY"),
        ("s3://Bucket_Name/key", "s3://BUCKET/KEY"),
        ("s3://bucket", "names a bucket but no key"),
        ("s3://bucket/", "names a bucket but no key"),
        ("secretsmanager:/name", "secretsmanager://NAME"),
        ("secretsmanager://ssm-tokens", "does not begin with aws or ssm"),
        ("secretsmanager://AWS/tokens", "does not begin with aws or ssm"),
        ("SecretsManager://name", "secretsmanager://NAME"),
        ("xyz://a/b", "unknown store URL scheme"),
        ("https://example.com/tokens.json", "unknown store URL scheme"),
    ],
)
def test_a_store_url_typo_is_a_usage_error_naming_the_right_form(
    emulator: Emulator, store: str, names: str
) -> None:
    for command in (["status"], ["refresh"]):
        done = run_cli([*command, "--store", store], cli_env(emulator))
        assert done.code == 2, done.text
        assert names in done.err, done.err
    assert emulator.token_calls == 0


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["refresh", "--margin", "nan"], {}, "--margin"),
        (["refresh", "--margin", "1800"], {}, "--margin"),  # every check would refresh
        (["refresh", "--margin", "901"], {}, "--margin"),
        (["refresh", "--margin", "-5"], {}, "--margin"),
        (["watch", "--interval", "0"], {}, "--interval"),
        (["watch", "--interval", "-1"], {}, "--interval"),
        (["watch", "--interval", "inf"], {}, "--interval"),
        (["watch", "--margin", "1800"], {}, "--margin"),  # a daemon refuses it at start
        (["watch", "--margin", "nan"], {}, "--margin"),
        (["refresh"], {"REFRESH_MARGIN_SECONDS": "1e400"}, "REFRESH_MARGIN_SECONDS"),
        (["refresh"], {"SCHWAB_HTTP_TIMEOUT": "0"}, "SCHWAB_HTTP_TIMEOUT"),
        (["refresh"], {"SCHWAB_HTTP_RETRIES": "1.5"}, "SCHWAB_HTTP_RETRIES"),
        (["refresh"], {"SCHWAB_TOKENS_LEASE_TTL": "NaN"}, "SCHWAB_TOKENS_LEASE_TTL"),
        (["refresh"], {"SCHWAB_API_BASE": "http://api.schwabapi.com"}, "SCHWAB_API_BASE"),
    ],
)
def test_numbers_out_of_range_are_usage_errors_naming_the_setting(
    emulator: Emulator, tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    store = tmp_path / "tokens.json"
    login(FileStore(store), emulator)
    before = store.read_bytes()
    done = run_cli([*args, "--store", str(store)], cli_env(emulator, **env), timeout=20)
    assert done.code == 2, done.text
    assert named in done.err
    assert store.read_bytes() == before


def test_the_app_secret_is_not_a_flag(emulator: Emulator, tmp_path: Path) -> None:
    done = run_cli(
        ["refresh", "--store", str(tmp_path / "t.json"), "--app-secret", "x"], cli_env(emulator)
    )
    assert done.code == 2
    assert "--app-secret" in done.err


# -- manifests -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("manifest", "phrase"),
    [
        ('{"tokens": [{"store": "a.json", "credential_secret": "x"}]}', "manifest entry 0"),
        ('{"tokens": [{"store": "a.json"}, {"name": 5, "store": "b.json"}]}', "manifest entry 1"),
        ('{"tokens": [{"name": "x"}]}', 'needs a "store"'),
        ('{"tokens": [], "extra": 1}', "unknown keys"),
        ('{"tokens": [\n  {"store": "a.json",}\n]}', "line 2 column"),
        ('{"tokens": [{"store": "a.json", "name": NaN}]}', "NaN is not a JSON value"),
    ],
)
def test_a_bad_manifest_is_a_usage_error_naming_the_entry(
    emulator: Emulator, tmp_path: Path, manifest: str, phrase: str
) -> None:
    path = tmp_path / "tokens-manifest.json"
    path.write_text(manifest)
    done = run_cli(["status", "--manifest", str(path)], cli_env(emulator))
    assert done.code == 2, done.text
    assert phrase in done.err, done.err


@pytest.mark.parametrize("command", ["status", "refresh"])
def test_with_several_tokens_a_login_to_do_outranks_a_broken_store(
    emulator: Emulator, tmp_path: Path, command: str
) -> None:
    """One token's login is over (exit 3), another's file is not a token (exit 5): the exit
    code asks for the login first, whatever the order of the tokens."""
    over = FileStore(tmp_path / "over.json")
    login(over, emulator)
    emulator.revoke_all()
    run_cli(["refresh", "--force", "--store", str(over.path)], cli_env(emulator))  # noted over
    (tmp_path / "broken.json").write_text("{not json")
    for order in (["broken.json", "over.json"], ["over.json", "broken.json"]):
        manifest = tmp_path / "manifest.json"
        manifest.write_text(json.dumps({"tokens": [{"store": name} for name in order]}))
        forced = ["--force"] if command == "refresh" else []
        done = run_cli([command, *forced, "--manifest", str(manifest)], cli_env(emulator))
        assert done.code == 3, done.text


def test_relative_stores_in_a_manifest_file_are_relative_to_its_folder(
    emulator: Emulator, tmp_path: Path
) -> None:
    folder = tmp_path / "bots"
    folder.mkdir()
    login(FileStore(folder / "family.json"), emulator)
    (folder / "manifest.json").write_text('{"tokens": [{"store": "family.json"}]}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [*CLI, "status", "--json", "--manifest", str(folder / "manifest.json")],
        capture_output=True,
        text=True,
        env=cli_env(emulator),
        cwd=elsewhere,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    assert row["token"] == "family" and row["store"] == str(folder / "family.json")


# -- version, help, python -m ----------------------------------------------------------------------
def test_version_and_module_form(emulator: Emulator) -> None:
    done = run_cli(["--version"], cli_env(emulator))
    assert done.code == 0 and done.out.strip() == f"schwab-tokens {__version__}"
    module = subprocess.run(
        [sys.executable, "-m", "schwab_tokens", "--help"],
        capture_output=True,
        text=True,
        env=cli_env(emulator),
        timeout=60,
    )
    assert module.returncode == 0
    for expected in (
        "exit codes:",
        "130",
        "login required",
        "SCHWAB_APP_SECRET",
        "TOKEN_STORE_URL",
    ):
        assert expected in module.stdout
    for command in ("login", "login-link", "refresh", "status", "watch"):
        assert command in module.stdout


# -- watch stops promptly --------------------------------------------------------------------------
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
@pytest.mark.parametrize("tokens", [1, 2])
def test_watch_stops_within_two_seconds_even_mid_refresh(
    emulator: Emulator, tmp_path: Path, sig: signal.Signals, code: int, tokens: int
) -> None:
    """With several tokens the refresh runs in a thread pool, which must not hold the exit."""
    stores = [tmp_path / f"tokens-{i}.json" for i in range(tokens)]
    emulator.configure(access_lifetime=600)  # due at once under the default 900 s margin
    for store in stores:
        login(FileStore(store), emulator)
    manifest = tmp_path / "tokens.manifest.json"
    manifest.write_text(json.dumps({"tokens": [{"store": s.name} for s in stores]}))
    which = ["--store", str(stores[0])] if tokens == 1 else ["--manifest", str(manifest)]
    emulator.configure(slow_seconds=30)
    emulator.set_fault("slow")  # Schwab hangs: the refresh is in progress when the signal comes
    env = cli_env(emulator, SCHWAB_HTTP_TIMEOUT="60", SCHWAB_HTTP_RETRIES="0")
    calls = emulator.token_calls
    proc = subprocess.Popen(
        [*CLI, "watch", *which],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 30
    while emulator.token_calls == calls:
        assert time.monotonic() < deadline, "watch never called Schwab"
        time.sleep(0.02)
    sent = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert time.monotonic() - sent < 2.0
    assert proc.returncode == code, err
    assert_no_secrets(out + err, secrets_of(emulator))
    for store in stores:
        assert FileStore(store).read().token  # the store still holds a valid token


# -- files -----------------------------------------------------------------------------------------
def test_folders_are_private_whatever_the_umask(emulator: Emulator, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        store = FileStore(tmp_path / "a" / "b" / "tokens.json")
        login(store, emulator)
    finally:
        os.umask(old)
    for folder in (tmp_path / "a", tmp_path / "a" / "b"):
        assert folder.stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "a" / "b" / "tokens.json").stat().st_mode & 0o777 == 0o600


def test_temp_files_left_by_a_killed_writer_are_swept(emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    login(FileStore(path), emulator)
    stale = [tmp_path / ".tokens.json.k1ll3d.tmp", tmp_path / ".tokens.json.notes.x.tmp"]
    for leftover in stale:
        leftover.write_text("half a token")
    done = run_cli(["refresh", "--force", "--store", str(path)], cli_env(emulator))
    assert done.code == 0, done.text
    assert not any(leftover.exists() for leftover in stale)


def test_a_symlink_at_the_lock_is_not_followed(emulator: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    login(FileStore(path), emulator)
    before = path.read_bytes()
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch")
    lock = tmp_path / "tokens.json.lock"
    lock.unlink()
    lock.symlink_to(victim)
    done = run_cli(["refresh", "--force", "--store", str(path)], cli_env(emulator))
    assert done.code == 5, done.text
    assert "symlink" in done.err
    assert victim.read_text() == "do not touch" and path.read_bytes() == before


# -- the login listener ----------------------------------------------------------------------------
def https_get(url: str) -> requests.Response:
    return requests.get(url, verify=False, timeout=10)  # the listener's certificate is self-made


@dataclass
class ListenerLogin:
    """A CLI login in listener mode, driven in-process: the listener, and the login it waits
    for (its authorize URL, whose redirect carries the right state)."""

    emulator: Emulator
    listener: CallbackListener
    oauth: SchwabOAuth
    authorize: str
    state: str
    store: FileStore

    def redirect(self) -> str:
        """Where Schwab sends the browser once the user approved."""
        return str(
            requests.get(self.authorize, allow_redirects=False, timeout=5).headers["Location"]
        )

    def wait(self) -> Token:
        callback = self.emulator.callback_url

        def handle(link: str) -> Token:
            return complete_login(self.oauth, self.store, link, self.state, callback)

        return listen_for_login(self.listener, handle, 10)


@pytest.fixture
def listening(emulator: Emulator, tmp_path: Path) -> Iterator[ListenerLogin]:
    oauth = SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url)
    authorize, state = oauth.authorize_url(emulator.callback_url)
    with CallbackListener(emulator.callback_url, state) as listener:
        yield ListenerLogin(
            emulator, listener, oauth, authorize, state, FileStore(tmp_path / "tokens.json")
        )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_an_idle_connection_does_not_stall_the_listener(listening: ListenerLogin) -> None:
    port = int(listening.emulator.callback_url.rsplit(":", 1)[1])
    idle = socket.create_connection(("127.0.0.1", port))  # never says anything
    half = socket.create_connection(("127.0.0.1", port))
    half.sendall(b"\x16\x03\x01")  # the start of a TLS hello, then silence
    try:
        link = listening.redirect()
        answer: list[requests.Response] = []
        browser = threading.Thread(target=lambda: answer.append(https_get(link)))
        started = time.monotonic()
        browser.start()
        token = listening.wait()
        browser.join(10)
        assert time.monotonic() - started < 5
    finally:
        idle.close()
        half.close()
    assert answer and answer[0].status_code == 200
    assert listening.store.read().token == token


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_requests_with_another_state_are_ignored_until_the_real_one(
    listening: ListenerLogin,
) -> None:
    callback, state = listening.emulator.callback_url, listening.state
    for probe in ("?code=stolen%40&state=not-ours", "?code=x%40", "?state=" + state[:-1]):
        stray = https_get(callback + "/" + probe)
        assert stray.status_code == 400 and "Not this login" in stray.text
    threading.Thread(target=https_get, args=(listening.redirect(),), daemon=True).start()
    token = listening.wait()
    assert listening.store.read().token == token
    assert listening.emulator.calls_by_grant.get("authorization_code") == 1


# -- login: pre-flight and any https callback with --paste -----------------------------------------
def test_login_checks_the_store_before_sending_the_user_to_schwab(
    emulator: Emulator, aws_endpoint: str
) -> None:
    env = cli_env(emulator, AWS_ENDPOINT_URL=aws_endpoint)
    done = paste_login(
        [
            "--store",
            "s3://no-such-bucket-here/schwab/tokens.json",
            "--callback-url",
            emulator.callback_url,
        ],
        env,
    )
    assert done.code == 5, done.text
    assert "no-such-bucket-here does not exist" in done.err
    assert "/v1/oauth/authorize" not in done.out  # the user was never sent to Schwab
    assert emulator.calls_by_grant.get("authorization_code", 0) == 0


def test_paste_login_accepts_any_https_callback(emulator: Emulator, tmp_path: Path) -> None:
    hosted = "https://abcdefghij.lambda-url.us-east-1.on.aws/callback"
    emulator.register_callback(hosted)
    store = tmp_path / "tokens.json"
    done = paste_login(["--store", str(store), "--callback-url", hosted], cli_env(emulator))
    assert done.code == 0, done.text
    assert FileStore(store).read().token
    listening = run_cli(
        ["login", "--no-browser", "--store", str(store), "--callback-url", hosted],
        cli_env(emulator),
    )
    assert listening.code == 2 and "--paste" in listening.err  # a listener needs 127.0.0.1
