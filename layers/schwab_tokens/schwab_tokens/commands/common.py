"""What several commands share: which store or tokens, the app settings, the printing."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from ..manifest import Target, default_name, load_manifest, targets_from_settings
from ..settings import MARGIN, Settings
from ..stores import DEFAULT_STORE_URL, TokenStore, store_from_url
from ..timefmt import duration

if TYPE_CHECKING:
    from ..batch import TokenRun
    from ..policy import RunResult


# -- arguments ------------------------------------------------------------------------------------
def add_manifest(parser: argparse.ArgumentParser) -> None:
    """Add ``--manifest FILE`` (several tokens) to a command's parser."""
    parser.add_argument(
        "--manifest",
        metavar="FILE",
        help="a JSON manifest of several tokens (overrides --store); see the docs",
    )


def add_app_credentials(parser: argparse.ArgumentParser) -> None:
    """Add ``--app-key`` and ``--credentials-secret`` to a command's parser.

    The secret itself is never a flag (see the epilog).
    """
    parser.add_argument("--app-key", help="default: $SCHWAB_APP_KEY (the secret: see below)")
    parser.add_argument(
        "--credentials-secret",
        metavar="NAME",
        help="a Secrets Manager secret NAME or an SSM parameter ssm:/NAME holding the app key "
        "and secret (default: $SCHWAB_CREDENTIALS_SECRET; the stack's CredentialsSecretName "
        "output); `login` given SCHWAB_APP_KEY and SCHWAB_APP_SECRET stores them there once "
        "Schwab accepted them",
    )


def add_margin(parser: argparse.ArgumentParser) -> None:
    """Add ``--margin SECONDS`` (when to refresh) to a command's parser."""
    parser.add_argument(
        "--margin",
        help="refresh when fewer seconds than this are left, 0-900 "
        "(default: $REFRESH_MARGIN_SECONDS, then 900)",
    )


# -- which store ----------------------------------------------------------------------------------
def store_url(args: argparse.Namespace, settings: Settings) -> str:
    """The store's URL: ``--store``, else ``TOKEN_STORE_URL``, else ``tokens.json``."""
    if args.store is not None:  # an explicit --store "" is refused, not replaced by a default
        return str(args.store)
    return settings.store_url or DEFAULT_STORE_URL


def store(args: argparse.Namespace, settings: Settings) -> TokenStore:
    """The store at ``store_url``; raises ``UsageError`` for a URL no store understands."""
    return store_from_url(store_url(args, settings), settings)


def several(args: argparse.Namespace, settings: Settings) -> bool:
    """Whether the command works on several tokens rather than one store.

    True with ``--manifest``, or, without ``--store``, with ``TOKEN_MANIFEST`` or
    ``TOKEN_STORE_URLS`` in the environment (as the refresher Lambda reads them).
    """
    if getattr(args, "manifest", None):
        return True
    return args.store is None and bool(settings.manifest or settings.store_urls)


def targets(args: argparse.Namespace, settings: Settings) -> list[Target]:
    """The tokens the command works on: the manifest's, or the one store's.

    Raises ``UsageError`` for an unusable manifest or store URL.
    """
    if getattr(args, "manifest", None):
        return load_manifest(args.manifest)
    if several(args, settings):
        return targets_from_settings(settings)
    url = store_url(args, settings)
    store_from_url(url, settings)  # a usage error now, not one per round
    return [Target(default_name(url), url)]


def with_app(args: argparse.Namespace, settings: Settings, *, prompt: bool) -> Settings:
    """The settings with ``--app-key`` and ``--credentials-secret`` applied.

    With ``prompt``, the app secret is asked for (not shown) when only the key is known and a
    person is at the terminal.
    """
    settings = settings.with_(
        app_key=getattr(args, "app_key", None),
        credentials_secret=getattr(args, "credentials_secret", None),
    )
    if prompt and settings.app_key and not settings.app_secret and sys.stdin.isatty():
        import getpass

        secret = getpass.getpass("Schwab app secret (not shown): ").strip()
        settings = settings.with_(app_secret=secret or None)
    return settings


def refresh_targets(
    args: argparse.Namespace, settings: Settings, force: bool
) -> list[tuple[Target, RunResult]]:
    """One policy run per token."""
    return [(each.target, each.result) for each in refresh_runs(args, settings, force)]


def refresh_runs(args: argparse.Namespace, settings: Settings, force: bool) -> list[TokenRun]:
    """One policy run per token, each with the store it ran on (for its notes).

    A token's failure is in its result. Raises ``UsageError`` for a bad flag or manifest.
    """
    from ..batch import refresh_all

    settings = with_margin(args, settings)
    return refresh_all(targets(args, settings), with_app(args, settings, prompt=False), force=force)


def with_margin(args: argparse.Namespace, settings: Settings) -> Settings:
    """``--margin`` in the settings; out of range it is a ``UsageError`` (exit 2)."""
    if args.margin is None:
        return settings
    return settings.with_(refresh_margin=MARGIN.check(args.margin, "--margin"))


# -- printing ------------------------------------------------------------------------------------
def report(result: RunResult) -> None:
    """Print one run's outcome: to stdout when it succeeded, to stderr when it failed."""
    data = result.to_dict()
    if result.error is not None:
        err(f"{data['outcome']}: {result.error}")
        return
    label = "refreshed" if data["outcome"] == "refreshed" else "still fresh"
    out(
        f"{label}: {result.store}: access token valid for "
        f"{duration(data['access_seconds_left'])}, refresh token dies in "
        f"{duration(data['refresh_seconds_left'])} (fingerprint {data['fingerprint']})"
    )


def out(text: str) -> None:
    """Print ``text`` to stdout, flushed."""
    print(text, flush=True)


def err(text: str) -> None:
    """Print ``text`` to stderr, flushed."""
    print(text, file=sys.stderr, flush=True)
