"""Schwab's OAuth 2 endpoints, by job: ``client`` (``SchwabOAuth``: authorize URL, code
exchange, refresh, accounts), ``http`` (retries within a deadline per call), ``answers`` (what
a token answer means), ``callback`` (the returned link) and ``accounts`` (account fingerprints).
"""

from __future__ import annotations

from .accounts import MAX_NOTED_ACCOUNTS, shares_accounts
from .callback import MAX_LINK_LENGTH, parse_callback
from .client import ACCOUNT_NUMBERS_PATH, AUTHORIZE_PATH, TOKEN_PATH, SchwabOAuth
from .http import MAX_ANSWER_BYTES, RETRY_STATUSES

__all__ = [
    "ACCOUNT_NUMBERS_PATH",
    "AUTHORIZE_PATH",
    "MAX_ANSWER_BYTES",
    "MAX_LINK_LENGTH",
    "MAX_NOTED_ACCOUNTS",
    "RETRY_STATUSES",
    "TOKEN_PATH",
    "SchwabOAuth",
    "parse_callback",
    "shares_accounts",
]
