"""Run a documented consumer snippet as a consumer would: in a fresh module, with the
environment a consumer Lambda has, against the Schwab emulator and moto's server.

``run_consumer`` sets ``TOKEN_ACCESS_URL``, ``TOKEN_STORE_URL``, ``SCHWAB_APP_KEY``,
``SCHWAB_APP_SECRET`` and ``SCHWAB_API_BASE``, execs the block as module ``consumer`` and calls
its ``handler(event, context)`` (and ``lambda_handler``, the template's handler name) with
``({}, None)``. Nothing leaves the machine:

- every name lookup for a host other than the loopback is refused (a snippet that hard-codes
  ``https://api.schwabapi.com`` fails, naming the host: take the base from ``SCHWAB_API_BASE``);
- schwab-py: ``schwab.auth.client_from_access_functions`` (which ``schwab_py_client()`` calls
  too) is wrapped so the client it returns talks to the emulator
  (``devkit.emulator.schwabpy.point_client_at_emulator``);
- Schwabdev: its clients' ``_base_api_url`` is the emulator, and a post to Schwab's token
  endpoint (``schwabdev.tokens.requests.post``) fails the run: a consumer never refreshes.
"""

from __future__ import annotations

import re
import socket
import sys
import traceback
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.docs.checker import Block

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0", ""})


class ConsumerFailed(AssertionError):
    """The snippet raised (the message says where, in the doc's own line numbers)."""


class LeftTheMachine(ConnectionRefusedError):
    """A snippet tried to reach a host other than the loopback."""


def run_consumer(
    block: Block,
    env: Mapping[str, str],
    api_base: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp: Path | None = None,
) -> dict[str, Any]:
    """Run ``block``; return its module namespace. Raises ``ConsumerFailed``.

    ``tmp``: a folder that stands for Lambda's ``/tmp`` (a string literal starting ``/tmp/``
    in the snippet names a path under it instead), so that no test writes outside its own."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    attempts = _loopback_only(monkeypatch)
    source = block.source()
    if tmp is not None:
        source = re.sub(r"""(?<=["'])/tmp/""", lambda _: f"{tmp}/", source)
    if re.search(r"\bschwab(?![\w-])|\.schwab_py_client\(", source):
        _schwab_py_on(api_base, monkeypatch)
    if "schwabdev" in source:
        _schwabdev_on(api_base, monkeypatch)
    module = types.ModuleType("consumer")
    module.__file__ = block.path
    monkeypatch.setitem(sys.modules, "consumer", module)
    namespace = module.__dict__
    try:
        exec(compile(source, block.path, "exec"), namespace)
        for name in ("handler", "lambda_handler"):
            function = namespace.get(name)
            if callable(function):
                function({}, None)
    except (Exception, SystemExit) as exc:
        raise ConsumerFailed(failure(block, exc)) from exc
    if attempts:  # refused, and the snippet carried on regardless
        raise ConsumerFailed(
            f"{block.path}:{block.line}: consumer snippet tried to reach {', '.join(attempts)}: "
            f"{LEFT_THE_MACHINE}"
        )
    return namespace


def failure(block: Block, exc: BaseException) -> str:
    """``path:line: consumer snippet (block at line N) raised ...``, then the snippet's own
    frames (``path:line in function: code``). A refused connection is named as such, however
    deep the client library wrapped it."""
    frames = [
        f"{frame.filename}:{frame.lineno} in {frame.name}: {_code_at(block, frame.lineno)}"
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == block.path
    ]
    where = frames[-1].split(" in ")[0] if frames else f"{block.path}:{block.line}"
    left = _left_the_machine(exc)
    error = f"{type(exc).__name__}: {exc}" if left is None else f"{type(exc).__name__}: {left}"
    lines = [
        f"{where}: consumer snippet (block at line {block.line}) raised {error}",
        *(f"    {frame}" for frame in frames),
    ]
    return "\n".join(lines)


def _code_at(block: Block, lineno: int | None) -> str:
    index = (lineno or 0) - block.first_line
    return block.lines[index].strip() if 0 <= index < len(block.lines) else ""


def _left_the_machine(exc: BaseException) -> LeftTheMachine | None:
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, LeftTheMachine):
            return current
        todo += [current.__cause__, current.__context__, getattr(current, "reason", None)]
    return None


LEFT_THE_MACHINE = (
    "nothing may leave this machine (a consumer takes Schwab's base URL from SCHWAB_API_BASE)"
)


def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Refuse every name lookup but the loopback's; returns the hosts refused."""
    resolve = socket.getaddrinfo
    attempts: list[str] = []

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name not in LOOPBACK and not name.startswith("127."):
            attempts.append(name)
            raise LeftTheMachine(f"the snippet tried to reach {name}: {LEFT_THE_MACHINE}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return attempts


def _schwab_py_on(api_base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import schwab

    from devkit.emulator.schwabpy import point_client_at_emulator

    original = schwab.auth.client_from_access_functions

    def client_from_access_functions(*args: Any, **kwargs: Any) -> Any:
        client = original(*args, **kwargs)
        point_client_at_emulator(client, api_base)
        return client

    monkeypatch.setattr(schwab.auth, "client_from_access_functions", client_from_access_functions)


def _schwabdev_on(api_base: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import schwabdev
    import schwabdev.client

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(
            "Schwabdev called Schwab's token endpoint: a consumer reads the token, the refresher "
            "alone refreshes it"
        )

    monkeypatch.setattr(schwabdev.client.ClientBase, "_base_api_url", api_base)
    monkeypatch.setattr(schwabdev.tokens.requests, "post", refuse)
