"""``schwab-tokens export``: the token in the form another client reads."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from ..errors import ConfigurationError, ExitCode, UsageError
from ..settings import Settings
from .common import err, out, store_url

NAME = "export"
HELP = "write the access token for another client: access view, schwab-py or Schwabdev"
#: Its --store may be an access view too; a consumer's own setting comes first (see ``run``).
STORE_DEFAULT = "$TOKEN_ACCESS_URL, then the access view of $TOKEN_STORE_URL, then of tokens.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        help="the file to write (created 0600, replaced atomically); default: standard output",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Reads the access view (of ``--store``, or ``TOKEN_ACCESS_URL``): an export never holds
    the refresh token, so no client built on it refreshes behind the refresher's back."""
    from ..exports import access_json, schwab_py_json, write_schwabdev
    from ..reader import TokenReader
    from ..stores import is_view_url, store_from_url

    # TOKEN_ACCESS_URL comes before TOKEN_STORE_URL; --store before both (as for every command).
    url = settings.access_url if args.store is None and settings.access_url else None
    url = url or store_url(args, settings)
    if not is_view_url(url):
        url = store_from_url(url, settings).view.url  # a token store's URL: its access view
    held = TokenReader(url, settings=settings).token()
    if args.format == "schwabdev":
        if not args.output:
            raise UsageError("--format schwabdev writes a SQLite database: give --output PATH")
        write_schwabdev(held, args.output)
        err(f"Schwabdev tokens database written to {args.output} (fingerprint {held.fingerprint})")
        return int(ExitCode.OK)
    data = access_json(held) if args.format == "access" else schwab_py_json(held)
    if not args.output:
        sys.stdout.buffer.write(data + b"\n")
        sys.stdout.flush()
        return int(ExitCode.OK)
    _write_private(Path(args.output).expanduser(), data + b"\n")
    out(f"{args.format} token written to {args.output} (fingerprint {held.fingerprint})")
    return int(ExitCode.OK)


def _write_private(target: Path, data: bytes) -> None:
    """Atomically, 0600: an access token is a secret for its 30 minutes."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ConfigurationError(f"cannot write {target} ({exc.strerror})") from None
