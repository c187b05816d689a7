"""Point a schwab-py (authlib/httpx) client at the emulator instead of api.schwabapi.com."""

from __future__ import annotations

from typing import Any

import httpx

SCHWAB_HOST = "api.schwabapi.com"


class HostNotEmulatedError(RuntimeError):
    """A request for a host other than api.schwabapi.com: refused, nothing leaves the box."""


class EmulatorTransport(httpx.BaseTransport):
    """Send ``https://api.schwabapi.com/<path>?<query>`` to ``<base_url>/<path>?<query>``.

    Any other scheme or host raises :class:`HostNotEmulatedError` before a socket is opened.
    The response keeps the original request, so ``response.url`` still names Schwab.
    """

    def __init__(self, base_url: str, inner: httpx.BaseTransport | None = None) -> None:
        self._base = _loopback(base_url)
        self._inner = inner if inner is not None else httpx.HTTPTransport(trust_env=False)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._inner.handle_request(_forwarded(request, self._base))

    def close(self) -> None:
        self._inner.close()


class AsyncEmulatorTransport(httpx.AsyncBaseTransport):
    """:class:`EmulatorTransport` for an asynchronous client (schwab-py's ``asyncio=True``)."""

    def __init__(self, base_url: str) -> None:
        self._base = _loopback(base_url)
        self._inner = httpx.AsyncHTTPTransport(trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self._inner.handle_async_request(_forwarded(request, self._base))

    async def aclose(self) -> None:
        await self._inner.aclose()


def _loopback(base_url: str) -> httpx.URL:
    base = httpx.URL(base_url)
    if base.scheme != "http" or base.host not in ("127.0.0.1", "localhost"):
        raise ValueError(f"emulator base URL must be http on loopback, got {base_url!r}")
    return base


def _forwarded(request: httpx.Request, base: httpx.URL) -> httpx.Request:
    url = request.url
    if url.scheme != "https" or url.host != SCHWAB_HOST or url.port not in (None, 443):
        raise HostNotEmulatedError(
            f"refusing {request.method} to {url.scheme}://{url.host}: only "
            f"https://{SCHWAB_HOST} is routed to the emulator"
        )
    headers = request.headers.copy()
    headers["Host"] = base.netloc.decode("ascii")
    return httpx.Request(
        request.method,
        base.copy_with(raw_path=url.raw_path),
        headers=headers,
        stream=request.stream,
        extensions=request.extensions,
    )


def point_client_at_emulator(client: Any, base_url: str) -> Any:
    """Install an :class:`EmulatorTransport` on a schwab-py client (an
    :class:`AsyncEmulatorTransport` on an asynchronous one).

    ``client.session`` is authlib's ``OAuth2Client``, an ``httpx.Client`` (``AsyncOAuth2Client``,
    an ``httpx.AsyncClient``). httpx 0.28 picks a transport per request in
    ``_transport_for_url``: the first matching entry of ``_mounts`` (proxies from the
    environment, or ``mounts=``) wins, else ``_transport``. So we replace ``_transport`` and
    empty ``_mounts``; token refreshes go through the same session, hence through the emulator
    too.
    """
    session = client.session
    if isinstance(session, httpx.AsyncClient):
        # Its transports open no connection before a request: nothing to close.
        session._transport = AsyncEmulatorTransport(base_url)
        session._mounts = {}
        return session._transport
    if not isinstance(session, httpx.Client):
        raise TypeError(
            f"expected a schwab-py client (an httpx session), got {type(session).__name__}"
        )
    transport = EmulatorTransport(base_url)
    old = session._transport
    session._transport = transport
    old_mounts = [t for t in session._mounts.values() if t is not None]
    session._mounts = {}
    for stale in [old, *old_mounts]:
        stale.close()
    return transport
