"""Refresh many tokens in one go: one policy run per token, concurrently, each isolated.

One token's failure, expected or not, never stops another's run, log line or metric. Token
endpoints are built lazily and shared per app: a run where every token is fresh never reads
the app credentials, and 1,000 tokens of one app reuse one connection pool. Each token's store
is opened once and handed back with its result, so what follows the run (notes, notifications)
uses the same store and whatever it learnt (the KMS key it saw).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, NamedTuple

from .credentials import load_credentials
from .errors import SchwabTokensError, UnexpectedError
from .manifest import Target
from .policy import Clock, RunResult, run
from .settings import Settings
from .stores import TokenStore, store_from_url

if TYPE_CHECKING:  # requests loads only when a token is due: a fresh run's cold start skips it
    from .oauth import SchwabOAuth

#: One refresh is mostly waiting on Schwab and AWS, so threads overlap well; bounded so 1,000
#: tokens do not open 1,000 connections at once.
MAX_WORKERS = 16


class TokenRun(NamedTuple):
    """One token's run: its target, its store (None when the URL is unusable) and the result."""

    target: Target
    store: TokenStore | None
    result: RunResult


def refresh_all(
    targets: Sequence[Target],
    settings: Settings,
    *,
    force: bool | Callable[[Target, TokenStore], bool] = False,
    clock: Clock = time.time,
    max_workers: int = MAX_WORKERS,
) -> list[TokenRun]:
    """Run the refresh policy on every target; the runs come back in the targets' order.

    ``force``: refresh even fresh tokens (all of them, or those for which it answers true).
    Never raises for a token: its error is in its ``RunResult``.
    """
    endpoints = Endpoints(settings)

    def one(target: Target) -> TokenRun:
        started = time.monotonic()
        store: TokenStore | None = None
        try:
            store = store_from_url(target.url, settings)
            forced = force(target, store) if callable(force) else force
            return TokenRun(
                target,
                store,
                run(
                    store,
                    lambda: endpoints.get(target.credentials_secret),
                    margin=settings.refresh_margin,
                    force=forced,
                    lease_ttl=settings.lease_ttl,
                    clock=clock,
                ),
            )
        except SchwabTokensError as exc:  # the store URL itself is unusable
            error: SchwabTokensError = exc
        except Exception as exc:  # a bug must not silence the other tokens
            error = UnexpectedError.wrap(exc)
        result = RunResult(target.url, error.outcome, error=error, checked_at=clock())
        result.duration_ms = (time.monotonic() - started) * 1000
        return TokenRun(target, store, result)

    if len(targets) == 1:
        return [one(targets[0])]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(targets))) as pool:
        return list(pool.map(one, targets))


class Endpoints:
    """One token-endpoint client per app (per credentials source), built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str | None, SchwabOAuth] = {}
        self._lock = threading.Lock()

    def get(self, credentials_source: str | None = None) -> SchwabOAuth:
        """The token-endpoint client of the app whose credentials are at ``credentials_source``.

        Raises what ``load_credentials`` raises (``ConfigurationError``, ``TemporaryFailure``).
        """
        with self._lock:
            if credentials_source not in self._built:
                from .oauth import SchwabOAuth

                creds = load_credentials(self.settings, source=credentials_source)
                self._built[credentials_source] = SchwabOAuth.from_settings(
                    creds.app_key, creds.app_secret, self.settings
                )
            return self._built[credentials_source]
