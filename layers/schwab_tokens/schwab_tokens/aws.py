"""The one module that talks to boto3 and knows botocore's errors.

Clients come from boto3's own configuration chain (credentials, region, ``AWS_ENDPOINT_URL`` and
the per-service ``AWS_ENDPOINT_URL_<SERVICE>``), with bounded timeouts and botocore's "standard"
retries, so throttling and 5xx answers are retried before they reach us. ``translate`` turns
whatever is left into this package's errors with a next step in the message. boto3 is imported
on first use, so ``import schwab_tokens.aws`` costs nothing on a cold start that never needs it.
"""

from __future__ import annotations

import os
import re
import threading
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError, SchwabTokensError, TemporaryFailure

if TYPE_CHECKING:
    import boto3

#: botocore's ``max_attempts`` counts retries after the first attempt ("standard" mode backs
#: off with jitter in between), so a call makes up to five attempts.
MAX_RETRIES = 4
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10

_lock = threading.Lock()
_session: tuple[int, boto3.session.Session] | None = None
_clients: dict[tuple[str, int], Any] = {}
_secrets_provider: tuple[int, Any] | None = None

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

_CREDENTIAL_HINT = (
    "set AWS_PROFILE (and run `aws sso login` for SSO profiles) or AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY; in Lambda the function's role provides them"
)


# -- clients -----------------------------------------------------------------------------------
def client(service: str) -> Any:
    """A boto3 client for ``service``, made once per process and shared by all threads.

    boto3 clients are thread safe, sessions are not: every client is created under one lock
    from one session. Endpoints, credentials and the region come only from boto3's own chain.
    """
    key = (service, os.getpid())
    found = _clients.get(key)
    if found is not None:
        return found
    with _lock:
        found = _clients.get(key)
        if found is None:
            found = _new_client(service)
            _clients[key] = found
        return found


def _new_client(service: str) -> Any:
    global _session
    import boto3.session
    from botocore.config import Config

    pid = os.getpid()
    if _session is None or _session[0] != pid:
        _session = (pid, boto3.session.Session())
    config = Config(
        retries={"mode": "standard", "max_attempts": MAX_RETRIES},
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
    )
    try:
        return _session[1].client(service, config=config)
    except boto_errors() as exc:
        raise translate(exc, what=f"the {service} client", action=f"{service} access") from exc


def reset_clients() -> None:
    """Forget every client, the session and the secrets cache (tests; a changed environment)."""
    global _session, _secrets_provider
    with _lock:
        _clients.clear()
        _session = None
        _secrets_provider = None


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
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


# -- translation -------------------------------------------------------------------------------
def translate(exc: BaseException, *, what: str, action: str) -> SchwabTokensError:
    """The error to raise for a failed AWS call on ``what`` (e.g. ``s3://b/k``) needing the IAM
    permission ``action`` (e.g. ``s3:GetObject``). Messages never carry request values."""
    if isinstance(exc, SchwabTokensError):
        return exc
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return _translate_client_error(exc, what, action)
    names = {cls.__name__ for cls in type(exc).__mro__}
    kind = type(exc).__name__
    if names & {
        "NoCredentialsError",
        "PartialCredentialsError",
        "CredentialRetrievalError",
        "NoAuthTokenError",
        "TokenRetrievalError",
        "SSOError",
        "LoginError",
        "ProfileNotFound",
        "UnknownCredentialError",
    }:
        return ConfigurationError(
            f"no usable AWS credentials for {what} ({kind}): {_CREDENTIAL_HINT}"
        )
    if "NoRegionError" in names:
        return ConfigurationError(
            f"no AWS region for {what}: set AWS_REGION (e.g. us-east-1) or a region in your "
            "AWS profile"
        )
    if names & {"HTTPClientError", "ConnectionError", "CapacityNotAvailableError"}:
        return TemporaryFailure(
            f"cannot reach AWS for {what} ({kind}) after {MAX_RETRIES} retries; "
            "the stored token is untouched, try again later"
        )
    if "ParamValidationError" in names:
        # Its text can quote a parameter's value; only name the kind of problem.
        return ConfigurationError(
            f"invalid request for {what} ({action}): check the bucket, key or secret name"
        )
    return SchwabTokensError(f"AWS client error for {what} ({kind})")


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
            return _temporary(label, what, action)
        writing = _is_write(action) or operation.startswith(_WRITE_ACTIONS)
        kms_action = "kms:GenerateDataKey" if writing else "kms:Decrypt"
        return ConfigurationError(
            f"the KMS key of {what} cannot be used ({label}): the role needs {kms_action} on "
            "the key, and the key must be enabled"
        )
    if code in _BAD_CREDENTIALS:
        return ConfigurationError(
            f"AWS rejected the credentials for {what} ({label}): renew them and check the "
            f"clock; {_CREDENTIAL_HINT}"
        )
    if code in _ACCESS_DENIED or status == 403:
        hint = ""
        if action == "s3:GetObject":
            hint = " (without s3:ListBucket on the bucket, a missing object also answers 403)"
        return ConfigurationError(f"access denied to {what}: the role needs {action}{hint}")
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
        return ConfigurationError(
            f"{what} is scheduled for deletion: restore it "
            "(`aws secretsmanager restore-secret --secret-id NAME`) or use another name"
        )
    if throttled:
        return _temporary(label, what, action)
    return ConfigurationError(f"AWS refused {action} on {what}: {label}: {message[:300]}")


def _temporary(label: str, what: str, action: str) -> TemporaryFailure:
    return TemporaryFailure(
        f"AWS answered {label} to {action} on {what} after {MAX_RETRIES} retries; "
        "the stored token is untouched, try again later"
    )


def _is_write(action: str) -> bool:
    return action.partition(":")[2].startswith(_WRITE_ACTIONS)


def _bucket_of(what: str) -> str:
    if what.startswith("s3://"):
        return what[len("s3://") :].partition("/")[0]
    return what


# -- the credentials secret ----------------------------------------------------------------------
def _provider() -> Any:
    global _secrets_provider
    pid = os.getpid()
    if _secrets_provider is None or _secrets_provider[0] != pid:
        from aws_lambda_powertools.utilities.parameters import SecretsProvider

        sm = client("secretsmanager")
        with _lock:
            if _secrets_provider is None or _secrets_provider[0] != pid:
                _secrets_provider = (pid, SecretsProvider(boto3_client=sm))
    return _secrets_provider[1]


def cached_secret(name: str, max_age: int) -> str:
    """The current value of secret ``name``, cached ``max_age`` seconds by powertools.

    The provider shares our client (our retries and timeouts, boto3's endpoint chain) and asks
    for ``AWSCURRENT`` explicitly, as AWS does by default.
    """
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    what = f"secret {name}"
    try:
        value = _provider().get(name, max_age=max_age, VersionStage="AWSCURRENT")
    except GetParameterError as exc:
        # powertools re-raises inside its except block: the botocore error is the context.
        cause = exc.__cause__ or exc.__context__
        if cause is not None and isinstance(cause, boto_errors()):
            raise translate(cause, what=what, action="secretsmanager:GetSecretValue") from cause
        raise SchwabTokensError(f"cannot read {what}") from exc
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ConfigurationError(f"{what} is binary, not JSON text") from None
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} has no text value")
    return value


def put_credentials_secret(
    name: str, app_key: str, app_secret: str, callback_url: str | None
) -> None:
    """Store the app key and secret as ``{"app_key", "app_secret", "callback_url"}`` in secret
    ``name``: create it if missing, else add a new version (none if the value is unchanged)."""
    from .credentials import AppCredentials, credentials_document

    document = credentials_document(AppCredentials(app_key, app_secret, callback_url))
    what = f"secret {name}"
    sm = client("secretsmanager")
    try:
        sm.create_secret(
            Name=name,
            SecretString=document,
            Description="Schwab app key and secret for schwab-tokens",
        )
    except boto_errors() as exc:
        if error_code(exc) != "ResourceExistsException":
            raise translate(exc, what=what, action="secretsmanager:CreateSecret") from exc
        try:
            current = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
        except boto_errors():
            current = {}  # no value yet, or no read permission: just write
        if current.get("SecretString") != document:
            try:
                sm.put_secret_value(SecretId=name, SecretString=document)
            except boto_errors() as put_exc:
                raise translate(
                    put_exc, what=what, action="secretsmanager:PutSecretValue"
                ) from put_exc
    if _secrets_provider is not None:
        _secrets_provider[1].clear_cache()


__all__ = [
    "boto_errors",
    "cached_secret",
    "client",
    "error_code",
    "put_credentials_secret",
    "reset_clients",
    "translate",
]
