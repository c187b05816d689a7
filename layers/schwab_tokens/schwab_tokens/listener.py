"""The CLI login's HTTPS listener on the app's registered callback (``https://127.0.0.1:PORT``).

It serves the callback with a self-signed certificate made at run time, so nothing needs to be
installed or trusted first; the browser warns once, as it does for schwab-py's own login flow.
Each connection's TLS handshake happens in that connection's own thread, with a timeout, so an
idle or slow client cannot stall the accept loop. A request whose ``state`` is not this login's
(an old tab, a stray probe) gets a page saying so and is otherwise ignored: the listener keeps
waiting for the real one until the login times out.

Links pasted in the terminal join the same queue (``LinkQueue``, which ``login --paste`` uses
alone). A pasted link that is not this login's answer is refused with the reason and the next
one is awaited at once: Schwab's code in the browser's address bar lives about 30 seconds.
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
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import pages
from .errors import CallbackError, SchwabTokensError, UnusableLink, UsageError
from .login_flow import check_callback_url
from .token import Token

#: A reply to the browser tab that delivered a link: (succeeded, message).
Reply = Callable[[bool, str], None]
#: How long a client may take to finish the TLS handshake and send its request.
CONNECTION_TIMEOUT_SECONDS = 10.0
#: How many links that are not this login's answer (pasted or from the browser) one login
#: takes before it stops: enough for a few slips, not an endless loop fed by a script.
MAX_UNUSABLE_LINKS = 5
#: A queued link, and how to answer the browser tab that delivered it (None: it was pasted).
#: A link of None is the end of the pasted input.
Arrival = tuple[str | None, Reply | None]


class LinkQueue:
    """The links of one login, in the order they arrive.

    Lines pasted on a stream, then (when asked) its end, which cancels the login.
    """

    def __init__(self) -> None:
        self.links: queue.Queue[Arrival] = queue.Queue()

    def feed_lines(self, stream: Any, *, end_cancels: bool = True) -> None:
        """Accept links pasted on ``stream``, one a line (a background thread).

        The stream's end cancels the login if ``end_cancels`` (Ctrl-D at a terminal) or once a
        line was pasted. An input that is over before any line (nohup, a job's ``</dev/null``)
        only ends the pasting: the browser's redirect can still come.
        """

        def pump() -> None:
            pasted = False
            for line in iter(stream.readline, ""):
                if line.strip():
                    pasted = True
                    self.links.put((line.strip(), None))
            if end_cancels or pasted:
                self.links.put((None, None))

        threading.Thread(target=pump, name="login-paste", daemon=True).start()

    def next_link(self, timeout: float | None) -> Arrival:
        """The next arrival; ``queue.Empty`` when none came within ``timeout`` seconds."""
        return self.links.get(timeout=None if timeout is None else max(timeout, 0.0))


class CallbackListener(LinkQueue):
    """An HTTPS server on the callback URL that queues each returned link of this login.

    Links of this login are those with its ``state``; pasted links are queued beside them.
    """

    def __init__(
        self, callback_url: str, state: str | None = None, reply_timeout: float = 60.0
    ) -> None:
        super().__init__()
        parts = urlsplit(check_callback_url(callback_url))
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.path = parts.path or "/"
        self.state = state
        self.reply_timeout = reply_timeout
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
    """Stop ``server`` (if any) and close its socket."""
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
    links: LinkQueue,
    handle: Callable[[str], Token],
    timeout: float | None,
    say: Callable[[str], None] | None = None,
) -> Token:
    """Wait for a link (browser or paste), complete the login, and answer the browser tab.

    A link that is not this login's answer (``UnusableLink``) is refused with the reason, told
    to ``say``, and the next one awaited. The login ends with ``CallbackError`` (exit 3) after
    ``MAX_UNUSABLE_LINKS`` such links, at the end of the pasted input, or after ``timeout``
    seconds (None: no limit); with Schwab's own errors as they come."""
    deadline = None if timeout is None else time.monotonic() + timeout
    refused = 0
    while True:
        try:
            link, reply = links.next_link(None if deadline is None else deadline - time.monotonic())
        except queue.Empty:
            raise CallbackError(
                f"no login arrived within {timeout:.0f} s; run `schwab-tokens login` again"
            ) from None
        if link is None:
            raise CallbackError(
                "login cancelled: the input ended before this login's link was pasted; the token "
                "store was not changed"
            )
        try:
            token = handle(link)
        except UnusableLink as exc:
            refused += 1
            left = MAX_UNUSABLE_LINKS - refused
            if not left:
                _answer(reply, False, f"{exc}. The token store was not changed.")
                raise CallbackError(
                    f"{exc}; {MAX_UNUSABLE_LINKS} links were not this login's answer, so it "
                    "stops: run `schwab-tokens login` again"
                ) from None
            _answer(reply, False, f"{exc}. The terminal is still waiting for this login.")
            if say is not None:
                tries = "1 more try" if left == 1 else f"{left} more tries"
                say(f"{exc}\nPaste the address the browser was sent to ({tries}):")
            continue
        except SchwabTokensError as exc:
            _answer(reply, False, f"{exc} The token store was not changed.")
            raise
        except BaseException:
            _answer(reply, False, "An unexpected error stopped the login; see the terminal.")
            raise
        _answer(reply, True, "The Schwab login succeeded and the token is stored.")
        return token


def _answer(reply: Reply | None, ok: bool, message: str) -> None:
    """Answer the browser tab that delivered the link (a pasted one has none)."""
    if reply is not None:
        reply(ok, message)


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
    "MAX_UNUSABLE_LINKS",
    "CallbackListener",
    "LinkQueue",
    "listen_for_login",
    "serve_in_background",
    "stop_serving",
    "tls_context",
]
