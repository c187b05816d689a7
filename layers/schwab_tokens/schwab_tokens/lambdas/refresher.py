"""What the refresher Lambda does with an event: refresh every token, report, notify.

The handler is one call to ``handle``. Each token's run ends in a ``RunResult``; this module turns
it into one JSON log line, a notification when the token's state changed (``notify.py``, to the
stack's SNS topic), and, with ``DetailedMetrics`` enabled, one EMF document per token (dimension
``Token``) plus the run's aggregate metrics. A dead login does not raise (retrying cannot fix it;
the notification tells the user); any other failure raises after reporting, so Lambda's
asynchronous retry, its Errors metric and the on-failure destination see it.

A forced event (``{"force": true}``, e.g. ``events/force_refresh.json``) refreshes every token
once per invocation: Lambda retries a failed asynchronous invocation with the same event and the
same request id, so the request id is noted beside each token it refreshed, and a retry does
not refresh those again. The event's ``time`` plays no part (a saved event file keeps its time
forever).
"""

from __future__ import annotations

import hashlib
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..batch import TokenRun, refresh_all
from ..credentials import load_credentials
from ..errors import Outcome, SchwabTokensError, UnexpectedError, UsageError, WriteConflict
from ..manifest import Target, targets_from_settings
from ..notes import FORCED
from ..notify import Notice, notify
from ..policy import Clock, RunResult
from ..settings import Settings
from ..stores import TokenStore
from ..token import Token
from .observability import logger, metrics

METRIC_FOR_OUTCOME = {
    Outcome.REFRESHED: "Refreshed",
    Outcome.STILL_FRESH: "StillFresh",
    Outcome.REAUTH_REQUIRED: "ReauthRequired",
    Outcome.FAILED: "RefreshFailed",
}
ALL_METRICS = frozenset(
    [
        *METRIC_FOR_OUTCOME.values(),
        "AccessTokenSecondsLeft",
        "RefreshTokenHoursLeft",
        "RefreshDuration",
    ]
)
#: What the dashboard needs per token; the rest is only in the aggregate.
PER_TOKEN_METRICS = frozenset(
    ["ReauthRequired", "RefreshFailed", "AccessTokenSecondsLeft", "RefreshTokenHoursLeft"]
)


class RefreshRunFailed(SchwabTokensError):
    """What ``handle`` raises after reporting every token, when one failed unexpectedly.

    Unexpectedly: in a way the refresher cannot tell the user itself (anything but a temporary
    failure or a dead login), so the invocation counts as an error.
    """


def handle(
    event: Any,
    settings: Settings | None = None,
    clock: Clock = time.time,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One invocation: refresh, report and notify each token; returns the run's summary.

    The summary holds the overall outcome and each token's result. ``request_id`` is Lambda's
    (the same on its retries of an asynchronous invocation). Raises the ``SchwabTokensError``
    that makes the settings or the event unusable (after logging it), and ``RefreshRunFailed``
    (after reporting) when a token failed otherwise than temporarily or by a dead login.
    """
    settings, force, targets = _configure(event, settings)
    forcing = _Forcing(force, request_id)
    runs = refresh_all(targets, settings, force=forcing, clock=clock)
    for each in runs:
        _report(each, settings, clock, forcing, per_token_metrics=len(runs) > 1)
    if settings.detailed_metrics:
        _emit_aggregate([each.result for each in runs])
    summary = {
        "outcome": str(_overall([each.result for each in runs])),
        "tokens": [{"token": each.target.name, **each.result.to_dict()} for each in runs],
    }
    _raise_unreported(runs)
    return summary


def _configure(event: Any, settings: Settings | None) -> tuple[Settings, bool, list[Target]]:
    """The settings, whether the event forces a refresh, and the tokens. Nothing is tried when
    they are unusable: the error is logged in one line (and counted) before Lambda sees it."""
    try:
        settings = Settings.from_env() if settings is None else settings
        force = parse_event(event)
        targets = targets_from_settings(settings)
        if any(t.url.startswith("s3://") for t in targets):
            from .. import aws

            aws.require_s3_conditional_writes()  # a runtime that cannot: say so at once
    except SchwabTokensError as exc:
        logger.error(
            f"configuration error: {exc}",
            extra={"outcome": str(Outcome.FAILED), "error": type(exc).__name__, "reason": str(exc)},
        )
        wanted = Settings.metrics_wanted() if settings is None else settings.detailed_metrics
        if wanted:
            _emit_aggregate([RunResult("configuration", Outcome.FAILED, error=exc)])
        raise
    return settings, force, targets


def _report(
    run: TokenRun, settings: Settings, clock: Clock, forcing: _Forcing, per_token_metrics: bool
) -> None:
    """One token's log line, its forced-refresh mark, its notification and its metrics."""
    target, store, result = run
    record = {"token": target.name, **result.to_dict()}
    level = logger.info if result.ok else logger.warning if result.temporary else logger.error
    level(f"token {target.name}: {result.outcome}", extra=record)
    if store is None:
        return  # its URL is unusable: reported above, nothing to note or notify
    forcing.note(target, store, result)
    _notify(target, store, result, settings, clock)
    if settings.detailed_metrics and per_token_metrics:
        _emit_per_token(target, result)


def _raise_unreported(runs: Sequence[TokenRun]) -> None:
    """Raise ``RefreshRunFailed`` for the failures the refresher cannot report itself.

    A temporary failure (Schwab or AWS not answering) is the refresher's to report: it logs it,
    the next scheduled run retries it, and the "failing for 30 minutes" e-mail says it. Anything
    else (no access, a bug) raises, so that Lambda's Errors metric, and with it the
    RefresherErrors alarm, counts only what the refresher cannot tell the user itself."""
    unreported = [
        each for each in runs if each.result.outcome == Outcome.FAILED and not each.result.temporary
    ]
    if unreported:
        names = ", ".join(each.target.name for each in unreported)
        raise RefreshRunFailed(f"refresh failed for {names}: {unreported[0].result.error}")


def parse_event(event: Any) -> bool:
    """Whether the event forces a refresh (False when it does not say).

    The event's ``force``, a JSON boolean, at the top or in EventBridge's ``detail``. Raises
    ``UsageError`` for an event that is not a JSON object or a ``force`` that is not a boolean.
    """
    if event is None:
        return False
    if not isinstance(event, Mapping):
        raise UsageError("the refresher's event must be a JSON object")
    detail = event.get("detail")
    force = event.get("force")
    if force is None and isinstance(detail, Mapping):
        force = detail.get("force")
    if force is None:
        return False
    if not isinstance(force, bool):
        raise UsageError(f'"force" must be true or false (a JSON boolean), not {short_repr(force)}')
    return force


# -- a forced refresh, once per invocation -------------------------------------------------------
class _Forcing:
    """Which tokens a forced event refreshes: each, once per invocation (``forced_mark``).

    Called by ``refresh_all`` for each token (true: force it); ``note`` then marks a forced
    refresh done, so Lambda's retry of this invocation does not refresh that token again."""

    def __init__(self, force: bool, request_id: str | None) -> None:
        self.force = force
        self.mark = forced_mark(request_id) if force else None
        self.forced: set[str] = set()

    def __call__(self, target: Target, store: TokenStore) -> bool:
        if self.force and not _already_forced(store, self.mark):
            self.forced.add(target.name)
        return target.name in self.forced

    def note(self, target: Target, store: TokenStore, result: RunResult) -> None:
        if self.mark and target.name in self.forced and result.outcome == Outcome.REFRESHED:
            _note_forced(target, store, self.mark)


def forced_mark(request_id: str | None) -> str | None:
    """What the notes keep of the request id (``notes.FORCED``), or None without an id.

    The mark says "this invocation's forced refresh is done": short (the notes are small), not
    the id itself. Raises nothing.
    """
    if not request_id:
        return None
    return hashlib.sha256(request_id.encode()).hexdigest()[:12]


def _already_forced(store: TokenStore, mark: str | None) -> bool:
    """Whether an earlier attempt of this invocation already refreshed this token."""
    if mark is None:
        return False
    try:
        notes, _ = store.read_notes()
    except SchwabTokensError:
        return False  # the run itself reports what is wrong with the store
    return notes.get(FORCED) == mark


def _note_forced(target: Target, store: TokenStore, mark: str) -> None:
    """Best effort: if this cannot be noted, a retry of this invocation refreshes once more."""
    try:
        for _ in range(3):
            notes, version = store.read_notes()
            try:
                store.write_notes({**notes, FORCED: mark}, version)
                return
            except WriteConflict:
                continue
    except SchwabTokensError as exc:
        logger.warning(f"token {target.name}: could not note the forced refresh ({exc})")


def short_repr(value: Any) -> str:
    """Python's ``repr`` of a value from an event, cut to 40 characters for a message."""
    return repr(value)[:40]


# -- notifications -------------------------------------------------------------------------------
def _notify(
    target: Target, store: TokenStore, result: RunResult, settings: Settings, clock: Clock
) -> None:
    if not settings.topic_arn:
        return
    topic = settings.topic_arn

    def publish(notice: Notice) -> None:
        from .. import aws

        aws.publish(topic, notice.subject, notice.message, notice.attributes())

    try:
        kind = notify(
            store,
            target.name,
            result,
            publish,
            _link_maker(target, settings, clock),
            clock(),
            login_command(target, settings),
        )
    except Exception as exc:
        # The run's own outcome is already reported; a notification problem (even a bug: only
        # its kind is shown) must not hide it, nor the other tokens' lines and metrics.
        problem = exc if isinstance(exc, SchwabTokensError) else UnexpectedError.wrap(exc)
        logger.warning(
            f"token {target.name}: could not notify: {problem}",
            extra={"token": target.name, "notify_error": type(exc).__name__},
        )
        return
    if kind is not None:
        logger.info(
            f"token {target.name}: notified {kind}",
            extra={"token": target.name, "notified": str(kind)},
        )


def login_command(target: Target, settings: Settings) -> str:
    """The CLI login the e-mails print, as one shell-quoted command line; raises nothing.

    Complete, so that it works as printed on a laptop with only AWS credentials: the app key and
    secret come from the stack's credentials, and the region is the stack's, whatever the
    laptop's default.
    """
    words = ["schwab-tokens", "login", "--store", target.url]
    credentials = target.credentials_secret or settings.credentials_secret
    if credentials:
        words += ["--credentials-secret", credentials]
    if settings.region and (credentials or target.url.startswith(("s3://", "secretsmanager://"))):
        words += ["--region", settings.region]
    return shlex.join(words)


def _link_maker(
    target: Target, settings: Settings, clock: Clock
) -> Callable[[Token], str | None] | None:
    """A fresh one-time login link per message, when the hosted login is enabled and serves
    this token: the login function knows only the stack's own store and app credentials, so
    another token's e-mail gives the CLI command alone rather than a link that cannot work."""
    own_app = target.credentials_secret in (None, settings.credentials_secret)
    if not settings.login_url or target.url != settings.store_url or not own_app:
        return None
    login_url = settings.login_url if settings.login_url.endswith("/") else settings.login_url + "/"

    def link(token: Token) -> str | None:
        from .. import tickets

        try:
            creds = load_credentials(settings, source=target.credentials_secret)
        except SchwabTokensError as exc:
            logger.warning(f"token {target.name}: no login link ({exc})")
            return None
        key = tickets.ticket_key(creds.app_secret)
        ticket = tickets.mint(key, target.url, token.creation_timestamp, clock())
        return f"{login_url}start?ticket={ticket}"

    return link


# -- metrics (DetailedMetrics) ---------------------------------------------------------------------
def _emit_per_token(target: Target, result: RunResult) -> None:
    from aws_lambda_powertools.metrics import EphemeralMetrics

    per_token = EphemeralMetrics()
    per_token.add_dimension(name="Token", value=target.name)
    _add(per_token, [result], PER_TOKEN_METRICS)
    per_token.flush_metrics()


def _emit_aggregate(results: Sequence[RunResult]) -> None:
    from aws_lambda_powertools.metrics import MetricUnit

    _add(metrics, results, ALL_METRICS)
    failed = any(r.outcome == Outcome.FAILED for r in results)
    metrics.add_metric(name="SuccessfulRun", unit=MetricUnit.Count, value=0 if failed else 1)


def _add(sink: Any, results: Sequence[RunResult], names: frozenset[str]) -> None:
    """Counts per outcome, plus the worst (lowest) time left, as the dashboard wants it."""
    from aws_lambda_powertools.metrics import MetricUnit

    values: list[tuple[str, MetricUnit, float]] = []
    for outcome, metric in METRIC_FOR_OUTCOME.items():
        count = sum(1 for r in results if r.outcome == outcome)
        values.append((metric, MetricUnit.Count, count))
    access = [r.access_seconds_left for r in results if r.access_seconds_left is not None]
    hours = [r.refresh_hours_left for r in results if r.refresh_hours_left is not None]
    if access:
        values.append(("AccessTokenSecondsLeft", MetricUnit.Seconds, min(access)))
    if hours:
        values.append(("RefreshTokenHoursLeft", MetricUnit.Count, min(hours)))
    values.append(("RefreshDuration", MetricUnit.Milliseconds, max(r.duration_ms for r in results)))
    for name, unit, value in values:
        if name in names:
            sink.add_metric(name=name, unit=unit, value=value)


def _overall(results: Sequence[RunResult]) -> Outcome:
    for worst in (Outcome.FAILED, Outcome.REAUTH_REQUIRED, Outcome.REFRESHED):
        if any(r.outcome == worst for r in results):
            return worst
    return Outcome.STILL_FRESH
