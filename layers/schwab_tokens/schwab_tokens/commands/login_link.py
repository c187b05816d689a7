"""``schwab-tokens login-link``: a one-time link that logs in again from a phone."""

from __future__ import annotations

import argparse
import time

from ..errors import ExitCode, UsageError
from ..settings import Settings
from ..timefmt import when
from .common import add_app_credentials, err, out, store, with_app

NAME = "login-link"
HELP = "print a one-time link that logs in again from a phone (HostedLogin)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``login-link`` to its subparser."""
    add_app_credentials(parser)
    parser.add_argument(
        "--login-url", help="the stack's LoginUrl output (default: $SCHWAB_LOGIN_URL)"
    )
    parser.add_argument(
        "--valid", default="24h", help="how long the link works (up to 72h; default 24h)"
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print a one-time login link for ``--store``'s login; return 0.

    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    from ..credentials import load_credentials
    from ..settings import api_base
    from ..tickets import mint, parse_duration, ticket_key

    login_url = args.login_url or settings.login_url
    if not login_url:
        raise UsageError(
            "name the hosted login's URL with --login-url or SCHWAB_LOGIN_URL (the stack's "
            "LoginUrl output, with HostedLogin=Enabled)"
        )
    login_url = api_base(login_url, "--login-url")
    try:
        valid = parse_duration(args.valid)
    except ValueError as exc:
        raise UsageError(f"--valid: {exc}") from None
    target = store(args, settings)
    token = target.read().token
    creds = load_credentials(with_app(args, settings, prompt=False))
    now = time.time()
    ticket = mint(ticket_key(creds.app_secret), target.url, token.creation_timestamp, now, valid)
    out(f"{login_url}/start?ticket={ticket}")
    err(
        f"The link logs in again to {target.url} once, until {when(now + valid)}; only the "
        "Schwab user of the current login can complete it."
    )
    return int(ExitCode.OK)
