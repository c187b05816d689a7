"""The token document, exactly as schwab-py stores it, with expiry arithmetic.

No AWS and no HTTP here: stores, the reader and the refresh policy all share this one model.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import strictjson
from .errors import InvalidTokenAnswer, InvalidTokenDocument

log = logging.getLogger(__name__)

#: Schwab kills the refresh token seven days after the browser login.
REFRESH_TOKEN_LIFETIME = 7 * 24 * 3600
#: Documents are a few kilobytes; anything far larger is not ours and is refused before parsing.
MAX_DOCUMENT_BYTES = 64 * 1024

_REQUIRED_STRINGS = ("access_token", "refresh_token")
#: Schwab's tokens are about 100 characters; a JWT id_token a few kilobytes.
MAX_TOKEN_CHARS = 2048
_OPTIONAL_STRINGS = {"id_token": 8192, "token_type": 32, "scope": 256}
#: Schwab's documented access-token lifetime, and the most an answer may claim.
DEFAULT_EXPIRES_IN = 1800
MAX_EXPIRES_IN = 86400
_ANSWER = "Schwab's token answer "
_UNTOUCHED = "; the stored token is untouched, try again later"


def fingerprint(secret: str) -> str:
    """A short, non-reversible label for logs: enough to tell two tokens apart, not to use one."""
    return hashlib.sha256(secret.encode()).hexdigest()[:10]


class Expiries:
    """The time arithmetic a token document and an access view share.

    Each has a login time (``creation_timestamp``) and an access-token expiry
    (``access_expires_at``).
    """

    creation_timestamp: int

    @property
    def access_expires_at(self) -> float:
        """When the access token expires, in epoch seconds."""
        raise NotImplementedError

    @property
    def refresh_expires_at(self) -> float:
        """When the login ends: Schwab kills the refresh token 7 days after it."""
        return float(self.creation_timestamp + REFRESH_TOKEN_LIFETIME)

    def access_seconds_left(self, now: float | None = None) -> float:
        """Seconds until the access token expires (negative once it has)."""
        return self.access_expires_at - (time.time() if now is None else now)

    def refresh_seconds_left(self, now: float | None = None) -> float:
        """Seconds until the login ends (negative once it has)."""
        return self.refresh_expires_at - (time.time() if now is None else now)


@dataclass(frozen=True)
class Token(Expiries):
    """A parsed, validated token document: ``{"creation_timestamp": .., "token": {..}}``."""

    creation_timestamp: int
    token: Mapping[str, Any]

    # -- parsing -----------------------------------------------------------------------------
    @classmethod
    def parse(cls, raw: bytes | str, *, source: str = "token document") -> Token:
        """Parse a stored document (bytes as read from a file, object or secret).

        Refuses, with ``InvalidTokenDocument`` naming what is wrong (never quoting the text):
        anything over 64 KB, text that is not strict JSON (``NaN``, ``Infinity`` and ``1e400``
        included) and documents that ``from_dict`` refuses.
        """
        return cls.from_dict(load_json(raw, source), source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "token document") -> Token:
        """Validate a schwab-py token document already parsed (e.g. from schwab-py's write hook).

        Requires ``creation_timestamp`` and ``token.expires_at`` in epoch seconds, and
        ``token.access_token`` and ``token.refresh_token`` in printable ASCII; other keys are
        kept as they are (schwab-py and authlib add their own). Raises ``InvalidTokenDocument``.
        """
        if not isinstance(data, dict):
            raise InvalidTokenDocument(f"{source} must be a JSON object")
        created = data.get("creation_timestamp")
        if created is None:
            raise InvalidTokenDocument(
                f"{source} has no creation_timestamp (a schwab-py token written by an old version "
                "or another tool)"
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
            problem = token_string_problem(value)
            if problem:
                raise InvalidTokenDocument(f"{source}: token.{name} {problem}")
        if not _epoch(inner.get("expires_at")):
            raise InvalidTokenDocument(f"{source} is missing token.expires_at (epoch seconds)")
        return cls(int(created), dict(inner))

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_login(cls, answer: Any, now: float | None = None) -> Token:
        """The first document, from the authorization-code answer.

        Raises ``InvalidTokenAnswer`` if the answer is not a usable token.
        """
        now = time.time() if now is None else now
        fields = token_fields(answer, need_refresh_token=True)
        return _round_trip(cls(int(now), _with_expiry(fields, now)))

    def refreshed(self, answer: Any, now: float | None = None) -> Token:
        """The next document after a refresh: the login time stays, the access token changes.

        The answer is validated first (``InvalidTokenAnswer``). Schwab normally returns the same
        refresh token; if an answer omits it we keep ours, since dropping it would make the
        token unrefreshable.
        """
        now = time.time() if now is None else now
        fields = token_fields(answer, need_refresh_token=False)
        fields.setdefault("refresh_token", self.refresh_token)
        return _round_trip(Token(self.creation_timestamp, _with_expiry(fields, now)))

    @classmethod
    def from_client(cls, document: Any, *, source: str = "the token schwab-py wrote") -> Token:
        """A document an OAuth client built from Schwab's answer (schwab-py's write hook).

        Checked like a stored document, then, like an answer, only the known fields are kept
        (authlib keeps whatever Schwab sent, ``NaN`` included). Raises ``InvalidTokenDocument``
        if it is not a usable token.
        """
        checked = cls.from_dict(document, source=source)
        try:
            fields = token_fields(checked.token, need_refresh_token=True)
            fields["expires_at"] = int(checked.access_expires_at)
            return _round_trip(cls(checked.creation_timestamp, fields))
        except InvalidTokenAnswer as exc:
            raise InvalidTokenDocument(f"{source} is not a usable token: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The document as a dict (a copy): ``{"creation_timestamp": .., "token": {..}}``."""
        return {"creation_timestamp": self.creation_timestamp, "token": dict(self.token)}

    def to_json(self) -> bytes:
        """The document as the UTF-8 JSON a store keeps."""
        # The strict writer: a document the strict parser would refuse is never produced.
        return strictjson.dumps(self.to_dict())

    def schwab_py_document(self) -> dict[str, Any]:
        """What schwab-py's token file and access functions hold: the whole document."""
        return self.to_dict()

    # -- arithmetic --------------------------------------------------------------------------
    @property
    def access_token(self) -> str:
        """The access token (a secret: log ``fingerprint`` instead)."""
        return str(self.token["access_token"])

    @property
    def refresh_token(self) -> str:
        """The refresh token (a secret, never logged)."""
        return str(self.token["refresh_token"])

    @property
    def access_expires_at(self) -> float:
        """When the access token expires (``token.expires_at``), in epoch seconds."""
        return float(self.token["expires_at"])

    @property
    def issued_at(self) -> float:
        """When Schwab issued the access token (``expires_at - expires_in``)."""
        lifetime = _lifetime(self.token.get("expires_in"))
        return self.access_expires_at - (DEFAULT_EXPIRES_IN if lifetime is None else lifetime)

    def needs_refresh(self, margin: float, now: float | None = None) -> bool:
        """Whether the access token has less than ``margin`` seconds left."""
        return self.access_seconds_left(now) < margin

    @property
    def fingerprint(self) -> str:
        """A short label of the access token, safe to log."""
        return fingerprint(self.access_token)

    def __repr__(self) -> str:  # the dataclass default would print the tokens
        return (
            f"Token(fingerprint={self.fingerprint!r}, "
            f"creation_timestamp={self.creation_timestamp}, "
            f"expires_at={self.access_expires_at:.0f})"
        )

    __str__ = __repr__


def load_json(raw: bytes | str, source: str) -> Any:
    """The parsed JSON of a stored document (a token document or an access view).

    Raises ``InvalidTokenDocument`` for anything over 64 KB or text that is not strict JSON
    (``NaN``, ``Infinity`` and ``1e400`` included), named but never quoted.
    """
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
        return strictjson.loads(raw)
    except strictjson.NotJSON as exc:
        raise InvalidTokenDocument(f"{source} is not valid JSON ({exc.reason})") from None


def _epoch(value: object) -> bool:
    """A finite number of seconds in a plausible range (NaN, infinities, 10**400 are not)."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and value == value  # not NaN
        and abs(value) <= 1e12
    )


def token_string_problem(value: str, limit: int = MAX_TOKEN_CHARS) -> str | None:
    """Why ``value`` cannot be an OAuth token, or None when it can.

    Tokens are printable ASCII (RFC 6749 A.12/A.17); anything else cannot travel in a form body
    or a header.
    """
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if not (value.isascii() and value.isprintable()):
        return "is not printable ASCII"
    return None


def token_fields(answer: Any, *, need_refresh_token: bool) -> dict[str, Any]:
    """The fields of a token-endpoint answer that go into the stored document, validated.

    Only the known fields are kept, each checked and bounded. A missing ``expires_in`` means
    Schwab's documented 1800 s (RFC 6749 5.1 makes it optional); a present one must be 1..86400 s.
    Raises ``InvalidTokenAnswer`` (a temporary failure that stores nothing) for anything else.
    """
    if not isinstance(answer, Mapping):
        raise InvalidTokenAnswer(_ANSWER + "is not a JSON object" + _UNTOUCHED)
    fields: dict[str, Any] = {}
    for name in _REQUIRED_STRINGS:
        value = answer.get(name)
        if value is None and name == "refresh_token" and not need_refresh_token:
            continue
        if not isinstance(value, str) or not value:
            raise InvalidTokenAnswer(_ANSWER + f"has no {name}" + _UNTOUCHED)
        problem = token_string_problem(value)
        if problem:
            raise InvalidTokenAnswer(_ANSWER + f"{name} {problem}" + _UNTOUCHED)
        fields[name] = value
    for name, limit in _OPTIONAL_STRINGS.items():
        value = answer.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or token_string_problem(value, limit):
            # Not needed to refresh or to call the API: drop it rather than fail the refresh.
            log.warning("Schwab's token answer has an unusable %s; it is not stored", name)
            continue
        fields[name] = value
    if answer.get("expires_in") is None:
        log.warning("Schwab's token answer has no expires_in; assuming %d s", DEFAULT_EXPIRES_IN)
        expires_in: float | None = DEFAULT_EXPIRES_IN
    else:
        expires_in = _lifetime(answer.get("expires_in"))
    if expires_in is None:
        raise InvalidTokenAnswer(
            _ANSWER
            + f"has an expires_in that is not a number of 1..{MAX_EXPIRES_IN} seconds"
            + _UNTOUCHED
        )
    fields["expires_in"] = int(expires_in)
    return fields


def _lifetime(value: object) -> float | None:
    """An access-token lifetime in seconds (1..86400), or None for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Compared before any conversion: float() of a 400-digit integer raises; NaN compares false.
    return float(value) if 1 <= value <= MAX_EXPIRES_IN else None


def _round_trip(token: Token) -> Token:
    """What the next run will read back: the same parser, on the same bytes. A document that
    would not parse is never handed to a store."""
    try:
        return Token.parse(token.to_json(), source="the new token document")
    except InvalidTokenDocument as exc:
        raise InvalidTokenAnswer(f"{exc}; nothing was stored{_UNTOUCHED}") from None


def _with_expiry(fields: dict[str, Any], now: float) -> dict[str, Any]:
    inner = dict(fields)
    inner["expires_at"] = int(now + inner["expires_in"])
    return inner
