"""``schwab-tokens login``: log in once in a browser and store the first token."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import AccessDenied, ConfigurationError, ExitCode
from ..settings import Settings
from ..timefmt import when
from .common import add_app_credentials, err, out, store, with_app

if TYPE_CHECKING:
    from ..credentials import AppCredentials
    from ..token import Token

NAME = "login"
HELP = "log in once in a browser and store the first token"
LOGIN_TIMEOUT_SECONDS = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``login``'s flags to its subcommand's parser; raises nothing."""
    add_app_credentials(parser)
    parser.add_argument(
        "--callback-url",
        help="the app's registered callback "
        "(default: $SCHWAB_CALLBACK_URL, then https://127.0.0.1:8182)",
    )
    parser.add_argument(
        "--paste",
        action="store_true",
        help="print the authorize URL and read the returned link from stdin (any https callback)",
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Log in through Schwab's authorize page and store the first token; returns 0.

    With ``--credentials-secret`` and a key and secret given, store those too once Schwab took
    them. Raises the package's errors (a bad flag or callback URL, a store that cannot take the
    token, no app credentials, a login that was refused, cancelled or not completed in time),
    each with its exit code; the store is changed only by a login that succeeded.
    """
    from ..login_flow import DEFAULT_CALLBACK_URL, check_callback_url, complete_login
    from ..oauth import SchwabOAuth

    target = store(args, settings)
    if args.credentials_secret:
        from ..credentials import check_name

        check_name(args.credentials_secret)  # now: they are stored only after the login
    creds, given = _credentials(args, settings)
    callback = check_callback_url(
        args.callback_url or creds.callback_url or DEFAULT_CALLBACK_URL, listen=not args.paste
    )
    # Before the user goes to Schwab: a login that cannot be stored must not spend the code.
    target.preflight()
    oauth = SchwabOAuth.from_settings(creds.app_key, creds.app_secret, settings)
    authorize_url, state = oauth.authorize_url(callback)

    def handle(link: str) -> Token:
        return complete_login(oauth, target, link, state, callback)

    if args.paste:
        token = _pasted_login(authorize_url, callback, handle)
    else:
        token = _listened_login(authorize_url, callback, state, handle, not args.no_browser)
    out(
        f"Logged in: token stored in {target.url} (fingerprint {token.fingerprint}); the refresh "
        f"token lasts until {when(token.refresh_expires_at)}."
    )
    if args.credentials_secret and given:
        # Only after Schwab accepted them: a typo must not replace working credentials.
        _keep_credentials(args.credentials_secret, creds, callback, settings)
    return int(ExitCode.OK)


def _pasted_login(authorize_url: str, callback: str, handle: Callable[[str], Token]) -> Token:
    """The token from the returned address the user pastes (``--paste``: any https callback)."""
    from ..listener import LinkQueue, listen_for_login

    links = LinkQueue()
    out("Open this address in a browser, log in to Schwab and approve the app:")
    out(authorize_url)
    out(
        "Then paste here the whole address the browser was sent to (it starts with "
        f"{callback}; Ctrl-D cancels):"
    )
    links.feed_lines(sys.stdin)
    return listen_for_login(links, handle, None, err)


def _listened_login(
    authorize_url: str,
    callback: str,
    state: str,
    handle: Callable[[str], Token],
    open_browser: bool,
) -> Token:
    """The token from Schwab's redirect to the HTTPS listener on ``callback``, or from the
    address the user pastes, whichever comes first, within ``LOGIN_TIMEOUT_SECONDS``."""
    from ..listener import CallbackListener, listen_for_login

    with CallbackListener(callback, state) as listener:
        out(
            f"Listening on {callback} for Schwab's redirect (the browser will warn about "
            "a self-signed certificate: that is this listener)."
        )
        out("Open this address in a browser, log in to Schwab and approve the app:")
        out(authorize_url)
        out("Or paste here the address the browser was sent to (Ctrl-D cancels).")
        # Ctrl-D at a terminal cancels; an input that is over from the start (nohup, a job's
        # </dev/null) must not cancel a login whose redirect the listener still waits for.
        listener.feed_lines(sys.stdin, end_cancels=sys.stdin.isatty())
        if open_browser:
            import webbrowser

            webbrowser.open(authorize_url)
        return listen_for_login(listener, handle, LOGIN_TIMEOUT_SECONDS, err)


def _keep_credentials(name: str, creds: AppCredentials, callback: str, settings: Settings) -> None:
    """Store the app key and secret, with the callback that worked, in the secret ``name``."""
    from ..credentials import AppCredentials, store_credentials

    store_credentials(
        name, AppCredentials(creds.app_key, creds.app_secret, callback), settings.region
    )
    out(f"App key and secret stored in {name}.")


def _credentials(args: argparse.Namespace, settings: Settings) -> tuple[AppCredentials, bool]:
    """The app key and secret, and whether the user gave them (environment, --app-key, the
    prompt) rather than ``--credentials-secret`` holding them already.

    Given ones win, and are stored in ``--credentials-secret`` after the login. Otherwise the
    secret (or ``SCHWAB_CREDENTIALS_SECRET``) is read, so the command the e-mails print works
    on a laptop that has only AWS credentials."""
    from ..credentials import CredentialsNotFound, load_credentials, read_credentials

    name = args.credentials_secret
    mine = with_app(args, settings, prompt=False)
    if mine.app_key and mine.app_secret:
        return load_credentials(mine), True
    if not name:
        # A secret named only in the environment is read, never written: no prompt for it.
        prompted = with_app(args, settings, prompt=not settings.credentials_secret)
        return load_credentials(prompted), bool(prompted.app_key and prompted.app_secret)
    try:
        return read_credentials(name, settings.region), False
    except AccessDenied:
        raise
    except ConfigurationError as exc:  # not there yet, or not a key and secret
        problem = exc
    prompted = with_app(args, settings, prompt=True)
    if prompted.app_key and prompted.app_secret:
        return load_credentials(prompted), True
    if isinstance(problem, CredentialsNotFound):
        raise problem  # it names the typo and says when a login creates it
    raise ConfigurationError(
        f"{problem}; to store them there, set SCHWAB_APP_KEY and SCHWAB_APP_SECRET (or give "
        "--app-key in a terminal and type the secret when asked) and run this again"
    )
