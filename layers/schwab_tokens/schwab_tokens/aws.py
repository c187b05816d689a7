"""Generic AWS plumbing: botocore clients, botocore's errors translated, SNS publishing.

Clients come from the SDK's own configuration chain (credentials, region, ``AWS_ENDPOINT_URL``
and the per-service ``AWS_ENDPOINT_URL_<SERVICE>``), with bounded timeouts and botocore's
"standard" retries, so throttling and 5xx answers are retried before they reach us. ``translate``
turns whatever is left into this package's errors with a next step in the message.

The clients are botocore's, made by a botocore session: they are the objects boto3 would hand
out (boto3's session wraps the same one), without importing boto3 and s3transfer, about 100 ms of
every cold start and CLI command that touches AWS. botocore is imported on first use, so
``import schwab_tokens.aws`` costs nothing on a cold start that never needs it.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from .errors import AccessDenied, ConfigurationError, SchwabTokensError, TemporaryFailure

if TYPE_CHECKING:
    import botocore.session

#: botocore's ``max_attempts`` counts retries after the first attempt ("standard" mode backs
#: off with jitter in between), so a call makes up to five attempts.
MAX_RETRIES = 4
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10

_lock = threading.Lock()
_session: tuple[int, botocore.session.Session] | None = None
_clients: dict[tuple[str, str | None, int], Any] = {}

# -- error vocabularies (codes as AWS spells them; S3 HEAD errors carry only the status) ---------
_ACCESS_DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "AllAccessDisabled",
    "Forbidden",
    "403",
}
_BAD_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidAccessKeyId",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "InvalidToken",
    "SignatureDoesNotMatch",
    "UnrecognizedClientException",
    "RequestExpired",
    "RequestTimeTooSkewed",
}
_TEMPORARY = {
    "BandwidthLimitExceeded",
    "InternalError",
    "InternalFailure",
    "InternalServiceError",
    "InternalServiceErrorException",
    "LimitExceededException",
    "OperationAborted",
    "PriorRequestNotComplete",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "SlowDown",
    "ThrottledException",
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
}
_KMS = {"DecryptionFailure", "EncryptionFailure"}
#: How AWS says a denial was KMS's ("... not authorized to perform: kms:Decrypt ...", "Access to
#: KMS is not allowed"), without matching a bucket or secret that merely has "kms" in its name.
_KMS_MESSAGE = re.compile(r"kms:|Access to KMS|KMS key|\bKMS\.")
_WRITE_ACTIONS = ("Put", "Create", "Update", "Copy")
#: How AWS ends a denial that a bucket policy or a secret's resource policy made (the stack's
#: perimeter): "User: ARN is not authorized to perform: ACTION on resource: ... with an explicit
#: deny in a resource-based policy".
_RESOURCE_POLICY_DENY = "with an explicit deny in a resource-based policy"

_CREDENTIAL_HINT = (
    "set AWS_PROFILE (and run `aws sso login` for SSO profiles) or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY; in Lambda the function's role provides them"
)


# -- clients -----------------------------------------------------------------------------------
def client(service: str, region: str | None = None) -> Any:
    """The process's client for ``service`` in ``region``, shared by all threads.

    ``region`` is ``Settings.region``; None means the SDK's own chain (the profile's). Endpoints
    and credentials come only from that chain. Raises ``ConfigurationError`` when botocore
    cannot make the client (no region, a bad profile).
    """
    key = (service, region, os.getpid())
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        session = _this_session()
        try:
            # The region the SDK would choose by itself, named, shares that one's client.
            chosen = region or session.get_config_variable("region")
        except boto_errors() as exc:  # a profile that does not exist, a broken config file
            raise translate(exc, what=f"the {service} client", action=f"{service} access") from exc
        same = (service, chosen, os.getpid())
        found = _clients.get(same)
        if found is None:
            found = _new_client(session, service, region)
            _clients[same] = found
        _clients[key] = found
        return found


def _this_session() -> botocore.session.Session:
    """The process's one botocore session (not thread safe: made and used under the lock)."""
    global _session
    import botocore.session

    pid = os.getpid()
    if _session is None or _session[0] != pid:
        _session = (pid, botocore.session.Session())
    return _session[1]


def _new_client(session: botocore.session.Session, service: str, region: str | None) -> Any:
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "max_attempts": MAX_RETRIES},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    # Any: the service is a run-time name; callers annotate the client they get (with the
    # type stubs of development) where a reader benefits.
    try:
        return session.create_client(service, config=config, region_name=region)
    except boto_errors() as exc:
        raise translate(exc, what=f"the {service} client", action=f"{service} access") from exc


#: What every write of a token needs from S3 (conditional writes, late 2024).
S3_CONDITIONS = {"PutObject": ("IfMatch", "IfNoneMatch"), "DeleteObject": ("IfMatch",)}
_missing_conditions: dict[int, list[str]] = {}


def require_s3_conditional_writes() -> None:
    """Refuse to write to S3 with a botocore that cannot send S3's conditional writes.

    Such a botocore would drop the conditions and write blindly. Checked once per process.
    Raises ``ConfigurationError`` naming the fix (a newer boto3).
    """
    pid = os.getpid()
    if pid not in _missing_conditions:
        model = client("s3").meta.service_model
        _missing_conditions[pid] = [
            f"{operation} {name}"
            for operation, names in S3_CONDITIONS.items()
            for name in names
            if name not in model.operation_model(operation).input_shape.members
        ]
    missing = _missing_conditions[pid]
    if missing:
        import botocore

        raise ConfigurationError(
            f"this botocore ({botocore.__version__}) cannot send S3's conditional writes "
            f"({', '.join(missing)}), which every write of the token needs: in Lambda, the "
            "runtime's bundled boto3 is too old in this region; add a layer with boto3 and "
            "botocore 1.35.69 or newer (or update the runtime). On a computer: pip install -U boto3"
        )


def reset_clients() -> None:
    """Forget every client and the session (tests; a changed environment)."""
    global _session
    with _lock:
        _clients.clear()
        _missing_conditions.clear()
        _session = None
    for forget in _on_reset:
        forget()


def on_reset(forget: Any) -> None:
    """Call ``forget()`` whenever the clients are reset (caches built on them register here)."""
    _on_reset.append(forget)


_on_reset: list[Any] = []


def boto_errors() -> tuple[type[Exception], ...]:
    """The exception classes ``translate`` understands, for ``except aws.boto_errors() as e``.

    A function so botocore is imported only when an exception is actually being matched.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError`` (``"NoSuchKey"``, ``"412"`` ...), else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ``ClientError``'s answer, else None."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


# -- translation -------------------------------------------------------------------------------
def translate(exc: BaseException, *, what: str, action: str) -> SchwabTokensError:
    """The package's error for a failed AWS call on ``what`` that needs permission ``action``.

    ``what`` is e.g. ``s3://b/k``, ``action`` e.g. ``s3:GetObject``. Returns (never raises) a
    ``TemporaryFailure``, ``AccessDenied``, ``ConfigurationError`` or ``SchwabTokensError``
    whose message names the next step and never carries request values.
    """
    if isinstance(exc, SchwabTokensError):
        return exc
    from botocore import exceptions as be

    kind = type(exc).__name__
    if isinstance(exc, be.ClientError):
        return _translate_client_error(exc, what, action)
    if isinstance(
        exc,
        be.NoCredentialsError
        | be.PartialCredentialsError
        | be.CredentialRetrievalError
        | be.NoAuthTokenError
        | be.TokenRetrievalError
        | be.SSOError
        | be.ProfileNotFound
        | be.UnknownCredentialError,
    ):
        return ConfigurationError(
            f"no usable AWS credentials for {what} ({kind}): {_CREDENTIAL_HINT}"
        )
    if isinstance(exc, be.NoRegionError):
        return ConfigurationError(
            f"no AWS region for {what}: set AWS_REGION (e.g. us-east-1) or a region in your "
            "AWS profile"
        )
    if isinstance(exc, be.InvalidRegionError):
        return ConfigurationError(
            f"the AWS region for {what} is not a region name: set AWS_REGION or "
            "AWS_DEFAULT_REGION (or --region) to one such as us-east-1"
        )
    if isinstance(exc, be.HTTPClientError | be.ConnectionError | be.CapacityNotAvailableError):
        return TemporaryFailure(
            f"cannot reach AWS for {what} ({kind}) after {MAX_RETRIES} retries; "
            "the stored token is untouched, try again later"
        )
    if isinstance(exc, be.ParamValidationError):
        # Its text can quote a parameter's value; only name the kind of problem.
        return ConfigurationError(
            f"invalid request for {what} ({action}): check the bucket, key or secret name"
        )
    return SchwabTokensError(f"AWS client error for {what} ({kind})")


@contextmanager
def translated(what: str, action: str) -> Iterator[None]:
    """Run AWS calls whose botocore errors leave as the package's errors (``translate``).

    Raises ``TemporaryFailure``, ``AccessDenied`` or ``ConfigurationError`` naming ``what``
    and the IAM permission ``action``.
    """
    try:
        yield
    except boto_errors() as exc:
        raise translate(exc, what=what, action=action) from exc


def _translate_client_error(exc: Any, what: str, action: str) -> SchwabTokensError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    message = str(error.get("Message") or "")
    status = http_status(exc) or 0
    label = code or str(status)
    operation = getattr(exc, "operation_name", "") or ""

    throttled = code in _TEMPORARY or "Throttl" in code or status == 429 or status >= 500
    if (
        code.startswith("KMS")
        or code in _KMS
        or ((code in _ACCESS_DENIED or status == 403) and _KMS_MESSAGE.search(message))
    ):
        if throttled:
            return _temporary_error(label, what, action)
        writing = _is_write(action) or operation.startswith(_WRITE_ACTIONS)
        kms_action = "kms:GenerateDataKey" if writing else "kms:Decrypt"
        return AccessDenied(
            f"the KMS key of {what} cannot be used ({label}): the role needs {kms_action} on "
            "the key, and the key must be enabled"
        )
    if code in _BAD_CREDENTIALS:
        return ConfigurationError(
            f"AWS rejected the credentials for {what} ({label}): renew them and check the "
            f"clock; {_CREDENTIAL_HINT}"
        )
    if (code in _ACCESS_DENIED or status == 403) and _RESOURCE_POLICY_DENY in message:
        return AccessDenied(
            f"access denied to {what} ({action}) by its resource policy, the stack's perimeter "
            "around the token: add this identity's ARN (an assumed role's: its role's ARN) to "
            "the stack's AdministratorPrincipals parameter (people, e.g. who runs "
            "`schwab-tokens login`) or DocumentReaderPrincipals (bots that refresh the token "
            "themselves) and deploy; see docs/deploy.md"
        )
    if code in _ACCESS_DENIED or status == 403:
        hint = ""
        if action == "s3:GetObject":
            hint = " (without s3:ListBucket on the bucket, a missing object also answers 403)"
        return AccessDenied(f"access denied to {what}: the role needs {action}{hint}")
    if code == "NoSuchBucket":
        bucket = error.get("BucketName") or _bucket_of(what)
        return ConfigurationError(
            f"bucket {bucket} does not exist: deploy the stack or create it, and check the "
            "region and the store URL"
        )
    if code == "ResourceNotFoundException":
        return ConfigurationError(
            f"{what} does not exist: check the secret name, the region and the account"
        )
    if code in ("NoSuchKey", "NotFound", "404"):
        return ConfigurationError(f"{what} does not exist")
    if code == "InvalidRequestException" and "delet" in message.lower():
        return ConfigurationError(f"{what} {deletion_hint(_name_of(what))}")
    if throttled:
        return _temporary_error(label, what, action)
    return ConfigurationError(f"AWS refused {action} on {what}: {label}: {message[:300]}")


def _temporary_error(label: str, what: str, action: str) -> TemporaryFailure:
    return TemporaryFailure(
        f"AWS answered {label} to {action} on {what} after {MAX_RETRIES} retries; "
        "the stored token is untouched, try again later"
    )


def _is_write(action: str) -> bool:
    return action.partition(":")[2].startswith(_WRITE_ACTIONS)


def deletion_hint(name: str) -> str:
    """What to do with a secret that is scheduled for deletion."""
    return (
        f"is scheduled for deletion: restore it with `aws secretsmanager restore-secret "
        f"--secret-id {name}` or use another name"
    )


def _name_of(what: str) -> str:
    """The secret or parameter name in ``what`` (``secretsmanager://NAME``, ``secret NAME``)."""
    return what.removeprefix("secretsmanager://").removeprefix("secret ")


def _bucket_of(what: str) -> str:
    if what.startswith("s3://"):
        return what[len("s3://") :].partition("/")[0]
    return what


# -- notifications ------------------------------------------------------------------------------
def publish(topic_arn: str, subject: str, message: str, attributes: dict[str, str]) -> None:
    """Publish one SNS message to ``topic_arn``, in the topic's own region.

    E-mail subscribers see ``subject`` and ``message``; ``attributes`` are string message
    attributes a subscription can filter on. Raises ``TemporaryFailure``, ``AccessDenied`` or
    ``ConfigurationError``.
    """
    region = topic_arn.split(":")[3] if topic_arn.count(":") >= 5 else None  # the topic's own
    try:
        client("sns", region).publish(
            TopicArn=topic_arn,
            Subject=subject[:99],  # "less than 100 characters"
            Message=message,
            MessageAttributes={
                name: {"DataType": "String", "StringValue": value}
                for name, value in attributes.items()
            },
        )
    except boto_errors() as exc:
        raise translate(exc, what=f"topic {topic_arn}", action="sns:Publish") from exc


__all__ = [
    "boto_errors",
    "client",
    "error_code",
    "http_status",
    "publish",
    "reset_clients",
    "translate",
    "translated",
]
