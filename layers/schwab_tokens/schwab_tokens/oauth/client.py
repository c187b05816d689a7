"""``SchwabOAuth``: one Schwab app talking to Schwab's OAuth endpoints (authorize URL, code
exchange, refresh) and the account route. No AWS here."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from ..errors import TemporaryFailure, UsageError
from ..settings import (
    DEFAULT_API_BASE,
    DEFAULT_HTTP_RETRIES,
    DEFAULT_HTTP_TIMEOUT,
    Settings,
    api_base,
)
from .accounts import account_fingerprint
from .answers import classify
from .http import Deadline, Http, Unreachable

AUTHORIZE_PATH = "/v1/oauth/authorize"
TOKEN_PATH = "/v1/oauth/token"
ACCOUNT_NUMBERS_PATH = "/trader/v1/accounts/accountNumbers"


class SchwabOAuth:
    """One Schwab app (key and secret) talking to Schwab's OAuth and account endpoints.

    ``base_url`` must be https (plain http only to loopback, for the emulator). ``timeout`` is
    the read timeout per try (default 15 s) and ``retries`` the extra tries for a transient
    fault (default 3); the worst case is about ``(retries + 1) * (connect + read timeout)``
    plus at most ~15 s of backoff. Build it from settings with ``SchwabOAuth.from_settings``.
    Raises ``UsageError`` without a key and secret or with an unusable ``base_url``.
    """

    def __init__(
        self,
        app_key: str,
        app_secret: str,
        *,
        base_url: str | None = None,
        timeout: float = DEFAULT_HTTP_TIMEOUT,
        retries: int = DEFAULT_HTTP_RETRIES,
        connect_timeout: float = 5.0,
    ) -> None:
        if not app_key or not app_secret:
            raise UsageError(
                "the Schwab app key and secret are needed: set SCHWAB_APP_KEY and "
                "SCHWAB_APP_SECRET, or name the credentials in SCHWAB_CREDENTIALS_SECRET"
            )
        self.app_key = app_key
        self._app_secret = app_secret
        self.base_url = api_base(base_url or DEFAULT_API_BASE, "SCHWAB_API_BASE")
        self.timeout = (min(connect_timeout, timeout), timeout)
        self.retries = max(0, int(retries))
        self._http = Http(self.timeout, self.retries)

    @classmethod
    def from_settings(cls, app_key: str, app_secret: str, settings: Settings) -> SchwabOAuth:
        """The client for one app with the HTTP settings (base URL, timeout, retries).

        Raises ``UsageError`` without a key and secret.
        """
        return cls(
            app_key,
            app_secret,
            base_url=settings.api_base,
            timeout=settings.http_timeout,
            retries=settings.http_retries,
        )

    def __repr__(self) -> str:
        return f"SchwabOAuth(app_key=…{self.app_key[-4:]}, base_url={self.base_url!r})"

    @property
    def token_url(self) -> str:
        """The token endpoint's URL."""
        return self.base_url + TOKEN_PATH

    @property
    def try_seconds(self) -> float:
        """The longest one try can take: connect plus read timeout."""
        return float(sum(self.timeout))

    def authorize_url(self, callback_url: str, state: str | None = None) -> tuple[str, str]:
        """The page the user opens in a browser, and the ``state`` the returned link must carry."""
        state = state or secrets.token_urlsafe(24)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.app_key,
                "redirect_uri": callback_url,
                "state": state,
            }
        )
        return f"{self.base_url}{AUTHORIZE_PATH}?{query}", state

    def exchange_code(self, code: str, callback_url: str) -> dict[str, Any]:
        """The answer to the authorization-code grant (validate it with ``Token.from_login``).

        Raises ``CallbackError`` when Schwab refuses the code, ``BadAppCredentials``,
        ``TemporaryFailure`` or ``ConfigurationError``, as ``answers.classify`` decides."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_url}
        return self._post(form)

    def refresh(self, refresh_token: str, *, time_left: float = math.inf) -> dict[str, Any]:
        """The answer to the refresh grant, as parsed JSON (validate it with ``Token.refreshed``).

        ``time_left``: seconds until the caller's lease ends; no retry starts that could not end
        before then, so a good answer never arrives too late to be stored. Raises
        ``RefreshTokenRejected``, ``BadAppCredentials``, ``TemporaryFailure`` (retries cut short
        included) or ``ConfigurationError``, as ``answers.classify`` decides.
        """
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._post(form, time_left)

    def account_fingerprint(self, access_token: str) -> str:
        """Which Schwab accounts a token's login linked, as ``accounts.account_fingerprint``.

        Asks ``GET /trader/v1/accounts/accountNumbers``. Raises ``TemporaryFailure`` when the
        route cannot be reached, answers anything but 200 or lists no accounts.
        """
        try:
            answer = self._http.call(
                "GET",
                self.base_url + ACCOUNT_NUMBERS_PATH,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            )
        except Unreachable as exc:
            raise TemporaryFailure(
                f"could not reach Schwab's account route after {exc.tries} ({exc.fault}); "
                "try again later"
            ) from None
        if answer.status != 200:
            raise TemporaryFailure(
                f"Schwab's account route answered {answer.status}; try again later"
            )
        return account_fingerprint(self._app_secret, answer.body)

    def _post(self, form: Mapping[str, str], time_left: float = math.inf) -> dict[str, Any]:
        # The first try goes out whatever is left (the caller checked its lease just before,
        # and a lease lasts several tries); the retries must fit before the deadline.
        deadline = Deadline(time.monotonic() + time_left, self.try_seconds)
        try:
            answer = self._http.call(
                "POST",
                self.token_url,
                headers={"Accept": "application/json"},
                form=form,
                auth=(self.app_key, self._app_secret),
                deadline=deadline,
            )
        except Unreachable as exc:
            raise TemporaryFailure(
                f"could not reach Schwab's token endpoint at {self.token_url} after {exc.tries} "
                f"({exc.fault}); the stored token is untouched, try again later"
            ) from None
        return classify(answer, form["grant_type"])
