"""One-time login links: tickets for the hosted login, and the OAuth ``state`` bound to them.

A ticket says "whoever holds this may replace login L of store S until time E". It is a small
JSON payload and an HMAC-SHA256 over it, with a key derived from the app secret (which only the
owner, the refresher and the login function can read), so it cannot be forged or altered and
nothing secret is stored anywhere. It is single-use without any record: it names the login it
replaces (the token's ``creation_timestamp``), and a successful login changes that, so the same
link then finds "already used". A random nonce makes every ticket distinct.

The ``state`` sent to Schwab carries the ticket's payload and an HMAC over it and the nonce in
the browser's ``__Host-`` cookie: only the browser that opened the link can complete the login
it started. No AWS and no HTTP here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from . import strictjson
from .errors import SchwabTokensError

DEFAULT_VALID_SECONDS = 24 * 3600
MAX_VALID_SECONDS = 72 * 3600
#: How long a sign-in may take from opening the link to Schwab's redirect back (the cookie's
#: life, and the state's: a stolen state and cookie are worthless after it).
SIGN_IN_SECONDS = 900
_KEY_LABEL = b"schwab-tokens login ticket v1"
#: A ticket or state: two base64url words joined by a dot (checked before anything else).
_FORM = re.compile(r"^[A-Za-z0-9_-]{1,900}\.[A-Za-z0-9_-]{43}$")
#: The browser's cookie, as ``new_nonce`` makes it: a Unix time, a dash, 256 random bits.
_NONCE = re.compile(r"^[0-9]{1,12}-[A-Za-z0-9_-]{43}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class TicketError(SchwabTokensError):
    """A ticket or state that cannot be used; ``reason`` is one of the fixed words below."""

    #: "invalid" (malformed, forged, altered), "expired", "other_store", "browser" (the state
    #: does not match this browser's cookie), "slow" (the sign-in outlived SIGN_IN_SECONDS).
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Ticket:
    """A verified ticket: the store it may log in again, the login it replaces, its expiry."""

    store: str
    login: int
    expires: int
    nonce: str


def ticket_key(app_secret: str) -> bytes:
    """The HMAC key for tickets: derived from the app secret, so nothing new must be kept."""
    return hmac.new(app_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()


def store_id(url: str) -> str:
    """The store a ticket is bound to, without naming it in the link."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def parse_duration(text: str) -> int:
    """Seconds in ``24h``, ``90m``, ``2d`` or ``3600`` (seconds), at most 72 hours.

    Raises ``ValueError`` (the caller names the flag) for anything else.
    """
    match = _DURATION.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a duration like 24h, 90m or 2d")
    seconds = int(float(match.group(1)) * _UNITS[match.group(2)])
    if not 0 < seconds <= MAX_VALID_SECONDS:
        raise ValueError(f"a login link is valid from 1 second to 72 hours, not {text!r}")
    return seconds


def mint(
    key: bytes, store_url: str, login: int, now: float, valid: int = DEFAULT_VALID_SECONDS
) -> str:
    """A new ticket for replacing ``login`` of ``store_url``, valid ``valid`` seconds."""
    if not 0 < valid <= MAX_VALID_SECONDS:
        raise ValueError("a ticket is valid from 1 second to 72 hours")
    payload = _b64(
        strictjson.dumps(
            {
                "s": store_id(store_url),
                "l": int(login),
                "e": int(now + valid),
                "n": secrets.token_urlsafe(12),
            }
        )
    )
    return f"{payload}.{_mac(key, b'ticket|' + payload.encode())}"


def precheck(text: str, now: float) -> None:
    """Refuse a ticket that no key could make usable: malformed, or expired.

    Needs no key, so the hosted login runs it before reading the app credentials; ``verify``
    runs it too. Raises ``TicketError``.
    """
    _claims(_payload(text), now)


def verify(key: bytes, text: str, store_url: str, now: float) -> Ticket:
    """The ticket in ``text`` if it is authentic, unexpired and for this store.

    Raises ``TicketError`` otherwise.
    """
    payload, _, mac = text.partition(".")
    claims = _claims(_payload(text), now)
    if not hmac.compare_digest(mac, _mac(key, b"ticket|" + payload.encode())):
        raise TicketError("invalid", "the login link is not valid (altered or not ours)")
    return _for_store(claims, store_url)


def new_nonce(now: float) -> str:
    """The browser's cookie value for one sign-in: when it started, and 256 random bits."""
    return f"{int(now)}-{secrets.token_urlsafe(32)}"


def state_for(key: bytes, ticket_text: str, nonce: str) -> str:
    """The OAuth ``state`` of a login started with ``ticket_text`` in the browser of ``nonce``.

    ``nonce`` is the one that browser holds in its cookie.
    """
    payload = ticket_text.partition(".")[0]
    return f"{payload}.{_mac(key, b'state|' + nonce.encode() + b'|' + payload.encode())}"


def precheck_state(state: str, nonce: str | None, now: float) -> None:
    """Refuse a returning ``state`` that no key could make usable.

    Malformed, no cookie or not one of ours, a sign-in older than ``SIGN_IN_SECONDS``, an
    expired ticket. Needs no key (see ``precheck``); ``verify_state`` runs it too. Raises
    ``TicketError``.
    """
    _state_claims(state, nonce, now)


def verify_state(key: bytes, state: str, nonce: str | None, store_url: str, now: float) -> Ticket:
    """The ticket a returning ``state`` was started with, if it was started in this browser.

    Raises ``TicketError`` otherwise.
    """
    claims, cookie = _state_claims(state, nonce, now)
    payload, _, mac = state.partition(".")
    # The time in the nonce is under this MAC: a cookie moved forward in time fails here.
    expected = _mac(key, b"state|" + cookie.encode() + b"|" + payload.encode())
    if not hmac.compare_digest(mac, expected):
        raise TicketError("browser", "the sign-in was started in another browser or tab")
    return _for_store(claims, store_url)


def looks_like_state(state: str | None) -> bool:
    """Whether ``state`` has the form of ours (a CLI's state is one random word, no dot)."""
    return isinstance(state, str) and bool(_FORM.fullmatch(state))


# -- helpers ----------------------------------------------------------------------------------
def _payload(text: str, malformed: str = "the login link is incomplete or not a login link") -> str:
    """The payload word of a ticket or state of our form (checked before anything else)."""
    if not isinstance(text, str) or not _FORM.fullmatch(text):
        raise TicketError("invalid", malformed)
    return text.partition(".")[0]


def _claims(payload: str, now: float) -> Ticket:
    """What a payload says, not yet verified: its fields must have the types ``mint`` writes,
    and it must not have expired."""
    data = _decode(payload)
    store, login, expires, nonce = data.get("s"), data.get("l"), data.get("e"), data.get("n")
    if not (
        isinstance(store, str)
        and isinstance(login, int)
        and isinstance(expires, int)
        and isinstance(nonce, str)
    ):
        raise TicketError("invalid", "the login link is not valid")
    if now >= expires:
        raise TicketError("expired", "the login link has expired")
    return Ticket(store, login, expires, nonce)


def _state_claims(state: str, nonce: str | None, now: float) -> tuple[Ticket, str]:
    """What a returning state says (not yet verified), and the browser's cookie, if it is one
    of ours and the sign-in is recent."""
    payload = _payload(state, "the sign-in did not start from a schwab-tokens link")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise TicketError("browser", "this browser did not start the sign-in (no cookie)")
    started = int(nonce.partition("-")[0])
    # A minute's grace backwards: the start and the callback may run on two Lambda instances.
    if not -60 <= now - started <= SIGN_IN_SECONDS:
        raise TicketError("slow", "the sign-in took more than 15 minutes")
    return _claims(payload, now), nonce


def _for_store(claims: Ticket, store_url: str) -> Ticket:
    """The ticket, if it is for this store. Checked only once the MAC verified: before that,
    "another store" would tell a stranger whether a guessed store URL is this one."""
    if claims.store != store_id(store_url):
        raise TicketError("other_store", "the login link is for another token store")
    return claims


def _decode(payload: str) -> dict[str, object]:
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        data = strictjson.loads(raw)
    except (binascii.Error, ValueError):
        raise TicketError("invalid", "the login link is not valid") from None
    if not isinstance(data, dict):
        raise TicketError("invalid", "the login link is not valid")
    return data


def _mac(key: bytes, message: bytes) -> str:
    return _b64(hmac.new(key, message, hashlib.sha256).digest())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")
