"""The one-off browser login: callback validation, the HTTPS listener, and storing the first token.

The listener serves the app's registered callback (``https://127.0.0.1:PORT/...``) with a
self-signed certificate made at run time, so nothing needs to be installed or trusted first;
the browser shows a warning once, as it does for schwab-py's own login flow.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import ipaddress
import os
import queue
import ssl
import tempfile
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from .errors import CallbackError, SchwabTokensError, UsageError, WriteConflict
from .oauth import SchwabOAuth, parse_callback
from .stores import TokenStore
from .token import Token

DEFAULT_CALLBACK_URL = "https://127.0.0.1:8182"

#: A reply to the browser tab that delivered a link: (succeeded, message).
Reply = Callable[[bool, str], None]


def check_callback_url(url: str) -> str:
    """Schwab and schwab-py both insist on an https callback on 127.0.0.1."""
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise UsageError(f"the callback URL must start with https:// (got {url!r})")
    if parts.hostname != "127.0.0.1":
        raise UsageError(
            f"the callback URL's host must be 127.0.0.1 (got {parts.hostname!r}); schwab-py "
            "refuses localhost, and it must match the app's callback registered with Schwab"
        )
    return url


def complete_login(
    oauth: SchwabOAuth, store: TokenStore, link: str, state: str, callback_url: str
) -> Token:
    """Exchange the code in ``link`` and store the first token (replacing any older login)."""
    code = parse_callback(link, state)
    token = Token.from_login(oauth.exchange_code(code, callback_url))
    for _ in range(3):
        try:
            store.write(token, store.version())
            return token
        except WriteConflict:
            continue  # a refresher wrote between our version check and write; a login wins
    raise WriteConflict(f"{store.url} kept changing while the login was being stored")


class CallbackListener:
    """An HTTPS server on the callback URL handing each returned link to the caller."""

    def __init__(self, callback_url: str, reply_timeout: float = 60.0) -> None:
        parts = urlsplit(check_callback_url(callback_url))
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.path = parts.path or "/"
        self.reply_timeout = reply_timeout
        self.links: queue.Queue[tuple[str, Reply | None]] = queue.Queue()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> CallbackListener:
        handler = _handler_for(self)
        try:
            server = ThreadingHTTPServer((self.host, self.port), handler)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {self.host}:{self.port} ({exc.strerror}); free the port or "
                "use `schwab-tokens login --paste`"
            ) from None
        server.daemon_threads = True
        with _self_signed_files(self.host) as (cert, key):
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, name="login-callback", daemon=True).start()
        self._server = server
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def feed_lines(self, stream: object) -> None:
        """Also accept links pasted on ``stream`` (a background thread; EOF just stops it)."""

        def pump() -> None:
            for line in iter(stream.readline, ""):  # type: ignore[attr-defined]
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


def _handler_for(listener: CallbackListener) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if urlsplit(self.path).path != listener.path:
                self._send(404, "Not found", "This is the schwab-tokens login listener.")
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
            body = _page(title, message).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # request lines carry the authorization code

    return Handler


def _page(title: str, message: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>schwab-tokens: {html.escape(title)}</title></head>"
        f"<body style='font-family:sans-serif;margin:3em'><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    )


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
