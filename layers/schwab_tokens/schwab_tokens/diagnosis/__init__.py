"""``schwab-tokens doctor``: whether a setup works, item by item, with the fix for each problem.

``diagnose`` runs the checks and returns a ``Report``; the command prints it. One module per
subject: ``store`` (the token: readable, the access token's and the login's time left, a login
found over), ``view`` (the access view mirrors it), ``stack`` (with a CloudFormation stack: its
status and name, the schedule, the refresher's recent failures, the hosted login),
``credentials`` (the app key and secret, and whether the refresher may read them and write its
store, asked of IAM's own policy simulator in ``access``) and ``notifications`` (a confirmed
subscription to the topic).

Each check ends in one of five states: ``ok``; ``warn`` (works today, needs doing soon: a login
due within 24 hours); ``skip`` (does not apply, or could not be checked here); ``FAIL`` (broken,
with the fix); ``ERROR`` (AWS did not answer: it could not be checked). The report's exit code,
in this order of precedence:

- 3 (login required) when the login is the problem: no token, a dead refresh token, or a run
  found the login over. The user must log in first, whatever else fails (a login with
  ``--credentials-secret`` also stores the app credentials);
- 5 (configuration) when any other check failed;
- 4 (temporary) when nothing failed but a check could not run;
- 0 otherwise (warnings and skipped checks included).

Nothing secret is printed: tokens and the app key appear as fingerprints at most.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from ..errors import SchwabTokensError
from ..notes import found_over
from ..settings import Settings
from ..stores import TokenStore, store_from_url
from ..token import Token
from . import credentials, notifications, stack, view
from . import store as token_checks
from .clients import Clients
from .notifications import notifications_check
from .report import Check, Fixes, Report, Status, could_not, fail, guarded, ok
from .stack import check_login_url


def diagnose(
    settings: Settings,
    *,
    store_url: str | None,
    stack_name: str | None = None,
    region: str | None = None,
    now: Callable[[], float] = time.time,
) -> Report:
    """Check the token at ``store_url`` and, with ``stack_name``, the deployment.

    The stack's ``StoreUrl`` output is the store when ``store_url`` is None. ``region`` is the
    ``--region`` the user gave, repeated in the commands printed as fixes. A check that cannot
    run is a line of the report; only an unusable store URL raises (``UsageError``).
    """
    report = Report()
    fixes = Fixes(region)
    clients = Clients(settings.region)
    outputs: dict[str, str] | None = None
    if stack_name is not None:
        check, outputs = stack.read_stack(stack_name, clients)
        report.checks.append(check)
        if store_url is None and outputs is not None:
            store_url = outputs.get("StoreUrl")
            if not store_url:
                report.checks.append(
                    fail(
                        "token", f"stack {stack_name} has no StoreUrl output: is it schwab-tokens'?"
                    )
                )
    store = store_from_url(store_url, settings) if store_url else None
    token: Token | None = None
    if store is not None:
        token_lines, token = _token(store, now(), fixes)
        report.checks.extend(token_lines)
    if outputs is not None:
        report.checks.extend(_deployment(outputs, store, token, now(), fixes, clients))
    return report


def _token(store: TokenStore, now: float, fixes: Fixes) -> tuple[list[Check], Token | None]:
    check, token = token_checks.read_token(store, fixes)
    if token is None:
        return [check], None
    over = found_over(store, token)  # the notes, read once for both lines
    return [
        check,
        token_checks.access_token(store, token, now, fixes, over),
        token_checks.login(store, token, now, fixes, over),
        guarded("access view", lambda: view.access_view(store, token, fixes)),
    ], token


def _deployment(
    outputs: Mapping[str, str],
    store: TokenStore | None,
    token: Token | None,
    now: float,
    fixes: Fixes,
    clients: Clients,
) -> list[Check]:
    checks = [guarded("credentials", lambda: credentials.stored(outputs, store, fixes, clients))]
    try:
        function = stack.refresher(outputs, clients)
    except SchwabTokensError as exc:
        checks.append(could_not("refresher", exc))
        function = None
    if function is not None:
        reads = "refresher reads credentials"
        checks.append(
            guarded(reads, lambda: credentials.refresher_reads_them(outputs, function, clients))
        )
        if store is not None:
            writes = "refresher writes the store"
            checks.append(
                guarded(
                    writes, lambda: credentials.refresher_writes_store(store, function, clients)
                )
            )
        checks.append(guarded("schedule", lambda: stack.schedule(function, clients)))
    checks.append(guarded("notifications", lambda: notifications.subscriptions(outputs, clients)))
    checks.append(guarded("alerts", lambda: notifications.notifier(outputs, now, clients)))
    if function is not None:
        runs = "refresher runs"
        checks.append(
            guarded(runs, lambda: stack.recent_runs(function, store, token, now, clients))
        )
    checks.append(guarded("hosted login", lambda: stack.hosted_login(outputs)))
    return checks


__all__ = [
    "Check",
    "Report",
    "Status",
    "check_login_url",
    "diagnose",
    "fail",
    "notifications_check",
    "ok",
]
