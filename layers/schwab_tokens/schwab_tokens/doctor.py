"""``schwab-tokens doctor``: whether a setup works, item by item, with the fix for each problem.

``diagnose`` runs the checks and returns a ``Report``; the command prints it. The token checks
need only the store (a file works without AWS): the token is readable, how long the access
token and the login (the refresh token) have left, and whether the access view beside it
mirrors it. With a CloudFormation stack the deployment is checked too, from the stack's outputs:
its status, the app credentials and the refresher's access to them, the schedule, a confirmed
subscription to the notifications topic, the refresher's recent failures (the notes beside the
token and Lambda's own ``Errors`` metric), and the hosted login's URL when it is enabled.

Each check ends in one of five states: ``ok``; ``warn`` (works today, needs doing soon: a login
due within 24 hours); ``skip`` (does not apply); ``FAIL`` (broken, with the fix); ``ERROR`` (AWS
did not answer: it could not be checked). The report's exit code, in this order of precedence:

- 3 (login required) when the login is the problem: no token, a dead refresh token, or the
  refresher found the login over. The user must log in first, whatever else fails (a login
  with ``--credentials-secret`` also stores the app credentials);
- 5 (configuration) when any other check failed;
- 4 (temporary) when nothing failed but a check could not run;
- 0 otherwise (warnings and skipped checks included).

Nothing secret is printed: tokens and the app key appear as fingerprints at most.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote

from . import aws, strictjson
from .access import AccessView
from .errors import (
    AccessDenied,
    ConfigurationError,
    ExitCode,
    InvalidTokenDocument,
    LoginRequired,
    SchwabTokensError,
)
from .notes import LOGIN, failing, login_over
from .refresh import REPLACED_IF_LEFT_SECONDS
from .settings import Settings
from .stores import TokenStore, store_from_url
from .timefmt import duration, when
from .token import Token, fingerprint

#: Below this the login is due soon: a warning (the refresher's first e-mail goes out then too).
LOGIN_DUE_SECONDS = 24 * 3600
#: How far back the refresher's ``Errors`` metric is read.
ERRORS_WINDOW_SECONDS = 3600
HTTP_TIMEOUT_SECONDS = 10.0
#: What a stack's status must be for the deployment to be usable.
STACK_OK = ("CREATE_COMPLETE", "UPDATE_COMPLETE")
#: The Schwab commands' stand-in for the user's own values (never guessed, never printed).
YOUR_EMAIL = "YOU@example.com"


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    SKIP = "skip"
    FAIL = "FAIL"
    ERROR = "ERROR"


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, what was found, and the fix if it failed."""

    name: str
    status: Status
    detail: str
    fix: str = ""
    exit_code: ExitCode = ExitCode.OK

    @property
    def ok(self) -> bool:
        return self.status in (Status.OK, Status.WARN, Status.SKIP)

    def line(self) -> str:
        text = f"{self.status.value:<6}{self.name}: {self.detail}"
        return f"{text}; {self.fix}" if self.fix and self.status is not Status.OK else text

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": self.ok,
            "status": self.status.value.lower(),
            "detail": self.detail,
            "fix": self.fix,
        }


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def fail(name: str, detail: str, fix: str = "", code: ExitCode = ExitCode.CONFIGURATION) -> Check:
    return Check(name, Status.FAIL, detail, fix, code)


def could_not(name: str, exc: SchwabTokensError) -> Check:
    """A check that raised: AWS did not answer (``ERROR``, exit 4), or refused (``FAIL``)."""
    if exc.exit_code == ExitCode.TEMPORARY:
        return Check(name, Status.ERROR, f"could not check: {exc}", "", ExitCode.TEMPORARY)
    return fail(name, f"could not check: {exc}", code=ExitCode(exc.exit_code))


@dataclass
class Report:
    checks: list[Check] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """3 if the login is a problem, else 5 if anything failed, else 4 if a check could not
        run, else 0 (see the module's docstring)."""
        failed = [check for check in self.checks if check.status is Status.FAIL]
        if any(check.exit_code == ExitCode.LOGIN_REQUIRED for check in failed):
            return int(ExitCode.LOGIN_REQUIRED)
        if failed:
            return int(ExitCode.CONFIGURATION)
        if any(check.status is Status.ERROR for check in self.checks):
            return int(ExitCode.TEMPORARY)
        return int(ExitCode.OK)

    @property
    def summary(self) -> str:
        count = {status: 0 for status in Status}
        for check in self.checks:
            count[check.status] += 1
        checks = _plural(len(self.checks), "check")
        code = self.exit_code
        if code == ExitCode.OK:
            parts = [f"{count[Status.OK]} ok"]
            if count[Status.WARN]:
                parts.append(_plural(count[Status.WARN], "warning"))
            if count[Status.SKIP]:
                parts.append(f"{count[Status.SKIP]} skipped")
            return f"doctor: everything is in place ({', '.join(parts)})"
        if count[Status.FAIL]:
            text = f"doctor: {_plural(count[Status.FAIL], 'problem')} in {checks}"
            if count[Status.ERROR]:
                text += f", {count[Status.ERROR]} could not run"
        else:
            text = f"doctor: {count[Status.ERROR]} of {checks} could not run"
        then = {
            ExitCode.LOGIN_REQUIRED: "log in first (see the FAIL lines), then run doctor again",
            ExitCode.CONFIGURATION: "fix the FAIL lines above, then run doctor again",
            ExitCode.TEMPORARY: "AWS did not answer; run doctor again later",
        }[ExitCode(code)]
        return f"{text}; exit {code}: {then}"

    def lines(self) -> list[str]:
        return [*(check.line() for check in self.checks), self.summary]

    def to_dict(self) -> dict[str, Any]:
        return {
            "checks": [check.to_dict() for check in self.checks],
            "exit_code": self.exit_code,
            "summary": self.summary,
        }


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -- the whole run --------------------------------------------------------------------------------
def diagnose(
    settings: Settings,
    *,
    store_url: str | None,
    stack: str | None = None,
    region: str | None = None,
    now: Callable[[], float] = time.time,
) -> Report:
    """Check the token at ``store_url`` and, with ``stack``, the deployment (whose ``StoreUrl``
    output is the store when ``store_url`` is None). ``region`` is the ``--region`` the user
    gave, repeated in the commands printed as fixes so they work as printed."""
    report = Report()
    doctor = _Doctor(region, now)
    outputs: dict[str, str] | None = None
    if stack is not None:
        check, outputs = doctor.stack(stack)
        report.checks.append(check)
        if store_url is None and outputs is not None:
            store_url = outputs.get("StoreUrl")
            if not store_url:
                report.checks.append(
                    fail("token", f"stack {stack} has no StoreUrl output: is it schwab-tokens'?")
                )
    store = store_from_url(store_url, settings) if store_url else None
    token: Token | None = None
    if store is not None:
        token_checks, token = doctor.token(store)
        report.checks.extend(token_checks)
    if outputs is not None:
        report.checks.extend(doctor.deployment(outputs, store, token))
    return report


class _Doctor:
    def __init__(self, region: str | None, now: Callable[[], float]) -> None:
        self.region_flag = f" --region {region}" if region else ""
        self.now = now

    # -- commands printed as fixes (complete: they work as printed) ----------------------------
    def login_command(self, store: TokenStore) -> str:
        return f"schwab-tokens login --store {store.url}{self.region_flag}"

    def refresh_command(self, store: TokenStore) -> str:
        return f"schwab-tokens refresh --store {store.url}{self.region_flag}"

    @staticmethod
    def aws_region() -> str:
        return str(aws.client("cloudformation").meta.region_name)

    # -- the token ------------------------------------------------------------------------------
    def token(self, store: TokenStore) -> tuple[list[Check], Token | None]:
        """Readable, the access token's and the login's time left, the access view."""
        try:
            token = Token.parse(store.read_raw().raw, source=store.url)
        except LoginRequired:
            login = self.login_command(store)
            return [fail("token", f"no token at {store.url}", login, ExitCode.LOGIN_REQUIRED)], None
        except InvalidTokenDocument as exc:
            return [fail("token", str(exc), self.login_command(store))], None
        except SchwabTokensError as exc:
            return [could_not("token", exc)], None
        now = self.now()
        checks = [
            ok("token", f"{store.url} is readable (fingerprint {token.fingerprint})"),
            self.access_token(store, token, now),
            self.login(store, token, now),
            self.guarded("access view", lambda: self.view(store, token)),
        ]
        return checks, token

    def access_token(self, store: TokenStore, token: Token, now: float) -> Check:
        left = token.access_seconds_left(now)
        if left > 0:
            expires = when(token.access_expires_at)
            return ok("access token", f"expires in {duration(left)} ({expires})")
        dead = token.refresh_seconds_left(now) <= 0
        return fail(
            "access token",
            f"expired {duration(-left)} ago, so consumers get no working token",
            self.login_command(store) if dead else self.refresh_command(store),
            ExitCode.LOGIN_REQUIRED if dead else ExitCode.CONFIGURATION,
        )

    def login(self, store: TokenStore, token: Token, now: float) -> Check:
        left = token.refresh_seconds_left(now)
        ends = when(token.refresh_expires_at)
        if left > 0 and _found_over(store, token):
            why = (
                "although it had days left: another login to this app replaced it (Schwab keeps "
                "one login per app)"
                if left > REPLACED_IF_LEFT_SECONDS
                else "before its end"
            )
            return fail(
                "login",
                f"a refresh found this login over: Schwab refused its refresh token {why}",
                self.login_command(store),
                ExitCode.LOGIN_REQUIRED,
            )
        if left <= 0:
            return fail(
                "login",
                f"the refresh token died {duration(-left)} ago ({ends}, 7 days after the login)",
                self.login_command(store),
                ExitCode.LOGIN_REQUIRED,
            )
        if left < LOGIN_DUE_SECONDS:
            return Check(
                "login",
                Status.WARN,
                f"the refresh token dies in {duration(left)} ({ends})",
                f"log in again before then: {self.login_command(store)}",
            )
        return ok("login", f"the refresh token lasts {duration(left)} more (until {ends})")

    def view(self, store: TokenStore, token: Token) -> Check:
        """The view consumers read mirrors the stored token (what a refresh repairs)."""
        view = store.view
        wanted = AccessView.from_token(token)
        current, version = view.current()
        refresh = self.refresh_command(store)
        if current == wanted:
            return ok("access view", f"{view.url} mirrors the token")
        if current is None and version is None:
            return fail(
                "access view",
                f"no access view at {view.url}, so consumers (TOKEN_ACCESS_URL) find no token",
                refresh,
            )
        if current is None:
            return fail("access view", f"{view.url} is unusable: {self._unusable(store)}", refresh)
        if current.order() < wanted.order():
            return fail(
                "access view",
                f"{view.url} holds an older access token (fingerprint {current.fingerprint}) "
                f"than the store ({wanted.fingerprint})",
                refresh,
            )
        if current.order() > wanted.order():
            # A refresh never moves a view back to an older token; a new login is newer than both.
            return fail(
                "access view",
                f"{view.url} holds a newer token (fingerprint {current.fingerprint}) than the "
                f"store ({wanted.fingerprint}): was the store restored from a backup?",
                self.login_command(store),
            )
        return fail(
            "access view",
            f"{view.url} does not match the token (fingerprint {current.fingerprint}, "
            f"not {wanted.fingerprint})",
            refresh,
        )

    @staticmethod
    def _unusable(store: TokenStore) -> str:
        try:
            AccessView.parse(store.view.read_raw().raw, source=store.view.url)
        except InvalidTokenDocument as exc:
            return str(exc)
        return "encrypted with the bucket's key, which consumers may not use"

    # -- the stack ------------------------------------------------------------------------------
    def stack(self, name: str) -> tuple[Check, dict[str, str] | None]:
        """The stack's status and outputs (None when the stack cannot be read)."""
        try:
            stacks = aws.client("cloudformation").describe_stacks(StackName=name)["Stacks"]
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ValidationError" and "not exist" in str(exc):
                return fail(
                    "stack",
                    f"no stack {name} in {self.aws_region()}",
                    "deploy it (sam deploy --guided), or check the name, --region and AWS_PROFILE",
                ), None
            error = aws.translate(exc, what=f"stack {name}", action="cloudformation:DescribeStacks")
            return could_not("stack", error), None
        except SchwabTokensError as error:
            return could_not("stack", error), None
        found = stacks[0]
        status = str(found.get("StackStatus", "UNKNOWN"))
        outputs = {
            str(o["OutputKey"]): str(o["OutputValue"])
            for o in found.get("Outputs", [])
            if "OutputKey" in o and "OutputValue" in o
        }
        if status in STACK_OK:
            return ok("stack", f"{name} is {status}"), outputs
        if status.endswith("_IN_PROGRESS") and "ROLLBACK" not in status:
            return fail(
                "stack", f"{name} is {status}", "wait until it is finished, then run doctor again"
            ), outputs
        reason = str(found.get("StackStatusReason") or "").strip()
        return fail(
            "stack",
            f"{name} is {status}" + (f" ({reason[:200]})" if reason else ""),
            f"see why: aws cloudformation describe-stack-events --stack-name {name} "
            f"--region {self.aws_region()}, fix it and deploy again (sam deploy)",
        ), outputs

    def deployment(
        self, outputs: dict[str, str], store: TokenStore | None, token: Token | None
    ) -> list[Check]:
        checks = [self.guarded("credentials", lambda: self.credentials(outputs, store))]
        try:
            function = self.refresher(outputs)
        except SchwabTokensError as exc:
            checks.append(could_not("refresher", exc))
            function = None
        if function is not None:
            reads = "refresher reads credentials"
            checks.append(self.guarded(reads, lambda: self.credentials_access(outputs, function)))
            checks.append(self.guarded("schedule", lambda: self.schedule(function)))
        checks.append(self.guarded("notifications", lambda: self.subscriptions(outputs)))
        if function is not None:
            runs = "refresher runs"
            checks.append(self.guarded(runs, lambda: self.outcomes(function, store, token)))
        checks.append(self.guarded("hosted login", lambda: self.hosted_login(outputs)))
        return checks

    def refresher(self, outputs: dict[str, str]) -> dict[str, Any]:
        """The refresher function's configuration."""
        name = outputs.get("RefresherFunctionName")
        if not name:
            raise ConfigurationError("the stack has no RefresherFunctionName output")
        configuration: dict[str, Any] = self._call(
            "lambda",
            "get_function_configuration",
            f"function {name}",
            "lambda:GetFunctionConfiguration",
            FunctionName=name,
        )
        return configuration

    @staticmethod
    def guarded(name: str, run: Callable[[], Check]) -> Check:
        try:
            return run()
        except SchwabTokensError as exc:
            return could_not(name, exc)

    @staticmethod
    def _call(service: str, operation: str, what: str, action: str, **kwargs: Any) -> Any:
        try:
            return getattr(aws.client(service), operation)(**kwargs)
        except aws.boto_errors() as exc:
            raise aws.translate(exc, what=what, action=action) from exc

    @staticmethod
    def _pages(
        service: str, operation: str, what: str, action: str, **kwargs: Any
    ) -> Iterator[dict[str, Any]]:
        try:
            yield from aws.client(service).get_paginator(operation).paginate(**kwargs)
        except aws.boto_errors() as exc:
            raise aws.translate(exc, what=what, action=action) from exc

    # -- the app credentials --------------------------------------------------------------------
    def credentials(self, outputs: dict[str, str], store: TokenStore | None) -> Check:
        name = outputs.get("CredentialsSecretName")
        if not name:
            return fail("credentials", "the stack has no CredentialsSecretName output")
        store_part = f" --store {store.url}" if store is not None else ""
        fix = (
            f"schwab-tokens login --credentials-secret {name}{store_part}{self.region_flag} "
            "--app-key YOUR_APP_KEY (it asks for the app secret, then logs in)"
        )
        try:
            document = _credentials_document(name)
        except AccessDenied:
            return Check(
                "credentials",
                Status.WARN,
                f"this identity may not read {name} (the stack lets only its functions and "
                "AdministratorPrincipals read the app secret), so app_key and app_secret were "
                "not checked",
                "run doctor as an administrator to check them",
            )
        except _Missing as exc:
            return fail("credentials", str(exc), fix)
        try:
            data = strictjson.loads(document)
        except strictjson.NotJSON:
            return fail("credentials", f"{name} does not hold JSON", fix)
        if not isinstance(data, dict):
            data = {}
        missing = [
            k for k in ("app_key", "app_secret") if not isinstance(data.get(k), str) or not data[k]
        ]
        if missing:
            return fail("credentials", f"{name} lacks {' and '.join(missing)}", fix)
        return ok(
            "credentials",
            f"{name} holds app_key and app_secret (app key fingerprint "
            f"{fingerprint(data['app_key'])})",
        )

    def credentials_access(self, outputs: dict[str, str], function: dict[str, Any]) -> Check:
        """The refresher is configured with the stack's credentials and its role may read them
        (from the role's policies: moto implements no ``SimulatePrincipalPolicy``, and users
        seldom hold ``iam:SimulatePrincipalPolicy``)."""
        name = outputs.get("CredentialsSecretName") or ""
        variables = (function.get("Environment") or {}).get("Variables") or {}
        configured = str(variables.get("SCHWAB_CREDENTIALS_SECRET") or "")
        redeploy = "deploy the stack again (sam deploy)"
        if configured != name:
            return fail(
                "refresher reads credentials",
                f"the refresher's SCHWAB_CREDENTIALS_SECRET is {configured or 'not set'}, "
                f"not {name}",
                redeploy,
            )
        role_arn = str(function.get("Role") or "")
        role = role_arn.rsplit("/", 1)[-1]
        arn, action = _credentials_arn(name, str(function.get("FunctionArn") or ""))
        statements = self.role_statements(role)
        if policy_allows(statements, action, arn):
            return ok(
                "refresher reads credentials",
                f"the refresher reads {name} and its role {role} allows {action} on it",
            )
        return fail(
            "refresher reads credentials",
            f"the refresher's role {role} is not allowed {action} on {arn}",
            f"{redeploy}, or grant the role {action} on {arn}",
        )

    def role_statements(self, role: str) -> list[dict[str, Any]]:
        what = f"role {role}"
        statements: list[dict[str, Any]] = []
        attached_pages = self._pages(
            "iam",
            "list_attached_role_policies",
            what,
            "iam:ListAttachedRolePolicies",
            RoleName=role,
        )
        for page in attached_pages:
            for attached in page.get("AttachedPolicies", []):
                arn = attached["PolicyArn"]
                policy = self._call("iam", "get_policy", arn, "iam:GetPolicy", PolicyArn=arn)
                version = self._call(
                    "iam",
                    "get_policy_version",
                    arn,
                    "iam:GetPolicyVersion",
                    PolicyArn=arn,
                    VersionId=policy["Policy"]["DefaultVersionId"],
                )
                statements.extend(_statements(version["PolicyVersion"].get("Document")))
        for page in self._pages(
            "iam", "list_role_policies", what, "iam:ListRolePolicies", RoleName=role
        ):
            for policy_name in page.get("PolicyNames", []):
                inline = self._call(
                    "iam",
                    "get_role_policy",
                    what,
                    "iam:GetRolePolicy",
                    RoleName=role,
                    PolicyName=policy_name,
                )
                statements.extend(_statements(inline.get("PolicyDocument")))
        return statements

    # -- the schedule -----------------------------------------------------------------------------
    def schedule(self, function: dict[str, Any]) -> Check:
        target = str(function.get("FunctionArn") or "")
        names: list[str] = []
        for page in self._pages(
            "events",
            "list_rule_names_by_target",
            f"the rules of {target}",
            "events:ListRuleNamesByTarget",
            TargetArn=target,
        ):
            names.extend(str(n) for n in page.get("RuleNames", []))
        if not names:
            return fail(
                "schedule",
                f"no EventBridge rule runs the refresher {function.get('FunctionName')}",
                "deploy the stack again (sam deploy)",
            )
        rules = [
            self._call("events", "describe_rule", f"rule {n}", "events:DescribeRule", Name=n)
            for n in names
        ]
        for rule in rules:
            if rule.get("State") == "ENABLED":
                every = rule.get("ScheduleExpression") or "on events"
                return ok("schedule", f"rule {rule['Name']} is ENABLED ({every})")
        rule = rules[0]
        return fail(
            "schedule",
            f"rule {rule['Name']} is {rule.get('State')}, so the refresher does not run and the "
            "access token runs out within 30 minutes",
            f"aws events enable-rule --name {rule['Name']} --region {self.aws_region()}",
        )

    # -- the notifications ------------------------------------------------------------------------
    def subscriptions(self, outputs: dict[str, str]) -> Check:
        topic = outputs.get("AlarmTopicArn")
        if not topic:
            return fail("notifications", "the stack has no AlarmTopicArn output")
        found: list[dict[str, Any]] = []
        for page in self._pages(
            "sns",
            "list_subscriptions_by_topic",
            f"topic {topic}",
            "sns:ListSubscriptionsByTopic",
            TopicArn=topic,
        ):
            found.extend(page.get("Subscriptions", []))
        return notifications_check(topic, found, self.aws_region())

    # -- the refresher's recent runs --------------------------------------------------------------
    def outcomes(
        self, function: dict[str, Any], store: TokenStore | None, token: Token | None
    ) -> Check:
        """The notes the refresher keeps beside the token (a login it found over, refreshes
        failing since when) and Lambda's ``Errors`` metric of the last hour."""
        name = str(function.get("FunctionName") or "")
        log_group = str((function.get("LoggingConfig") or {}).get("LogGroup") or "")
        log_group = log_group or f"/aws/lambda/{name}"
        region = self.aws_region()
        logs = f"see why in its log: aws logs tail {log_group} --since 1h --region {region}"
        now = self.now()
        notes: dict[str, Any] = {}
        if store is not None and token is not None:
            notes = store.read_notes()[0]
            if notes.get(LOGIN) != token.creation_timestamp:
                notes = {}  # another login's notes: nothing said about this one yet
        # A login found over is the "login" check's line (it is the token's state, whoever
        # found it); this one is about the refresher's failures.
        problems: list[str] = []
        noted = failing(notes)
        if noted is not None:
            problems.append(f"refreshes have failed since {when(noted[0])}")
        errors = self._errors(name, now)
        if errors:
            problems.append(f"{_plural(errors, 'failed run')} in the last hour (AWS/Lambda Errors)")
        if problems:
            return fail("refresher runs", "; ".join(problems), logs)
        return ok("refresher runs", "no failed run in the last hour and no failure noted")

    def _errors(self, function_name: str, now: float) -> int:
        from datetime import UTC, datetime

        answer = self._call(
            "cloudwatch",
            "get_metric_statistics",
            f"the Errors metric of {function_name}",
            "cloudwatch:GetMetricStatistics",
            Namespace="AWS/Lambda",
            MetricName="Errors",
            Dimensions=[{"Name": "FunctionName", "Value": function_name}],
            StartTime=datetime.fromtimestamp(now - ERRORS_WINDOW_SECONDS, UTC),
            EndTime=datetime.fromtimestamp(now, UTC),
            Period=ERRORS_WINDOW_SECONDS,
            Statistics=["Sum"],
        )
        return int(sum(float(point.get("Sum", 0)) for point in answer.get("Datapoints", [])))

    # -- the hosted login -------------------------------------------------------------------------
    @staticmethod
    def hosted_login(outputs: dict[str, str]) -> Check:
        url = outputs.get("LoginUrl")
        if not url:
            why = "not enabled (HostedLogin is Disabled: the stack has no LoginUrl output)"
            return Check("hosted login", Status.SKIP, why)
        return check_login_url(url)


def check_login_url(
    login_url: str, *, timeout: float = HTTP_TIMEOUT_SECONDS, verify: bool | str = True
) -> Check:
    """The hosted login answers ``<LoginUrl>start`` with a page (any HTTP status: without a
    ticket it refuses, which still proves the function URL is there and public)."""
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
            f"{_plural(len(confirmed), 'confirmed subscription')} to {topic} "
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


def _found_over(store: TokenStore, token: Token) -> bool:
    """Whether a run noted this login over beside the token (unreadable notes say nothing)."""
    try:
        notes, _ = store.read_notes()
    except SchwabTokensError:
        return False
    return login_over(notes, token)


# -- reading the credentials without keeping or printing them --------------------------------------
class _Missing(Exception):
    """The credentials are not there (or not readable as text)."""


def _credentials_document(name: str) -> str:
    if name.startswith("ssm:"):
        parameter = name.removeprefix("ssm:")
        what = f"parameter {parameter}"
        try:
            answer = aws.client("ssm").get_parameter(Name=parameter, WithDecryption=True)
        except aws.boto_errors() as exc:
            if aws.error_code(exc) == "ParameterNotFound":
                raise _Missing(f"{what} does not exist") from None
            raise aws.translate(exc, what=what, action="ssm:GetParameter") from exc
        return str(answer["Parameter"].get("Value") or "")
    what = f"secret {name}"
    try:
        answer = aws.client("secretsmanager").get_secret_value(
            SecretId=name, VersionStage="AWSCURRENT"
        )
    except aws.boto_errors() as exc:
        if aws.error_code(exc) == "ResourceNotFoundException":
            raise _Missing(f"{what} does not exist or has no value") from None
        raise aws.translate(exc, what=what, action="secretsmanager:GetSecretValue") from exc
    value = answer.get("SecretString")
    if not isinstance(value, str):
        raise _Missing(f"{what} holds no text")
    return value


def _credentials_arn(name: str, function_arn: str) -> tuple[str, str]:
    """The ARN of the credentials parameter or secret (in the function's partition, region and
    account) and the action that reads it. A secret's ARN ends in ``-`` and six random
    characters; policies name it so, so the pattern matches any."""
    parts = function_arn.split(":")
    partition, region, account = (parts[1], parts[3], parts[4]) if len(parts) > 4 else ("aws",) * 3
    if name.startswith("ssm:"):
        parameter = name.removeprefix("ssm:").lstrip("/")
        return f"arn:{partition}:ssm:{region}:{account}:parameter/{parameter}", "ssm:GetParameter"
    return (
        f"arn:{partition}:secretsmanager:{region}:{account}:secret:{name}-??????",
        "secretsmanager:GetSecretValue",
    )


# -- IAM policies, as far as this check needs them ---------------------------------------------
def _statements(document: Any) -> list[dict[str, Any]]:
    """A policy document's statements: a dict (boto3 decodes AWS's URL-encoded JSON) or JSON
    text. Anything else (moto answers some inline policies as a Python repr) grants nothing."""
    if isinstance(document, str):
        for text in (document, unquote(document)):
            try:
                document = json.loads(text)
                break
            except ValueError:
                continue
    if not isinstance(document, dict):
        return []
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    return [s for s in statements if isinstance(s, dict)]


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _pattern(text: str, case: bool) -> re.Pattern[str]:
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(body, 0 if case else re.IGNORECASE)


def _matches(patterns: list[str], value: str, *, case: bool) -> bool:
    """IAM's wildcards: ``*`` and ``?`` in the policy; ``value`` may hold ``?`` wildcards too
    (a secret's random suffix), each matching any one character of the pattern."""
    for pattern in patterns:
        if "?" in value:
            if fnmatch.fnmatchcase(pattern, value) or _pattern(pattern, case).fullmatch(value):
                return True
        elif _pattern(pattern, case).fullmatch(value):
            return True
    return False


def _applies(statement: dict[str, Any], action: str, resource: str) -> bool:
    if "Action" in statement:
        acted = _matches(_as_list(statement["Action"]), action, case=False)
    else:
        acted = not _matches(_as_list(statement.get("NotAction")), action, case=False)
    if "Resource" in statement:
        on = _matches(_as_list(statement["Resource"]), resource, case=True)
    else:
        on = not _matches(_as_list(statement.get("NotResource")), resource, case=True)
    return acted and on


def policy_allows(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """Whether the identity policies allow ``action`` on ``resource``: an Allow applies and no
    unconditional Deny does. Conditions are not evaluated (an Allow with conditions counts),
    nor are resource policies, permission boundaries or SCPs."""
    for statement in statements:
        if (
            statement.get("Effect") == "Deny"
            and "Condition" not in statement
            and _applies(statement, action, resource)
        ):
            return False
    return any(
        statement.get("Effect") == "Allow" and _applies(statement, action, resource)
        for statement in statements
    )


__all__ = [
    "Check",
    "Report",
    "Status",
    "check_login_url",
    "diagnose",
    "notifications_check",
    "policy_allows",
]
