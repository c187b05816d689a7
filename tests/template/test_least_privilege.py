"""Least privilege, proven: the real code runs as IAM users that hold exactly the template's
policies, against moto's server with IAM enforcement on, and every call it makes is allowed.

For each store the stack is deployed on the server (``tests.template.stack``) and its policies are
read back from moto's IAM, resolved for the stack's real bucket, secret and topic: the
refresher's (its role's inline policies and the shared TokenWriterPolicy), the login function's
(TokenWriterPolicy) and the consumers' (TokenReaderPolicy). One IAM user per identity holds
exactly those documents; its keys reach the package through boto3's own chain (environment
variables), with ``schwab_tokens.aws.reset_clients()`` between identities. Then:

- an administrator stores the app credentials and logs in from a "laptop" (Schwab emulator);
- the refresher runs a forced refresh, then a scheduled run a day before the login ends, which
  refreshes and notifies the topic (with a login link, so it reads the credentials again);
- the hosted login replaces the login from a "phone" (start, Schwab, callback);
- a consumer reads the token, and its schwab-py write hook is denied and says nothing;
- the consumer is denied the app credentials and any write to the token.

moto 5.2 checks the action of every request and, for S3, the object's ARN; it evaluates neither
conditions nor resource policies, and compares other services' resources with ``*``: their
statements are given ``Resource: "*"`` here (the actions stay exactly the template's), and their
resource scoping is checked on the deployed template (test_deploy, test_template). Every call
is recorded with botocore's ``after-call`` event; the grants no call used are printed.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from schwab_tokens import TokenReader, aws, tickets
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.emulator import Emulator
from tests.helpers import follow_authorize, lambda_event, login
from tests.template import as_list
from tests.template.stack import (
    REGION,
    Deployment,
    deploy,
    managed_policy,
    role_policies,
)

DOMAIN = "lpabcdefghijklmnopqrstuvwxyz0123.lambda-url.us-east-1.on.aws"
LOGIN_URL = f"https://{DOMAIN}/"
SERVICES = ("s3", "secretsmanager", "ssm", "sns")
#: How a denial comes back (moto's JSON services answer a bare 403).
DENIED = ("AccessDenied", "AccessDeniedException", "403")
#: Granted until this round, removed because no call needs them (and s3:DeleteObject on the
#: token object: only the lease object is ever deleted).
REMOVED_ACTIONS = {"s3:ListBucket", "kms:Encrypt", "secretsmanager:ListSecretVersionIds"}
#: Used by Lambda itself on the role's behalf, never by the code: the on-failure destination.
USED_BY_LAMBDA = {"sqs:SendMessage"}
SCENARIOS = {
    "s3-store": {"StoreType": "S3", "CredentialsStore": "SecretsManager", "HostedLogin": "Enabled"},
    "secretsmanager-store": {
        "StoreType": "SecretsManager",
        "CredentialsStore": "ParameterStore",
        "HostedLogin": "Enabled",
    },
}


# ---------------------------------------------------------------------------- the server
def _post(server: str, path: str, data: bytes = b"") -> None:
    request = urllib.request.Request(
        f"{server}{path}", data=data, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A moto server of this module's own. IAM enforcement is switched with moto's
    ``/moto-api/reset-auth`` (the INITIAL_NO_AUTH_ACTION_COUNT setting, which moto reads once at
    import: a process that imported moto earlier would ignore the environment variable). It is
    process-wide, so it is always switched off again before anything else runs."""
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        yield url
    finally:
        _post(url, "/moto-api/reset-auth", b"inf")
        moto.stop()


@contextmanager
def iam_enforced(server: str) -> Iterator[None]:
    _post(server, "/moto-api/reset-auth", b"0")
    try:
        yield
    finally:
        _post(server, "/moto-api/reset-auth", b"inf")


# ---------------------------------------------------------------------------- identities
@dataclass
class Call:
    identity: str
    action: str  # the IAM action
    resource: str  # the S3 object's ARN; "*" for other services (what moto checks)
    error: str | None


@dataclass
class Record:
    calls: list[Call] = field(default_factory=list)

    def of(self, identity: str) -> list[Call]:
        return [c for c in self.calls if c.identity == identity]

    def denied(self, identity: str) -> list[Call]:
        return [c for c in self.of(identity) if c.error in DENIED]


def _iam_action(service: str, operation: str) -> str:
    return (
        "s3:GetObject" if (service, operation) == ("s3", "HeadObject") else f"{service}:{operation}"
    )


@contextmanager
def acting_as(identity: str, keys: dict[str, str], record: Record) -> Iterator[None]:
    """The package's AWS calls made with ``keys`` (environment variables, boto3's own chain),
    each recorded with the action IAM checks."""
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(AWS_ACCESS_KEY_ID=keys["id"], AWS_SECRET_ACCESS_KEY=keys["secret"])
    aws.reset_clients()

    def after_call(
        http_response: Any, parsed: Any, model: Any, params: Any = None, **_: Any
    ) -> None:
        service = model.service_model.endpoint_prefix
        resource = "*"
        if service == "s3":
            resource = f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"
        error = parsed.get("Error", {}).get("Code") if isinstance(parsed, dict) else None
        record.calls.append(Call(identity, _iam_action(service, model.name), resource, error))

    def remember_params(params: Any, context: Any, **_: Any) -> None:
        context["schwab_tokens_params"] = dict(params)

    def with_params(context: Any, **kwargs: Any) -> None:
        after_call(params=context.get("schwab_tokens_params"), **kwargs)

    for service in SERVICES:
        events = aws.client(service).meta.events
        events.register("provide-client-params.*.*", remember_params)
        events.register("after-call.*.*", with_params)
    try:
        yield
    finally:
        aws.reset_clients()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def for_moto(document: dict[str, Any]) -> dict[str, Any]:
    """The template's document as moto can check it: S3 statements exactly as they are; others
    with ``Resource: "*"`` (moto compares their resource with "*", see the module docstring)."""
    statements = []
    for statement in document["Statement"]:
        names = as_list(statement["Action"])
        if not all(name.startswith("s3:") for name in names):
            statement = {**statement, "Resource": "*"}
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def grants(documents: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(action, resource) pairs; resource "*" for services other than S3."""
    found = set()
    for document in documents:
        for statement in document["Statement"]:
            for name in as_list(statement["Action"]):
                for target in as_list(statement["Resource"]):
                    found.add((name, target if name.startswith("s3:") else "*"))
    return found


def make_user(iam: Any, name: str, documents: list[dict[str, Any]]) -> dict[str, str]:
    iam.create_user(UserName=name)
    for number, document in enumerate(documents):
        iam.put_user_policy(
            UserName=name, PolicyName=f"template-{number}", PolicyDocument=json.dumps(document)
        )
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"id": key["AccessKeyId"], "secret": key["SecretAccessKey"]}


# ---------------------------------------------------------------------------- the world
@dataclass
class World:
    deployment: Deployment
    emulator: Emulator
    record: Record
    keys: dict[str, dict[str, str]]
    #: identity -> the template's documents it holds
    policies: dict[str, list[dict[str, Any]]]

    @property
    def store_url(self) -> str:
        return self.deployment.outputs["StoreUrl"]

    @property
    def credentials(self) -> str:
        return self.deployment.outputs["CredentialsSecretName"]

    def settings(self, **extra: Any) -> Settings:
        return Settings(
            store_url=self.store_url,
            credentials_secret=self.credentials,
            api_base=self.emulator.base_url,
            http_timeout=5,
            http_retries=0,
            **extra,
        )

    def admin_login(self) -> None:
        """The laptop, as an administrator: `login --credentials-secret`, then the first login."""
        with self.acting_as("admin"):
            creds = AppCredentials(
                self.emulator.app_key, self.emulator.app_secret, self.emulator.callback_url
            )
            store_credentials(self.credentials, creds)
            login(store_from_url(self.store_url), self.emulator)

    def acting_as(self, identity: str) -> Any:
        return acting_as(identity, self.keys[identity], self.record)


@pytest.fixture(params=sorted(SCENARIOS))
def world(
    request: pytest.FixtureRequest,
    server: str,
    emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    import boto3

    _post(server, "/moto-api/reset")
    monkeypatch.setenv("AWS_ENDPOINT_URL", server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    deployment = deploy(session, f"lp-{request.param}", SCENARIOS[request.param])
    iam = session.client("iam")
    writer = managed_policy(session, deployment.physical("TokenWriterPolicy"))
    inline = role_policies(session, deployment.physical("RefresherFunctionRole"))
    policies = {
        "refresher": [writer, *inline],
        "login": [writer],
        "reader": [managed_policy(session, deployment.physical("TokenReaderPolicy"))],
        "admin": [{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}],
    }
    keys = {
        name: make_user(iam, f"{deployment.name}-{name}", [for_moto(d) for d in documents])
        for name, documents in policies.items()
    }
    # What the stack makes and moto's CloudFormation cannot (stood in): the empty secrets.
    secrets = session.client("secretsmanager")
    if not deployment.has("TokenBucket"):
        secrets.create_secret(Name=f"{deployment.name}/tokens")
    if deployment.has("CredentialsSecret"):
        secrets.create_secret(Name=deployment.outputs["CredentialsSecretName"])
    emulator.register_callback(LOGIN_URL + "callback")
    with iam_enforced(server):
        yield World(deployment, emulator, Record(), keys, policies)
    aws.reset_clients()


def url_event(path: str, query: str, cookies: list[str] | None = None) -> dict[str, Any]:
    """A Function URL request (payload format 2.0) as AWS sends it."""
    return {
        "version": "2.0",
        "rawPath": path,
        "rawQueryString": query,
        "cookies": cookies or [],
        "headers": {"host": DOMAIN},
        "requestContext": {"domainName": DOMAIN, "http": {"method": "GET", "path": path}},
    }


def cookie_jar(answer: dict[str, Any]) -> list[str]:
    return [c.split(";", 1)[0] for c in answer.get("cookies", []) if c.split(";", 1)[0][-1] != "="]


# ---------------------------------------------------------------------------- the test
def test_every_call_is_allowed_and_every_grant_is_used(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # The handlers' modules (powertools) are imported when a test needs them, not at collection.
    from schwab_tokens.lambdas import login as login_lambda
    from schwab_tokens.lambdas import refresher

    emulator, record = world.emulator, world.record
    world.admin_login()

    with world.acting_as("refresher"):
        settings = world.settings(
            topic_arn=world.deployment.outputs["AlarmTopicArn"], login_url=LOGIN_URL
        )
        forced = refresher.handle(lambda_event("force_refresh.json"), settings, clock=emulator.now)
        assert forced["outcome"] == "refreshed", forced
        emulator.advance(6.5 * 24 * 3600)  # a day before the login ends: refresh and notify
        due = refresher.handle(lambda_event("scheduled.json"), settings, clock=emulator.now)
        assert due["outcome"] == "refreshed", due
    published = [c for c in record.of("refresher") if c.action == "sns:Publish"]
    assert len(published) == 1 and published[0].error is None

    with world.acting_as("login"):  # the phone: link, Schwab, callback
        settings = world.settings()
        current = store_from_url(world.store_url).read().token
        key = tickets.ticket_key(emulator.app_secret)
        ticket = tickets.mint(key, world.store_url, current.creation_timestamp, emulator.now())
        started = login_lambda.handle(
            url_event("/start", f"ticket={ticket}"), settings, emulator.now
        )
        assert started["statusCode"] == 302, started
        callback = urlsplit(follow_authorize(started["headers"]["Location"]))
        done = login_lambda.handle(
            url_event("/callback", callback.query, cookie_jar(started)), settings, emulator.now
        )
        assert done["statusCode"] == 200, done["body"]
        assert (
            store_from_url(world.store_url).read().token.creation_timestamp
            > current.creation_timestamp
        )

    with world.acting_as("reader"):  # a consumer with the reader policy
        reader = TokenReader(world.store_url)
        assert reader.access_token()
        _, write = reader.access_functions()
        write(reader.document(), refresh_token="r", access_token="a")  # denied, quietly
    # The write hook's first write call is refused (S3: the conditional put; Secrets Manager:
    # reading the labels before a new version), and the hook returns without raising.
    (refused,) = record.denied("reader")
    assert refused.action in ("s3:PutObject", "secretsmanager:DescribeSecret"), refused

    for identity in ("admin", "refresher", "login"):
        assert not record.denied(identity), record.denied(identity)

    with capsys.disabled():
        print(f"\n{world.deployment.name}: grants no call used")
    for identity in ("refresher", "login", "reader"):
        granted = grants(world.policies[identity])
        used = {(c.action, c.resource) for c in record.of(identity) if c.error is None}
        unused = {g for g in granted - used if g[0] not in USED_BY_LAMBDA}
        with capsys.disabled():
            print(f"  {identity}: {sorted(unused) or 'none'} (of {len(granted)})")
        assert not unused, f"{identity} holds grants no call used: {sorted(unused)}"
    # What the template granted until this round: no call needs it.
    functions = [c for c in record.calls if c.identity != "admin"]
    assert not {c.action for c in functions} & REMOVED_ACTIONS
    assert all(c.resource.endswith(".lease") for c in functions if c.action == "s3:DeleteObject")


def test_a_consumer_cannot_read_the_app_credentials_or_write_the_token(world: World) -> None:
    import boto3
    from botocore.exceptions import ClientError

    world.admin_login()
    keys = world.keys["reader"]
    session = boto3.session.Session(
        aws_access_key_id=keys["id"], aws_secret_access_key=keys["secret"], region_name=REGION
    )
    attempts = []
    if world.credentials.startswith("ssm:"):
        name = world.credentials.removeprefix("ssm:")
        attempts.append(lambda: session.client("ssm").get_parameter(Name=name, WithDecryption=True))
    else:
        attempts.append(
            lambda: session.client("secretsmanager").get_secret_value(SecretId=world.credentials)
        )
    if world.deployment.has("TokenBucket"):
        bucket = world.deployment.physical("TokenBucket")
        s3 = session.client("s3")
        for key in ("schwab/tokens.json", "schwab/tokens.json.notes", "schwab/tokens.json.lease"):
            attempts.append(lambda key=key: s3.put_object(Bucket=bucket, Key=key, Body=b"{}"))
        attempts.append(lambda: s3.get_object(Bucket=bucket, Key="schwab/tokens.json.notes"))
        attempts.append(lambda: s3.delete_object(Bucket=bucket, Key="schwab/tokens.json"))
    else:
        sm = session.client("secretsmanager")
        name = f"{world.deployment.name}/tokens"
        attempts.append(lambda: sm.put_secret_value(SecretId=name, SecretString="{}"))
        attempts.append(lambda: sm.describe_secret(SecretId=name))
        attempts.append(
            lambda: sm.update_secret_version_stage(SecretId=name, VersionStage="lease.x")
        )
    for attempt in attempts:
        with pytest.raises(ClientError) as denied:
            attempt()
        assert denied.value.response["Error"]["Code"] in DENIED
