"""Example consumer: a Lambda of yours that reads the access token through the schwab-tokens layer.

It reads the *access view* the stack keeps beside the token (``TOKEN_ACCESS_URL``, the stack's
``AccessTokenUrl`` output): the access token, its expiry and a fingerprint, never the refresh
token. Its role holds only the reader policy (``ReaderPolicyArn``), which grants that view and
nothing else, so a leaked role yields at most 30 minutes of API access. The refresher keeps the
view fresh; a consumer never refreshes.

The reader lives at module level so a warm container answers from memory (no AWS call) until
the access token nears expiry. With schwab-py, pass ``*READER.access_functions()`` to
``schwab.auth.client_from_access_functions``: its client then takes each new access token from
the view and never tries a refresh of its own.
"""

from typing import Any

from schwab_tokens import TokenReader

# TOKEN_ACCESS_URL (the view); a bot that refreshes itself would set TOKEN_STORE_URL instead and
# hold the stack's TokenDocumentPolicyArn.
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
