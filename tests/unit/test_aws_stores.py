"""The S3 and Secrets Manager stores, and aws.py's clients and error translation, against moto.

Most tests use moto in-process; the ``over_http`` ones reach a moto server through
``AWS_ENDPOINT_URL``, as users reach LocalStack or a real endpoint. Faults (403, throttling) are
injected with botocore event hooks on the very client ``aws.client`` hands out, so the code
under test runs unchanged, retries included.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any

import boto3
import botocore.retries.standard
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from devkit.background import free_port
from schwab_tokens import aws
from schwab_tokens.credentials import (
    AppCredentials,
    load_credentials,
    read_credentials,
    store_credentials,
)
from schwab_tokens.errors import (
    AccessDenied,
    ConfigurationError,
    InvalidTokenDocument,
    LeaseBusy,
    LoginRequired,
    TemporaryFailure,
    UsageError,
    WriteConflict,
)
from schwab_tokens.settings import Settings
from schwab_tokens.stores import TokenStore, store_from_url
from schwab_tokens.stores.s3 import S3Store
from schwab_tokens.stores.secretsmanager import PENDING, SecretsManagerStore
from schwab_tokens.token import MAX_DOCUMENT_BYTES, Token
from tests.helpers import RawBody, make_token, put_raw

KINDS = ["s3", "secretsmanager"]


# -- helpers -----------------------------------------------------------------------------------
@pytest.fixture
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's retries without their sleeps (the retry count is what is under test)."""
    monkeypatch.setattr(
        botocore.retries.standard.ExponentialBackoff, "delay_amount", lambda self, context: 0
    )


@pytest.fixture(params=KINDS)
def store_url(
    request: pytest.FixtureRequest,
    moto_aws: None,
    s3_store_url: Callable[..., str],
    sm_store_url: Callable[..., str],
) -> str:
    return s3_store_url() if request.param == "s3" else sm_store_url()


def raw_document(store: TokenStore) -> bytes:
    return store.read_raw().raw


def fail_call(client: Any, operation: str, status: int, code: str, message: str = "") -> list[int]:
    """Answer every ``operation`` on ``client`` with an error before it is sent (no retries).

    Returns a list that grows by one per intercepted call.
    """
    calls: list[int] = []
    service = client.meta.service_model.service_id.hyphenize()

    def handler(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        calls.append(1)
        http = AWSResponse("https://example.invalid/", status, {}, RawBody(b""))
        parsed = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        }
        return http, parsed

    client.meta.events.register(f"before-call.{service}.{operation}", handler)
    return calls


def fail_wire(client: Any, operation: str, status: int, body: bytes, headers: dict[str, str]):
    """Answer every attempt of ``operation`` at the HTTP layer (botocore parses and retries).

    Under ``moto_aws`` botocore still runs moto's own stub too (``before-send`` calls every
    handler and keeps the first answer), so the request takes effect in moto although the
    caller sees the fault. Inject faults into writes only over HTTP (``aws_endpoint``), where
    an answered ``before-send`` means nothing is sent.
    """
    attempts: list[int] = []
    service = client.meta.service_model.service_id.hyphenize()

    def handler(request: Any, **_: Any) -> AWSResponse:
        attempts.append(1)
        return AWSResponse(request.url, status, headers, RawBody(body))

    # First, so it answers before moto's own in-process stub does.
    client.meta.events.register_first(f"before-send.{service}.{operation}", handler)
    return attempts


def _throttle_s3(client: Any, operation: str) -> list[int]:
    body = (
        b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
    )
    return fail_wire(client, operation, 503, body, {"Content-Type": "application/xml"})


def _throttle_sm(client: Any, operation: str) -> list[int]:
    body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
    return fail_wire(client, operation, 400, body, {"Content-Type": "application/x-amz-json-1.1"})


# -- both stores ------------------------------------------------------------------------------
def test_no_document_asks_for_a_login(store_url: str) -> None:
    store = store_from_url(store_url)
    with pytest.raises(LoginRequired) as caught:
        store.read()
    assert f"schwab-tokens login --store {store_url}" in str(caught.value)
    assert store.version() is None


def test_write_creates_and_read_returns_the_same_token(store_url: str) -> None:
    store = store_from_url(store_url)
    token = make_token()
    version = store.write(token, None)
    stored = store.read()
    assert stored.token == token
    assert stored.version == version == store.version()
    assert stored.written_at is not None and abs(stored.written_at - time.time()) < 60
    # Another process (another store object) sees the same.
    assert store_from_url(store_url).read().token == token


def test_first_write_loses_to_an_existing_document(store_url: str) -> None:
    store = store_from_url(store_url)
    first = make_token("first")
    version = store.write(first, None)
    with pytest.raises(WriteConflict):
        store.write(make_token("second"), None)
    assert store.read().token == first
    assert store.version() == version


def test_stale_write_conflicts_and_changes_nothing(store_url: str) -> None:
    store = store_from_url(store_url)
    v1 = store.write(make_token("one"), None)
    two = make_token("two")
    v2 = store.write(two, v1)
    assert v2 != v1
    before = raw_document(store)
    with pytest.raises(WriteConflict):
        store.write(make_token("three"), v1)
    assert raw_document(store) == before == two.to_json()
    assert store.version() == v2
    assert store.read().token == two


def test_corrupt_document_is_reported_not_overwritten(store_url: str) -> None:
    store = store_from_url(store_url)
    put_raw(store, b"{not json")
    with pytest.raises(InvalidTokenDocument) as caught:
        store.read()
    assert "not valid JSON" in str(caught.value)
    assert store_url in str(caught.value)
    # version() does not parse: a login can still replace the document conditionally.
    assert store.version() is not None


def test_document_without_token_fields_names_the_field(store_url: str) -> None:
    store = store_from_url(store_url)
    put_raw(store, json.dumps({"creation_timestamp": 1, "token": {"access_token": "a"}}).encode())
    with pytest.raises(InvalidTokenDocument, match=r"token\.refresh_token"):
        store.read()


# -- access denied, missing bucket, throttling ----------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "operation", "action"),
    [
        ("s3", "GetObject", "s3:GetObject"),
        ("secretsmanager", "GetSecretValue", "secretsmanager:GetSecretValue"),
    ],
)
def test_access_denied_names_the_iam_action(
    kind: str,
    operation: str,
    action: str,
    moto_aws: None,
    s3_store_url: Callable[..., str],
    sm_store_url: Callable[..., str],
) -> None:
    url = s3_store_url() if kind == "s3" else sm_store_url()
    store = store_from_url(url)
    store.write(make_token(), None)
    code = "AccessDenied" if kind == "s3" else "AccessDeniedException"
    fail_call(aws.client(kind), operation, 403 if kind == "s3" else 400, code, "denied")
    with pytest.raises(AccessDenied) as caught:
        store.read()
    message = str(caught.value)
    assert f"access denied to {url}" in message
    assert action in message


#: A read the stack's perimeter refuses, as AWS answers it on the wire (S3: an XML 403;
#: Secrets Manager: a JSON 400), naming the caller, the action and the policy that denied.
PERIMETER_DENIALS = {
    "s3": (
        "GetObject",
        403,
        b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>User: '
        b"arn:aws:sts::123456789012:assumed-role/auditor/session is not authorized to perform: "
        b's3:GetObject on resource: "arn:aws:s3:::BUCKET/KEY" with an explicit deny in a '
        b"resource-based policy</Message><RequestId>EXAMPLE</RequestId><HostId>EXAMPLE</HostId>"
        b"</Error>",
        {"Content-Type": "application/xml"},
    ),
    "secretsmanager": (
        "GetSecretValue",
        400,
        b'{"__type":"AccessDeniedException","Message":"User: arn:aws:sts::123456789012:'
        b"assumed-role/auditor/session is not authorized to perform: "
        b"secretsmanager:GetSecretValue on resource: NAME with an explicit deny in a "
        b'resource-based policy"}',
        {"Content-Type": "application/x-amz-json-1.1"},
    ),
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_denial_by_the_stacks_perimeter_names_the_parameters_to_change(
    kind: str,
    moto_aws: None,
    s3_store_url: Callable[..., str],
    sm_store_url: Callable[..., str],
) -> None:
    """The bucket policy or the secret's resource policy refuses an identity the stack does not
    name (docs/security.md): the error says which parameter lets it in, not which IAM action it
    lacks (it may well hold it). Other denials keep naming the action (the test above)."""
    url = s3_store_url() if kind == "s3" else sm_store_url()
    store = store_from_url(url)
    store.write(make_token(), None)
    operation, status, body, headers = PERIMETER_DENIALS[kind]
    fail_wire(aws.client(kind), operation, status, body, headers)
    with pytest.raises(AccessDenied) as caught:
        store.read()
    message = str(caught.value)
    assert f"access denied to {url}" in message and "resource policy" in message
    assert "AdministratorPrincipals" in message and "DocumentReaderPrincipals" in message
    assert "auditor" not in message  # nothing of AWS's text is repeated


def test_access_denied_on_write_names_put_object(moto_aws: None, s3_store_url) -> None:
    url = s3_store_url()
    fail_call(aws.client("s3"), "PutObject", 403, "AccessDenied", "Access Denied")
    with pytest.raises(AccessDenied, match="s3:PutObject"):
        store_from_url(url).write(make_token(), None)


def test_kms_denied_names_the_kms_action(moto_aws: None, s3_store_url, sm_store_url) -> None:
    s3 = store_from_url(s3_store_url())
    fail_call(aws.client("s3"), "PutObject", 400, "KMS.DisabledException", "key disabled")
    with pytest.raises(AccessDenied, match="kms:GenerateDataKey"):
        s3.write(make_token(), None)
    sm = store_from_url(sm_store_url())
    fail_call(
        aws.client("secretsmanager"),
        "GetSecretValue",
        400,
        "AccessDeniedException",
        "Access to KMS is not allowed",
    )
    with pytest.raises(AccessDenied, match="kms:Decrypt"):
        sm.read()


def test_missing_bucket_is_a_configuration_error(moto_aws: None) -> None:
    store = store_from_url("s3://schwab-tokens-no-such-bucket/tokens.json")
    with pytest.raises(ConfigurationError, match="bucket schwab-tokens-no-such-bucket does not"):
        store.read()
    with pytest.raises(ConfigurationError, match="bucket schwab-tokens-no-such-bucket does not"):
        store.write(make_token(), None)


@pytest.mark.usefixtures("no_backoff")
def test_s3_throttling_is_temporary_after_retries(moto_aws: None, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    token = make_token()
    version = store.write(token, None)
    attempts = _throttle_s3(aws.client("s3"), "GetObject")
    with pytest.raises(TemporaryFailure) as caught:
        store.read()
    assert len(attempts) == aws.MAX_RETRIES + 1
    assert "SlowDown" in str(caught.value)
    assert "untouched" in str(caught.value)
    aws.reset_clients()  # a fresh client without the fault
    assert store.read().token == token and store.version() == version


@pytest.mark.usefixtures("no_backoff")
def test_s3_server_errors_on_write_are_temporary(aws_endpoint: str, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    attempts = fail_wire(
        aws.client("s3"),
        "PutObject",
        500,
        b"<Error><Code>InternalError</Code><Message>oops</Message></Error>",
        {"Content-Type": "application/xml"},
    )
    with pytest.raises(TemporaryFailure, match="after 4 retries"):
        store.write(make_token(), None)
    assert len(attempts) == 5
    assert store.version() is None


@pytest.mark.usefixtures("no_backoff")
def test_secrets_manager_throttling_is_temporary(moto_aws: None, sm_store_url) -> None:
    store = store_from_url(sm_store_url())
    store.write(make_token(), None)
    attempts = _throttle_sm(aws.client("secretsmanager"), "GetSecretValue")
    with pytest.raises(TemporaryFailure, match="ThrottlingException"):
        store.read()
    assert len(attempts) == aws.MAX_RETRIES + 1


@pytest.mark.usefixtures("no_backoff")
def test_unreachable_endpoint_is_temporary(aws_env: None, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    aws.reset_clients()
    with pytest.raises(TemporaryFailure, match="cannot reach AWS"):
        store_from_url("s3://some-bucket/tokens.json").read()
    with pytest.raises(TemporaryFailure, match="untouched"):
        store_from_url("secretsmanager://some/secret").read()


def test_missing_credentials_and_region_are_configuration_errors(aws_env: None, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    aws.reset_clients()
    with pytest.raises(ConfigurationError, match="AWS_PROFILE"):
        store_from_url("s3://some-bucket/tokens.json").read()
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    aws.reset_clients()
    with pytest.raises(ConfigurationError, match="AWS_REGION"):
        store_from_url("secretsmanager://some/secret").read()


def test_aws_region_alone_picks_the_region(moto_aws: None, monkeypatch) -> None:
    """boto3 reads only AWS_DEFAULT_REGION; a user who sets AWS_REGION (as the AWS CLI v2 and
    Lambda do) must get that region, not "no AWS region"."""
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    aws.reset_clients()
    token = make_token()
    store_from_url("secretsmanager://schwab/tokens").write(token, None)
    secrets = boto3.client("secretsmanager", region_name="eu-west-1")
    assert secrets.list_secrets()["SecretList"][0]["Name"] == "schwab/tokens"
    assert not boto3.client("secretsmanager", region_name="us-east-1").list_secrets()["SecretList"]
    monkeypatch.setenv("AWS_REGION", "not a region!")
    aws.reset_clients()
    with pytest.raises(ConfigurationError, match="not a region name: set AWS_REGION"):
        store_from_url("secretsmanager://schwab/tokens").read()


# -- translate on its own --------------------------------------------------------------------------
def _client_error(code: str, status: int, message: str = "", operation: str = "GetObject"):
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        operation,
    )


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (_client_error("AccessDenied", 403), AccessDenied, ["the role needs s3:GetObject"]),
        (_client_error("403", 403, "Forbidden"), AccessDenied, ["s3:GetObject"]),
        (
            _client_error("NoSuchBucket", 404, "The specified bucket does not exist"),
            ConfigurationError,
            ["bucket b does not exist"],
        ),
        (
            _client_error("ResourceNotFoundException", 400, "", "GetSecretValue"),
            ConfigurationError,
            ["s3://b/k does not exist"],
        ),
        (_client_error("KMS.NotFoundException", 400), AccessDenied, ["kms:Decrypt"]),
        (
            _client_error("AccessDenied", 403, "not authorized to perform: kms:Decrypt"),
            AccessDenied,
            ["kms:Decrypt"],
        ),
        (_client_error("DecryptionFailure", 400), AccessDenied, ["kms:Decrypt"]),
        (
            _client_error("AccessDenied", 403, "not authorized on arn:aws:s3:::my-kms-bucket/k"),
            AccessDenied,
            ["the role needs s3:GetObject"],
        ),
        (_client_error("ExpiredToken", 400), ConfigurationError, ["credentials"]),
        (
            _client_error("InvalidRequestException", 400, "secret is marked for deletion"),
            ConfigurationError,
            ["restore-secret"],
        ),
        (_client_error("SlowDown", 503), TemporaryFailure, ["SlowDown", "untouched"]),
        (_client_error("ThrottlingException", 400), TemporaryFailure, ["after 4 retries"]),
        (_client_error("RequestLimitExceeded", 400), TemporaryFailure, ["untouched"]),
        (_client_error("Whatever", 502), TemporaryFailure, ["Whatever"]),
        (_client_error("TooManyRequests", 429), TemporaryFailure, ["untouched"]),
        (EndpointConnectionError(endpoint_url="https://x"), TemporaryFailure, ["cannot reach"]),
        (NoCredentialsError(), ConfigurationError, ["AWS_PROFILE"]),
    ],
)
def test_translate(exc: Exception, kind: type, words: list[str]) -> None:
    error = aws.translate(exc, what="s3://b/k", action="s3:GetObject")
    assert type(error) is kind
    for word in words:
        assert word in str(error)


def test_translate_names_the_write_kms_action() -> None:
    exc = _client_error("KMS.DisabledException", 400, operation="PutObject")
    assert "kms:GenerateDataKey" in str(aws.translate(exc, what="s3://b/k", action="s3:PutObject"))


def test_translate_keeps_our_own_errors() -> None:
    error = LoginRequired("x")
    assert aws.translate(error, what="w", action="a") is error


def test_translate_never_quotes_parameter_values() -> None:
    from botocore.exceptions import ParamValidationError

    exc = ParamValidationError(report="Invalid type for parameter SecretString, value: hunter2")
    error = aws.translate(exc, what="secretsmanager://s", action="secretsmanager:PutSecretValue")
    assert isinstance(error, ConfigurationError)
    assert "hunter2" not in str(error)


# -- clients -----------------------------------------------------------------------------------
def test_client_is_cached_and_configured(moto_aws: None) -> None:
    first = aws.client("s3")
    assert aws.client("s3") is first
    assert aws.client("secretsmanager") is not first
    config = first.meta.config
    assert config.retries == {"mode": "standard", "total_max_attempts": aws.MAX_RETRIES + 1}
    assert (config.connect_timeout, config.read_timeout) == (5, 10)
    aws.reset_clients()
    assert aws.client("s3") is not first


def test_clients_are_made_once_across_threads(moto_aws: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        clients = list(pool.map(lambda _: aws.client("s3"), range(32)))
    assert len({id(c) for c in clients}) == 1


# -- leases ------------------------------------------------------------------------------------
def test_lease_is_exclusive_until_released(store_url: str) -> None:
    first, second = store_from_url(store_url), store_from_url(store_url)
    first.write(make_token(), None)  # a Secrets Manager lease lives on the current version
    with first.lease(ttl=30, wait=1):
        started = time.monotonic()
        with pytest.raises(LeaseBusy, match="another writer"), second.lease(ttl=30, wait=0.3):
            pytest.fail("two holders")
        assert time.monotonic() - started >= 0.3
    with second.lease(ttl=30, wait=0.5):
        pass
    with first.lease(ttl=30, wait=0.5):  # and released again
        pass


@contextlib.contextmanager
def store_clock_ahead(seconds: float) -> Iterator[None]:
    """S3's and Secrets Manager's clock (the ``Date`` of their answers) ``seconds`` ahead of
    ours: what a lease's expiry is judged on. An ``after-call`` hook on the package's clients."""

    def shift(parsed: dict[str, Any], **_: Any) -> None:
        headers = parsed.setdefault("ResponseMetadata", {}).setdefault("HTTPHeaders", {})
        headers["date"] = formatdate(time.time() + seconds, usegmt=True)

    hooked = [(aws.client(kind), f"after-call.{name}") for kind, name in SERVICE_IDS.items()]
    for client, event in hooked:
        client.meta.events.register(event, shift)
    try:
        yield
    finally:
        for client, event in hooked:
            client.meta.events.unregister(event, shift)


SERVICE_IDS = {"s3": "s3", "secretsmanager": "secrets-manager"}


def test_a_dead_holder_loses_the_lease_after_its_ttl(store_url: str) -> None:
    first, second, third = (store_from_url(store_url) for _ in range(3))
    first.write(make_token(), None)
    dead = first.lease(ttl=60, wait=1)
    dead.__enter__()  # ... and never comes back
    with pytest.raises(LeaseBusy), second.lease(ttl=30, wait=0.2):
        pytest.fail("took a live lease")
    with store_clock_ahead(45), pytest.raises(LeaseBusy), second.lease(ttl=30, wait=0.2):
        pytest.fail("took a lease before its ttl ran out on the store's clock")
    with store_clock_ahead(64):  # 60 s ttl, +1 s, +1 s for whole-second dates, +2 s
        successor = second.lease(ttl=30, wait=1)
        assert successor.__enter__().held
    try:
        # The late holder's release must not free the lease its successor now holds.
        dead.__exit__(None, None, None)
        with pytest.raises(LeaseBusy), third.lease(ttl=30, wait=0.2):
            pytest.fail("two holders")
    finally:
        successor.__exit__(None, None, None)
    with third.lease(ttl=30, wait=0.5):
        pass


def test_s3_lease_object_is_json_and_removed_on_release(moto_aws: None, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    s3 = aws.client("s3")
    with store.lease(ttl=30, wait=1) as lease:
        assert lease.held and lease.valid()
        body = s3.get_object(Bucket=store.bucket, Key=store.key + ".lease")["Body"].read()
        data = json.loads(body)
        # No expiry time of ours: the store's clock judges (LastModified + ttl).
        assert set(data) == {"owner", "ttl"} and data["ttl"] == 30
    with pytest.raises(ClientError):
        s3.head_object(Bucket=store.bucket, Key=store.key + ".lease")


@pytest.mark.parametrize(
    ("leftover", "ttl"),
    [
        (b"{not json", 120),  # unreadable: the default ttl
        (b'{"owner": "x", "expires_at": 1}', 120),  # an older version's record: the same
        (b'{"owner": "x", "ttl": 30}', 30),
    ],
    ids=["garbage", "old-format", "dead-holder"],
)
def test_s3_leftover_lease_is_taken_over_once_its_ttl_ran_out(
    leftover: bytes, ttl: float, moto_aws: None, s3_store_url
) -> None:
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    aws.client("s3").put_object(Bucket=store.bucket, Key=store.lease_key, Body=leftover)
    with store_clock_ahead(ttl - 15), pytest.raises(LeaseBusy), store.lease(ttl=30, wait=0.2):
        pytest.fail("took a lease within its ttl")
    with store_clock_ahead(ttl + 4), store.lease(ttl=30, wait=0.5) as lease:
        assert lease.held


def test_s3_live_lease_of_another_writer_is_respected(moto_aws: None, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    body = json.dumps({"owner": "someone", "ttl": 60}).encode()
    aws.client("s3").put_object(Bucket=store.bucket, Key=store.lease_key, Body=body)
    # Our own clock minutes ahead changes nothing: only S3's clock counts.
    with pytest.raises(LeaseBusy), store.lease(ttl=30, wait=0.3):
        pytest.fail("took a live lease")


def test_sm_lease_label_expires_on_secrets_managers_clock(moto_aws: None, sm_store_url) -> None:
    url = sm_store_url()
    holder, other = store_from_url(url), store_from_url(url)
    assert isinstance(holder, SecretsManagerStore)
    holder.write(make_token(), None)
    dead = holder.lease(ttl=60, wait=1)
    dead.__enter__()
    label = next(x for x in _stages(holder.name)[holder.version()] if x.startswith("lease."))
    # lease.<expires_at>.<owner>: the answer's Date + 1 + ttl, whole seconds.
    assert 55 < int(label.split(".")[1]) - time.time() <= 63
    with store_clock_ahead(45), pytest.raises(LeaseBusy), other.lease(ttl=30, wait=0.2):
        pytest.fail("took a live lease")
    with store_clock_ahead(64), other.lease(ttl=30, wait=0.5) as lease:
        assert lease.held
        assert label not in _stages(holder.name)[holder.version()]  # the dead label removed
    dead.__exit__(None, None, None)


@pytest.mark.usefixtures("no_backoff")
def test_a_throttled_release_does_not_fail_the_work_done(http_store_url: str) -> None:
    store = store_from_url(http_store_url)
    store.write(make_token(), None)
    with store.lease(ttl=30, wait=1):
        if isinstance(store, S3Store):
            _throttle_s3(aws.client("s3"), "DeleteObject")
        else:
            _throttle_sm(aws.client("secretsmanager"), "UpdateSecretVersionStage")
    # No error: the lease was left to expire, so a rival still waits for it.
    aws.reset_clients()
    with pytest.raises(LeaseBusy), store_from_url(http_store_url).lease(ttl=30, wait=0.2):
        pytest.fail("two holders")


# -- S3 specifics ------------------------------------------------------------------------------
def test_s3_write_uses_sse_kms_when_a_key_is_configured(
    moto_aws: None, s3_store_url, monkeypatch
) -> None:
    monkeypatch.setenv("TOKEN_STORE_KMS_KEY_ID", "alias/schwab-tokens")
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    store.write(make_token(), None)
    head = aws.client("s3").head_object(Bucket=store.bucket, Key=store.key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == "alias/schwab-tokens"
    assert head["ContentType"] == "application/json"
    assert abs(int(head["Metadata"]["last-refresh"]) - time.time()) < 60
    assert head["Metadata"]["writer"]


def test_s3_write_without_a_key_leaves_encryption_to_the_bucket(
    moto_aws: None, s3_store_url, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "schwab-refresher")
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    store.write(make_token(), None)
    head = aws.client("s3").head_object(Bucket=store.bucket, Key=store.key)
    assert head.get("ServerSideEncryption") != "aws:kms"
    assert head["Metadata"]["writer"] == "schwab-refresher"


def test_s3_oversized_object_is_refused(moto_aws: None, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    put_raw(store, b" " * (MAX_DOCUMENT_BYTES + 10))
    with pytest.raises(InvalidTokenDocument, match="bytes, more than a token document"):
        store.read()


def test_s3_write_to_a_deleted_object_conflicts(moto_aws: None, s3_store_url) -> None:
    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    version = store.write(make_token(), None)
    aws.client("s3").delete_object(Bucket=store.bucket, Key=store.key)
    with pytest.raises(WriteConflict):
        store.write(make_token(), version)


# -- Secrets Manager specifics -----------------------------------------------------------------
def _stages(name: str) -> dict[str, list[str]]:
    described = aws.client("secretsmanager").describe_secret(SecretId=name)
    return {k: v for k, v in described["VersionIdsToStages"].items() if v}


def _versions(name: str) -> int:
    answer = aws.client("secretsmanager").list_secret_version_ids(
        SecretId=name, IncludeDeprecated=True
    )
    return len(answer["Versions"])


def test_sm_write_keeps_awsprevious_and_no_pending_label(moto_aws: None, sm_store_url) -> None:
    store = store_from_url(sm_store_url())
    assert isinstance(store, SecretsManagerStore)
    one, two = make_token("one"), make_token("two")
    v1 = store.write(one, None)
    v2 = store.write(two, v1)
    sm = aws.client("secretsmanager")
    previous = sm.get_secret_value(SecretId=store.name, VersionStage="AWSPREVIOUS")
    assert previous["VersionId"] == v1
    assert Token.parse(previous["SecretString"]) == one
    stages = _stages(store.name)
    assert stages == {v1: ["AWSPREVIOUS"], v2: ["AWSCURRENT"]}
    assert not any(PENDING in labels for labels in stages.values())


def test_sm_losing_writer_cleans_up_its_version(moto_aws: None, sm_store_url) -> None:
    """The race the pre-check cannot see: a rival moves AWSCURRENT between our two steps."""
    url = sm_store_url()
    ours, rival = store_from_url(url), store_from_url(url)
    assert isinstance(ours, SecretsManagerStore)
    v1 = ours.write(make_token("one"), None)
    winner = make_token("rival")
    fired: list[str] = []

    def rival_writes_first(**_: Any) -> None:
        if not fired:
            fired.append("busy")  # the rival's own PutSecretValue comes through here too
            fired[0] = rival.write(winner, v1)

    aws.client("secretsmanager").meta.events.register(
        "before-call.secrets-manager.PutSecretValue", rival_writes_first
    )
    with pytest.raises(WriteConflict):
        ours.write(make_token("ours"), v1)
    assert ours.read().token == winner
    stages = _stages(ours.name)
    assert stages == {v1: ["AWSPREVIOUS"], fired[0]: ["AWSCURRENT"]}  # our version: unlabelled
    previous = aws.client("secretsmanager").get_secret_value(
        SecretId=ours.name, VersionStage="AWSPREVIOUS"
    )
    assert previous["VersionId"] == v1


def test_sm_first_write_fills_a_secret_made_without_a_value(moto_aws: None, sm_store_url) -> None:
    store = store_from_url(sm_store_url())
    assert isinstance(store, SecretsManagerStore)
    aws.client("secretsmanager").create_secret(Name=store.name)  # as a stack would
    with pytest.raises(LoginRequired, match="schwab-tokens login"):
        store.read()
    assert store.version() is None
    token = make_token()
    version = store.write(token, None)
    assert store.read().token == token
    assert _stages(store.name) == {version: ["AWSCURRENT"]}


def test_sm_new_secret_uses_the_configured_kms_key(
    moto_aws: None, sm_store_url, monkeypatch
) -> None:
    key_id = boto3.client("kms").create_key()["KeyMetadata"]["KeyId"]
    monkeypatch.setenv("TOKEN_STORE_KMS_KEY_ID", key_id)
    store = store_from_url(sm_store_url())
    assert isinstance(store, SecretsManagerStore)
    store.write(make_token(), None)
    described = aws.client("secretsmanager").describe_secret(SecretId=store.name)
    assert described["KmsKeyId"] == key_id


def test_sm_secret_scheduled_for_deletion(moto_aws: None, sm_store_url) -> None:
    store = store_from_url(sm_store_url())
    assert isinstance(store, SecretsManagerStore)
    store.write(make_token(), None)
    aws.client("secretsmanager").delete_secret(SecretId=store.name)
    with pytest.raises(ConfigurationError, match="restore-secret"):
        store.read()
    with pytest.raises(ConfigurationError, match="restore-secret"):
        store.write(make_token(), None)


def test_sm_lease_never_creates_a_secret_version(moto_aws: None, sm_store_url) -> None:
    url = sm_store_url()
    store = store_from_url(url)
    assert isinstance(store, SecretsManagerStore)
    store.write(make_token(), None)
    before = _versions(store.name)
    for _ in range(5):
        with store.lease(ttl=30, wait=1):
            assert any(label.startswith("lease.") for label in _stages(store.name)[store.version()])
            with pytest.raises(LeaseBusy), store_from_url(url).lease(ttl=30, wait=0.1):
                pytest.fail("two holders")
    assert _versions(store.name) == before
    assert all(
        not label.startswith("lease.")
        for labels in _stages(store.name).values()
        for label in labels
    )


def test_sm_lease_survives_a_refresh_in_between(moto_aws: None, sm_store_url) -> None:
    """The holder writes (AWSCURRENT moves); its label stays on the old version until release."""
    url = sm_store_url()
    store, other = store_from_url(url), store_from_url(url)
    assert isinstance(store, SecretsManagerStore)
    v1 = store.write(make_token(), None)
    with store.lease(ttl=30, wait=1):
        store.write(make_token("new"), v1)
        with pytest.raises(LeaseBusy), other.lease(ttl=30, wait=0.2):
            pytest.fail("two holders")
    with other.lease(ttl=30, wait=0.5):
        pass
    assert all(
        not label.startswith("lease.")
        for labels in _stages(store.name).values()
        for label in labels
    )


def test_sm_contenders_that_announce_together_both_back_off(moto_aws: None, sm_store_url) -> None:
    """A rival's label appears right after ours: we see it on the check, withdraw, and wait."""
    url = sm_store_url()
    store = store_from_url(url)
    assert isinstance(store, SecretsManagerStore)
    version = store.write(make_token(), None)
    rival = f"lease.{int(time.time()) + 60:010d}.{uuid.uuid4().hex}"
    raw = boto3.client("secretsmanager")  # a separate client: not hooked
    rival_active = [True]

    def rival_announces(params: Any, **_: Any) -> None:
        body = json.loads(params["body"])
        attaching = body.get("MoveToVersionId")
        if rival_active[0] and attaching and rival not in _stages(store.name).get(version, []):
            raw.update_secret_version_stage(
                SecretId=store.name, VersionStage=rival, MoveToVersionId=version
            )

    aws.client("secretsmanager").meta.events.register(
        "before-call.secrets-manager.UpdateSecretVersionStage", rival_announces
    )
    with pytest.raises(LeaseBusy), store.lease(ttl=30, wait=0.3):
        pytest.fail("won beside a rival")
    leases = [label for label in _stages(store.name)[version] if label.startswith("lease.")]
    assert leases == [rival]  # ours was withdrawn
    rival_active[0] = False
    raw.update_secret_version_stage(
        SecretId=store.name, VersionStage=rival, RemoveFromVersionId=version
    )
    with store.lease(ttl=30, wait=0.5):
        pass


def test_sm_lease_on_a_secret_without_a_value_is_a_no_op(moto_aws: None, sm_store_url) -> None:
    store = store_from_url(sm_store_url())
    with store.lease(ttl=30, wait=0.1):
        store.write(make_token(), None)


# -- the credentials secret -------------------------------------------------------------------
def count_calls(service: str, operation: str) -> list[str]:
    calls: list[str] = []
    aws.client(service).meta.events.register(
        f"before-call.*.{operation}", lambda event_name, **_: calls.append(event_name)
    )
    return calls


@pytest.mark.parametrize("name", ["schwab/app", "ssm:/schwab/app"], ids=["secret", "parameter"])
def test_credentials_round_trip_and_cache(moto_aws: None, name: str) -> None:
    store_credentials(name, AppCredentials("key-1", "secret-1", "https://127.0.0.1:8182"))
    service, operation = (
        ("ssm", "GetParameter")
        if name.startswith("ssm:")
        else (
            "secretsmanager",
            "GetSecretValue",
        )
    )
    reads = count_calls(service, operation)
    first = read_credentials(name)
    assert (first.app_key, first.app_secret, first.callback_url) == (
        "key-1",
        "secret-1",
        "https://127.0.0.1:8182",
    )
    assert read_credentials(name) == first
    assert len(reads) == 1  # the second read came from the cache
    store_credentials(name, AppCredentials("key-2", "secret-2"))  # and a new value clears it
    credentials = load_credentials(Settings(credentials_secret=name))
    assert (credentials.app_key, credentials.app_secret) == ("key-2", "secret-2")
    assert "secret-2" not in repr(credentials)


def test_credentials_from_the_environment_win_over_the_secret(moto_aws: None) -> None:
    store_credentials("schwab/app", AppCredentials("stored-key", "stored-secret", "https://x"))
    settings = Settings(app_key="env-key", app_secret="env-secret", credentials_secret="schwab/app")
    assert load_credentials(settings) == AppCredentials("env-key", "env-secret", None)
    # A key alone in the environment takes the secret's app secret and callback.
    only_key = load_credentials(Settings(app_key="env-key", credentials_secret="schwab/app"))
    assert (only_key.app_key, only_key.app_secret, only_key.callback_url) == (
        "env-key",
        "stored-secret",
        "https://x",
    )
    # A manifest entry's own credentials win over everything.
    store_credentials("kid/app", AppCredentials("kid-key", "kid-secret"))
    assert load_credentials(settings, source="kid/app").app_key == "kid-key"
    with pytest.raises(UsageError, match="SCHWAB_APP_KEY"):
        load_credentials(Settings())


def test_storing_the_same_credentials_adds_no_version(moto_aws: None) -> None:
    store_credentials("schwab/app", AppCredentials("k", "s"))
    store_credentials("schwab/app", AppCredentials("k", "s"))
    assert _versions("schwab/app") == 1


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("schwab/nope", "secret schwab/nope does not exist"),
        ("ssm:/schwab/nope", "parameter /schwab/nope does not exist"),
    ],
)
def test_missing_credentials_name_them(moto_aws: None, name: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        read_credentials(name)
    assert words in str(caught.value)
    # A typo is not echoed back as the command to run: that would create the typo.
    assert f"--credentials-secret {name}" not in str(caught.value)


@pytest.mark.parametrize(
    ("document", "words"),
    [('{"note": "x"}', "lack app_key, app_secret"), ("[1]", "JSON object"), ("{no", "not JSON")],
)
def test_unusable_credentials_are_named(moto_aws: None, document: str, words: str) -> None:
    aws.client("secretsmanager").create_secret(Name="placeholder", SecretString=document)
    with pytest.raises(ConfigurationError, match=words):
        read_credentials("placeholder")


def test_denied_credentials_secret_names_the_action(moto_aws: None) -> None:
    store_credentials("schwab/app", AppCredentials("k", "very-secret-value"))
    fail_call(aws.client("secretsmanager"), "GetSecretValue", 400, "AccessDeniedException", "no")
    with pytest.raises(AccessDenied) as caught:
        read_credentials("schwab/app")
    assert "secretsmanager:GetSecretValue" in str(caught.value)
    assert "very-secret-value" not in str(caught.value)


# -- store URLs, notes, pre-flight --------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("s3:/bucket/k", "write it as s3://BUCKET/KEY"),
        ("S3://bucket/k", "write it as s3://BUCKET/KEY"),
        ("SecretsManager://name", "secretsmanager://NAME"),
        ("xyz://thing", "unknown store URL scheme 'xyz'"),
        ("s3://Bucket/k", "3-63 lowercase"),
        ("s3://ab/k", "3-63 lowercase"),
        ("s3://bucket", "s3://BUCKET/KEY"),
        ("secretsmanager://bad name", "letters"),
        ("  ", "empty"),
        ("file:", "file: needs a path"),
    ],
)
def test_store_urls_not_of_our_forms_are_refused(url: str, words: str) -> None:
    with pytest.raises(UsageError, match=words):
        store_from_url(url, Settings())


def test_a_path_or_file_url_is_a_file_store(tmp_path) -> None:
    assert store_from_url("tokens.json").url == "tokens.json"
    assert store_from_url(f"file:{tmp_path}/t.json").path == tmp_path / "t.json"  # type: ignore[attr-defined]


def test_settings_name_the_kms_key_and_the_writer(moto_aws: None, s3_store_url) -> None:
    settings = Settings(kms_key_id="alias/from-settings", writer="laptop-1")
    store = store_from_url(s3_store_url(), settings)
    assert isinstance(store, S3Store)
    store.write(make_token(), None)
    head = aws.client("s3").head_object(Bucket=store.bucket, Key=store.key)
    assert head["SSEKMSKeyId"] == "alias/from-settings" and head["Metadata"]["writer"] == "laptop-1"


def test_notes_are_kept_beside_the_token_with_compare_and_swap(store_url: str) -> None:
    store = store_from_url(store_url)
    version = store.write(make_token(), None)
    assert store.read_notes() == ({}, None)
    first = store.write_notes({"login": 1, "account": "abc"}, None)
    assert store.read_notes() == ({"login": 1, "account": "abc"}, first)
    with pytest.raises(WriteConflict):
        store.write_notes({"login": 2}, None)  # someone wrote notes since
    second = store.write_notes({"login": 2}, first)
    with pytest.raises(WriteConflict):
        store.write_notes({"login": 3}, first)
    assert store.read_notes() == ({"login": 2}, second)
    assert store_from_url(store_url).read_notes()[0] == {"login": 2}  # another process sees it
    assert store.version() == version  # the token itself is untouched


def test_without_list_bucket_missing_notes_count_as_none(moto_aws: None, s3_store_url) -> None:
    """Real S3 answers 403, not 404, for a missing object when the caller may not list the
    bucket (the stack's roles may not); moto always answers 404, so the 403 is sent here while
    the notes object does not exist. The refresher must still be able to start its notes."""
    import boto3

    store = store_from_url(s3_store_url())
    assert isinstance(store, S3Store)
    store.write(make_token(), None)
    plain = boto3.client("s3")  # not the package's client: its hook would see this call

    def missing_is_denied(params: dict[str, Any], **_: Any) -> Any:
        if not params["url_path"].endswith(".notes"):
            return None
        try:
            plain.head_object(Bucket=store.bucket, Key=store.notes_key)
            return None
        except plain.exceptions.ClientError:
            http = AWSResponse("https://example.invalid/", 403, {}, RawBody(b""))
            error = {"Code": "AccessDenied", "Message": "Access Denied"}
            return http, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 403}}

    aws.client("s3").meta.events.register("before-call.s3.GetObject", missing_is_denied)
    assert store.read_notes() == ({}, None)
    first = store.write_notes({"login": 1}, None)
    assert store.read_notes() == ({"login": 1}, first)
    with pytest.raises(WriteConflict):  # notes that do exist are never overwritten blindly
        store.write_notes({"login": 2}, None)


def test_notes_live_where_the_docs_say(store_url: str) -> None:
    store = store_from_url(store_url)
    store.write(make_token(), None)
    store.write_notes({"login": 1}, None)
    if isinstance(store, S3Store):
        body = aws.client("s3").get_object(Bucket=store.bucket, Key=store.key + ".notes")["Body"]
        assert json.loads(body.read()) == {"login": 1}
    else:
        assert isinstance(store, SecretsManagerStore)
        versions = _versions(store.name)
        store.write_notes({"login": 2}, store.read_notes()[1])
        labels = [x for xs in _stages(store.name).values() for x in xs if x.startswith("notes.")]
        assert len(labels) == 1 and labels[0].startswith("notes.1.")
        assert _versions(store.name) == versions  # a label, never a secret version


def test_preflight_proves_the_store_can_be_written(store_url: str) -> None:
    store = store_from_url(store_url)
    store.preflight()  # no token yet is fine
    assert store.version() is None
    store.write(make_token(), None)
    store.preflight()
    with store.lease(ttl=30, wait=0.2):  # and it left no lease behind
        pass


def test_preflight_fails_on_a_missing_bucket(moto_aws: None) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        store_from_url("s3://schwab-tokens-no-such-bucket/t.json").preflight()


# -- over HTTP, through AWS_ENDPOINT_URL --------------------------------------------------------
@pytest.fixture(params=KINDS)
def http_store_url(
    request: pytest.FixtureRequest,
    aws_endpoint: str,
    s3_store_url: Callable[..., str],
    sm_store_url: Callable[..., str],
) -> str:
    return s3_store_url() if request.param == "s3" else sm_store_url()


def test_over_http_round_trip_and_conflict(http_store_url: str, aws_endpoint: str) -> None:
    assert aws.client("s3").meta.endpoint_url == aws_endpoint
    store = store_from_url(http_store_url)
    with pytest.raises(LoginRequired):
        store.read()
    one = make_token("one")
    v1 = store.write(one, None)
    assert store.read().token == one
    two = make_token("two")
    v2 = store.write(two, v1)
    with pytest.raises(WriteConflict):
        store.write(make_token("three"), v1)
    assert store.read().token == two and store.version() == v2


def test_over_http_lease(http_store_url: str) -> None:
    first, second = store_from_url(http_store_url), store_from_url(http_store_url)
    first.write(make_token(), None)
    with first.lease(ttl=30, wait=1), pytest.raises(LeaseBusy), second.lease(ttl=30, wait=0.3):
        pytest.fail("two holders")
    with second.lease(ttl=30, wait=1):
        pass


def test_over_http_corrupt_document(http_store_url: str) -> None:
    store = store_from_url(http_store_url)
    put_raw(store, b"{not json")
    with pytest.raises(InvalidTokenDocument, match="not valid JSON"):
        store.read()


def test_over_http_state_is_reset_between_tests(aws_endpoint: str) -> None:
    assert aws.client("s3").list_buckets()["Buckets"] == []
    assert aws.client("secretsmanager").list_secrets()["SecretList"] == []


@pytest.mark.parametrize("region", [None, "us-east-1"])
def test_a_profile_that_does_not_exist_is_a_configuration_error(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, region: str | None
) -> None:
    """With or without a region given (the credentials' reader asks the profile's region), a
    misspelt AWS_PROFILE is named with the fix (exit 5), never an unexpected error (exit 1)."""
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.delenv("AWS_DEFAULT_REGION")  # so the region is looked for in the profile
    aws.reset_clients()
    try:
        with pytest.raises(ConfigurationError, match="AWS_PROFILE"):
            aws.client("ssm", region)
    finally:
        aws.reset_clients()
