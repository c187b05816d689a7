"""`make invoke`: scripts/invoke.py runs each Lambda handler here, without Docker.

With no endpoint in the environment it stands up moto's server and the Schwab emulator, logs a
token in and sets the function's environment from template.yaml; with endpoints and a store in
the environment it uses them and creates nothing. The result is on standard output (JSON), the
handler's logs on standard error; exit 0 when the handler returned, 1 when it raised.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from devkit import REPO
from devkit.emulator import Emulator
from devkit.user import Run, login
from schwab_tokens import aws
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import log_records

SCRIPT = REPO / "scripts" / "invoke.py"


def invoke(*args: str, **env: str) -> Run:
    """scripts/invoke.py as `make invoke` runs it, in this test's environment (no developer's
    AWS or Schwab settings: see tests/conftest.py) plus ``env``."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def result_of(run: Run) -> Any:
    assert run.code == 0, run.err
    return json.loads(run.out)


def logs_of(run: Run) -> list[dict[str, Any]]:
    """The handler's JSON log lines (standard error also carries the script's own lines)."""
    return log_records("\n".join(line for line in run.err.splitlines() if line.startswith("{")))


def logged_in_fingerprint(run: Run) -> str:
    found = re.search(r"a token logged in to \S+ \((\w+)\)", run.err)
    assert found, run.err
    return found[1]


def test_the_refresher_with_its_scheduled_event() -> None:
    run = invoke("refresher")
    summary = result_of(run)
    assert summary["outcome"] == "still_fresh"  # just logged in: nothing to do
    (token,) = summary["tokens"]
    assert token["outcome"] == "still_fresh"
    assert token["fingerprint"] == logged_in_fingerprint(run)
    assert token["store"] == "s3://schwab-tokens-local/schwab/tokens.json"
    (record,) = logs_of(run)
    assert record["function_name"] == "local-RefresherFunction" and record["cold_start"]
    assert "invoke:   SCHWAB_CREDENTIALS_SECRET=ssm:/local/credentials" in run.err


def test_the_example_consumer_reports_the_tokens_fingerprint() -> None:
    run = invoke("example_consumer")
    answer = result_of(run)
    assert answer["fingerprint"] == logged_in_fingerprint(run)
    assert 1700 < answer["access_seconds_left"] <= 1800
    assert answer["refresh_hours_left"] == pytest.approx(168, abs=0.1)
    assert "invoke:   TOKEN_ACCESS_URL=s3://schwab-tokens-local/schwab/tokens.access.json" in (
        run.err
    )


def test_the_login_refuses_the_samples_expired_ticket() -> None:
    run = invoke("login")
    page = result_of(run)
    assert page["statusCode"] == 403
    assert "This login link is not valid" in page["body"]
    (record,) = logs_of(run)
    assert record["event"] == "ticket_invalid" and record["route"] == "/start"


def test_the_environments_own_endpoints_are_used_and_nothing_is_created(
    emulator: Emulator, aws_endpoint: str, s3_store_url: Callable[..., str]
) -> None:
    url = s3_store_url()
    login(store_from_url(url, Settings()), emulator)
    calls = emulator.token_calls
    run = invoke(
        "refresher",
        "force_refresh",
        TOKEN_STORE_URL=url,
        SCHWAB_API_BASE=emulator.base_url,
        SCHWAB_APP_KEY=emulator.app_key,
        SCHWAB_APP_SECRET=emulator.app_secret,
    )
    assert result_of(run)["outcome"] == "refreshed"
    assert emulator.token_calls == calls + 1  # this emulator's token endpoint, once
    assert "using the environment as it is" in run.err
    # Nothing made: no other bucket, no topic, no parameter.
    (bucket,) = aws.client("s3").list_buckets()["Buckets"]
    assert f"s3://{bucket['Name']}/" in url
    assert aws.client("sns").list_topics()["Topics"] == []
    assert aws.client("ssm").describe_parameters()["Parameters"] == []


def test_a_handler_that_raises_exits_1(aws_endpoint: str) -> None:
    run = invoke("refresher", TOKEN_STORE_URL="s3://no-such-bucket/schwab/tokens.json")
    assert run.code == 1, run.err
    assert run.out == ""
    assert "invoke: RefresherFunction raised " in run.err


def test_usage_errors_exit_2() -> None:
    assert invoke("no_such_function").code == 2
    assert invoke("login", "no-such-event.json").code == 2
    run = invoke("login", "--parameter", "HostedLogin=Disabled")
    assert run.code == 2 and "LoginFunction exists only where HostedLoginEnabled holds" in run.err
