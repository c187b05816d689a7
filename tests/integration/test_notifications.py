"""The refresher's notifications over a simulated week: the real handler, SNS and SQS on moto, the
emulator's clock moving, Schwab going down and coming back, the login running out.

The topic is subscribed by an SQS queue, so the test reads the messages exactly as an e-mail
subscriber would receive them (subject, body, the ``kind`` attribute).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from schwab_tokens import aws, tickets
from schwab_tokens.lambdas.refresher import RefreshRunFailed, handle
from schwab_tokens.login import complete_login
from schwab_tokens.oauth import SchwabOAuth
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.emulator import Emulator
from tests.helpers import assert_no_secrets, emulator_settings, follow_authorize, login

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
STEP = 1800  # one run every 30 simulated minutes near a change: enough to see it
QUIET_STEP = 4 * 3600  # elsewhere a run every 4 hours (each one refreshes; nothing changes)
#: Elapsed times (from the login) around which the runs come every STEP.
CHANGES = (2 * 86400, 2 * 86400 + 7200, 6 * 86400, 7 * 86400 - 7200, 7 * 86400)


def next_step(elapsed: float) -> int:
    near = any(change - 3 * 3600 <= elapsed <= change + 3 * 3600 for change in CHANGES)
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
def week(moto_aws: None, emulator: Emulator, s3_store_url: Callable[..., str]) -> dict[str, Any]:
    topic, queue = subscribed_queue()
    url = s3_store_url()
    settings = emulator_settings(
        emulator, url, http_timeout=2, http_retries=0, topic_arn=topic, login_url=LOGIN_URL
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
    week: dict[str, Any], emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    settings, queue, login = week["settings"], week["queue"], week["login"]
    messages: list[tuple[float, dict[str, Any]]] = []
    outcomes = []
    while emulator.now() < login + 7 * 86400 + 3 * 3600:
        elapsed = emulator.now() - login
        # Schwab is down for two hours on day 2.
        if 2 * 86400 <= elapsed < 2 * 86400 + 7200:
            emulator.set_fault("unavailable")
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
    assert kinds == ["failing", "recovered", "expiring_24h", "expiring_2h", "login_required"]
    at = {m["kind"]: elapsed for elapsed, m in messages}
    assert 2 * 86400 + 1800 <= at["failing"] <= 2 * 86400 + 3600
    assert 2 * 86400 + 7200 <= at["recovered"] <= 2 * 86400 + 7200 + STEP
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
    assert "503" in by_kind["failing"]["message"]
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


def test_several_tokens_each_get_their_own_message(
    moto_aws: None, emulator: Emulator, s3_store_url: Callable[..., str]
) -> None:
    """Two tokens whose logins ran out: one message each, naming it; only the stack's own token
    (the one the login function serves) carries a login link, the other the CLI command."""
    topic, queue = subscribed_queue()
    own, extra = s3_store_url(), s3_store_url(key="family/tokens.json")
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
