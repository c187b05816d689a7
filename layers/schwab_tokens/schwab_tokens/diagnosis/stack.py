"""The deployment, from the CloudFormation stack's outputs: its status and name, the
refresher's schedule and recent runs, and the hosted login's URL."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import aws
from ..errors import ConfigurationError, SchwabTokensError
from ..notes import LOGIN, failing
from ..stores import TokenStore
from ..timefmt import when
from ..token import Token
from .clients import Clients
from .report import Check, Status, could_not, fail, ok, plural

#: How far back the refresher's ``Errors`` metric is read.
ERRORS_WINDOW_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10.0
#: What a stack's status must be for the deployment to be usable.
STACK_OK = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
#: SSM refuses parameter names that begin so (case-insensitive), ``/aws...`` included, and the
#: stack's parameters are ``/<stack>/credentials`` and ``/<stack>/tokens.access``.
SSM_RESERVED = ("aws", "ssm")

Function = Mapping[str, Any]


def read_stack(name: str, clients: Clients) -> tuple[Check, dict[str, str] | None]:
    """The stack's status and outputs (None when the stack cannot be read)."""
    client = clients.cloudformation()
    try:
        with aws.translated(f"stack {name}", "cloudformation:DescribeStacks"):
            try:
                found = client.describe_stacks(StackName=name)["Stacks"][0]
            except aws.boto_errors() as exc:
                if aws.error_code(exc) == "ValidationError" and "not exist" in str(exc):
                    return fail(
                        "stack",
                        f"no stack {name} in {clients.region_name}",
                        "deploy it (sam deploy --guided), or check the name, --region and "
                        "AWS_PROFILE",
                    ), None
                raise
    except SchwabTokensError as error:
        return could_not("stack", error), None
    status = str(found.get("StackStatus", "UNKNOWN"))
    outputs = {
        str(o["OutputKey"]): str(o["OutputValue"])
        for o in found.get("Outputs", [])
        if "OutputKey" in o and "OutputValue" in o
    }
    if status in STACK_OK:
        return stack_name(name) or ok("stack", f"{name} is {status}"), outputs
    if status.endswith("_IN_PROGRESS") and "ROLLBACK" not in status:
        return fail(
            "stack", f"{name} is {status}", "wait until it is finished, then run doctor again"
        ), outputs
    reason = str(found.get("StackStatusReason") or "").strip()
    return fail(
        "stack",
        f"{name} is {status}" + (f" ({reason[:200]})" if reason else ""),
        f"see why: aws cloudformation describe-stack-events --stack-name {name} "
        f"--region {clients.region_name}, fix it and deploy again (sam deploy)",
    ), outputs


def stack_name(name: str) -> Check | None:
    """A stack whose name SSM refuses as a parameter path, or None when the name is fine."""
    if not name.lower().startswith(SSM_RESERVED):
        return None
    return fail(
        "stack",
        f"{name}: SSM refuses parameter names beginning with aws or ssm, and the stack keeps "
        f"/{name}/credentials and /{name}/tokens.access there",
        "deploy it again under a name that does not begin so (sam deploy --stack-name ...)",
    )


def refresher(outputs: Mapping[str, str], clients: Clients) -> Function:
    """The refresher function's configuration; ``ConfigurationError`` without the output."""
    name = outputs.get("RefresherFunctionName")
    if not name:
        raise ConfigurationError("the stack has no RefresherFunctionName output")
    client = clients.lambda_()
    with aws.translated(f"function {name}", "lambda:GetFunctionConfiguration"):
        return dict(client.get_function_configuration(FunctionName=name))


def schedule(function: Function, clients: Clients) -> Check:
    """An enabled EventBridge rule runs the refresher."""
    target = str(function.get("FunctionArn") or "")
    client = clients.events()
    names: list[str] = []
    with aws.translated(f"the rules of {target}", "events:ListRuleNamesByTarget"):
        for page in client.get_paginator("list_rule_names_by_target").paginate(TargetArn=target):
            names.extend(str(n) for n in page.get("RuleNames", []))
    if not names:
        return fail(
            "schedule",
            f"no EventBridge rule runs the refresher {function.get('FunctionName')}",
            "deploy the stack again (sam deploy)",
        )
    rules = []
    for name in names:
        with aws.translated(f"rule {name}", "events:DescribeRule"):
            rules.append(client.describe_rule(Name=name))
    for rule in rules:
        if rule.get("State") == "ENABLED":
            every = rule.get("ScheduleExpression") or "on events"
            return ok("schedule", f"rule {rule.get('Name')} is ENABLED ({every})")
    rule = rules[0]
    return fail(
        "schedule",
        f"rule {rule.get('Name')} is {rule.get('State')}, so the refresher does not run and the "
        "access token runs out within 30 minutes",
        f"aws events enable-rule --name {rule.get('Name')} --region {clients.region_name}",
    )


def recent_runs(
    function: Function, store: TokenStore | None, token: Token | None, now: float, clients: Clients
) -> Check:
    """Whether the refresher's recent runs failed: the notes, and the last hour's ``Errors``.

    A login found over is the "login" line's business, not this one's.
    """
    name = str(function.get("FunctionName") or "")
    log_group = str((function.get("LoggingConfig") or {}).get("LogGroup") or "")
    log_group = log_group or f"/aws/lambda/{name}"
    logs = (
        f"see why in its log: aws logs tail {log_group} --since 1h --region {clients.region_name}"
    )
    notes: dict[str, Any] = {}
    if store is not None and token is not None:
        notes = store.read_notes()[0]
        if notes.get(LOGIN) != token.creation_timestamp:
            notes = {}  # another login's notes: nothing said about this one yet
    problems: list[str] = []
    noted = failing(notes)
    if noted is not None:
        problems.append(f"refreshes have failed since {when(noted[0])}")
    errors = function_errors(name, now, ERRORS_WINDOW_SECONDS, clients)
    if errors:
        problems.append(f"{plural(errors, 'failed run')} in the last hour (AWS/Lambda Errors)")
    if problems:
        return fail("refresher runs", "; ".join(problems), logs)
    return ok("refresher runs", "no failed run in the last hour and no failure noted")


def function_errors(function_name: str, now: float, window: float, clients: Clients) -> int:
    """Lambda's ``Errors`` metric of ``function_name`` over the last ``window`` seconds."""
    client = clients.cloudwatch()
    with aws.translated(f"the Errors metric of {function_name}", "cloudwatch:GetMetricStatistics"):
        answer = client.get_metric_statistics(
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Dimensions=[{"Name": "FunctionName", "Value": function_name}],
            StartTime=datetime.fromtimestamp(now - window, UTC),
            EndTime=datetime.fromtimestamp(now, UTC),
            Period=int(window),
            Statistics=["Sum"],
        )
    return int(sum(float(point.get("Sum", 0)) for point in answer.get("Datapoints", [])))


def hosted_login(outputs: Mapping[str, str]) -> Check:
    """The hosted login's URL answers, when the stack enables it."""
    url = outputs.get("LoginUrl")
    if not url:
        why = "not enabled (HostedLogin is Disabled: the stack has no LoginUrl output)"
        return Check("hosted login", Status.SKIP, why)
    return check_login_url(url)


def check_login_url(
    login_url: str, *, timeout: float = HTTP_TIMEOUT_SECONDS, verify: bool | str = True
) -> Check:
    """Whether the hosted login answers ``<LoginUrl>start`` with a page (any HTTP status).

    Without a ticket it refuses, which still proves the function URL is there and public.
    """
    import requests

    url = login_url + ("" if login_url.endswith("/") else "/") + "start"
    try:
        answer = requests.get(url, timeout=timeout, verify=verify, allow_redirects=False)
    except requests.RequestException as exc:
        return fail(
            "hosted login",
            f"{url} does not answer ({type(exc).__name__})",
            "check the stack's LoginFunctionUrl; where Lambda's block public access refuses "
            "public function URLs, allow them or set HostedLogin=Disabled",
        )
    answer.close()
    return ok("hosted login", f"{url} answers (HTTP {answer.status_code})")
