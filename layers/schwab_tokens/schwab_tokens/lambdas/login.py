"""What the hosted login's Lambda does with a Function URL request (payload format 2.0).

The handler is one call to ``handle``: the event's method, path, raw query and cookies go to
``HostedLogin``, its ``Page`` becomes the Function URL's answer, and one JSON log line says
which route answered what (never the query: it carries Schwab's code and the ticket).
"""

from __future__ import annotations

import time
from typing import Any

from ..credentials import load_credentials
from ..errors import ConfigurationError, SchwabTokensError, UnexpectedError
from ..hosted_login import HostedLogin, Page, failure_page
from ..oauth import SchwabOAuth
from ..policy import Clock
from ..settings import Settings
from ..stores import store_from_url
from ..tickets import ticket_key
from .observability import logger


def handle(
    event: Any, settings: Settings | None = None, clock: Clock = time.time
) -> dict[str, Any]:
    """One request: route it, answer it, log what happened."""
    request = event if isinstance(event, dict) else {}
    context = request.get("requestContext") or {}
    http = context.get("http") or {}
    method = str(http.get("method") or "GET")
    path = str(request.get("rawPath") or "/")
    try:
        settings = Settings.from_env() if settings is None else settings
        page = _login(settings, context, clock).handle(
            method, path, str(request.get("rawQueryString") or ""), request.get("cookies") or []
        )
    except SchwabTokensError as exc:  # no store configured, a bad setting
        page = failure_page(exc)
    except Exception as exc:  # a bug: still a page for the person waiting, and only its kind
        page = failure_page(UnexpectedError.wrap(exc))
    logger.info(
        f"hosted login {path}: {page.event or page.status}",
        extra={"route": path, "status": page.status, "event": page.event},
    )
    return {
        "statusCode": page.status,
        "headers": dict(page.headers),
        "cookies": list(page.cookies),
        "body": "" if method == "HEAD" else page.body,
    }


def _login(settings: Settings, context: dict[str, Any], clock: Clock) -> HostedLogin:
    if not settings.store_url:
        raise ConfigurationError("the login function has no TOKEN_STORE_URL")
    # The function URL's own address (AWS sets domainName; the Host header is the client's).
    login_url = settings.login_url or f"https://{context.get('domainName', '')}/"
    store = store_from_url(settings.store_url, settings)

    def app() -> tuple[SchwabOAuth, bytes]:
        creds = load_credentials(settings)
        oauth = SchwabOAuth.from_settings(creds.app_key, creds.app_secret, settings)
        return oauth, ticket_key(creds.app_secret)

    return HostedLogin(store, app, login_url, clock)


__all__ = ["Page", "handle"]
