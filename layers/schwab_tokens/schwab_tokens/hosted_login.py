"""The hosted login: log in again from a phone through a one-time link.

Two routes under the login function's URL (``<LoginUrl>``):

- ``GET start?ticket=T``: checks the ticket (``tickets.py``), sets a ``__Host-`` cookie with a
  fresh nonce and sends the browser to Schwab's authorize page, with ``redirect_uri`` =
  ``<LoginUrl>callback`` and a ``state`` bound to that nonce and the ticket.
- ``GET callback?code=..&state=..``: checks the state against the cookie, exchanges the code,
  validates the answer like every token answer, checks that it links at least one of the
  accounts of the login before (MACs of its account numbers, noted at the previous login;
  Schwab lets the user pick accounts at each login, so a subset or another mix is fine, a
  login that shares none is refused), stores the token
  conditionally on the version it read (which spends the ticket: it names the login it
  replaces), and shows when the bots' login now ends.

Every failure shows a page that says what happened and what to do, and changes nothing. Any
other path is 404, and no answer tells whether a store or a token exists to someone without a
valid ticket. Whatever can be refused without the app credentials (a missing or malformed ticket,
state, cookie or code, an expired link, a sign-in over 15 minutes) is refused before they are
read: such a request costs no AWS call. Only a signature check needs them (its key derives from
the app secret), and the store is read only once it passed. No AWS here: the Lambda adapter is
``lambdas/login.py``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlencode

from . import pages, tickets
from .errors import (
    CallbackError,
    ConfigurationError,
    LoginRequired,
    SchwabTokensError,
    TemporaryFailure,
    WriteConflict,
)
from .login_flow import record_login
from .oauth import SchwabOAuth, shares_accounts
from .stores.base import TokenStore
from .token import Token

log = logging.getLogger(__name__)

COOKIE = "__Host-schwab-tokens-login"
#: Long enough to log in at Schwab (its code itself lives 30 s), short enough to be useless later.
COOKIE_SECONDS = tickets.SIGN_IN_SECONDS

App = Callable[[], tuple[SchwabOAuth, bytes]]
#: The query fields Schwab's redirect carries back to the callback.
_SCHWAB_FIELDS = ("code", "session", "state")


@dataclass(frozen=True)
class Page:
    """An HTTP answer: status, headers, cookies to set, HTML body."""

    status: int
    body: str = ""
    headers: Mapping[str, str] = field(default_factory=lambda: dict(pages.HEADERS))
    cookies: tuple[str, ...] = ()
    #: A short word for the log: what happened (never a secret).
    event: str = ""


def _page(status: int, event: str, title: str, *paragraphs: str, code: str | None = None) -> Page:
    return Page(status, pages.render(title, paragraphs, code=code), event=event)


NOT_FOUND = Page(404, pages.render("Not found", ["There is nothing here."]), event="not_found")
_NEW_LINK = (
    "Ask for a new link: wait for the next e-mail, or run `schwab-tokens login-link` on your "
    "computer."
)
_TICKET_PAGES = {
    "invalid": (403, "This login link is not valid", "It may have been cut short or altered."),
    "other_store": (403, "This login link is not valid", "It belongs to another service."),
    "expired": (410, "This login link has expired", "Links work for a limited time."),
    "slow": (
        410,
        "This sign-in took too long",
        "A sign-in must end within 15 minutes of opening the link; open the link again.",
    ),
}


class HostedLogin:
    """The phone login for one store.

    ``app`` gives the Schwab client and the ticket key; it reads the app credentials, so it is
    called only once a request needs them.
    """

    def __init__(
        self,
        store: TokenStore,
        app: App,
        login_url: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.app = app
        self.login_url = login_url if login_url.endswith("/") else login_url + "/"
        self.clock = clock

    @property
    def redirect_uri(self) -> str:
        """The callback address Schwab sends the browser back to."""
        return self.login_url + "callback"

    def handle(self, method: str, path: str, query: str, cookies: Sequence[str]) -> Page:
        """Answer one request (path relative to the function URL, raw query string).

        Never raises a ``SchwabTokensError``: an error is answered with its page.
        """
        route = {"/start": self.start, "/callback": self.callback}.get(path)
        # HEAD (link previews) may look at the start, never complete a login.
        allowed = ("GET", "HEAD") if path == "/start" else ("GET",)
        if route is None or method not in allowed:
            return NOT_FOUND
        try:
            params = _params(query)
        except ValueError:
            return _page(400, "bad_request", "This address is not complete", _NEW_LINK)
        try:
            return route(params, _cookie(cookies))
        except SchwabTokensError as exc:
            return failure_page(exc)

    # -- GET start ------------------------------------------------------------------------------
    def start(self, params: Mapping[str, str], nonce: str | None) -> Page:
        """``GET start?ticket=``: the redirect to Schwab's authorize page, or why not.

        A bad ticket is a page, not an exception. Raises what reading the credentials and the
        store raise (``ConfigurationError``, ``TemporaryFailure``); ``handle`` makes them pages.
        """
        del nonce  # a new login gets a new nonce, whatever the browser had
        ticket_text = params.get("ticket", "")
        now = self.clock()
        try:
            tickets.precheck(ticket_text, now)
            # Only the signature is left to check, and its key derives from the app secret:
            # the credentials read (the first AWS call) cannot come later than this.
            oauth, key = self.app()
            ticket = tickets.verify(key, ticket_text, self.store.url, now)
        except tickets.TicketError as exc:
            return _ticket_page(exc)
        refusal = self._replaceable(ticket)
        if isinstance(refusal, Page):
            return refusal
        fresh = tickets.new_nonce(self.clock())
        state = tickets.state_for(key, ticket_text, fresh)
        authorize, _ = oauth.authorize_url(self.redirect_uri, state)
        cookie = (
            f"{COOKIE}={fresh}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={COOKIE_SECONDS}"
        )
        return Page(
            302,
            headers={**pages.HEADERS, "Location": authorize},
            cookies=(cookie,),
            event="started",
        )

    # -- GET callback ---------------------------------------------------------------------------
    def callback(self, params: Mapping[str, str], nonce: str | None) -> Page:
        """``GET callback``: store the new login if Schwab's answer and the ticket allow it.

        Returns the page that says what happened. Raises the package's errors (a refused code,
        ``WriteConflict``, AWS failures); ``handle`` makes them pages.
        """
        state = params.get("state")
        if not tickets.looks_like_state(state):
            return self._paste_page(params)
        if params.get("error"):
            cancelled = params["error"] == "access_denied"
            return _page(
                400,
                "denied" if cancelled else "schwab_error",
                "Login cancelled" if cancelled else "Schwab did not complete the login",
                "Nothing changed. Open the login link again to log in.",
            )
        code = params.get("code")
        if not code:
            return _page(400, "no_code", "Schwab sent no code", "Nothing changed.", _NEW_LINK)
        now = self.clock()
        try:
            tickets.precheck_state(state or "", nonce, now)
            # As for the start: the signature, last, is the one check that needs the credentials.
            oauth, key = self.app()
            ticket = tickets.verify_state(key, state or "", nonce, self.store.url, now)
        except tickets.TicketError as exc:
            return _ticket_page(exc)
        expected = self._replaceable(ticket)
        if isinstance(expected, Page):
            return expected
        token = Token.from_login(oauth.exchange_code(code, self.redirect_uri), self.clock())
        account = oauth.account_fingerprint(token.access_token)
        shared = shares_accounts(expected, account)
        if shared is None:
            return _unchecked()  # noted under another app secret: nothing to compare with
        if not shared:
            # Schwab lets the user pick the accounts at each login: a subset, or another mix,
            # of the same person's accounts is fine; a login sharing none is someone else's.
            return _other_account()
        token = record_login(self.store, token, account, replaces=ticket.login)
        ends = time.strftime("%a %d %b %Y, %H:%M UTC", time.gmtime(token.refresh_expires_at))
        return Page(
            200,
            pages.render(
                "Logged in",
                [
                    f"Your bots keep working until {ends}.",
                    "You can close this page. You will get an e-mail before the next login is due.",
                ],
            ),
            cookies=(f"{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",),
            event="logged_in",
        )

    # -- checks --------------------------------------------------------------------------------
    def _replaceable(self, ticket: tickets.Ticket) -> str | Page:
        """The Schwab login (account fingerprint) noted for the stored token, if that token is
        still the login the ticket may replace; else the page that says why not."""
        try:
            current = self.store.read()
        except LoginRequired:
            return _used()
        if current.token.creation_timestamp != ticket.login:
            return _used()
        notes, _ = self.store.read_notes()
        account = notes.get("account")
        if notes.get("login") != ticket.login or not isinstance(account, str):
            return _unchecked()
        return account

    def _paste_page(self, params: Mapping[str, str]) -> Page:
        """A login started by ``schwab-tokens login --paste`` lands here: show the address."""
        # Only what Schwab sends back: the page never repeats anything else put in the address.
        fields = {name: value for name, value in params.items() if name in _SCHWAB_FIELDS}
        address = f"{self.redirect_uri}?{urlencode(fields)}"
        return _page(
            200,
            "paste",
            "Paste this address in your terminal",
            "This sign-in was started by `schwab-tokens login --paste`, not by a login link. "
            "Copy the whole address below and paste it into the terminal that is waiting; "
            "it works once, within about 30 seconds.",
            code=address,
        )


def _unchecked() -> Page:
    return _page(
        409,
        "unchecked",
        "Log in on your computer once",
        "This token's Schwab login was not noted (or was noted under another app secret), so a "
        "login from here could not be checked to be yours. Run `schwab-tokens login` on your "
        "computer once; after that, login links work.",
    )


def _other_account() -> Page:
    return _page(
        409,
        "other_account",
        "None of these accounts belong to this token's login",
        "The accounts you linked at Schwab just now share none with the login your bots "
        "use, so nothing changed: this is another Schwab user, or you linked only other "
        "accounts. Open the link again, log in with the usual Schwab user and link at "
        "least one account your bots trade. To move the token to other accounts on "
        "purpose, run `schwab-tokens login` on your computer.",
    )


def _used() -> Page:
    return _page(
        410,
        "used",
        "This login link was already used",
        "Someone (you, probably) already logged in with it, or you logged in another way since "
        "it was sent; the newer login is the one your bots use. If you still need to log in, "
        "ask for a new link.",
    )


def _ticket_page(exc: tickets.TicketError) -> Page:
    if exc.reason == "browser":
        return _page(
            400,
            "other_browser",
            "Open the link again in this browser",
            "This sign-in was started in another browser or tab (or the browser dropped its "
            "cookie). Nothing changed. Open the login link again here.",
        )
    status, title, why = _TICKET_PAGES.get(exc.reason, _TICKET_PAGES["invalid"])
    return _page(status, f"ticket_{exc.reason}", title, why + " Nothing changed.", _NEW_LINK)


def failure_page(exc: SchwabTokensError) -> Page:
    """The page for an error that ended a request: what happened, what to do."""
    if isinstance(exc, CallbackError):
        return _page(
            400,
            "code_refused",
            "Schwab did not accept the sign-in",
            "Schwab's code works once and for about 30 seconds. Nothing changed. Open the login "
            "link again and log in without pausing.",
        )
    if isinstance(exc, LoginRequired):  # another login was stored meanwhile
        return _used()
    if isinstance(exc, WriteConflict):
        return _page(
            409,
            "conflict",
            "The token changed during the login",
            "Nothing was overwritten. Open the login link again.",
        )
    if isinstance(exc, TemporaryFailure):
        return _page(
            503,
            "temporary",
            "Schwab or AWS is not answering",
            "Nothing changed. Try the link again in a few minutes.",
        )
    if isinstance(exc, ConfigurationError):
        log.error("hosted login is misconfigured: %s", exc)
        return _page(
            503,
            "misconfigured",
            "The login service is not set up",
            "It cannot read its app credentials or the token store. Nothing changed. Check the "
            "stack's credentials (schwab-tokens login --credentials-secret) and the login "
            "function's log.",
        )
    log.error("hosted login failed: %s", exc)
    return _page(500, "error", "Something went wrong", "Nothing changed. Try again later.")


def _params(query: str) -> dict[str, str]:
    """Query parameters; a repeated one is refused (``ValueError``)."""
    parsed = parse_qs(query or "", keep_blank_values=True, max_num_fields=20, strict_parsing=False)
    if any(len(values) > 1 for values in parsed.values()):
        raise ValueError("repeated parameter")
    return {name: values[0] for name, values in parsed.items()}


def _cookie(cookies: Sequence[str]) -> str | None:
    for item in cookies:
        for part in item.split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value:
                return value
    return None
