"""``schwab-tokens``: the command line, one module per command (``commands/<name>.py``).

Each command module offers ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args, settings) -> exit code`` (and ``STORE_DEFAULT``, if its ``--store`` defaults to
something else than every command's); this package builds the parser from them and maps the
package's errors onto the exit codes of the contract (``errors.ExitCode``): 0 ok, 1 unexpected,
2 usage, 3 login required, 4 temporary failure, 5 store or configuration problem, 130 stopped by
Ctrl-C. Output never carries a token, a code or the app secret: at most a short fingerprint. The
app secret is never a flag (every local user can read a process's arguments): it comes from the
environment, the credentials secret, or a hidden prompt.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from .. import __version__
from ..errors import ExitCode, SchwabTokensError, UnexpectedError, UsageError
from ..settings import Settings
from ..stores import FORMS
from . import alerts, doctor, export, import_tokens, login, login_link, refresh, status, watch
from .common import err

#: In the order ``--help`` lists them.
COMMANDS: tuple[ModuleType, ...] = (
    login,
    login_link,
    import_tokens,
    refresh,
    status,
    watch,
    export,
    doctor,
    alerts,
)

EPILOG = """\
exit codes:
  0    ok
  1    unexpected error (set SCHWAB_TOKENS_DEBUG=1 for the traceback)
  2    usage: a flag, setting, manifest or store URL is not of its form, or a flag is unknown
  3    login required: no token, the refresh token dead or expired, or a login cancelled
  4    temporary failure left after retries (network, Schwab 5xx/429, AWS throttling)
  5    store or configuration problem (corrupt document, access denied, wrong app key/secret)
  130  stopped by Ctrl-C (SIGINT); `watch` exits 0 on SIGTERM

environment:
  TOKEN_STORE_URL            the store (default tokens.json); without --store, refresh, status
                             and watch take all of TOKEN_MANIFEST or TOKEN_STORE_URLS if set
  TOKEN_ACCESS_URL           the access view export reads (default: the store's)
  SCHWAB_APP_KEY             the Schwab app's key
  SCHWAB_APP_SECRET          the app's secret (never a flag)
  SCHWAB_CREDENTIALS_SECRET  a Secrets Manager secret NAME or ssm:/PARAMETER holding both
  SCHWAB_CALLBACK_URL        the app's registered callback (default https://127.0.0.1:8182)
  SCHWAB_API_BASE            default https://api.schwabapi.com (https, or http to 127.0.0.1)
  SCHWAB_LOGIN_URL           the hosted login's URL (the stack's LoginUrl output)
  REFRESH_MARGIN_SECONDS     refresh below this many seconds left (0-900, default 900)
  SCHWAB_HTTP_TIMEOUT        read timeout per try (default 15), SCHWAB_HTTP_RETRIES (0-10, 3)
  SCHWAB_TOKENS_LEASE_TTL    single-flight lease lifetime in seconds (default 120)
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL...  as boto3 reads them
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on ``argv`` (default: ``sys.argv``); return the exit code.

    Errors are printed, never raised: each ``SchwabTokensError`` exits with its own code.
    argparse exits (``SystemExit``) with 2 on a usage error, and 0 after ``--help``.
    """
    args = parser().parse_args(argv)
    debug = False
    try:
        settings = Settings.from_env().with_(region=_region(args.region))
        debug = settings.debug
        return int(args.command(args, settings))
    except SchwabTokensError as exc:
        err(f"error: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        err("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        err(f"error: {UnexpectedError.wrap(exc)}; set SCHWAB_TOKENS_DEBUG=1 to see the traceback")
        return int(ExitCode.UNEXPECTED)


_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")


def _region(region: str | None) -> str | None:
    """``--region``: the AWS region of the store and the credentials (passed to every client,
    whatever the profile's default), checked to be a region's name."""
    if region is not None and not _REGION.fullmatch(region):
        raise UsageError(f"--region must be an AWS region such as us-east-1, not {region[:40]!r}")
    return region


class _Parser(argparse.ArgumentParser):
    """argparse, exiting with the contract's usage code (2) and a hint to --help."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        err(f"{self.prog}: error: {message} (see --help)")
        raise SystemExit(int(ExitCode.USAGE))


class _TopParser(_Parser):
    """The top level. argparse hands a subcommand's unknown flags up to the top and checks the
    required COMMAND before them, so ``schwab-tokens --bogus`` would only say that a command is
    missing: here an unknown flag is named first, with the usage of the command it was given
    to."""

    commands: dict[str, argparse.ArgumentParser]

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: None = None
    ) -> argparse.Namespace:
        parsed, unknown = self.parse_known_args(args, namespace)
        command = self.commands.get(parsed.name) if parsed.name else None
        if unknown:
            (command or self).error(f"unrecognized arguments: {' '.join(unknown)}")
        if command is None:
            self.error(f"name a command: {', '.join(self.commands)}")
        return parsed


def parser() -> argparse.ArgumentParser:
    """The whole command line (also what the docs test parses every documented command with)."""
    top = _TopParser(
        prog="schwab-tokens",
        description="Keep a Charles Schwab API token fresh in a file, S3 or Secrets Manager.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    top.add_argument("--version", action="version", version=f"schwab-tokens {__version__}")
    # Not required=True: _TopParser checks it, after naming any unknown flag.
    subparsers = top.add_subparsers(dest="name", metavar="COMMAND")
    top.commands = {}
    for module in COMMANDS:
        sub = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        top.commands[module.NAME] = sub
        sub.set_defaults(command=module.run)
        default = getattr(module, "STORE_DEFAULT", "$TOKEN_STORE_URL, then tokens.json")
        sub.add_argument("--store", help=f"{FORMS} (default: {default})")
        sub.add_argument(
            "--region", help="the AWS region of the store and credentials (default: boto3's)"
        )
        module.add_arguments(sub)
    return top


__all__ = ["COMMANDS", "main", "parser"]
