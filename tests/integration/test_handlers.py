"""The Lambda handlers run in-process with the files in events/, against the emulator and moto's
server over real HTTP (``AWS_ENDPOINT_URL``), for both store types."""

from __future__ import annotations

import json

import pytest

from devkit.handlers import load_handler
from devkit.user import login
from schwab_tokens import aws
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.stores import store_from_url
from tests.helpers import (
    LambdaContext,
    assert_no_secrets,
    emf_metrics,
    invoke,
    lambda_event,
    log_records,
    refresher_env,
    secrets_of,
)


@pytest.fixture(params=["s3", "secretsmanager"])
def deployed(request, emulator, monkeypatch: pytest.MonkeyPatch):
    """What the stack provides: a store, a credentials secret, the refresher's environment."""
    request.getfixturevalue("aws_endpoint")
    url = (
        request.getfixturevalue("s3_store_url")()
        if request.param == "s3"
        else request.getfixturevalue("sm_store_url")()
    )
    secret = f"schwab-tokens/credentials-{request.param}-{id(emulator)}"
    store_credentials(secret, AppCredentials(emulator.app_key, emulator.app_secret))
    for name, value in refresher_env(emulator, url, SCHWAB_CREDENTIALS_SECRET=secret).items():
        monkeypatch.setenv(name, value)
    return url


def test_scheduled_run_refreshes_when_due_then_stays_quiet(emulator, deployed, capsys) -> None:
    emulator.configure(access_lifetime=300)  # the login's token is inside the margin
    first = login(store_from_url(deployed), emulator)
    emulator.configure(access_lifetime=1800)
    emulator.reset_counters()

    result, error, out = invoke(capsys, "scheduled.json")
    assert error is None and result is not None and result["outcome"] == "refreshed"
    assert result["tokens"][0]["outcome"] == "refreshed"
    assert emulator.token_calls == 1
    stored = store_from_url(deployed).read().token
    assert stored.creation_timestamp == first.creation_timestamp
    assert stored.access_seconds_left() > 1700
    metrics = emf_metrics(out)
    assert metrics["Refreshed"] == [1] and metrics["SuccessfulRun"] == [1]
    assert 167 < metrics["RefreshTokenHoursLeft"][0] <= 168
    assert metrics["AccessTokenSecondsLeft"][0] > 1700
    logs = log_records(out)
    assert any(r.get("outcome") == "refreshed" and r.get("token") for r in logs), logs
    ids = {r.get("function_request_id") for r in logs}
    assert len(ids) == 1 and None not in ids  # every line names the invocation
    assert_no_secrets(out + json.dumps(result), secrets_of(emulator))

    result, error, out = invoke(capsys, "scheduled.json")
    assert error is None and result is not None and result["outcome"] == "still_fresh"
    assert emulator.token_calls == 1
    assert emf_metrics(out)["StillFresh"] == [1]


def test_custom_metrics_are_opt_in(emulator, deployed, capsys, monkeypatch) -> None:
    """Without DetailedMetrics the run costs no custom metric: only its JSON log line."""
    monkeypatch.delenv("SCHWAB_TOKENS_DETAILED_METRICS")
    login(store_from_url(deployed), emulator)
    result, error, out = invoke(capsys, "scheduled.json")
    assert error is None and result is not None and result["outcome"] == "still_fresh"
    assert not any("_aws" in json.loads(line) for line in out.splitlines())
    assert any(r.get("outcome") == "still_fresh" for r in log_records(out))


def test_forced_event_refreshes_a_fresh_token(emulator, deployed, capsys) -> None:
    login(store_from_url(deployed), emulator)
    emulator.reset_counters()
    result, error, _ = invoke(capsys, "force_refresh.json")
    assert error is None and result is not None and result["outcome"] == "refreshed"
    assert emulator.token_calls == 1


def test_dead_login_returns_normally_and_reports(emulator, deployed, capsys) -> None:
    login(store_from_url(deployed), emulator)
    before = store_from_url(deployed).read_raw()[:2]
    emulator.revoke_all()
    result, error, out = invoke(capsys, "force_refresh.json")
    assert error is None, error
    assert result is not None and result["outcome"] == "reauth_required"
    assert "schwab-tokens login" in result["tokens"][0]["reason"]
    metrics = emf_metrics(out)
    assert metrics["ReauthRequired"] == [1] and metrics["SuccessfulRun"] == [1]
    assert store_from_url(deployed).read_raw()[:2] == before
    assert any(
        r["level"] == "ERROR" and r.get("outcome") == "reauth_required" for r in log_records(out)
    )
    assert_no_secrets(out, secrets_of(emulator))


def test_a_temporary_failure_is_reported_not_raised(emulator, deployed, capsys) -> None:
    """Schwab down: the run says so (result, log, metric) and returns, so Lambda's Errors metric
    and the RefresherErrors alarm stay for what the refresher cannot report itself."""
    login(store_from_url(deployed), emulator)
    before = store_from_url(deployed).read_raw()[:2]
    emulator.set_fault("unavailable")
    result, error, out = invoke(capsys, "force_refresh.json")
    assert error is None and result is not None
    assert result["outcome"] == "failed"
    (token,) = result["tokens"]
    assert token["error"] == "TemporaryFailure" and "503" in token["reason"]
    metrics = emf_metrics(out)
    assert metrics["RefreshFailed"] == [1] and metrics["SuccessfulRun"] == [0]
    assert store_from_url(deployed).read_raw()[:2] == before
    assert_no_secrets(out + json.dumps(result), secrets_of(emulator))


def test_example_consumer_reads_from_memory_when_warm(emulator, deployed, capsys) -> None:
    token = login(store_from_url(deployed), emulator)
    consumer = load_handler("example_consumer")  # module-level TokenReader, as deployed
    calls: list[str] = []
    for service in ("s3", "secretsmanager", "ssm"):
        aws.client(service).meta.events.register(
            "before-call.*.*", lambda event_name, **_: calls.append(event_name)
        )
    first = consumer.lambda_handler(lambda_event("consumer.json"), LambdaContext())
    assert first["fingerprint"] == token.fingerprint
    # The cold start reads the document, and the view beside it (is the login over?).
    assert len(calls) == 2
    second = consumer.lambda_handler(lambda_event("consumer.json"), LambdaContext())
    assert second["fingerprint"] == token.fingerprint
    assert len(calls) == 2  # the warm invocation made no AWS call
