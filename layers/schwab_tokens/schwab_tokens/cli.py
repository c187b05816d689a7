"""``schwab-tokens login | refresh | status | watch``.

Exit codes (the contract): 0 ok, 1 unexpected, 2 usage, 3 login required, 4 temporary failure,
5 store or configuration problem. Output never carries a token, a code or the app secret: at
most a short fingerprint.
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
from typing import Any

from .errors import SchwabTokensError, UsageError
from .stores import DEFAULT_STORE_URL, TokenStore, store_from_url

LOGIN_TIMEOUT_SECONDS = 300.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.command(args))
    except SchwabTokensError as exc:
        _err(f"error: {exc}")
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("SCHWAB_TOKENS_DEBUG"):
            raise
        # An unknown exception's text could quote a request; show only its kind.
        _err(
            f"unexpected error ({type(exc).__name__}); set SCHWAB_TOKENS_DEBUG=1 to see the "
            "traceback, and please report it"
        )
        return 1


# -- commands -------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    from .credentials import load_credentials
    from .login import (
        DEFAULT_CALLBACK_URL,
        CallbackListener,
        check_callback_url,
        complete_login,
        listen_for_login,
    )
    from .oauth import SchwabOAuth

    store = _store(args)
    creds = load_credentials(args.app_key, args.app_secret)
    callback = check_callback_url(args.callback_url or creds.callback_url or DEFAULT_CALLBACK_URL)
    oauth = SchwabOAuth(creds.app_key, creds.app_secret)
    authorize_url, state = oauth.authorize_url(callback)

    def handle(link: str) -> Any:
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
        with CallbackListener(callback) as listener:
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
        from .aws import put_credentials_secret

        put_credentials_secret(args.credentials_secret, creds.app_key, creds.app_secret, callback)
        _out(f"App key and secret stored in the secret {args.credentials_secret}.")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    results = _refresh(args, force=args.force)
    for target, outcome in results:
        if args.json:
            _out(json.dumps({"token": target.name, **outcome.to_dict()}))
        else:
            _report(outcome)
    return max(outcome.exit_code for _, outcome in results)


def cmd_status(args: argparse.Namespace) -> int:
    from .status import describe, describe_all

    if args.manifest:
        rows = describe_all(_targets(args))
        if args.json:
            _out(json.dumps(rows))
        else:
            for line in _status_table(rows):
                _out(line)
        return max(row["exit_code"] for row in rows)
    status = describe(_store(args))
    if args.json:
        _out(json.dumps(status))
    else:
        for label, value in _status_lines(status):
            _out(f"{label + ':':<16}{value}")
    return 0 if status["refresh_seconds_left"] > 0 else 3


def cmd_watch(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise UsageError("--interval must be a positive number of seconds")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    names = ", ".join(t.url for t in _targets(args))
    _out(f"watching {names} every {args.interval:g} s (Ctrl-C to stop)")
    while not stop.is_set():
        for _, outcome in _refresh(args, force=False):
            _report(outcome)
            if outcome.error is not None and not outcome.temporary:
                return outcome.exit_code  # retrying cannot fix a dead login or a wrong secret
        stop.wait(args.interval)
    _out("stopped")
    return 0


# -- helpers --------------------------------------------------------------------------------
def _store_url(args: argparse.Namespace) -> str:
    return str(args.store or os.environ.get("TOKEN_STORE_URL") or DEFAULT_STORE_URL)


def _store(args: argparse.Namespace) -> TokenStore:
    return store_from_url(_store_url(args))


def _targets(args: argparse.Namespace) -> list[Any]:
    from .manifest import Target, default_name, load_manifest

    if getattr(args, "manifest", None):
        return load_manifest(args.manifest)
    url = _store_url(args)
    return [Target(default_name(url), url)]


def _refresh(args: argparse.Namespace, force: bool) -> list[Any]:
    """One policy run per token; flags override the environment's app key and secret."""
    from .refresh import DEFAULT_MARGIN_SECONDS
    from .refresher import refresh_all
    from .settings import env_number

    env = dict(os.environ)
    if args.app_key:
        env["SCHWAB_APP_KEY"] = args.app_key
    if args.app_secret:
        env["SCHWAB_APP_SECRET"] = args.app_secret
    margin = args.margin
    if margin is None:
        margin = env_number("REFRESH_MARGIN_SECONDS", DEFAULT_MARGIN_SECONDS, env)
    return refresh_all(_targets(args), env=env, force=force, margin=margin)


def _report(outcome: Any) -> None:
    data = outcome.to_dict()
    if outcome.error is not None:
        _err(f"{data['outcome']}: {outcome.error}")
        return
    label = "refreshed" if data["outcome"] == "refreshed" else "still fresh"
    _out(
        f"{label}: {outcome.store}: access token valid for "
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="schwab-tokens",
        description="Keep a Charles Schwab API token fresh in a file, S3 or Secrets Manager.",
    )
    commands = parser.add_subparsers(dest="name", required=True, metavar="COMMAND")

    def command(
        name: str, func: Callable[[argparse.Namespace], int], help: str, app: bool = True
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.set_defaults(command=func)
        sub.add_argument(
            "--store",
            help="tokens.json, file:PATH, s3://BUCKET/KEY or secretsmanager://NAME "
            "(default: $TOKEN_STORE_URL, then tokens.json)",
        )
        if name != "login":
            sub.add_argument(
                "--manifest",
                metavar="FILE",
                help="a JSON manifest of several tokens (overrides --store); see README",
            )
        if app:
            sub.add_argument("--app-key", help="default: $SCHWAB_APP_KEY")
            sub.add_argument("--app-secret", help="default: $SCHWAB_APP_SECRET")
        return sub

    login = command("login", cmd_login, "log in once in a browser and store the first token")
    login.add_argument(
        "--callback-url",
        help="the app's registered callback "
        "(default: $SCHWAB_CALLBACK_URL, then https://127.0.0.1:8182)",
    )
    login.add_argument(
        "--paste",
        action="store_true",
        help="print the authorize URL and read the returned link from stdin",
    )
    login.add_argument("--no-browser", action="store_true", help="do not open a browser")
    login.add_argument(
        "--credentials-secret",
        metavar="NAME",
        help="also store the app key and secret in this Secrets Manager secret",
    )

    def add_margin(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--margin",
            type=float,
            help="refresh when fewer seconds than this are left "
            "(default: $REFRESH_MARGIN_SECONDS, then 600)",
        )

    refresh = command("refresh", cmd_refresh, "refresh the token if it is due (or --force)")
    refresh.add_argument("--force", action="store_true", help="refresh even if still fresh")
    add_margin(refresh)
    refresh.add_argument("--json", action="store_true", help="print the outcome as JSON")

    status = command("status", cmd_status, "show the token's expiry and health", app=False)
    status.add_argument("--json", action="store_true", help="print one JSON object")

    watch = command("watch", cmd_watch, "keep the token fresh until stopped (SIGINT/SIGTERM)")
    watch.add_argument(
        "--interval", type=float, default=60.0, help="seconds between checks (default 60)"
    )
    add_margin(watch)
    return parser


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
