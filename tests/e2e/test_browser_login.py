"""The login as a person does it: ``schwab-tokens login`` in listener mode and a real browser.

Headless Chromium (Debian's ``chromium``; ``scripts/install-chromium.sh`` installs it) opens the
authorize URL the CLI prints, follows the emulator's redirect to the CLI's HTTPS listener (a
self-signed certificate, hence ``--ignore-certificate-errors``) and dumps the page it lands on.
That page is what the user reads at the end of a login, so the tests assert its words.

The last test needs no browser: it pins down a race this suite found and the library fixed (the
CLI could exit before the listener's request thread had sent the page, so the tab stayed empty).
"""

from __future__ import annotations

import contextlib
import os
import queue
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from schwab_tokens import login as login_module
from schwab_tokens.errors import CallbackError
from schwab_tokens.login import CallbackListener, listen_for_login
from schwab_tokens.token import Token
from tests.conftest import free_port
from tests.emulator.server import ACCOUNT_NUMBERS_PATH
from tests.helpers import CLI, assert_no_secrets, cli_env

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"headless Chromium not found at {CHROMIUM}: run scripts/install-chromium.sh "
    "(or set CHROMIUM=/path/to/chromium)",
)

#: Each browser step takes about two seconds here; these bound a hung browser or CLI.
BROWSER_TIMEOUT = 45.0
CLI_TIMEOUT = 30.0


class LoginProcess:
    """``schwab-tokens login --no-browser`` listening on the emulator's callback URL."""

    def __init__(self, emulator, store: Path) -> None:
        self.proc = subprocess.Popen(
            [
                *CLI,
                "login",
                "--no-browser",
                "--store",
                str(store),
                "--callback-url",
                emulator.callback_url,
            ],
            stdin=subprocess.PIPE,  # kept open: the listener also reads pasted links from it
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(emulator),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.out: list[str] = []
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def authorize_url(self, timeout: float = CLI_TIMEOUT) -> str:
        """The address the CLI asks the user to open (once its listener is up)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"the CLI printed no authorize URL: {self.out}") from None
            if line is None:
                raise AssertionError(f"the CLI ended before printing the authorize URL: {self.out}")
            self.out.append(line)
            if "/v1/oauth/authorize?" in line:
                return line.strip()

    def finish(self, timeout: float = CLI_TIMEOUT) -> tuple[int, str, str]:
        """Exit code, all stdout and stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self._reader.join(timeout=5)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.out.append(line)
        return self.proc.returncode, "".join(self.out), self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def browse(url: str, profile: Path) -> subprocess.CompletedProcess[str]:
    """Open ``url`` in headless Chromium, follow redirects, print the final page's DOM."""
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--ignore-certificate-errors",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--no-proxy-server",
            f"--user-data-dir={profile}",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT,
        env={**os.environ, "HOME": str(profile)},
    )


@pytest.fixture
def login_process(emulator, tmp_path: Path):
    started: list[LoginProcess] = []

    def start(store: Path) -> LoginProcess:
        started.append(LoginProcess(emulator, store))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def secrets_of(emulator) -> set[str]:
    return set(emulator.issued_secrets()) | {emulator.app_secret}


@needs_chromium
def test_browser_login_lands_on_success_page_and_stores_the_token(
    emulator, login_process, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    login = login_process(store)
    url = login.authorize_url()
    assert url.startswith(emulator.base_url)

    browser = browse(url, tmp_path / "chromium-profile")
    code, out, err = login.finish()

    page = browser.stdout
    assert browser.returncode == 0, browser.stderr[-2000:]
    # Our listener's page, reached through the redirect: not the emulator's, not an error page.
    assert "<title>schwab-tokens: Login succeeded</title>" in page, page
    assert "The Schwab login succeeded and the token is stored." in page
    assert "You can close this tab." in page
    assert code == 0, err
    assert "Logged in" in out

    token = Token.parse(store.read_bytes(), source=str(store))
    assert token.fingerprint in out
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert token.access_seconds_left() > 1700
    assert token.refresh_token in emulator.issued_secrets()
    answer = requests.get(
        emulator.base_url + ACCOUNT_NUMBERS_PATH,
        headers={"Authorization": f"Bearer {token.access_token}"},
        timeout=5,
    )
    assert answer.status_code == 200
    assert emulator.calls_by_grant == {"authorization_code": 1}
    assert_no_secrets(out + err + page + browser.stderr, secrets_of(emulator))


@needs_chromium
def test_browser_login_denied_shows_why_and_writes_nothing(
    emulator, login_process, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    emulator.set_fault("deny")  # the user clicks "Cancel" on Schwab's consent page
    login = login_process(store)

    browser = browse(login.authorize_url(), tmp_path / "chromium-profile")
    code, out, err = login.finish()

    page = browser.stdout
    assert browser.returncode == 0, browser.stderr[-2000:]
    assert "<title>schwab-tokens: Login failed</title>" in page, page
    assert "the login was cancelled or access was not granted (access_denied)" in page
    assert "run `schwab-tokens login` again" in page
    assert "The token store was not changed." in page
    assert code == 3, err
    assert "cancelled" in err
    assert not store.exists()
    assert emulator.token_calls == 0
    assert_no_secrets(out + err + page + browser.stderr, secrets_of(emulator))


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("outcome", ["succeeded", "denied"])
def test_the_browser_has_its_page_when_the_listener_closes(
    outcome: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schwab-tokens login`` exits right after the listener closes: a page not yet sent by
    then never arrives. A busy machine schedules the request thread late; 1 s late here."""
    real_page = login_module._page

    def late_page(title: str, message: str) -> str:
        time.sleep(1.0)
        return real_page(title, message)

    monkeypatch.setattr(login_module, "_page", late_page)
    callback = f"https://127.0.0.1:{free_port()}"
    answers: list[object] = []

    def browser() -> None:
        try:
            page = requests.get(f"{callback}/?code=C0DE%40&state=s", verify=False, timeout=10)
            answers.append(page.status_code)
        except requests.RequestException as exc:
            answers.append(type(exc).__name__)

    def handle(link: str) -> object:
        if outcome == "denied":
            raise CallbackError("the login was cancelled or access was not granted")
        return object()

    with CallbackListener(callback) as listener:
        client = threading.Thread(target=browser, daemon=True)
        client.start()
        with contextlib.suppress(CallbackError):
            listen_for_login(listener, handle, timeout=10)  # type: ignore[arg-type]
    # Here the CLI prints one line and exits: give the page 0.2 s to reach the browser.
    client.join(0.2)
    assert answers == [200 if outcome == "succeeded" else 400]
