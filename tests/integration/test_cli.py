"""The CLI end to end against the Schwab emulator, on each store kind.

The file store is the embedded default; S3 and Secrets Manager are moto's server over real HTTP,
reached by the CLI subprocesses through ``AWS_ENDPOINT_URL`` only. Every failure case checks that
the stored bytes and version are exactly what they were.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests
import schwab

from devkit.background import free_port
from devkit.emulator.schwabpy import point_client_at_emulator
from devkit.user import CLI, Run, cli_env, follow_authorize, login, paste_login, run_cli
from schwab_tokens.reader import TokenReader
from schwab_tokens.stores import store_from_url
from schwab_tokens.stores.file import FileStore
from schwab_tokens.timefmt import duration
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME, Token
from tests.helpers import (
    assert_no_secrets,
    put_raw,
    secrets_of,
    snapshot,
    start_watch,
    wait_for,
    wait_rounds,
)


def account_numbers(url: str, emulator) -> int:
    """What a bot sees: schwab-py's own file loader, or our hooks for the AWS stores."""
    if "://" in url:
        client = schwab.auth.client_from_access_functions(
            emulator.app_key, emulator.app_secret, *TokenReader(url).access_functions()
        )
    else:
        client = schwab.auth.client_from_token_file(url, emulator.app_key, emulator.app_secret)
    point_client_at_emulator(client, emulator.base_url)
    return client.get_account_numbers().status_code


def test_login_by_paste_writes_a_token_schwab_py_uses(emulator, store_url: str) -> None:
    run = paste_login(
        ["--store", store_url, "--callback-url", emulator.callback_url], cli_env(emulator)
    )
    assert run.code == 0, run.err
    assert "Logged in" in run.out and "fingerprint" in run.out
    if "://" not in store_url:
        assert stat.S_IMODE(Path(store_url).stat().st_mode) == 0o600
    stored = snapshot(store_url)
    assert stored is not None
    doc = json.loads(stored[0])
    assert set(doc) == {"creation_timestamp", "token"}
    assert {"access_token", "refresh_token", "id_token", "expires_at"} <= set(doc["token"])
    assert account_numbers(store_url, emulator) == 200
    assert_no_secrets(run.text, secrets_of(emulator))


def listener_login(
    emulator, path: Path, stdin: int = subprocess.PIPE
) -> tuple[subprocess.Popen, str]:
    """Start `login` in listener mode; return the process and the authorize URL it printed."""
    proc = subprocess.Popen(
        [
            *CLI,
            "login",
            "--no-browser",
            "--store",
            str(path),
            "--callback-url",
            emulator.callback_url,
        ],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(emulator),
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if "/v1/oauth/authorize?" in line:
            return proc, line.strip()
    raise AssertionError(f"login printed no authorize URL: {proc.communicate()}")


def test_login_by_https_listener(emulator, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    proc, authorize_url = listener_login(emulator, path)
    # The browser follows the redirect to our HTTPS listener (self-signed: not verified).
    page = requests.get(follow_authorize(authorize_url), verify=False, timeout=10)
    rest, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert page.status_code == 200 and "Login succeeded" in page.text
    assert "close this tab" in page.text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert account_numbers(str(path), emulator) == 200
    assert_no_secrets(rest + err + page.text, secrets_of(emulator))


def test_a_login_with_no_input_waits_for_the_browser(emulator, tmp_path: Path) -> None:
    """Started with its input already over (nohup, a job's </dev/null): nothing was pasted, so
    that is no Ctrl-D, and the browser's redirect still logs in."""
    path = tmp_path / "tokens.json"
    proc, authorize_url = listener_login(emulator, path, stdin=subprocess.DEVNULL)
    page = requests.get(follow_authorize(authorize_url), verify=False, timeout=10)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert page.status_code == 200 and "Login succeeded" in page.text
    assert "cancelled" not in err and FileStore(path).read().token


def test_listener_shows_denial_page_and_writes_nothing(emulator, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    emulator.set_fault("deny")
    proc, authorize_url = listener_login(emulator, path)
    page = requests.get(follow_authorize(authorize_url), verify=False, timeout=10)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert page.status_code == 400 and "Login failed" in page.text and "cancelled" in page.text
    assert "cancelled" in err and not path.exists()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_state", "state does not match"),
        ("denied", "cancelled"),
        ("no_code", "no code="),
        ("expired_code", "lives about 30 seconds"),
    ],
)
@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("store_url", ["file", "s3"], indirect=True)
def test_bad_returned_links_change_nothing(
    emulator, store_url: str, case: str, message: str, existing: bool
) -> None:
    if existing:
        login(store_from_url(store_url), emulator)
    before = snapshot(store_url)

    def link_for(authorize_url: str) -> str:
        if case == "denied":
            emulator.set_fault("deny")
        link = follow_authorize(authorize_url)
        if case == "wrong_state":
            return link.split("state=")[0] + "state=not-the-state"
        if case == "no_code":
            return (
                link.split("?")[0]
                + "?session=abc&"
                + link.split("&state=")[-1].join(["state=", ""])
            )
        if case == "expired_code":
            emulator.advance(31)
        return link

    run = paste_login(
        ["--store", store_url, "--callback-url", emulator.callback_url],
        cli_env(emulator),
        link_for=link_for,
    )
    assert run.code == 3, run.err
    assert message in run.err
    assert snapshot(store_url) == before
    assert_no_secrets(run.text, secrets_of(emulator))


def test_refresh_policy_from_the_cli(emulator, store_url: str) -> None:
    env = cli_env(emulator)
    first = login(store_from_url(store_url), emulator)
    emulator.reset_counters()

    fresh = run_cli(["refresh", "--store", store_url], env)
    assert fresh.code == 0 and "still fresh" in fresh.out
    assert emulator.token_calls == 0

    emulator.configure(access_lifetime=600)  # the next access token lives 10 minutes
    forced = run_cli(["refresh", "--force", "--store", store_url], env)
    assert forced.code == 0 and "refreshed" in forced.out
    assert emulator.token_calls == 1
    after_force = json.loads(snapshot(store_url)[0])

    # Within the default 900 s margin: due.
    due = run_cli(["refresh", "--store", store_url], env)
    assert due.code == 0 and "refreshed" in due.out
    assert emulator.token_calls == 2
    doc = json.loads(snapshot(store_url)[0])
    assert doc["creation_timestamp"] == first.creation_timestamp
    assert doc["token"]["refresh_token"] == first.refresh_token
    assert doc["token"]["access_token"] not in (
        first.access_token,
        after_force["token"]["access_token"],
    )
    assert doc["token"]["expires_at"] >= after_force["token"]["expires_at"]
    # A margin at which every check refreshes is refused, as the template refuses it.
    every = run_cli(["refresh", "--margin", "1800", "--store", store_url], env)
    assert every.code == 2 and "from 0 to 900" in every.err
    assert emulator.token_calls == 2
    for run in (fresh, forced, due, every):
        assert_no_secrets(run.text, secrets_of(emulator))


def test_refresh_and_status_print_the_same_times(emulator, store_url: str) -> None:
    token = login(store_from_url(store_url), emulator)
    env = cli_env(emulator)
    began = time.time()
    refreshed = run_cli(["refresh", "--force", "--store", store_url], env)
    status = run_cli(["status", "--store", store_url], env)
    ended = time.time()
    assert refreshed.code == 0 and status.code == 0, refreshed.text + status.text
    # Both print the refresh token's time left from the login's seconds, as the clock read them
    # while they ran: a boundary may fall between the two processes, so each is checked against
    # every reading of that window rather than against the other.
    dies = token.creation_timestamp + REFRESH_TOKEN_LIFETIME
    readings = {duration(dies - t) for t in range(int(began), int(ended) + 2)}
    left = refreshed.out.split("refresh token dies in ")[1].split(" (")[0]
    shown = status.out.split("dies in ")[1].split(" (")[0]
    assert left in readings and shown in readings, (left, shown, readings)


def test_a_login_past_its_7_days_exits_3_and_says_how_long_the_bots_still_work(
    emulator, store_url: str
) -> None:
    """``refresh`` used to print "still fresh" and exit 0 for a fresh access token of a login
    past its 7 days; the login is over all the same."""
    store = store_from_url(store_url)
    token = login(store, emulator)
    week_ago = Token(
        token.creation_timestamp - REFRESH_TOKEN_LIFETIME - 60, dict(token.token)
    )  # the same access token, issued by a login that ended a minute ago
    put_raw(store, week_ago.to_json())
    run = run_cli(["refresh", "--store", store_url], cli_env(emulator))
    assert run.code == 3, run.text
    assert "ended 7 days after it" in run.err and "still works for 29 min" in run.err
    assert f"schwab-tokens login --store {store_url}" in run.err
    status = run_cli(["status", "--json", "--store", store_url], cli_env(emulator))
    assert status.code == 3 and json.loads(status.out)["healthy"] is False


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "not valid JSON"),
        ('{"creation_timestamp": 1', "not valid JSON"),  # half-written
        ('{"token": {"access_token": "a", "refresh_token": "r", "expires_at": 1}}', "no creation"),
    ],
    ids=["empty", "half-written", "half-migrated"],
)
def test_a_broken_store_names_the_fix_and_status_json_stays_json(
    emulator, store_url: str, raw: str, problem: str
) -> None:
    store = store_from_url(store_url)
    put_raw(store, raw or " ")  # Secrets Manager refuses an empty value; a blank is as empty
    for command in (["refresh"], ["status"]):
        run = run_cli([*command, "--store", store_url], cli_env(emulator))
        assert run.code == 5, run.text
        assert problem in run.err
        assert f"`schwab-tokens login --store {store_url}` replaces it" in run.err
    status = run_cli(["status", "--json", "--store", store_url], cli_env(emulator))
    row = json.loads(status.out)
    assert status.code == 5 and row["healthy"] is False and row["exit_code"] == 5
    assert "replaces it with a new login" in row["error"]


def test_status_json_is_json_even_without_a_token(emulator, store_url: str) -> None:
    status = run_cli(["status", "--json", "--store", store_url], cli_env(emulator))
    row = json.loads(status.out)
    assert status.code == 3 and row["healthy"] is False
    assert row["outcome"] == "reauth_required" and "schwab-tokens login" in row["error"]


FAULTS = [
    ("unsupported_token_type", 3, "refresh token"),
    ("invalid_grant", 3, "refresh token"),
    ("invalid_client", 5, "app key or secret"),
    ("rate_limited", 4, "429"),
    ("server_error", 4, "500"),
    ("bad_gateway", 4, "502"),
    ("unavailable", 4, "503"),
    ("access_denied_html", 4, "HTML"),
    ("not_json", 4, "not JSON"),
    ("missing_access_token", 4, "access_token"),
    ("slow", 4, "timeout"),
    ("drop", 4, "could not reach"),
]


# On the file store: the fault matrix (tests/reliability) runs the same faults through the CLI on
# S3 and Secrets Manager.
@pytest.mark.parametrize("store_url", ["file"], indirect=True)
@pytest.mark.parametrize(("fault", "code", "message"), FAULTS)
def test_refresh_failures_leave_the_store_untouched(
    emulator, store_url: str, fault: str, code: int, message: str
) -> None:
    login(store_from_url(store_url), emulator)
    before = snapshot(store_url)
    emulator.configure(slow_seconds=2)
    emulator.set_fault(fault)
    started = time.monotonic()
    run = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert time.monotonic() - started < 20
    assert run.code == code, run.err
    assert message in run.err
    assert snapshot(store_url) == before
    assert_no_secrets(run.text, secrets_of(emulator))


def test_unreachable_schwab_is_temporary(emulator, store_url: str) -> None:
    login(store_from_url(store_url), emulator)
    before = snapshot(store_url)
    env = cli_env(emulator, SCHWAB_API_BASE=f"http://127.0.0.1:{free_port()}")
    run = run_cli(["refresh", "--force", "--store", store_url], env)
    assert run.code == 4 and "connection refused" in run.err
    assert snapshot(store_url) == before


def test_dead_refresh_token_after_seven_days(emulator, store_url: str) -> None:
    login(store_from_url(store_url), emulator)
    before = snapshot(store_url)
    emulator.advance(7 * 86400 + 60)
    run = run_cli(["refresh", "--force", "--store", store_url], cli_env(emulator))
    assert run.code == 3 and "schwab-tokens login" in run.err
    assert snapshot(store_url) == before


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("{not json", "not valid JSON"),
        (
            '{"token": {"access_token": "a", "refresh_token": "b", "expires_at": 1}}',
            "creation_timestamp",
        ),
        (
            '{"creation_timestamp": 1, "token": {"access_token": "a", "expires_at": 1}}',
            "token.refresh_token",
        ),
    ],
)
@pytest.mark.parametrize("command", ["refresh", "status"])
def test_corrupt_document_exit_5_untouched(
    emulator, store_url: str, content: str, named: str, command: str
) -> None:
    put_raw(store_url, content)
    before = snapshot(store_url)
    run = run_cli([command, "--store", store_url], cli_env(emulator))
    assert run.code == 5, run.err
    assert named in run.err
    assert snapshot(store_url) == before
    assert emulator.token_calls == 0


def test_no_token_asks_for_login(emulator, store_url: str) -> None:
    for command in ("refresh", "status"):
        run = run_cli([command, "--store", store_url], cli_env(emulator))
        assert run.code == 3 and "schwab-tokens login" in run.err


def test_store_defaults_to_env_then_tokens_json(emulator, tmp_path: Path) -> None:
    login(FileStore(tmp_path / "tokens.json"), emulator)
    env = cli_env(emulator)
    env.pop("TOKEN_STORE_URL", None)
    plain = run_cli(["status"], env, cwd=tmp_path)
    assert plain.code == 0 and "tokens.json" in plain.out
    login(FileStore(tmp_path / "other.json"), emulator)
    env["TOKEN_STORE_URL"] = f"file:{tmp_path / 'other.json'}"
    other = run_cli(["status"], env)
    assert other.code == 0 and "other.json" in other.out


def test_status_human_and_json(emulator, store_url: str) -> None:
    token = login(store_from_url(store_url), emulator)
    human = run_cli(["status", "--store", store_url], cli_env(emulator))
    assert human.code == 0
    assert "logged in:" in human.out and "expires in" in human.out
    assert re.search(r"refresh token: +dies in (6 days 23|7 days 0) hours", human.out)
    assert token.fingerprint in human.out
    data = json.loads(run_cli(["status", "--json", "--store", store_url], cli_env(emulator)).out)
    assert data["access_expires_at"] == int(token.access_expires_at)
    assert data["refresh_expires_at"] == token.creation_timestamp + 7 * 86400
    assert data["healthy"] is True
    assert_no_secrets(human.text, secrets_of(emulator))


def test_two_refreshers_on_one_store_call_schwab_once(emulator, store_url: str) -> None:
    emulator.configure(access_lifetime=300)  # the first token is already inside the margin
    login(store_from_url(store_url), emulator)
    emulator.configure(access_lifetime=1800)
    emulator.reset_counters()
    env = cli_env(emulator)
    procs = [
        subprocess.Popen(
            [*CLI, "refresh", "--store", store_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert emulator.token_calls == 1
    assert store_from_url(store_url).read().token.access_seconds_left() > 250


def watch_until(emulator, store_url: str, calls: int, stop: signal.Signals) -> Run:
    """``schwab-tokens watch`` on a token that is always due, stopped with ``stop`` once it has
    refreshed ``calls`` times."""
    emulator.configure(access_lifetime=3)  # every check finds it due
    login(store_from_url(store_url), emulator)
    emulator.reset_counters()
    proc = start_watch(store_url, cli_env(emulator), interval=0.3)
    wait_for(lambda: emulator.token_calls >= calls, what=f"{calls} refreshes")
    proc.send_signal(stop)
    out, err = proc.communicate(timeout=10)
    assert emulator.token_calls >= calls
    assert_no_secrets(out + err, secrets_of(emulator))
    return Run(proc.returncode, out, err)


def test_watch_refreshes_when_due_and_stops_on_sigterm(emulator, store_url: str) -> None:
    run = watch_until(emulator, store_url, 2, signal.SIGTERM)
    assert run.code == 0, run.err
    assert "refreshed" in run.out and "stopped" in run.out


def test_watch_stopped_with_ctrl_c_exits_130(emulator, tmp_path: Path) -> None:
    run = watch_until(emulator, str(tmp_path / "tokens.json"), 1, signal.SIGINT)
    assert run.code == 130, run.err
    assert "stopped" in run.out


def test_watch_waits_out_a_dead_login_and_takes_the_next(emulator, store_url: str) -> None:
    """A login that is over does not end watch: it says so once, waits, and refreshes the new
    login as soon as one is stored (from another terminal); only a signal stops it."""
    emulator.configure(access_lifetime=3)  # every check finds it due
    store = store_from_url(store_url)
    login(store, emulator)
    emulator.revoke_all()
    proc = start_watch(store_url, cli_env(emulator))
    wait_for(lambda: emulator.calls_by_grant.get("refresh_token", 0) >= 2)  # 2 refused rounds
    assert proc.poll() is None, "watch ended on a dead login"
    login(store, emulator)  # the user logs in again
    calls = emulator.calls_by_grant.get("refresh_token", 0)
    wait_for(lambda: emulator.calls_by_grant.get("refresh_token", 0) >= calls + 2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert err.count("reauth_required:") == 1, err  # said once, not once per round
    assert "waiting for a new login" in err and "refreshed" in out
    assert_no_secrets(out + err, secrets_of(emulator))


def test_watch_outlives_a_half_written_store_and_an_outage(emulator, tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    emulator.configure(access_lifetime=3)  # due at every check
    login(FileStore(path), emulator)
    due = path.read_bytes()
    env = cli_env(emulator)
    proc = start_watch(str(path), env, merge_stderr=True)
    said: list[str] = []
    reader = threading.Thread(target=lambda: said.extend(proc.stdout or []), daemon=True)
    reader.start()
    wait_for(lambda: emulator.token_calls >= 2)
    emulator.configure(access_lifetime=1800)  # the next refresh is fresh: watch stops writing
    wait_for(lambda: any(re.search(r"^refreshed: .* valid for (29|30) min", x) for x in said))
    path.write_bytes(due[: len(due) // 2])  # another tool's write, cut short
    wait_for(lambda: any("not valid JSON" in line for line in said))
    emulator.set_fault("drop")  # then the network goes, with a token that is due again
    path.write_bytes(due)
    wait_for(lambda: any("could not reach" in line for line in said))
    wait_rounds(emulator, env, 2)  # two more rounds of the same outage: nothing more is said
    assert proc.poll() is None, "watch ended"
    refreshed = sum(line.startswith("refreshed:") for line in said)
    emulator.clear_faults()
    # Until the refresh has landed (reported), not just reached Schwab: a token written over
    # below while that refresh is still storing its own would lose to it.
    wait_for(lambda: sum(line.startswith("refreshed:") for line in said) > refreshed)
    # Schwab's edge answers an HTML 400 for a while: no verdict on the token, so no "log in".
    emulator.set_fault("html_400")
    path.write_bytes(due)
    wait_for(lambda: any("without a verdict" in line for line in said))
    wait_rounds(emulator, env, 2)  # and nothing more about it either
    assert proc.poll() is None, "watch ended on the edge's 400"
    assert path.read_bytes() == due  # touched nothing
    emulator.clear_faults()
    calls = emulator.token_calls
    wait_for(lambda: emulator.token_calls >= calls + 1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    reader.join(timeout=10)
    text = "".join(said)
    assert proc.returncode == 130, text
    assert text.count("not valid JSON") == 1 and text.count("could not reach") == 1, text
    assert text.count("without a verdict") == 1 and "reauth_required" not in text, text
    assert "watch keeps running" in text
    assert FileStore(path).read().token


def test_file_is_created_private_even_with_open_umask(emulator, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = tmp_path / "tokens.json"
        login(FileStore(path), emulator)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_login_takes_the_app_secret_only_from_the_environment_or_a_secret(
    emulator, tmp_path: Path
) -> None:
    env = cli_env(emulator)
    del env["SCHWAB_APP_SECRET"]
    run = paste_login(["--store", str(tmp_path / "tokens.json")], env)
    assert run.code == 2 and "SCHWAB_APP_SECRET" in run.err
    assert not (tmp_path / "tokens.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-browser", "--callback-url", "https://example.com:8443/cb"], "use --paste"),
        (["--no-browser", "--callback-url", "https://localhost:8182"], "refuses localhost"),
        (["--paste", "--callback-url", "http://127.0.0.1:8182"], "must be an https:// URL"),
    ],
)
def test_login_refuses_callbacks_it_cannot_use(
    emulator, tmp_path: Path, args: list[str], message: str
) -> None:
    run = run_cli(["login", "--store", str(tmp_path / "t.json"), *args], cli_env(emulator))
    assert run.code == 2 and message in run.err
    assert emulator.calls_by_grant == {}
