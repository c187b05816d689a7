"""Servers on 127.0.0.1 served from a daemon thread (the emulator, the tests' S3 proxy and alert
receiver), and a free port for a server started elsewhere."""

from __future__ import annotations

import socket
import threading
from http.server import ThreadingHTTPServer
from typing import Self


def free_port() -> int:
    """A TCP port on 127.0.0.1 that no one listens on now (another process may take it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BackgroundServer:
    """Start and stop (or ``with``), ``port`` and ``url``; a subclass says how to make its
    server (``new_server``) and what to call its thread (``thread_name``)."""

    thread_name = "test-server"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def new_server(self) -> ThreadingHTTPServer:
        raise NotImplementedError

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._server = self.new_server()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.thread_name} is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
