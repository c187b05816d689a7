"""Run the emulator in the foreground: ``python -m devkit.emulator --port N``.

Prints one line, ``emulator listening on http://127.0.0.1:N``, then serves until SIGINT or
SIGTERM and exits 0. Other processes drive it through the ``/_emulator/...`` admin routes.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from devkit.emulator.server import Emulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devkit.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--app-key", default="emu-app-key-0001")
    parser.add_argument("--app-secret", default="emu-app-secret-0001")
    parser.add_argument("--callback-url", default="https://127.0.0.1:8182")
    parser.add_argument(
        "--extra-callback-url",
        action="append",
        default=[],
        help="one more registered callback URL (repeatable)",
    )
    parser.add_argument("--access-lifetime", type=float, default=1800)
    args = parser.parse_args(argv)

    stop: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Only an append: setting an Event here can deadlock inside that Event's own wait.
        stop.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    emulator = Emulator(
        app_key=args.app_key,
        app_secret=args.app_secret,
        callback_url=args.callback_url,
        callback_urls=args.extra_callback_url,
        port=args.port,
        access_lifetime=args.access_lifetime,
    ).start()
    try:
        print(f"emulator listening on {emulator.base_url}", flush=True)
        while not stop:
            time.sleep(0.2)
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
