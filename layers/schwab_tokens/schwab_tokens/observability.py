"""The refresher's Logger, Tracer and Metrics, created once and imported by the handler.

Only the refresher imports this (powertools comes from the official Powertools layer); consumers
reading a token never load it.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "schwab-tokens")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "SchwabTokens")

logger = Logger(service=SERVICE)
# Only botocore: auto-patching imports every library X-Ray knows that is installed, and patching
# requests would import it on every cold start (~50 ms) although a still-fresh run, the common
# case, never calls Schwab. The Schwab call shows as the handler segment's time and in
# RefreshDuration instead.
tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
