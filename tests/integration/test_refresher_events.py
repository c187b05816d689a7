"""The refresher handler's edges: hostile events, configuration errors, a forced event retried by
Lambda, and one token's unexpected exception among several.

The real handler (functions/refresher/app.py, powertools decorators included) runs in-process,
configured by its environment as the stack sets it, against S3 on moto and the emulator; faults
come from botocore hooks on the package's own client (nothing of ours is patched).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from devkit.emulator import Emulator
from devkit.handlers import load_handler
from devkit.user import login
from schwab_tokens import aws
from schwab_tokens.errors import SchwabTokensError, UsageError
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import LambdaContext, lambda_event, refresher_env

SCHEDULED = {"source": "aws.events", "time": "2026-01-05T12:00:00Z", "detail": {}}


@pytest.fixture
def two_tokens(
    moto_aws: None,
    emulator: Emulator,
    s3_store_url: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[Settings, list[str]]:
    urls = [s3_store_url(), s3_store_url()]
    # Several tokens of one emulated app stand for several apps (Schwab keeps one login per
    # app, so a real deployment gives each token its own app): keep every login alive.
    emulator.configure(one_login_per_app=False)
    for url in urls:
        login(store_from_url(url, Settings()), emulator)
    env = refresher_env(
        emulator,
        urls[0],
        TOKEN_STORE_URLS=f"first={urls[0]},second={urls[1]}",
        SCHWAB_APP_KEY=emulator.app_key,
        SCHWAB_APP_SECRET=emulator.app_secret,
        SCHWAB_TOKENS_DETAILED_METRICS="true",
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env(), urls


def handle(event: dict[str, Any], context: LambdaContext | None = None) -> dict[str, Any]:
    """One invocation of the deployed handler, as Lambda makes it (a cold start each time);
    ``context``: the same one again for Lambda's retry of that invocation."""
    handler = load_handler("refresher")
    result: dict[str, Any] = handler.lambda_handler(event, context or LambdaContext())
    return result


def failed_run(match: str) -> Any:
    """The handler raised after reporting (``RefreshRunFailed``: matched by name, since each cold
    start imports the handler afresh)."""
    return pytest.raises(SchwabTokensError, match=match)


def json_lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


def bucket_hook(url: str, operation: str, raise_: BaseException) -> Callable[[], None]:
    """Make ``operation`` on the token object of ``url`` raise (through the package's own
    client; not on its lease or notes); returns the undo."""
    s3 = aws.client("s3")
    bucket, _, key = url.removeprefix("s3://").partition("/")

    def hook(params: dict[str, Any], **_: Any) -> None:
        if params.get("Bucket") == bucket and params.get("Key") == key:
            raise raise_

    event = f"before-parameter-build.s3.{operation}"
    s3.meta.events.register_first(event, hook)
    return lambda: s3.meta.events.unregister(event, hook)


def test_the_saved_force_event_refreshes_on_any_date(
    two_tokens: tuple[Settings, list[str]], emulator: Emulator
) -> None:
    """events/force_refresh.json, invoked as the docs say, months after it was written: every
    invocation refreshes every token (a saved event has no time that could make it a no-op)."""
    emulator.reset_counters()
    for _ in range(2):
        summary = handle(lambda_event("force_refresh.json"))
        assert [t["outcome"] for t in summary["tokens"]] == ["refreshed", "refreshed"]
    assert emulator.calls_by_grant.get("refresh_token") == 4


def test_an_old_scheduled_event_time_plays_no_part(
    two_tokens: tuple[Settings, list[str]], emulator: Emulator
) -> None:
    emulator.reset_counters()
    for when in ("2026-01-05T12:00:00Z", "yesterday", 1767614400):
        summary = handle({**SCHEDULED, "time": when, "detail": {"force": True}})
        assert summary["outcome"] == "refreshed"
    assert emulator.calls_by_grant.get("refresh_token") == 6


@pytest.mark.parametrize("force", ["true", 1, "yes", "false", [True], {"on": True}])
def test_force_must_be_a_json_boolean(
    two_tokens: tuple[Settings, list[str]], force: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings, _ = two_tokens
    with pytest.raises(UsageError, match="JSON boolean"):
        handle({"force": force})
    (line,) = [r for r in json_lines(capsys.readouterr().out) if r.get("level") == "ERROR"]
    assert line["outcome"] == "failed" and "JSON boolean" in line["reason"]


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"TOKEN_STORE_URL": None}, "TOKEN_STORE_URL"),
        ({"REFRESH_MARGIN_SECONDS": "NaN"}, "REFRESH_MARGIN_SECONDS"),  # no settings at all
    ],
)
def test_a_configuration_error_logs_one_line_and_the_failure_metric(
    moto_aws: None,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    change: dict[str, str | None],
    named: str,
) -> None:
    env = refresher_env(emulator, "unused", SCHWAB_TOKENS_DETAILED_METRICS="true")
    for name, value in {**env, **change}.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with pytest.raises(UsageError, match=named):
        handle({})
    lines = json_lines(capsys.readouterr().out)
    errors = [r for r in lines if r.get("level") == "ERROR"]
    assert len(errors) == 1 and errors[0]["error"] == "UsageError"
    emf = [r for r in lines if "_aws" in r]
    assert emf, "no EMF document"
    assert emf[-1]["RefreshFailed"] in (1, [1])
    assert emf[-1]["SuccessfulRun"] in (0, [0])


def test_a_retried_forced_event_does_not_force_again_what_it_already_refreshed(
    two_tokens: tuple[Settings, list[str]], emulator: Emulator
) -> None:
    """Lambda retries a failed asynchronous invocation with the same event and the same
    request id: what its first attempt refreshed is not refreshed again."""
    settings, urls = two_tokens
    forced = lambda_event("force_refresh.json")
    invocation = LambdaContext()
    undo = bucket_hook(urls[1], "PutObject", RuntimeError("the second store is broken"))
    try:
        emulator.reset_counters()
        with failed_run("refresh failed for second"):
            handle(forced, invocation)
        assert emulator.calls_by_grant.get("refresh_token") == 2  # both tried once
        first = store_from_url(urls[0], settings).read().token
        # Lambda retries the failed invocation with the same event.
        with failed_run("refresh failed for second"):
            handle(forced, invocation)
    finally:
        undo()
    assert store_from_url(urls[0], settings).read().token == first  # not forced again
    assert emulator.calls_by_grant.get("refresh_token") == 3  # only the failed one again
    handle(forced, invocation)  # the store works again: the retry refreshes the second one
    assert emulator.calls_by_grant.get("refresh_token") == 4
    handle(forced)  # a new invocation forces both again
    assert emulator.calls_by_grant.get("refresh_token") == 6


def test_one_tokens_unexpected_exception_never_silences_the_others(
    two_tokens: tuple[Settings, list[str]], emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    _settings, urls = two_tokens
    undo = bucket_hook(urls[0], "GetObject", ValueError("a bug somewhere"))
    try:
        with failed_run("refresh failed for first"):
            handle(lambda_event("force_refresh.json"))
    finally:
        undo()
    lines = json_lines(capsys.readouterr().out)
    by_token = {r["token"]: r for r in lines if r.get("token") and "outcome" in r}
    assert by_token["first"]["outcome"] == "failed"
    assert by_token["first"]["error"] == "UnexpectedError"
    assert "a bug somewhere" not in by_token["first"]["reason"]  # only the kind is shown
    assert by_token["second"]["outcome"] == "refreshed"
    per_token = [r for r in lines if "_aws" in r and r.get("Token") == "second"]
    assert per_token, "the other token's metrics were still emitted"
