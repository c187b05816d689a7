"""The Lambda handlers of functions/, loaded here as Lambda loads them."""

from __future__ import annotations

import importlib.util
import logging
import sys
from typing import Any

from devkit import REPO


def load_handler(folder: str) -> Any:
    """Import functions/<folder>/app.py fresh, as a cold start does: the layer's Lambda modules
    (and so their powertools Logger, Tracer and Metrics) are imported again too. Returns the
    module; raises what the module raises on import."""
    for name in [m for m in sys.modules if m.startswith("schwab_tokens.lambdas")]:
        sys.modules.pop(name)
    name = f"handler_{folder}"
    sys.modules.pop(name, None)
    spec = importlib.util.spec_from_file_location(name, REPO / "functions" / folder / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # powertools reuses an existing logger's handler, which an earlier run bound to its own
    # (captured, now closed) stdout: the cold start writes to this run's stdout.
    for handler in logging.getLogger("schwab-tokens").handlers:
        handler.stream = sys.stdout  # type: ignore[attr-defined]
    return module
