"""A local stand-in for a Lambda Function URL: HTTPS on 127.0.0.1 in front of the login handler.

Each request becomes a payload-format-2.0 event (method, raw path, raw query, cookies, the
``domainName`` AWS would set) for ``schwab_tokens.lambdas.login.handle``, and its answer goes back
as AWS sends it (status, headers, one ``Set-Cookie`` per cookie, body). Used by the headless-
Chromium phone test and by ``make demo``. The certificate is self-signed, made at start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from schwab_tokens.lambdas.login import handle
from schwab_tokens.listener import serve_in_background, stop_serving, tls_context
from schwab_tokens.settings import Settings


class FunctionUrl:
    """``with FunctionUrl(settings) as url:`` serves the hosted login at ``url.login_url``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.requests: list[tuple[str, int]] = []  # (path, status): what the "function" answered
        self._server: ThreadingHTTPServer | None = None

    @property
    def login_url(self) -> str:
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> FunctionUrl:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        server.socket = tls_context("127.0.0.1").wrap_socket(server.socket, server_side=True)
        self._server = serve_in_background(server, "function-url")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_serving(self._server)

    def invoke(self, method: str, target: str, headers: Any) -> dict[str, Any]:
        parts = urlsplit(target)
        host = headers.get("Host", "127.0.0.1")
        event = {
            "version": "2.0",
            "rawPath": parts.path,
            "rawQueryString": parts.query,
            "cookies": [c.strip() for c in headers.get("Cookie", "").split(";") if c.strip()],
            "headers": {k.lower(): v for k, v in headers.items()},
            "requestContext": {"domainName": host, "http": {"method": method, "path": parts.path}},
        }
        answer = handle(event, self.settings, self.clock)
        self.requests.append((parts.path, int(answer["statusCode"])))
        return answer


def _handler(url: FunctionUrl) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            answer = url.invoke(method, self.path, self.headers)
            body = str(answer.get("body") or "").encode()
            self.send_response(int(answer["statusCode"]))
            for name, value in answer.get("headers", {}).items():
                self.send_header(name, value)
            for cookie in answer.get("cookies", []):
                self.send_header("Set-Cookie", cookie)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer("GET")

        def do_POST(self) -> None:
            self._answer("POST")

        def log_message(self, format: str, *args: object) -> None:
            pass  # request lines carry Schwab's code and the ticket

    return Handler
