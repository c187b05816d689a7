"""``schwab-tokens status``: the token's expiries and health."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import ExitCode, SchwabTokensError, most_urgent
from ..settings import Settings
from ..timefmt import duration, when
from .common import add_manifest, out, several, store, targets

NAME = "status"
HELP = "show the token's expiry and health"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``status`` to its subparser."""
    add_manifest(parser)
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON: one object (a list of them with several tokens)",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Print each token's expiries and health; return the most urgent exit code (3: login over).

    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    from ..health import describe, describe_all, failure_row

    if several(args, settings):
        rows = describe_all(targets(args, settings), settings)
        if args.json:
            out(json.dumps(rows))
        else:
            for line in _table(rows):
                out(line)
        return most_urgent(int(row["exit_code"]) for row in rows)
    target = store(args, settings)
    try:
        status = describe(target)
    except SchwabTokensError as exc:
        if not args.json:
            raise
        # Scripts always get one JSON object, "no token" and a corrupt store included.
        out(json.dumps(failure_row(target.url, exc, settings)))
        return int(exc.exit_code)
    if args.json:
        out(json.dumps(status))
    else:
        for label, value in _lines(status):
            out(f"{label + ':':<16}{value}")
    return int(ExitCode.LOGIN_REQUIRED if status["login_required"] else ExitCode.OK)


#: What ``status`` says of a login that is over, by ``login_required_reason``.
_OVER = {
    "expired": "OVER: its 7 days have ended",
    "replaced": "OVER: Schwab refused it although it had days left (another login to this app "
    "replaced it)",
    "refused": "OVER: Schwab refused it",
}


def _table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'token':<16}{'access token':<20}{'refresh token':<22}{'healthy':<9}fingerprint"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['token']:<16}{row['outcome']}: {row['error']}")
            continue
        access = row["access_seconds_left"]
        refresh = row["refresh_seconds_left"]
        lines.append(
            f"{row['token']:<16}"
            f"{(duration(access) if access > 0 else 'expired'):<20}"
            f"{(duration(refresh) if not row['login_required'] else 'OVER: log in'):<22}"
            f"{('yes' if row['healthy'] else 'no'):<9}{row['fingerprint']}"
        )
    return lines


def _lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    access = status["access_seconds_left"]
    refresh = status["refresh_seconds_left"]
    last = status["last_refresh"]
    return [
        ("store", status["store"]),
        ("access view", status["access_url"]),
        (
            "logged in",
            f"{when(status['creation_timestamp'])} ({duration(status['age_seconds'])} ago)",
        ),
        ("last write", when(last) if last else "unknown"),
        (
            "access token",
            f"expires in {duration(access)}"
            if access > 0
            else f"expired {duration(-access)} ago (the next refresh renews it)",
        ),
        (
            "refresh token",
            f"dies in {duration(refresh)} ({when(status['refresh_expires_at'])})"
            if not status["login_required"]
            else f"{_OVER[status['login_required_reason']]}: log in again with "
            f"`schwab-tokens login --store {status['store']}`",
        ),
        ("fingerprint", status["fingerprint"]),
        ("healthy", "yes" if status["healthy"] else "no"),
    ]
