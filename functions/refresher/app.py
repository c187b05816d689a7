"""Refresher Lambda: keeps the Schwab token(s) in the configured store fresh, and notifies.

All logic is in ``schwab_tokens.lambdas.refresher`` (our layer); this only wires powertools
around it.
"""

from typing import TYPE_CHECKING, Any

from schwab_tokens.lambdas.observability import logger, metrics, tracer
from schwab_tokens.lambdas.refresher import handle

if TYPE_CHECKING:  # the import costs cold-start time and is only for the annotation
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: "LambdaContext") -> dict[str, Any]:
    return handle(event, request_id=context.aws_request_id)
