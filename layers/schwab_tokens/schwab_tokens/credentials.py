"""The Schwab app's key and secret: from the environment, a Secrets Manager secret, or an SSM
SecureString parameter.

The stored form is ``{"app_key", "app_secret", "callback_url"}``. ``SCHWAB_CREDENTIALS_SECRET``
names a secret (``NAME``) or a parameter (``ssm:/PARAMETER/NAME``); either is read through
powertools' Parameters utility, whose cache makes it one call per warm container (per 15
minutes) instead of one per run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import aws, strictjson
from .errors import AccessDenied, ConfigurationError, SchwabTokensError, UsageError
from .parameters import forget_cached, provider, put_secure_string
from .settings import Settings

#: Matches a 5-minute schedule: a warm container reads the credentials about once per 3 runs.
CACHE_SECONDS = 900
SSM_PREFIX = "ssm:"


class CredentialsNotFound(ConfigurationError):
    """The named secret or parameter does not exist (or holds no value yet)."""


@dataclass(frozen=True)
class AppCredentials:
    """The Schwab app's key and secret, and its callback URL if one is known."""

    app_key: str
    app_secret: str = field(repr=False)
    callback_url: str | None = None


def load_credentials(settings: Settings, *, source: str | None = None) -> AppCredentials:
    """The app's key and secret.

    ``source`` (a manifest entry's own credentials) wins; otherwise ``SCHWAB_APP_KEY`` and
    ``SCHWAB_APP_SECRET`` when both are set, else ``SCHWAB_CREDENTIALS_SECRET``. Raises
    ``UsageError`` when none is given, and what ``read_credentials`` raises.
    """
    if source:
        return read_credentials(source, settings.region)
    key, secret, callback = settings.app_key, settings.app_secret, settings.callback_url
    if key and secret:
        return AppCredentials(key, secret, callback)
    if settings.credentials_secret:
        stored = read_credentials(settings.credentials_secret, settings.region)
        return AppCredentials(
            key or stored.app_key, secret or stored.app_secret, callback or stored.callback_url
        )
    raise UsageError(
        "the Schwab app key and secret are needed: set SCHWAB_APP_KEY and SCHWAB_APP_SECRET, "
        "or name a secret (NAME) or parameter (ssm:/NAME) holding both with --credentials-secret "
        "or SCHWAB_CREDENTIALS_SECRET"
    )


def read_credentials(name: str, region: str | None = None) -> AppCredentials:
    """The credentials stored in secret ``name`` or parameter ``ssm:/...`` of ``region``.

    Read through a cache of ``CACHE_SECONDS``. Raises ``CredentialsNotFound`` when there is
    none, ``ConfigurationError`` for a malformed document, and ``AccessDenied`` or
    ``TemporaryFailure`` when AWS refuses or fails.
    """
    check_name(name)
    document = _cached(name, region)
    try:
        data = strictjson.loads(document)
    except strictjson.NotJSON:
        raise ConfigurationError(f"the credentials in {name} are not JSON") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"the credentials in {name} must be a JSON object")
    missing = [
        k for k in ("app_key", "app_secret") if not isinstance(data.get(k), str) or not data[k]
    ]
    if missing:
        raise ConfigurationError(
            f"the credentials in {name} lack {', '.join(missing)}: "
            f"run `schwab-tokens login --credentials-secret {name}`"
        )
    callback = data.get("callback_url")
    return AppCredentials(
        data["app_key"], data["app_secret"], callback if isinstance(callback, str) else None
    )


def credentials_document(credentials: AppCredentials) -> str:
    """The stored form of the credentials: JSON ``{"app_key", "app_secret", "callback_url"}``."""
    return json.dumps(
        {
            "app_key": credentials.app_key,
            "app_secret": credentials.app_secret,
            "callback_url": credentials.callback_url,
        }
    )


def store_credentials(name: str, credentials: AppCredentials, region: str | None = None) -> None:
    """Write the credentials to secret ``name`` or to parameter ``ssm:/...`` (a SecureString).

    A missing secret is created; an unchanged, readable value gets no new version. Raises
    ``UsageError`` for a name SSM would refuse, and ``AccessDenied``, ``TemporaryFailure`` or
    ``ConfigurationError`` when AWS refuses or fails.
    """
    check_name(name)
    document = credentials_document(credentials)
    if name.startswith(SSM_PREFIX):
        put_secure_string(
            name.removeprefix(SSM_PREFIX),
            document,
            "Schwab app key and secret for schwab-tokens",
            region,
        )
    else:
        _put_secret(name, document, region)
    forget_cached()


def check_name(name: str) -> None:
    """Refuse a parameter name SSM would refuse, before any call.

    Raises ``UsageError`` saying why.
    """
    if name.startswith(SSM_PREFIX):
        from .stores.ssm import check_parameter_name

        check_parameter_name(
            name.removeprefix(SSM_PREFIX),
            "a stack whose name begins with aws or ssm cannot keep its credentials in Parameter "
            "Store: deploy it under another name (or with CredentialsStore=SecretsManager)",
        )


# -- reading through powertools ------------------------------------------------------------------
def _cached(name: str, region: str | None) -> str:
    from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

    ssm = name.startswith(SSM_PREFIX)
    service = "ssm" if ssm else "secretsmanager"
    action = "ssm:GetParameter" if ssm else "secretsmanager:GetSecretValue"
    what = f"parameter {name.removeprefix(SSM_PREFIX)}" if ssm else f"secret {name}"
    try:
        if ssm:
            value = provider(service, region).get(
                name.removeprefix(SSM_PREFIX), max_age=CACHE_SECONDS, decrypt=True
            )
        else:
            # AWSCURRENT named explicitly, as AWS does by default (moto can answer a stale
            # version without it).
            value = provider(service, region).get(
                name, max_age=CACHE_SECONDS, VersionStage="AWSCURRENT"
            )
    except GetParameterError as exc:
        # powertools re-raises inside its except block: the botocore error is the context.
        cause = exc.__cause__ or exc.__context__
        if cause is not None and isinstance(cause, aws.boto_errors()):
            missing = _missing(cause, what, aws.client(service, region).meta.region_name)
            if missing is not None:
                raise missing from None
            raise aws.translate(cause, what=what, action=action) from cause
        raise SchwabTokensError(f"cannot read {what}") from exc
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise ConfigurationError(f"{what} is binary, not JSON text") from None
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} has no text value")
    return value


def _missing(exc: BaseException, what: str, region: str | None) -> CredentialsNotFound | None:
    """The error for a secret or parameter that does not exist (most often a typo in its name),
    else None. The name is never echoed back in a command to run: a login run with a misspelt
    name would store the credentials under it."""
    code = aws.error_code(exc)
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message") or "")
    if code == "ResourceNotFoundException" and "staging label" in message:
        # Secrets Manager's answer for a secret that exists but holds no value yet.
        return CredentialsNotFound(
            f"{what} holds no value yet: `schwab-tokens login` given the app key and secret "
            "(SCHWAB_APP_KEY and SCHWAB_APP_SECRET) and this name stores them in it"
        )
    if code not in ("ParameterNotFound", "ResourceNotFoundException"):
        return None
    return CredentialsNotFound(
        f"{what} does not exist in {region or 'this region'}: check the name (the stack's "
        "CredentialsSecretName output) and the region (--region); only `schwab-tokens login` "
        "given the app key and secret (SCHWAB_APP_KEY and SCHWAB_APP_SECRET) creates one"
    )


# -- writing ---------------------------------------------------------------------------------
def _put_secret(name: str, document: str, region: str | None) -> None:
    what = f"secret {name}"
    sm = aws.client("secretsmanager", region)
    try:
        sm.create_secret(
            Name=name,
            SecretString=document,
            Description="Schwab app key and secret for schwab-tokens",
        )
        return
    except aws.boto_errors() as exc:
        # The stack creates the secret (CredentialsStore=SecretsManager), so an identity that
        # may only put a value into it is refused CreateSecret before AWS says it exists.
        error = aws.translate(exc, what=what, action="secretsmanager:CreateSecret")
        if aws.error_code(exc) != "ResourceExistsException" and not isinstance(error, AccessDenied):
            raise error from exc
    try:
        current = sm.get_secret_value(SecretId=name, VersionStage="AWSCURRENT")
    except aws.boto_errors():
        current = {}  # no value yet, or not allowed to read (the stack's resource policy)
    if current.get("SecretString") == document:
        return
    try:
        sm.put_secret_value(SecretId=name, SecretString=document)
    except aws.boto_errors() as exc:
        raise aws.translate(exc, what=what, action="secretsmanager:PutSecretValue") from exc


__all__ = [
    "AppCredentials",
    "CredentialsNotFound",
    "load_credentials",
    "read_credentials",
    "store_credentials",
]
