"""``schwab-tokens login | login-link | refresh | status | watch``.

Exit codes (the contract, ``errors.ExitCode``): 0 ok, 1 unexpected, 2 usage, 3 login required,
4 temporary failure, 5 store or configuration problem, 130 stopped by Ctrl-C. Output never
carries a token, a code or the app secret: at most a short fingerprint. The app secret is never
a flag (every local user can read a process's arguments): it comes from the environment, the
credentials secret, or a hidden prompt.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from . import __version__
from .errors import ExitCode, SchwabTokensError, UnexpectedError, UsageError
from .manifest import Target, default_name, load_manifest, targets_from_settings
from .settings import INTERVAL, MARGIN, Settings
from .stores import DEFAULT_STORE_URL, FORMS, TokenStore, store_from_url

if TYPE_CHECKING:
    from .refresh import RunResult
    from .token import Token

LOGIN_TIMEOUT_SECONDS = 300.0
#: How soon ``watch`` exits after SIGINT/SIGTERM, even in the middle of a refresh.
STOP_WITHIN_SECONDS = 1.5

EPILOG = """\
exit codes:
  0    ok
  1    unexpected error (set SCHWAB_TOKENS_DEBUG=1 for the traceback)
  2    usage: a flag, setting or store URL is not of its form
  3    login required: no token, or the refresh token is dead or expired
  4    temporary failure left after retries (network, Schwab 5xx/429, AWS throttling)
  5    store or configuration problem (corrupt document, access denied, wrong app key/secret)
  130  stopped by Ctrl-C (SIGINT); `watch` exits 0 on SIGTERM

environment:
  TOKEN_STORE_URL            the store (default tokens.json); without --store, refresh, status
                             and watch take all of TOKEN_MANIFEST or TOKEN_STORE_URLS if set
  SCHWAB_APP_KEY             the Schwab app's key
  SCHWAB_APP_SECRET          the app's secret (never a flag)
  SCHWAB_CREDENTIALS_SECRET  a Secrets Manager secret NAME or ssm:/PARAMETER holding both
  SCHWAB_CALLBACK_URL        the app's registered callback (default https://127.0.0.1:8182)
  SCHWAB_API_BASE            default https://api.schwabapi.com (https, or http to 127.0.0.1)
  SCHWAB_LOGIN_URL           the hosted login's URL (the stack's LoginUrl output)
  REFRESH_MARGIN_SECONDS     refresh below this many seconds left (0-1800, default 900)
  SCHWAB_HTTP_TIMEOUT        read timeout per try (default 15), SCHWAB_HTTP_RETRIES (0-10, 3)
  SCHWAB_TOKENS_LEASE_TTL    single-flight lease lifetime in seconds (default 120)
  AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL...  as boto3 reads them
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    debug = False
    try:
        settings = Settings.from_env()
        debug = settings.debug
        return int(args.command(args, settings))
    except SchwabTokensError as exc:
        _err(f"error: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _err("interrupted")
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if debug:
            raise
        _err(f"error: {UnexpectedError.wrap(exc)}; set SCHWAB_TOKENS_DEBUG=1 to see the traceback")
        return int(ExitCode.UNEXPECTED)


# -- commands -------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace, settings: Settings) -> int:
    from .credentials import load_credentials
    from .listener import CallbackListener, listen_for_login
    from .login import DEFAULT_CALLBACK_URL, check_callback_url, complete_login
    from .oauth import SchwabOAuth

    store = _store(args, settings)
    creds = load_credentials(_with_app(args, settings, prompt=True))
    callback = check_callback_url(
        args.callback_url or creds.callback_url or DEFAULT_CALLBACK_URL, listen=not args.paste
    )
    # Before the user goes to Schwab: a login that cannot be stored must not spend the code.
    store.preflight()
    oauth = SchwabOAuth.from_settings(creds.app_key, creds.app_secret, settings)
    authorize_url, state = oauth.authorize_url(callback)

    def handle(link: str) -> Token:
        return complete_login(oauth, store, link, state, callback)

    if args.paste:
        _out("Open this address in a browser, log in to Schwab and approve the app:")
        _out(authorize_url)
        _out(
            "Then paste here the whole address the browser was sent to (it starts with "
            f"{callback}):"
        )
        token = handle(sys.stdin.readline())
    else:
        with CallbackListener(callback, state) as listener:
            _out(
                f"Listening on {callback} for Schwab's redirect (the browser will warn about "
                "a self-signed certificate: that is this listener)."
            )
            _out("Open this address in a browser, log in to Schwab and approve the app:")
            _out(authorize_url)
            _out("Or paste here the address the browser was sent to.")
            listener.feed_lines(sys.stdin)
            if not args.no_browser:
                import webbrowser

                webbrowser.open(authorize_url)
            token = listen_for_login(listener, handle, LOGIN_TIMEOUT_SECONDS)
    _out(
        f"Logged in: token stored in {store.url} (fingerprint {token.fingerprint}); the refresh "
        f"token lasts until {_when(token.refresh_expires_at)}."
    )
    if args.credentials_secret:
        # Only after Schwab accepted them: a typo must not replace working credentials.
        from .credentials import AppCredentials, store_credentials

        store_credentials(
            args.credentials_secret, AppCredentials(creds.app_key, creds.app_secret, callback)
        )
        _out(f"App key and secret stored in {args.credentials_secret}.")
    return int(ExitCode.OK)


def cmd_login_link(args: argparse.Namespace, settings: Settings) -> int:
    from .credentials import load_credentials
    from .settings import api_base
    from .tickets import mint, parse_duration, ticket_key

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
    store = _store(args, settings)
    token = store.read().token
    creds = load_credentials(_with_app(args, settings, prompt=False))
    now = time.time()
    ticket = mint(ticket_key(creds.app_secret), store.url, token.creation_timestamp, now, valid)
    _out(f"{login_url}/start?ticket={ticket}")
    _err(
        f"The link logs in again to {store.url} once, until {_when(now + valid)}; only the "
        "Schwab user of the current login can complete it."
    )
    return int(ExitCode.OK)


def cmd_refresh(args: argparse.Namespace, settings: Settings) -> int:
    results = _refresh(args, settings, force=args.force)
    for target, result in results:
        if args.json:
            _out(json.dumps({"token": target.name, **result.to_dict()}))
        else:
            _report(result)
    return max(result.exit_code for _, result in results)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from .status import describe, describe_all

    if _several(args, settings):
        rows = describe_all(_targets(args, settings), settings)
        if args.json:
            _out(json.dumps(rows))
        else:
            for line in _status_table(rows):
                _out(line)
        return int(max(row["exit_code"] for row in rows))
    status = describe(_store(args, settings))
    if args.json:
        _out(json.dumps(status))
    else:
        for label, value in _status_lines(status):
            _out(f"{label + ':':<16}{value}")
    alive = status["refresh_seconds_left"] > 0
    return int(ExitCode.OK if alive else ExitCode.LOGIN_REQUIRED)


def cmd_watch(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh on a timer. The refresh runs in a worker thread so that SIGINT/SIGTERM end the
    command within ``STOP_WITHIN_SECONDS`` even while Schwab is slow: every write is atomic
    and conditional, so leaving mid-refresh leaves the previous or the new token, never half."""
    interval = INTERVAL.check(args.interval, "--interval")
    targets = _targets(args, settings)
    stopped: list[int] = []
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopped.append(int(ExitCode.INTERRUPTED) if signum == signal.SIGINT else int(ExitCode.OK))
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    _out(f"watching {', '.join(t.url for t in targets)} every {interval:g} s (Ctrl-C to stop)")
    done = threading.Event()
    while not stopped:
        code = _until_stopped(lambda: _watch_round(args, settings), stopped, done)
        if code is not None:
            return code  # only the user can fix it: a dead login, a wrong app secret
        if not stopped:
            wake.wait(interval)
    _out("stopped")
    if not done.is_set():
        # A refresh is still waiting on Schwab, with several tokens in a thread pool that the
        # interpreter would join at exit. Leaving now is safe (every write is atomic and
        # conditional); os._exit skips that join.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stopped[0])
    return stopped[0]


def _watch_round(args: argparse.Namespace, settings: Settings) -> int | None:
    """One refresh of every token: the exit code if a failure needs the user, else None.

    Temporary failures and bugs (an unexpected error: reported, maybe a full disk) are tried
    again next round; a dead login or a wrong configuration needs the user."""
    for _, result in _refresh(args, settings, force=False):
        _report(result)
        needs_user = not (result.temporary or isinstance(result.error, UnexpectedError))
        if result.error is not None and needs_user:
            return int(result.exit_code)
    return None


def _until_stopped(
    work: Callable[[], int | None], stopped: list[int], done: threading.Event
) -> int | None:
    """Run ``work`` in a worker thread; return its answer, or None as soon as a signal came
    (``done`` tells whether the work finished)."""
    done.clear()
    answer: list[int | None] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            answer.append(work())
        except BaseException as exc:  # raised again below, in the main thread
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="watch-refresh", daemon=True).start()
    while not done.is_set() and not stopped:
        done.wait(0.1)
    if failure:
        raise failure[0]
    return answer[0] if answer else None


# -- helpers --------------------------------------------------------------------------------
def _store_url(args: argparse.Namespace, settings: Settings) -> str:
    if args.store is not None:  # an explicit --store "" is refused, not replaced by a default
        return str(args.store)
    return settings.store_url or DEFAULT_STORE_URL


def _store(args: argparse.Namespace, settings: Settings) -> TokenStore:
    return store_from_url(_store_url(args, settings), settings)


def _several(args: argparse.Namespace, settings: Settings) -> bool:
    """Several tokens: ``--manifest``, or, without ``--store``, TOKEN_MANIFEST or
    TOKEN_STORE_URLS in the environment (as the refresher Lambda reads them)."""
    if getattr(args, "manifest", None):
        return True
    return args.store is None and bool(settings.manifest or settings.store_urls)


def _targets(args: argparse.Namespace, settings: Settings) -> list[Target]:
    if getattr(args, "manifest", None):
        return load_manifest(args.manifest)
    if _several(args, settings):
        return targets_from_settings(settings)
    url = _store_url(args, settings)
    store_from_url(url, settings)  # a usage error now, not one per round
    return [Target(default_name(url), url)]


def _with_app(args: argparse.Namespace, settings: Settings, *, prompt: bool) -> Settings:
    """The settings with ``--app-key``; the app secret from a hidden prompt if nothing else
    provides it and a person is at the terminal."""
    settings = settings.with_(app_key=getattr(args, "app_key", None))
    if (
        prompt
        and settings.app_key
        and not settings.app_secret
        and not settings.credentials_secret
        and sys.stdin.isatty()
    ):
        import getpass

        secret = getpass.getpass("Schwab app secret (not shown): ").strip()
        settings = settings.with_(app_secret=secret or None)
    return settings


def _refresh(
    args: argparse.Namespace, settings: Settings, force: bool
) -> list[tuple[Target, RunResult]]:
    """One policy run per token."""
    from .batch import refresh_all

    if args.margin is not None:
        margin = MARGIN.check(args.margin, "--margin")
        settings = settings.with_(refresh_margin=margin)
    return refresh_all(
        _targets(args, settings), _with_app(args, settings, prompt=False), force=force
    )


def _report(result: RunResult) -> None:
    data = result.to_dict()
    if result.error is not None:
        _err(f"{data['outcome']}: {result.error}")
        return
    label = "refreshed" if data["outcome"] == "refreshed" else "still fresh"
    _out(
        f"{label}: {result.store}: access token valid for "
        f"{_duration(data['access_seconds_left'])}, refresh token dies in "
        f"{_duration(data['refresh_hours_left'] * 3600)} (fingerprint {data['fingerprint']})"
    )


def _status_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [f"{'token':<16}{'access token':<20}{'refresh token':<22}{'healthy':<9}fingerprint"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['token']:<16}{row['outcome']}: {row['error']}")
            continue
        access = row["access_seconds_left"]
        refresh = row["refresh_seconds_left"]
        lines.append(
            f"{row['token']:<16}"
            f"{(_duration(access) if access > 0 else 'expired'):<20}"
            f"{(_duration(refresh) if refresh > 0 else 'DEAD: log in'):<22}"
            f"{('yes' if row['healthy'] else 'no'):<9}{row['fingerprint']}"
        )
    return lines


def _status_lines(status: dict[str, Any]) -> list[tuple[str, str]]:
    access = status["access_seconds_left"]
    refresh = status["refresh_seconds_left"]
    last = status["last_refresh"]
    return [
        ("store", status["store"]),
        (
            "logged in",
            f"{_when(status['creation_timestamp'])} ({_duration(status['age_seconds'])} ago)",
        ),
        ("last write", _when(last) if last else "unknown"),
        (
            "access token",
            f"expires in {_duration(access)}"
            if access > 0
            else f"expired {_duration(-access)} ago (the next refresh renews it)",
        ),
        (
            "refresh token",
            f"dies in {_duration(refresh)} ({_when(status['refresh_expires_at'])})"
            if refresh > 0
            else "DEAD: run `schwab-tokens login`",
        ),
        ("fingerprint", status["fingerprint"]),
        ("healthy", "yes" if status["healthy"] else "no"),
    ]


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} days {hours} hours"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _out(text: str) -> None:
    print(text, flush=True)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Parser(argparse.ArgumentParser):
    """argparse, exiting with the contract's usage code (2) and a hint to --help."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _err(f"{self.prog}: error: {message} (see --help)")
        raise SystemExit(int(ExitCode.USAGE))


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="schwab-tokens",
        description="Keep a Charles Schwab API token fresh in a file, S3 or Secrets Manager.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"schwab-tokens {__version__}")
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    def command(
        name: str,
        func: Callable[[argparse.Namespace, Settings], int],
        help: str,
        app: bool = True,
        manifest: bool = True,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=help,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.set_defaults(command=func)
        sub.add_argument("--store", help=f"{FORMS} (default: $TOKEN_STORE_URL, then tokens.json)")
        if manifest:
            sub.add_argument(
                "--manifest",
                metavar="FILE",
                help="a JSON manifest of several tokens (overrides --store); see README",
            )
        if app:
            sub.add_argument("--app-key", help="default: $SCHWAB_APP_KEY (the secret: see below)")
        return sub

    login = command(
        "login", cmd_login, "log in once in a browser and store the first token", manifest=False
    )
    login.add_argument(
        "--callback-url",
        help="the app's registered callback "
        "(default: $SCHWAB_CALLBACK_URL, then https://127.0.0.1:8182)",
    )
    login.add_argument(
        "--paste",
        action="store_true",
        help="print the authorize URL and read the returned link from stdin (any https callback)",
    )
    login.add_argument("--no-browser", action="store_true", help="do not open a browser")
    login.add_argument(
        "--credentials-secret",
        metavar="NAME",
        help="also store the app key and secret in this Secrets Manager secret (or ssm:/NAME)",
    )

    link = command(
        "login-link",
        cmd_login_link,
        "print a one-time link that logs in again from a phone (HostedLogin)",
        manifest=False,
    )
    link.add_argument(
        "--login-url", help="the stack's LoginUrl output (default: $SCHWAB_LOGIN_URL)"
    )
    link.add_argument(
        "--valid", default="24h", help="how long the link works (up to 72h; default 24h)"
    )

    def add_margin(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--margin",
            help="refresh when fewer seconds than this are left, 0-1800 "
            "(default: $REFRESH_MARGIN_SECONDS, then 900)",
        )

    refresh = command("refresh", cmd_refresh, "refresh the token if it is due (or --force)")
    refresh.add_argument("--force", action="store_true", help="refresh even if still fresh")
    add_margin(refresh)
    refresh.add_argument("--json", action="store_true", help="print the outcome as JSON")

    status = command("status", cmd_status, "show the token's expiry and health", app=False)
    status.add_argument("--json", action="store_true", help="print one JSON object")

    watch = command("watch", cmd_watch, "keep the token fresh until stopped (SIGINT/SIGTERM)")
    watch.add_argument("--interval", default="60", help="seconds between checks (default 60)")
    add_margin(watch)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
