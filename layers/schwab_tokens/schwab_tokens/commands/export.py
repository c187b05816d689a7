"""``schwab-tokens export``: the token in the form another client reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ExitCode, UsageError
from ..settings import Settings
from .common import err, out, store_url

if TYPE_CHECKING:
    from ..stores import TokenStore, View

NAME = "export"
HELP = "write the access token for another client: access view, schwab-py or Schwabdev"
#: Its --store may be an access view too; a consumer's own setting comes first (see ``run``).
STORE_DEFAULT = "$TOKEN_ACCESS_URL, then the access view of $TOKEN_STORE_URL, then of tokens.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``export`` to its subparser."""
    parser.add_argument(
        "--format",
        required=True,
        choices=("access", "schwab-py", "schwabdev"),
        help="access: the access view (JSON); schwab-py: its token file; schwabdev: its "
        "SQLite tokens database (needs --output)",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="the file to write: 0600, through a temporary file and a rename (a symlink there "
        "is refused), missing folders 0700; default: standard output",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Write the access view in the form another client reads; return 0.

    The view is read from ``--store`` or ``TOKEN_ACCESS_URL``: an export never holds the
    refresh token, so no client built on it refreshes behind the refresher's back.
    Raises ``SchwabTokensError`` (``UsageError`` for a bad flag), which ``main`` prints
    and exits with.
    """
    from ..exports import access_json, schwab_py_json, schwabdev_database
    from ..reader import TokenReader
    from ..stores import is_view_url, store_from_url
    from ..stores.file import user_path, write_private

    # TOKEN_ACCESS_URL comes before TOKEN_STORE_URL; --store before both (as for every command).
    url = settings.access_url if args.store is None and settings.access_url else None
    url = url or store_url(args, settings)
    if not is_view_url(url):
        url = store_from_url(url, settings).view.url  # a token store's URL: its access view
    reader = TokenReader(url, settings=settings)
    held = reader.token()
    if args.output:
        _refuse_the_stores_files(user_path(args.output), reader.store)
    if args.format == "schwabdev":
        if not args.output:
            raise UsageError("--format schwabdev writes a SQLite database: give --output PATH")
        write_private(user_path(args.output), schwabdev_database(held))
        err(f"Schwabdev tokens database written to {args.output} (fingerprint {held.fingerprint})")
        return int(ExitCode.OK)
    data = access_json(held) if args.format == "access" else schwab_py_json(held)
    if not args.output:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return int(ExitCode.OK)
    write_private(user_path(args.output), data + b"\n")
    out(f"{args.format} token written to {args.output} (fingerprint {held.fingerprint})")
    return int(ExitCode.OK)


def _refuse_the_stores_files(output: Path, source: TokenStore | View) -> None:
    """Raise ``UsageError`` if ``output`` is the file of the view read (``source``) or of the
    document it mirrors: an export written there would replace the login with a copy that
    cannot refresh."""
    from ..stores.file import FileView

    if not isinstance(source, FileView):
        return  # S3 or SSM: not a file an export could write over
    if output.resolve() in (source.path.resolve(), source.store.path.resolve()):
        raise UsageError(
            f"--output {output} is the token store's own file: the export would replace "
            "the login; write it anywhere else (e.g. --output token.json)"
        )
