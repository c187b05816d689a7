"""Hosted login Lambda (behind a Function URL): log in again from a phone via a one-time link.

All logic is in ``schwab_tokens.hosted_login`` and ``schwab_tokens.lambdas.login`` (our layer);
this only wires powertools around it. The event is never logged: its query carries Schwab's
code and the ticket.
"""

from typing import TYPE_CHECKING, Any

from schwab_tokens.lambdas.login import handle
from schwab_tokens.lambdas.observability import logger

if TYPE_CHECKING:  # the import costs cold-start time and is only for the annotation
    from aws_lambda_powertools.utilities.typing import LambdaContext


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: "LambdaContext") -> dict[str, Any]:
    return handle(event)
