"""The login as a person does it: ``schwab-tokens login`` in listener mode and a real browser.

Headless Chromium (``tests/browser.py``) opens the authorize URL the CLI prints, follows the
emulator's redirect to the CLI's HTTPS listener (a self-signed certificate, hence
``--ignore-certificate-errors``) and dumps the page it lands on.
That page is what the user reads at the end of a login, so the tests assert its words.

The last test needs no browser: it pins down a race this suite found and the library fixed (the
CLI could exit before the listener's request thread had sent the page, so the tab stayed empty):
a login process that exits the moment the login returns must still have sent the tab its page.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from devkit.background import free_port
from devkit.user import CLI, cli_env
from schwab_tokens.token import Token
from tests.browser import browse, needs_chromium
from tests.helpers import accepted, assert_no_secrets, secrets_of

#: Bounds a hung CLI.
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


@pytest.fixture
def login_process(emulator, tmp_path: Path):
    started: list[LoginProcess] = []

    def start(store: Path) -> LoginProcess:
        started.append(LoginProcess(emulator, store))
        return started[-1]

    yield start
    for process in started:
        process.kill()


def in_browser(login: LoginProcess, url: str, tmp_path: Path) -> tuple[Any, str, int, str, str]:
    """Open ``url`` in Chromium while the CLI waits; the browser run, the page it shows, and the
    CLI's exit code and output."""
    browser = browse(url, tmp_path / "chromium-profile")
    code, out, err = login.finish()
    assert browser.returncode == 0, browser.stderr[-2000:]
    return browser, browser.stdout, code, out, err


@needs_chromium
def test_browser_login_lands_on_success_page_and_stores_the_token(
    emulator, login_process, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    login = login_process(store)
    url = login.authorize_url()
    assert url.startswith(emulator.base_url)

    browser, page, code, out, err = in_browser(login, url, tmp_path)
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
    assert accepted(emulator, token.access_token)
    assert emulator.calls_by_grant == {"authorization_code": 1}
    assert_no_secrets(out + err + page + browser.stderr, secrets_of(emulator))


@needs_chromium
def test_browser_login_denied_shows_why_and_writes_nothing(
    emulator, login_process, tmp_path: Path
) -> None:
    store = tmp_path / "tokens.json"
    emulator.set_fault("deny")  # the user clicks "Cancel" on Schwab's consent page
    login = login_process(store)

    browser, page, code, out, err = in_browser(login, login.authorize_url(), tmp_path)
    assert "<title>schwab-tokens: Login failed</title>" in page, page
    assert "the login was cancelled or access was not granted (access_denied)" in page
    assert "run `schwab-tokens login` again" in page
    assert "The token store was not changed." in page
    assert code == 3, err
    assert "cancelled" in err
    assert not store.exists()
    assert emulator.token_calls == 0
    assert_no_secrets(out + err + page + browser.stderr, secrets_of(emulator))


#: A login that ends the way ``schwab-tokens login`` does: the process exits as soon as
#: ``listen_for_login`` returns, and its daemon threads (the listener's) die with it.
LOGIN_THEN_EXIT = """
import os, sys
from schwab_tokens.errors import CallbackError
from schwab_tokens.listener import CallbackListener, listen_for_login

port, state, outcome = sys.argv[1:]

def handle(link):
    if outcome == "denied":
        raise CallbackError("the login was cancelled or access was not granted")
    return object()

listener = CallbackListener(f"https://127.0.0.1:{port}", state).__enter__()
print("listening", flush=True)
try:
    listen_for_login(listener, handle, 10)
except CallbackError:
    pass
os._exit(0)
"""


@pytest.mark.parametrize(
    ("outcome", "status", "title"),
    [("succeeded", b"200", b"Login succeeded"), ("denied", b"400", b"Login failed")],
)
def test_the_tab_has_its_page_when_the_login_process_exits(
    outcome: str, status: bytes, title: bytes
) -> None:
    """The browser's request arrives, the login completes (or fails) and the process exits at
    once: the page must have been sent before, or the tab stays empty."""
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", LOGIN_THEN_EXIT, str(port), "state-1", outcome],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "listening"
        client = ssl.create_default_context()
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE  # the listener's certificate is self-signed
        with client.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10)) as tls:
            tls.sendall(
                f"GET /?code=C0DE%40&state=state-1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            page = b""
            with contextlib.suppress(OSError):  # a connection cut by the exit: checked below
                while chunk := tls.recv(65536):
                    page += chunk
        assert child.wait(timeout=10) == 0
    finally:
        if child.poll() is None:
            child.kill()
    assert page.split(b" ", 2)[1:2] == [status], page[:200]
    assert title in page and page.rstrip().endswith(b"</html>")
