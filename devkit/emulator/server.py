"""A local stand-in for Schwab's OAuth endpoints and one Trader API route.

The emulator is a real HTTP server on 127.0.0.1 so the code under test talks to it through
its ordinary HTTP stack. It answers the way Schwab does (docs/architecture.md, "Schwab's OAuth,
as the emulator plays it"), keeps its own clock so tests can jump days ahead without sleeping,
and can be told to misbehave (faults) either in-process or through admin routes from another
process.

Like Schwab, an app may register several callback URLs; ``authorize`` accepts a
``redirect_uri`` only when it is exactly one of them. Each login (``authorization_code``
grant) belongs to one Schwab user whose account numbers ``accountNumbers`` answers for every
access token of that login; ``login_as`` picks the user who logs in next.

Admin routes (JSON bodies; every one answers ``{"ok": true}`` unless said otherwise):

- ``GET /_emulator/stats``: ``{"token_calls": N, "calls_by_grant": {...}}``
- ``GET /_emulator/callbacks``: ``{"callbacks": [...]}`` (the registered callback URLs)
- ``POST /_emulator/fault {"kind": K, "count": N|null}`` and ``POST /_emulator/clear``
- ``POST /_emulator/clock {"advance": seconds}``: answers ``{"now": <emulator time>}``
- ``POST /_emulator/config {"access_lifetime": ..., ...}`` (see ``configure``)
- ``POST /_emulator/revoke``, ``POST /_emulator/reset_counters``
- ``POST /_emulator/callbacks {"url": U}``: register one more callback URL
- ``POST /_emulator/login_as {"accounts": [...]}``: accounts of the next logins (empty or
  missing: the default user)

A login past its ``refresh_lifetime`` answers 400 ``REFRESH_DEAD_BODY`` like any dead refresh
token, or 401 ``REFRESH_TOKEN_INVALID_BODY`` with ``configure(expired_login_401=True)`` (the form
schwab-py documents for a login past its 7 days).

One login per app, as Schwab does (``configure(one_login_per_app=True)``, the default): a
successful ``authorization_code`` exchange revokes every earlier login of the same app
(``client_id``), so an older refresh token then gets Schwab's dead-token answer
(``REFRESH_DEAD_BODY``, 400); its access tokens live until they expire. Tests that need two
live logins of one app at once (two stores fed by one emulator) set it to ``False``.

Token-endpoint faults (``set_fault`` or ``POST /_emulator/fault``); none changes a code, grant
or token:

- OAuth verdicts on the refresh token ("login required"): ``invalid_grant`` (400),
  ``unsupported_token_type`` (400, ``REFRESH_DEAD_BODY``), ``invalid_client_400`` (400
  ``REFRESH_TOKEN_INVALID_BODY``, ``{"error": "invalid_client", "error_description": "refresh
  token invalid"}``, the dead-token verdict Schwab is reported to send) and
  ``refresh_token_invalid_401`` (the same body with 401, as RFC 6749 makes ``invalid_client``
  under Basic auth).
- ``invalid_client``: 401 ``{"error": "invalid_client"}``, a wrong app key or secret.
- Temporary faults: ``rate_limited`` (429), ``server_error`` (500), ``bad_gateway`` (502),
  ``unavailable`` (503), ``access_denied_html`` (403 HTML from the edge), ``slow`` (answers
  after ``slow_seconds``), ``drop`` (closes the connection unanswered). ``rate_limited`` sends
  ``Retry-After: 1`` and ``unavailable`` none, unless ``configure(retry_after=N)``: then both
  send ``Retry-After: N`` (whole seconds; ``None`` restores the default).
- ``EDGE_400_FAULT_KINDS``, 400s that are *not* a verdict on the refresh token (a temporary
  failure: retry later, touch nothing): ``html_400`` (an HTML "Bad Request" page from the edge,
  ``text/html``), ``empty_400`` (an empty body, ``Content-Type: application/json``: a client
  that trusts the header still finds no JSON), ``unknown_400`` (JSON with an error code no
  OAuth spec or Schwab document defines, ``UNKNOWN_400_BODY``).
- Bad 200 answers (``not_json``, ``missing_access_token``, ``BAD_ANSWER_FAULT_KINDS``) and
  ``extra_fields`` (a good answer with unknown members: a real token of the grant).

Nothing here ever prints or logs a token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from devkit.background import BackgroundServer

#: The hostile token-endpoint answers added for answer validation: 200 answers a refresher
#: has to refuse (bad ``expires_in``, unusable access token, wrong shape, oversized) and a
#: redirect. None of them changes a grant. (``not_json`` and ``missing_access_token`` are older
#: bad answers kept out of this tuple; ``extra_fields`` is a good answer.)
BAD_ANSWER_FAULT_KINDS: tuple[str, ...] = (
    "nan_expires_in",
    "infinite_expires_in",
    "huge_expires_in",
    "string_expires_in",
    "non_ascii_token",
    "huge_token",
    "huge_answer",
    "empty_access_token",
    "array_answer",
    "nested_answer",
    "redirect",
)
#: 400s from Schwab's edge or OAuth server that carry no verdict on the refresh token: an HTML
#: page, an empty body, JSON with an unknown error code. A temporary failure, never "login
#: required". None of them changes a grant.
EDGE_400_FAULT_KINDS: tuple[str, ...] = ("html_400", "empty_400", "unknown_400")
TOKEN_FAULT_KINDS: tuple[str, ...] = (
    "invalid_grant",
    "unsupported_token_type",
    "invalid_client",
    # invalid_client "refresh token invalid": a dead-token verdict, with 400 or with 401.
    "invalid_client_400",
    "refresh_token_invalid_401",
    *EDGE_400_FAULT_KINDS,
    "rate_limited",
    "server_error",
    "bad_gateway",
    "unavailable",
    "access_denied_html",
    "not_json",
    "missing_access_token",
    "slow",
    "drop",
    # Hostile answers, 200 unless said otherwise (see _hostile_token_reply):
    *BAD_ANSWER_FAULT_KINDS,
    # A good answer with unknown extra fields: a real, live token of the grant.
    "extra_fields",
)
AUTHORIZE_FAULT_KINDS: tuple[str, ...] = ("deny",)
FAULT_KINDS: tuple[str, ...] = TOKEN_FAULT_KINDS + AUTHORIZE_FAULT_KINDS

AUTHORIZE_PATH = "/v1/oauth/authorize"
TOKEN_PATH = "/v1/oauth/token"
ACCOUNT_NUMBERS_PATH = "/trader/v1/accounts/accountNumbers"
ACCOUNT_NUMBERS = [{"accountNumber": "12345678", "hashValue": "ABCDEF0123"}]
#: The account numbers of the default Schwab user (the one who logs in unless ``login_as``).
DEFAULT_ACCOUNTS: tuple[str, ...] = tuple(entry["accountNumber"] for entry in ACCOUNT_NUMBERS)
_KNOWN_HASHES = {entry["accountNumber"]: entry["hashValue"] for entry in ACCOUNT_NUMBERS}

#: Where the ``redirect`` fault sends the client: the discard port, where nothing listens.
REDIRECT_LOCATION = "http://127.0.0.1:9/elsewhere"
HUGE_TOKEN_LENGTH = 100_000
HUGE_PADDING_LENGTH = 200_000
NESTING_DEPTH = 10_000
HUGE_EXPIRES_IN = 99_999_999_999

# Schwab's answer for a dead refresh token: the real reason is nested, as a string, inside
# the description.
REFRESH_DEAD_BODY: dict[str, str] = {
    "error": "unsupported_token_type",
    "error_description": (
        '400 Bad Request: "{"error_description":"Exception while authenticating refresh '
        'token [...]","error":"refresh_token_authentication_error"}"'
    ),
}
ACCESS_DENIED_HTML = (
    "<HTML><HEAD><TITLE>Access Denied</TITLE></HEAD><BODY><H1>Access Denied</H1>\n"
    "You don't have permission to access \"http&#58;&#47;&#47;api&#46;schwabapi&#46;com&#47;"
    'v1&#47;oauth&#47;token" on this server.<P>\n'
    "Reference&#32;&#35;18&#46;emulator\n</BODY></HTML>\n"
)

#: What Schwab's edge answers to a request it refuses before the OAuth server sees it.
BAD_REQUEST_HTML = (
    "<HTML><HEAD><TITLE>Bad Request</TITLE></HEAD><BODY><H1>Bad Request</H1>\n"
    "Your browser sent a request that this server could not understand.<P>\n"
    "Reference&#32;&#35;7&#46;emulator\n</BODY></HTML>\n"
)
#: A 400 whose error code is no verdict on the refresh token.
UNKNOWN_400_BODY: dict[str, str] = {
    "error": "request_rejected",
    "error_description": "Request could not be processed",
}
#: The other dead-token verdict reported from Schwab, with 400 or 401 (a wrong secret answers
#: 401 ``{"error": "invalid_client"}``, with no word on the refresh token).
REFRESH_TOKEN_INVALID_BODY: dict[str, str] = {
    "error": "invalid_client",
    "error_description": "refresh token invalid",
}

_JSON = "application/json;charset=UTF-8"
_HTML = "text/html; charset=UTF-8"


def account_hash(account_number: str) -> str:
    """The ``hashValue`` Schwab would give an account: stable, hex, derived from the number."""
    known = _KNOWN_HASHES.get(account_number)
    if known is not None:
        return known
    digest = hashlib.sha256(f"schwab-emulator-account:{account_number}".encode())
    return digest.hexdigest().upper()


def account_numbers_answer(accounts: Sequence[str]) -> list[dict[str, str]]:
    """What ``accountNumbers`` answers for a user with these accounts."""
    return [{"accountNumber": n, "hashValue": account_hash(n)} for n in accounts]


def _account_list(accounts: Sequence[str] | None) -> tuple[str, ...]:
    """Validated account numbers; ``None`` or empty means the default user."""
    if accounts is None:
        return DEFAULT_ACCOUNTS
    if isinstance(accounts, (str, bytes)) or not isinstance(accounts, Sequence):
        raise TypeError("accounts must be a list of account numbers")
    result: list[str] = []
    for number in accounts:
        if isinstance(number, bool) or not isinstance(number, (str, int)):
            raise TypeError(f"account number must be a string, got {type(number).__name__}")
        text = str(number)
        if not text.strip():
            raise ValueError("account number must not be empty")
        if text not in result:
            result.append(text)
    return tuple(result) or DEFAULT_ACCOUNTS


_SECONDS_SETTINGS = ("access_lifetime", "refresh_lifetime", "code_lifetime", "slow_seconds")


def _seconds(name: str, value: object) -> float:
    # bool is an int: refuse it, a JSON ``true`` is no duration.
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    return float(value)


def _retry_after(value: object) -> int | None:
    """``Retry-After`` in whole seconds (rounded up), or ``None`` for the default behaviour."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"retry_after must be seconds or None, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError("retry_after must be a finite number of seconds >= 0")
    return math.ceil(value)


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be true or false, got {type(value).__name__}")
    return value


@dataclass
class _Grant:
    """One login: everything a single authorization_code exchange produced."""

    login_time: float
    refresh_token: str
    revoked: bool = False
    accounts: tuple[str, ...] = DEFAULT_ACCOUNTS
    client_id: str = ""  # the app that logged in: one login per app revokes its older grants


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False
    accounts: tuple[str, ...] = DEFAULT_ACCOUNTS  # of the user who logged in in the browser


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None: sticky until cleared


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = _JSON
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def _json_reply(status: int, obj: Any, **headers: str) -> _Reply:
    return _Reply(status, json.dumps(obj).encode(), _JSON, dict(headers))


def _html_reply(status: int, text: str) -> _Reply:
    return _Reply(status, text.encode(), _HTML)


def _error_page(title: str, detail: str) -> _Reply:
    return _html_reply(
        400,
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>{detail}</p></body></html>",
    )


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or hung up is normal in fault tests: stay quiet.
        # Anything else is an emulator bug: let socketserver print the traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Emulator(BackgroundServer):
    """Schwab's OAuth server (authorize + token) and ``accountNumbers``, on 127.0.0.1."""

    thread_name = "schwab-emulator"

    def __init__(
        self,
        app_key: str = "emu-app-key-0001",
        app_secret: str = "emu-app-secret-0001",  # noqa: S107 (the emulated app's, made up)
        callback_url: str = "https://127.0.0.1:8182",
        port: int = 0,
        access_lifetime: float = 1800,
        refresh_lifetime: float = 7 * 24 * 3600,
        code_lifetime: float = 30,
        slow_seconds: float = 5.0,
        callback_urls: Sequence[str] | None = None,
        retry_after: float | None = None,
        one_login_per_app: bool = True,
        expired_login_401: bool = False,
    ) -> None:
        """``callback_url`` is the app's first registered callback; ``callback_urls`` more.

        ``retry_after``, ``one_login_per_app`` and ``expired_login_401``: see ``configure``.
        """
        self.app_key = app_key
        self.app_secret = app_secret
        self.callback_url = callback_url
        self._extra_callbacks: list[str] = []
        for url in callback_urls or ():
            self._add_callback(url)
        self.access_lifetime = access_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.code_lifetime = code_lifetime
        self.slow_seconds = slow_seconds
        self.retry_after: int | None = _retry_after(retry_after)
        self.one_login_per_app: bool = _flag("one_login_per_app", one_login_per_app)
        self.expired_login_401: bool = _flag("expired_login_401", expired_login_401)
        self._requested_port = port

        self._lock = threading.RLock()
        self._offset = 0.0
        self._codes: dict[str, _Code] = {}
        self._grants_by_refresh: dict[str, _Grant] = {}
        self._access_expiry: dict[str, float] = {}
        self._access_grant: dict[str, _Grant] = {}
        self._login_accounts: tuple[str, ...] = DEFAULT_ACCOUNTS
        self._issued: set[str] = set()
        self._token_fault: _Fault | None = None
        self._authorize_fault: _Fault | None = None
        self._token_calls = 0
        self._calls_by_grant: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    def new_server(self) -> _Server:
        return _Server(("127.0.0.1", self._requested_port), self)

    @property
    def base_url(self) -> str:
        return self.url

    # ------------------------------------------------------------------ clock

    def now(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the emulator clock forward; returns the new ``now()``."""
        with self._lock:
            self._offset += float(seconds)
            return time.time() + self._offset

    # ------------------------------------------------------------------ control

    def set_fault(self, kind: str, count: int | None = None) -> None:
        """Make the next ``count`` calls misbehave (``None``: until ``clear_faults()``).

        ``deny`` applies to the authorize route; every other kind to the token endpoint.
        Setting a fault replaces the previous fault of the same route.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        if count is not None and int(count) < 1:
            raise ValueError("count must be None or >= 1")
        fault = _Fault(kind, None if count is None else int(count))
        with self._lock:
            if kind in AUTHORIZE_FAULT_KINDS:
                self._authorize_fault = fault
            else:
                self._token_fault = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._token_fault = None
            self._authorize_fault = None

    def revoke_all(self) -> None:
        """Kill every refresh token issued so far (access tokens live until they expire)."""
        with self._lock:
            for grant in self._grants_by_refresh.values():
                grant.revoked = True

    @property
    def callback_urls(self) -> tuple[str, ...]:
        """Every registered callback URL, ``callback_url`` first."""
        with self._lock:
            return (
                self.callback_url,
                *(u for u in self._extra_callbacks if u != self.callback_url),
            )

    def register_callback(self, url: str) -> None:
        """Register one more callback URL (matched exactly, as Schwab does)."""
        with self._lock:
            self._add_callback(url)

    def _add_callback(self, url: str) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("callback url must be a non-empty string")
        if url != self.callback_url and url not in self._extra_callbacks:
            self._extra_callbacks.append(url)

    def login_as(self, accounts: Sequence[str]) -> None:
        """Logins from now on are by a Schwab user owning ``accounts`` (empty: the default user).

        Sticky until changed. The user is fixed when the browser signs in (``authorize``): the
        code carries it to the login it makes. Existing codes, logins and their tokens keep
        their own accounts.
        """
        resolved = _account_list(accounts)
        with self._lock:
            self._login_accounts = resolved

    def login_as_default(self) -> None:
        """Logins from now on are by the default user (``DEFAULT_ACCOUNTS``)."""
        with self._lock:
            self._login_accounts = DEFAULT_ACCOUNTS

    @property
    def login_accounts(self) -> tuple[str, ...]:
        """The account numbers of the user who logs in next."""
        with self._lock:
            return self._login_accounts

    def configure(self, **settings: float | bool | None) -> None:
        """Change settings; lifetimes affect tokens issued from now on.

        - ``access_lifetime``, ``refresh_lifetime``, ``code_lifetime``, ``slow_seconds``:
          seconds.
        - ``retry_after``: whole seconds (a fraction is rounded up) that the ``rate_limited``
          (429) and ``unavailable`` (503) faults send as ``Retry-After``; ``None`` (the
          default): 429 sends ``1``, 503 sends none.
        - ``one_login_per_app``: ``True`` (the default, Schwab's behaviour): a code exchange
          revokes the app's earlier logins; ``False``: every login lives its full week.
        - ``expired_login_401``: ``False`` (the default): a login past ``refresh_lifetime``
          answers 400 ``REFRESH_DEAD_BODY``; ``True``: 401 ``REFRESH_TOKEN_INVALID_BODY``.
          A login revoked within its week, or an unknown token, answers 400 either way.

        Every setting is checked before any is applied: a bad call changes nothing.
        """
        flags = ("one_login_per_app", "expired_login_401")
        allowed = {*_SECONDS_SETTINGS, "retry_after", *flags}
        unknown = set(settings) - allowed
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}; allowed: {sorted(allowed)}")
        checked: dict[str, Any] = {}
        for name, value in settings.items():
            if name == "retry_after":
                checked[name] = _retry_after(value)
            elif name in flags:
                checked[name] = _flag(name, value)
            else:
                checked[name] = _seconds(name, value)
        with self._lock:
            for name, value in checked.items():
                setattr(self, name, value)

    @property
    def token_calls(self) -> int:
        with self._lock:
            return self._token_calls

    @property
    def calls_by_grant(self) -> dict[str, int]:
        """Token-endpoint calls per ``grant_type`` as sent (``""`` when missing)."""
        with self._lock:
            return dict(self._calls_by_grant)

    def reset_counters(self) -> None:
        with self._lock:
            self._token_calls = 0
            self._calls_by_grant = {}

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"token_calls": self._token_calls, "calls_by_grant": dict(self._calls_by_grant)}

    def issued_secrets(self) -> set[str]:
        """Every code, access, refresh and id token ever handed out."""
        with self._lock:
            return set(self._issued)

    # ------------------------------------------------------------------ internals

    def _new_secret(self, nbytes: int = 48, suffix: str = "") -> str:
        # Called with the lock held.
        while True:
            value = secrets.token_urlsafe(nbytes) + suffix
            if value not in self._issued:
                self._issued.add(value)
                return value

    def _new_id_token(self) -> str:
        def b64(obj: Any) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        now = int(time.time() + self._offset)
        while True:
            payload = {
                "sub": "emulator-user",
                "aud": self.app_key,
                "iss": "https://api.schwabapi.com",
                "iat": now,
                "exp": now + int(self.access_lifetime),
                "jti": secrets.token_urlsafe(16),
            }
            value = ".".join(
                [b64({"alg": "RS256", "typ": "JWT"}), b64(payload), secrets.token_urlsafe(64)]
            )
            if value not in self._issued:
                self._issued.add(value)
                return value

    def _take_fault(self, route: str) -> str | None:
        # Called with the lock held.
        attr = "_authorize_fault" if route == "authorize" else "_token_fault"
        fault: _Fault | None = getattr(self, attr)
        if fault is None:
            return None
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                setattr(self, attr, None)
        return fault.kind

    def _client_ok(self, authorization: str | None) -> bool:
        if not authorization or not authorization.lower().startswith("basic "):
            return False
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("latin1")
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(":")
        if not sep:
            return False
        candidates = {(user, password), (unquote(user), unquote(password))}
        return (self.app_key, self.app_secret) in candidates

    def _token_response(self, grant: _Grant) -> dict[str, Any]:
        # Called with the lock held.
        access = self._new_secret()
        self._access_expiry[access] = self.now() + self.access_lifetime
        self._access_grant[access] = grant
        return {
            "expires_in": int(self.access_lifetime),
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": grant.refresh_token,
            "access_token": access,
            "id_token": self._new_id_token(),
        }

    # ------------------------------------------------------------------ routes

    def _authorize(self, query: str) -> _Reply:
        params = dict(parse_qsl(query, keep_blank_values=True))
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        state = params.get("state")
        if client_id != self.app_key:
            return _error_page("Invalid client", "The client_id is not registered.")
        if redirect_uri not in self.callback_urls:
            return _error_page(
                "Invalid redirect_uri",
                "The redirect_uri does not match any of the application's callback URLs.",
            )
        if params.get("response_type") != "code":
            return _error_page("Unsupported response_type", "Only response_type=code is allowed.")
        with self._lock:
            fault = self._take_fault("authorize")
            if fault == "deny":
                answer = {
                    "error": "access_denied",
                    "error_description": "The user denied the authorization request.",
                }
            else:
                code = self._new_secret(suffix="@")
                self._codes[code] = _Code(
                    client_id,
                    redirect_uri,
                    self.now() + self.code_lifetime,
                    accounts=self._login_accounts,
                )
                answer = {"code": code, "session": str(uuid.uuid4())}
        if state is not None:
            answer["state"] = state
        sep = "&" if urlsplit(redirect_uri).query else "?"
        return _Reply(302, b"", _HTML, {"Location": redirect_uri + sep + urlencode(answer)})

    def _faulted_token_reply(self, kind: str, form: dict[str, str]) -> _Reply:
        # Called with the lock held. A faulted call changes no code, grant or token.
        if kind == "invalid_grant":
            return _json_reply(
                400, {"error": "invalid_grant", "error_description": "refresh token invalid"}
            )
        if kind == "unsupported_token_type":
            return _json_reply(400, REFRESH_DEAD_BODY)
        if kind == "invalid_client":
            return _json_reply(401, {"error": "invalid_client"})
        if kind == "invalid_client_400":
            return _json_reply(400, REFRESH_TOKEN_INVALID_BODY)
        if kind == "refresh_token_invalid_401":
            return _json_reply(401, REFRESH_TOKEN_INVALID_BODY)
        if kind == "html_400":
            return _html_reply(400, BAD_REQUEST_HTML)
        if kind == "empty_400":
            return _Reply(400, b"", _JSON)
        if kind == "unknown_400":
            return _json_reply(400, UNKNOWN_400_BODY)
        if kind == "rate_limited":
            wait = "1" if self.retry_after is None else str(self.retry_after)
            return _json_reply(
                429,
                {"error": "rate_limited", "error_description": "Too many requests"},
                **{"Retry-After": wait},
            )
        if kind == "server_error":
            return _json_reply(
                500, {"error": "server_error", "error_description": "Internal Server Error"}
            )
        if kind == "bad_gateway":
            return _html_reply(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")
        if kind == "unavailable":
            reply = _html_reply(
                503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
            )
            if self.retry_after is not None:
                reply.headers["Retry-After"] = str(self.retry_after)
            return reply
        if kind == "access_denied_html":
            return _html_reply(403, ACCESS_DENIED_HTML)
        if kind == "not_json":
            return _html_reply(200, "<html>maintenance</html>")
        if kind == "missing_access_token":
            return _json_reply(
                200,
                {
                    "expires_in": int(self.access_lifetime),
                    "token_type": "Bearer",
                    "scope": "api",
                    "refresh_token": form.get("refresh_token") or self._new_secret(),
                    "id_token": self._new_id_token(),
                },
            )
        if kind == "drop":
            return _Reply(0, drop=True)
        if kind in BAD_ANSWER_FAULT_KINDS:
            return self._hostile_token_reply(kind, form)
        raise AssertionError(f"unhandled fault {kind}")  # pragma: no cover

    def _hostile_token_reply(self, kind: str, form: dict[str, str]) -> _Reply:
        # Called with the lock held. Changes no code or grant: the access token is not live,
        # and the refresh token is the one the client sent on a refresh grant (a fresh, dead
        # one on a code exchange), so storing it would never corrupt the stored refresh token.
        if kind == "redirect":
            return _Reply(307, b"", _JSON, {"Location": REDIRECT_LOCATION})
        if kind == "array_answer":
            return _Reply(200, b"[]", _JSON, {"Cache-Control": "no-store"})
        refresh_token = ""
        if form.get("grant_type") == "refresh_token":
            refresh_token = form.get("refresh_token", "")
        answer: dict[str, Any] = {
            "expires_in": int(self.access_lifetime),
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": refresh_token or self._new_secret(),
            "access_token": "",  # set below
            "id_token": self._new_id_token(),
        }
        # Members whose JSON text is written as is (not valid JSON, or too deep for json.dumps).
        raw: dict[str, str] = {}
        if kind == "nan_expires_in":
            raw["expires_in"] = "NaN"
        elif kind == "infinite_expires_in":
            raw["expires_in"] = "1e400"
        elif kind == "huge_expires_in":
            answer["expires_in"] = HUGE_EXPIRES_IN
        elif kind == "string_expires_in":
            answer["expires_in"] = str(int(self.access_lifetime))
        elif kind == "non_ascii_token":
            answer["access_token"] = self._remember(
                "tok\u00e9n-" + secrets.token_urlsafe(48) + "-\u2603"
            )
        elif kind == "huge_token":
            answer["access_token"] = self._remember(
                secrets.token_urlsafe(HUGE_TOKEN_LENGTH * 3 // 4)[:HUGE_TOKEN_LENGTH]
            )
        elif kind == "huge_answer":
            answer["padding"] = "p" * HUGE_PADDING_LENGTH
        elif kind == "empty_access_token":
            answer["access_token"] = ""
        elif kind == "nested_answer":
            raw["nested"] = "[" * NESTING_DEPTH + "]" * NESTING_DEPTH
        else:  # pragma: no cover
            raise AssertionError(f"unhandled hostile answer {kind}")
        if kind not in ("non_ascii_token", "huge_token", "empty_access_token"):
            answer["access_token"] = self._new_secret()  # well-formed, but not live
        for name in raw:
            answer.pop(name, None)
        text = json.dumps(answer, ensure_ascii=False)  # raw UTF-8, as a careless server sends
        if raw:
            members = ", ".join(f"{json.dumps(name)}: {value}" for name, value in raw.items())
            text = text[:-1] + ", " + members + "}"
        return _Reply(200, text.encode("utf-8"), _JSON, {"Cache-Control": "no-store"})

    def _remember(self, value: str) -> str:
        # Called with the lock held: a hand-made secret the secret-hygiene checks must know.
        self._issued.add(value)
        return value

    def _with_extra_fields(self, reply: _Reply) -> _Reply:
        """A good answer plus a dozen unknown members of moderate size."""
        if reply.status != 200:
            return reply
        answer = json.loads(reply.body)
        extras: dict[str, Any] = {
            "x_schwab_trace_id": str(uuid.uuid4()),
            "x_session": "s" * 512,
            "customer_type": "RETAIL",
            "mfa_required": False,
            "deprecated_field": None,
            "refresh_token_expires_in": 604800,
            "granted_scopes": ["api", "readonly", "trade"] * 20,
            "issued_at": int(self.now()),
            "notes": {"lang": "en-US", "text": "lorem ipsum " * 100},
            "feature_flags": {f"flag_{i}": i % 2 == 0 for i in range(50)},
            "ratio": 0.125,
            "unicode_note": "caf\u00e9 \u2603",
        }
        answer.update(extras)
        return _Reply(200, json.dumps(answer).encode(), reply.content_type, dict(reply.headers))

    def _token(self, authorization: str | None, body: bytes) -> _Reply:
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        grant_type = form.get("grant_type", "")
        with self._lock:
            self._token_calls += 1
            self._calls_by_grant[grant_type] = self._calls_by_grant.get(grant_type, 0) + 1
            fault = self._take_fault("token")
            if fault == "extra_fields":
                return self._with_extra_fields(
                    self._token_unfaulted(authorization, form, grant_type)
                )
            if fault is not None and fault != "slow":
                return self._faulted_token_reply(fault, form)
            delay = self.slow_seconds if fault == "slow" else 0.0
        if delay:
            # Sleep first (without the lock), then answer as if the call had just arrived.
            time.sleep(delay)
        with self._lock:
            return self._token_unfaulted(authorization, form, grant_type)

    def _token_unfaulted(
        self, authorization: str | None, form: dict[str, str], grant_type: str
    ) -> _Reply:
        # Called with the lock held.
        if not self._client_ok(authorization):
            return _json_reply(401, {"error": "invalid_client"})
        if grant_type == "authorization_code":
            code = self._codes.get(form.get("code", ""))
            problem = None
            if code is None:
                problem = "Authorization code is invalid"
            elif code.used:
                problem = "Authorization code has already been used"
            elif self.now() >= code.expires_at:
                problem = "Authorization code has expired"
            elif form.get("redirect_uri", "") != code.redirect_uri:
                problem = "redirect_uri does not match the authorization request"
            if problem is not None or code is None:
                return _json_reply(400, {"error": "invalid_grant", "error_description": problem})
            code.used = True
            if self.one_login_per_app:
                # Schwab keeps one login per app: this exchange kills the app's older refresh
                # tokens at once (their access tokens live until they expire).
                for older in self._grants_by_refresh.values():
                    if older.client_id == code.client_id:
                        older.revoked = True
            login = _Grant(
                login_time=self.now(),
                refresh_token=self._new_secret(),
                accounts=code.accounts,
                client_id=code.client_id,
            )
            self._grants_by_refresh[login.refresh_token] = login
            return _json_reply(200, self._token_response(login), **{"Cache-Control": "no-store"})
        if grant_type == "refresh_token":
            grant = self._grants_by_refresh.get(form.get("refresh_token", ""))
            if grant is None:
                return _json_reply(400, REFRESH_DEAD_BODY)
            if self.now() >= grant.login_time + self.refresh_lifetime:
                if self.expired_login_401:  # whether or not a later login revoked it too
                    return _json_reply(401, REFRESH_TOKEN_INVALID_BODY)
                return _json_reply(400, REFRESH_DEAD_BODY)
            if grant.revoked:
                return _json_reply(400, REFRESH_DEAD_BODY)
            return _json_reply(200, self._token_response(grant), **{"Cache-Control": "no-store"})
        return _json_reply(400, {"error": "unsupported_grant_type"})

    def _account_numbers(self, authorization: str | None) -> _Reply:
        token = ""
        if authorization and authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        with self._lock:
            expiry = self._access_expiry.get(token)
            live = expiry is not None and self.now() < expiry
            grant = self._access_grant.get(token)
        if not live:
            return _json_reply(
                401,
                {
                    "errors": [
                        {
                            "status": "401",
                            "title": "Unauthorized",
                            "detail": "Client not authorized",
                        }
                    ]
                },
            )
        accounts = grant.accounts if grant is not None else DEFAULT_ACCOUNTS
        return _json_reply(200, account_numbers_answer(accounts))

    def _admin(self, method: str, path: str, body: bytes) -> _Reply:
        try:
            payload = json.loads(body) if body.strip() else {}
        except ValueError:
            return _json_reply(400, {"error": "body is not JSON"})
        if not isinstance(payload, dict):
            return _json_reply(400, {"error": "body must be a JSON object"})
        try:
            if method == "GET" and path == "/_emulator/stats":
                return _json_reply(200, self.stats())
            if method == "GET" and path == "/_emulator/callbacks":
                return _json_reply(200, {"callbacks": list(self.callback_urls)})
            if method != "POST":
                return _json_reply(405, {"error": "method not allowed"})
            if path == "/_emulator/fault":
                self.set_fault(str(payload.get("kind")), payload.get("count"))
            elif path == "/_emulator/clear":
                self.clear_faults()
            elif path == "/_emulator/clock":
                return _json_reply(200, {"now": self.advance(float(payload.get("advance", 0)))})
            elif path == "/_emulator/config":
                self.configure(**payload)
            elif path == "/_emulator/revoke":
                self.revoke_all()
            elif path == "/_emulator/reset_counters":
                self.reset_counters()
            elif path == "/_emulator/callbacks":
                url: Any = payload.get("url")  # checked by register_callback
                self.register_callback(url)
            elif path == "/_emulator/login_as":
                self.login_as(payload.get("accounts") or [])
            else:
                return _json_reply(404, {"error": "not found"})
        except (TypeError, ValueError) as exc:
            return _json_reply(400, {"error": str(exc)})
        return _json_reply(200, {"ok": True})

    def _dispatch(self, method: str, target: str, headers: Any, body: bytes) -> _Reply:
        parts = urlsplit(target)
        path = parts.path
        if path.startswith("/_emulator/"):
            return self._admin(method, path, body)
        if path == AUTHORIZE_PATH and method == "GET":
            return self._authorize(parts.query)
        if path == TOKEN_PATH and method == "POST":
            return self._token(headers.get("Authorization"), body)
        if path == ACCOUNT_NUMBERS_PATH and method == "GET":
            return self._account_numbers(headers.get("Authorization"))
        if path in (AUTHORIZE_PATH, TOKEN_PATH, ACCOUNT_NUMBERS_PATH):
            return _json_reply(405, {"error": "method not allowed"})
        return _json_reply(404, {"error": "not found"})


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SchwabEmulator/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (and keep tokens in URLs out of any output)."""

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            try:
                return self.rfile.read(int(length))
            except ValueError:
                return b""
        return b""

    def _handle(self, method: str) -> None:
        assert isinstance(self.server, _Server)
        emulator = self.server.emulator
        body = self._read_body()
        reply = emulator._dispatch(method, self.path, self.headers, body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD" and reply.body:
            self.wfile.write(reply.body)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
