"""The app key and secret: stored where the stack says (read through ``credentials.py``, the
one reader of them), and readable by the refresher (asked of IAM's policy simulator)."""

from __future__ import annotations

from collections.abc import Mapping

from ..credentials import CredentialsNotFound, read_credentials
from ..errors import AccessDenied, ConfigurationError
from ..stores import TokenStore
from ..token import fingerprint
from .access import credentials_question, store_question, verdict
from .clients import Clients
from .report import Check, Fixes, Status, fail, ok
from .stack import Function


def stored(
    outputs: Mapping[str, str], store: TokenStore | None, fixes: Fixes, clients: Clients
) -> Check:
    """The stack's credentials hold an app key and secret (never printed: a fingerprint)."""
    name = outputs.get("CredentialsSecretName")
    if not name:
        return fail("credentials", "the stack has no CredentialsSecretName output")
    store_part = f" --store {store.url}" if store is not None else ""
    # The name is the stack's own output, not a user's typo: logging in with it creates it.
    fix = (
        f"schwab-tokens login --credentials-secret {name}{store_part}{fixes.region_flag} "
        "--app-key YOUR_APP_KEY (it asks for the app secret, then logs in)"
    )
    try:
        found = read_credentials(name, clients.region)
    except AccessDenied:
        return Check(
            "credentials",
            Status.WARN,
            f"this identity may not read {name} (the stack lets only its functions and "
            "AdministratorPrincipals read the app secret), so app_key and app_secret were "
            "not checked",
            "run doctor as an administrator to check them",
        )
    except CredentialsNotFound as exc:
        return fail("credentials", str(exc).partition(":")[0], fix)
    except ConfigurationError as exc:  # not JSON, or lacking a key or the secret
        return fail("credentials", str(exc).partition(": run")[0], fix)
    return ok(
        "credentials",
        f"{name} holds app_key and app_secret (app key fingerprint {fingerprint(found.app_key)})",
    )


def refresher_reads_them(outputs: Mapping[str, str], function: Function, clients: Clients) -> Check:
    """Whether the refresher is configured with the stack's credentials and may read them."""
    name = outputs.get("CredentialsSecretName") or ""
    variables = (function.get("Environment") or {}).get("Variables") or {}
    configured = str(variables.get("SCHWAB_CREDENTIALS_SECRET") or "")
    if configured != name:
        return fail(
            "refresher reads credentials",
            f"the refresher's SCHWAB_CREDENTIALS_SECRET is {configured or 'not set'}, not {name}",
            "deploy the stack again (sam deploy)",
        )
    role, arn = str(function.get("Role") or ""), str(function.get("FunctionArn") or "")
    return verdict(
        "refresher reads credentials",
        lambda: credentials_question(role, name, arn, clients),
        name,
        clients,
    )


def refresher_writes_store(store: TokenStore, function: Function, clients: Clients) -> Check:
    """IAM, with the store's resource policy, lets the refresher read and write its token."""
    role, arn = str(function.get("Role") or ""), str(function.get("FunctionArn") or "")
    return verdict(
        "refresher writes the store",
        lambda: store_question(role, store, arn, clients),
        store.url,
        clients,
    )
