"""Every setting the package reads from the environment, checked once, in one frozen object.

``Settings.from_env()`` is the only place that reads ``os.environ``; the edges (the CLI's
``main``, the Lambda handlers, ``TokenReader.from_env``) build it and pass it down. A value that
is not of its form or out of its range is a ``UsageError`` naming the variable and the range, so
a typo fails at start-up with exit 2 instead of half-way through a refresh.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .errors import UsageError

DEFAULT_API_BASE = "https://api.schwabapi.com"
#: Refresh when fewer seconds than this are left: with the default 5-minute schedule the token is
#: due 900-600 s before expiry, so one failed run still leaves more than schwab-py's 300 s leeway.
DEFAULT_REFRESH_MARGIN = 900.0
#: Half of the access token's 30 minutes, as the template allows: a larger margin makes nearly
#: every check refresh (at 1800, every one), and refreshes less than 15 minutes apart.
MAX_REFRESH_MARGIN = 900.0
DEFAULT_HTTP_TIMEOUT = 15.0
DEFAULT_HTTP_RETRIES = 3
#: Longer than the slowest token call with its retries, so a live holder keeps the lease.
DEFAULT_LEASE_TTL = 120.0

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True)
class Settings:
    """The package's configuration; ``from_env`` reads overrides of the contract's defaults."""

    store_url: str | None = None
    #: A consumer's access view (``TOKEN_ACCESS_URL``: the stack's AccessTokenUrl output).
    access_url: str | None = None
    store_urls: str = ""
    manifest: str = ""
    api_base: str = DEFAULT_API_BASE
    app_key: str | None = None
    app_secret: str | None = field(default=None, repr=False)
    #: A Secrets Manager secret name, or ``ssm:/parameter/name`` for an SSM SecureString.
    credentials_secret: str | None = None
    callback_url: str | None = None
    refresh_margin: float = DEFAULT_REFRESH_MARGIN
    http_timeout: float = DEFAULT_HTTP_TIMEOUT
    http_retries: int = DEFAULT_HTTP_RETRIES
    lease_ttl: float = DEFAULT_LEASE_TTL
    kms_key_id: str | None = None
    #: Who writes (S3 object metadata): the Lambda function's name, else the host name.
    writer: str = "unknown"
    #: The SNS topic the refresher notifies (state changes of the login).
    topic_arn: str | None = None
    #: The hosted login's function URL (ends with ``/``), when the stack enables it.
    login_url: str | None = None
    #: The SSM SecureString of the alert URLs the notifier sends to (``/<stack>/alerts``).
    alerts_parameter: str | None = None
    #: The AWS region (boto3 reads it itself; the refresher names it in the commands it e-mails).
    region: str | None = None
    #: Custom CloudWatch metrics (EMF) besides the log line: opt-in, each costs $0.30 a month.
    detailed_metrics: bool = False
    debug: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings in ``env`` (default: the process's environment), checked.

        Raises ``UsageError`` naming the variable for a value out of its form or range.
        """
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            store_url=text("TOKEN_STORE_URL"),
            access_url=text("TOKEN_ACCESS_URL"),
            store_urls=text("TOKEN_STORE_URLS") or "",
            manifest=text("TOKEN_MANIFEST") or "",
            api_base=api_base(text("SCHWAB_API_BASE") or DEFAULT_API_BASE, "SCHWAB_API_BASE"),
            app_key=text("SCHWAB_APP_KEY"),
            app_secret=text("SCHWAB_APP_SECRET"),
            credentials_secret=text("SCHWAB_CREDENTIALS_SECRET"),
            callback_url=text("SCHWAB_CALLBACK_URL"),
            refresh_margin=number(env, "REFRESH_MARGIN_SECONDS", DEFAULT_REFRESH_MARGIN, MARGIN),
            http_timeout=number(env, "SCHWAB_HTTP_TIMEOUT", DEFAULT_HTTP_TIMEOUT, TIMEOUT),
            http_retries=int(number(env, "SCHWAB_HTTP_RETRIES", DEFAULT_HTTP_RETRIES, RETRIES)),
            lease_ttl=number(env, "SCHWAB_TOKENS_LEASE_TTL", DEFAULT_LEASE_TTL, LEASE_TTL),
            kms_key_id=text("TOKEN_STORE_KMS_KEY_ID"),
            writer=_writer(text("AWS_LAMBDA_FUNCTION_NAME")),
            topic_arn=text("SCHWAB_TOKENS_TOPIC_ARN"),
            login_url=_optional_url(text("SCHWAB_LOGIN_URL"), "SCHWAB_LOGIN_URL"),
            alerts_parameter=text("SCHWAB_TOKENS_ALERTS_PARAMETER"),
            region=text("AWS_REGION") or text("AWS_DEFAULT_REGION"),
            detailed_metrics=flag(env, "SCHWAB_TOKENS_DETAILED_METRICS"),
            debug=flag(env, "SCHWAB_TOKENS_DEBUG"),
        )

    @staticmethod
    def metrics_wanted(env: Mapping[str, str] | None = None) -> bool:
        """Whether custom metrics are on, read alone (for when the rest of the settings fail).

        The failure metric of a broken configuration must still be emitted. Raises
        ``UsageError`` for a value that is not true or false.
        """
        return flag(os.environ if env is None else env, "SCHWAB_TOKENS_DETAILED_METRICS")

    def with_(self, **changes: Any) -> Settings:
        """A copy with some settings replaced (flags given on the command line)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Range:
    """The numbers a setting accepts: finite, within ``[low, high]``, whole if ``integer``.

    ``low_open`` excludes ``low``.
    """

    low: float
    high: float
    low_open: bool = False
    integer: bool = False

    def check(self, raw: str | float, name: str) -> float:
        """``raw`` as a number in range, or a ``UsageError`` naming ``name`` and the range."""
        kind = "a whole number" if self.integer else "a number of seconds"
        lower = f"more than {self.low:g} up" if self.low_open else f"from {self.low:g}"
        refusal = f"{name} must be {kind} {lower} to {self.high:g}, not {str(raw)[:40]!r}"
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UsageError(refusal) from None
        if (
            not math.isfinite(value)
            or value < self.low
            or (self.low_open and value <= self.low)
            or value > self.high
            or (self.integer and value != int(value))
        ):
            raise UsageError(refusal)
        return value


MARGIN = Range(0, MAX_REFRESH_MARGIN)
TIMEOUT = Range(0, 300, low_open=True)
RETRIES = Range(0, 10, integer=True)
# At least 1 s: below that no holder could ever call Schwab (tests use 1.5 s to compress time).
LEASE_TTL = Range(1, 3600)
#: ``watch --interval``: anything from a blink to a day.
INTERVAL = Range(0, 86400, low_open=True)


def number(env: Mapping[str, str], name: str, default: float, accepted: Range) -> float:
    """``env[name]`` checked against ``accepted``, or ``default`` when it is not set.

    Raises ``UsageError`` naming ``name`` and the range.
    """
    raw = env.get(name, "").strip()
    return accepted.check(raw, name) if raw else default


def flag(env: Mapping[str, str], name: str) -> bool:
    """The true-or-false variable ``name`` of ``env`` (unset: False).

    Raises ``UsageError`` for a value that is neither.
    """
    raw = env.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off", "disabled"):
        return False
    if raw in ("1", "true", "yes", "on", "enabled"):
        return True
    raise UsageError(f"{name} must be true or false, not {raw[:20]!r}")


def api_base(url: str, name: str = "--api-base") -> str:
    """``url`` checked to be Schwab's base URL: https, or plain http only to this machine.

    Raises ``UsageError`` naming ``name`` otherwise.
    """
    refusal = UsageError(
        f"{name} must be an https:// URL with a host and no user or password (plain http only "
        "to 127.0.0.1): the refresh token and the app secret travel in the request"
    )
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
    except ValueError:  # e.g. an unclosed [ in the host
        raise refusal from None
    if parts.username is not None or parts.password is not None:
        raise refusal  # it would be repeated in every error message naming the URL
    if (parts.scheme == "https" and host) or (parts.scheme == "http" and host in _LOOPBACK):
        return url.strip().rstrip("/")
    raise refusal


def _optional_url(url: str | None, name: str) -> str | None:
    """An https URL the e-mails send people to (checked like the API base), or None."""
    return None if url is None else api_base(url, name) + "/"


def _writer(function_name: str | None) -> str:
    name = function_name or socket.gethostname() or "unknown"
    # S3 metadata must be ASCII; keep it short and plain.
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:64] or "unknown"
