"""The Schwab app's key and secret: from flags, the environment, or a Secrets Manager secret.

The secret (``SCHWAB_CREDENTIALS_SECRET``) holds ``{"app_key", "app_secret", "callback_url"}``
and is read through powertools' Parameters utility, whose cache makes it one call per warm
container instead of one per run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConfigurationError, UsageError

#: Matches a 5-minute schedule: a warm container reads the secret about once per run at most.
CACHE_SECONDS = 900


@dataclass(frozen=True)
class AppCredentials:
    app_key: str
    app_secret: str = field(repr=False)
    callback_url: str | None = None


def load_credentials(
    app_key: str | None = None,
    app_secret: str | None = None,
    env: Mapping[str, str] | None = None,
) -> AppCredentials:
    """Flags first, then ``SCHWAB_APP_KEY``/``SCHWAB_APP_SECRET``, then the credentials secret."""
    env = os.environ if env is None else env
    key = app_key or env.get("SCHWAB_APP_KEY")
    secret = app_secret or env.get("SCHWAB_APP_SECRET")
    callback = env.get("SCHWAB_CALLBACK_URL") or None
    if key and secret:
        return AppCredentials(key, secret, callback)
    secret_name = env.get("SCHWAB_CREDENTIALS_SECRET")
    if secret_name:
        stored = read_credentials_secret(secret_name)
        return AppCredentials(
            key or stored.app_key, secret or stored.app_secret, callback or stored.callback_url
        )
    raise UsageError(
        "the Schwab app key and secret are needed: pass --app-key and --app-secret, set "
        "SCHWAB_APP_KEY and SCHWAB_APP_SECRET, or name a secret in SCHWAB_CREDENTIALS_SECRET"
    )


def read_credentials_secret(name: str) -> AppCredentials:
    from . import aws

    document = aws.cached_secret(name, max_age=CACHE_SECONDS)
    try:
        data = json.loads(document)
    except ValueError:
        raise ConfigurationError(f"the credentials secret {name} is not JSON") from None
    if not isinstance(data, dict):
        raise ConfigurationError(f"the credentials secret {name} must be a JSON object")
    missing = [k for k in ("app_key", "app_secret") if not isinstance(data.get(k), str)]
    if missing:
        raise ConfigurationError(
            f"the credentials secret {name} lacks {', '.join(missing)}: "
            f"run `schwab-tokens login --credentials-secret {name}`"
        )
    callback = data.get("callback_url")
    return AppCredentials(
        data["app_key"], data["app_secret"], callback if isinstance(callback, str) else None
    )


def credentials_document(credentials: AppCredentials) -> str:
    return json.dumps(
        {
            "app_key": credentials.app_key,
            "app_secret": credentials.app_secret,
            "callback_url": credentials.callback_url,
        }
    )


__all__ = ["AppCredentials", "load_credentials", "read_credentials_secret"]
