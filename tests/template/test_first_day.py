"""Day one on real S3: a stack just deployed, the app credentials stored, no login yet.

S3 answers a GetObject or HeadObject of a missing key 404 only to a caller that has
s3:ListBucket on the bucket, 403 AccessDenied to any other; whether a grant limited by
``s3:prefix`` counts is not documented. moto answers 404 to everyone, so S3 goes through
``tests/s3_proxy.py``, whose rule here is the refresher role's own policies as the template
deploys them (``tests.template.iam.lists_bucket``: only an unconditional grant counts).

The stack is deployed on moto's server (``tests.template.stack``), the refresher's handler runs
with the environment the stack gave it, every five minutes of the emulator's clock for 40
minutes, and its notifications are read from a queue subscribed to the stack's topic. On the
template as it is, every run ends "login required", nothing raises (Lambda's Errors metric and
the RefresherErrors alarm stay quiet) and no "failing" message is sent. On a copy whose grant is
limited by ``s3:prefix`` again, the same check fails: S3's 403 makes every run raise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from devkit.emulator import Emulator
from devkit.template import load_template
from schwab_tokens import aws
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.settings import Settings
from tests.s3_proxy import S3Proxy
from tests.template.iam import lists_bucket
from tests.template.stack import REGION, Deployment, deploy, role_documents

EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}
#: Scheduled runs, five minutes apart: past the 30 minutes after which failures are e-mailed.
RUNS = 9
STEP = 300
#: The keys S3 would be asked to list with before this round: the old, weakened grant.
PREFIXES = [
    "schwab/tokens.json",
    "schwab/tokens.json.notes",
    "schwab/tokens.json.lease",
    "schwab/tokens.access.json",
]


@dataclass
class Day:
    """What a day of scheduled runs showed: each run's outcome or error, and the messages."""

    outcomes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)


def assert_quiet_login_required(day: Day) -> None:
    """Every run ended "login required", none raised, and nobody was told refreshes fail."""
    assert day.errors == [], day.errors
    assert day.outcomes == ["reauth_required"] * RUNS, day.outcomes
    assert "failing" not in day.kinds, day.kinds


def prefix_conditioned(template: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``template`` whose s3:ListBucket grants are limited by ``s3:prefix`` to the
    store's keys, as they were before this round."""
    weakened = copy.deepcopy(template)
    changed = 0

    def walk(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get("Action") == "s3:ListBucket":
                node["Condition"] = {"StringEquals": {"s3:prefix": PREFIXES}}
                changed += 1
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for policy in ("TokenWriterPolicy", "TokenDocumentPolicy"):
        walk(weakened["Resources"][policy])
    assert changed == 2
    return weakened


def subscribed_queue(topic: str) -> str:
    """An SQS queue subscribed to the stack's topic: it receives what an e-mail would."""
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="first-day-inbox")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
    return queue


def kinds_received(queue: str) -> list[str]:
    sqs = aws.client("sqs")
    kinds = []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
        for message in batch:
            attributes = json.loads(message["Body"]).get("MessageAttributes", {})
            kinds.append(attributes.get("kind", {}).get("Value", "alarm"))
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return kinds


@pytest.fixture
def first_day(s3_without_listbucket: S3Proxy, emulator: Emulator) -> Iterator[Any]:
    """``first_day(template)``: deploy it (defaults: S3 store, credentials in Parameter Store),
    store the app credentials, and run the refresher's handler on schedule; returns the
    ``Day`` and the deployment."""
    import boto3

    from schwab_tokens.lambdas.refresher import handle

    proxy = s3_without_listbucket
    deployed = iter(range(100))

    def run(template: dict[str, Any]) -> tuple[Day, Deployment]:
        session = boto3.session.Session(region_name=REGION)
        deployment = deploy(session, f"first-day-{next(deployed)}", {}, template)
        # S3 answers as it would this role: its policies decide, not the test.
        documents = role_documents(session, deployment, "RefresherFunctionRole")
        proxy.list_bucket = lists_bucket(documents)
        outputs = deployment.outputs
        store_credentials(
            outputs["CredentialsSecretName"],
            AppCredentials(emulator.app_key, emulator.app_secret, emulator.callback_url),
        )
        queue = subscribed_queue(outputs["AlarmTopicArn"])
        environment = session.client("lambda").get_function_configuration(
            FunctionName=deployment.physical("RefresherFunction")
        )["Environment"]["Variables"]
        # Lambda hands every value over as a string (moto keeps a Number parameter's int).
        variables = {name: str(value) for name, value in environment.items()}
        settings = Settings.from_env({**variables, "SCHWAB_API_BASE": emulator.base_url})
        day = Day()
        for _ in range(RUNS):
            try:
                summary = handle(EVENT, settings, clock=emulator.now)
            except Exception as exc:  # what Lambda would count in its Errors metric
                day.errors.append(f"{type(exc).__name__}: {exc}")
            else:
                (token,) = summary["tokens"]
                day.outcomes.append(token["outcome"])
            emulator.advance(STEP)
        day.kinds = kinds_received(queue)
        return day, deployment

    yield run
    aws.reset_clients()


def test_a_fresh_stack_asks_for_a_login_and_stays_quiet(
    first_day: Any, s3_without_listbucket: S3Proxy, emulator: Emulator
) -> None:
    day, deployment = first_day(load_template())
    assert_quiet_login_required(day)
    assert s3_without_listbucket.may_list(deployment.physical("TokenBucket"))
    assert day.kinds == []  # nothing to say before the first login
    assert s3_without_listbucket.rewritten == 0 and s3_without_listbucket.requests > 0
    assert emulator.token_calls == 0  # no token, no call to Schwab


def test_the_same_day_fails_with_a_listbucket_limited_by_prefix(
    first_day: Any, s3_without_listbucket: S3Proxy
) -> None:
    """The check above goes red on a template whose grant has the s3:prefix condition again:
    S3's hidden check (taken strictly) does not count it, answers 403, and every run raises."""
    day, deployment = first_day(prefix_conditioned(load_template()))
    assert not s3_without_listbucket.may_list(deployment.physical("TokenBucket"))
    with pytest.raises(AssertionError):
        assert_quiet_login_required(day)
    assert len(day.errors) == RUNS and day.outcomes == []
    assert all("s3:ListBucket" in error for error in day.errors), day.errors
    assert s3_without_listbucket.rewritten > 0


def test_the_rule_counts_only_an_unconditional_listbucket_on_the_bucket() -> None:
    """The proxy's rule, on policy documents: S3's strict reading of "has s3:ListBucket"."""

    def rule(*statements: dict[str, Any]) -> Any:
        return lists_bucket([{"Version": "2012-10-17", "Statement": list(statements)}])

    bucket = "arn:aws:s3:::b"
    allow = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": bucket}
    assert rule(allow)("b")
    assert not rule(allow)("other")
    assert not rule({**allow, "Resource": bucket + "/*"})("b")  # objects, not the bucket
    assert not rule({**allow, "Condition": {"StringEquals": {"s3:prefix": ["k"]}}})("b")
    assert not rule({**allow, "Action": "s3:GetObject"})("b")
    assert rule({**allow, "Action": ["s3:Get*", "s3:List*"], "Resource": "*"})("b")
    assert rule({**allow, "Action": "S3:listbucket"})("b")  # actions ignore case
    assert not rule(allow, {**allow, "Effect": "Deny"})("b")
    assert not rule()("b")
