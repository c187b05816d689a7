"""Run the refresher Lambda handler once in a child process (``python -m
tests.reliability.handler_child EVENT.json``): for faults that need the process itself to be
different, e.g. started without root's file-permission override. The handler's own output
(JSON logs, EMF) goes to stdout; one JSON line with its result or error goes to stderr.
"""

from __future__ import annotations

import json
import sys

from devkit.handlers import load_handler
from tests.helpers import LambdaContext, lambda_event


def main(argv: list[str]) -> int:
    handler = load_handler("refresher")
    try:
        result = handler.lambda_handler(lambda_event(argv[0]), LambdaContext())
        error = None
    except Exception as exc:
        result, error = None, exc
    sys.stdout.flush()
    summary = {
        "result": result,
        "error": None if error is None else type(error).__name__,
        "message": None if error is None else str(error),
    }
    print(json.dumps(summary), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
