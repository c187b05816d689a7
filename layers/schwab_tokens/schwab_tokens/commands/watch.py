"""``schwab-tokens watch``: keep the token fresh until stopped (SIGINT/SIGTERM)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable

from ..errors import ExitCode, UnexpectedError
from ..settings import INTERVAL, Settings
from .common import add_app_key, add_manifest, add_margin, out, refresh_targets, report, targets

NAME = "watch"
HELP = "keep the token fresh until stopped (SIGINT/SIGTERM)"
#: How soon ``watch`` exits after SIGINT/SIGTERM, even in the middle of a refresh.
STOP_WITHIN_SECONDS = 1.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_manifest(parser)
    add_app_key(parser)
    parser.add_argument("--interval", default="60", help="seconds between checks (default 60)")
    add_margin(parser)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Refresh on a timer. The refresh runs in a worker thread so that SIGINT/SIGTERM end the
    command within ``STOP_WITHIN_SECONDS`` even while Schwab is slow: every write is atomic
    and conditional, so leaving mid-refresh leaves the previous or the new token, never half."""
    interval = INTERVAL.check(args.interval, "--interval")
    watched = targets(args, settings)
    stopped: list[int] = []
    wake = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopped.append(int(ExitCode.INTERRUPTED) if signum == signal.SIGINT else int(ExitCode.OK))
        wake.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    out(f"watching {', '.join(t.url for t in watched)} every {interval:g} s (Ctrl-C to stop)")
    done = threading.Event()
    while not stopped:
        code = _until_stopped(lambda: _round(args, settings), stopped, done)
        if code is not None:
            return code  # only the user can fix it: a dead login, a wrong app secret
        if not stopped:
            wake.wait(interval)
    out("stopped")
    if not done.is_set():
        # A refresh is still waiting on Schwab, with several tokens in a thread pool that the
        # interpreter would join at exit. Leaving now is safe (every write is atomic and
        # conditional); os._exit skips that join.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stopped[0])
    return stopped[0]


def _round(args: argparse.Namespace, settings: Settings) -> int | None:
    """One refresh of every token: the exit code if a failure needs the user, else None.

    Temporary failures and bugs (an unexpected error: reported, maybe a full disk) are tried
    again next round; a dead login or a wrong configuration needs the user."""
    for _, result in refresh_targets(args, settings, force=False):
        report(result)
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
