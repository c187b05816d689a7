"""``schwab-tokens doctor`` as a user runs it: the CLI in a subprocess, each test asserting the
exact line the user reads and the exit code.

The stack is template.yaml deployed the way ``tests/template/stack.py`` deploys it, once for the
whole session: the first worker that needs it starts a moto server in a process of its own
(the suite's other modules reset the in-process moto backends, which a server thread here would
share), deploys the default stack there, logs in through the emulator and stores the app
credentials; the other xdist workers find it in the session's shared temporary folder. The
server lives until the session ends. The stack tests take turns (a file lock), and each puts
the deployment back as it was made (token, view, notes, credentials, schedule, subscriptions)
before it runs, so they depend neither on one another nor on their order. The CLI reaches the
server through ``AWS_ENDPOINT_URL``, as users reach LocalStack.

What moto 5.2 does not do as AWS does is stood in, and said so where it is:

- moto's CloudFormation drops an ``AWS::IAM::Role``'s ``ManagedPolicyArns``: the stack's own
  managed policies are attached to the roles the translated template names them for;
- moto lists a new *e-mail* subscription with its ARN at once, where AWS lists it as
  ``PendingConfirmation`` until the owner clicks the link: the confirmed subscription here is an
  SQS queue's (AWS confirms a same-account queue at once), and the pending case is checked
  against AWS's own answer in ``test_a_pending_email_subscription_names_the_address``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytest

from devkit import REPO
from devkit.background import free_port
from devkit.emulator import Emulator
from devkit.user import Run, login, run_cli
from schwab_tokens import aws
from schwab_tokens.access import AccessView
from schwab_tokens.credentials import AppCredentials, store_credentials
from schwab_tokens.diagnosis import (
    Check,
    Report,
    Status,
    check_login_url,
    fail,
    notifications_check,
    ok,
)
from schwab_tokens.errors import ExitCode
from schwab_tokens.settings import Settings
from schwab_tokens.stores import store_from_url
from schwab_tokens.timefmt import duration, when
from schwab_tokens.token import REFRESH_TOKEN_LIFETIME, Token, fingerprint
from tests.fakes import token_at
from tests.helpers import assert_no_secrets, secrets_of
from tests.template.stack import REGION, Deployment, deploy

STACK = "doctor"
DAY = 24 * 3600

#: A moto server in its own process, with the deploy's one patch to moto applied there (moto
#: keeps AWS::NoValue list items as null; see tests/template/stack.py). It stops when the
#: pytest session's process (argv[1]) is gone.
SERVER = """
import os, sys, time
from moto.server import ThreadedMotoServer
from tests.template.stack import moto_drops_novalue_in_lists

patch = moto_drops_novalue_in_lists()  # kept: a dropped generator would undo the patch
patch.__enter__()
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
host, port = server.get_host_and_port()
print(f"http://{host}:{port}", flush=True)
session = int(sys.argv[1])
while True:
    time.sleep(0.5)
    try:
        os.kill(session, 0)
    except ProcessLookupError:
        break
server.stop()
"""


@dataclass
class Deployed:
    """What the tests need of the deployment (JSON, shared by the workers)."""

    endpoint: str
    outputs: dict[str, str]
    schedule_rule: str
    refresher_role: str
    writer_policy: str
    app_key: str
    app_secret: str
    callback_url: str
    token: str
    view: str
    secrets: list[str]
    lock: str

    @property
    def store_url(self) -> str:
        return self.outputs["StoreUrl"]

    @property
    def bucket(self) -> str:
        return self.store_url.removeprefix("s3://").partition("/")[0]


def aws_settings(env: pytest.MonkeyPatch, endpoint: str, tmp: Path) -> None:
    """boto3 pointed at the moto server, with nothing of the developer's AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            env.delenv(name)
    env.setenv("AWS_ENDPOINT_URL", endpoint)
    env.setenv("AWS_ACCESS_KEY_ID", "testing")
    env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    env.setenv("AWS_DEFAULT_REGION", REGION)
    env.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))
    env.setenv("AWS_EC2_METADATA_DISABLED", "true")
    aws.reset_clients()


@contextlib.contextmanager
def exclusive(path: str | Path) -> Iterator[None]:
    with open(path, "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(held, fcntl.LOCK_UN)


def start_moto() -> str:
    """The session's moto server process (xdist workers are children of the session's)."""
    session = os.getppid() if os.environ.get("PYTEST_XDIST_WORKER") else os.getpid()
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(session)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,  # werkzeug's request log
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,
    )
    assert proc.stdout is not None
    endpoint = proc.stdout.readline().strip()
    assert endpoint.startswith("http://"), "the moto server did not start"
    return endpoint


def attach_managed_policies(session: Any, deployment: Deployment) -> None:
    """What CloudFormation does and moto's does not: attach each role's ManagedPolicyArns (the
    stack's own policies; AWS's managed ones play no part in what doctor checks)."""
    iam = session.client("iam")
    for logical, resource in deployment.translated["Resources"].items():
        if resource["Type"] != "AWS::IAM::Role" or not deployment.has(logical):
            continue
        for arn in resource["Properties"].get("ManagedPolicyArns", []):
            if isinstance(arn, dict) and set(arn) == {"Ref"} and deployment.has(arn["Ref"]):
                iam.attach_role_policy(
                    RoleName=deployment.physical(logical), PolicyArn=deployment.physical(arn["Ref"])
                )


def make_deployment(tmp: Path, lock: Path) -> Deployed:
    """The default stack on a new moto server, logged in, the app credentials stored."""
    import boto3

    endpoint = start_moto()
    with (
        Emulator(callback_url=f"https://127.0.0.1:{free_port()}") as emulator,
        pytest.MonkeyPatch.context() as env,
    ):
        aws_settings(env, endpoint, tmp)
        session = boto3.session.Session(region_name=REGION)
        deployment = deploy(session, STACK, {})
        attach_managed_policies(session, deployment)
        store = store_from_url(deployment.outputs["StoreUrl"])
        login(store, emulator)
        credentials = AppCredentials(emulator.app_key, emulator.app_secret, emulator.callback_url)
        store_credentials(deployment.outputs["CredentialsSecretName"], credentials)
        found = Deployed(
            endpoint=endpoint,
            outputs=deployment.outputs,
            schedule_rule=deployment.physical("RefresherFunctionSchedule"),
            refresher_role=deployment.physical("RefresherFunctionRole"),
            writer_policy=deployment.physical("TokenWriterPolicy"),
            app_key=emulator.app_key,
            app_secret=emulator.app_secret,
            callback_url=emulator.callback_url,
            token=store.read_raw().raw.decode(),
            view=store.view.read_raw().raw.decode(),
            secrets=sorted(secrets_of(emulator)),
            lock=str(lock),
        )
    aws.reset_clients()
    return found


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """The deployment, made by the first worker that asks (the others read it)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    lock, record = shared / "doctor-stack.lock", shared / "doctor-stack.json"
    with exclusive(lock):
        if not record.exists():
            made = make_deployment(tmp_path_factory.mktemp("aws"), lock)
            record.write_text(json.dumps(asdict(made)))
        return Deployed(**json.loads(record.read_text()))


@pytest.fixture
def stack(
    deployed: Deployed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Deployed]:
    """The deployment as it was made, whatever an earlier test changed, for this test alone."""
    with exclusive(deployed.lock):
        aws_settings(monkeypatch, deployed.endpoint, tmp_path)
        s3 = aws.client("s3")
        key = deployed.store_url.partition(deployed.bucket + "/")[2]
        s3.put_object(Bucket=deployed.bucket, Key=key, Body=deployed.token.encode())
        view_key = key.replace(".json", ".access.json")
        s3.put_object(Bucket=deployed.bucket, Key=view_key, Body=deployed.view.encode())
        s3.delete_object(Bucket=deployed.bucket, Key=key + ".notes")
        credentials = AppCredentials(deployed.app_key, deployed.app_secret, deployed.callback_url)
        store_credentials(deployed.outputs["CredentialsSecretName"], credentials)
        aws.client("events").enable_rule(Name=deployed.schedule_rule)
        aws.client("iam").attach_role_policy(
            RoleName=deployed.refresher_role, PolicyArn=deployed.writer_policy
        )
        sns = aws.client("sns")
        topic = deployed.outputs["AlarmTopicArn"]
        for subscription in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]:
            sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        yield deployed
        aws.reset_clients()


def doctor(*args: str) -> Run:
    """The CLI as a user runs it: the environment is the test's (moto's endpoint, no Schwab
    settings: doctor needs none)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHWAB_", "TOKEN_"))}
    env["PYTHONPATH"] = str(REPO)
    return run_cli(["doctor", *args], env)


def lines(run: Run) -> list[str]:
    return run.out.splitlines()


def line(run: Run, name: str) -> str:
    (found,) = [text for text in lines(run) if text[6:].startswith(name + ":")]
    return found


def statuses(run: Run) -> dict[str, str]:
    """Check name -> status word, for every check line (not the summary)."""
    return {text[6:].split(":")[0]: text[:6].strip() for text in lines(run)[:-1]}


#: moto implements no iam:SimulatePrincipalPolicy: doctor says so rather than guessing.
NOT_SIMULATED = {
    "refresher reads credentials": "skip",
    "refresher writes the store": "skip",
    "alerts": "skip",  # and the default stack has no notifier (Alerts=Disabled)
}
NO_SIMULATOR = (
    "not checked: this AWS endpoint cannot simulate IAM policies (iam:SimulatePrincipalPolicy)"
)

CHECKS = [
    "stack",
    "token",
    "access token",
    "login",
    "access view",
    "credentials",
    "refresher reads credentials",
    "refresher writes the store",
    "schedule",
    "notifications",
    "alerts",
    "refresher runs",
    "hosted login",
]


# ---------------------------------------------------------------------------- the deployed stack
def test_a_stack_nobody_subscribed_to_fails_on_the_subscription(stack: Deployed) -> None:
    run = doctor("--stack", STACK)
    topic = stack.outputs["AlarmTopicArn"]
    assert line(run, "notifications") == (
        f"FAIL  notifications: nobody is subscribed to {topic}, so nobody gets the refresher's "
        f"e-mails; subscribe one: aws sns subscribe --topic-arn {topic} --protocol email "
        f"--notification-endpoint YOU@example.com --region {REGION} "
        "(then confirm the e-mail AWS sends)"
    )
    assert statuses(run) == {
        **dict.fromkeys(CHECKS, "ok"),
        **NOT_SIMULATED,
        "notifications": "FAIL",
        "hosted login": "skip",
    }
    assert lines(run)[-1] == (
        "doctor: 1 problem in 13 checks; exit 5: fix the FAIL lines above, then run doctor again"
    )
    assert run.code == 5, run.text
    assert_no_secrets(run.text, stack.secrets)


def test_a_stack_with_a_confirmed_subscription_is_all_ok(stack: Deployed) -> None:
    # An SQS queue, which AWS confirms at once: moto would list an e-mail subscription with its
    # ARN at once too, where AWS lists it as PendingConfirmation until the owner clicks.
    sqs = aws.client("sqs")
    queue = sqs.create_queue(QueueName="doctor-notes")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]
    topic = stack.outputs["AlarmTopicArn"]
    aws.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])

    run = doctor("--stack", STACK)

    out = stack.outputs
    view_url = out["AccessTokenUrl"]
    token = Token.parse(stack.token)
    name = out["CredentialsSecretName"]
    assert lines(run)[0] == f"ok    stack: {STACK} is CREATE_COMPLETE"
    assert line(run, "token") == (
        f"ok    token: {stack.store_url} is readable (fingerprint {token.fingerprint})"
    )
    assert line(run, "access view") == f"ok    access view: {view_url} mirrors the token"
    assert line(run, "credentials") == (
        f"ok    credentials: {name} holds app_key and app_secret "
        f"(app key fingerprint {fingerprint(stack.app_key)})"
    )
    assert line(run, "refresher reads credentials") == (
        f"skip  refresher reads credentials: {NO_SIMULATOR}"
    )
    assert line(run, "refresher writes the store") == (
        f"skip  refresher writes the store: {NO_SIMULATOR}"
    )
    assert line(run, "schedule") == (
        f"ok    schedule: rule {stack.schedule_rule} is ENABLED (rate(5 minutes))"
    )
    assert line(run, "notifications") == (
        f"ok    notifications: 1 confirmed subscription to {topic} (sqs)"
    )
    assert line(run, "refresher runs") == (
        "ok    refresher runs: no failed run in the last hour and no failure noted"
    )
    assert line(run, "hosted login") == (
        "skip  hosted login: not enabled "
        "(HostedLogin is Disabled: the stack has no LoginUrl output)"
    )
    assert statuses(run) == {**dict.fromkeys(CHECKS, "ok"), **NOT_SIMULATED, "hosted login": "skip"}
    assert lines(run)[-1] == "doctor: everything is in place (9 ok, 4 skipped)"
    assert run.code == 0, run.text
    assert_no_secrets(run.text, stack.secrets)


def test_a_disabled_schedule_fails_the_schedule_line(stack: Deployed) -> None:
    rule = stack.schedule_rule
    aws.client("events").disable_rule(Name=rule)

    run = doctor("--stack", STACK)

    assert line(run, "schedule") == (
        f"FAIL  schedule: rule {rule} is DISABLED, so the refresher does not run and the access "
        f"token runs out within 30 minutes; aws events enable-rule --name {rule} --region {REGION}"
    )
    assert statuses(run)["schedule"] == "FAIL"
    assert run.code == 5, run.text


def test_missing_credentials_fail_with_the_login_that_stores_them(stack: Deployed) -> None:
    name = stack.outputs["CredentialsSecretName"]
    aws.client("ssm").delete_parameter(Name=name.removeprefix("ssm:"))

    run = doctor("--stack", STACK)

    assert line(run, "credentials") == (
        f"FAIL  credentials: parameter {name.removeprefix('ssm:')} does not exist in {REGION}; "
        f"schwab-tokens login --credentials-secret {name} --store {stack.store_url} "
        "--app-key YOUR_APP_KEY (it asks for the app secret, then logs in)"
    )
    assert statuses(run)["refresher reads credentials"] == "skip"
    assert run.code == 5, run.text


def test_a_dead_login_exits_3_with_the_login_line(stack: Deployed) -> None:
    # Logged in 8 days ago: the refresher refreshed until the refresh token died, a day ago;
    # its last access token ran out 15 minutes after that. Token and view as it left them.
    now = time.time()
    created = int(now - 8 * DAY)
    dead = token_at(now, login=created, left=created + REFRESH_TOKEN_LIFETIME + 900 - now)
    store = store_from_url(stack.store_url)
    store.write(dead, store.version())
    store.view.put(AccessView.from_token(dead), store.view.current()[1])

    run = doctor("--stack", STACK)

    died = created + REFRESH_TOKEN_LIFETIME
    assert line(run, "login") == (
        f"FAIL  login: the refresh token died {duration(now - died)} ago ({when(died)}, 7 days "
        f"after the login); schwab-tokens login --store {stack.store_url}"
    )
    assert line(run, "access token").endswith(
        f"so consumers get no working token; schwab-tokens login --store {stack.store_url}"
    )
    assert statuses(run) == {
        **dict.fromkeys(CHECKS, "ok"),
        **NOT_SIMULATED,
        "access token": "FAIL",
        "login": "FAIL",
        "notifications": "FAIL",
        "hosted login": "skip",
    }
    # The login first, though the subscription is missing too.
    assert lines(run)[-1] == (
        "doctor: 3 problems in 13 checks; exit 3: log in first (see the FAIL lines), then run "
        "doctor again"
    )
    assert run.code == 3, run.text


@pytest.mark.parametrize(
    "noted", [{"over": 1}, {"sent": "login_required"}], ids=["over", "older-version"]
)
def test_a_login_the_refresher_found_over_exits_3(stack: Deployed, noted: dict) -> None:
    # Schwab refused the refresh token although the login has days left (another login to the
    # app replaced it): a run noted it beside the token (an older refresher as "sent").
    store = store_from_url(stack.store_url)
    token = store.read().token
    store.write_notes({"login": token.creation_timestamp, **noted}, None)

    run = doctor("--stack", STACK)

    assert line(run, "login") == (
        "FAIL  login: a refresh found this login over: Schwab refused its refresh token although "
        "it had days left: another login to this app replaced it (Schwab keeps one login per "
        f"app); schwab-tokens login --store {stack.store_url}"
    )
    assert statuses(run)["refresher runs"] == "ok"
    assert run.code == 3, run.text


def test_a_stack_that_does_not_exist(stack: Deployed) -> None:
    run = doctor("--stack", "no-such-stack")
    assert lines(run) == [
        f"FAIL  stack: no stack no-such-stack in {REGION}; deploy it (sam deploy --guided), or "
        "check the name, --region and AWS_PROFILE",
        "doctor: 1 problem in 1 check; exit 5: fix the FAIL lines above, then run doctor again",
    ]
    assert run.code == 5


# ---------------------------------------------------------------------------- a file store
@pytest.fixture
def file_store(emulator: Emulator, tmp_path: Path) -> str:
    url = str(tmp_path / "tokens.json")
    login(store_from_url(url), emulator)
    return url


def test_a_logged_in_file_store_is_all_ok(file_store: str, emulator: Emulator) -> None:
    run = doctor("--store", file_store)
    assert [text[:6] for text in lines(run)] == ["ok    "] * 4 + ["doctor"]
    assert line(run, "access view") == (
        f"ok    access view: {file_store.removesuffix('.json')}.access.json mirrors the token"
    )
    assert lines(run)[-1] == "doctor: everything is in place (4 ok)"
    assert run.code == 0, run.text
    assert_no_secrets(run.text, secrets_of(emulator))


def test_the_store_comes_from_the_environment_as_for_the_other_commands(
    file_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_STORE_URL", file_store)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = run_cli(["doctor"], env)
    assert line(run, "token").startswith(f"ok    token: {file_store} is readable")
    assert run.code == 0, run.text


def test_a_missing_view_fails_with_the_refresh_that_writes_it(file_store: str) -> None:
    view = file_store.removesuffix(".json") + ".access.json"
    Path(view).unlink()

    run = doctor("--store", file_store)

    assert line(run, "access view") == (
        f"FAIL  access view: no access view at {view}, so consumers (TOKEN_ACCESS_URL) find no "
        f"token; schwab-tokens refresh --store {file_store}"
    )
    assert run.code == 5, run.text
    # ... and the refresh it names repairs it.
    env = {**os.environ, "PYTHONPATH": str(REPO), "SCHWAB_API_BASE": "http://127.0.0.1:9"}
    assert run_cli(["refresh", "--store", file_store], env).code == 0
    assert doctor("--store", file_store).code == 0


def test_a_login_due_within_a_day_warns_and_still_exits_0(tmp_path: Path) -> None:
    # Due soon is not broken yet: the refresher's first e-mail goes out now too.
    url = str(tmp_path / "tokens.json")
    now = time.time()
    token = token_at(now, login=int(now - REFRESH_TOKEN_LIFETIME + 12 * 3600 + 59))
    store = store_from_url(url)
    store.write(token, None)
    store.sync_view(token)

    run = doctor("--store", url)

    assert line(run, "login") == (
        f"warn  login: the refresh token dies in 12 h 0 min ({when(token.refresh_expires_at)}); "
        f"log in again before then: schwab-tokens login --store {url}"
    )
    assert lines(run)[-1] == "doctor: everything is in place (3 ok, 1 warning)"
    assert run.code == 0, run.text


def test_no_token_exits_3(tmp_path: Path) -> None:
    url = str(tmp_path / "tokens.json")
    run = doctor("--store", url)
    assert lines(run)[0] == f"FAIL  token: no token at {url}; schwab-tokens login --store {url}"
    assert run.code == 3


def test_json_for_scripts(file_store: str) -> None:
    Path(file_store.removesuffix(".json") + ".access.json").unlink()

    run = doctor("--store", file_store, "--json")

    report = json.loads(run.out)
    assert [c["name"] for c in report["checks"]] == [
        "token",
        "access token",
        "login",
        "access view",
    ]
    assert [c["ok"] for c in report["checks"]] == [True, True, True, False]
    view = report["checks"][3]
    assert view["fix"] == f"schwab-tokens refresh --store {file_store}"
    assert view["detail"].startswith("no access view at ")
    assert set(view) == {"name", "ok", "status", "detail", "fix"}
    assert report["exit_code"] == run.code == 5


# ---------------------------------------------------------------------------- single checks
def test_a_pending_email_subscription_names_the_address() -> None:
    # What AWS lists for an e-mail subscription nobody confirmed (moto lists an ARN at once).
    topic = f"arn:aws:sns:{REGION}:123456789012:doctor-AlarmTopic-X"
    listed = [
        {
            "SubscriptionArn": "PendingConfirmation",
            "Owner": "123456789012",
            "Protocol": "email",
            "Endpoint": "me@example.com",
            "TopicArn": topic,
        }
    ]
    check = notifications_check(topic, listed, REGION)
    assert check.line() == (
        f"FAIL  notifications: the subscription of me@example.com to {topic} is pending "
        "confirmation, so nobody gets the refresher's e-mails; confirm the e-mail AWS sent to "
        f"me@example.com, or subscribe one: aws sns subscribe --topic-arn {topic} --protocol "
        f"email --notification-endpoint YOU@example.com --region {REGION}"
    )


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_the_hosted_login_answers_or_not(tmp_path: Path, emulator: Emulator) -> None:
    from devkit.function_url import FunctionUrl

    settings = Settings(
        store_url=str(tmp_path / "tokens.json"),
        app_key=emulator.app_key,
        app_secret=emulator.app_secret,
        api_base=emulator.base_url,
    )
    with FunctionUrl(settings) as function:
        # The local stand-in's certificate is self-signed; a real function URL's is not.
        check = check_login_url(function.login_url, verify=False)
        status = function.requests[-1][1]
    assert check.line() == f"ok    hosted login: {function.login_url}start answers (HTTP {status})"
    closed = f"https://127.0.0.1:{free_port()}/"
    check = check_login_url(closed, timeout=2)
    assert check.line() == (
        f"FAIL  hosted login: {closed}start does not answer (ConnectionError); check the stack's "
        "LoginFunctionUrl; where Lambda's block public access refuses public function URLs, "
        "allow them or set HostedLogin=Disabled"
    )


def test_the_exit_code_puts_the_login_first_then_configuration_then_retry() -> None:
    login = fail("login", "dead", "schwab-tokens login", ExitCode.LOGIN_REQUIRED)
    schedule = fail("schedule", "DISABLED", "aws events enable-rule")
    later = Check("stack", Status.ERROR, "could not check", "", ExitCode.TEMPORARY)
    due = Check("login", Status.WARN, "dies in 3 h", "log in again")
    assert Report([ok("token", "readable"), later, schedule, login]).exit_code == 3
    assert Report([later, schedule]).exit_code == 5
    assert Report([ok("token", "readable"), later]).exit_code == 4
    assert Report([ok("token", "readable"), due]).exit_code == 0
    assert Report([later, schedule]).summary == (
        "doctor: 1 problem in 2 checks, 1 could not run; exit 5: fix the FAIL lines above, then "
        "run doctor again"
    )
    assert Report([later]).summary == (
        "doctor: 1 of 1 check could not run; exit 4: AWS did not answer; run doctor again later"
    )


@pytest.mark.parametrize("name", ["aws-bot", "AWSbot", "ssm-tokens", "Ssm2"])
def test_a_stack_name_ssm_refuses_is_named_with_the_fix(name: str) -> None:
    """SSM refuses parameter names beginning with aws or ssm, and the stack keeps its
    credentials and view under /<stack>/: a stack made before the template refused such a name
    is told why its login and view fail, and what to do."""
    from schwab_tokens.diagnosis.stack import stack_name

    check = stack_name(name)
    assert check is not None and check.line() == (
        f"FAIL  stack: {name}: SSM refuses parameter names beginning with aws or ssm, and the "
        f"stack keeps /{name}/credentials and /{name}/tokens.access there; deploy it again under "
        "a name that does not begin so (sam deploy --stack-name ...)"
    )
    assert stack_name("schwab-" + name) is None


def test_a_notifier_that_failed_today_is_named_with_where_to_look(stack: Deployed) -> None:
    """With Alerts=Enabled: Lambda's Errors of the notifier in the last day (here put where
    Lambda puts them, on the moto server) fail the "alerts" line, naming the log and the test."""
    from schwab_tokens.diagnosis.clients import Clients
    from schwab_tokens.diagnosis.notifications import notifier

    outputs = {"NotifierFunctionName": "doctor-notifier", "AlertsParameterName": "/doctor/alerts"}
    assert notifier(outputs, time.time(), Clients(REGION)).line() == (
        "ok    alerts: the notifier doctor-notifier failed no message in the last day"
    )
    aws.client("cloudwatch").put_metric_data(
        Namespace="AWS/Lambda",
        MetricData=[
            {
                "MetricName": "Errors",
                "Dimensions": [{"Name": "FunctionName", "Value": "doctor-notifier"}],
                "Value": 3,
            }
        ],
    )
    assert notifier(outputs, time.time() + 60, Clients(REGION)).line() == (
        "FAIL  alerts: the notifier doctor-notifier failed 3 times in the last day (AWS/Lambda "
        "Errors): a message reached none of your alert URLs; see which service answered what: "
        f"aws logs tail /aws/lambda/doctor-notifier --since 1d --region {REGION}; then "
        "schwab-tokens alerts test --stack doctor"
    )


def test_an_expired_access_token_of_a_login_found_over_asks_for_a_login(tmp_path: Path) -> None:
    """A run found the login over and the access token has since expired: `refresh` could only
    fail, so the access token's line names `login` too (exit 3)."""
    url = str(tmp_path / "tokens.json")
    store = store_from_url(url)
    now = time.time()
    token = token_at(now, login=now - 3 * 3600, left=-600)  # days left, access expired
    store.write(token, None)
    store.write_notes({"login": token.creation_timestamp, "over": True}, None)

    run = doctor("--store", url)

    access = line(run, "access token")
    assert access.startswith("FAIL  access token: expired 10 min"), access
    assert access.endswith(f"schwab-tokens login --store {url}"), access
    assert run.code == 3, run.text
