"""Small secrets kept in AWS: read through powertools' Parameters cache (one call per warm
container per ``max_age``), and written as SSM SecureStrings. Shared by the app credentials
(``credentials.py``) and the alert URLs (``alert_urls.py``)."""

from __future__ import annotations

import os
import threading
from typing import Any

from . import aws

_lock = threading.Lock()
_providers: dict[tuple[str, str | None, int], Any] = {}


def provider(service: str, region: str | None) -> Any:
    """The process's powertools provider (``ssm`` or ``secretsmanager``) for ``region``.

    It runs on ``aws.client``'s client: our retries and timeouts, boto3's endpoint chain.
    """
    key = (service, region, os.getpid())
    found = _providers.get(key)
    if found is not None:
        return found
    from aws_lambda_powertools.utilities.parameters import SecretsProvider, SSMProvider

    client = aws.client(service, region)
    with _lock:
        if key not in _providers:
            cls = SSMProvider if service == "ssm" else SecretsProvider
            _providers[key] = cls(boto3_client=client)
        return _providers[key]


def forget_cached() -> None:
    """Drop what the providers cached (a value just written must be read afresh)."""
    for each in list(_providers.values()):
        each.clear_cache()


def put_secure_string(name: str, value: str, description: str, region: str | None) -> None:
    """Write the standard-tier SecureString ``name`` (``aws/ssm`` key), replacing its value.

    Raises ``AccessDenied``, ``TemporaryFailure`` or ``ConfigurationError`` when SSM refuses.
    """
    with aws.translated(f"parameter {name}", "ssm:PutParameter"):
        aws.client("ssm", region).put_parameter(
            Name=name,
            Value=value,
            Type="SecureString",
            Tier="Standard",
            Overwrite=True,
            Description=description,
        )
    forget_cached()


def _forget_providers() -> None:
    _providers.clear()


aws.on_reset(_forget_providers)
