"""What a user does, as the tests, the demo and the scripts drive it: log a store in through the
emulator (as the browser and the library do), run the CLI in a shell pointed at the emulator, and
paste a login into ``schwab-tokens login``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from devkit import REPO
from schwab_tokens.login_flow import complete_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.stores import TokenStore
from schwab_tokens.token import Token

_SCRIPT = Path(sys.executable).with_name("schwab-tokens")
#: The installed console script, as a user runs it (the module form if run elsewhere).
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "schwab_tokens"]


# -- logging in -----------------------------------------------------------------------------------
def follow_authorize(authorize_url: str) -> str:
    """What the browser does after the user approves: the emulator's redirect target."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.status_code
    return answer.headers["Location"]


def oauth_for(emulator: Any, **options: Any) -> SchwabOAuth:
    """The emulated app's OAuth client (``timeout``, ``retries`` as ``SchwabOAuth`` takes them)."""
    return SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url, **options)


def login(store: TokenStore, emulator: Any) -> Token:
    """A completed login, done through the library (for tests about what comes after)."""
    oauth = oauth_for(emulator)
    callback = emulator.callback_url
    url, state = oauth.authorize_url(callback)
    return complete_login(oauth, store, follow_authorize(url), state, callback)


# -- the CLI ------------------------------------------------------------------------------------
@dataclass
class Run:
    """A finished command: its exit code, standard output and standard error."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(emulator: Any, **extra: str) -> dict[str, str]:
    """The environment of a user's shell pointed at the emulator (key and secret in the env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHWAB_", "TOKEN_STORE"))}
    env.update(
        SCHWAB_API_BASE=emulator.base_url,
        SCHWAB_APP_KEY=emulator.app_key,
        SCHWAB_APP_SECRET=emulator.app_secret,
        SCHWAB_HTTP_TIMEOUT="1",
        SCHWAB_HTTP_RETRIES="2",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run_cli(
    args: Iterable[str],
    env: Mapping[str, str],
    stdin: str = "",
    timeout: float = 60,
    cwd: str | Path | None = None,
) -> Run:
    """``schwab-tokens ARGS`` run to its end with ``env`` (raises ``TimeoutExpired`` after
    ``timeout`` seconds)."""
    done = subprocess.run(
        [*CLI, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=timeout,
        cwd=cwd,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def paste_login(
    args: Iterable[str], env: Mapping[str, str], link_for: Callable[[str], str] = follow_authorize
) -> Run:
    """``schwab-tokens login --paste`` driven like a person: open the printed URL, paste the link.

    ``link_for`` turns the authorize URL into the pasted line (tests use it to tamper).
    """
    return login_by_listener([*CLI, "login", "--paste", *args], env, link_for)


def login_by_listener(
    argv: list[str], env: Mapping[str, str], link_for: Callable[[str], str] = follow_authorize
) -> Run:
    """Any login command line (``--paste`` or the HTTPS listener, which also takes a pasted
    link): open the authorize URL it prints, as the browser would, and paste where it landed."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
    )
    assert proc.stdout is not None and proc.stdin is not None
    out: list[str] = []
    for line in proc.stdout:
        out.append(line)
        if "/v1/oauth/authorize?" in line:
            proc.stdin.write(link_for(line.strip()) + "\n")
            proc.stdin.flush()
            break
    rest, err = proc.communicate(timeout=60)
    return Run(proc.returncode, "".join(out) + rest, err)
