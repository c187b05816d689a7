"""A small HTTP proxy in front of moto's server that answers a missing object the way S3 does.

Real S3 answers **403 AccessDenied**, not 404 NoSuchKey, to ``GetObject`` / ``HeadObject`` of a
missing key when the caller has no ``s3:ListBucket`` on the bucket (it will not tell a caller
that may not list the bucket whether a key exists). moto always answers 404. A test that only
passes against moto's 404 proves nothing about AWS (docs/architecture.md, "Where the real
services are less kind than the stand-ins"), so this proxy sits between botocore and moto:

- every request is forwarded unchanged (method, path, query, headers including the SigV4
  signature and ``Host``, raw body bytes) to moto, and moto's answer is relayed;
- except where the caller is not taken to hold ``s3:ListBucket`` on the bucket: a ``GET`` of an
  object (``/BUCKET/KEY``) that moto answers 404 ``NoSuchKey``, or a ``HEAD`` of an object that
  moto answers with an empty 404, is answered 403 with S3's ``AccessDenied`` XML (``HEAD``: 403,
  no body). A missing bucket (``NoSuchBucket``) stays 404, as on S3: bucket names are global and
  not secret.

``list_bucket`` says who holds ``s3:ListBucket``: ``False`` (nobody), ``True`` (everybody), or a
rule that takes the bucket's name, e.g. ``tests.template.iam.lists_bucket`` over a role's
policies as the template deploys them, so that S3's answer follows the template.

Only path-style addressing is understood: botocore uses it against an IP endpoint such as
``http://127.0.0.1:PORT`` (checked in ``tests/integration/test_s3_proxy.py``).

Bodies: botocore sends ``put_object`` with ``Content-Length`` and ``Expect: 100-continue``
(the checksum travels in ``x-amz-checksum-crc32``; ``aws-chunked`` framing, used over HTTPS,
still has a ``Content-Length``). The proxy answers the ``100 Continue`` itself (it speaks
HTTP/1.1) and forwards exactly ``Content-Length`` bytes; a ``Transfer-Encoding: chunked`` body
is read frame by frame and forwarded as the same raw bytes with the same header. Every answer
closes its connection (``Connection: close``): botocore's pool simply opens a new one.

Nothing here logs: requests carry tokens in their bodies.
"""

from __future__ import annotations

import base64
import http.client
import secrets
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from devkit.background import BackgroundServer

#: Headers that describe one connection, not the message: never relayed as they are.
#: (``Transfer-Encoding`` is one too, but a chunked request body is forwarded raw, so the
#: request keeps it; a relayed answer is re-framed with its own ``Content-Length``.)
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    }
)
#: Request headers the proxy consumes itself: it answered ``Expect: 100-continue`` already.
#: Neither is in SigV4's signed headers, so dropping them leaves the signature valid.
_NOT_FORWARDED = _HOP_BY_HOP | {"expect"}
_NOT_RELAYED = _HOP_BY_HOP | {"transfer-encoding", "content-length"}

UPSTREAM_TIMEOUT = 30.0
#: Whether the caller holds ``s3:ListBucket``: for every bucket, or per bucket name.
ListBucketRule = bool | Callable[[str], bool]
_MAX_CHUNK_LINE = 1024


def access_denied_xml(request_id: str, host_id: str) -> bytes:
    """S3's body for a refused request, byte for byte in S3's layout."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>AccessDenied</Code><Message>Access Denied</Message>"
        f"<RequestId>{request_id}</RequestId><HostId>{host_id}</HostId></Error>"
    ).encode()


def _asks_policy(target: str) -> bool:
    """Whether ``target`` is a GetBucketPolicy request (``/BUCKET?policy``)."""
    path, _, query = target.partition("?")
    return path.strip("/").count("/") == 0 and "policy" in query.split("&")


def object_address(target: str) -> tuple[str, str] | None:
    """``(bucket, key)`` of a path-style object request target, else ``None``.

    ``/BUCKET`` and ``/BUCKET/`` address the bucket (list, head bucket), not an object.
    """
    path = urlsplit(target).path
    bucket, _, key = path.lstrip("/").partition("/")
    if not bucket or not key:
        return None
    return unquote(bucket), unquote(key)


class S3Proxy(BackgroundServer):
    """An HTTP proxy on a free port of 127.0.0.1 in front of ``upstream`` (moto's server URL).

    ``list_bucket``: whether the caller is taken to hold ``s3:ListBucket`` (moto's answers
    relayed as they are) or not (a missing object is 403), for every bucket or, as a rule of the
    bucket's name, per bucket. ``requests`` counts the requests forwarded, ``rewritten`` the 404s
    turned into 403s; ``reset`` zeroes both.
    """

    thread_name = "s3-proxy"

    def __init__(self, upstream: str, *, list_bucket: ListBucketRule = False) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"upstream must be http://HOST:PORT, got {upstream!r}")
        self.upstream_host: str = parts.hostname
        self.upstream_port: int = parts.port
        self.list_bucket: ListBucketRule = list_bucket
        #: Answer GetBucketPolicy 403 AccessDenied, as S3 does a caller without
        #: s3:GetBucketPolicy (moto shows any caller the policy).
        self.policy_private = False
        self._lock = threading.Lock()
        self._requests = 0
        self._rewritten = 0

    # ------------------------------------------------------------------ lifecycle

    def new_server(self) -> _Server:
        return _Server(("127.0.0.1", 0), self)

    # ------------------------------------------------------------------ counters

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def rewritten(self) -> int:
        with self._lock:
            return self._rewritten

    def reset(self, *, list_bucket: ListBucketRule = False) -> None:
        """Zero the counters and set ``list_bucket`` (between tests sharing one proxy)."""
        with self._lock:
            self._requests = 0
            self._rewritten = 0
            self.list_bucket = list_bucket
            self.policy_private = False

    def _count(self, *, rewritten: bool) -> None:
        with self._lock:
            self._requests += 1
            if rewritten:
                self._rewritten += 1

    # ------------------------------------------------------------------ the rule

    def hides_missing_object(
        self, method: str, target: str, status: int, headers: http.client.HTTPMessage, body: bytes
    ) -> bool:
        """Whether S3 would answer this 404 with 403 AccessDenied (see the module docstring)."""
        address = object_address(target)
        if status != 404 or address is None or self.may_list(address[0]):
            return False
        if method == "GET":
            return b"<Code>NoSuchKey</Code>" in body
        if method == "HEAD":
            # moto answers a HEAD of a missing key with an empty 404 (Content-Length: 0); a
            # missing bucket's NoSuchBucket declares its XML's length even on HEAD.
            return headers.get("Content-Length", "0").strip() == "0"
        return False

    def may_list(self, bucket: str) -> bool:
        """Whether the caller is taken to hold ``s3:ListBucket`` on ``bucket``."""
        rule = self.list_bucket
        return rule(bucket) if callable(rule) else bool(rule)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # 20 writers at once must not overflow the listen backlog (5 by default): an overflowing
    # SYN is dropped and retried a second later, which looks like a slow S3.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: S3Proxy) -> None:
        super().__init__(address, _Handler)
        self.proxy = proxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up (a timeout test) is normal; anything else is a proxy bug.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.1, so that BaseHTTPRequestHandler answers botocore's ``Expect: 100-continue``
    # at once (an HTTP/1.0 server would make botocore wait a second for it on every PUT).
    protocol_version = "HTTP/1.1"
    server_version = "S3Proxy/1.0"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging."""

    def _raw_body(self) -> bytes:
        """The request body exactly as received (chunk framing included, if chunked)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = bytearray()
            while True:
                line = self.rfile.readline(_MAX_CHUNK_LINE)
                raw += line
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    break
                raw += self.rfile.read(size + 2)  # the data and its CRLF
            while True:  # trailer fields, then the empty line that ends the message
                line = self.rfile.readline(_MAX_CHUNK_LINE)
                raw += line
                if line in (b"\r\n", b"\n", b""):
                    return bytes(raw)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _forward(self, method: str, body: bytes) -> tuple[int, str, http.client.HTTPMessage, bytes]:
        assert isinstance(self.server, _Server)
        proxy = self.server.proxy
        conn = http.client.HTTPConnection(
            proxy.upstream_host, proxy.upstream_port, timeout=UPSTREAM_TIMEOUT
        )
        try:
            # Host and Accept-Encoding are the client's own (Host is signed): add none.
            conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _NOT_FORWARDED:
                    conn.putheader(name, value)
            conn.endheaders()
            if body:
                conn.send(body)
            answer = conn.getresponse()  # skips a 100 Continue; never follows a redirect
            data = answer.read()  # empty for HEAD, 204 and 304
            return answer.status, answer.reason, answer.msg, data
        finally:
            conn.close()

    def _handle(self, method: str) -> None:
        assert isinstance(self.server, _Server)
        proxy = self.server.proxy
        self.close_connection = True
        body = self._raw_body()
        if proxy.policy_private and method == "GET" and _asks_policy(self.path):
            proxy._count(rewritten=True)
            self._access_denied(method)
            return
        try:
            status, reason, headers, data = self._forward(method, body)
        except (OSError, http.client.HTTPException) as exc:
            proxy._count(rewritten=False)
            self._send(502, "Bad Gateway", [("Content-Type", "text/plain")], str(exc).encode())
            return
        rewrite = proxy.hides_missing_object(method, self.path, status, headers, data)
        proxy._count(rewritten=rewrite)
        if rewrite:
            self._access_denied(method)
            return
        relayed = [(k, v) for k, v in headers.items() if k.lower() not in _NOT_RELAYED]
        if method == "HEAD" or status in (204, 304):
            # A HEAD answer declares the length the GET would have: relay it, send no body.
            # (204 and 304 have no body either: whatever moto said is relayed as it is.)
            length = headers.get("Content-Length")
            if length is not None:
                relayed.append(("Content-Length", length))
            self._send(status, reason, relayed, b"", declare_length=False)
        else:
            self._send(status, reason, relayed, data)

    def _send(
        self,
        status: int,
        reason: str,
        headers: list[tuple[str, str]],
        body: bytes,
        *,
        declare_length: bool = True,
    ) -> None:
        # send_response_only: moto's own Server and Date headers are relayed, not doubled.
        self.send_response_only(status, reason)
        for name, value in headers:
            self.send_header(name, value)
        if declare_length:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)
        self.wfile.flush()

    def _access_denied(self, method: str) -> None:
        """S3's 403 AccessDenied (HEAD: no body)."""
        request_id = secrets.token_hex(8).upper()
        host_id = base64.b64encode(secrets.token_bytes(48)).decode()
        self._send(
            403,
            "Forbidden",
            [
                ("x-amz-request-id", request_id),
                ("x-amz-id-2", host_id),
                ("Content-Type", "application/xml"),
                ("Server", "AmazonS3"),
            ],
            b"" if method == "HEAD" else access_denied_xml(request_id, host_id),
        )

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
