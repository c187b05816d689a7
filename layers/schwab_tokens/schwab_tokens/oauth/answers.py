"""What an answer of Schwab's token endpoint means: the token answer of a 200, or one of the
package's error kinds for anything else, so callers never look at HTTP.

Only an OAuth verdict on the refresh token, whatever the status, means "login required"; see
docs/how-it-works.md.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from .. import strictjson
from ..errors import (
    BadAppCredentials,
    CallbackError,
    ConfigurationError,
    InvalidTokenAnswer,
    RefreshTokenRejected,
    TemporaryFailure,
)
from .http import MAX_ANSWER_BYTES, RETRY_STATUSES, Answer

#: An OAuth error code as this package shows it: short, and nothing a description could hide.
ERROR_CODE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: An ``"error": "<code>"`` member quoted inside a description (Schwab nests the real reason
#: there, its quotes escaped or not).
_NESTED_ERROR_CODE = re.compile(rf'\\*"error\\*"\s*:\s*\\*"({ERROR_CODE.pattern})')

#: OAuth error codes that are Schwab's verdict on the refresh token itself (dead, expired,
#: revoked or superseded). ``unsupported_token_type`` is how Schwab wraps its nested
#: ``refresh_token_authentication_error``; ``invalid_client`` counts only when its description
#: names the refresh token (otherwise it means a wrong app key or secret).
_DEAD_TOKEN_CODES = frozenset(
    {"invalid_grant", "refresh_token_authentication_error", "unsupported_token_type"}
)
#: "refresh token", or the parameter's own name (``refresh_token``, ``refresh-token``).
_NAMES_THE_REFRESH_TOKEN = re.compile(r"refresh[\s_-]*token", re.IGNORECASE)

_UNTOUCHED = "the stored token is untouched, try again later"


def is_error_code(text: str) -> bool:
    """Whether ``text`` is shaped like an OAuth error code (safe to show)."""
    return ERROR_CODE.fullmatch(text) is not None


def classify(answer: Answer, grant: str) -> dict[str, Any]:
    """The token answer of a 200 (validate it with ``Token``), for the ``grant`` asked.

    Raises ``InvalidTokenAnswer`` (a 200 that is no JSON object), ``RefreshTokenRejected``
    (Schwab's verdict on the refresh token), ``BadAppCredentials`` (any other 401),
    ``CallbackError`` (a refused authorization code), ``TemporaryFailure`` (a redirect, a retried
    status, a 400 without a verdict) or ``ConfigurationError`` (anything else)."""
    status = answer.status
    if status == 200:
        return _token_answer(answer.body)
    error = _error(answer)
    if 300 <= status < 400:
        raise TemporaryFailure(
            f"Schwab's token endpoint answered {status} (a redirect, not followed: the token "
            f"goes to the configured host only); {_UNTOUCHED}"
        )
    if status in (400, 401) and grant == "refresh_token" and error.is_dead_token_verdict:
        # The body's verdict decides, not the status: RFC 6749 makes invalid_client under Basic
        # auth a 401, and a login past its days is reported as `invalid_client: refresh token
        # invalid`. The policy says why (expired, or replaced by another login) and what to do.
        raise RefreshTokenRejected(f"Schwab refused the refresh token ({status} {error.label})")
    if status == 401:
        # invalid_client naming no refresh token, or no verdict at all (an HTML page, an empty
        # body): RFC 6749's 401 is the client's authentication failing, and Schwab's edge sends
        # its own refusals as 403. Retrying would fail the same way on every run, and a new
        # login needs the same key and secret, so name them.
        raise BadAppCredentials(
            f"Schwab rejected the app key or secret (401 {error.label}): check the app key and "
            "secret (SCHWAB_APP_KEY/SCHWAB_APP_SECRET or the credentials secret)"
        )
    if status == 400 and grant == "refresh_token":
        # No OAuth verdict on the refresh token (an edge's HTML page, an empty body, an error
        # nobody knows): the token may well be alive. Retry later and touch nothing.
        raise TemporaryFailure(
            f"Schwab's token endpoint answered 400 without a verdict on the refresh token "
            f"({error.label}); {_UNTOUCHED}"
        )
    if status == 400:
        raise CallbackError(
            f"Schwab refused the authorization code (400 {error.label}): a code works once and "
            "lives about 30 seconds; log in again and finish promptly"
        )
    if status in RETRY_STATUSES or status >= 500:
        kind = " (an HTML error page)" if answer.is_html else ""
        raise TemporaryFailure(
            f"Schwab's token endpoint answered {status}{kind} after {answer.tries}; {_UNTOUCHED}"
        )
    raise ConfigurationError(
        f"Schwab's token endpoint answered {status} ({error.label}); check SCHWAB_API_BASE "
        f"({answer.url.split('?')[0]})"
    )


def _token_answer(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_ANSWER_BYTES:
        raise InvalidTokenAnswer(
            f"Schwab answered 200 with more than {MAX_ANSWER_BYTES} bytes; {_UNTOUCHED}"
        )
    try:
        answer = strictjson.loads(body)
    except strictjson.NotJSON as exc:
        raise InvalidTokenAnswer(
            f"Schwab answered 200 with a body that is not JSON ({exc.reason}; a maintenance "
            f"page?); {_UNTOUCHED}"
        ) from None
    if not isinstance(answer, dict):
        raise InvalidTokenAnswer(
            f"Schwab answered 200 with JSON that is not an object; {_UNTOUCHED}"
        )
    return answer


class _Error(NamedTuple):
    """An error answer's OAuth ``error`` code(s), including the one Schwab nests inside its
    description; the description (``""`` if none); and how to name it in a message (only
    OAuth's short codes: a description could quote anything)."""

    codes: tuple[str, ...]
    description: str
    label: str

    @property
    def is_dead_token_verdict(self) -> bool:
        if _DEAD_TOKEN_CODES.intersection(self.codes):
            return True
        named = _NAMES_THE_REFRESH_TOKEN.search(self.description) is not None
        return "invalid_client" in self.codes and named


def _error(answer: Answer) -> _Error:
    try:
        body = strictjson.loads(answer.body[:MAX_ANSWER_BYTES])
    except strictjson.NotJSON:
        if answer.is_html:
            return _Error((), "", "an HTML error page")
        return _Error((), "", "no JSON body" if answer.body.strip() else "an empty body")
    if not isinstance(body, dict):
        return _Error((), "", "unexpected body")
    codes = [body["error"]] if isinstance(body.get("error"), str) else []
    description = body.get("error_description")
    if not isinstance(description, str):
        description = ""
    codes.extend(c for c in _NESTED_ERROR_CODE.findall(description) if c not in codes)
    shown = tuple(c for c in codes if is_error_code(c))
    return _Error(shown, description, " / ".join(shown) or "no code")
