"""Least privilege, proven: the real code runs as IAM users that hold exactly the template's
policies, against moto's server with IAM enforcement on, and every call it makes is allowed.

For each store the stack is deployed on the server (``tests.template.stack``) and its policies are
read back from moto's IAM, resolved for the stack's real bucket, secret and topic: the
refresher's (its role's inline policies and the shared TokenWriterPolicy), the login function's
(TokenWriterPolicy), the consumers' (TokenReaderPolicy: the access view only) and the bots'
(TokenDocumentPolicy: the whole document, for bots that refresh it themselves). One IAM user per
identity holds exactly those documents; its keys reach the package through boto3's own chain
(environment variables), with ``schwab_tokens.aws.reset_clients()`` between identities. Then:

- an administrator stores the app credentials and logs in from a "laptop" (Schwab emulator);
- the refresher runs a forced refresh, then a scheduled run a day before the login ends, which
  refreshes and notifies the topic (with a login link, so it reads the credentials again);
- the hosted login replaces the login from a "phone" (start, Schwab, callback);
- a consumer reads the access view (TOKEN_ACCESS_URL), and its schwab-py hooks make no call;
  reading the token document itself is AccessDenied;
- a bot refreshes through TokenReader's schwab-py write hook, then runs the refresh policy
  under the lease, with the bot policy alone;
- the consumer is denied the app credentials, the token document and any write; the bot is
  denied the app credentials and the notes.

moto 5.2 checks the action of every request and, for S3, the object's ARN; it evaluates neither
conditions nor resource policies, and compares other services' resources with ``*``: their
statements are given ``Resource: "*"`` here (``tests.template.iam.for_moto``: the actions stay
exactly the template's), and their resource scoping and the KMS statements' encryption contexts
are checked on the template (test_template, test_deploy). Every call is recorded with botocore's
``after-call`` event; the grants no call used are printed, and there must be none but the ones
AWS uses on the code's behalf (``USED_BY_LAMBDA``, ``IMPLICIT``).

The token's perimeter (the bucket policy, the secrets' resource policies) is a resource policy,
which moto ignores: the stack is deployed naming the administrator and the bot, as docs/deploy.md
tells a user to, and every call the code made is evaluated again, as the functions' roles and the
users it stood for, with those policies and their conditions (``perimeter_allows``, the evaluator
of tests.template.perimeter): none is refused, and the same bot, undeclared, would be.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from devkit.emulator import Emulator
from devkit.template import as_list, load_template
from devkit.user import cli_env, follow_authorize, login, oauth_for, paste_login
from schwab_tokens import TokenReader, aws, tickets
from schwab_tokens.access import AccessView
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.errors import AccessDenied
from schwab_tokens.policy import Outcome, run
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from tests.helpers import accepted, lambda_event
from tests.template.iam import DENIED, Call, Record, acting_as, grants, make_user
from tests.template.perimeter import Request, allowed, node
from tests.template.stack import (
    ACCOUNT,
    REGION,
    Deployment,
    deploy,
    managed_policy,
    role_policies,
)

DOMAIN = "lpabcdefghijklmnopqrstuvwxyz0123.lambda-url.us-east-1.on.aws"
LOGIN_URL = f"https://{DOMAIN}/"
#: Granted until an earlier round, removed because no call needs them (and s3:DeleteObject on
#: the token object: only the lease object is ever deleted). No KMS call is the code's own:
#: S3, Secrets Manager and SSM call KMS on the caller's behalf (test_template checks those).
REMOVED_ACTIONS = {"secretsmanager:ListSecretVersionIds"}
#: Used by Lambda itself on the role's behalf, never by the code: the on-failure destination.
USED_BY_LAMBDA = {"sqs:SendMessage"}
#: Evaluated by S3 itself, never called: a GetObject or HeadObject of a missing key answers 404
#: NoSuchKey only to a caller that has s3:ListBucket on the bucket, 403 AccessDenied to any
#: other, and the writers must tell a fresh stack's missing token ("login required") from a
#: denial. moto answers 404 either way, so no recorded call can show it in use; its scoping (the
#: stack's bucket, no condition) is checked on the template (test_template, test_deploy), and
#: its effect through the 403 proxy (test_first_day).
IMPLICIT = {"s3:ListBucket"}
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


# ---------------------------------------------------------------------------- the world
@dataclass
class World:
    deployment: Deployment
    emulator: Emulator
    record: Record
    keys: dict[str, dict[str, str]]
    #: identity -> the template's documents it holds
    policies: dict[str, list[dict[str, Any]]]
    #: identity -> the ARN AWS would match: the functions' roles (their users stand in for
    #: them), the users themselves for the others
    arns: dict[str, str]

    @property
    def store_url(self) -> str:
        return self.deployment.outputs["StoreUrl"]

    @property
    def access_url(self) -> str:
        return self.deployment.outputs["AccessTokenUrl"]

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
    name = f"lp-{request.param}"
    user = f"arn:aws:iam::{ACCOUNT}:user/{name}"
    # The perimeter names the administrator and the bot, as docs/deploy.md tells a user to.
    admins = load_template()["Parameters"]["AdministratorPrincipals"]["Default"]
    parameters = {
        **SCENARIOS[request.param],
        "AdministratorPrincipals": f"{admins},{user}-admin,{user}-laptop",
        "DocumentReaderPrincipals": f"{user}-bot",
    }
    deployment = deploy(session, name, parameters)
    iam = session.client("iam")
    writer = managed_policy(session, deployment.physical("TokenWriterPolicy"))
    inline = role_policies(session, deployment.physical("RefresherFunctionRole"))
    policies = {
        "refresher": [writer, *inline],
        "login": [writer],
        "reader": [managed_policy(session, deployment.physical("TokenReaderPolicy"))],
        "bot": [managed_policy(session, deployment.physical("TokenDocumentPolicy"))],
        "admin": [{"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}],
        "laptop": [writer, laptop_extras(deployment)],
    }
    keys = {
        name: make_user(iam, f"{deployment.name}-{name}", documents)
        for name, documents in policies.items()
    }
    arns = {name: f"{user}-{name}" for name in policies}
    for name, logical in (("refresher", "RefresherFunctionRole"), ("login", "LoginFunctionRole")):
        arns[name] = iam.get_role(RoleName=deployment.physical(logical))["Role"]["Arn"]
    # What the stack makes and moto's CloudFormation cannot (stood in): the empty secrets.
    secrets = session.client("secretsmanager")
    if not deployment.has("TokenBucket"):
        secrets.create_secret(Name=f"{deployment.name}/tokens")
    if deployment.has("CredentialsSecret"):
        secrets.create_secret(Name=deployment.outputs["CredentialsSecretName"])
    emulator.register_callback(LOGIN_URL + "callback")
    with iam_enforced(server):
        yield World(deployment, emulator, Record(), keys, policies, arns)
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


def laptop_extras(deployment: Deployment) -> dict[str, Any]:
    """What docs/security.md tells a narrower identity to add to TokenWriterPolicy to run
    `schwab-tokens login`: the lease the login's write check takes (S3), and the first
    storing of the app credentials."""
    statements: list[dict[str, Any]] = []
    if deployment.has("TokenBucket"):
        lease = f"arn:aws:s3:::{deployment.physical('TokenBucket')}/schwab/tokens.json.lease"
        statements.append(
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": lease,
            }
        )
    if deployment.has("CredentialsSecret"):
        secret = deployment.outputs["CredentialsSecretName"]
        action, resource = "secretsmanager:PutSecretValue", f"arn:aws:secretsmanager:*:*:{secret}"
    else:
        action = "ssm:PutParameter"
        resource = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{deployment.name}/credentials"
    statements.append({"Effect": "Allow", "Action": action, "Resource": resource})
    return {"Version": "2012-10-17", "Statement": statements}


def perimeter_allows(world: World, call: Call, arn: str | None = None) -> bool:
    """Whether AWS would allow ``call`` (made by ``call.identity``, or by ``arn`` holding the
    same policies) with the stack's resource policies and every condition: moto checked its
    action only. The evaluator is tests.template.perimeter's."""
    deployment, service = world.deployment, call.action.split(":")[0]
    policy = None
    if service == "s3":
        resource = call.resource
        policy = deployment.properties("TokenBucketPolicy")["PolicyDocument"]
    elif service == "secretsmanager":  # the ARN the template's Ref names (stack.py)
        resource = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{call.target}-AbCdEf"
        secret = "CredentialsSecret" if call.target == world.credentials else "TokenSecret"
        policy = deployment.properties(f"{secret}Policy")["ResourcePolicy"]
    elif service == "ssm":
        resource = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{call.target}"
    else:
        resource = call.target  # the topic
        policy = deployment.properties("AlarmTopicPolicy")["PolicyDocument"]
    principal = node(arn or world.arns[call.identity], world.policies[call.identity])
    return allowed(principal, Request("", call.action, "", "", resource, (), policy))


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

    with world.acting_as("admin"):
        stored = store_from_url(world.store_url).read().token

    with world.acting_as("reader"):  # a consumer with the reader policy: the access view
        reader = TokenReader.from_env({"TOKEN_ACCESS_URL": world.access_url})
        assert reader.access_token() == stored.access_token  # the login's view, kept by it
        assert isinstance(reader.token(), AccessView)
        assert "refresh_token" not in reader.document()["token"]
        read, write = reader.access_functions()
        assert read()["token"]["access_token"] == stored.access_token
        write(read(), refresh_token="r", access_token="a")  # nothing to store: no call at all
        # The acceptance check: with only the reader policy the token document is AccessDenied.
        with pytest.raises(AccessDenied):
            TokenReader(world.store_url).token()
    (refused,) = record.denied("reader")
    assert (refused.action, refused.target) in (
        ("s3:GetObject", world.store_url.replace("s3://", "arn:aws:s3:::")),
        ("secretsmanager:GetSecretValue", world.store_url.removeprefix("secretsmanager://")),
    ), refused
    allowed = [(c.action, c.target) for c in record.of("reader") if c.error is None]
    assert allowed in (
        [("s3:GetObject", world.access_url.replace("s3://", "arn:aws:s3:::"))],
        [("ssm:GetParameter", world.access_url.removeprefix("ssm:"))],
    ), allowed

    with world.acting_as("bot"):  # a long-running bot that refreshes itself: the bot policy
        bot = TokenReader(world.store_url)
        held = bot.token()
        _, hook = bot.access_functions()
        # What schwab-py's client does when its token nears expiry: authlib refreshes at
        # Schwab (the emulator) with the bot's own app, then calls the write hook.
        answer = oauth_for(emulator).refresh(held.refresh_token)
        new = held.refreshed(answer, now=emulator.now())
        hook(
            new.schwab_py_document(), refresh_token=new.refresh_token, access_token=new.access_token
        )
        store = store_from_url(world.store_url)
        assert store.read().token.access_token == new.access_token
        view, _ = store.view.current()
        assert view is not None and view.access_token == new.access_token  # kept in step
        # The refresh policy under the lease, as `schwab-tokens watch` runs it.
        result = run(store, lambda: oauth_for(emulator), force=True, clock=emulator.now)
        assert result.outcome is Outcome.REFRESHED, result
        assert store.view.current()[0] == AccessView.from_token(store.read().token)
        # Schwab's verdict on the refresh token (wrongly, this once): the bot notes it beside
        # the token and marks the view, as every writer does; its next refresh takes it back.
        emulator.set_fault("invalid_grant", count=1)
        dead = run(store, lambda: oauth_for(emulator), force=True, clock=emulator.now)
        assert dead.outcome is Outcome.REAUTH_REQUIRED, dead
        assert store.read_notes()[0].get("over") == 1
        again = run(store, lambda: oauth_for(emulator), force=True, clock=emulator.now)
        assert again.outcome is Outcome.REFRESHED, again
        assert "over" not in store.read_notes()[0]
    # Not the app credentials (the bot brings its own app). The notes, yes: running the refresh
    # policy, it notes what it finds of the login, as every writer does.
    touched = {c.target for c in record.of("bot")}
    assert not [t for t in touched if "credentials" in t], touched

    for identity in ("admin", "refresher", "login", "bot"):
        assert not record.denied(identity), record.denied(identity)
    # The token's perimeter (the bucket policy, the secrets' resource policies), which moto does
    # not evaluate, locks none of them out: every call they made is one AWS allows them.
    made = [c for c in record.calls if c.error is None]
    assert {c.identity for c in made} == {"admin", "refresher", "login", "reader", "bot"}
    assert not [c for c in made if not perimeter_allows(world, c)]
    assert not perimeter_allows(world, refused)  # the reader's try at the token document
    # The same bot, not declared in DocumentReaderPrincipals, is refused the token itself.
    stranger = f"arn:aws:iam::{ACCOUNT}:user/undeclared-bot"
    token_calls = [c for c in record.of("bot") if c.error is None and "access" not in c.target]
    assert token_calls and not any(perimeter_allows(world, c, stranger) for c in token_calls)

    with capsys.disabled():
        print(f"\n{world.deployment.name}: grants no call used")
    for identity in ("refresher", "login", "reader", "bot"):
        granted = grants(world.policies[identity])
        used = {(c.action, c.resource) for c in record.of(identity) if c.error is None}
        unused = {g for g in granted - used if g[0] not in USED_BY_LAMBDA | IMPLICIT}
        with capsys.disabled():
            print(f"  {identity}: {sorted(unused) or 'none'} (of {len(granted)})")
        assert not unused, f"{identity} holds grants no call used: {sorted(unused)}"
    # What the template granted until an earlier round: no call needs it.
    functions = [c for c in record.calls if c.identity != "admin"]
    assert not {c.action for c in functions} & (REMOVED_ACTIONS | IMPLICIT)
    assert all(c.resource.endswith(".lease") for c in functions if c.action == "s3:DeleteObject")


def test_a_laptop_with_the_documented_grants_logs_in(world: World) -> None:
    """docs/security.md: `login` needs TokenWriterPolicy plus ``laptop_extras``. With them the
    first login (which stores the app credentials) and the weekly one (which reads them) work
    through the real CLI; with TokenWriterPolicy alone, the first login is refused, naming what
    is missing, before a Schwab login is spent."""
    emulator = world.emulator

    def env(identity: str, **extra: str) -> dict[str, str]:
        keys = world.keys[identity]
        return cli_env(
            emulator,
            AWS_ACCESS_KEY_ID=keys["id"],
            AWS_SECRET_ACCESS_KEY=keys["secret"],
            AWS_DEFAULT_REGION=REGION,
            **extra,
        )

    args = [
        "--store",
        world.store_url,
        "--credentials-secret",
        world.credentials,
        "--callback-url",
        emulator.callback_url,
    ]
    if world.deployment.has("TokenBucket"):
        # (moto compares SSM resources with "*": the Secrets Manager store's writer holds
        # ssm:PutParameter for its view, so there the refusal cannot be shown.)
        refused = paste_login(args, env("login"))
        assert refused.code == 5, refused.text
        assert "s3:PutObject" in refused.err and "tokens.json.lease" in refused.err, refused.err
        assert emulator.token_calls == 0  # refused before Schwab's code was spent

    first = paste_login(args, env("laptop"))
    assert first.code == 0, first.text
    assert f"App key and secret stored in {world.credentials}" in first.out
    weekly = paste_login(args, {k: v for k, v in env("laptop").items() if k != "SCHWAB_APP_SECRET"})
    assert weekly.code == 0, weekly.text
    with world.acting_as("admin"):
        stored = store_from_url(world.store_url).read().token
    assert accepted(emulator, stored.access_token)
    assert stored.creation_timestamp >= emulator.now() - 60
    if not world.deployment.has("TokenBucket"):
        # A secret the stack did not make: the missing CreateSecret is what the error names.
        with world.acting_as("laptop"), pytest.raises(AccessDenied, match=":CreateSecret"):
            store_from_url("secretsmanager://not-made-by-the-stack").write(stored, None)


def attempts_denied(world: World, identity: str, attempts: list[Any]) -> None:
    import boto3
    from botocore.exceptions import ClientError

    keys = world.keys[identity]
    session = boto3.session.Session(
        aws_access_key_id=keys["id"], aws_secret_access_key=keys["secret"], region_name=REGION
    )
    for attempt in attempts:
        with pytest.raises(ClientError) as denied:
            attempt(session)
        assert denied.value.response["Error"]["Code"] in DENIED, attempt


def credentials_attempts(world: World) -> list[Any]:
    """Reading the app credentials (a secret; an SSM parameter only where the identity holds no
    ssm:GetParameter at all: moto compares SSM resources with "*", so the parameter's own
    scoping is checked on the policy as created instead, below)."""
    if world.credentials.startswith("ssm:"):
        name = world.credentials.removeprefix("ssm:")
        return [lambda s: s.client("ssm").get_parameter(Name=name, WithDecryption=True)]
    return [lambda s: s.client("secretsmanager").get_secret_value(SecretId=world.credentials)]


def ssm_resources(world: World, identity: str) -> set[str]:
    return {
        resource
        for document in world.policies[identity]
        for statement in document["Statement"]
        if any(action.startswith("ssm:") for action in as_list(statement["Action"]))
        for resource in as_list(statement["Resource"])
    }


def consumer_is_denied_the_token_document_the_credentials_and_any_write(world: World) -> None:
    view_parameter = (
        f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{world.deployment.name}/tokens.access"
    )
    attempts = []
    if world.deployment.has("TokenBucket"):
        bucket = world.deployment.physical("TokenBucket")
        attempts += credentials_attempts(world)
        for key in ("tokens.json", "tokens.json.notes", "tokens.json.lease", "tokens.access.json"):
            attempts.append(
                lambda s, key=key: s.client("s3").put_object(
                    Bucket=bucket, Key=f"schwab/{key}", Body=b"{}"
                )
            )
        for key in ("tokens.json", "tokens.json.notes", "tokens.json.lease"):
            attempts.append(
                lambda s, key=key: s.client("s3").get_object(Bucket=bucket, Key=f"schwab/{key}")
            )
        attempts.append(
            lambda s: s.client("s3").delete_object(Bucket=bucket, Key="schwab/tokens.json")
        )
        assert ssm_resources(world, "reader") == set()
    else:
        name = f"{world.deployment.name}/tokens"
        attempts.append(lambda s: s.client("secretsmanager").get_secret_value(SecretId=name))
        attempts.append(
            lambda s: s.client("secretsmanager").put_secret_value(SecretId=name, SecretString="{}")
        )
        attempts.append(lambda s: s.client("secretsmanager").describe_secret(SecretId=name))
        attempts.append(
            lambda s: s.client("secretsmanager").update_secret_version_stage(
                SecretId=name, VersionStage="lease.x"
            )
        )
        attempts.append(
            lambda s: s.client("ssm").put_parameter(
                Name=f"/{name}.access", Value="{}", Type="SecureString", Overwrite=True
            )
        )
        # The consumer holds ssm:GetParameter on the view's parameter, and on nothing else.
        assert ssm_resources(world, "reader") == {view_parameter}
    attempts_denied(world, "reader", attempts)


def bot_is_denied_the_app_credentials_and_deletes(world: World) -> None:
    """A bot brings its own app key and secret, and never deletes the token (its notes it keeps,
    as every writer of the refresh policy does)."""
    attempts = []
    if world.deployment.has("TokenBucket"):
        bucket = world.deployment.physical("TokenBucket")
        attempts += credentials_attempts(world)
        attempts.append(
            lambda s: s.client("s3").delete_object(Bucket=bucket, Key="schwab/tokens.json")
        )
    else:
        # The notes are a staging label of the token's secret (the store's own actions); the
        # credentials parameter is outside the bot's one SSM resource, the view's parameter.
        name = world.deployment.name
        assert ssm_resources(world, "bot") == {
            f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{name}/tokens.access"
        }
        attempts.append(lambda s: s.client("ssm").delete_parameter(Name=f"/{name}/tokens.access"))
        attempts.append(
            lambda s: s.client("secretsmanager").delete_secret(SecretId=f"{name}/tokens")
        )
    attempts_denied(world, "bot", attempts)


def test_consumers_and_bots_are_denied_what_they_do_not_need(world: World) -> None:
    world.admin_login()
    consumer_is_denied_the_token_document_the_credentials_and_any_write(world)
    bot_is_denied_the_app_credentials_and_deletes(world)
