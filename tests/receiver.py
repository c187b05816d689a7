"""A stand-in for a chat service on 127.0.0.1: it records every request Apprise's ``json://`` and
``form://`` notifications make (path, content type, the title and message they carry) and
answers 200, or what the test asks for (``status``).

``wait_for(n)`` blocks until ``n`` requests arrived (a condition, not a sleep) and returns them.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from devkit.background import BackgroundServer


@dataclass(frozen=True)
class Received:
    path: str
    content_type: str
    fields: dict[str, Any]
    raw: bytes

    @property
    def title(self) -> str:
        return str(self.fields.get("title", ""))

    @property
    def message(self) -> str:
        return str(self.fields.get("message", ""))


class Receiver(BackgroundServer):
    thread_name = "alert-receiver"

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[Received] = []
        self._arrived = threading.Condition()

    def new_server(self) -> ThreadingHTTPServer:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                kind = self.headers.get("Content-Type", "")
                if "json" in kind:
                    fields = json.loads(raw)
                else:
                    fields = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                with receiver._arrived:  # recorded before the sender hears back
                    receiver.requests.append(Received(self.path, kind, fields, raw))
                    receiver._arrived.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass  # the bodies carry the login link: nothing printed

        return ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def json_url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def form_url(self, path: str = "form") -> str:
        return f"form://127.0.0.1:{self.port}/{path}"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.requests) >= count, timeout)
            assert len(self.requests) >= count, f"{len(self.requests)} of {count} arrived"
            return list(self.requests)
