"""Alerts without the network: which URLs Apprise takes and how they are shown, the chat text a
notice becomes, and what the notifier makes of every shape of SNS record (its event is outside
input: a record that is not ours, odd fields, SNS's largest message, a CloudWatch alarm)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schwab_tokens import alert_urls
from schwab_tokens.errors import ConfigurationError, Outcome, UsageError
from schwab_tokens.lambdas.notifier import MAX_MESSAGE, from_record
from schwab_tokens.notify import Kind, Notice, compose, trial_notice
from schwab_tokens.policy import RunResult
from schwab_tokens.token import Token
from tests.fakes import token_at

T0 = 1_750_000_000
DAY = 86400

#: One URL of each service the docs name, with made-up keys long enough to be recognised.
SERVICES = {
    "Telegram": "tgram://123456789:AAHsecretBOTtokenVALUE0123456789abcd/987654321",
    "Discord": "discord://4174216298/JHMHI8qBsecretWEBHOOKtokenO5U711o3dV",
    "Slack": "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlsecretSLACKkcOXrIdevi7FQ/#alerts",
    "ntfy": "ntfy://secret-topic-of-my-phone-7f3a9c",
    "Pushover": "pover://uQiRzpo4DXghDmrsecretUSERkey27cmVRsG@azGDORePK8gMasecretAPPyEEuzJnyUi",
    "E-Mail": "mailto://trader:secretMAILpassword@gmail.com",
}
SECRET_PARTS = (
    "secretBOTtoken",
    "secretWEBHOOK",
    "secretSLACK",
    "secret-topic",
    "secretUSER",
    "secretAPP",
    "secretMAIL",
    "987654321",
)


@pytest.mark.parametrize("service", list(SERVICES))
def test_a_url_of_each_named_service_parses_and_is_shown_without_its_secret(service: str) -> None:
    url = SERVICES[service]
    assert alert_urls.check(f"  {url}\n") == url
    shown = alert_urls.describe(url)
    assert shown.startswith(service)
    assert not [part for part in SECRET_PARTS if part in shown], shown


def test_plain_servers_are_shown_with_their_host_and_nothing_more() -> None:
    assert alert_urls.describe("json://user:pw-secret@127.0.0.1:8080/hook-secret") == (
        "JSON (127.0.0.1)"
    )
    assert (
        alert_urls.describe("mailto://trader:secretMAILpassword@gmail.com") == "E-Mail (gmail.com)"
    )


@pytest.mark.parametrize(
    "url",
    [
        "tgram://not-a-bot-token-secretVALUE",
        "nosuchservice://secretVALUE@example.com/secretVALUE",
        "secretVALUE",
        "discord://secretVALUE",
        "tgram://123456789:AAHsecretVALUE 0123/98",
        "json://" + "secretVALUE" * 300,
    ],
)
def test_a_url_apprise_cannot_use_is_refused_without_echoing_it(url: str) -> None:
    with pytest.raises(UsageError) as refused:
        alert_urls.check(url)
    assert "secretVALUE" not in str(refused.value)
    assert "docs/alerts.md" in str(refused.value) or "paste it again" in str(refused.value)


def _result(outcome: str = "still_fresh", now: float = T0 + 6 * DAY + 60) -> RunResult:
    token: Token = token_at(now, login=T0)
    return RunResult("s3://b/k", Outcome(outcome), token=token, checked_at=now)


def test_a_chat_text_is_the_subject_one_line_and_the_link_never_a_token() -> None:
    now = T0 + 6 * DAY + 60
    link = "https://abc.lambda-url.us-east-1.on.aws/start?ticket=TICKET.MAC"
    run = _result(now=now)
    notice = compose(Kind.EXPIRING_24H, "family", "s3://b/k", run, now, link)
    assert notice.subject == "Schwab login 'family' ends in 23 h: log in again"
    line, shown_link = notice.chat().split("\n")
    assert line.startswith("The login ends at ") and "UTC" in line
    assert shown_link == link
    assert run.token is not None
    for secret in (run.token.access_token, run.token.refresh_token):
        assert secret not in notice.chat() and secret not in notice.to_json()
    # Without a link, the command to run is the last line.
    without = compose(Kind.EXPIRING_24H, "family", "s3://b/k", run, now, None)
    assert without.chat().endswith("schwab-tokens login --store s3://b/k")
    assert len(notice.chat()) <= 900


def test_the_e_mail_is_unchanged_by_the_chat_parts() -> None:
    now = T0 + 6 * DAY + 60
    link = "https://abc.lambda-url.us-east-1.on.aws/start?ticket=TICKET.MAC"
    notice = compose(Kind.EXPIRING_24H, "family", "s3://b/k", _result(now=now), now, link)
    assert notice.message.startswith("Your Schwab login for the token 'family' ends at ")
    assert notice.message.endswith(
        f"Log in again now from your phone: {link}\n(the link works once, for 24 hours)\n\n"
        "Or, on your computer: schwab-tokens login --store s3://b/k"
    )


@pytest.mark.parametrize("kind", list(Kind))
def test_every_notice_rides_as_json_and_comes_back_the_same(kind: Kind) -> None:
    now = T0 + 7 * DAY + 60
    outcome = {Kind.LOGIN_REQUIRED: "reauth_required", Kind.FAILING: "failed"}.get(kind)
    notice = compose(kind, "family", "s3://b/k", _result(outcome or "refreshed", now), now, None)
    back = Notice.from_json(notice.to_json())
    assert (back.kind, back.subject, back.chat()) == (notice.kind, notice.subject, notice.chat())
    assert notice.attributes()["kind"] == kind and notice.attributes()["token"] == "family"


def test_the_test_notice_says_what_it_is() -> None:
    notice = trial_notice("family", "schwab-tokens alerts test on laptop")
    assert Notice.from_json(notice.to_json()).kind == "test"
    assert notice.subject == "Schwab token 'family': test alert"
    assert "Nothing to do" in notice.chat()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        "[]",
        '{"kind": "expiring_24h"}',
        '{"kind": "bogus", "subject": "s"}',
        '{"kind": "failing", "subject": 5}',
        '{"kind": "failing", "subject": "s", "link": "' + "x" * 5000 + '"}',
        '{"kind": "failing", "subject": "s", "line": NaN}',
    ],
)
def test_a_notice_attribute_that_is_not_ours_is_refused(text: str) -> None:
    with pytest.raises(ValueError) as refused:
        Notice.from_json(text)
    assert "xxxx" not in str(refused.value)


# -- the notifier's records ------------------------------------------------------------------------
def record(message: str, subject: str | None = None, **attributes: str) -> dict[str, Any]:
    """An SNS record as Lambda hands it to a subscribed function."""
    sns: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": "95df01b4-ee98-5cb9-9903-4c221d41eb5e",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:st-AlarmTopic-1",
        "Message": message,
        "Timestamp": "2026-12-01T00:00:00.000Z",
        "MessageAttributes": {
            name: {"Type": "String", "Value": value} for name, value in attributes.items()
        },
    }
    if subject is not None:
        sns["Subject"] = subject
    return {"EventSource": "aws:sns", "EventVersion": "1.0", "Sns": sns}


def test_a_notice_record_becomes_its_chat_text() -> None:
    notice = trial_notice("family", "a test")
    text = from_record(record(notice.message, notice.subject, **notice.attributes()))
    assert text is not None
    assert (text.title, text.body) == (notice.subject, notice.chat())


ALARM = {
    "AlarmName": "st-RefresherErrors",
    "AlarmDescription": "The refresher Lambda failed in each of the last three 5-minute periods",
    "AWSAccountId": "123456789012",
    "NewStateValue": "ALARM",
    "NewStateReason": "Threshold Crossed: 3 out of the last 3 datapoints [1.0 (01/12/26 00:10:00)]"
    " were greater than or equal to the threshold (1.0).\nSecond line",
    "StateChangeTime": "2026-12-01T00:15:00.000+0000",
    "Region": "US East (N. Virginia)",
    "OldStateValue": "OK",
    "Trigger": {"MetricName": "Errors", "Namespace": "AWS/Lambda"},
}


def test_a_cloudwatch_alarm_is_forwarded_short() -> None:
    text = from_record(
        record(json.dumps(ALARM), 'ALARM: "st-RefresherErrors" in US East (N. Virginia)')
    )
    assert text is not None
    assert text.title == "ALARM: st-RefresherErrors"
    assert text.body.startswith("Threshold Crossed: 3 out of the last 3 datapoints")
    assert "Second line" not in text.body
    ok = from_record(record(json.dumps({**ALARM, "NewStateValue": "OK"})))
    assert ok is not None and ok.title == "OK: st-RefresherErrors"


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "text",
        [],
        {},
        {"EventSource": "aws:sqs", "Sns": {"Message": "m"}},
        {"EventSource": "aws:sns"},
        {"EventSource": "aws:sns", "Sns": "m"},
        {"EventSource": "aws:sns", "Sns": {"Message": 5}},
        {"EventSource": "aws:sns", "Sns": {"Message": "x" * (MAX_MESSAGE + 1)}},
    ],
)
def test_a_record_that_is_not_an_sns_notification_is_skipped(bad: Any) -> None:
    assert from_record(bad) is None


@pytest.mark.parametrize(
    ("message", "subject", "attributes", "title", "body"),
    [
        ("hello\nworld", "Hi", {}, "Hi", "hello"),
        ("", None, {}, "schwab-tokens", "(no text)"),
        ("x" * MAX_MESSAGE, None, {}, "schwab-tokens", "x" * 297 + "..."),
        ('{"AlarmName": 5}', "S", {}, "S", '{"AlarmName": 5}'),
        ("[1, 2]", None, {}, "schwab-tokens", "[1, 2]"),
        ("the e-mail", "Subject", {"notice": "not json"}, "Subject", "the e-mail"),
        ("m", "\n\n  spaced   subject \n", {}, "spaced subject", "m"),
    ],
)
def test_any_other_message_is_forwarded_as_its_subject_and_first_line(
    message: str, subject: str | None, attributes: dict[str, str], title: str, body: str
) -> None:
    text = from_record(record(message, subject, **attributes))
    assert text is not None
    assert (text.title, text.body) == (title, body)


def test_a_notice_attribute_of_another_type_is_not_read() -> None:
    notice = trial_notice("family", "a test")
    raw = record("the e-mail", "Subject")
    raw["Sns"]["MessageAttributes"]["notice"] = {"Type": "Binary", "Value": notice.to_json()}
    text = from_record(raw)
    assert text is not None and text.body == "the e-mail"


# -- where the URLs are kept ------------------------------------------------------------------
@pytest.mark.parametrize(
    "stored",
    [
        "not json",
        '{"urls": []}',
        "[1]",
        '[""]',
        json.dumps(["json://h/x"] * (alert_urls.MAX_URLS + 1)),
        json.dumps(["json://h/" + "x" * alert_urls.MAX_URL_LENGTH]),
    ],
)
def test_a_stored_list_that_is_not_a_list_of_urls_is_named_with_the_fix(
    stored: str, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.json.alerts"
    path.write_text(stored)
    with pytest.raises(ConfigurationError) as refused:
        alert_urls.read_urls(str(path))
    assert "schwab-tokens alerts add" in str(refused.value)
    assert str(path) in str(refused.value)


def test_the_local_file_is_private_and_read_back(tmp_path: Path) -> None:
    path = alert_urls.file_beside(tmp_path / "tokens.json")
    assert path.name == "tokens.json.alerts"
    assert alert_urls.read_urls(str(path)) is None
    alert_urls.write_urls(str(path), [SERVICES["ntfy"]])
    assert path.stat().st_mode & 0o777 == 0o600
    assert alert_urls.read_urls(str(path)) == [SERVICES["ntfy"]]


@pytest.mark.parametrize(
    "event", [None, "text", [], {}, {"Records": "x"}, {"Records": [None, {"EventSource": "x"}]}]
)
def test_an_event_with_nothing_to_forward_reads_no_urls_and_sends_nothing(event: Any) -> None:
    from schwab_tokens.lambdas.notifier import handle
    from schwab_tokens.settings import Settings

    # No parameter is configured: reading the URLs would fail, so none is read.
    assert handle(event, Settings()) == {"records": []}
