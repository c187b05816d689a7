"""The link the browser is sent back to after a Schwab login: its authorization code, or why
it cannot be used."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from ..errors import CallbackError, UnusableLink
from .answers import is_error_code

MAX_LINK_LENGTH = 4096


def parse_callback(link: str, expected_state: str | None) -> str:
    """The authorization code from the link the browser was sent to.

    Raises ``UnusableLink`` when the link is not this login's answer (another link may follow;
    a link without ``code`` included), and a plain ``CallbackError`` for Schwab's own
    ``error=`` verdict.
    """
    if not isinstance(link, str):
        raise UnusableLink("the returned link must be text")
    link = link.strip()
    if not link:
        raise UnusableLink("no link was given: paste the whole address the browser was sent to")
    if len(link) > MAX_LINK_LENGTH:
        raise UnusableLink(f"the returned link is longer than {MAX_LINK_LENGTH} characters")
    try:
        query = urlsplit(link).query
        params = parse_qs(query, keep_blank_values=True, max_num_fields=50)
    except ValueError:
        raise UnusableLink(
            "the returned link cannot be parsed: paste the whole address the browser was sent to"
        ) from None
    state = _single(params, "state")
    if expected_state is not None and state is not None and state != expected_state:
        raise UnusableLink(
            "the returned link's state does not match this login (an old or foreign link): use "
            "the address the browser reached from this login's Schwab address"
        )
    error = _single(params, "error")
    if error is not None:
        shown = error if is_error_code(error) else "unknown error"
        hint = (
            "the login was cancelled or access was not granted"
            if shown == "access_denied"
            else "Schwab did not complete the login"
        )
        raise CallbackError(f"{hint} ({shown}); run `schwab-tokens login` again")
    code = _single(params, "code")
    if not code:
        raise UnusableLink(
            "the returned link has no code= parameter: paste the full address of the page the "
            "browser landed on after the Schwab login (it starts with your callback URL)"
        )
    if expected_state is not None and state is None:
        raise UnusableLink(
            "the returned link has no state= parameter, so it cannot be matched to this login: "
            "paste the whole address the browser was sent to"
        )
    return code


def _single(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise UnusableLink(f"the returned link carries {name}= more than once")
    return values[0]
