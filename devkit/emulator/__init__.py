"""The Schwab OAuth emulator (for the tests, the demo, the scripts and the benchmarks): a real HTTP
server on 127.0.0.1.

``Emulator``, the fault-kind tuples and the account helpers need only the standard library.
``EmulatorTransport`` and ``point_client_at_emulator`` (the schwab-py/httpx helpers) are
imported lazily, so ``python -m devkit.emulator`` does not need httpx.
"""

from __future__ import annotations

from typing import Any

from devkit.emulator.server import (
    ACCOUNT_NUMBERS,
    BAD_ANSWER_FAULT_KINDS,
    DEFAULT_ACCOUNTS,
    EDGE_400_FAULT_KINDS,
    FAULT_KINDS,
    TOKEN_FAULT_KINDS,
    Emulator,
    account_hash,
    account_numbers_answer,
)

__all__ = [
    "ACCOUNT_NUMBERS",
    "BAD_ANSWER_FAULT_KINDS",
    "DEFAULT_ACCOUNTS",
    "EDGE_400_FAULT_KINDS",
    "FAULT_KINDS",
    "TOKEN_FAULT_KINDS",
    "Emulator",
    "EmulatorTransport",
    "HostNotEmulatedError",
    "account_hash",
    "account_numbers_answer",
    "point_client_at_emulator",
]

_SCHWABPY_NAMES = {"EmulatorTransport", "HostNotEmulatedError", "point_client_at_emulator"}


def __getattr__(name: str) -> Any:
    if name in _SCHWABPY_NAMES:
        from devkit.emulator import schwabpy

        return getattr(schwabpy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
