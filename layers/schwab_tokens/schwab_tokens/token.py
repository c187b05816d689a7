"""The token document, exactly as schwab-py stores it, with expiry arithmetic.

No AWS and no HTTP here: stores, the reader and the refresh policy all share this one model.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidTokenDocument

#: Schwab kills the refresh token seven days after the browser login.
REFRESH_TOKEN_LIFETIME = 7 * 24 * 3600
#: Documents are a few kilobytes; anything far larger is not ours and is refused before parsing.
MAX_DOCUMENT_BYTES = 64 * 1024

_REQUIRED_STRINGS = ("access_token", "refresh_token")


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for logs: enough to tell two tokens apart, not to use one."""
    return hashlib.sha256(secret.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Token:
    """A parsed, validated token document: ``{"creation_timestamp": .., "token": {..}}``."""

    creation_timestamp: int
    token: Mapping[str, Any]

    # -- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, raw: bytes | str, *, source: str = "token document") -> Token:
        # A str is measured in UTF-8 bytes, as the file or object would be; anything longer
        # than the limit in characters is already too long, so huge input is never encoded.
        size = len(raw)
        if isinstance(raw, str) and size <= MAX_DOCUMENT_BYTES:
            size = len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_DOCUMENT_BYTES:
            raise InvalidTokenDocument(
                f"{source} is {size} bytes, more than a token document can be "
                f"({MAX_DOCUMENT_BYTES}); it is not a schwab-tokens/schwab-py token"
            )
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            # The position is safe to show; the document text is not (it may hold a token).
            raise InvalidTokenDocument(
                f"{source} is not valid JSON (line {exc.lineno} column {exc.colno})"
            ) from None
        except UnicodeDecodeError:
            raise InvalidTokenDocument(f"{source} is not valid JSON (not UTF-8 text)") from None
        except ValueError:  # e.g. a number longer than int() accepts
            raise InvalidTokenDocument(
                f"{source} is not valid JSON (a value is too large)"
            ) from None
        except RecursionError:
            raise InvalidTokenDocument(f"{source} is not valid JSON (nested too deeply)") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "token document") -> Token:
        if not isinstance(data, dict):
            raise InvalidTokenDocument(f"{source} must be a JSON object")
        created = data.get("creation_timestamp")
        if created is None:
            raise InvalidTokenDocument(
                f"{source} has no creation_timestamp (a schwab-py token written by an old version "
                "or another tool); run `schwab-tokens login` to create a new one"
            )
        if not _epoch(created) or created < 0:
            raise InvalidTokenDocument(f"{source}: creation_timestamp must be epoch seconds")
        inner = data.get("token")
        if not isinstance(inner, dict):
            raise InvalidTokenDocument(f"{source} has no token object")
        for name in _REQUIRED_STRINGS:
            value = inner.get(name)
            if not isinstance(value, str) or not value:
                raise InvalidTokenDocument(f"{source} is missing token.{name}")
            # OAuth tokens are printable ASCII (RFC 6749 A.12/A.17); anything else cannot be
            # sent in a form body or a header, so it is not a token.
            if not (value.isascii() and value.isprintable()):
                raise InvalidTokenDocument(f"{source}: token.{name} is not printable ASCII")
        if not _epoch(inner.get("expires_at")):
            raise InvalidTokenDocument(f"{source} is missing token.expires_at (epoch seconds)")
        return cls(int(created), dict(inner))

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_login(cls, response: Mapping[str, Any], now: float | None = None) -> Token:
        """The first document, from the authorization-code answer."""
        now = time.time() if now is None else now
        return cls(int(now), _with_expiry(response, now))

    def refreshed(self, response: Mapping[str, Any], now: float | None = None) -> Token:
        """The next document after a refresh: the login time stays, the access token changes.

        Schwab normally returns the same refresh token; if an answer omits it we keep ours,
        since dropping it would make the token unrefreshable.
        """
        now = time.time() if now is None else now
        inner = _with_expiry(response, now)
        inner.setdefault("refresh_token", self.refresh_token)
        return Token(self.creation_timestamp, inner)

    def to_dict(self) -> dict[str, Any]:
        return {"creation_timestamp": self.creation_timestamp, "token": dict(self.token)}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    # -- arithmetic --------------------------------------------------------------------------
    @property
    def access_token(self) -> str:
        return str(self.token["access_token"])

    @property
    def refresh_token(self) -> str:
        return str(self.token["refresh_token"])

    @property
    def access_expires_at(self) -> float:
        return float(self.token["expires_at"])

    @property
    def refresh_expires_at(self) -> float:
        return float(self.creation_timestamp + REFRESH_TOKEN_LIFETIME)

    def access_seconds_left(self, now: float | None = None) -> float:
        return self.access_expires_at - (time.time() if now is None else now)

    def refresh_seconds_left(self, now: float | None = None) -> float:
        return self.refresh_expires_at - (time.time() if now is None else now)

    def needs_refresh(self, margin: float, now: float | None = None) -> bool:
        return self.access_seconds_left(now) < margin

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.access_token)

    def __repr__(self) -> str:  # the dataclass default would print the tokens
        return (
            f"Token(fingerprint={self.fingerprint!r}, "
            f"creation_timestamp={self.creation_timestamp}, "
            f"expires_at={self.access_expires_at:.0f})"
        )

    __str__ = __repr__


def _epoch(value: object) -> bool:
    """A finite number of seconds in a plausible range (NaN, infinities, 10**400 are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value == value  # not NaN
        and abs(value) <= 1e12
    )


def _with_expiry(response: Mapping[str, Any], now: float) -> dict[str, Any]:
    inner = dict(response)
    expires_in = inner.get("expires_in")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float) or expires_in <= 0:
        expires_in = 1800  # Schwab's documented lifetime, if an answer ever omits it
        inner["expires_in"] = expires_in
    inner["expires_at"] = int(now + expires_in)
    return inner
