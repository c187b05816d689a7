"""``schwab-tokens watch``: keep the token fresh until stopped (SIGINT/SIGTERM).

A daemon: it outlives everything that time or a person can fix (a half-written or corrupt store,
a network outage, Schwab down, a login that is due or over, credentials being changed) and says
what it waits for, once per change of state; it keeps checking, and picks up a new login or a
repaired store on its own. Only SIGTERM (exit 0) and SIGINT (exit 130) stop it.

With alert URLs (``--alert URL``, and a local token file's ``<file>.alerts`` that
``schwab-tokens alerts add`` writes), it sends the refresher's notices through Apprise: the same
kinds, one per change of state (the store's notes, as the refresher keeps them), to a phone.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import (
    ExitCode,
    Outcome,
    SchwabTokensError,
    TemporaryFailure,
    UnexpectedError,
    UsageError,
)
from ..manifest import Target
from ..settings import INTERVAL, Settings
from .common import (
    add_app_credentials,
    add_manifest,
    add_margin,
    err,
    out,
    refresh_runs,
    report,
    targets,
    with_app,
    with_margin,
)

if TYPE_CHECKING:
    from ..notify import Notice
    from ..policy import RunResult
    from ..stores import TokenStore

NAME = "watch"
HELP = "keep the token fresh until stopped (SIGINT/SIGTERM)"
#: How soon ``watch`` exits after SIGINT/SIGTERM, even in the middle of a refresh.
STOP_WITHIN_SECONDS = 1.5
#: How often the main thread looks for a signal while it sleeps or waits for a round.
SLICE_SECONDS = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags of ``watch`` to its subparser."""
    add_manifest(parser)
    add_app_credentials(parser)
    parser.add_argument("--interval", default="60", help="seconds between checks (default 60)")
    add_margin(parser)
    parser.add_argument(
        "--alert",
        action="append",
        metavar="URL",
        help="an Apprise URL (tgram://, discord://, ntfy://...) to send the notices to; "
        "repeatable; a local token file's alerts (`schwab-tokens alerts add`) are sent to too",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh on a timer until SIGINT or SIGTERM; return 130 after SIGINT, else 0.

    The refresh runs in a worker thread so that a signal ends the command within
    ``STOP_WITHIN_SECONDS`` even while Schwab is slow; every write is atomic and conditional,
    so leaving mid-refresh leaves the previous or the new token, never half. A round's errors
    are reported and waited out; only a bad flag or missing app credentials raise
    ``UsageError``.
    """
    stopped: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        # Only a list append: a handler runs between any two bytecodes of the main thread, even
        # inside a lock it holds (setting an Event from here once hung watch for good).
        stopped.append(int(ExitCode.INTERRUPTED) if signum == signal.SIGINT else int(ExitCode.OK))

    # First: a stop during the checks below (Apprise's import takes a moment) is a stop too.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    interval = INTERVAL.check(args.interval, "--interval")
    # Checked here, not only in each round: a round's errors are waited out, a bad flag is not.
    settings = with_margin(args, settings)
    watched = targets(args, settings)
    _check_app(args, settings, watched)
    if args.alert:
        from .. import alert_urls

        args.alert = [alert_urls.check(url) for url in args.alert]
    out(f"watching {', '.join(t.url for t in watched)} every {interval:g} s (Ctrl-C to stop)")
    done = threading.Event()
    said: dict[str, str] = {}
    while not stopped:
        _until_stopped(lambda: _round(args, settings, said, interval), stopped, done)
        _sleep(interval, stopped)
    out("stopped")
    if not done.is_set():
        # A refresh is still waiting on Schwab, with several tokens in a thread pool that the
        # interpreter would join at exit. Leaving now is safe (every write is atomic and
        # conditional); os._exit skips that join.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stopped[0])
    return stopped[0]


def _check_app(args: argparse.Namespace, settings: Settings, watched: list[Target]) -> None:
    """What only a restart can fix is refused at once (exit 2): with no app key and secret in
    the environment and no credentials secret, no round could ever refresh."""
    app = with_app(args, settings, prompt=False)
    if (app.app_key and app.app_secret) or app.credentials_secret:
        return
    if all(t.credentials_secret for t in watched):
        return
    raise UsageError(
        "watch needs the Schwab app key and secret: set SCHWAB_APP_KEY and SCHWAB_APP_SECRET, "
        "or name a secret (NAME) or parameter (ssm:/NAME) in SCHWAB_CREDENTIALS_SECRET"
    )


def _round(
    args: argparse.Namespace, settings: Settings, said: dict[str, str], every: float
) -> None:
    """One refresh of every token. A refresh is always reported; any other state only when it
    differs from the last one reported for that token (``said``), with what watch waits for."""
    try:
        runs = refresh_runs(args, settings, force=False)
    except SchwabTokensError as exc:  # e.g. a manifest file that is being edited
        _say(said, "*", f"waiting: {exc}; checking again every {every:g} s", error=True)
        return
    for target, store, result in runs:
        if result.outcome == Outcome.REFRESHED:
            report(result)
            said[target.name] = str(Outcome.STILL_FRESH)
        elif result.error is None:
            if _say(said, target.name, str(Outcome.STILL_FRESH)):
                report(result)
        else:
            state = f"{result.outcome}:{type(result.error).__name__}"
            if _say(said, target.name, state):
                err(f"{result.outcome}: {result.error}")
                waiting = _waiting_for(result, target)
                err(f"watch keeps running, {waiting}; checking every {every:g} s")
        if store is not None:
            _alert(args, target, store, result, said)


def _alert(
    args: argparse.Namespace,
    target: Target,
    store: TokenStore,
    result: RunResult,
    said: dict[str, str],
) -> None:
    """Send the notice this run calls for (if any) to the alert URLs, through the store's notes
    as the refresher does: one message per change of state, even with a refresher beside."""
    from .. import alert_urls
    from ..notify import notify
    from ..stores.file import FileStore

    key = f"alerts:{target.name}"
    urls = list(args.alert or [])
    try:
        if isinstance(store, FileStore):
            beside = alert_urls.file_beside(store.path)
            urls += alert_urls.read_urls(str(beside)) or []
    except SchwabTokensError as exc:
        _say(said, key, f"alerts: {exc}", error=True)
    urls = list(dict.fromkeys(urls))  # a URL given twice is sent to once
    if not urls:
        return  # no one to tell: the notes are left for a notifier that has someone

    def publish(notice: Notice) -> None:
        results = alert_urls.send(urls, notice)
        for each in results:
            if not each.ok:
                err(f"alert to {each.service} failed: {each.detail}")
        delivered = sum(each.ok for each in results)
        if not delivered:
            # The notes are put back: the next round tries again.
            raise TemporaryFailure(f"the {notice.kind} notice reached none of the alert URLs")
        out(f"alerted {notice.kind} for {target.name} to {delivered} of {len(results)} URL(s)")

    try:
        notify(store, target.name, result, publish)
    except SchwabTokensError as exc:
        _say(said, key, f"alerts: {exc}; trying again next round", error=True)
    else:
        said.pop(key, None)


def _waiting_for(result: RunResult, target: Target) -> str:
    if result.outcome == Outcome.REAUTH_REQUIRED:
        return f"waiting for a new login (`schwab-tokens login --store {target.url}`)"
    if result.temporary:
        return "retrying until Schwab, AWS and the network answer again"
    return "waiting for the store or the credentials to be repaired, or for a new login"


def _say(said: dict[str, str], key: str, state: str, *, error: bool = False) -> bool:
    """Whether ``state`` is news for ``key`` (and remember it); print it if ``error``."""
    if said.get(key) == state:
        return False
    said[key] = state
    if error:
        err(state)
    return True


def _sleep(seconds: float, stopped: list[int]) -> None:
    """Sleep ``seconds``, or less once a signal came: slices of ``SLICE_SECONDS`` at most."""
    end = time.monotonic() + seconds
    while not stopped and (left := end - time.monotonic()) > 0:
        time.sleep(min(left, SLICE_SECONDS))


def _until_stopped(work: Callable[[], None], stopped: list[int], done: threading.Event) -> None:
    """Run ``work`` in a worker thread until it is done or a signal came (``done`` tells which)."""
    done.clear()

    def target() -> None:
        try:
            work()
        except Exception as exc:  # a bug in one round: reported, and the next round tries again
            err(f"error: {UnexpectedError.wrap(exc)}; watch keeps running")
        finally:
            done.set()

    threading.Thread(target=target, name="watch-refresh", daemon=True).start()
    while not done.is_set() and not stopped:
        done.wait(SLICE_SECONDS)
