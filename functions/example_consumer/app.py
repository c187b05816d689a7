"""Example consumer: a Lambda of yours that reads the token through the schwab-tokens layer.

The reader lives at module level so a warm container answers from memory (no AWS call) until
the access token nears expiry. With schwab-py, pass ``*READER.access_functions()`` to
``schwab.auth.client_from_access_functions``.
"""

from typing import Any

from schwab_tokens import TokenReader

READER = TokenReader.from_env()


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    token = READER.token()
    # A real bot would now call the Trader API with
    # {"Authorization": f"Bearer {READER.access_token()}"}; the example only reports.
    return {
        "fingerprint": token.fingerprint,
        "access_seconds_left": round(token.access_seconds_left()),
        "refresh_hours_left": round(token.refresh_seconds_left() / 3600, 1),
    }
