"""``schwab-tokens import``: bring a schwab-py token file or a Schwabdev tokens.db into the store,
keeping its login, so a user switches without logging in again."""

from __future__ import annotations

import argparse

from ..errors import ExitCode
from ..settings import Settings
from ..stores import TokenStore
from ..timefmt import duration, minute, when
from .common import add_app_credentials, out, store, with_app

NAME = "import"
HELP = "bring a schwab-py token file or a Schwabdev tokens.db into the store, keeping its login"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``import`` to its subparser."""
    parser.add_argument(
        "path",
        metavar="PATH",
        help="schwab-py's token file (JSON) or Schwabdev 4's tokens.db (SQLite); only read",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace the store's login even if it is newer"
    )
    add_app_credentials(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Import a schwab-py or Schwabdev login into the store; return 0.

    With the app's key and secret known, the login is checked with one refresh before it is
    stored; without them it is stored as it is, and the output says so.
    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    from ..imports import SCHWABDEV, import_login

    target = store(args, settings)
    app = with_app(args, settings, prompt=True)
    oauth = None
    if (app.app_key and app.app_secret) or app.credentials_secret:
        from ..credentials import load_credentials
        from ..oauth import SchwabOAuth

        creds = load_credentials(app)
        oauth = SchwabOAuth.from_settings(creds.app_key, creds.app_secret, app)
    done = import_login(args.path, target, force=args.force, oauth=oauth)
    token = done.token
    if not done.written:
        out(
            f"{target.url} already holds this login (of {minute(token.creation_timestamp)}), "
            f"as fresh or fresher: nothing was written (fingerprint {token.fingerprint})."
        )
        return int(ExitCode.OK)
    out(
        f"Imported the {done.kind} login of {when(token.creation_timestamp)} from {args.path} "
        f"into {target.url} (fingerprint {token.fingerprint}); its refresh token dies in "
        f"{duration(token.refresh_seconds_left())} ({when(token.refresh_expires_at)})."
    )
    if done.replaced is not None:
        out(f"It replaced the login of {minute(done.replaced.creation_timestamp)}.")
    elif done.replaced_unreadable:
        out("It replaced a document that was not a token.")
    if done.checked:
        out(
            "Checked: Schwab refreshed it; the access token is valid for "
            f"{duration(token.access_seconds_left())}."
        )
    else:
        left = token.access_seconds_left()
        now = "has expired" if left <= 0 else f"is valid for {duration(left)}"
        out(
            "Not checked with Schwab: the app key and secret are not known here (set "
            "SCHWAB_APP_KEY and SCHWAB_APP_SECRET, or SCHWAB_CREDENTIALS_SECRET, to check it). "
            f"Its access token {now}; the next refresh renews it and is the check: "
            f"`schwab-tokens refresh --store {target.url}`."
        )
    _after(args.path, done.kind == SCHWABDEV, target)
    return int(ExitCode.OK)


def _after(path: str, schwabdev: bool, target: TokenStore) -> None:
    """What to do with the old file: its tool reads the store from now on."""
    from ..stores.file import FileStore

    url = target.url
    out("")
    if schwabdev:
        out(
            "Schwabdev now reads the store instead of refreshing its own file: in a long-running "
            "process, exports.SchwabdevTokens(TokenReader(...), PATH) keeps a database current; "
            f"for a script, `schwab-tokens export --format schwabdev --output PATH --store {url}`."
        )
    else:
        out(
            "schwab-py now reads the store instead of refreshing its own file: build the client "
            "with schwab.auth.client_from_access_functions(api_key, app_secret, "
            f'*TokenReader("{target.view.url}").access_functions()).'
        )
    out(
        f"Then delete {path}, or leave it unused: two refreshers of one login race, and when the "
        "old tool logs in again, Schwab (one login per app) ends the one in the store."
    )
    watch = f"`schwab-tokens watch --store {url}`"
    if isinstance(target, FileStore):
        out(f"Keep it fresh with {watch}: nothing else refreshes a file.")
    else:
        out(f"The stack's refresher keeps it fresh if this is its StoreUrl; otherwise run {watch}.")
