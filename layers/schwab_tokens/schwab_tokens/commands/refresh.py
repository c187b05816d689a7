"""``schwab-tokens refresh``: one run of the refresh policy per token."""

from __future__ import annotations

import argparse
import json

from ..errors import most_urgent
from ..settings import Settings
from .common import add_app_credentials, add_manifest, add_margin, out, refresh_targets, report

NAME = "refresh"
HELP = "refresh the token if it is due (or --force)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``refresh`` to its subparser."""
    add_manifest(parser)
    add_app_credentials(parser)
    parser.add_argument("--force", action="store_true", help="refresh even if still fresh")
    add_margin(parser)
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh every token once and report each; return the most urgent exit code.

    A token's failure is reported, not raised. Raises ``SchwabTokensError`` (``UsageError``
    for a bad flag), which ``main`` prints and exits with.
    """
    results = refresh_targets(args, settings, force=args.force)
    for target, result in results:
        if args.json:
            out(json.dumps({"token": target.name, **result.to_dict()}))
        else:
            report(result)
    return most_urgent(result.exit_code for _, result in results)
