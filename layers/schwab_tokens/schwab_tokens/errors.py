"""One error family; each kind carries the CLI exit code of the contract.

The CLI and the handler read ``exit_code`` and ``outcome`` instead of mapping exception types,
so a new failure kind needs no change in either. Messages name the cause and the next step,
never a secret.
"""

from __future__ import annotations


class SchwabTokensError(Exception):
    """Base of every error this package raises on purpose."""

    exit_code = 1
    outcome = "failed"


class LoginRequired(SchwabTokensError):
    """No token, or the refresh token is dead: only a browser login fixes it."""

    exit_code = 3
    outcome = "reauth_required"


class TemporaryFailure(SchwabTokensError):
    """Network trouble, 5xx, 429, Schwab's HTML error page, AWS throttling: retry later."""

    exit_code = 4


class ConfigurationError(SchwabTokensError):
    """Something only the user can fix: wrong app key or secret, access denied, missing bucket."""

    exit_code = 5


class InvalidTokenDocument(ConfigurationError):
    """The stored document does not parse or lacks a field; it is never overwritten by a refresh."""


class BadAppCredentials(ConfigurationError):
    """Schwab answered 401 ``invalid_client``: the app key or secret is wrong."""


class CallbackError(LoginRequired):
    """The link returned by the authorize page cannot be used (no code, wrong state, denied)."""


class UsageError(SchwabTokensError):
    exit_code = 2


class WriteConflict(SchwabTokensError):
    """A conditional write lost: another writer stored a newer document since we read ours."""

    exit_code = 4


class LeaseBusy(TemporaryFailure):
    """Another writer holds the refresh lease and did not finish within our wait."""
