"""Whether anyone hears the refresher: a confirmed subscription to the stack's topic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import alert_urls, aws
from .clients import Clients
from .report import Check, Status, fail, ok, plural
from .stack import function_errors

#: The commands' stand-in for the user's own address (never guessed, never printed).
YOUR_EMAIL = "YOU@example.com"
#: How far back the notifier's failures are counted: its messages are rare.
NOTIFIER_WINDOW_SECONDS = 24 * 3600


def subscriptions(outputs: Mapping[str, str], clients: Clients) -> Check:
    """At least one confirmed subscription to the stack's ``AlarmTopicArn``."""
    topic = outputs.get("AlarmTopicArn")
    if not topic:
        return fail("notifications", "the stack has no AlarmTopicArn output")
    client = clients.sns()
    found: list[dict[str, Any]] = []
    with aws.translated(f"topic {topic}", "sns:ListSubscriptionsByTopic"):
        for page in client.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic):
            found.extend(dict(s) for s in page.get("Subscriptions", []))
    return notifications_check(topic, found, clients.region_name)


def notifications_check(topic: str, subscriptions: list[dict[str, Any]], region: str) -> Check:
    """At least one confirmed subscription, from what ``ListSubscriptionsByTopic`` lists."""
    # A confirmed subscription has an ARN; SNS lists an unconfirmed one (an e-mail address whose
    # owner never clicked the link: the classic reason nobody gets the e-mails) with the
    # SubscriptionArn "PendingConfirmation".
    confirmed = [s for s in subscriptions if str(s.get("SubscriptionArn", "")).startswith("arn:")]
    pending = [s for s in subscriptions if s.get("SubscriptionArn") == "PendingConfirmation"]
    subscribe = (
        f"aws sns subscribe --topic-arn {topic} --protocol email "
        f"--notification-endpoint {YOUR_EMAIL} --region {region}"
    )
    if confirmed:
        protocols = sorted({str(s.get("Protocol")) for s in confirmed})
        return ok(
            "notifications",
            f"{plural(len(confirmed), 'confirmed subscription')} to {topic} "
            f"({', '.join(protocols)})",
        )
    if pending:
        endpoints = ", ".join(str(s.get("Endpoint")) for s in pending)
        return fail(
            "notifications",
            f"the subscription of {endpoints} to {topic} is pending confirmation, so nobody "
            "gets the refresher's e-mails",
            f"confirm the e-mail AWS sent to {endpoints}, or subscribe one: {subscribe}",
        )
    return fail(
        "notifications",
        f"nobody is subscribed to {topic}, so nobody gets the refresher's e-mails",
        f"subscribe one: {subscribe} (then confirm the e-mail AWS sends)",
    )


def notifier(outputs: Mapping[str, str], now: float, clients: Clients) -> Check:
    """The alerts notifier (``Alerts=Enabled``) failed no message in the last day."""
    name = outputs.get("NotifierFunctionName")
    if not name:
        return Check("alerts", Status.SKIP, "not enabled (Alerts is Disabled)")
    errors = function_errors(name, now, NOTIFIER_WINDOW_SECONDS, clients)
    stack = alert_urls.stack_of(outputs.get("AlertsParameterName", "/<stack>/alerts"))
    if errors:
        return fail(
            "alerts",
            f"the notifier {name} failed {plural(errors, 'time')} in the last day "
            "(AWS/Lambda Errors): a message reached none of your alert URLs",
            f"see which service answered what: aws logs tail /aws/lambda/{stack}-notifier "
            f"--since 1d --region {clients.region_name}; then schwab-tokens alerts test "
            f"--stack {stack}",
        )
    return ok("alerts", f"the notifier {name} failed no message in the last day")
