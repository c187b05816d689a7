"""HTTP for the OAuth client: connection pools shared by a client's calls, urllib3's ``Retry``
with a deadline per call, and what one call got back.

Transient faults are retried (backoff with jitter, ``Retry-After`` honoured and capped) inside
connect and read timeouts, so a call always ends in bounded time. Redirects are never followed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import requests
import urllib3.exceptions
from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter
from urllib3 import PoolManager
from urllib3.util.retry import Retry

#: 403 is here because Schwab's edge answers a transient "Access Denied" HTML page with it.
RETRY_STATUSES = frozenset({403, 429, 500, 502, 503, 504})
#: A token answer is a few kilobytes; reading stops here, whatever the server sends.
MAX_ANSWER_BYTES = 64 * 1024
#: The longest ``Retry-After`` obeyed: one answer cannot stall a run for longer.
MAX_RETRY_AFTER = 20.0


@dataclass
class Deadline:
    """The time budget of one call: when its last answer must be in, and how long a try takes.

    ``at`` is monotonic time. ``cut_short`` says afterwards whether it stopped a retry.
    """

    at: float = math.inf
    try_seconds: float = 0.0
    cut_short: bool = False

    def allows(self, wait: float) -> bool:
        """Whether a try that starts ``wait`` seconds from now ends before the deadline."""
        return time.monotonic() + wait + self.try_seconds <= self.at


class BoundedRetry(Retry):
    """urllib3's ``Retry`` for one call, bounded by the call's ``deadline``.

    ``Retry-After`` is capped at ``MAX_RETRY_AFTER``, and no new try starts that could not end
    before the deadline (under a lease, an answer after the lease ran out is thrown away).
    """

    def __init__(self, *, deadline: Deadline | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.deadline = deadline or Deadline()

    def new(self, **options: Any) -> Self:
        """The next state of this call's retries: the same deadline, new counts."""
        options.setdefault("deadline", self.deadline)
        return super().new(**options)

    def parse_retry_after(self, retry_after: str) -> float:
        """Seconds to wait for a ``Retry-After`` header, at most ``MAX_RETRY_AFTER``."""
        return min(super().parse_retry_after(retry_after), MAX_RETRY_AFTER)

    def increment(self, *args: Any, **kwargs: Any) -> Self:
        """The retries left after one more failed try.

        Raises ``MaxRetryError`` (or, for an error status, lets urllib3 return the answer) when
        no try is left or no time for one.
        """
        new = super().increment(*args, **kwargs)
        response = kwargs.get("response")
        wait = (new.get_retry_after(response) if response is not None else None) or 0.0
        if self.deadline.allows(max(wait, new.get_backoff_time())):
            return new
        self.deadline.cut_short = True
        # No time for another try: spend the last one, so that urllib3 ends the call exactly
        # as it does when the tries are used up.
        return self.new(total=0).increment(*args, **kwargs)


@dataclass(frozen=True)
class Answer:
    """The last answer of one call: status, body, content type, URL and tries.

    The body is the first ``MAX_ANSWER_BYTES + 1`` bytes (decoded); the tries are said in
    words.
    """

    status: int
    body: bytes
    content_type: str
    url: str
    tries: str

    @property
    def is_html(self) -> bool:
        """Whether it is an HTML page (an edge's or a proxy's error page, say)."""
        return "html" in self.content_type.lower() or self.body.lstrip()[:1] == b"<"


class Unreachable(Exception):
    """No answer came.

    ``fault`` names the network fault (never the request's text) and ``tries`` how many tries
    were made.
    """

    def __init__(self, fault: str, tries: str) -> None:
        super().__init__(fault)
        self.fault = fault
        self.tries = tries


class _OneCall(HTTPAdapter):
    """requests' adapter for one call: the call's own ``Retry``, over connection pools it
    shares with the client's other calls."""

    def __init__(self, pools: PoolManager, retry: Retry) -> None:
        self._pools = pools
        super().__init__(max_retries=retry)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        self.poolmanager = self._pools

    def close(self) -> None:
        # The shared pools outlive the call; only proxies opened for it close with it.
        for proxy in self.proxy_manager.values():
            proxy.clear()


class Http:
    """One client's HTTP, with bounded retries; safe to share between threads.

    ``timeout`` is ``(connect, read)`` seconds per try and ``retries`` the extra tries for a
    transient fault. Each call carries its own retries and deadline.
    """

    def __init__(self, timeout: tuple[float, float], retries: int) -> None:
        self.timeout = timeout
        self.retries = retries
        self._pools = PoolManager(num_pools=DEFAULT_POOLSIZE, maxsize=DEFAULT_POOLSIZE)

    def call(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        form: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        deadline: Deadline | None = None,
    ) -> Answer:
        """One request (a ``form`` body, HTTP Basic ``auth``), retried within ``deadline``.

        Returns the last answer, whatever its status; raises ``Unreachable`` when none came."""
        deadline = deadline or Deadline()
        # requests takes the Retry from the adapter, so each call mounts its own, over the
        # shared pools (connections are reused). The session is requests' own: proxies and CA
        # bundles from the environment apply as they always did.
        with requests.Session() as session:
            adapter = _OneCall(self._pools, self.retry(deadline))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            try:
                # A redirect would send the refresh token (and, with auth, the app secret) to
                # wherever the answer points.
                response = session.request(
                    method,
                    url,
                    data=form,
                    auth=auth,
                    headers=headers,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                try:
                    body = response.raw.read(MAX_ANSWER_BYTES + 1, decode_content=True)
                finally:
                    response.close()
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
                raise Unreachable(network_fault(exc), self._tries(None, deadline)) from None
        return Answer(
            response.status_code,
            body,
            response.headers.get("Content-Type", ""),
            url,
            self._tries(response, deadline),
        )

    def retry(self, deadline: Deadline | None = None) -> BoundedRetry:
        """The urllib3 ``Retry`` one call runs under (its backoff, caps and deadline)."""
        return BoundedRetry(
            total=self.retries,
            connect=self.retries,
            read=self.retries,
            status=self.retries,
            other=self.retries,
            backoff_factor=0.5,
            backoff_jitter=0.5,
            backoff_max=8.0,
            status_forcelist=RETRY_STATUSES,
            # The token endpoint is a POST; retrying it is safe because Schwab keeps the same
            # refresh token across refreshes and a code that was used answers 400.
            allowed_methods=frozenset({"GET", "POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
            deadline=deadline or Deadline(),
        )

    def _tries(self, response: requests.Response | None, deadline: Deadline) -> str:
        """How many tries a call made ("4 tries"), and whether the deadline cut them short."""
        retries = response.raw.retries if response is not None else None
        count = len(retries.history) + 1 if retries is not None else self.retries + 1
        if deadline.cut_short:
            return f"{count} tries (no time left on the lease for another)"
        return f"{count} tries"


def network_fault(exc: BaseException) -> str:
    """The kind of network fault, in a few words (the exception's text can quote the request)."""
    text = repr(exc)
    for needle, label in (
        ("ReadTimeout", "read timeout"),
        ("ConnectTimeout", "connect timeout"),
        ("Read timed out", "read timeout"),
        ("Connection refused", "connection refused"),
        ("RemoteDisconnected", "connection closed without an answer"),
        ("NameResolution", "name resolution failed"),
    ):
        if needle in text:
            return label
    return type(exc).__name__
