"""Lambda entry point (``Handler: handler.lambda_handler``): wiring only, the logic is in thread_updater."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from thread_updater.app import handle_event
from thread_updater.observability import logger, metrics


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics  # ColdStart: outcomes.start_metrics, with the source dimension
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    return handle_event(event, context)
