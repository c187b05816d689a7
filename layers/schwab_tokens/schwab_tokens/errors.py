"""One error family and one outcome vocabulary; each error kind carries its exit code and outcome.

The CLI and the handlers read ``exit_code`` and ``outcome`` instead of mapping exception types,
so a new failure kind needs no change in either. Messages name the cause and the next step,
never a secret.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum


class Outcome(StrEnum):
    """How one run of the refresh policy ended for one token (logs, metrics, CLI, summaries)."""

    REFRESHED = "refreshed"
    STILL_FRESH = "still_fresh"
    REAUTH_REQUIRED = "reauth_required"
    FAILED = "failed"


class ExitCode(IntEnum):
    """The CLI's exit codes (the public contract)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    LOGIN_REQUIRED = 3
    TEMPORARY = 4
    CONFIGURATION = 5
    #: Stopped by SIGINT (Ctrl-C), as shells report 128 + SIGINT.
    INTERRUPTED = 130


#: With several tokens, the code that asks the most of a person comes first: a login, then a
#: setting to fix, a command line to correct, a bug to report; waiting comes last.
URGENCY = (
    ExitCode.LOGIN_REQUIRED,
    ExitCode.CONFIGURATION,
    ExitCode.USAGE,
    ExitCode.UNEXPECTED,
    ExitCode.TEMPORARY,
    ExitCode.OK,
)


def most_urgent(codes: Iterable[int]) -> int:
    """The most urgent of ``codes`` by ``URGENCY`` (0 for none); an unknown code comes first."""
    rank = {int(code): place for place, code in enumerate(URGENCY)}
    return min(codes, key=lambda code: rank.get(int(code), -1), default=int(ExitCode.OK))


class SchwabTokensError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = ExitCode.UNEXPECTED
    outcome = Outcome.FAILED


class UnexpectedError(SchwabTokensError):
    """A bug or an exception nobody anticipated.

    Only the exception's kind is shown: its text could quote a request.
    """

    @classmethod
    def wrap(cls, exc: BaseException) -> UnexpectedError:
        """Return an ``UnexpectedError`` that names ``exc``'s type, never its text."""
        return cls(f"unexpected error ({type(exc).__name__}); please report it")


class LoginRequired(SchwabTokensError):
    """No token, or the refresh token is dead: only a browser login fixes it."""

    exit_code = ExitCode.LOGIN_REQUIRED
    outcome = Outcome.REAUTH_REQUIRED


class RefreshTokenRejected(LoginRequired):
    """Schwab's OAuth verdict on the refresh token: dead, expired, revoked or superseded."""


class LoginReplaced(RefreshTokenRejected):
    """The refresh token was refused while its login had days left.

    Schwab keeps one login per app, so another login to the same app (another tool, a second
    ``login``) ended this one.
    """


class CallbackError(LoginRequired):
    """The link returned by the authorize page cannot be used (no code, wrong state, denied)."""


class UnusableLink(CallbackError):
    """The link is not this login's answer from Schwab: another login's state, no code, no URL.

    A mistake in what was pasted, not Schwab's verdict, so another link may still work.
    """


class TemporaryFailure(SchwabTokensError):
    """Network trouble, 5xx, 429, Schwab's HTML error page, AWS throttling: retry later."""

    exit_code = ExitCode.TEMPORARY


class InvalidTokenAnswer(TemporaryFailure):
    """Schwab answered 200 with something that is not a usable token; nothing was stored."""


class WriteConflict(TemporaryFailure):
    """A conditional write lost: another writer stored a document since we read ours."""


class LeaseBusy(TemporaryFailure):
    """Another writer holds the refresh lease and did not finish within our wait."""


class LeaseLost(TemporaryFailure):
    """Our lease ran out before the work under it was done; nothing more was sent or written."""


class ConfigurationError(SchwabTokensError):
    """Something only the user can fix: wrong app key or secret, access denied, missing bucket."""

    exit_code = ExitCode.CONFIGURATION


class InvalidTokenDocument(ConfigurationError):
    """The stored document does not parse or lacks a field; a refresh never overwrites it."""


class MisplacedDocument(InvalidTokenDocument):
    """A whole token document, refresh token included, where only the access view belongs.

    The access view is where bots and the reader policy read: the store is misconfigured.
    """


class BadAppCredentials(ConfigurationError):
    """Schwab answered 401 ``invalid_client``: the app key or secret is wrong."""


class AccessDenied(ConfigurationError):
    """AWS (or the file system) refused an action: the role or user lacks a permission."""


class NotesTooLarge(SchwabTokensError):
    """Notes larger than every store can keep (``stores.base.MAX_NOTES_BYTES``).

    A bug, refused before any store is called.
    """


class UsageError(SchwabTokensError):
    """A flag, a setting or an argument is not of the form it must have."""

    exit_code = ExitCode.USAGE
