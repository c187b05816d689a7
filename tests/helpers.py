"""Shared test steps: logging in through the emulator and running the CLI as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import requests

from schwab_tokens.login import complete_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.stores import TokenStore
from schwab_tokens.token import Token

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("schwab-tokens")
#: The installed console script, as a user runs it (the module form if tests run elsewhere).
CLI = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "schwab_tokens.cli"]


def follow_authorize(authorize_url: str) -> str:
    """What the browser does after the user approves: the emulator's redirect target."""
    answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.status_code
    return answer.headers["Location"]


def login(store: TokenStore, emulator: object) -> Token:
    """A completed login, done through the library (for tests about what comes after)."""
    oauth = SchwabOAuth(
        emulator.app_key,  # type: ignore[attr-defined]
        emulator.app_secret,  # type: ignore[attr-defined]
        base_url=emulator.base_url,  # type: ignore[attr-defined]
    )
    callback = emulator.callback_url  # type: ignore[attr-defined]
    url, state = oauth.authorize_url(callback)
    return complete_login(oauth, store, follow_authorize(url), state, callback)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli_env(emulator: object, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHWAB_", "TOKEN_STORE"))}
    env.update(
        SCHWAB_API_BASE=emulator.base_url,  # type: ignore[attr-defined]
        SCHWAB_APP_KEY=emulator.app_key,  # type: ignore[attr-defined]
        SCHWAB_APP_SECRET=emulator.app_secret,  # type: ignore[attr-defined]
        SCHWAB_HTTP_TIMEOUT="1",
        SCHWAB_HTTP_RETRIES="2",
        PYTHONPATH=str(REPO),
    )
    env.update(extra)
    return env


def run_cli(
    args: Iterable[str], env: Mapping[str, str], stdin: str = "", timeout: float = 60
) -> Run:
    done = subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, env=dict(env), timeout=timeout
    )
    return Run(done.returncode, done.stdout, done.stderr)


def paste_login(args: Iterable[str], env: Mapping[str, str], link_for=follow_authorize) -> Run:
    """``schwab-tokens login --paste`` driven like a person: open the printed URL, paste the link.

    ``link_for`` turns the authorize URL into the pasted line (tests use it to tamper).
    """
    proc = subprocess.Popen(
        [*CLI, "login", "--paste", *args],
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


def assert_no_secrets(text: str, secrets: Iterable[str]) -> None:
    leaked = [s for s in secrets if s and s in text]
    assert not leaked, f"{len(leaked)} secret(s) appeared in output"


def bind_lambda_logs_to_stdout() -> None:
    """A cold start's logger: powertools reuses an existing logger's handler, which an earlier
    test bound to its own (captured, now closed) stdout."""
    import logging
    import sys

    sys.modules.pop("schwab_tokens.observability", None)
    import schwab_tokens.observability  # noqa: F401  (creates the Logger again)

    for handler in logging.getLogger("schwab-tokens").handlers:
        handler.stream = sys.stdout  # type: ignore[attr-defined]


EVENTS = REPO / "events"


@dataclass
class LambdaContext:
    function_name: str = "schwab-tokens-refresher"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:schwab-tokens-refresher"
    )
    aws_request_id: str = "7e1b2c3d-0000-4000-8000-000000000001"


def lambda_event(name: str) -> dict:
    import json

    return json.loads((EVENTS / name).read_text())


def load_handler(folder: str):  # type: ignore[no-untyped-def]
    """Import functions/<folder>/app.py fresh, as a cold start does."""
    import importlib.util

    name = f"handler_{folder}"
    sys.modules.pop(name, None)
    bind_lambda_logs_to_stdout()
    spec = importlib.util.spec_from_file_location(name, REPO / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refresher_env(emulator: object, url: str, **extra: str) -> dict[str, str]:
    """The refresher Lambda's environment as the stack sets it, pointed at the emulator."""
    env = {
        "TOKEN_STORE_URL": url,
        "SCHWAB_API_BASE": emulator.base_url,  # type: ignore[attr-defined]
        "SCHWAB_HTTP_TIMEOUT": "1",
        "SCHWAB_HTTP_RETRIES": "1",
        "REFRESH_MARGIN_SECONDS": "600",
        "POWERTOOLS_SERVICE_NAME": "schwab-tokens",
        "POWERTOOLS_METRICS_NAMESPACE": "SchwabTokens",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": "schwab-tokens-refresher",
    }
    env.update(extra)
    return env
