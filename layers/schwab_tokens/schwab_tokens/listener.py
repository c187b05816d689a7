"""The CLI login's HTTPS listener on the app's registered callback (``https://127.0.0.1:PORT``).

It serves the callback with a self-signed certificate made at run time, so nothing needs to be
installed or trusted first; the browser warns once, as it does for schwab-py's own login flow.
Each connection's TLS handshake happens in that connection's own thread, with a timeout, so an
idle or slow client cannot stall the accept loop. A request whose ``state`` is not this login's
(an old tab, a stray probe) gets a page saying so and is otherwise ignored: the listener keeps
waiting for the real one until the login times out.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import queue
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import pages
from .errors import CallbackError, SchwabTokensError, UsageError
from .login import check_callback_url
from .token import Token

#: A reply to the browser tab that delivered a link: (succeeded, message).
Reply = Callable[[bool, str], None]
#: How long a client may take to finish the TLS handshake and send its request.
CONNECTION_TIMEOUT_SECONDS = 10.0


class CallbackListener:
    """An HTTPS server on the callback URL handing each returned link of this login (its
    ``state``) to the caller."""

    def __init__(
        self, callback_url: str, state: str | None = None, reply_timeout: float = 60.0
    ) -> None:
        parts = urlsplit(check_callback_url(callback_url))
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.path = parts.path or "/"
        self.state = state
        self.reply_timeout = reply_timeout
        self.links: queue.Queue[tuple[str, Reply | None]] = queue.Queue()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> CallbackListener:
        try:
            server = _TLSServer((self.host, self.port), _handler_for(self))
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}); free the port or "
                "use `schwab-tokens login --paste`"
            ) from None
        # The handshake is done per connection, in its thread (see _TLSServer.finish_request).
        server.socket = tls_context(self.host).wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._server = serve_in_background(server, "login-callback")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_serving(self._server)

    def feed_lines(self, stream: Any) -> None:
        """Also accept links pasted on ``stream`` (a background thread; EOF just stops it)."""

        def pump() -> None:
            for line in iter(stream.readline, ""):
                if line.strip():
                    self.links.put((line.strip(), None))

        threading.Thread(target=pump, name="login-paste", daemon=True).start()

    def next_link(self, timeout: float) -> tuple[str, Reply | None]:
        try:
            return self.links.get(timeout=timeout)
        except queue.Empty:
            raise CallbackError(
                f"no login arrived within {timeout:.0f} s; run `schwab-tokens login` again"
            ) from None

    def is_ours(self, query: str) -> bool:
        """Whether a request's ``state`` is this login's (any state when none was given)."""
        if self.state is None:
            return True
        try:
            values = parse_qs(query, keep_blank_values=True, max_num_fields=50).get("state")
        except ValueError:
            return False
        return values == [self.state]


def serve_in_background(server: ThreadingHTTPServer, name: str) -> ThreadingHTTPServer:
    """Serve ``server`` from a daemon thread (it dies with the process); returns it."""
    threading.Thread(target=server.serve_forever, name=name, daemon=True).start()
    return server


def stop_serving(server: ThreadingHTTPServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs in the connection's own thread: a client that never completes the handshake
        # only holds this thread, for at most the timeout.
        request.settimeout(CONNECTION_TIMEOUT_SECONDS)
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError):
            with contextlib.suppress(OSError):
                request.close()
            return
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up or timed out is not the user's problem


def _handler_for(listener: CallbackListener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != listener.path:
                self._send(404, "Not found", "This is the schwab-tokens login listener.")
                return
            if not listener.is_ours(parts.query):
                self._send(
                    400,
                    "Not this login",
                    "This address does not belong to the login the terminal is waiting for "
                    "(an old tab?). Use the Schwab address the terminal printed.",
                )
                return
            done = threading.Event()
            sent = threading.Event()
            result: list[tuple[bool, str]] = []

            def reply(ok: bool, message: str) -> None:
                result.append((ok, message))
                done.set()
                # The caller may exit right after: wait until the browser has its page.
                sent.wait(5.0)

            link = f"https://{self.headers.get('Host', '127.0.0.1')}{self.path}"
            listener.links.put((link, reply))
            try:
                if not done.wait(listener.reply_timeout):
                    self._send(504, "Login still in progress", "Check the terminal.")
                    return
                ok, message = result[0]
                if ok:
                    self._send(200, "Login succeeded", message + " You can close this tab.")
                else:
                    self._send(400, "Login failed", message)
            finally:
                sent.set()

        def _send(self, status: int, title: str, message: str) -> None:
            body = pages.render(title, [message]).encode()
            self.send_response(status)
            for name, value in pages.HEADERS.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # request lines carry the authorization code

    return Handler


def listen_for_login(
    listener: CallbackListener,
    handle: Callable[[str], Token],
    timeout: float,
) -> Token:
    """Wait for a link (browser or paste), complete the login, and answer the browser tab."""
    link, reply = listener.next_link(timeout)
    try:
        token = handle(link)
    except SchwabTokensError as exc:
        if reply is not None:
            reply(False, f"{exc} The token store was not changed.")
        raise
    except BaseException:
        if reply is not None:
            reply(False, "An unexpected error stopped the login; see the terminal.")
        raise
    if reply is not None:
        reply(True, "The Schwab login succeeded and the token is stored.")
    return token


def tls_context(host: str) -> ssl.SSLContext:
    """A server context with a throwaway self-signed certificate for ``host``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with _self_signed_files(host) as (cert, key):
        context.load_cert_chain(cert, key)
    return context


@contextlib.contextmanager
def _self_signed_files(host: str) -> Iterator[tuple[str, str]]:
    """A throwaway certificate for ``host``, on disk only while ``ssl`` loads it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory(prefix="schwab-tokens-") as folder:
        cert_path = os.path.join(folder, "cert.pem")
        key_path = os.path.join(folder, "key.pem")
        with open(cert_path, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )
        yield cert_path, key_path


__all__ = [
    "CallbackListener",
    "listen_for_login",
    "serve_in_background",
    "stop_serving",
    "tls_context",
]
