"""The refresher's notifications over a simulated week: the real handler, SNS and SQS on moto's
server over HTTP, S3 behind a proxy that answers a missing object as S3 does without
s3:ListBucket (403), the emulator's clock moving, Schwab going down and its edge answering HTML
400s, the login running out, and the e-mail's login command run as printed.

The topic is subscribed by an SQS queue, so the test reads the messages exactly as an e-mail
subscriber would receive them (subject, body, the ``kind`` attribute).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from devkit import REPO
from devkit.emulator import Emulator
from devkit.user import CLI, follow_authorize, login, login_by_listener, oauth_for
from schwab_tokens import aws, tickets
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.lambdas.refresher import RefreshRunFailed, handle
from schwab_tokens.login_flow import complete_login
from schwab_tokens.oauth import SchwabOAuth, parse_callback
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import accepted, assert_no_secrets, emulator_settings

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
STEP = 1800  # one run every 30 simulated minutes near a change: enough to see it
QUIET_STEP = 4 * 3600  # elsewhere a run every 4 hours (each one refreshes; nothing changes)
#: Elapsed times (from the login) around which the runs come every STEP.
CHANGES = (
    2 * 86400,
    2 * 86400 + 7200,
    5 * 86400,
    5 * 86400 + 3600,
    6 * 86400,
    7 * 86400 - 7200,
    7 * 86400,
)
#: Where the stack keeps the app credentials (CredentialsStore=ParameterStore).
CREDENTIALS = "ssm:/st/credentials"


def next_step(elapsed: float) -> int:
    near = any(change - 2 * 3600 <= elapsed <= change + 2 * 3600 for change in CHANGES)
    return STEP if near else QUIET_STEP


LOGIN_URL = "https://abcdefghij.lambda-url.us-east-1.on.aws/"


def subscribed_queue() -> tuple[str, str]:
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name="schwab-tokens-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    return topic, queue


def received(queue: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    found = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            return found
        for message in batch:
            envelope = json.loads(message["Body"])
            found.append(
                {
                    "subject": envelope.get("Subject"),
                    "message": envelope["Message"],
                    "kind": envelope["MessageAttributes"]["kind"]["Value"],
                    "token": envelope["MessageAttributes"]["token"]["Value"],
                }
            )
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def week(
    s3_without_listbucket: Any, emulator: Emulator, s3_store_url: Callable[..., str]
) -> dict[str, Any]:
    topic, queue = subscribed_queue()
    url = s3_store_url()
    store_credentials(
        CREDENTIALS,
        AppCredentials(emulator.app_key, emulator.app_secret, emulator.callback_url),
    )
    settings = Settings(
        store_url=url,
        api_base=emulator.base_url,
        credentials_secret=CREDENTIALS,
        http_timeout=2,
        http_retries=0,
        topic_arn=topic,
        login_url=LOGIN_URL,
        region="us-east-1",
    )
    oauth = SchwabOAuth(emulator.app_key, emulator.app_secret, base_url=emulator.base_url)
    authorize, state = oauth.authorize_url(emulator.callback_url)
    store = store_from_url(url, settings)
    token = complete_login(
        oauth, store, follow_authorize(authorize), state, emulator.callback_url, now=emulator.now()
    )
    emulator.advance(60)  # runs fall a minute after each half hour of the login
    return {"settings": settings, "queue": queue, "login": token.creation_timestamp}


def run(emulator: Emulator, settings: Settings, *, retried: bool = False) -> str:
    """One scheduled invocation. ``retried``: Lambda delivers the same event again right away,
    as it does when an invocation crashed or timed out after its work was done."""
    try:
        outcome = str(handle(EVENT, settings, clock=emulator.now)["outcome"])
    except RefreshRunFailed:
        outcome = "raised"
    if retried:
        with contextlib.suppress(RefreshRunFailed):
            handle(EVENT, settings, clock=emulator.now)
    return outcome


def test_a_week_of_runs_notifies_each_change_once(
    week: dict[str, Any], emulator: Emulator, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    settings, queue, login = week["settings"], week["queue"], week["login"]
    messages: list[tuple[float, dict[str, Any]]] = []
    outcomes = []
    while emulator.now() < login + 7 * 86400 + 3 * 3600:
        elapsed = emulator.now() - login
        # Schwab is down for two hours on day 2; its edge answers HTML 400s for an hour on day 5.
        if 2 * 86400 <= elapsed < 2 * 86400 + 7200:
            emulator.set_fault("unavailable")
        elif 5 * 86400 <= elapsed < 5 * 86400 + 3600:
            emulator.set_fault("html_400")
        else:
            emulator.clear_faults()
        if 6 * 86400 < elapsed <= 6 * 86400 + STEP:
            # Three refreshers at once (a laptop's watch beside the schedule): one message.
            threads = [threading.Thread(target=run, args=(emulator, settings)) for _ in range(3)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        else:
            # Near every change, each invocation is also retried: still one message.
            outcomes.append(run(emulator, settings, retried=next_step(elapsed) == STEP))
        messages += [(elapsed, m) for m in received(queue)]
        emulator.advance(next_step(elapsed))

    kinds = [m["kind"] for _, m in messages]
    assert kinds == [
        "failing",
        "recovered",
        "failing",  # the edge's HTML 400s: a temporary failure, never "login over"
        "recovered",
        "expiring_24h",
        "expiring_2h",
        "login_required",
    ]
    at = {m["kind"]: elapsed for elapsed, m in messages}  # the last of each kind
    first_failing = next(elapsed for elapsed, m in messages if m["kind"] == "failing")
    first_recovered = next(elapsed for elapsed, m in messages if m["kind"] == "recovered")
    assert 2 * 86400 + 1800 <= first_failing <= 2 * 86400 + 3600
    assert 2 * 86400 + 7200 <= first_recovered <= 2 * 86400 + 7200 + STEP
    assert 5 * 86400 + 1800 <= at["failing"] <= 5 * 86400 + 3600
    assert 5 * 86400 + 3600 <= at["recovered"] <= 5 * 86400 + 3600 + STEP
    assert 6 * 86400 < at["expiring_24h"] <= 6 * 86400 + STEP
    assert 7 * 86400 - 7200 < at["expiring_2h"] <= 7 * 86400 - 7200 + STEP
    assert 7 * 86400 <= at["login_required"] <= 7 * 86400 + STEP
    assert "failed" in outcomes and outcomes[-1] == "reauth_required"
    assert "raised" not in outcomes  # a Schwab outage is the refresher's to report, not an error

    by_kind = {m["kind"]: m for _, m in messages}
    assert by_kind["expiring_24h"]["subject"].startswith("Schwab login 'tokens' ends in ")
    assert by_kind["login_required"]["subject"] == (
        "Schwab login 'tokens' is over: your bots have stopped"
    )
    failing = [m["message"] for _, m in messages if m["kind"] == "failing"]
    assert "503" in failing[0] and "400 without a verdict" in failing[1]
    key = tickets.ticket_key(emulator.app_secret)
    for kind in ("expiring_24h", "expiring_2h", "login_required"):
        link = next(w for w in by_kind[kind]["message"].split() if w.startswith(LOGIN_URL))
        ticket = parse_qs(urlsplit(link).query)["ticket"][0]
        # A working one-time link for the login it warns about, at the time it was sent.
        assert tickets.verify(key, ticket, settings.store_url, login + at[kind]).login == login
    for _, message in messages:
        assert message["token"] == "tokens"
        assert_no_secrets(
            message["subject"] + message["message"],
            emulator.issued_secrets() | {emulator.app_secret},
        )
    logs = caplog.text
    assert "notified expiring_24h" in logs
    assert "ticket=" not in logs  # the link goes to the user, never to the log

    # The 24 h e-mail's command, run as printed on a laptop that has only AWS credentials.
    printed = by_kind["expiring_24h"]["message"].split("Or, on your computer: ", 1)[1]
    command = shlex.split(printed.splitlines()[0])
    assert command[:2] == ["schwab-tokens", "login"] and "--credentials-secret" in command
    laptop = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # Where "AWS" and "Schwab" are in this test: moto's server (S3 through its proxy) and
        # the emulator. Nothing of the app (key, secret, callback) and no region.
        "AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"],
        "AWS_ENDPOINT_URL_S3": os.environ["AWS_ENDPOINT_URL_S3"],
        "SCHWAB_API_BASE": emulator.base_url,
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": str(REPO),
    }
    before = store_from_url(settings.store_url or "", settings).read().token
    relogin = login_by_listener([*CLI, *command[1:]], laptop)
    assert relogin.code == 0, relogin.text
    after = store_from_url(settings.store_url or "", settings).read().token
    assert after.creation_timestamp > before.creation_timestamp  # a new 7-day login
    assert accepted(emulator, after.access_token)
    assert_no_secrets(relogin.text, emulator.issued_secrets() | {emulator.app_secret})


def test_several_tokens_each_get_their_own_message(
    moto_aws: None, emulator: Emulator, s3_store_url: Callable[..., str]
) -> None:
    """Two tokens whose logins ran out: one message each, naming it; only the stack's own token
    (the one the login function serves) carries a login link, the other the CLI command."""
    topic, queue = subscribed_queue()
    own, extra = s3_store_url(), s3_store_url(key="family/tokens.json")
    # Several tokens of one emulated app stand for several apps (Schwab keeps one login per
    # app, so a real deployment gives each token its own app): keep every login alive.
    emulator.configure(one_login_per_app=False)
    settings = emulator_settings(
        emulator, own, http_retries=0, topic_arn=topic, login_url=LOGIN_URL
    ).with_(store_urls=f"own={own},family={extra}")
    for url in (own, extra):
        login(store_from_url(url, settings), emulator)
    emulator.advance(7 * 86400 + 60)
    summary = handle(EVENT, settings, clock=emulator.now)
    assert [t["outcome"] for t in summary["tokens"]] == ["reauth_required"] * 2
    handle(EVENT, settings, clock=emulator.now)  # the same state again: nothing new to say
    inbox = received(queue)
    messages = {m["token"]: m for m in inbox}
    assert len(inbox) == 2 and sorted(messages) == ["family", "own"]
    for name, message in messages.items():
        assert message["kind"] == "login_required"
        assert message["subject"] == f"Schwab login '{name}' is over: your bots have stopped"
    assert f"{LOGIN_URL}start?ticket=" in messages["own"]["message"]
    assert LOGIN_URL not in messages["family"]["message"]
    assert f"schwab-tokens login --store {extra}" in messages["family"]["message"]


def test_a_login_replaced_by_another_tool_is_mailed_as_such(
    moto_aws: None, emulator: Emulator, s3_store_url: Callable[..., str]
) -> None:
    """Schwab keeps one login per app: another tool's login to the same app ends ours with days
    left. The refresher's run mails that cause and its fix, not "your login is over"."""
    topic, queue = subscribed_queue()
    url = s3_store_url()
    settings = emulator_settings(
        emulator, url, http_retries=0, topic_arn=topic, login_url=LOGIN_URL
    )
    login(store_from_url(url, settings), emulator)
    other = oauth_for(emulator)  # schwab-py's easy_client, say, on the same app
    authorize, state = other.authorize_url(emulator.callback_url)
    other.exchange_code(parse_callback(follow_authorize(authorize), state), emulator.callback_url)
    emulator.advance(1200)  # the access token is due: the run calls Schwab
    summary = handle(EVENT, settings, clock=emulator.now)
    assert summary["outcome"] == "reauth_required", summary
    (message,) = received(queue)
    assert message["kind"] == "login_required"
    assert message["subject"] == "Schwab login 'tokens' was replaced by another login: log in again"
    assert "another login to this app replaced this one" in message["message"]
    assert "one login per app" in message["message"]
    assert LOGIN_URL in message["message"]  # the phone link to log in again
    handle(EVENT, settings, clock=emulator.now)
    assert received(queue) == []  # said once


def test_a_false_login_over_is_taken_back_by_the_next_good_run(
    moto_aws: None, emulator: Emulator, s3_store_url: Callable[..., str]
) -> None:
    """A dead-token verdict that proves wrong (Schwab answers invalid_grant once, then refreshes
    the same login): the next good run mails "recovered" and clears the mark, so the login's
    real end still gets its warnings."""
    topic, queue = subscribed_queue()
    url = s3_store_url()
    settings = emulator_settings(
        emulator, url, http_retries=0, topic_arn=topic, login_url=LOGIN_URL
    )
    login(store_from_url(url, settings), emulator)
    emulator.set_fault("invalid_grant")
    emulator.advance(1200)
    assert handle(EVENT, settings, clock=emulator.now)["outcome"] == "reauth_required"
    emulator.clear_faults()
    emulator.advance(300)
    assert handle(EVENT, settings, clock=emulator.now)["outcome"] == "refreshed"
    emulator.advance(6 * 86400 - 1500 + 60)  # a day before the login ends
    assert handle(EVENT, settings, clock=emulator.now)["outcome"] == "refreshed"
    kinds = [m["kind"] for m in received(queue)]
    assert kinds == ["login_required", "recovered", "expiring_24h"]
