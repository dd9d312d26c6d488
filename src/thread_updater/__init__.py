"""Apply Portkey "modify thread" updates from SQS and EventBridge.

The Lambda entry point is ``handler.lambda_handler`` (one level up, in ``src/``);
everything it wires together lives in this package, one module per concern.
"""
