"""The functions' Logger, Tracer and Metrics, created once and imported by the handlers.

powertools reads its own settings (``POWERTOOLS_SERVICE_NAME``, ``POWERTOOLS_METRICS_NAMESPACE``,
``POWERTOOLS_TRACE_DISABLED``...) from the environment the template sets. Custom metrics are
added only when ``DetailedMetrics`` is enabled (``Settings.detailed_metrics``).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
# Only botocore: auto-patching imports every library X-Ray knows that is installed, and patching
# requests would import it on every cold start (~50 ms) although a still-fresh run, the common
# case, never calls Schwab. The Schwab call shows as the handler segment's time instead.
tracer = Tracer(patch_modules=("botocore",))
metrics = Metrics()
