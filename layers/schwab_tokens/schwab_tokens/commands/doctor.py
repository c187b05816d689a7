"""``schwab-tokens doctor``: whether the setup works, item by item, and the fix for each problem."""

from __future__ import annotations

import argparse
import json

from ..settings import Settings
from .common import out, store_url

NAME = "doctor"
HELP = "check the token (and with --stack, the deployment) item by item, with the fix for each"
DESCRIPTION = """\
Check the token (and with --stack, the deployment) item by item, with the fix for each problem.

The token (--store, else the stack's StoreUrl output, else $TOKEN_STORE_URL, then tokens.json):
it is readable, the access token's and the login's time left, and the access view beside it
mirrors it. With --stack NAME, from the CloudFormation stack's outputs: its status, the app
credentials and the refresher's access to them, the schedule, a confirmed subscription to the
notifications topic, the refresher's recent failures, and the hosted login's URL if enabled.

One line per check, then a summary:
  ok    NAME: what was found
  warn  NAME: works now, needs doing soon; the fix (a login due within 24 hours: exit 0)
  skip  NAME: does not apply (e.g. the hosted login when it is disabled)
  FAIL  NAME: the problem; the fix
  ERROR NAME: AWS did not answer, so it could not be checked

The exit code, first that applies: 3 when the login is the problem (no token, a dead refresh
token, or the refresher found the login over: log in first, whatever else fails); 5 when any
other check failed; 4 when a check could not run (temporary AWS failure); else 0."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``doctor`` to its subparser."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="the CloudFormation stack to check as well; its StoreUrl is the store unless "
        "--store is given",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help='print one JSON object: {"checks": [{"name", "ok", "status", "detail", "fix"}], '
        '"exit_code", "summary"}',
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run ``doctor`` and print its report; return the report's exit code.

    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    from ..diagnosis import diagnose

    # With --stack and no --store, the stack's StoreUrl output (None here) is the store.
    url = None if args.stack and args.store is None else store_url(args, settings)
    report = diagnose(settings, store_url=url, stack_name=args.stack, region=args.region)
    if args.json:
        out(json.dumps(report.to_dict()))
    else:
        for line in report.lines():
            out(line)
    return report.exit_code
