"""The access view consumers read (``TOKEN_ACCESS_URL``): it mirrors the stored token."""

from __future__ import annotations

from ..access import AccessView
from ..errors import InvalidTokenDocument
from ..stores import TokenStore
from ..token import Token
from .report import Check, Fixes, fail, ok


def access_view(store: TokenStore, token: Token, fixes: Fixes) -> Check:
    """Whether the view mirrors ``token`` (what a refresh repairs when it does not)."""
    view = store.view
    wanted = AccessView.from_token(token)
    current, version = view.current()
    refresh = fixes.refresh(store.url)
    if current is not None and current.covers(wanted) and current.order() == wanted.order():
        return ok("access view", f"{view.url} mirrors the token")
    if current is None and version is None:
        return fail(
            "access view",
            f"no access view at {view.url}, so consumers (TOKEN_ACCESS_URL) find no token",
            refresh,
        )
    if current is None:
        return fail("access view", f"{view.url} is unusable: {_unusable(store)}", refresh)
    if current.order() < wanted.order():
        return fail(
            "access view",
            f"{view.url} holds an older access token (fingerprint {current.fingerprint}) "
            f"than the store ({wanted.fingerprint})",
            refresh,
        )
    if current.order() > wanted.order():
        # A refresh never moves a view back to an older token; a new login is newer than both.
        return fail(
            "access view",
            f"{view.url} holds a newer token (fingerprint {current.fingerprint}) than the "
            f"store ({wanted.fingerprint}): was the store restored from a backup?",
            fixes.login(store.url),
        )
    return fail(
        "access view",
        f"{view.url} does not match the token (fingerprint {current.fingerprint}, "
        f"not {wanted.fingerprint})",
        refresh,
    )


def _unusable(store: TokenStore) -> str:
    try:
        AccessView.parse(store.view.read_raw().raw, source=store.view.url)
    except InvalidTokenDocument as exc:
        return str(exc)
    return "encrypted with the bucket's key, which consumers may not use"
