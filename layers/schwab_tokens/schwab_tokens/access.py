"""The access view: what a consumer may hold, kept beside the token by every writer.

The token document holds the refresh token (seven days of access to a brokerage account) and is
only for the refresher, ``login`` and long-running bots that refresh under the lease. A consumer
needs far less: the access token (30 minutes), its expiry, its type and scope, the login time and
a fingerprint. The view holds exactly that, never the refresh token, the id token or the app
credentials, so a leaked consumer role yields at most 30 minutes of API access.

Its JSON form is specified by ``schemas/access-view.schema.json`` (``expires_at`` an integer, as
Go clients parse it). No AWS here: where a view lives is ``stores``' business.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from . import strictjson
from .errors import InvalidTokenDocument, MisplacedDocument
from .token import (
    DEFAULT_EXPIRES_IN,
    Expiries,
    Token,
    fingerprint,
    load_json,
    token_string_problem,
)

#: Names the document's kind and version, so any reader can tell a view from a token document.
FORMAT = "schwab-tokens-access-view/1"
#: The largest number a view holds (whole epoch seconds, or a lifetime in seconds).
MAX_EPOCH = 10**12
#: The longest ``token_type`` or ``scope`` a view holds.
MAX_TEXT_CHARS = 256


def _text(value: object, default: str) -> str:
    """``value`` if a view may hold it as ``token_type`` or ``scope``, else ``default``."""
    if isinstance(value, str) and value and not token_string_problem(value, MAX_TEXT_CHARS):
        return value
    return default


@dataclass(frozen=True)
class AccessView(Expiries):
    """The access token and what it takes to use it; no refresh token, no id token."""

    access_token: str
    expires_at: int
    creation_timestamp: int
    expires_in: int = DEFAULT_EXPIRES_IN
    token_type: str = "Bearer"
    scope: str = "api"
    #: A writer found the login over (Schwab refused its refresh token, or its 7 days ended):
    #: consumers stop with "login required" instead of waiting for a token that cannot come.
    login_required: bool = False

    @classmethod
    def from_token(cls, token: Token, *, login_required: bool = False) -> AccessView:
        """The view of a token document that was stored (and so validated)."""
        inner = token.token
        lifetime = inner.get("expires_in")
        # A document another tool wrote may carry fields a view may not (its readers refuse
        # them): those take their usual values, so the view stays readable.
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            lifetime = DEFAULT_EXPIRES_IN
        return cls(
            access_token=token.access_token,
            expires_at=int(token.access_expires_at),
            creation_timestamp=token.creation_timestamp,
            expires_in=lifetime if 0 <= lifetime <= MAX_EPOCH else DEFAULT_EXPIRES_IN,
            token_type=_text(inner.get("token_type"), "Bearer"),
            scope=_text(inner.get("scope"), "api"),
            login_required=login_required,
        )

    @classmethod
    def of(cls, held: Token | AccessView) -> AccessView:
        """``held`` itself if it is a view, else the view of the token document.

        This is what a client that must never refresh is given (no refresh token).
        """
        return held if isinstance(held, AccessView) else cls.from_token(held)

    def covers(self, other: AccessView) -> bool:
        """Whether this stored view makes writing ``other`` unnecessary.

        True when it mirrors a later token, or the same one with at least as much known: a mark
        that the login is over is removed only by a newer token.
        """
        if self.order() != other.order():
            return self.order() > other.order()
        unmarked = replace(self, login_required=False) == replace(other, login_required=False)
        return unmarked and self.login_required >= other.login_required

    # -- the JSON form ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The view's JSON object (``schemas/access-view.schema.json``)."""
        mark = {"login_required": True} if self.login_required else {}
        return {
            **mark,
            "format": FORMAT,
            "access_token": self.access_token,
            "token_type": self.token_type,
            "scope": self.scope,
            "expires_in": self.expires_in,
            "expires_at": self.expires_at,
            "creation_timestamp": self.creation_timestamp,
            "refresh_expires_at": int(self.refresh_expires_at),
            "fingerprint": self.fingerprint,
        }

    def to_json(self) -> bytes:
        """The view as the UTF-8 JSON a store keeps."""
        return strictjson.dumps(self.to_dict())

    @classmethod
    def parse(cls, raw: bytes | str, *, source: str = "access view") -> AccessView:
        """The view in a stored view's bytes (strict JSON, at most 64 KB).

        Raises ``InvalidTokenDocument`` (or ``MisplacedDocument``) naming what is wrong.
        """
        return cls.from_dict(load_json(raw, source), source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "access view") -> AccessView:
        """A view as stored, parsed and checked.

        Raises ``MisplacedDocument`` if it holds a refresh token, and ``InvalidTokenDocument``
        naming what else is wrong (never quoting the token).
        """
        if holds_refresh_token(data):
            raise MisplacedDocument(
                f"{source} holds a whole token document, refresh token included, where only the "
                "access view belongs (bots and the reader policy read there): the store is "
                "misconfigured. Delete it, give the token store's URL (not the view's) to the "
                "writers, and log in again there: a new login ends the exposed refresh token"
            )
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise InvalidTokenDocument(f"{source} is not an access view ({FORMAT})")
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise InvalidTokenDocument(f"{source} has no access_token")
        problem = token_string_problem(access)
        if problem:
            raise InvalidTokenDocument(f"{source}: access_token {problem}")
        numbers: dict[str, int] = {}
        for name in ("expires_at", "creation_timestamp", "expires_in"):
            value = data.get(name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_EPOCH:
                raise InvalidTokenDocument(f"{source}: {name} must be whole epoch seconds")
            numbers[name] = value
        texts: dict[str, str] = {}
        for name in ("token_type", "scope"):
            value = data.get(name)
            if not isinstance(value, str) or token_string_problem(value, MAX_TEXT_CHARS):
                raise InvalidTokenDocument(f"{source}: {name} must be short printable text")
            texts[name] = value
        mark = data.get("login_required", False)
        if not isinstance(mark, bool):
            raise InvalidTokenDocument(f"{source}: login_required must be true or false")
        view = cls(
            access,
            expires_at=numbers["expires_at"],
            creation_timestamp=numbers["creation_timestamp"],
            expires_in=numbers["expires_in"],
            token_type=texts["token_type"],
            scope=texts["scope"],
            login_required=mark,
        )
        if data.get("fingerprint") != view.fingerprint:
            raise InvalidTokenDocument(f"{source}: the fingerprint does not match its access token")
        return view

    # -- what a consumer asks -----------------------------------------------------------------
    @property
    def access_expires_at(self) -> float:
        """When the access token expires (``expires_at``), in epoch seconds."""
        return float(self.expires_at)

    @property
    def issued_at(self) -> float:
        """When Schwab issued the access token (``expires_at - expires_in``)."""
        return float(self.expires_at - self.expires_in)

    @property
    def fingerprint(self) -> str:
        """A short label of the access token, safe to log."""
        return fingerprint(self.access_token)

    def schwab_py_document(self) -> dict[str, Any]:
        """The document schwab-py's ``client_from_access_functions`` reads.

        It has no refresh token, so its client can never try a refresh it cannot do.
        """
        return {
            "creation_timestamp": self.creation_timestamp,
            "token": {
                "access_token": self.access_token,
                "token_type": self.token_type,
                "scope": self.scope,
                "expires_in": self.expires_in,
                "expires_at": self.expires_at,
            },
        }

    def order(self) -> tuple[int, float]:
        """The sort key of views: login time, then access-token issue time.

        A view never goes back to an older token. Issue times, not expiries: a later answer
        may be shorter-lived.
        """
        return (self.creation_timestamp, self.issued_at)

    def __repr__(self) -> str:  # the dataclass default would print the token
        return (
            f"AccessView(fingerprint={self.fingerprint!r}, "
            f"creation_timestamp={self.creation_timestamp}, expires_at={self.expires_at})"
        )

    __str__ = __repr__


def holds_refresh_token(data: Any) -> bool:
    """Whether a parsed document carries a refresh token (at the top, or in ``token``)."""
    if not isinstance(data, dict):
        return False
    inner = data.get("token")
    return "refresh_token" in data or (isinstance(inner, dict) and "refresh_token" in inner)


def parse_document(raw: bytes | str, *, source: str) -> Token | AccessView:
    """A stored document of either kind: a token document, or an access view (``format``).

    Raises ``InvalidTokenDocument`` (or ``MisplacedDocument``) if it is neither.
    """
    data = load_json(raw, source)
    if isinstance(data, dict) and "format" in data:
        return AccessView.from_dict(data, source=source)
    return Token.from_dict(data, source=source)


__all__ = ["FORMAT", "AccessView", "holds_refresh_token", "parse_document"]
