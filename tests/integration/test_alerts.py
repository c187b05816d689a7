"""Alerts delivered for real: Apprise's own code sends ``json://`` and ``form://`` notifications
to receivers on 127.0.0.1 (``tests/receiver.py``), nothing patched.

- the stack's path: the refresher's notice is published to the topic on moto's server, an SQS
  subscription (raw delivery off) shows the exact message SNS delivers, and the notifier's
  handler gets it in the event shape SNS gives Lambda (moto runs no Lambda without Docker:
  the event is built from what SNS delivered to SQS, which has the same fields);
- ``watch`` (a subprocess) with ``--alert json://...`` and a local alerts file;
- one failing URL (a closed port) does not stop a good one, and the log names the service,
  never the URL;
- ``schwab-tokens alerts add|list|remove|test`` against a stack on moto and against a file.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.handlers import load_handler
from devkit.user import CLI, cli_env, login, run_cli
from schwab_tokens import alert_urls, aws
from schwab_tokens.lambdas.refresher import handle as refresher
from schwab_tokens.notify import trial_notice
from schwab_tokens.stores import store_from_url
from tests.helpers import (
    LambdaContext,
    assert_no_secrets,
    emulator_settings,
    log_records,
    make_token,
    secrets_of,
)
from tests.receiver import Receiver

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
LOGIN_URL = "https://abcdefghij.lambda-url.us-east-1.on.aws/"
STACK = "st"
PARAMETER = f"/{STACK}/alerts"
#: A URL's secret parts: never in a log or an answer.
SECRET = "s3cr3t-webhook-key"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as found:
        yield found


def closed_url() -> str:
    """A JSON URL nobody listens on, carrying a password and a secret path."""
    return f"json://bot:{SECRET}@127.0.0.1:{free_port()}/{SECRET}"


def test_a_notice_reaches_json_and_form_receivers(receiver: Receiver) -> None:
    notice = trial_notice("family", "a test")
    results = alert_urls.send([receiver.json_url(), receiver.form_url()], notice)
    assert [(r.service, r.ok, r.detail) for r in results] == [
        ("JSON (127.0.0.1)", True, "delivered"),
        ("Form (127.0.0.1)", True, "delivered"),
    ]
    by_path = {r.path: r for r in receiver.wait_for(2)}
    assert by_path["/hook"].content_type.startswith("application/json")
    assert by_path["/form"].content_type.startswith("application/x-www-form-urlencoded")
    for received in by_path.values():
        assert received.title == "Schwab token 'family': test alert"
        assert received.message == "A test from a test: your alerts reach you. Nothing to do."


def test_a_refusing_service_is_reported_with_its_answer(receiver: Receiver) -> None:
    receiver.status = 403
    (result,) = alert_urls.send([receiver.json_url(SECRET)], trial_notice("family", "a test"))
    assert not result.ok
    assert "403" in result.detail and SECRET not in result.detail


# -- the stack's path ------------------------------------------------------------------------
def subscribed_queue() -> tuple[str, str]:
    sns, sqs = aws.client("sns"), aws.client("sqs")
    topic = sns.create_topic(Name=f"{STACK}-AlarmTopic")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    return topic, queue


def delivered(queue: str) -> list[dict[str, Any]]:
    """What SNS delivered to the queue (raw delivery off: SNS's JSON envelope)."""
    sqs = aws.client("sqs")
    found = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return found


def lambda_event(envelope: dict[str, Any], topic: str) -> dict[str, Any]:
    """The event SNS gives a subscribed Lambda for the same message: the same fields, in a
    record (Lambda's spelling of the two URL fields differs from the HTTP/SQS envelope's)."""
    sns = {k: v for k, v in envelope.items() if k not in ("SigningCertURL", "UnsubscribeURL")}
    sns["SigningCertUrl"] = envelope["SigningCertURL"]
    sns["UnsubscribeUrl"] = envelope["UnsubscribeURL"]
    sns.setdefault("MessageAttributes", {})
    return {
        "Records": [
            {
                "EventSource": "aws:sns",
                "EventVersion": "1.0",
                "EventSubscriptionArn": f"{topic}:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
                "Sns": sns,
            }
        ]
    }


@pytest.fixture
def notifier_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The notifier function's environment as the stack sets it."""
    for name, value in {
        "SCHWAB_TOKENS_ALERTS_PARAMETER": PARAMETER,
        "POWERTOOLS_SERVICE_NAME": "schwab-tokens",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": f"{STACK}-NotifierFunction",
    }.items():
        monkeypatch.setenv(name, value)


def test_the_refreshers_notice_reaches_the_phone_through_the_topic_and_the_notifier(
    aws_endpoint: str,
    emulator: Emulator,
    s3_store_url: Callable[..., str],
    receiver: Receiver,
    notifier_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic, queue = subscribed_queue()
    url = s3_store_url()
    settings = emulator_settings(
        emulator, url, http_retries=0, topic_arn=topic, login_url=LOGIN_URL
    )
    login(store_from_url(url, settings), emulator)
    alert_urls.write_urls(
        alert_urls.SSM_PREFIX + PARAMETER, [receiver.json_url(), receiver.form_url()]
    )
    emulator.advance(6 * 86400 + 60)  # the login ends in less than a day
    refresher(EVENT, settings, clock=emulator.now)

    (envelope,) = delivered(queue)
    # What e-mail subscribers get is the e-mail, unchanged; the chat's parts ride beside it.
    assert envelope["Subject"] == "Schwab login 'tokens' ends in 23 h: log in again"
    assert envelope["Message"].startswith("Your Schwab login for the token 'tokens' ends at ")
    assert envelope["MessageAttributes"]["kind"] == {"Type": "String", "Value": "expiring_24h"}
    assert set(envelope["MessageAttributes"]) == {"kind", "token", "notice"}
    assert_no_secrets(json.dumps(envelope), secrets_of(emulator))  # the notice carries no token

    handler = load_handler("notifier")
    capsys.readouterr()
    summary = handler.lambda_handler(lambda_event(envelope, topic), LambdaContext())
    assert [r["ok"] for r in summary["records"][0]["results"]] == [True, True]
    for received in receiver.wait_for(2):
        assert received.title == envelope["Subject"]
        line, link = received.message.split("\n")
        assert line.startswith("The login ends at ") and line.endswith("get no access token.")
        assert link.startswith(f"{LOGIN_URL}start?ticket=")  # the one-tap phone login
        assert link in envelope["Message"]  # the same link the e-mail carries
        assert_no_secrets(received.raw.decode(), secrets_of(emulator))
    logs = capsys.readouterr().out
    assert "delivered to 2 of 2 alert URLs" in logs
    assert "ticket=" not in logs  # the link goes to the user, never to the log


def test_one_failing_url_does_not_stop_a_good_one_and_the_log_names_only_the_service(
    moto_aws: None,
    receiver: Receiver,
    notifier_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alert_urls.write_urls(alert_urls.SSM_PREFIX + PARAMETER, [closed_url(), receiver.json_url()])
    notice = trial_notice("family", "a test")
    event = {
        "Records": [
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Message": notice.message,
                    "Subject": notice.subject,
                    "MessageAttributes": {
                        k: {"Type": "String", "Value": v} for k, v in notice.attributes().items()
                    },
                },
            }
        ]
    }
    handler = load_handler("notifier")
    capsys.readouterr()
    summary = handler.lambda_handler(event, LambdaContext())  # one URL took it: no error
    assert [r["ok"] for r in summary["records"][0]["results"]] == [False, True]
    (received,) = receiver.wait_for(1)
    assert received.title == notice.subject
    logs = capsys.readouterr().out
    (failure,) = [r for r in log_records(logs) if r["level"] == "ERROR"]
    assert failure["message"].startswith("alert to JSON (127.0.0.1) (URL 1) failed: ")
    assert failure["alert_service"] == "JSON (127.0.0.1)" and failure["alert_url"] == 1
    assert SECRET not in logs and "bot:" not in logs

    # Every URL failing: the invocation fails (Lambda retries it, its Errors metric counts it).
    alert_urls.write_urls(alert_urls.SSM_PREFIX + PARAMETER, [closed_url(), closed_url()])
    aws.reset_clients()  # a new container: the URLs are cached for a minute in a warm one
    handler = load_handler("notifier")  # a cold start: its modules (and error classes) anew
    with pytest.raises(handler.handle.__globals__["NothingDelivered"]) as failed:
        handler.lambda_handler(event, LambdaContext())
    assert "reached none of the 2 alert URLs" in str(failed.value)
    assert SECRET not in capsys.readouterr().out


def test_a_cloudwatch_alarm_is_forwarded_and_a_foreign_record_skipped(
    moto_aws: None,
    receiver: Receiver,
    notifier_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    alert_urls.write_urls(alert_urls.SSM_PREFIX + PARAMETER, [receiver.form_url()])
    alarm = {
        "AlarmName": f"{STACK}-RefresherNotRunning",
        "NewStateValue": "ALARM",
        "NewStateReason": "Threshold Crossed: no datapoints were received for 1 period",
        "OldStateValue": "OK",
    }
    event = {
        "Records": [
            {"EventSource": "aws:sqs", "body": "not ours"},
            {
                "EventSource": "aws:sns",
                "Sns": {
                    "Message": json.dumps(alarm),
                    "Subject": f'ALARM: "{STACK}-RefresherNotRunning" in US East (N. Virginia)',
                    "MessageAttributes": {},
                },
            },
        ]
    }
    load_handler("notifier").lambda_handler(event, LambdaContext())
    (received,) = receiver.wait_for(1)
    assert received.title == f"ALARM: {STACK}-RefresherNotRunning"
    assert received.message == "Threshold Crossed: no datapoints were received for 1 period"
    assert "record 1 is not an SNS notification: skipped" in capsys.readouterr().out


def test_the_notifiers_own_alarm_is_left_to_the_email(
    moto_aws: None, receiver: Receiver, notifier_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Sent to URLs that fail, the notifier's own alarm would fail it again and keep itself
    going, a message every state change; it goes by e-mail only, the others still go out."""
    alert_urls.write_urls(alert_urls.SSM_PREFIX + PARAMETER, [receiver.form_url()])

    def record(name: str, state: str) -> dict[str, Any]:
        alarm = {"AlarmName": name, "NewStateValue": state, "NewStateReason": "why"}
        return {"EventSource": "aws:sns", "Sns": {"Message": json.dumps(alarm)}}

    event = {
        "Records": [
            record(f"{STACK}-NotifierErrors", "ALARM"),
            record(f"{STACK}-NotifierErrors", "OK"),
            record(f"{STACK}-RefresherErrors", "ALARM"),
        ]
    }
    load_handler("notifier").lambda_handler(event, LambdaContext())
    (received,) = receiver.wait_for(1)
    assert received.title == f"ALARM: {STACK}-RefresherErrors"
    assert capsys.readouterr().out.count("the notifier's own alarm: left to the e-mail") == 2


def test_the_own_alarm_of_a_stack_with_a_long_name_is_left_to_the_email(
    moto_aws: None,
    receiver: Receiver,
    notifier_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stack's name may have 128 characters: its alarm is known by its whole name, not the
    shortened one the log shows."""
    stack = "s" * 120
    monkeypatch.setenv("SCHWAB_TOKENS_ALERTS_PARAMETER", f"/{stack}/alerts")
    alert_urls.write_urls(alert_urls.SSM_PREFIX + f"/{stack}/alerts", [receiver.form_url()])
    alarm = {"AlarmName": f"{stack}-NotifierErrors", "NewStateValue": "ALARM"}
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(alarm)}}]}
    assert load_handler("notifier").lambda_handler(event, LambdaContext()) == {"records": []}
    assert "the notifier's own alarm: left to the e-mail" in capsys.readouterr().out


def test_a_notifier_without_urls_says_how_to_add_one(
    moto_aws: None, notifier_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """Deployed before `alerts add`: the alarms' first moves to OK reach it. It says how to add
    a URL and ends well: a failure would be retried and fire its own errors alarm."""
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": "m"}}]}
    assert load_handler("notifier").lambda_handler(event, LambdaContext()) == {"records": []}
    logged = capsys.readouterr().out
    assert "1 message(s) not forwarded" in logged
    assert "schwab-tokens alerts add --stack st" in logged


# -- watch -------------------------------------------------------------------------------------
def test_watch_sends_the_notice_to_its_alert_urls(
    emulator: Emulator, receiver: Receiver, tmp_path: Path
) -> None:
    """A login six and a half days old: watch's first round warns the --alert URL and the
    local alerts file's URL (written by `alerts add`, the URL read from stdin)."""
    path = tmp_path / "tokens.json"
    now = time.time()
    token = make_token("watch", now=now)
    token = type(token)(int(now - 6.5 * 86400), token.token)
    store_from_url(str(path)).write(token, None)
    env = cli_env(emulator)
    added = run_cli(["alerts", "add", "--store", str(path)], env, stdin=receiver.form_url())
    assert added.code == 0, added.text
    assert "Form (127.0.0.1)" in added.out
    watch = _start_watch(path, env, ["--alert", receiver.json_url()])
    said = []
    try:
        assert watch.stdout is not None
        for line in watch.stdout:  # until watch says it has sent (no sleeping)
            said.append(line)
            if line.startswith("alerted "):
                break
    finally:
        watch.send_signal(signal.SIGTERM)
        out, err = watch.communicate(timeout=30)
    out = "".join(said) + out
    assert watch.returncode == 0, out + err
    assert "alerted expiring_24h for tokens to 2 of 2 URL(s)" in out
    by_path = {r.path: r for r in receiver.wait_for(2)}
    assert sorted(by_path) == ["/form", "/hook"]
    for received in by_path.values():
        assert received.title == "Schwab login 'tokens' ends in 11 h: log in again"
        line, command = received.message.split("\n")
        assert line.startswith("The login ends at ")
        assert command == f"schwab-tokens login --store {path}"
    assert_no_secrets(out + err, {token.access_token, token.refresh_token})


def _start_watch(path: Path, env: dict[str, str], extra: list[str]) -> Any:
    import subprocess

    return subprocess.Popen(
        [*CLI, "watch", "--interval", "0.2", "--store", str(path), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_watch_refuses_an_alert_url_apprise_cannot_use(emulator: Emulator, tmp_path: Path) -> None:
    run = run_cli(
        ["watch", "--store", str(tmp_path / "t.json"), "--alert", f"tgram://{SECRET}"],
        cli_env(emulator),
    )
    assert run.code == 2
    assert "Apprise cannot use this tgram:// URL" in run.err and SECRET not in run.text


# -- the alerts command ---------------------------------------------------------------------------
STACK_TEMPLATE = {
    "Resources": {"AlarmTopic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "AlarmTopicArn": {"Value": {"Ref": "AlarmTopic"}},
        "NotifierFunctionName": {"Value": f"{STACK}-NotifierFunction"},
    },
}


def test_alerts_commands_keep_the_stacks_urls_secret_and_test_them(
    aws_endpoint: str, emulator: Emulator, receiver: Receiver
) -> None:
    aws.client("cloudformation").create_stack(
        StackName=STACK, TemplateBody=json.dumps(STACK_TEMPLATE)
    )
    (stack,) = aws.client("cloudformation").describe_stacks(StackName=STACK)["Stacks"]
    topic = next(o["OutputValue"] for o in stack["Outputs"] if o["OutputKey"] == "AlarmTopicArn")
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    env = cli_env(emulator)
    secret_url = f"json://bot:{SECRET}@127.0.0.1:{receiver.port}/{SECRET}"

    def cli(*args: str, stdin: str = "") -> Any:
        run = run_cli(["alerts", *args, "--stack", STACK], env, stdin=stdin)
        assert SECRET not in run.text
        return run

    assert cli("add", stdin=secret_url + "\n").code == 0
    added = cli("add", closed_url())
    assert added.code == 0 and "added 2. JSON (127.0.0.1) (2 in parameter /st/alerts)" in added.out
    assert cli("add", "-", stdin=secret_url).out.startswith("already there: 1.")
    stored = aws.client("ssm").get_parameter(Name=PARAMETER, WithDecryption=True)["Parameter"]
    assert stored["Type"] == "SecureString" and json.loads(stored["Value"])[0] == secret_url

    listed = cli("list")
    assert listed.out.splitlines() == [
        f"1. JSON (127.0.0.1) [{alert_urls.fingerprint(secret_url)}]",
        f"2. JSON (127.0.0.1) [{alert_urls.fingerprint(json.loads(stored['Value'])[1])}]",
    ]

    tested = cli("test")
    assert tested.code == 5, tested.text  # one URL did not take it
    assert "  1. JSON (127.0.0.1): delivered" in tested.out
    assert "  2. JSON (127.0.0.1): FAILED: " in tested.out
    assert "published it to the stack's topic too" in tested.out
    (direct,) = receiver.wait_for(1)
    assert direct.title == f"Schwab token '{STACK}': test alert"
    (through_topic,) = delivered(queue)
    assert through_topic["Subject"] == direct.title
    assert through_topic["MessageAttributes"]["kind"]["Value"] == "test"

    assert cli("remove", "2").code == 0
    assert cli("test").code == 0
    gone = cli("remove", secret_url)
    assert gone.code == 0 and "removed 1. JSON (127.0.0.1) (0 left" in gone.out
    assert cli("list").out.startswith("no alert URLs in parameter /st/alerts")

    missing = run_cli(["alerts", "list", "--stack", "no-such-stack"], env)
    assert missing.code == 0  # nothing kept under that name: listing needs no stack
    typo = run_cli(["alerts", "add", closed_url(), "--stack", "no-such-stack"], env)
    assert typo.code == 5 and "no stack no-such-stack" in typo.err


def test_alerts_commands_on_a_local_file(emulator: Emulator, tmp_path: Path) -> None:
    env = cli_env(emulator)
    store = str(tmp_path / "tokens.json")
    url = closed_url()
    added = run_cli(["alerts", "add", url, "--store", store], env)
    assert added.code == 0 and SECRET not in added.text
    path = tmp_path / "tokens.json.alerts"
    assert path.stat().st_mode & 0o777 == 0o600
    assert run_cli(["alerts", "list", "--store", store], env).out.startswith("1. JSON (127.0.0.1)")
    tested = run_cli(["alerts", "test", "--store", store], env)
    assert tested.code == 5 and "1. JSON (127.0.0.1): FAILED: " in tested.out
    assert SECRET not in tested.text
    assert run_cli(["alerts", "remove", "3", "--store", store], env).code == 2
    assert run_cli(["alerts", "remove", "1", "--store", store], env).code == 0
    assert json.loads(path.read_text()) == []
    on_s3 = run_cli(["alerts", "list", "--store", "s3://bucket-name/tokens.json"], env)
    assert on_s3.code == 2 and "--stack NAME" in on_s3.err
