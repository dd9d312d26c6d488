"""Exceptions that decide where a record ends up."""


class ConfigurationError(Exception):
    """The function cannot work as configured (environment, secret, credentials).

    Never dead-lettered: the updates are fine, the deployment is not, so every
    unfinished record goes back to the queue (SQS) or the invocation fails (EventBridge).
    Messages name the problem, never a secret value.
    """


class DeadLetterError(Exception):
    """Writing to the dead-letter queue failed; the record must be retried instead."""
