"""Schwab's OAuth 2 endpoints: authorize URL, returned-link parsing, code exchange and refresh.

Every answer is classified into one of the package's error kinds, so callers never look at HTTP.
Transient faults are retried by urllib3's ``Retry`` (backoff with jitter, ``Retry-After``
honoured and capped), inside connect and read timeouts, so a run always ends in bounded time.
Redirects are never followed: a 3xx is a temporary failure, and the refresh token and the app
secret go to the configured host only. No AWS here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import re
import secrets
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
import urllib3.exceptions
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from . import strictjson
from .errors import (
    BadAppCredentials,
    CallbackError,
    ConfigurationError,
    InvalidTokenAnswer,
    RefreshTokenRejected,
    TemporaryFailure,
    UsageError,
)
from .settings import DEFAULT_API_BASE, DEFAULT_HTTP_RETRIES, DEFAULT_HTTP_TIMEOUT, api_base

AUTHORIZE_PATH = "/v1/oauth/authorize"
TOKEN_PATH = "/v1/oauth/token"
ACCOUNT_NUMBERS_PATH = "/trader/v1/accounts/accountNumbers"
_ACCOUNT_KEY_LABEL = b"schwab-tokens account fingerprint v1"
#: How many of a login's accounts its notes keep (an overlap is looked for among those).
MAX_NOTED_ACCOUNTS = 8
MAX_LINK_LENGTH = 4096
#: A token answer is a few kilobytes; reading stops here, whatever the server sends.
MAX_ANSWER_BYTES = 64 * 1024

#: 403 is here because Schwab's edge answers a transient "Access Denied" HTML page with it.
RETRY_STATUSES = frozenset({403, 429, 500, 502, 503, 504})


#: The time budget of the token call in progress on this thread (urllib3 retries on the
#: calling thread): the monotonic deadline by which the last answer must be in, and how long
#: one try may take. Per call, because one client serves many tokens on many threads.
_budget = threading.local()


class _BoundedRetry(Retry):
    """urllib3's Retry, with ``Retry-After`` capped so one answer cannot stall a run for long,
    and no new try that could not end before the caller's deadline (a refresh under a lease:
    an answer that arrived after the lease ran out would be thrown away)."""

    MAX_RETRY_AFTER = 20.0

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.MAX_RETRY_AFTER)

    def increment(self, *args: Any, **kwargs: Any) -> _BoundedRetry:
        new = super().increment(*args, **kwargs)  # raises once the tries are used up
        deadline = getattr(_budget, "deadline", math.inf)
        if deadline == math.inf:
            return new
        response = kwargs.get("response")
        wait = (new.get_retry_after(response) if response is not None else None) or 0.0
        wait = max(wait, new.get_backoff_time())
        if time.monotonic() + wait + getattr(_budget, "try_seconds", 0.0) <= deadline:
            return new
        _budget.cut_short = True
        error = kwargs.get("error")
        reason = error or ResponseError("no time left for another try before the deadline")
        raise MaxRetryError(kwargs.get("_pool"), kwargs.get("url") or "", reason) from reason  # type: ignore[arg-type]


class SchwabOAuth:
    """One Schwab app (key and secret) talking to Schwab's OAuth and account endpoints.

    ``base_url`` must be https (plain http only to loopback, for the emulator). ``timeout`` is
    the read timeout per try (default 15 s) and ``retries`` the extra tries for a transient
    fault (default 3); the worst case is about ``(retries + 1) * (connect + read timeout)``
    plus at most ~15 s of backoff. Build it from settings with ``SchwabOAuth.from_settings``.
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
        self._session: requests.Session | None = None

    @classmethod
    def from_settings(cls, app_key: str, app_secret: str, settings: Any) -> SchwabOAuth:
        """The client for one app with the HTTP settings (base URL, timeout, retries)."""
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
        return self.base_url + TOKEN_PATH

    def _http(self) -> requests.Session:
        if self._session is None:
            retry = _BoundedRetry(
                total=self.retries,
                connect=self.retries,
                read=self.retries,
                status=self.retries,
                other=self.retries,
                backoff_factor=0.5,
                backoff_jitter=0.5,
                backoff_max=8.0,
                status_forcelist=RETRY_STATUSES,
                # The token endpoint is a POST; retrying it is safe because Schwab keeps the
                # same refresh token across refreshes and a code that was used answers 400.
                allowed_methods=frozenset({"GET", "POST"}),
                respect_retry_after_header=True,
                raise_on_status=False,
            )
            session = requests.Session()
            session.mount("https://", HTTPAdapter(max_retries=retry))
            session.mount("http://", HTTPAdapter(max_retries=retry))
            self._session = session
        return self._session

    # -- authorize ---------------------------------------------------------------------------
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

    # -- token endpoint ----------------------------------------------------------------------
    def exchange_code(self, code: str, callback_url: str) -> dict[str, Any]:
        """The answer to the authorization-code grant (validate it with ``Token.from_login``)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": callback_url}
        return self._post(form)

    def refresh(self, refresh_token: str, *, time_left: float = math.inf) -> dict[str, Any]:
        """The answer to the refresh grant (validate it with ``Token.refreshed``).

        ``time_left``: seconds until the caller's lease ends. No retry starts that could not end
        before then (a try takes at most the connect plus the read timeout, and ``Retry-After``
        up to 20 s comes first), so a good answer never arrives too late to be stored: the
        retries stop early instead (``TemporaryFailure``)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        return self._post(form, time_left)

    @property
    def try_seconds(self) -> float:
        """The longest one try can take: connect plus read timeout."""
        return float(sum(self.timeout))

    def account_fingerprint(self, access_token: str) -> str:
        """Which Schwab accounts a token's login linked: ``<key id>:<mac>.<mac>...``.

        ``GET /trader/v1/accounts/accountNumbers`` lists the accounts linked at the login
        (Schwab's consent screen lets the user pick them at each login, so two logins of one
        person may link different, overlapping sets). Account numbers are short enough to find
        from a plain hash by trying them all, so each is MACed with a key derived from the app
        secret and cut to 24 bits (a stranger's account matches one by chance with p = 2**-24);
        the key id (a hash of that key) tells a later login whether it can compare at all
        (after the app secret changed, it cannot). See ``shares_accounts``.
        """
        try:
            response = self._http().get(
                self.base_url + ACCOUNT_NUMBERS_PATH,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise TemporaryFailure(
                f"could not reach Schwab's account route after {self.retries + 1} tries "
                f"({_network_fault(exc)}); try again later"
            ) from None
        if response.status_code != 200:
            raise TemporaryFailure(
                f"Schwab's account route answered {response.status_code}; try again later"
            )
        try:
            body = strictjson.loads(response.content[:MAX_ANSWER_BYTES])
        except strictjson.NotJSON:
            body = None
        numbers = (
            sorted(
                str(item.get("accountNumber"))
                for item in body
                if isinstance(item, dict) and isinstance(item.get("accountNumber"), str)
            )
            if isinstance(body, list)
            else []
        )
        if not numbers:
            raise TemporaryFailure("Schwab's account route listed no accounts; try again later")
        key = hmac.new(self._app_secret.encode(), _ACCOUNT_KEY_LABEL, hashlib.sha256).digest()
        key_id = hashlib.sha256(key).hexdigest()[:8]
        macs = sorted(
            {
                base64.urlsafe_b64encode(hmac.new(key, n.encode(), hashlib.sha256).digest()[:3])
                for n in numbers
            }
        )
        # The notes beside the token are small (a Secrets Manager label): at most this many.
        return f"{key_id}:{b'.'.join(macs[:MAX_NOTED_ACCOUNTS]).decode()}"

    def _post(self, form: Mapping[str, str], time_left: float = math.inf) -> dict[str, Any]:
        grant = form["grant_type"]
        # The first try goes out whatever is left (the caller checked its lease just before,
        # and a lease lasts several tries); the retries must fit before the deadline.
        _budget.deadline = time.monotonic() + time_left
        _budget.try_seconds = self.try_seconds
        _budget.cut_short = False
        try:
            response = self._http().post(
                self.token_url,
                data=form,
                auth=(self.app_key, self._app_secret),
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                # A redirect would send the refresh token (and, with auth, the app secret) to
                # wherever the answer points.
                allow_redirects=False,
                stream=True,
            )
            try:
                body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
            finally:
                response.close()
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
            # The exception text can quote the request; name only its kind.
            raise TemporaryFailure(
                f"could not reach Schwab's token endpoint at {self.token_url} after "
                f"{_tries(None, self.retries + 1)} ({_network_fault(exc)}); the stored token is "
                "untouched, try again later"
            ) from None
        finally:
            _budget.deadline = math.inf
        return _classify(response, body, grant, _tries(response, self.retries + 1))


def shares_accounts(noted: str, current: str) -> bool | None:
    """Whether two logins' account fingerprints share an account; None when they cannot be
    compared (MACed under another app secret, or noted by an older version as one hash of the
    whole set)."""
    noted_key, _, noted_macs = noted.partition(":")
    key, _, macs = current.partition(":")
    if noted_key != key or not all(len(mac) == 4 for mac in noted_macs.split(".")):
        return None
    return bool(set(noted_macs.split(".")) & set(macs.split(".")))


def _tries(response: requests.Response | None, most: int) -> str:
    """How many tries a call made ("4 tries"), and whether the deadline cut the retries short."""
    history = getattr(getattr(getattr(response, "raw", None), "retries", None), "history", None)
    count = len(history) + 1 if isinstance(history, tuple) else most
    if getattr(_budget, "cut_short", False):
        return f"{count} tries (no time left on the lease for another)"
    return f"{count} tries"


def _network_fault(exc: BaseException) -> str:
    text = repr(exc)
    for needle, label in (
        ("ReadTimeout", "read timeout"),
        ("ConnectTimeout", "connect timeout"),
        ("Read timed out", "read timeout"),
        ("Connection refused", "connection refused"),
        ("RemoteDisconnected", "connection closed without an answer"),
        ("NameResolution", "name resolution failed"),
    ):
        if needle in text:
            return label
    return type(exc).__name__


def _classify(response: requests.Response, body: bytes, grant: str, tries: str) -> dict[str, Any]:
    status = response.status_code
    if status == 200:
        if len(body) > MAX_ANSWER_BYTES:
            raise InvalidTokenAnswer(
                f"Schwab answered 200 with more than {MAX_ANSWER_BYTES} bytes; the stored token "
                "is untouched, try again later"
            )
        try:
            answer = strictjson.loads(body)
        except strictjson.NotJSON as exc:
            raise InvalidTokenAnswer(
                f"Schwab answered 200 with a body that is not JSON ({exc.reason}; a maintenance "
                "page?); the stored token is untouched, try again later"
            ) from None
        if not isinstance(answer, dict):
            raise InvalidTokenAnswer(
                "Schwab answered 200 with JSON that is not an object; the stored token is "
                "untouched, try again later"
            )
        return answer
    codes, description, reason = _error_codes(response, body)
    if 300 <= status < 400:
        raise TemporaryFailure(
            f"Schwab's token endpoint answered {status} (a redirect, not followed: the token "
            "goes to the configured host only); the stored token is untouched, try again later"
        )
    if (
        status in (400, 401)
        and grant == "refresh_token"
        and _dead_token_verdict(codes, description)
    ):
        # The body's verdict decides, not the status: RFC 6749 makes invalid_client under Basic
        # auth a 401, and a login past its days is reported as `invalid_client: refresh token
        # invalid`. The policy says why (expired, or replaced by another login) and what to do.
        raise RefreshTokenRejected(f"Schwab refused the refresh token ({status} {reason})")
    if status == 401:
        # invalid_client naming no refresh token, or no verdict at all (an HTML page, an empty
        # body): RFC 6749's 401 is the client's authentication failing, and Schwab's edge sends
        # its own refusals as 403. Retrying would fail the same way on every run, and a new
        # login needs the same key and secret, so name them.
        raise BadAppCredentials(
            f"Schwab rejected the app key or secret (401 {reason}): check the app key and "
            "secret (SCHWAB_APP_KEY/SCHWAB_APP_SECRET or the credentials secret)"
        )
    if status == 400 and grant == "refresh_token":
        # No OAuth verdict on the refresh token (an edge's HTML page, an empty body, an error
        # nobody knows): the token may well be alive. Retry later and touch nothing.
        raise TemporaryFailure(
            f"Schwab's token endpoint answered 400 without a verdict on the refresh token "
            f"({reason}); the stored token is untouched, try again later"
        )
    if status == 400:
        raise CallbackError(
            f"Schwab refused the authorization code (400 {reason}): a code works once and "
            "lives about 30 seconds; log in again and finish promptly"
        )
    if status in RETRY_STATUSES or status >= 500:
        kind = " (an HTML error page)" if _is_html(response, body) else ""
        raise TemporaryFailure(
            f"Schwab's token endpoint answered {status}{kind} after {tries}; "
            "the stored token is untouched, try again later"
        )
    raise ConfigurationError(
        f"Schwab's token endpoint answered {status} ({reason}); check SCHWAB_API_BASE "
        f"({response.url.split('?')[0]})"
    )


_ERROR_CODE = re.compile(r'\\*"error\\*"\s*:\s*\\*"([A-Za-z0-9_.\-]{1,64})')


#: OAuth error codes that are Schwab's verdict on the refresh token itself (dead, expired,
#: revoked or superseded). ``unsupported_token_type`` is how Schwab wraps its nested
#: ``refresh_token_authentication_error``; ``invalid_client`` counts only when its description
#: names the refresh token (otherwise it means a wrong app key or secret).
_DEAD_TOKEN_CODES = frozenset(
    {"invalid_grant", "refresh_token_authentication_error", "unsupported_token_type"}
)
_NAMES_THE_REFRESH_TOKEN = re.compile(r"refresh\s+token", re.IGNORECASE)


def _dead_token_verdict(codes: list[str], description: str) -> bool:
    if _DEAD_TOKEN_CODES.intersection(codes):
        return True
    return "invalid_client" in codes and bool(_NAMES_THE_REFRESH_TOKEN.search(description))


def _error_codes(response: requests.Response, raw: bytes) -> tuple[list[str], str, str]:
    """The OAuth ``error`` code(s), including the one Schwab nests inside its description; the
    description (``""`` if none); and how to name the codes in a message (only OAuth's short
    codes: a description could quote anything)."""
    try:
        body = strictjson.loads(raw[:MAX_ANSWER_BYTES])
    except strictjson.NotJSON:
        if _is_html(response, raw):
            return [], "", "an HTML error page"
        return [], "", "no JSON body" if raw.strip() else "an empty body"
    if not isinstance(body, dict):
        return [], "", "unexpected body"
    codes = []
    if isinstance(body.get("error"), str):
        codes.append(body["error"])
    description = body.get("error_description")
    if not isinstance(description, str):
        description = ""
    codes.extend(code for code in _ERROR_CODE.findall(description) if code not in codes)
    codes = [c for c in codes if re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", c)]
    return codes, description, " / ".join(codes) or "no code"


def _is_html(response: requests.Response, body: bytes) -> bool:
    return "html" in response.headers.get("Content-Type", "").lower() or body.lstrip()[:1] == b"<"


# -- the returned link --------------------------------------------------------------------------
def parse_callback(link: str, expected_state: str | None) -> str:
    """The authorization code from the link the browser was sent to, or a clear ``CallbackError``.

    A link without ``code`` is refused: a naive client would fall back to another grant and get
    a token that cannot be refreshed.
    """
    if not isinstance(link, str):
        raise CallbackError("the returned link must be text")
    link = link.strip()
    if not link:
        raise CallbackError("no link was given: paste the whole address the browser was sent to")
    if len(link) > MAX_LINK_LENGTH:
        raise CallbackError(f"the returned link is longer than {MAX_LINK_LENGTH} characters")
    try:
        query = urlsplit(link).query
        params = parse_qs(query, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        raise CallbackError(
            "the returned link cannot be parsed: paste the whole address the browser was sent to"
        ) from None
    state = _single(params, "state")
    if expected_state is not None and state is not None and state != expected_state:
        raise CallbackError(
            "the returned link's state does not match this login (an old or foreign link); "
            "run `schwab-tokens login` again and use the link it opens"
        )
    error = _single(params, "error")
    if error is not None:
        shown = error if re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", error) else "unknown error"
        hint = (
            "the login was cancelled or access was not granted"
            if shown == "access_denied"
            else "Schwab did not complete the login"
        )
        raise CallbackError(f"{hint} ({shown}); run `schwab-tokens login` again")
    code = _single(params, "code")
    if not code:
        raise CallbackError(
            "the returned link has no code= parameter: paste the full address of the page the "
            "browser landed on after the Schwab login (it starts with your callback URL)"
        )
    if expected_state is not None and state is None:
        raise CallbackError(
            "the returned link has no state= parameter, so it cannot be matched to this login; "
            "run `schwab-tokens login` again"
        )
    return code


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise CallbackError(f"the returned link carries {name}= more than once")
    return values[0]
