"""What the refresher Lambda does with an event: refresh every configured token, report each.

The handler is one call to ``handle``. Each token's run ends in an ``Outcome``; this module turns
outcomes into one JSON log line and one EMF document per token (dimension ``Token``), plus the
run's aggregate metrics (dimension ``service`` only) that the alarms watch. A dead login does not
raise (retrying cannot fix it; the alarm tells the user); any other failure raises after
reporting, so Lambda's asynchronous retry and on-failure destination see it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .errors import SchwabTokensError
from .manifest import Target, targets_from_env
from .refresh import (
    DEFAULT_MARGIN_SECONDS,
    FAILED,
    REAUTH_REQUIRED,
    REFRESHED,
    STILL_FRESH,
    Outcome,
    run,
)
from .settings import env_number
from .stores import store_from_url

#: One refresh is mostly waiting on Schwab and AWS, so threads overlap well; bounded so 1,000
#: tokens do not open 1,000 connections at once.
MAX_WORKERS = 16

METRIC_FOR_OUTCOME = {
    REFRESHED: "Refreshed",
    STILL_FRESH: "StillFresh",
    REAUTH_REQUIRED: "ReauthRequired",
    FAILED: "RefreshFailed",
}


ALL_METRICS = frozenset(
    [
        *METRIC_FOR_OUTCOME.values(),
        "AccessTokenSecondsLeft",
        "RefreshTokenHoursLeft",
        "RefreshDuration",
    ]
)
#: What the dashboard and alarms need per token; the rest is only in the aggregate.
PER_TOKEN_METRICS = frozenset(
    ["ReauthRequired", "RefreshFailed", "AccessTokenSecondsLeft", "RefreshTokenHoursLeft"]
)


class RefreshRunFailed(SchwabTokensError):
    """Raised by the handler after reporting, so the invocation counts as failed."""


def refresh_all(
    targets: Sequence[Target],
    *,
    env: Mapping[str, str],
    force: bool = False,
    margin: float = 600.0,
    max_workers: int = MAX_WORKERS,
) -> list[tuple[Target, Outcome]]:
    """Refresh every target concurrently; one token's failure never stops another's."""
    endpoints = _Endpoints(env)

    def one(target: Target) -> tuple[Target, Outcome]:
        try:
            store = store_from_url(target.url)
        except SchwabTokensError as exc:
            return target, Outcome(target.url, exc.outcome, error=exc)
        return target, run(
            store, lambda: endpoints.get(target.credentials_secret), margin=margin, force=force
        )

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        return list(pool.map(one, targets))


class _Endpoints:
    """One token-endpoint client per app, built on first use and shared by its tokens.

    Lazy, so a run where every token is fresh never reads the app credentials; shared, so
    1,000 tokens of one app reuse one connection pool.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self._built: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def get(self, credentials_secret: str | None) -> Any:
        with self._lock:
            if credentials_secret not in self._built:
                from .credentials import load_credentials
                from .oauth import SchwabOAuth

                scoped = dict(self.env)
                if credentials_secret:
                    scoped.pop("SCHWAB_APP_KEY", None)
                    scoped.pop("SCHWAB_APP_SECRET", None)
                    scoped["SCHWAB_CREDENTIALS_SECRET"] = credentials_secret
                creds = load_credentials(env=scoped)
                self._built[credentials_secret] = SchwabOAuth(
                    creds.app_key, creds.app_secret, base_url=self.env.get("SCHWAB_API_BASE")
                )
            return self._built[credentials_secret]


def is_forced(event: Any) -> bool:
    if not isinstance(event, Mapping):
        return False
    detail = event.get("detail")
    return bool(event.get("force") or (isinstance(detail, Mapping) and detail.get("force")))


def handle(event: Any, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """One invocation: refresh, report each token, emit the aggregate, raise if any failed."""
    from .observability import NAMESPACE, SERVICE, logger, metrics

    env = os.environ if env is None else env
    margin = env_number("REFRESH_MARGIN_SECONDS", DEFAULT_MARGIN_SECONDS, env)
    results = refresh_all(targets_from_env(env), env=env, force=is_forced(event), margin=margin)

    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    for target, outcome in results:
        record = {"token": target.name, **outcome.to_dict()}
        level = logger.info if outcome.ok else logger.warning if outcome.temporary else logger.error
        level(f"token {target.name}: {outcome.outcome}", extra=record)
        if len(results) > 1:
            # Per-token copies only when there are several tokens: each is a custom metric
            # billed monthly, and for one token the aggregate says the same.
            per_token = EphemeralMetrics(namespace=NAMESPACE, service=SERVICE)
            per_token.add_dimension(name="Token", value=target.name)
            _add(per_token, MetricUnit, [outcome], PER_TOKEN_METRICS)
            per_token.flush_metrics()

    outcomes = [outcome for _, outcome in results]
    _add(metrics, MetricUnit, outcomes, ALL_METRICS)
    failed = [(t, o) for t, o in results if o.outcome == FAILED]
    metrics.add_metric(name="SuccessfulRun", unit=MetricUnit.Count, value=0 if failed else 1)
    summary = {
        "outcome": _overall(outcomes),
        "tokens": [{"token": t.name, **o.to_dict()} for t, o in results],
    }
    if failed:
        names = ", ".join(t.name for t, _ in failed)
        raise RefreshRunFailed(f"refresh failed for {names}: {failed[0][1].error}")
    return summary


def _add(sink: Any, unit: Any, outcomes: Sequence[Outcome], names: frozenset[str]) -> None:
    """Counts per outcome, plus the worst (lowest) time left, as the alarms want it."""
    values: list[tuple[str, Any, float]] = []
    for outcome_name, metric in METRIC_FOR_OUTCOME.items():
        count = sum(1 for o in outcomes if o.outcome == outcome_name)
        values.append((metric, unit.Count, count))
    access = [o.access_seconds_left for o in outcomes if o.access_seconds_left is not None]
    hours = [o.refresh_hours_left for o in outcomes if o.refresh_hours_left is not None]
    if access:
        values.append(("AccessTokenSecondsLeft", unit.Seconds, min(access)))
    if hours:
        values.append(("RefreshTokenHoursLeft", unit.Count, min(hours)))
    values.append(("RefreshDuration", unit.Milliseconds, max(o.duration_ms for o in outcomes)))
    for name, metric_unit, value in values:
        if name in names:
            sink.add_metric(name=name, unit=metric_unit, value=value)


def _overall(outcomes: Sequence[Outcome]) -> str:
    for worst in (FAILED, REAUTH_REQUIRED, REFRESHED):
        if any(o.outcome == worst for o in outcomes):
            return worst
    return STILL_FRESH
