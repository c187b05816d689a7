"""Fault-matrix rows for hostile token answers: every kind of bad 200 (and a redirect), on every
store, through the CLI as users run it.

Each row: log in, answer the next token call badly, run ``schwab-tokens refresh --force --json``,
and check the outcome and exit code, that the stored bytes and version are exactly as before,
and that the next run (in-process) refreshes to a token Schwab accepts on a good answer. A
good answer padded with unknown fields must refresh, and store none of them. Rows go to
``$RELIABILITY_REPORT``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from devkit.emulator import BAD_ANSWER_FAULT_KINDS, Emulator
from devkit.user import CLI, cli_env, login, oauth_for
from schwab_tokens.policy import run
from schwab_tokens.stores import store_from_url
from tests.helpers import accepted, assert_no_secrets
from tests.reliability.support import new_store, record, state

STORES = ("file", "s3", "secretsmanager")
KNOWN_FIELDS = {
    "access_token",
    "refresh_token",
    "id_token",
    "token_type",
    "scope",
    "expires_in",
    "expires_at",
}


def refresh(url: str, emulator: Emulator, aws_endpoint: str | None) -> tuple[int, dict, str]:
    env = cli_env(emulator, SCHWAB_HTTP_RETRIES="0")
    if aws_endpoint:
        env["AWS_ENDPOINT_URL"] = aws_endpoint
    done = subprocess.run(
        [*CLI, "refresh", "--force", "--json", "--store", url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert_no_secrets(done.stdout + done.stderr, emulator.issued_secrets() | {emulator.app_secret})
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return done.returncode, (lines[-1] if lines else {}), done.stderr


@pytest.mark.parametrize("kind", STORES)
@pytest.mark.parametrize("fault", [*BAD_ANSWER_FAULT_KINDS, "extra_fields"])
def test_a_bad_answer_never_breaks_the_store(
    fault: str, kind: str, emulator: Emulator, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_store(kind, request, tmp_path, fault)
    endpoint = None if kind == "file" else request.getfixturevalue("aws_endpoint")
    login(store_from_url(url), emulator)
    before = state(url)
    emulator.set_fault(fault, count=1)
    code, outcome, err = refresh(url, emulator, endpoint)
    after = state(url)
    good = fault == "extra_fields"
    problems = []
    if good:
        stored = store_from_url(url).read().token
        if code != 0 or outcome.get("outcome") != "refreshed":
            problems.append(f"a good answer with extra fields ended {code} {outcome}: {err}")
        if set(stored.token) - KNOWN_FIELDS:
            problems.append(f"unknown fields stored: {sorted(set(stored.token) - KNOWN_FIELDS)}")
        if not accepted(emulator, stored.access_token):
            problems.append("the stored access token is refused")
    else:
        if code != 4 or outcome.get("outcome") != "failed":
            problems.append(f"ended {code} {outcome.get('outcome')}: {err}")
        if after != before:
            problems.append("the stored document or its version changed")
    # The next good answer refreshes, to a token Schwab accepts (the next run, in-process).
    again = run(store_from_url(url), lambda: oauth_for(emulator, retries=0), force=True)
    recovered = again.outcome == "refreshed"
    recovered = recovered and accepted(emulator, store_from_url(url).read().token.access_token)
    if not recovered:
        problems.append(f"the next good answer did not refresh: {again.outcome} {again.error}")
    record(
        "bad_answer",
        store=kind,
        fault=fault,
        exit_code=code,
        outcome=outcome.get("outcome"),
        bytes_unchanged=after == before,
        broken=not recovered,
        passed=not problems,
        problems=problems,
    )
    assert not problems, problems
