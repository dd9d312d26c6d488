"""Apply Portkey Modify Thread and Modify Conversation updates from SQS and EventBridge.

The Lambda entry point is ``handler.lambda_handler`` (one level up, in ``src/``); everything it
wires together lives in this package, one module per concern. Read top-down; a module imports only
from the rows below it:

==================  ==============================================================================
``app``             wiring: the container's long-lived parts; SQS and EventBridge invocations
``processing``      a batch: concurrent lanes, one unit (one target's updates) after another
``handback``        handed-back records get their own visibility (their retry delay)
``applier``         one target's updates: claim, plan, one request, record, release
``ordering``        the plan, purely: which version of each slot wins, what becomes of each update
``state``           the state table (DynamoDB): slots, doubts and leases
``portkey``         the Modify call: pooled urllib3, bounded attempts, answers classified
``classification``  what an answer means (applied, rejected, transient, ...): one table
``ratelimit``       the container's gate and pace in front of Portkey (429 / Retry-After)
``secret_store``    the Portkey secret, cached per container, read within the deadline
``credentials``     the secret's routing modes, mapped to request headers
``redaction``       upstream text cleaned of credentials before it goes anywhere
``jobs``            record → job (valid update or the reason it is not)
``outcomes``        where each update ended (one log line each) and the invocation's metrics
``deadletter``      the dead letter: one self-describing JSON message per permanent failure
``delays``          every retry delay, with its table
``aws``             botocore settings and lazy clients for the function's AWS calls
``deadline_io``     whole-exchange deadlines for HTTP requests
``deadline``        the invocation's deadline: does this call fit, what is left for the next
``settings``        configuration from the environment, validated
``slots``           the units "newest wins" is decided on (a metadata key, ``tool_resources``)
``models``          the parser models of messages and envelopes
``errors``          the exceptions that decide where a record ends up
``observability``   the shared Logger and Metrics
``validation``      validation messages that never repeat the input
==================  ==============================================================================
"""
