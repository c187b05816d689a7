"""Which Schwab accounts a login linked, as a fingerprint that names no account number, and
whether two logins' fingerprints share an account."""

from __future__ import annotations

import base64
import hashlib
import hmac

from .. import strictjson
from ..errors import TemporaryFailure
from .http import MAX_ANSWER_BYTES

_KEY_LABEL = b"schwab-tokens account fingerprint v1"
#: How many of a login's accounts its notes keep (an overlap is looked for among those).
MAX_NOTED_ACCOUNTS = 8


def account_fingerprint(app_secret: str, account_numbers: bytes) -> str:
    """The fingerprint of the accounts in an ``accountNumbers`` answer: ``<key id>:<mac>...``.

    Each account number is MACed with a key derived from the app secret and cut to 24 bits
    (a plain hash could be reversed by trying every number); the key id tells a later login
    whether it can compare at all (``shares_accounts``). Raises ``TemporaryFailure`` when the
    answer lists no accounts.
    """
    try:
        body = strictjson.loads(account_numbers[:MAX_ANSWER_BYTES])
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
    key = hmac.new(app_secret.encode(), _KEY_LABEL, hashlib.sha256).digest()
    key_id = hashlib.sha256(key).hexdigest()[:8]
    # One MAC per account, not one for the set: Schwab lets the user pick the accounts at each
    # login, so two logins of one person may link different, overlapping sets. 24 bits: a
    # stranger's account matches one by chance with p = 2**-24.
    macs = sorted(
        {
            base64.urlsafe_b64encode(hmac.new(key, n.encode(), hashlib.sha256).digest()[:3])
            for n in numbers
        }
    )
    # The notes beside the token are small (a Secrets Manager label): at most this many.
    return f"{key_id}:{b'.'.join(macs[:MAX_NOTED_ACCOUNTS]).decode()}"


def shares_accounts(noted: str, current: str) -> bool | None:
    """Whether two logins' account fingerprints share an account, or None.

    None when they cannot be compared: MACed under another app secret, or a noted fingerprint
    that is one hash of the whole set rather than one MAC per account.
    """
    noted_key, _, noted_macs = noted.partition(":")
    key, _, macs = current.partition(":")
    if noted_key != key or not all(len(mac) == 4 for mac in noted_macs.split(".")):
        return None
    return bool(set(noted_macs.split(".")) & set(macs.split(".")))
